//! Criterion: index build, and a workload-level and a mesh-wide lock-down, at 1k and 100k pods.

#[path = "support/synthetic.rs"]
mod synthetic;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtls_guard::engine::{evaluate, Change};
use mtls_guard::inventory::file::Loader;
use mtls_guard::inventory::{Filters, Index};
use mtls_guard::model::{Rule, RuleKind};

const SIZES: [usize; 2] = [1_000, 100_000];

fn load(text: &str) -> Index {
    let mut loader = Loader::new(Filters::default());
    loader
        .add_str("synthetic", text)
        .expect("synthetic inventory loads");
    loader.finish()
}

fn pa(value: &serde_json::Value) -> Rule {
    Rule::from_json(RuleKind::PeerAuthentication, value).expect("synthetic policy reads")
}

fn benches(c: &mut Criterion) {
    let mut build = c.benchmark_group("index_build");
    build.sample_size(10);
    let texts: Vec<(usize, String)> = SIZES
        .iter()
        .map(|n| (*n, synthetic::inventory(*n).to_string()))
        .collect();
    for (n, text) in &texts {
        build.bench_with_input(BenchmarkId::from_parameter(n), text, |b, t| {
            b.iter(|| load(t))
        });
    }
    build.finish();

    let lock = pa(&synthetic::workload_lockdown(2));
    let (old, new) = synthetic::mesh_lockdown();
    let (old, new) = (pa(&old), pa(&new));
    let mut engine = c.benchmark_group("evaluate");
    for (n, text) in &texts {
        let index = load(text);
        let change = Change {
            old: None,
            new: Some(&lock),
        };
        assert!(
            evaluate(&index, &change).breaks_clients(),
            "the synthetic lock-down must deny"
        );
        engine.bench_with_input(BenchmarkId::new("workload_lockdown", n), &index, |b, i| {
            b.iter(|| evaluate(i, &change))
        });
        let mesh = Change {
            old: Some(&old),
            new: Some(&new),
        };
        engine.bench_with_input(BenchmarkId::new("mesh_lockdown", n), &index, |b, i| {
            b.iter(|| evaluate(i, &mesh))
        });
    }
    engine.finish();
}

criterion_group!(engine, benches);
criterion_main!(engine);
