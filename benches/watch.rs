//! Live-watch figures: time to ready and resident memory of `mtls-guard serve` watching a real
//! kube-apiserver holding a synthetic 20k-pod mesh, under the manifests' least-privilege RBAC.
//! `cargo bench --bench watch` (builds the control plane like the e2e suite).

#[path = "../tests/cluster/mod.rs"]
mod cluster;
#[path = "support/synthetic.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PODS: usize = 20_000;

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

    let inventory = synthetic::inventory(PODS);
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
        "created {PODS} pods and their mesh objects in {:.1?}",
        started.elapsed()
    );

    let started = Instant::now();
    let (mut guard, _, ops_port, _) = cp.start_guard(env!("CARGO_BIN_EXE_mtls-guard"));
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
        "watching {PODS} pods: ready after {ready:.2?}; VmRSS {}; VmHWM {}",
        status(pid, "VmRSS:"),
        status(pid, "VmHWM:")
    );
    std::thread::sleep(Duration::from_secs(5));
    println!("5 s later: VmRSS {}", status(pid, "VmRSS:"));
    let _ = guard.kill();
    let _ = guard.wait();
}
