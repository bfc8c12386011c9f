//! Traffic evidence against a real Prometheus holding Istio's standard metrics.

mod common;
mod prometheus;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mtls_guard::evidence::{self, EvidenceMode, PrometheusClient, PrometheusOptions, Traffic};
use prometheus::{edge, OpenMetrics, Prometheus};

const REQUESTS: &str = "istio_requests_total";
const TCP: &str = "istio_tcp_connections_opened_total";
/// The window the tests poll with; older traffic must not count.
const WINDOW: Duration = Duration::from_secs(2 * 3600);

/// The seed's traffic, seen by the servers' proxies over the last three hours.
fn seed_traffic() -> String {
    let mut om = OpenMetrics::new();
    // legacy/sleep has no sidecar: httpbin's sidecar sees plaintext from "unknown".
    om.counter(
        REQUESTS,
        &edge(
            "destination",
            "none",
            ("unknown", "unknown"),
            ("foo", "httpbin"),
        ),
        180,
        1,
        10,
    );
    // Sidecar clients speak mTLS: never evidence.
    om.counter(
        REQUESTS,
        &edge(
            "destination",
            "mutual_tls",
            ("foo", "sleep"),
            ("foo", "httpbin"),
        ),
        180,
        1,
        50,
    );
    // A sidecar client whose DestinationRule disables TLS: plaintext with a name.
    om.counter(
        REQUESTS,
        &edge("destination", "none", ("bar", "sleep"), ("foo", "httpbin")),
        180,
        1,
        2,
    );
    // The client side's report of the same kind of traffic is not counted twice.
    om.counter(
        REQUESTS,
        &edge("source", "unknown", ("bar", "sleep"), ("bar", "httpbin")),
        180,
        1,
        7,
    );
    // ztunnel reports plaintext it passed as "unknown".
    om.counter(
        TCP,
        &edge(
            "destination",
            "unknown",
            ("legacy", "sleep"),
            ("bar", "httpbin"),
        ),
        180,
        1,
        3,
    );
    om.counter(
        TCP,
        &edge(
            "destination",
            "mutual_tls",
            ("foo", "sleep"),
            ("bar", "httpbin"),
        ),
        180,
        1,
        3,
    );
    // Plaintext that stopped: a flat counter in the window, and traffic older than it.
    om.counter(
        REQUESTS,
        &edge(
            "destination",
            "none",
            ("legacy", "cron"),
            ("foo", "httpbin"),
        ),
        180,
        1,
        0,
    );
    om.counter(
        REQUESTS,
        &edge(
            "destination",
            "none",
            ("legacy", "batch"),
            ("bar", "httpbin"),
        ),
        180,
        150,
        5,
    );
    om.text()
}

fn options(url: &str) -> PrometheusOptions {
    PrometheusOptions {
        url: url.parse().unwrap(),
        token_file: None,
        ca_file: None,
        window: WINDOW,
        timeout: Duration::from_secs(10),
    }
}

/// (namespace, workload, requests, connections) of each sender to a destination.
fn senders(ev: &evidence::Evidence, ns: &str, w: &str) -> Vec<(String, String, u64, u64)> {
    ev.senders_to(ns, w)
        .iter()
        .map(|s| {
            (
                s.namespace.clone(),
                s.workload.clone(),
                s.requests,
                s.connections,
            )
        })
        .collect()
}

