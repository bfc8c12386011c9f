//! The guard through faults of the API server it watches: kube-apiserver killed and started
//! again, and etcd's history compacted, while reviews keep coming. No review may be decided on
//! a store older than `--max-staleness`, readiness must drop meanwhile, the guard must recover
//! without a restart, and its index must then equal a fresh list of the cluster. A discovery
//! the API server refuses must keep the guard unready, never count a kind as empty. An API
//! server that does not stream lists gets paged ones.

mod cluster;
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{demo_objects, ControlPlane};
use serde_json::Value;

const STALENESS: Duration = Duration::from_secs(3);

fn get(url: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    })
}

fn get_text(url: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        match reqwest::get(url).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    })
}

/// The guard's answer to the seed's lock-down, posted straight to it.
fn review(client: &reqwest::Client, port: u16) -> Option<Value> {
    let body = std::fs::read(common::data("seed-strict-policy.json")).unwrap();
    ControlPlane::post_review(client, port, body)
}

#[test]
fn an_api_server_restart_and_a_compacted_history_leave_no_stale_decision() {
    let mut cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    cp.apply_seed_policies();
    let staleness = format!("{}s", STALENESS.as_secs());
    let (mut child, port, ops, ca) =
        cp.start_guard_with(common::BIN, &["--max-staleness", &staleness]);
    let readyz = format!("http://127.0.0.1:{ops}/readyz");
    cp.wait_until("the guard to be ready", Duration::from_secs(60), || {
        get(&readyz) == 200
    });
    let client = ControlPlane::client_trusting(&ca);

    // Reviews keep coming, straight to the guard, each with the time it was answered.
    let answers: Arc<Mutex<Vec<(Instant, Value)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (answers, stop, client) = (Arc::clone(&answers), Arc::clone(&stop), client.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if let Some(r) = review(&client, port) {
                    answers.lock().unwrap().push((Instant::now(), r));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let mut stopped = None;
    cp.restart_apiserver(Duration::from_secs(8), || {
        stopped = Some(Instant::now());
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&readyz) != 503 {
            assert!(
                Instant::now() < deadline,
                "readiness did not drop while the API server was down"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let restarted = Instant::now();
    let stopped = stopped.unwrap();

    // legacy/sleep gets its sidecar while the guard's watches are resuming, then the history
    // they would resume from is compacted away.
    cp.ok(&["delete", "pods", "--all", "-n", "legacy", "--wait=true"]);
    let migrated = demo_objects(&["Pod"]);
    let mut pods: Value = serde_json::from_str(&migrated).unwrap();
    pods["items"] = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["metadata"]["namespace"] == "legacy")
        .map(|p| {
            let mut p = p.clone();
            p["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!({"name": "istio-proxy", "image": "istio/proxyv2"}));
            p["metadata"]["labels"]["security.istio.io/tlsMode"] = "istio".into();
            p
        })
        .collect();
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], &pods.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    cp.compact_etcd();
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(&readyz) != 200 {
        assert!(
            Instant::now() < deadline,
            "the guard did not recover: {}\n{}",
            get_text(&readyz),
            cp.log_tail("guard.log")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the guard kept running"
    );

    // Its index equals a fresh list: the same answer as `review` on a dump of the cluster.
    let offline = &cp.review_on_dump(common::BIN, &common::data("seed-strict-policy.json"));
    assert_eq!(
        offline["allowed"], true,
        "legacy/sleep is migrated: {offline}"
    );
    cp.wait_until(
        "the guard to answer as a fresh list does",
        Duration::from_secs(20),
        || review(&client, port).as_ref() == Some(offline),
    );
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();

    // No review was decided on a store older than --max-staleness: past it, until the API
    // server was back, every answer is the unsynced refusal.
    let answers = answers.lock().unwrap();
    let margin = Duration::from_secs(1);
    let stale: Vec<&Value> = answers
        .iter()
        .filter(|(at, _)| *at > stopped + STALENESS + margin && *at < restarted)
        .map(|(_, r)| r)
        .collect();
    assert!(!stale.is_empty(), "reviews came while the store was stale");
    for r in &stale {
        assert_eq!(r["allowed"], false, "{r}");
        assert_eq!(r["status"]["code"], 503, "decided on a stale store: {r}");
    }
    assert!(
        answers
            .iter()
            .all(|(_, r)| r["allowed"] == false || r == offline),
        "the lock-down was only allowed once legacy/sleep was migrated"
    );
}

#[test]
fn a_crd_deleted_while_watched_counts_as_empty_not_as_failing() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    let staleness = format!("{}s", STALENESS.as_secs());
    let (mut child, _, ops, _) = cp.start_guard_with(common::BIN, &["--max-staleness", &staleness]);
    let readyz = format!("http://127.0.0.1:{ops}/readyz");
    cp.wait_until("the guard to be ready", Duration::from_secs(60), || {
        get(&readyz) == 200
    });
    cp.ok(&["delete", "crd", "policies.authentication.istio.io"]);
    // Past --max-staleness a watch failing for good would have made it unready; it stays ready.
    std::thread::sleep(STALENESS + Duration::from_secs(4));
    cp.wait_until(
        "readiness with the kind gone",
        Duration::from_secs(30),
        || get(&readyz) == 200,
    );
    assert!(
        cp.log_tail("guard.log").contains("no longer served"),
        "{}",
        cp.log_tail("guard.log")
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_forbidden_discovery_keeps_the_guard_unready_instead_of_counting_kinds_as_empty() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    // Nobody may read the discovery documents: the API server answers 403, which says
    // nothing about whether the Istio kinds exist.
    let subjects = cp.ok(&[
        "get",
        "clusterrolebinding",
        "system:discovery",
        "-o",
        "jsonpath={.subjects}",
    ]);
    cp.ok(&[
        "patch",
        "clusterrolebinding",
        "system:discovery",
        "--type",
        "json",
        "-p",
        r#"[{"op": "replace", "path": "/subjects", "value": []}]"#,
    ]);
    let (mut child, _, ops, _) = cp.start_guard_with(common::BIN, &[]);
    let readyz = format!("http://127.0.0.1:{ops}/readyz");
    let guard_log = || std::fs::read_to_string(cp.dir.path().join("guard.log")).unwrap_or_default();
    cp.wait_until(
        "the failing discovery to be logged",
        Duration::from_secs(60),
        || guard_log().contains("discovery failed"),
    );
    cp.wait_until("the other kinds to sync", Duration::from_secs(60), || {
        guard_log()
            .lines()
            .any(|l| l.contains("synced") && l.contains("kind=\"Pod\""))
    });
    let why = get_text(&readyz);
    assert_eq!(get(&readyz), 503, "{why}");
    assert!(why.contains("PeerAuthentication"), "{why}");
    assert!(
        !guard_log().contains("CRD not installed"),
        "{}",
        guard_log()
    );

    // Discovery allowed again: the guard finds the kinds by itself and turns ready.
    cp.ok(&[
        "patch",
        "clusterrolebinding",
        "system:discovery",
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"subjects": {subjects}}}"#),
    ]);
    cp.wait_until(
        "readiness once discovery answers",
        Duration::from_secs(60),
        || get(&readyz) == 200,
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_api_server_that_does_not_stream_lists_gets_pages_and_the_guard_still_judges() {
    let mut cp = ControlPlane::start();
    // As Kubernetes 1.33 ships: streamed lists (sendInitialEvents) are refused with a 422.
    cp.reconfigure_apiserver(&["--feature-gates=WatchList=false"]);
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    let (mut child, port, ops, ca) = cp.start_guard_with(common::BIN, &[]);
    let guard_log = || std::fs::read_to_string(cp.dir.path().join("guard.log")).unwrap_or_default();
    cp.wait_until("the guard to be ready", Duration::from_secs(60), || {
        get(&format!("http://127.0.0.1:{ops}/readyz")) == 200
    });
    assert!(
        guard_log().contains("does not stream lists"),
        "{}",
        guard_log()
    );
    let answer = review(&ControlPlane::client_trusting(&ca), port).expect("an answer");
    let message = answer["status"]["message"].as_str().unwrap_or("");
    assert_eq!(answer["allowed"], false, "{answer}");
    assert!(message.contains("legacy/sleep"), "{answer}");
    let _ = child.kill();
    let _ = child.wait();
}
