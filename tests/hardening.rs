//! Hostile clients, certificate rotation, drain and client authentication, against the real
//! binary over real TLS on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{data, Guard};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const SEED_UID: &str = "7f0c5a53-0001-4c55-9d7e-5c1f1c0a0001";
/// How long a test waits for the server to hang up; the timeouts under test are 1 s.
const HANG_UP_BOUND: Duration = Duration::from_secs(10);

async fn assert_healthy(guard: &Guard) {
    let r = guard
        .client()
        .get(guard.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(roots)
}

fn client_config(
    ca: &Path,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[u8],
) -> ClientConfig {
    let mut config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots(ca))
            .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    config
}

async fn tls_connect(port: u16, config: ClientConfig) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// Everything the server sends until it closes the connection (EOF or reset); panics if it is
/// still open after `HANG_UP_BOUND`.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin)) -> Vec<u8> {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(HANG_UP_BOUND, read)
        .await
        .expect("the server kept the connection open");
    got
}

/// One HTTP/1.1 answer with a Content-Length body, read without waiting for the connection to
/// close.
async fn read_http1_answer(stream: &mut (impl AsyncRead + Unpin)) -> String {
    let mut got = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer was complete");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len: usize = text
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if got.len() >= end + 4 + len {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(HANG_UP_BOUND, read)
        .await
        .expect("no complete answer");
    String::from_utf8(got).unwrap()
}

// Certificate rotation under load.

fn write_pair(dir: &Path, name: &str, pair: &mtls_guard::tls::GeneratedCerts) {
    let d = dir.join(name);
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("tls.crt"), &pair.cert_pem).unwrap();
    std::fs::write(d.join("tls.key"), &pair.key_pem).unwrap();
}

