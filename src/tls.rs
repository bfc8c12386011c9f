//! Serving certificates: loaded from files and reloaded when they change (a Secret volume's
//! `..data` symlink swap included), or generated for local development.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("--tls-key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("--client-ca {path}: {message}")]
    ClientCa { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Generate(#[from] crate::certs::CertError),
    #[error("serving certificate from the Secret: {0}")]
    Secret(String),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

fn pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in the file".into());
    }
    Ok(certs)
}

/// Reads a PEM certificate chain and its private key into a signing key rustls can serve. A key
/// that does not belong to the certificate is an error, so a pair caught mid-rotation (new
/// certificate, old key) is retried rather than served.
pub fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.to_path_buf(),
        message,
    };
    let chain = pem_certs(cert).map_err(cert_err)?;
    let key_err = |message: String| TlsError::Key {
        path: key.to_path_buf(),
        message,
    };
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(e.to_string()))?;
    CertifiedKey::from_der(chain, der, &default_provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => key_err(format!(
            "does not belong to the certificate in {}",
            cert.display()
        )),
        e => key_err(e.to_string()),
    })
}

/// Hands out the current certificate; a background task swaps in a new one when the files change.
#[derive(Debug)]
pub struct ReloadingResolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingResolver {
    pub fn new(key: CertifiedKey) -> Arc<Self> {
        Arc::new(ReloadingResolver {
            current: RwLock::new(Arc::new(key)),
        })
    }

    pub fn set(&self, key: CertifiedKey) {
        if let Ok(mut current) = self.current.write() {
            *current = Arc::new(key);
        }
    }
}

impl ReloadingResolver {
    /// When the certificate being served expires, for the expiry metric.
    pub fn not_after(&self) -> Option<SystemTime> {
        let current = self.current.read().ok()?.clone();
        let der = current.cert.first()?;
        crate::certs::issue::der_facts(der, "serving certificate")
            .ok()
            .map(|f| f.not_after)
    }
}

impl ResolvesServerCert for ReloadingResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|k| Arc::clone(&k))
    }
}

/// What tells a file's content changed without reading it. The mtime alone misses a Secret
/// volume swap to files written within the same timestamp tick, or copied with their times
/// kept; those are new files, so the inode tells.
#[derive(Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let inode = (0, 0);
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// Polls the files (following symlinks) and reloads on change; a half-written pair is retried.
pub async fn watch(resolver: Arc<ReloadingResolver>, cert: PathBuf, key: PathBuf, every: Duration) {
    let mut seen = (stamp(&cert), stamp(&key));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let now = (stamp(&cert), stamp(&key));
        if now == seen {
            continue;
        }
        match load_certified_key(&cert, &key) {
            Ok(k) => {
                resolver.set(k);
                seen = now;
                tracing::info!(cert = %cert.display(), "reloaded serving certificate");
            }
            Err(e) => {
                tracing::warn!(error = %e, "serving certificate changed but cannot be loaded yet")
            }
        }
    }
}

/// The client-certificate check of `--client-ca`, rebuilt when the CA file changes: like the
/// serving certificate, the trusted CA can rotate without a restart.
#[derive(Debug)]
pub struct ReloadingClientCa {
    path: PathBuf,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
}

fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let ca_err = |message: String| TlsError::ClientCa {
        path: path.to_path_buf(),
        message,
    };
    let mut roots = RootCertStore::empty();
    for cert in pem_certs(path).map_err(ca_err)? {
        roots.add(cert).map_err(|e| ca_err(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(default_provider()))
        .build()
        .map_err(|e| ca_err(e.to_string()))
}

impl ReloadingClientCa {
    pub fn load(path: &Path) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(ReloadingClientCa {
            path: path.to_path_buf(),
            current: RwLock::new(client_verifier(path)?),
        }))
    }

    fn get(&self) -> Arc<dyn ClientCertVerifier> {
        match self.current.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Polls the file like the serving certificate; a file that cannot be read yet is retried
    /// and the previous CA stays in force.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut seen = stamp(&self.path);
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let now = stamp(&self.path);
            if now == seen {
                continue;
            }
            match client_verifier(&self.path) {
                Ok(v) => {
                    if let Ok(mut current) = self.current.write() {
                        *current = v;
                    }
                    seen = now;
                    tracing::info!(client_ca = %self.path.display(), "reloaded the client CA");
                }
                Err(e) => tracing::warn!(error = %e, "client CA changed but cannot be loaded yet"),
            }
        }
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; the certificate is still checked against the current CA.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.get()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.get().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.get().supported_verify_schemes()
    }
}

