//! A review within a budget: it finishes with its whole verdict or not at all, and each list
//! it walks costs it at least one unit per entry.

use serde_json::json;

use super::fixtures::*;
use crate::engine::*;
use crate::inventory::{file, Filters, Index};
use crate::model::{MeshConfig, Rule};

const N: usize = 64;

fn change(new: &Rule) -> Change<'_> {
    Change {
        old: None,
        new: Some(new),
    }
}

fn within<'a>(
    index: &'a Index,
    change: &Change<'a>,
    evidence: &Evidence,
    units: usize,
) -> Option<Verdict<'static>> {
    evaluate_within(index, change, evidence, &Budget::new(units)).map(Verdict::into_owned)
}

/// The least budget the review finishes within, checking that every smaller one gives no
/// verdict and the budgets around it the whole verdict.
fn cost(index: &Index, change: &Change, evidence: &Evidence) -> usize {
    let full = evaluate_with(index, change, evidence).into_owned();
    let (mut short, mut enough) = (0, 1);
    if within(index, change, evidence, 0).is_some() {
        return 0;
    }
    while within(index, change, evidence, enough).is_none() {
        short = enough;
        enough *= 2;
    }
    while short + 1 < enough {
        let mid = (short + enough) / 2;
        match within(index, change, evidence, mid) {
            Some(_) => enough = mid,
            None => short = mid,
        }
    }
    for units in [enough, enough + 1, enough * 2] {
        assert_eq!(within(index, change, evidence, units), Some(full.clone()));
    }
    enough
}

fn inventory() -> Evidence {
    Evidence::inventory_only()
}

