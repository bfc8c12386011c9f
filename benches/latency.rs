//! Percentiles of single reviews, which criterion's means hide: the engine alone and the whole
//! admission path (JSON in, JSON out), at 1k and 100k pods. `cargo bench --bench latency`.

#[path = "support/synthetic.rs"]
mod synthetic;

use std::time::{Duration, Instant};

use mtls_guard::admission::{self, GuardMode};
use mtls_guard::engine::{evaluate, Change};
use mtls_guard::inventory::file::Loader;
use mtls_guard::inventory::{Filters, Index};
use mtls_guard::model::{Rule, RuleKind};

fn percentiles(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "n={:>6}  min={:>10.2?}  p50={:>10.2?}  p99={:>10.2?}  max={:>10.2?}",
        samples.len(),
        samples[0],
        at(0.50),
        at(0.99),
        samples[samples.len() - 1]
    )
}

fn time(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect()
}

fn main() {
    let lock_json = synthetic::workload_lockdown(2);
    let lock = Rule::from_json(RuleKind::PeerAuthentication, &lock_json).expect("policy reads");
    let (old, new) = synthetic::mesh_lockdown();
    let old = Rule::from_json(RuleKind::PeerAuthentication, &old).expect("policy reads");
    let new = Rule::from_json(RuleKind::PeerAuthentication, &new).expect("policy reads");
    let body = serde_json::to_vec(&synthetic::review(&lock_json)).expect("review serializes");
    // MTLS_GUARD_BENCH_PODS=100000 narrows the run, e.g. under a profiler.
    let sizes: Vec<usize> = std::env::var("MTLS_GUARD_BENCH_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or_else(|| vec![1_000, 10_000, 100_000], |n| vec![n]);
    // MTLS_GUARD_BENCH_MESH_ONLY=10 runs only ten mesh-wide reviews, for an instruction
    // profiler such as callgrind.
    let mesh_only: Option<usize> = std::env::var("MTLS_GUARD_BENCH_MESH_ONLY")
        .ok()
        .and_then(|v| v.parse().ok());
    for pods in sizes {
        let text = synthetic::inventory(pods).to_string();
        let started = Instant::now();
        let mut loader = Loader::new(Filters::default());
        loader.add_str("synthetic", &text).expect("inventory loads");
        let index: Index = loader.finish();
        println!(
            "{pods:>6} pods: index built in {:.2?} ({} workloads)",
            started.elapsed(),
            index.workloads().count()
        );
        let mesh = Change {
            old: Some(&old),
            new: Some(&new),
        };
        if let Some(n) = mesh_only {
            for _ in 0..n {
                std::hint::black_box(evaluate(&index, &mesh));
            }
            continue;
        }
        let change = Change {
            old: None,
            new: Some(&lock),
        };
        let v = evaluate(&index, &change);
        println!(
            "        workload lock-down: {} servers, {} clients",
            v.servers.len(),
            v.client_count()
        );
        println!(
            "        engine, workload lock-down     {}",
            percentiles(time(20_000, || {
                std::hint::black_box(evaluate(&index, &change));
            }))
        );
        let v = evaluate(&index, &mesh);
        println!(
            "        mesh lock-down: {} servers, {} clients",
            v.servers.len(),
            v.client_count()
        );
        println!(
            "        engine, mesh lock-down         {}",
            percentiles(time(200, || {
                std::hint::black_box(evaluate(&index, &mesh));
            }))
        );
        println!(
            "        admission path (JSON), workload {}",
            percentiles(time(20_000, || {
                let req = admission::parse_review(&body).expect("review parses");
                let out = admission::decide(&index, GuardMode::Enforce, &req);
                std::hint::black_box(out.reply_json().expect("serializes"));
            }))
        );
    }
}
