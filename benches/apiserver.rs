//! What the guard adds to a policy write through the API server: the latency of a server-side
//! dry-run create of a PeerAuthentication (an API call in a loop, no kubectl), with the guard
//! registered and without it, alternating on the same API server; then the API server's own
//! `apiserver_admission_webhook_admission_duration_seconds` and the guard's review duration.
//! `cargo bench --bench apiserver` (builds the control plane like the e2e suite).

#[path = "../tests/cluster/mod.rs"]
mod cluster;

use std::time::{Duration, Instant};

use serde_json::json;

const CALLS: usize = 500;
const ROUNDS: usize = 4;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The total of a metric's series whose labels contain `filter`.
fn total(metrics: &str, name: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The sum and count of a histogram's series whose labels contain `filter`.
fn histogram(metrics: &str, name: &str, filter: &str) -> (f64, f64) {
    (
        total(metrics, &format!("{name}_sum"), filter),
        total(metrics, &format!("{name}_count"), filter),
    )
}

fn main() {
    let cp = cluster::ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    let (mut guard, port, ops_port, ca) = cp.start_guard(env!("CARGO_BIN_EXE_mtls-guard"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let ops = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client");
    let ops_get = |path: &str| {
        rt.block_on(async {
            match ops
                .get(format!("http://127.0.0.1:{ops_port}{path}"))
                .send()
                .await
            {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    };
    cp.wait_until("the guard to be ready", Duration::from_secs(60), || {
        ops_get("/readyz").0 == 200
    });
    cp.apply_seed_policies();
    cp.ok(&["create", "serviceaccount", "bench", "-n", "default"]);
    cp.ok(&[
        "create",
        "clusterrolebinding",
        "bench",
        "--clusterrole=cluster-admin",
        "--serviceaccount=default:bench",
    ]);
    let token = cp.ok(&["create", "token", "bench", "-n", "default"]);
    let api = cluster::ControlPlane::client_trusting(&cp.ca_pem);
    let url = format!(
        "https://127.0.0.1:{}/apis/security.istio.io/v1/namespaces/foo/peerauthentications?dryRun=All",
        cp.port
    );
    let policy = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "bench", "namespace": "foo"},
        "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "PERMISSIVE"}}});
    let call = || {
        rt.block_on(async {
            let started = Instant::now();
            let r = api
                .post(&url)
                .bearer_auth(token.trim())
                .json(&policy)
                .send()
                .await
                .expect("the API server answers");
            assert!(r.status().is_success(), "dry-run create: {}", r.status());
            started.elapsed()
        })
    };

    println!("{CALLS} dry-run creates of a PeerAuthentication per round, one at a time");
    println!("{:>6} {:>10} {:>10} {:>10}", "round", "guard", "p50", "p99");
    let mut p50 = [Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let registered = round % 2 == 1;
        if registered {
            cp.register_webhook_url(port, &ca);
        } else {
            cp.ok(&[
                "delete",
                "validatingwebhookconfiguration",
                "mtls-guard",
                "--ignore-not-found",
            ]);
        }
        // The API server's webhook informer picks the change up within moments.
        std::thread::sleep(Duration::from_secs(2));
        for _ in 0..50 {
            call();
        }
        let mut samples: Vec<Duration> = (0..CALLS).map(|_| call()).collect();
        samples.sort();
        let (a, b) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
        p50[usize::from(registered)].push(a);
        println!(
            "{round:>6} {:>10} {a:>10.2?} {b:>10.2?}",
            if registered { "on" } else { "off" }
        );
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len() as u32;
    let (off, on) = (mean(&p50[0]), mean(&p50[1]));
    println!(
        "p50 with the guard {on:.2?}, without {off:.2?}: it adds {:.2?}",
        on.saturating_sub(off)
    );

    let metrics =
        String::from_utf8_lossy(&cp.kubectl(&["get", "--raw", "/metrics"]).stdout).into_owned();
    let (sum, count) = histogram(
        &metrics,
        "apiserver_admission_webhook_admission_duration_seconds",
        "validate.mtls-guard.io",
    );
    let (_, own) = ops_get("/metrics");
    let (gsum, gcount) = histogram(&own, "mtls_guard_review_duration_seconds", "");
    println!(
        "API server, per call to the guard: {:.3} ms mean over {count} calls; inside the guard: {:.3} ms mean over {gcount} reviews",
        1e3 * sum / count.max(1.0),
        1e3 * gsum / gcount.max(1.0)
    );
    // Whether the API server keeps its connections to the guard, or pays a handshake per call.
    let h2 = total(&own, "mtls_guard_connections_total", "\"h2\"");
    let http1 = total(&own, "mtls_guard_connections_total", "\"http/1.1\"");
    println!("TLS connections the guard accepted for those calls: {h2} over HTTP/2, {http1} over HTTP/1.1");
    let _ = guard.kill();
    let _ = guard.wait();
}