#[tokio::test]
async fn the_poller_keeps_exactly_the_plaintext_edges_in_the_window() {
    let prom = Prometheus::start(&seed_traffic()).await;
    let client = PrometheusClient::new(options(&prom.url())).unwrap();
    let traffic = Arc::new(Traffic::new(EvidenceMode::Both, WINDOW));
    let poller = tokio::spawn(evidence::poll(
        client,
        Arc::clone(&traffic),
        Duration::from_secs(1),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while traffic.last_success().is_none() {
        assert!(
            Instant::now() < deadline,
            "no successful poll: {:?}",
            traffic.last_error()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    poller.abort();
    let ev = traffic.evidence();
    assert!(ev.is_current(), "{:?}", ev.stale_reason);

    let foo = senders(&ev, "foo", "httpbin");
    let names: Vec<(&str, &str)> = foo.iter().map(|s| (s.0.as_str(), s.1.as_str())).collect();
    assert_eq!(names, [("bar", "sleep"), ("unknown", "unknown")], "{foo:?}");
    assert!(ev.senders_to("foo", "httpbin")[1].is_unknown());
    // 10 requests every 10 minutes over a 2h window: the increase, not the counter's 180.
    let unknown = &foo[1];
    assert!((100..=140).contains(&unknown.2), "{unknown:?}");
    assert_eq!(unknown.3, 0, "no TCP series for this edge");
    assert!(foo[0].2 > 0);

    let bar = senders(&ev, "bar", "httpbin");
    assert_eq!(bar.len(), 1, "{bar:?}");
    assert_eq!((bar[0].0.as_str(), bar[0].1.as_str()), ("legacy", "sleep"));
    assert_eq!(bar[0].2, 0);
    assert!(bar[0].3 > 0, "{bar:?}");

    assert!(ev.senders_to("foo", "sleep").is_empty());
    let metrics = mtls_guard::metrics::traffic(traffic.status());
    assert!(
        metrics.contains("mtls_guard_traffic_evidence_up 1"),
        "{metrics}"
    );
    assert!(metrics.contains("mtls_guard_traffic_edges 3"), "{metrics}");
}

#[tokio::test]
async fn an_unreachable_prometheus_leaves_the_evidence_stale() {
    // A port nobody listens on: connection refused.
    let url = format!("http://127.0.0.1:{}", common::free_port());
    let client = PrometheusClient::new(options(&url)).unwrap();
    let traffic = Arc::new(Traffic::new(EvidenceMode::Both, WINDOW));
    let err = evidence::refresh_once(&client, &traffic).await.unwrap_err();
    assert!(err.to_string().contains("Prometheus unreachable"), "{err}");
    let ev = traffic.evidence();
    assert!(ev.edges.is_none());
    assert!(!ev.is_current());
    assert!(
        ev.stale_reason
            .as_deref()
            .is_some_and(|r| r.contains("unreachable")),
        "{:?}",
        ev.stale_reason
    );
    assert!(ev.senders_to("foo", "httpbin").is_empty());
    assert!(
        mtls_guard::metrics::traffic(traffic.status()).contains("mtls_guard_traffic_evidence_up 0")
    );

    // The poller records the failure and keeps going.
    let polled = Arc::new(Traffic::new(EvidenceMode::Both, WINDOW));
    let poller = tokio::spawn(evidence::poll(
        client,
        Arc::clone(&polled),
        Duration::from_secs(1),
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !polled
        .last_error()
        .is_some_and(|e| e.contains("unreachable"))
    {
        assert!(Instant::now() < deadline, "{:?}", polled.last_error());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!poller.is_finished());
    poller.abort();

    // A token file that cannot be read is an error of its own, named by its flag.
    let mut opts = options(&url);
    opts.token_file = Some("/nonexistent/token".into());
    let client = PrometheusClient::new(opts).unwrap();
    let err = evidence::refresh_once(&client, &traffic).await.unwrap_err();
    assert!(
        err.to_string().starts_with("--prometheus-token-file"),
        "{err}"
    );
}

#[tokio::test]
async fn a_bad_query_answer_is_an_error_not_edges() {
    // Prometheus itself, at a path that is not its API: 404 with a plain-text body.
    let prom = Prometheus::start(&seed_traffic()).await;
    let client = PrometheusClient::new(options(&format!("{}/nothing-here", prom.url()))).unwrap();
    let traffic = Traffic::new(EvidenceMode::Both, WINDOW);
    let err = evidence::refresh_once(&client, &traffic).await.unwrap_err();
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    assert!(traffic.evidence().edges.is_none());
}

#[tokio::test]
async fn serve_polls_prometheus_and_exports_the_traffic_metrics() {
    let prom = Prometheus::start(&seed_traffic()).await;
    let guard = common::Guard::start(&[
        "--prometheus-url",
        &prom.url(),
        "--traffic-window",
        "2h",
        "--traffic-refresh",
        "1s",
    ])
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = guard.ops_get("/metrics").await.text().await.unwrap();
        if text.contains("mtls_guard_traffic_evidence_up 1") {
            break text;
        }
        assert!(Instant::now() < deadline, "never up:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(text.contains("mtls_guard_traffic_edges 3"), "{text}");
    assert!(
        !text.contains("mtls_guard_traffic_last_success_timestamp_seconds 0\n"),
        "{text}"
    );
    // The review names what the telemetry saw arriving at foo/httpbin, besides the inventory.
    let review = guard.validate_fixture("seed-strict-policy.json").await;
    let msg = review["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("unknown sender -> foo/httpbin: seen sending plaintext"),
        "{msg}"
    );
    assert!(msg.contains("[evidence: traffic]"), "{msg}");
    assert!(msg.contains("legacy/sleep -> foo/httpbin"), "{msg}");
}

#[tokio::test]
async fn serve_with_prometheus_down_decides_on_the_inventory_and_says_so() {
    let guard = common::Guard::start(&[
        "--prometheus-url",
        &format!("http://127.0.0.1:{}", common::free_port()),
        "--traffic-refresh",
        "1s",
    ])
    .await;
    let review = guard.validate_fixture("seed-strict-policy.json").await;
    let msg = review["response"]["status"]["message"].as_str().unwrap();
    assert_eq!(review["response"]["allowed"], false);
    assert!(msg.contains("Traffic evidence unavailable"), "{msg}");
    assert!(msg.contains("decided on the inventory alone"), "{msg}");
}
