//! Each endpoint and status through the routers alone (`oneshot`, no socket, no TLS): the HTTP
//! behaviour in milliseconds. TLS, drain and the hardening limits are tested on the binary.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use tower::ServiceExt;

use super::*;
use crate::inventory::{file, Filters, SharedIndex};

fn limits() -> Limits {
    Limits {
        max_body_bytes: 128 * 1024,
        max_buffered_bytes: 32 * 1024 * 1024,
        request_timeout: Duration::from_secs(4),
    }
}

fn state(synced: bool) -> Arc<AppState> {
    let index = file::demo(Filters::default()).unwrap();
    let shared = if synced {
        SharedIndex::complete(index)
    } else {
        SharedIndex::syncing(index, Duration::from_secs(60))
    };
    Arc::new(AppState::new(Arc::new(shared), GuardMode::Enforce, false))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

async fn send(router: Router, req: Request<Body>) -> (StatusCode, String) {
    let res = router.oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, content_type: &str, body: Vec<u8>) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap()
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// The AdmissionReview the webhook router answers to the seed's lock-down.
async fn seed_review(state: Arc<AppState>) -> serde_json::Value {
    review_of(state, fixture("seed-strict-policy.json")).await
}

async fn review_of(state: Arc<AppState>, body: Vec<u8>) -> serde_json::Value {
    let req = post("/validate", "application/json", body);
    let (status, body) = send(webhook_router(state, &limits()), req).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn validate_answers_the_seed_lockdown_with_a_denying_review() {
    let review = seed_review(state(true)).await;
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 403);
}

#[tokio::test]
async fn the_webhook_port_refuses_what_is_not_a_review() {
    let cases = [
        (get("/validate"), StatusCode::METHOD_NOT_ALLOWED),
        (
            post("/healthz", "application/json", b"{}".to_vec()),
            StatusCode::NOT_FOUND,
        ),
        (
            post(
                "/validate",
                "text/plain",
                fixture("seed-strict-policy.json"),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            post("/validate", "application/json", b"{not json".to_vec()),
            StatusCode::BAD_REQUEST,
        ),
        (
            post("/validate", "application/json", vec![b' '; 140_000]),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (req, want) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (status, body) = send(webhook_router(state(true), &limits()), req).await;
        assert_eq!(status, want, "{what}: {body}");
    }
}

/// A POST to `/validate` whose body is `first`, then whatever `rest` yields.
fn streamed(
    first: &'static str,
    rest: impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
) -> Request<Body> {
    use futures::StreamExt;
    let body = futures::stream::once(async move { Ok(Bytes::from(first)) }).chain(rest);
    Request::builder()
        .method(Method::POST)
        .uri("/validate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(body))
        .unwrap()
}

#[tokio::test]
async fn a_body_still_arriving_at_the_request_timeout_gets_408_and_frees_its_budget() {
    // The budget holds one undeclared body at a time (a large one leaves the last MiB to
    // small ones), so a reservation kept past the 408 would refuse the next review with 503.
    let limits = Limits {
        request_timeout: Duration::from_millis(50),
        max_buffered_bytes: limits().max_body_bytes + 1024 * 1024,
        ..limits()
    };
    let router = webhook_router(state(true), &limits);
    let stalled = streamed("{", futures::stream::pending());
    let bounded = |req| tokio::time::timeout(Duration::from_secs(10), send(router.clone(), req));
    let (status, _) = bounded(stalled).await.expect("answered at the timeout");
    assert_eq!(status, StatusCode::REQUEST_TIMEOUT);
    let seed = streamed(
        "",
        futures::stream::once(async { Ok(Bytes::from(fixture("seed-strict-policy.json"))) }),
    );
    let (status, body) = bounded(seed).await.expect("answered");
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_body_that_fails_midway_gets_400() {
    let broken = streamed(
        "{",
        futures::stream::once(async { Err(std::io::Error::other("connection reset")) }),
    );
    let (status, body) = send(webhook_router(state(true), &limits()), broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("could not be read"), "{body}");
}

#[tokio::test]
async fn an_unsynced_guard_denies_a_review_with_the_reason() {
    let review = seed_review(state(false)).await;
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 503);
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("not synced"), "{message}");
}

#[tokio::test]
async fn an_unsynced_guard_answers_what_needs_no_inventory() {
    let pod = review_of(state(false), fixture("unreviewed-pod.json")).await;
    assert_eq!(pod["response"]["allowed"], true, "{pod}");
    let warning = pod["response"]["warnings"][0].as_str().unwrap();
    assert!(warning.contains("does not review"), "{warning}");

    // A namespace's mode label is decided without the inventory.
    let review = crate::admission::tests::namespace_review(Some("enforce"), Some("audit"));
    let ns = review_of(state(false), serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(ns["response"]["uid"], "ns-1");
    let text = ns["response"].to_string();
    assert!(!text.contains("not synced"), "{text}");
}

#[tokio::test]
async fn the_ops_port_serves_probes_metrics_and_the_report_only_when_asked() {
    let st = state(true);
    let ops = |serve_report| ops_router(Arc::clone(&st), &limits(), serve_report);
    assert_eq!(
        send(ops(false), get("/healthz")).await,
        (StatusCode::OK, "ok".into())
    );
    let (status, why) = send(ops(false), get("/readyz")).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "no webhook listener yet"
    );
    assert!(why.contains("serving certificate"), "{why}");
    let (status, metrics) = send(ops(false), get("/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(metrics.contains("mtls_guard_inventory_synced"), "{metrics}");
    assert_eq!(
        send(ops(false), get("/report")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, page) = send(ops(true), get("/report")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("<html"), "{}", &page[..page.len().min(200)]);
}

/// An API server that accepts connections and never answers: the authorizer waits on it.
async fn silent_api_server() -> crate::authz::Authorizer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
        }
    });
    let config = kube::Config::new(url.parse().unwrap());
    crate::authz::Authorizer::new(kube::Client::try_from(config).unwrap())
}

/// The seed's lock-down with a break-glass reason this request sets: it needs the API
/// server's word on who may use it.
fn break_glass_review() -> Vec<u8> {
    let mut review: serde_json::Value =
        serde_json::from_slice(&fixture("seed-strict-policy.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({ "mtls-guard.io/break-glass": "INC-1 legacy retired tonight" });
    serde_json::to_vec(&review).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_stuck_past_its_deadline_is_answered_and_does_not_hold_up_others() {
    let index = file::demo(Filters::default()).unwrap();
    let st = Arc::new(
        AppState::new(
            Arc::new(SharedIndex::complete(index)),
            GuardMode::Enforce,
            false,
        )
        .with_authorizer(Some(silent_api_server().await))
        .with_review_limits(1, Duration::from_secs(2))
        .with_inline_work(0),
    );
    let stuck = {
        let router = webhook_router(Arc::clone(&st), &limits());
        tokio::spawn(send(
            router,
            post("/validate", "application/json", break_glass_review()),
        ))
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Decided long before the stuck review's deadline: it does not hold the one permit.
    let other = tokio::time::timeout(Duration::from_secs(1), seed_review(Arc::clone(&st)))
        .await
        .expect("the other review is not held up by the stuck one");
    assert_eq!(other["response"]["status"]["code"], 403, "{other}");

    let (status, body) = stuck.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let review: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["response"]["allowed"], false, "enforce denies");
    assert_eq!(review["response"]["status"]["code"], 503, "{review}");
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("review deadline"), "{message}");
    let (_, metrics) = send(ops_router(st, &limits(), false), get("/metrics")).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("verdict=\"timeout\"") && l.ends_with(" 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_small_review_is_decided_inline_and_a_larger_one_on_the_pool_alike() {
    let offloaded = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("mtls_guard_reviews_offloaded_total "))
            .map(str::to_owned)
    };
    let inline = state(true);
    let pooled = Arc::new(
        AppState::new(
            Arc::new(SharedIndex::complete(
                file::demo(Filters::default()).unwrap(),
            )),
            GuardMode::Enforce,
            false,
        )
        .with_inline_work(1),
    );
    let (a, b) = (
        seed_review(Arc::clone(&inline)).await,
        seed_review(Arc::clone(&pooled)).await,
    );
    assert_eq!(a["response"]["status"]["code"], 403, "{a}");
    assert_eq!(a["response"], b["response"]);
    for (st, expected) in [(Arc::clone(&inline), "0"), (pooled, "1")] {
        let (_, metrics) = send(ops_router(st, &limits(), false), get("/metrics")).await;
        assert_eq!(offloaded(&metrics).as_deref(), Some(expected), "{metrics}");
    }

    // A body past 64 KiB goes to the pool whatever the engine's work: comparing the specs
    // grows with it.
    let mut large: serde_json::Value =
        serde_json::from_slice(&fixture("seed-strict-policy.json")).unwrap();
    large["request"]["object"]["metadata"]["labels"] =
        serde_json::json!({ "padding": "x".repeat(70 * 1024) });
    large["request"]["uid"] = serde_json::json!("large");
    let req = post(
        "/validate",
        "application/json",
        serde_json::to_vec(&large).unwrap(),
    );
    let (status, body) = send(webhook_router(Arc::clone(&inline), &limits()), req).await;
    assert_eq!(status, StatusCode::OK);
    let review: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["response"]["status"]["code"], 403, "{review}");
    let (_, metrics) = send(ops_router(inline, &limits(), false), get("/metrics")).await;
    assert_eq!(offloaded(&metrics).as_deref(), Some("1"), "{metrics}");
}

#[test]
fn log_safe_escapes_c0_del_and_c1_controls_and_keeps_other_text() {
    for (text, escaped) in [
        ("u1\nINFO", r"u1\nINFO"),
        ("a\u{7f}b", r"a\u{7f}b"),
        ("next\u{85}line", r"next\u{85}line"),
        ("csi\u{9b}31m", r"csi\u{9b}31m"),
    ] {
        assert_eq!(log_safe(text), escaped, "{text:?}");
    }
    for text in ["team-0000/svc", "café ¢ Ā", "system:serviceaccount:ns:name"] {
        assert!(
            matches!(log_safe(text), std::borrow::Cow::Borrowed(t) if t == text),
            "{text:?}"
        );
    }
}
