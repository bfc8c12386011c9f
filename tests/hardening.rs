//! Hostile clients, certificate rotation, drain and client authentication, against the real
//! binary over real TLS on 127.0.0.1.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{data, Guard};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

const SEED_UID: &str = "7f0c5a53-0001-4c55-9d7e-5c1f1c0a0001";
/// How long a test waits for the server to hang up; the timeouts under test are 1 s.
const HANG_UP_BOUND: Duration = Duration::from_secs(10);

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data(name)).unwrap()).unwrap()
}

/// The webhook still answers over TLS (a GET on /validate is 405) and the process is healthy.
async fn assert_healthy(guard: &Guard) {
    let r = guard
        .client()
        .get(guard.url("/validate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(guard.ops_get("/healthz").await.status(), 200);
}

async fn error_of(r: reqwest::Response) -> String {
    let body: Value = r.json().await.unwrap();
    body["error"].as_str().unwrap().to_string()
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

/// HTTP/2 frame types in a server's byte stream.
fn h2_frame_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

const H2_SETTINGS: u8 = 4;
const H2_PING: u8 = 6;
const H2_GOAWAY: u8 = 7;
const H2_ACK: u8 = 1;

/// Reads one frame, acknowledging SETTINGS and PINGs as a real client does; returns its
/// type, or `None` once the server has closed.
async fn h2_next_frame(tls: &mut TlsStream<TcpStream>) -> Option<u8> {
    let mut head = [0u8; 9];
    tls.read_exact(&mut head).await.ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    tls.read_exact(&mut payload).await.ok()?;
    let (kind, flags) = (head[3], head[4]);
    if flags & H2_ACK == 0 && (kind == H2_SETTINGS || kind == H2_PING) {
        let mut ack = vec![0, 0, 0, kind, H2_ACK, 0, 0, 0, 0];
        if kind == H2_PING {
            ack[2] = 8;
            ack.extend(&payload);
        }
        tls.write_all(&ack).await.ok()?;
    }
    Some(kind)
}

/// Waits for the server's SETTINGS: from then on it holds an HTTP/2 connection, not one
/// still being set up.
async fn h2_await_settings(tls: &mut TlsStream<TcpStream>) {
    let settings = async { while h2_next_frame(tls).await.is_some_and(|k| k != H2_SETTINGS) {} };
    tokio::time::timeout(HANG_UP_BOUND, settings)
        .await
        .expect("the server sent its SETTINGS");
}

/// Reads frames until the server closes; returns the frame types seen.
async fn h2_frames_until_closed(tls: &mut TlsStream<TcpStream>) -> Vec<u8> {
    let mut types = Vec::new();
    let read = async {
        while let Some(kind) = h2_next_frame(tls).await {
            types.push(kind);
        }
    };
    tokio::time::timeout(HANG_UP_BOUND, read)
        .await
        .expect("the server kept the connection open");
    types
}

/// The client connection preface and an empty SETTINGS frame: a connection that asks nothing.
async fn open_idle_h2(port: u16, ca: &Path) -> TlsStream<TcpStream> {
    let mut tls = tls_connect(port, client_config(ca, rustls::ALL_VERSIONS, b"h2")).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    tls.flush().await.unwrap();
    tls
}

// Bad input over HTTPS: a clear status, no panic, and the server still healthy.

#[tokio::test]
async fn deeply_nested_json_gets_a_clear_answer() {
    let guard = Guard::start(&[]).await;
    let depth = 100_000;
    let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let nest = |path: &[&str]| {
        let mut review = fixture("seed-strict-policy.json");
        let mut at = &mut review;
        for key in path {
            at = &mut at[*key];
        }
        *at = json!("NESTED");
        review
            .to_string()
            .replace(r#""NESTED""#, &nested)
            .into_bytes()
    };

    let unreadable = nest(&["request", "object", "spec", "targets"]);
    let r = guard.validate(unreadable).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(answer["response"]["status"]["code"], 400, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("cannot read Policy"), "{message}");

    let skipped = nest(&["request", "object", "spec", "unknown"]);
    let r = guard.validate(skipped).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        answer["response"]["status"]["code"], 403,
        "still decided: {answer}"
    );

    let tree = nest(&["request", "object", "data"]);
    let r = guard.validate(tree).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("recursion limit"));

    let nested_request = format!(
        r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{nested}}}"#
    );
    let r = guard.validate(nested_request.into_bytes()).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("not an AdmissionReview"));
    assert_healthy(&guard).await;
}