/// What the kubelet does to a Secret volume: the new files go into a new timestamped
/// directory, and `..data` is swapped to it with one rename.
fn swap_secret(dir: &Path, new: &str, old: &str, pair: &mtls_guard::tls::GeneratedCerts) {
    write_pair(dir, new, pair);
    std::os::unix::fs::symlink(new, dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join(old)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_load_fails_no_request() {
    let names = ["localhost", "127.0.0.1"].map(String::from);
    let first = mtls_guard::tls::generate(&names).unwrap();
    let second = mtls_guard::tls::generate(&names).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_pair(d, "..2024_01_01_v1", &first);
    std::os::unix::fs::symlink("..2024_01_01_v1", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", d.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", d.join("tls.key")).unwrap();
    let (first_ca, second_ca) = (d.join("first-ca.crt"), d.join("second-ca.crt"));
    std::fs::write(&first_ca, &first.ca_pem).unwrap();
    std::fs::write(&second_ca, &second.ca_pem).unwrap();
    let (cert, key) = (d.join("tls.crt"), d.join("tls.key"));
    let guard = Guard::start_with(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--cert-reload-interval",
            "200ms",
        ],
        Some(first_ca.clone()),
        None,
    )
    .await;

    let trusting = |cas: &[&PathBuf]| {
        let mut b = guard.client_builder();
        for ca in cas {
            let pem = std::fs::read(ca).unwrap();
            b = b.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    const TOTAL: usize = 10_000;
    const WORKERS: usize = 4;
    // A fresh connection (and handshake) every so often, so handshakes run across the swap.
    const REQUESTS_PER_CONNECTION: usize = 100;
    let body = std::fs::read(data("seed-strict-policy.json")).unwrap();
    let issued = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let url = guard.url("/validate");
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (issued, done, failures) = (issued.clone(), done.clone(), failures.clone());
        let (body, url) = (body.clone(), url.clone());
        let port = guard.port;
        let pems = [&first_ca, &second_ca].map(|ca| std::fs::read(ca).unwrap());
        let new_client = move || {
            pems.iter()
                .fold(common::client_builder(port), |b, pem| {
                    b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap())
                })
                .build()
                .unwrap()
        };
        workers.push(tokio::spawn(async move {
            let mut client = new_client();
            let mut on_this_connection = 0;
            while issued.fetch_add(1, Ordering::SeqCst) < TOTAL {
                if on_this_connection == REQUESTS_PER_CONNECTION {
                    client = new_client();
                    on_this_connection = 0;
                }
                on_this_connection += 1;
                let outcome = async {
                    let r = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .map_err(|e| format!("{e:?}"))?;
                    if r.status() != 200 {
                        return Err(format!("status {}", r.status()));
                    }
                    let v: Value = r.json().await.map_err(|e| format!("{e:?}"))?;
                    if v["response"]["uid"] != SEED_UID {
                        return Err(format!("answer {v}"));
                    }
                    Ok(())
                }
                .await;
                if let Err(e) = outcome {
                    failures.lock().unwrap().push(e);
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let run = async {
        while done.load(Ordering::SeqCst) < TOTAL / 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        swap_secret(d, "..2024_01_01_v2", "..2024_01_01_v1", &second);
        for w in workers {
            w.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("the load finished");
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    assert!(
        failures.is_empty(),
        "{} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(done.load(Ordering::SeqCst), TOTAL);

    // A new connection now gets the second certificate, and only it.
    let only_second = trusting(&[&second_ca]);
    let reloaded = async {
        while only_second.get(guard.url("/healthz")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG_UP_BOUND, reloaded)
        .await
        .expect("the second certificate is served");
    let only_first = trusting(&[&first_ca]);
    assert!(only_first.get(guard.url("/healthz")).send().await.is_err());
}

// TLS versions and client certificates.

#[tokio::test]
async fn tls12_and_tls13_clients_both_work() {
    let guard = Guard::start(&[]).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let mut tls = tls_connect(
            guard.port,
            client_config(&guard.ca(), &[version], b"http/1.1"),
        )
        .await;
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let answer = read_http1_answer(&mut tls).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}

#[tokio::test]
async fn a_tls11_client_hello_is_refused() {
    let guard = Guard::start(&[]).await;
    let mut hello = vec![0x03, 0x02]; // client_version TLS 1.1
    hello.extend([0x5a; 32]); // random
    hello.push(0); // no session id
    hello.extend([0x00, 0x04, 0x00, 0x2f, 0x00, 0x35]); // two TLS 1.1 cipher suites
    hello.extend([0x01, 0x00]); // null compression
    let mut handshake = vec![0x01, 0x00, 0x00, u8::try_from(hello.len()).unwrap()];
    handshake.extend(hello);
    let mut record = vec![
        0x16,
        0x03,
        0x02,
        0x00,
        u8::try_from(handshake.len()).unwrap(),
    ];
    record.extend(handshake);
    let mut tcp = TcpStream::connect(("127.0.0.1", guard.port)).await.unwrap();
    tcp.write_all(&record).await.unwrap();
    let answer = read_until_closed(&mut tcp).await;
    // Nothing but an alert record (type 21): no ServerHello.
    assert!(answer.is_empty() || answer[0] == 21, "{answer:?}");
    assert_healthy(&guard).await;
}

/// A CA and a client certificate it signed: (CA PEM, certificate and key PEM).
fn client_pki(name: &str) -> (String, Vec<u8>) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} CA"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![name.to_string()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, name);
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    (
        ca_cert.pem(),
        format!("{}{}", cert.pem(), key.serialize_pem()).into_bytes(),
    )
}

#[tokio::test]
async fn client_ca_admits_only_certificates_it_signed() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, identity) = client_pki("kube-apiserver");
    let (_, stranger) = client_pki("stranger");
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, ca).unwrap();
    let guard = Guard::start_with(
        &["--client-ca", ca_path.to_str().unwrap()],
        None,
        Some(identity),
    )
    .await;

    let review = guard.validate_fixture("seed-strict-policy.json").await;
    assert_eq!(review["response"]["uid"], SEED_UID);

    let dev_ca = std::fs::read(guard.ca()).unwrap();
    let anonymous = guard
        .client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&dev_ca).unwrap())
        .build()
        .unwrap();
    assert!(anonymous.get(guard.url("/healthz")).send().await.is_err());
    let other_ca = guard
        .client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&dev_ca).unwrap())
        .identity(reqwest::Identity::from_pem(&stranger).unwrap())
        .build()
        .unwrap();
    assert!(other_ca.get(guard.url("/healthz")).send().await.is_err());
    assert_healthy(&guard).await;
}

#[test]
fn an_unreadable_client_ca_stops_startup_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::BIN)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--client-ca"])
        .arg(dir.path().join("missing.crt"))
        .arg("--dev-cert-dir")
        .arg(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + HANG_UP_BOUND;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("still serving with an unreadable --client-ca");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--client-ca"));
}
