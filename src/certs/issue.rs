//! Certificate authorities and serving certificates: generated with a set validity, read back
//! from PEM, and checked. The time is passed in, so renewal decisions can be tested.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::CertError;

/// Certificates start this long before they are made, so a peer whose clock is a little
/// behind still accepts them.
pub const BACKDATE: Duration = Duration::from_secs(300);

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: String,
    pub key: String,
}

/// What renewal needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// DNS names and IP addresses, as text.
    pub names: Vec<String>,
}

impl Facts {
    /// Whether less than a third of `validity` is left at `now` (or it has expired).
    pub fn due(&self, validity: Duration, now: SystemTime) -> bool {
        self.not_after
            .duration_since(now)
            .map_or(true, |left| left < validity / 3)
    }

    pub fn expired(&self, now: SystemTime) -> bool {
        self.not_after <= now
    }
}

fn parse_err(what: &'static str) -> impl Fn(String) -> CertError {
    move |message| CertError::Parse { what, message }
}

/// Every certificate in a PEM text, in order.
pub fn certs_in(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

fn first_cert(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, CertError> {
    certs_in(pem)
        .into_iter()
        .next()
        .ok_or_else(|| parse_err(what)("no PEM certificate".into()))
}

fn time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    match u64::try_from(secs) {
        Ok(s) => UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => UNIX_EPOCH,
    }
}

fn x509<'a>(
    der: &'a CertificateDer<'_>,
    what: &'static str,
) -> Result<X509Certificate<'a>, CertError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| parse_err(what)(e.to_string()))
}

/// The validity and names of the first certificate in `pem`.
pub fn facts(pem: &str, what: &'static str) -> Result<Facts, CertError> {
    der_facts(&first_cert(pem, what)?, what)
}

/// The validity and names of one certificate.
pub fn der_facts(der: &CertificateDer<'_>, what: &'static str) -> Result<Facts, CertError> {
    let cert = x509(der, what)?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(dns) => names.push((*dns).to_string()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(octets) = <[u8; 4]>::try_from(*ip) {
                        names.push(std::net::Ipv4Addr::from(octets).to_string());
                    } else if let Ok(octets) = <[u8; 16]>::try_from(*ip) {
                        names.push(std::net::Ipv6Addr::from(octets).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(Facts {
        not_before: time(cert.validity().not_before),
        not_after: time(cert.validity().not_after),
        names,
    })
}

fn set_validity(params: &mut CertificateParams, now: SystemTime, not_after: SystemTime) {
    params.not_before = (now - BACKDATE).into();
    params.not_after = not_after.into();
}

/// A certificate authority with its signing key.
pub struct Ca {
    pair: Pair,
    facts: Facts,
    key: KeyPair,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("facts", &self.facts).finish()
    }
}

impl Ca {
    /// A new CA valid from `now` for `validity`.
    pub fn generate(validity: Duration, now: SystemTime) -> Result<Ca, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let made = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        // The time tells two CAs apart in a caBundle during a rollover.
        params
            .distinguished_name
            .push(DnType::CommonName, format!("mtls-guard CA {made}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, now, now + validity);
        let cert = params.self_signed(&key)?.pem();
        Ca::from_pair(Pair {
            cert,
            key: key.serialize_pem(),
        })
    }

    /// A CA read back from its PEM certificate and key; the key must belong to it.
    pub fn from_pair(pair: Pair) -> Result<Ca, CertError> {
        let key = KeyPair::from_pem(&pair.key).map_err(|e| parse_err("ca.key")(e.to_string()))?;
        let der = first_cert(&pair.cert, "ca.crt")?;
        let cert = x509(&der, "ca.crt")?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(parse_err("ca.key")("does not belong to ca.crt".into()));
        }
        let facts = facts(&pair.cert, "ca.crt")?;
        Ok(Ca { pair, facts, key })
    }

    pub fn pair(&self) -> &Pair {
        &self.pair
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// When this CA was made (its start, less the backdating).
    pub fn made(&self) -> SystemTime {
        self.facts.not_before + BACKDATE
    }

    /// A serving certificate for `names`, valid for `validity` but never past this CA.
    pub fn issue(
        &self,
        names: &[String],
        validity: Duration,
        now: SystemTime,
    ) -> Result<Pair, CertError> {
        let issuer = Issuer::from_ca_cert_pem(&self.pair.cert, &self.key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map_or("mtls-guard", String::as_str),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        set_validity(&mut params, now, (now + validity).min(self.facts.not_after));
        Ok(Pair {
            cert: params.signed_by(&key, &issuer)?.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Whether the first certificate in `pem` carries this CA's signature.
    pub fn signed(&self, pem: &str) -> bool {
        signed_by(&self.pair.cert, pem)
    }
}

/// Whether the first certificate in `leaf` carries the signature of the one in `ca`.
pub fn signed_by(ca: &str, leaf: &str) -> bool {
    match (first_cert(ca, "ca.crt"), first_cert(leaf, "tls.crt")) {
        (Ok(ca), Ok(leaf)) => der_signed_by(&ca, &leaf),
        _ => false,
    }
}

/// Whether `leaf` carries the signature of `ca`.
pub fn der_signed_by(ca: &CertificateDer<'_>, leaf: &CertificateDer<'_>) -> bool {
    let (Ok(ca), Ok(leaf)) = (x509(ca, "ca.crt"), x509(leaf, "tls.crt")) else {
        return false;
    };
    leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// Whether the key belongs to the certificate, as rustls would check before serving them.
pub fn pair_matches(pair: &Pair) -> bool {
    crate::tls::certified_key(pair.cert.as_bytes(), pair.key.as_bytes()).is_ok()
}

/// One certificate as PEM text, 64 columns, LF line ends.
pub fn pem_text(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