#[tokio::test]
async fn huge_arrays_within_the_body_limit_get_an_answer() {
    let guard = Guard::start(&[]).await;
    let mut review = fixture("seed-strict-policy.json");
    let padding = vec![0u8; 1_200_000];
    review["request"]["object"]["spec"]["padding"] = json!(padding);
    let body = serde_json::to_vec(&review).unwrap();
    assert!(body.len() > 2_000_000 && body.len() < 3 * 1024 * 1024);
    let r = guard.validate(body).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["response"]["uid"], SEED_UID);
    assert!(answer["response"]["allowed"].is_boolean(), "{answer}");

    let top_level = serde_json::to_vec(&padding).unwrap();
    let r = guard.validate(top_level).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("not an AdmissionReview"));
    assert_healthy(&guard).await;
}

#[tokio::test]
async fn incomplete_reviews_are_400_naming_what_is_missing() {
    let guard = Guard::start(&[]).await;
    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    let r = guard.validate(no_request.to_string().into_bytes()).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("no request"));

    // A response must echo the uid, so a request without one cannot be answered.
    let mut no_uid = fixture("seed-strict-policy.json");
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let r = guard.validate(no_uid.to_string().into_bytes()).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("uid"));

    let mut empty_uid = fixture("seed-strict-policy.json");
    empty_uid["request"]["uid"] = json!("");
    let r = guard.validate(empty_uid.to_string().into_bytes()).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("empty uid"));

    let mut v1beta1 = fixture("seed-strict-policy.json");
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let r = guard.validate(v1beta1.to_string().into_bytes()).await;
    assert_eq!(r.status(), 400);
    assert!(error_of(r).await.contains("apiVersion"));
    assert_healthy(&guard).await;
}

