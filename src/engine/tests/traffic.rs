//! Observed plaintext traffic as evidence, alone or beside the inventory.

use super::fixtures::*;
use crate::engine::*;

fn traffic(mode: EvidenceMode, senders: &[(&str, &str, u64)], stale: Option<&str>) -> Evidence {
    let mut edges = crate::evidence::PlaintextEdges::default();
    for (ns, wl, req) in senders {
        edges.add(("foo", "httpbin"), (ns, wl), *req, 0);
    }
    Evidence {
        mode,
        window: std::time::Duration::from_secs(24 * 3600),
        edges: Some(std::sync::Arc::new(edges)),
        stale_reason: stale.map(String::from),
    }
}

/// The seed's lock-down judged with `evidence`.
fn seed_lockdown_seen(evidence: &Evidence) -> Verdict<'static> {
    let lockdown = seed_lockdown();
    let change = Change {
        old: None,
        new: Some(&lockdown),
    };
    evaluate_with(&seed(), &change, evidence).into_owned()
}

#[test]
fn observed_plaintext_traffic_denies_naming_the_sender() {
    let ev = traffic(
        EvidenceMode::Both,
        &[("unknown", "unknown", 1200), ("bar", "sleep", 7)],
        None,
    );
    let v = seed_lockdown_seen(&ev);
    let seen: Vec<_> = v
        .breaks
        .iter()
        .filter(|b| b.tier == Tier::Traffic)
        .map(|b| (b.client.clone(), b.reason.clone()))
        .collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().any(|(c, r)| *c == Client::Unknown
        && *r
            == Reason::ObservedPlaintext {
                requests: 1200,
                connections: 0,
                window_secs: 86400
            }));
    assert!(v.denies());
    assert!(
        v.breaks
            .iter()
            .any(|b| b.tier == Tier::Inventory && b.denies),
        "both: inventory still denies"
    );
}

#[test]
fn traffic_mode_turns_inventory_findings_into_warnings() {
    let ev = traffic(EvidenceMode::Traffic, &[], None);
    let v = seed_lockdown_seen(&ev);
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
    assert!(!v.denies(), "no plaintext seen: legacy/sleep only warns");
    let ev = traffic(EvidenceMode::Traffic, &[("unknown", "unknown", 3)], None);
    let v = seed_lockdown_seen(&ev);
    assert!(v.denies(), "unknown plaintext sender seen");
}

#[test]
fn stale_or_unused_traffic_leaves_the_inventory_in_charge() {
    let ev = traffic(
        EvidenceMode::Traffic,
        &[("unknown", "unknown", 3)],
        Some("connection refused"),
    );
    let v = seed_lockdown_seen(&ev);
    assert!(v.denies(), "inventory decides while Prometheus is down");
    assert_eq!(v.traffic_unavailable.as_deref(), Some("connection refused"));
    assert!(v.breaks.iter().all(|b| b.tier != Tier::Traffic));
    let ev = traffic(EvidenceMode::Inventory, &[("unknown", "unknown", 3)], None);
    let v = seed_lockdown_seen(&ev);
    assert!(
        v.breaks.iter().all(|b| b.tier != Tier::Traffic),
        "--evidence inventory ignores traffic"
    );
    assert_eq!(v.traffic_unavailable, None);
}