/// rustls server config: TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1; with `client_ca`, a client
/// must present a certificate that chains to it or the handshake fails.
pub fn server_config(
    resolver: Arc<ReloadingResolver>,
    client_ca: Option<Arc<ReloadingClientCa>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// PEM files of a generated CA and a serving certificate signed by it.
pub struct GeneratedCerts {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Validity of the CA that `generate` makes; its serving certificate gets a third of it.
pub const GENERATED_CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A fresh CA and a serving certificate for `names` (DNS names or IP addresses).
pub fn generate(names: &[String]) -> Result<GeneratedCerts, TlsError> {
    let now = SystemTime::now();
    let ca = crate::certs::issue::Ca::generate(GENERATED_CA_VALIDITY, now)?;
    let leaf = ca.issue(names, GENERATED_CA_VALIDITY / 3, now)?;
    Ok(GeneratedCerts {
        ca_pem: ca.pair().cert.clone(),
        cert_pem: leaf.cert,
        key_pem: leaf.key,
    })
}

/// A PEM certificate chain and key (from a Secret) as a signing key rustls can serve.
pub fn certified_key(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Secret(e.to_string()))?;
    let der =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Secret(e.to_string()))?;
    CertifiedKey::from_der(chain, der, &default_provider())
        .map_err(|e| TlsError::Secret(e.to_string()))
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (the names of a `kubernetes.io/tls` Secret).
pub fn write(dir: &Path, certs: &GeneratedCerts) -> Result<(), TlsError> {
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|source| TlsError::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    write("ca.crt", &certs.ca_pem)?;
    write("tls.crt", &certs.cert_pem)?;
    write_private(&dir.join("tls.key"), &certs.key_pem)
}

/// Writes a private key readable by its owner only, from the moment it exists.
fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        // An existing file keeps its mode on open; set it before writing the key.
        if path.exists() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        }
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(err)
}

/// The dev certificate for localhost, reused when it is already there.
pub fn ensure_dev_certs(dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    if load_certified_key(&cert, &key).is_err() {
        let names = ["localhost", "127.0.0.1", "::1"].map(String::from);
        write(dir, &generate(&names)?)?;
    }
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pair_loads_and_errors_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_dev_certs(dir.path()).unwrap();
        assert!(load_certified_key(&cert, &key).is_ok());
        let err = load_certified_key(&dir.path().join("missing.crt"), &key).unwrap_err();
        assert!(err.to_string().starts_with("--tls-cert"), "{err}");
        let err = load_certified_key(&cert, &cert).unwrap_err();
        assert!(err.to_string().starts_with("--tls-key"), "{err}");
    }

    #[test]
    fn a_swapped_file_with_the_same_mtime_and_size_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tls.crt");
        std::fs::write(&path, "old").unwrap();
        let before = stamp(&path).unwrap();
        let next = dir.path().join("next");
        std::fs::write(&next, "new").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&next)
            .unwrap()
            .set_modified(before.modified.unwrap())
            .unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_ne!(stamp(&path), Some(before));
    }

    #[test]
    fn a_key_from_another_pair_is_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (cert, _) = ensure_dev_certs(a.path()).unwrap();
        let (_, other_key) = ensure_dev_certs(b.path()).unwrap();
        let err = load_certified_key(&cert, &other_key).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn client_ca_errors_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ensure_dev_certs(dir.path()).unwrap();
        let resolver = ReloadingResolver::new(load_certified_key(&cert, &key).unwrap());
        let err = ReloadingClientCa::load(&key).unwrap_err();
        assert!(err.to_string().starts_with("--client-ca"), "{err}");
        let missing = dir.path().join("missing.crt");
        let err = ReloadingClientCa::load(&missing).unwrap_err();
        assert!(err.to_string().starts_with("--client-ca"), "{err}");
        let ca = ReloadingClientCa::load(&dir.path().join("ca.crt")).unwrap();
        assert!(server_config(resolver, Some(ca)).is_ok());
    }
}