#[tokio::test]
async fn an_unexpected_kind_is_allowed_with_a_warning() {
    let guard = Guard::start(&[]).await;
    let review = guard.validate_fixture("unreviewed-pod.json").await;
    let r = &review["response"];
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"][0]
            .as_str()
            .unwrap()
            .contains("does not review"),
        "{r}"
    );
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_hint() {
    let guard = Guard::start(&[]).await;
    let client = guard.client();
    let r = client
        .post(guard.url("/mutate"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(error_of(r).await.contains("POST /validate"));
    let r = client.get(guard.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_healthy(&guard).await;
}

// Not TLS at all.

#[tokio::test]
async fn plaintext_http_on_the_tls_port_is_dropped() {
    let guard = Guard::start(&[]).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", guard.port)).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(!answer.starts_with(b"HTTP/"), "served plaintext");
    assert_healthy(&guard).await;
}

// Slow clients.

#[tokio::test]
async fn slowloris_headers_are_cut_off_by_the_header_read_timeout() {
    let guard = Guard::start(&["--header-read-timeout", "1s"]).await;
    let tls = tls_connect(
        guard.port,
        client_config(&guard.ca(), rustls::ALL_VERSIONS, b"http/1.1"),
    )
    .await;
    let (mut rd, mut wr) = tokio::io::split(tls);
    let head: &[u8] = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n";
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            for byte in head {
                if wr.write_all(&[*byte]).await.is_err() || wr.flush().await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let answer = read_until_closed(&mut rd).await;
    let sent = sent.load(Ordering::SeqCst);
    writer.abort();
    assert!(
        sent < head.len(),
        "the headers completed ({sent} bytes) before the server hung up"
    );
    assert!(!String::from_utf8_lossy(&answer).contains(" 200 "));
    assert_healthy(&guard).await;
}

#[tokio::test]
async fn a_client_that_never_says_hello_is_cut_off_by_the_handshake_timeout() {
    let guard = Guard::start(&["--header-read-timeout", "1s"]).await;
    let mut tcp = TcpStream::connect(("127.0.0.1", guard.port)).await.unwrap();
    let answer = read_until_closed(&mut tcp).await;
    assert!(answer.is_empty(), "{answer:?}");
    assert_healthy(&guard).await;
}

// Idle connections.

#[tokio::test]
async fn idle_http1_keep_alive_connections_are_closed() {
    // The header timeout would also end the wait for a next request; make it longer than the
    // bound so only the idle timeout can close the connection in time.
    let guard = Guard::start(&["--header-read-timeout", "30s", "--idle-timeout", "1s"]).await;
    let mut tls = tls_connect(
        guard.port,
        client_config(&guard.ca(), rustls::ALL_VERSIONS, b"http/1.1"),
    )
    .await;
    tls.write_all(b"GET /validate HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let answer = read_http1_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("connection: close"));
    let rest = read_until_closed(&mut tls).await;
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn idle_http2_connections_get_a_goaway_and_are_closed() {
    let guard = Guard::start(&["--idle-timeout", "1s", "--header-read-timeout", "2s"]).await;
    let mut polite = open_idle_h2(guard.port, &guard.ca()).await;
    let frames = h2_frames_until_closed(&mut polite).await;
    assert!(frames.contains(&H2_GOAWAY), "frames: {frames:?}");

    // A client that acknowledges nothing cannot finish the GOAWAY; it is dropped anyway.
    let mut deaf = open_idle_h2(guard.port, &guard.ca()).await;
    let frames = h2_frame_types(&read_until_closed(&mut deaf).await);
    assert!(frames.contains(&H2_GOAWAY), "frames: {frames:?}");
    assert_healthy(&guard).await;
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
        while only_second
            .get(guard.url("/validate"))
            .send()
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG_UP_BOUND, reloaded)
        .await
        .expect("the second certificate is served");
    let only_first = trusting(&[&first_ca]);
    assert!(only_first.get(guard.url("/validate")).send().await.is_err());
}

// Drain.

#[derive(Default)]
struct DrainTally {
    answered: AtomicUsize,
    answered_after_sigterm: AtomicUsize,
    told_to_close: AtomicUsize,
    refused: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_every_request_it_accepted() {
    let mut guard = Guard::start(&["--drain-delay", "2s", "--shutdown-grace", "10s"]).await;
    let body = std::fs::read(data("seed-strict-policy.json")).unwrap();
    let tally = Arc::new(DrainTally::default());
    let sigterm_sent = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (client, url, body) = (guard.client(), guard.url("/validate"), body.clone());
        let (tally, sigterm_sent) = (Arc::clone(&tally), Arc::clone(&sigterm_sent));
        workers.push(tokio::spawn(async move {
            for _ in 0..50_000 {
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let r = match sent {
                    Ok(r) => r,
                    // Refused on connect (or cut during the handshake): the request was never
                    // sent, and the client can go elsewhere.
                    Err(e) if e.is_connect() => {
                        tally.refused.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                    Err(e) => return tally.failures.lock().unwrap().push(format!("{e:?}")),
                };
                let closing = r
                    .headers()
                    .get("connection")
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
                let status = r.status();
                match r.json::<Value>().await {
                    Ok(v) if status == 200 && v["response"]["uid"] == SEED_UID => {}
                    other => {
                        return tally
                            .failures
                            .lock()
                            .unwrap()
                            .push(format!("{status}: {other:?}"))
                    }
                }
                tally.answered.fetch_add(1, Ordering::SeqCst);
                if sigterm_sent.load(Ordering::SeqCst) {
                    tally.answered_after_sigterm.fetch_add(1, Ordering::SeqCst);
                }
                if closing {
                    tally.told_to_close.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let readiness = {
        let (client, url) = (reqwest::Client::new(), guard.ops_url("/readyz"));
        tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..10_000 {
                match client.get(&url).send().await {
                    Ok(r) => seen.push(r.status().as_u16()),
                    // The probe port lives until the process exits, so a probe may be cut
                    // there once readiness has turned off.
                    Err(e) if e.is_connect() || seen.last() == Some(&503) => break,
                    Err(e) => panic!("readiness probe failed mid-request: {e:?}"),
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let loaded = async {
        while tally.answered.load(Ordering::SeqCst) < 200 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), loaded)
        .await
        .expect("the load got going");
    sigterm_sent.store(true, Ordering::SeqCst);
    guard.terminate();
    let exit = guard.wait_exit(Duration::from_secs(20)).await;
    assert!(exit.success(), "{exit}");
    for w in workers {
        tokio::time::timeout(HANG_UP_BOUND, w)
            .await
            .expect("workers stop once refused")
            .unwrap();
    }
    let seen = tokio::time::timeout(HANG_UP_BOUND, readiness)
        .await
        .unwrap()
        .unwrap();

    let failures = tally.failures.lock().unwrap();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(
        tally.refused.load(Ordering::SeqCst),
        4,
        "every worker ended refused"
    );
    assert!(tally.answered_after_sigterm.load(Ordering::SeqCst) > 0);
    assert!(tally.told_to_close.load(Ordering::SeqCst) > 0);
    assert_eq!(seen.first(), Some(&200));
    assert!(
        seen.contains(&503),
        "readiness stayed up while draining: {seen:?}"
    );
}

#[tokio::test]
async fn while_draining_every_webhook_answer_says_close_even_a_404_or_405() {
    let mut guard = Guard::start(&["--drain-delay", "5s", "--shutdown-grace", "1s"]).await;
    let client = guard.client();
    let closes = |r: &reqwest::Response| {
        r.headers()
            .get("connection")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"))
    };
    let before = client.get(guard.url("/nope")).send().await.unwrap();
    assert_eq!(before.status(), 404);
    assert!(!closes(&before), "closing before the drain");
    guard.terminate();
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    loop {
        let r = client.get(guard.url("/nope")).send().await.unwrap();
        assert_eq!(r.status(), 404);
        if closes(&r) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never told to close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let wrong_method = client.get(guard.url("/validate")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert!(closes(&wrong_method));
    let review = guard
        .validate(std::fs::read(data("seed-strict-policy.json")).unwrap())
        .await;
    assert_eq!(review.status(), 200);
    assert!(closes(&review));
    assert!(guard.wait_exit(Duration::from_secs(20)).await.success());
}

#[tokio::test]
async fn sigterm_sends_goaway_to_http2_connections() {
    let mut guard = Guard::start(&["--shutdown-grace", "30s"]).await;
    let mut tls = open_idle_h2(guard.port, &guard.ca()).await;
    // A connection whose HTTP/2 setup has not finished is closed without a GOAWAY (no
    // stream can be open on it); wait until the server holds an established one.
    h2_await_settings(&mut tls).await;
    guard.terminate();
    let frames = h2_frames_until_closed(&mut tls).await;
    assert!(frames.contains(&H2_GOAWAY), "frames: {frames:?}");
    assert!(guard.wait_exit(HANG_UP_BOUND).await.success());
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
        tls.write_all(b"GET /validate HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let answer = read_http1_answer(&mut tls).await;
        assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
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
    assert!(anonymous.get(guard.url("/validate")).send().await.is_err());
    let other_ca = guard
        .client_builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&dev_ca).unwrap())
        .identity(reqwest::Identity::from_pem(&stranger).unwrap())
        .build()
        .unwrap();
    assert!(other_ca.get(guard.url("/validate")).send().await.is_err());
    // The kubelet's probes present no certificate: the operations port needs none.
    assert_eq!(guard.ops_get("/readyz").await.status(), 200);
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

// Memory and concurrency.

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test]
async fn a_body_declared_over_the_limit_gets_413_before_it_is_sent() {
    let guard = Guard::start(&["--max-body-bytes", "65536"]).await;
    let mut tls = tls_connect(
        guard.port,
        client_config(&guard.ca(), rustls::ALL_VERSIONS, b"http/1.1"),
    )
    .await;
    // Headers only: the answer must not wait for a body that never comes.
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 8388608\r\n\r\n")
        .await
        .unwrap();
    let answer = read_http1_answer(&mut tls).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over --max-body-bytes 65536"), "{answer}");
}

#[tokio::test]
async fn over_http2_a_body_declared_over_the_limit_gets_a_clean_413() {
    let guard = Guard::start(&["--max-body-bytes", "65536"]).await;
    let mut sender = h2_sender(&guard).await;
    // Declares 8 MiB and sends 1 MiB slowly: the answer comes before the body, as a response.
    let req = hyper::Request::post("https://localhost/validate")
        .header("content-type", "application/json")
        .header("content-length", 8 * 1024 * 1024)
        .body(SlowBody {
            left: 1024 * 1024,
            next: Box::pin(tokio::time::sleep(Duration::ZERO)),
        })
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(1), sender.send_request(req))
        .await
        .expect("answered before the body is sent")
        .expect("a response, not a reset stream");
    assert_eq!(answer.status(), 413);
    let body = axum::body::to_bytes(axum::body::Body::new(answer.into_body()), 64 * 1024)
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("over --max-body-bytes 65536"), "{body}");
}

/// The webhook's `mtls_guard_connections_total` for `protocol`.
async fn connections(guard: &Guard, protocol: &str) -> u64 {
    let metrics = guard.ops_get("/metrics").await.text().await.unwrap();
    let series = format!("mtls_guard_connections_total{{protocol=\"{protocol}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {series}in {metrics}"))
}

#[tokio::test]
async fn connections_are_counted_once_each_by_protocol_however_many_reviews_they_carry() {
    let guard = Guard::start(&[]).await;
    let (h2_before, h1_before) = (
        connections(&guard, "h2").await,
        connections(&guard, "http/1.1").await,
    );
    let mut sender = h2_sender(&guard).await;
    let seed = std::fs::read(data("seed-strict-policy.json")).unwrap();
    for _ in 0..3 {
        let req = hyper::Request::post("https://localhost/validate")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(seed.clone()))
            .unwrap();
        assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    }
    let http1 = guard.client();
    for _ in 0..3 {
        let answer = http1
            .post(guard.url("/validate"))
            .header("content-type", "application/json")
            .body(seed.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.bytes().await.unwrap();
    }
    assert_eq!(connections(&guard, "h2").await, h2_before + 1);
    assert_eq!(connections(&guard, "http/1.1").await, h1_before + 1);
}

/// An HTTP/2 connection to the guard, driven in the background.
async fn h2_sender<B>(guard: &Guard) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tls = tls_connect(
        guard.port,
        client_config(&guard.ca(), rustls::ALL_VERSIONS, b"h2"),
    )
    .await;
    let (sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    sender
}

/// A request body sent slowly: `left` bytes in 64 KiB chunks, one every 100 ms.
struct SlowBody {
    left: usize,
    next: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl hyper::body::Body for SlowBody {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::future::Future;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        std::task::ready!(self.next.as_mut().poll(cx));
        let n = self.left.min(64 * 1024);
        self.left -= n;
        let at = tokio::time::Instant::now() + Duration::from_millis(100);
        self.next.as_mut().reset(at);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(vec![b' '; n].into()))))
    }
}

/// The seed's review still gets its answer (a denial) within a second, as the API server's
/// timeout needs, while `what` goes on.
async fn seed_denied_within_a_second(guard: &Guard, what: &str) {
    let review = tokio::time::timeout(
        Duration::from_secs(1),
        guard.validate_fixture("seed-strict-policy.json"),
    )
    .await
    .unwrap_or_else(|_| panic!("the seed review is answered within a second {what}"));
    assert_eq!(review["response"]["allowed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_slow_uploads_on_one_http2_connection_hold_bounded_memory() {
    const UPLOAD: usize = 2_700_000;
    let guard = Guard::start(&[]).await;
    let pid = guard.child.id();
    let before = rss(pid);
    let sender = h2_sender(&guard).await;
    let uploads: Vec<_> = (0..60)
        .map(|_| {
            let mut sender = sender.clone();
            tokio::spawn(async move {
                let req = hyper::Request::post("https://localhost/validate")
                    .header("content-type", "application/json")
                    .header("content-length", UPLOAD)
                    .body(SlowBody {
                        left: UPLOAD,
                        next: Box::pin(tokio::time::sleep(Duration::ZERO)),
                    })
                    .unwrap();
                sender.ready().await.unwrap();
                sender.send_request(req).await.map(|r| {
                    // A shed upload is told when to come back.
                    let status = r.status().as_u16();
                    assert!(status != 503 || r.headers().contains_key("retry-after"));
                    status
                })
            })
        })
        .collect();
    // While the uploads trickle in: memory stays bounded and a real review is answered.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = rss(pid);
    seed_denied_within_a_second(&guard, "during the attack").await;
    let mut statuses = Vec::new();
    for upload in uploads {
        // A stream opened past the connection's limit is refused: 0 here.
        statuses.push(match upload.await.unwrap() {
            Ok(status) => status,
            Err(e) if format!("{e:?}").contains("REFUSED_STREAM") => 0,
            Err(e) => panic!("upload failed: {e:?}"),
        });
    }
    let shed = statuses.iter().filter(|s| [0, 503].contains(*s)).count();
    assert!(shed > 0, "some uploads are shed: {statuses:?}");
    // The rest are read whole (400: not JSON) or cut at --request-timeout (408).
    assert!(
        statuses.iter().all(|s| [0, 400, 408, 503].contains(s)),
        "{statuses:?}"
    );
    let grown = during.saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024,
        "RSS grew by {} MB during the attack",
        grown / 1024 / 1024
    );
    println!(
        "RSS {} MB before, {} MB during; {shed} of 60 uploads shed",
        before / 1024 / 1024,
        during / 1024 / 1024
    );
}

#[tokio::test]
async fn a_rotated_client_ca_is_reloaded_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (first_ca, first) = client_pki("kube-apiserver");
    let (second_ca, second) = client_pki("kube-apiserver-next");
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, first_ca).unwrap();
    let guard = Guard::start_with(
        &[
            "--client-ca",
            ca_path.to_str().unwrap(),
            "--cert-reload-interval",
            "100ms",
        ],
        None,
        Some(first.clone()),
    )
    .await;
    let dev_ca = std::fs::read(guard.ca()).unwrap();
    let presenting = |identity: &[u8]| {
        guard
            .client_builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&dev_ca).unwrap())
            .identity(reqwest::Identity::from_pem(identity).unwrap())
            .build()
            .unwrap()
    };
    let (old, new) = (presenting(&first), presenting(&second));
    assert!(new.get(guard.url("/validate")).send().await.is_err());
    let next = dir.path().join("next.crt");
    std::fs::write(&next, second_ca).unwrap();
    std::fs::rename(&next, &ca_path).unwrap();
    let reloaded = async {
        while new.get(guard.url("/validate")).send().await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(HANG_UP_BOUND, reloaded)
        .await
        .expect("the new client CA is trusted");
    assert!(old.get(guard.url("/validate")).send().await.is_err());
}

#[tokio::test]
async fn past_the_body_budget_large_bodies_are_shed_and_small_reviews_still_pass() {
    // A budget below the 1 MiB kept for small requests: no large body fits at all.
    let guard = Guard::start(&["--max-buffered-bytes", "1000000"]).await;
    let r = guard.validate(vec![b' '; 70_000]).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(error_of(r).await.contains("--max-buffered-bytes"));
    let review = guard.validate_fixture("seed-strict-policy.json").await;
    assert_eq!(review["response"]["allowed"], false);
}

/// The seed's lock-down padded to `bytes` with an annotation: a valid review, as large as the
/// body limit allows.
fn padded_seed_review(bytes: usize) -> Vec<u8> {
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("seed-strict-policy.json")).unwrap()).unwrap();
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({ "pad": "x".repeat(bytes) });
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_large_reviews_at_once_are_all_judged_and_the_seed_is_not_delayed() {
    let guard = Guard::start(&[]).await;
    let body = padded_seed_review(2_700_000);
    let large: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, body) = (guard.client(), guard.url("/validate"), body.clone());
            tokio::spawn(async move {
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .expect("a large review gets an answer, not a broken connection");
                let status = r.status().as_u16();
                let review: serde_json::Value = r.json().await.unwrap();
                (status, review)
            })
        })
        .collect();
    // Let the large bodies get under way first.
    tokio::time::sleep(Duration::from_millis(20)).await;
    seed_denied_within_a_second(&guard, "beside eight large reviews").await;
    for upload in large {
        let (status, review) = upload.await.unwrap();
        // 21.6 MB fit the default 32 MiB budget: every one is judged.
        assert_eq!(status, 200, "{review}");
        assert_eq!(
            review["response"]["allowed"], false,
            "judged, not waved through"
        );
    }
}

#[tokio::test]
async fn a_destination_rule_with_a_huge_export_to_is_refused_naming_the_field() {
    let guard = Guard::start(&[]).await;
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data("seed-strict-policy.json")).unwrap()).unwrap();
    let export_to: Vec<String> = (0..250_000).map(|i| format!("n{i}")).collect();
    review["request"]["kind"] = serde_json::json!({"group": "networking.istio.io", "version": "v1", "kind": "DestinationRule"});
    review["request"]["resource"] = serde_json::json!({"group": "networking.istio.io", "version": "v1", "resource": "destinationrules"});
    review["request"]["object"] = serde_json::json!({
        "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "everything", "namespace": "foo"},
        "spec": {"host": "*", "exportTo": export_to, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}
    });
    let body = serde_json::to_vec(&review).unwrap();
    assert!(
        body.len() > 2_000_000,
        "as large as the attack: {}",
        body.len()
    );
    let r = guard.validate(body).await;
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    assert_eq!(answer["response"]["status"]["code"], 400, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("exportTo has 250000 entries"), "{message}");
    assert_healthy(&guard).await;
}
