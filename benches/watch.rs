//! Live-watch figures: time to ready and resident memory of `mtls-guard serve` watching a real
//! kube-apiserver holding a synthetic mesh (20k pods, or `MTLS_GUARD_BENCH_PODS`), under the
//! manifests' least-privilege RBAC; then a burst of pod deletions (every ambient pod, a tenth
//! of them, in one `kubectl delete`), after which the guard must answer a mesh-wide lock-down
//! as `review` does on a dump of the same state. `cargo bench --bench watch` (builds the
//! control plane like the e2e suite); `MTLS_GUARD_BENCH_BIN` runs other builds of the guard,
//! comma-separated: each is started alone on the same cluster and measured to ready and
//! settled, one after the other, and the last one takes the burst.

#[path = "../tests/cluster/mod.rs"]
mod cluster;
#[path = "support/synthetic.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

fn pods() -> usize {
    std::env::var("MTLS_GUARD_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

/// A mesh-wide STRICT PeerAuthentication, as the API server sends it for review.
const MESH_LOCKDOWN: &str = r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
  "request": {"uid": "mesh-lockdown", "operation": "CREATE", "namespace": "istio-system", "name": "default",
    "kind": {"group": "security.istio.io", "version": "v1", "kind": "PeerAuthentication"},
    "resource": {"group": "security.istio.io", "version": "v1", "resource": "peerauthentications"},
    "userInfo": {"username": "bench"},
    "object": {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
      "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}}}}"#;

fn status(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let cp = cluster::ControlPlane::start();
    cp.install_guard_prerequisites();

    let pods = pods();
    let inventory = synthetic::inventory(pods);
    let mut items = inventory["items"].as_array().cloned().unwrap_or_default();
    // The API server allocates Service IPs from its own range.
    for svc in items.iter_mut().filter(|i| i["kind"] == "Service") {
        if let Some(spec) = svc["spec"].as_object_mut() {
            spec.remove("clusterIP");
        }
    }
    let (namespaces, rest): (Vec<Value>, Vec<Value>) = items
        .into_iter()
        .filter(|i| !(i["kind"] == "Namespace" && i["metadata"]["name"] == "istio-system"))
        .partition(|i| i["kind"] == "Namespace");
    let dir = cp.dir.path();
    let started = Instant::now();
    for (n, chunk) in std::iter::once(namespaces.as_slice())
        .chain(rest.chunks(2_000))
        .enumerate()
    {
        let file = dir.join(format!("chunk-{n}.json"));
        std::fs::write(
            &file,
            json!({"apiVersion": "v1", "kind": "List", "items": chunk}).to_string(),
        )
        .unwrap();
        cp.ok(&["create", "-f", file.to_str().unwrap(), "-o", "name"]);
    }
    println!(
        "created {pods} pods and their mesh objects in {:.1?}",
        started.elapsed()
    );

    // MTLS_GUARD_BENCH_BIN measures other builds, e.g. the image's static musl binary.
    let bins = std::env::var("MTLS_GUARD_BENCH_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_mtls-guard").to_string());
    let bins: Vec<&str> = bins.split(',').collect();
    let (last, earlier) = bins.split_last().expect("a guard to run");
    for bin in earlier {
        let (mut guard, ..) = start_measured(&cp, bin);
        let _ = guard.kill();
        let _ = guard.wait();
    }
    let bin = *last;
    let (mut guard, port, ca) = start_measured(&cp, bin);
    let guard_client = cluster::ControlPlane::client_trusting(&ca);
    let answer = || {
        cluster::ControlPlane::post_review(&guard_client, port, MESH_LOCKDOWN.as_bytes().to_vec())
    };
    let before = answer().expect("the guard answers");
    let started = Instant::now();
    let deleted = cp.ok(&[
        "delete",
        "pods",
        "-A",
        "-l",
        "istio.io/dataplane-mode=ambient",
        "--wait=false",
        "-o",
        "name",
    ]);
    let burst = deleted.lines().count();
    println!("burst: deleted {burst} pods in {:.1?}", started.elapsed());
    let review = dir.join("mesh-lockdown.json");
    std::fs::write(&review, MESH_LOCKDOWN).unwrap();
    let offline = &cp.review_on_dump(bin, &review);
    assert_ne!(&before, offline, "the burst changes the answer");
    loop {
        let now = answer();
        if now.as_ref() == Some(offline) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the guard never answered as review on the dump: {}",
            now.unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = guard.id();
    println!(
        "after the burst the guard answers as `review` on a dump of the cluster ({:.1?} after it began); VmRSS {}; VmHWM {}",
        started.elapsed(),
        status(pid, "VmRSS:"),
        status(pid, "VmHWM:")
    );
    let _ = guard.kill();
    let _ = guard.wait();
}

/// Starts `bin` on the cluster and reports its time to ready and its memory then and 5 s later.
fn start_measured(cp: &cluster::ControlPlane, bin: &str) -> (std::process::Child, u16, String) {
    let started = Instant::now();
    let (guard, port, ops_port, ca) = cp.start_guard(bin);
    let client = reqwest::Client::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = format!("http://127.0.0.1:{ops_port}/readyz");
    let ready = loop {
        let ok = rt.block_on(async {
            client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false)
        });
        if ok {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "guard not ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = guard.id();
    println!(
        "{bin}: watching {} pods: ready after {ready:.2?}; VmRSS {}; VmHWM {}",
        pods(),
        status(pid, "VmRSS:"),
        status(pid, "VmHWM:")
    );
    std::thread::sleep(Duration::from_secs(5));
    println!("5 s later: VmRSS {}", status(pid, "VmRSS:"));
    (guard, port, ca)
}