#[test]
fn within_any_budget_a_review_finishes_with_its_whole_verdict_or_not_at_all() {
    let seed = seed();
    let lockdown = seed_lockdown();
    let mesh_strict = mesh_policy(json!({"peers": [{"mtls": {}}]}));
    let plaintext_dr = dr(
        "bar",
        "to-httpbin",
        json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    let strict = strict_httpbin();
    let strict_pa = strict_httpbin_pa();
    let cases: [(&Index, Change); 4] = [
        (&seed, change(&lockdown)),
        (&seed, change(&mesh_strict)),
        (&strict, change(&plaintext_dr)),
        (&seed, change(&strict_pa)),
    ];
    for (index, change) in &cases {
        let full = evaluate_with(index, change, &inventory());
        let needed = cost(index, change, &inventory());
        assert!(needed > 0, "a review with servers to judge costs something");
        for units in 0..needed {
            assert_eq!(within(index, change, &inventory(), units), None);
        }
        assert!(full.denies() || !full.breaks.is_empty() || !full.servers.is_empty());
    }

    let on = MeshConfig::default();
    let off = MeshConfig {
        enable_auto_mtls: false,
        ..MeshConfig::default()
    };
    let full = evaluate_mesh_change(&strict, &on, &off, &inventory()).into_owned();
    assert!(
        full.denies(),
        "turning auto mTLS off cuts httpbin's clients off"
    );
    let within_mesh = |units| {
        evaluate_mesh_change_within(&strict, &on, &off, &inventory(), &Budget::new(units))
            .map(Verdict::into_owned)
    };
    assert_eq!(within_mesh(1), None);
    assert_eq!(within_mesh(1 << 20), Some(full));
}

/// The seed without its DestinationRule: auto mTLS is off, so every sidecar client of
/// httpbin sends plaintext once it is STRICT, and the review walks them all.
fn seed_sending_plaintext() -> Index {
    let mut index = seed();
    index.remove_rule(&seed_dr_origin());
    index
}

fn fill(index: &mut Index, namespace: &str, each: impl Fn(PodFixture) -> PodFixture) {
    for i in 0..N {
        index.upsert_pod(each(pod(namespace, &format!("app-{i:03}"))).build());
    }
}

/// `grow` adds [`N`] entries to one list the review walks; the review must cost at least
/// that much more, or a large list could keep a server's thread busy past its budget.
fn grows_by_its_list(name: &str, base: fn() -> Index, grow: impl Fn(&mut Index), change: &Change) {
    grows_with(name, base, grow, change, &inventory(), &inventory());
}

fn grows_with(
    name: &str,
    base: fn() -> Index,
    grow: impl Fn(&mut Index),
    change: &Change,
    before: &Evidence,
    after: &Evidence,
) {
    let mut grown = base();
    grow(&mut grown);
    let (small, large) = (cost(&base(), change, before), cost(&grown, change, after));
    assert!(large >= small + N, "{name}: {small} -> {large}");
}

#[test]
fn each_list_a_review_walks_costs_it_a_unit_per_entry() {
    let lockdown = seed_lockdown();
    let lockdown = change(&lockdown);
    grows_by_its_list(
        "sidecar clients",
        seed_sending_plaintext,
        |i| fill(i, "fill", PodFixture::sidecar),
        &lockdown,
    );
    grows_by_its_list(
        "clients with outbound exclusions",
        seed,
        |i| {
            fill(i, "fill", |p| {
                p.sidecar()
                    .annotation("traffic.sidecar.istio.io/excludeOutboundPorts", "8000")
            })
        },
        &lockdown,
    );
    grows_by_its_list(
        "selector PeerAuthentications of the server's namespace",
        seed,
        |index| {
            for i in 0..N {
                let sel = json!({"selector": {"matchLabels": {"app": format!("x{i}")}}});
                index.upsert_rule(pa("foo", &format!("pa-{i}"), sel));
            }
        },
        &lockdown,
    );
    grows_by_its_list(
        "DestinationRules a client's lookup reads",
        seed,
        |index| {
            for i in 0..N {
                let host = json!({"host": format!("other-{i}.foo.svc.cluster.local")});
                index.upsert_rule(dr("foo", &format!("dr-{i}"), host));
            }
        },
        &lockdown,
    );
    grows_by_its_list(
        "workloads a selector reads without matching them",
        || {
            let sel = json!({"selector": {"matchLabels": {"tier": "web", "role": "b"}}});
            with(seed(), [pa("foo", "web-b", sel)])
        },
        |index| {
            for (tier, role) in [("web", "a"), ("api", "b")] {
                for i in 0..N {
                    let p = pod("foo", &format!("{tier}-{i:03}")).label("tier", tier);
                    index.upsert_pod(p.label("role", role).build());
                }
            }
        },
        &lockdown,
    );
    let mesh_strict = mesh_policy(json!({"peers": [{"mtls": {}}]}));
    grows_by_its_list(
        "workloads a mesh-wide policy reaches",
        seed,
        |i| fill(i, "fill", |p| p),
        &change(&mesh_strict),
    );
}

#[test]
fn network_policies_and_observed_senders_cost_a_review_too() {
    let lockdown = seed_lockdown();
    let lockdown = change(&lockdown);
    grows_by_its_list(
        "NetworkPolicies of the server's namespace",
        || {
            file::demo(Filters {
                respect_network_policies: true,
                ..Filters::default()
            })
            .unwrap()
        },
        |index| {
            for i in 0..N {
                let raw = json!({
                    "metadata": {"namespace": "foo", "name": format!("np-{i}")},
                    "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}]}]},
                });
                let np =
                    crate::model::NetworkPolicy::from_api(&serde_json::from_value(raw).unwrap());
                index.upsert_network_policy(np.unwrap());
            }
        },
        &lockdown,
    );
    let senders = |n: usize| {
        let mut edges = crate::evidence::PlaintextEdges::default();
        for i in 0..n {
            edges.add(("foo", "httpbin"), ("legacy", &format!("sender-{i}")), 1, 0);
        }
        Evidence {
            mode: EvidenceMode::Both,
            window: std::time::Duration::from_secs(3600),
            edges: Some(std::sync::Arc::new(edges)),
            stale_reason: None,
        }
    };
    grows_with(
        "senders seen in traffic",
        seed,
        |_| {},
        &lockdown,
        &senders(1),
        &senders(1 + N),
    );
}
