//! Readiness on the seed scenario, and after its clients migrated.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::evidence::{EvidenceMode, PlaintextEdges};
use crate::inventory::{file, Filters};
use crate::model::Rule;

fn seed() -> Index {
    file::demo(Filters::default()).unwrap()
}

fn migrated() -> Index {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/seed-migrated.yaml");
    file::load(&[path], Filters::default(), false).unwrap()
}

fn find<'r>(r: &'r MeshReport, ns: &str, name: &str) -> &'r WorkloadReport {
    r.workloads
        .iter()
        .find(|w| w.namespace == ns && w.workload == name)
        .unwrap()
}

#[test]
fn findings_are_grouped_by_cause_most_edges_first() {
    let r = assess(&seed(), None);
    assert_eq!(r.edges, 13);
    let counts: Vec<(usize, usize, usize)> = r
        .causes
        .iter()
        .map(|c| (c.edges, c.clients, c.servers))
        .collect();
    assert_eq!(counts, [(9, 4, 3), (4, 1, 4)]);
    assert!(r.causes[0]
        .cause
        .starts_with("one mesh setting: auto mTLS is off"));
    assert!(r.causes[0].fix.contains("enableAutoMtls: true"));
    assert_eq!(r.causes[1].cause, "clients without a proxy");
    let migrated = assess(&migrated(), None);
    assert_eq!(migrated.causes.len(), 1, "legacy/sleep has its sidecar now");
    assert_eq!(migrated.causes[0].edges, migrated.edges);
}

#[test]
fn the_seed_blocks_foo_httpbin_on_legacy_sleep() {
    let r = assess(&seed(), None);
    let w = find(&r, "foo", "httpbin");
    assert_eq!(w.status, Status::Blocked);
    assert_eq!(w.proxy, "sidecar");
    assert_eq!(w.ports.len(), 1);
    assert_eq!(w.ports[0].port, Some(80));
    assert_eq!(w.ports[0].mode, Mode::Permissive);
    assert_eq!(w.ports[0].decided_by.as_deref(), Some("MeshPolicy default"));
    let b = &w.blockers[0];
    assert_eq!(b.client, "legacy/sleep");
    assert_eq!(b.tier, Tier::Inventory);
    assert_eq!(b.servers, ["foo/httpbin"]);
    assert!(w.lockdown.is_none());
    assert!(
        r.workloads.iter().all(|w| w.namespace != "legacy"),
        "no sidecar, not a server"
    );
    assert_eq!(r.mesh.status, Status::Blocked);
    assert!(!r.traffic.used);
}

#[test]
fn once_migrated_foo_httpbin_is_ready_with_the_yaml_to_apply() {
    let index = migrated();
    let r = assess(&index, None);
    let w = find(&r, "foo", "httpbin");
    assert_eq!(w.status, Status::Ready, "{:?}", w.blockers);
    let yaml = w.lockdown.as_deref().unwrap();
    // The proposed object, applied, is a lock-down the engine lets through.
    let value: serde_json::Value = crate::yaml::from_str(yaml).unwrap();
    assert_eq!(value["spec"]["mtls"]["mode"], "STRICT");
    assert_eq!(value["spec"]["selector"]["matchLabels"]["app"], "httpbin");
    let rule = Rule::from_json(RuleKind::PeerAuthentication, &value).unwrap();
    let v = engine::evaluate(
        &index,
        &Change {
            old: None,
            new: Some(&rule),
        },
    );
    assert!(!v.breaks_clients());
    assert!(v.servers.is_empty());
    // Auto mTLS is off in the seed's era: only httpbin.foo has an ISTIO_MUTUAL rule.
    let bar = find(&r, "bar", "httpbin");
    assert_eq!(bar.status, Status::Blocked);
    assert!(bar.blockers.iter().all(|b| b.tier == Tier::ClientConfig));
    let foo = r.namespaces.iter().find(|n| n.level.name == "foo").unwrap();
    assert_eq!(
        foo.level.status,
        Status::Blocked,
        "foo/sleep is still blocked"
    );
    assert_eq!((foo.ready, foo.blocked), (1, 1));
}

#[test]
fn with_auto_mtls_the_migrated_mesh_can_be_locked_down_whole() {
    let mut index = migrated();
    index.set_mesh(crate::model::MeshConfig::default());
    let r = assess(&index, None);
    assert!(r.workloads.iter().all(|w| w.status == Status::Ready));
    assert!(r.namespaces.iter().all(|n| n.level.status == Status::Ready));
    assert_eq!(r.mesh.status, Status::Ready);
    let mesh = r.mesh.lockdown.as_deref().unwrap();
    assert!(mesh.contains("namespace: istio-system"), "{mesh}");
    assert!(!mesh.contains("selector"), "{mesh}");
    let what: Vec<String> = r.lockdowns().into_iter().map(|(w, _)| w).collect();
    assert!(what.contains(&"namespace foo".to_string()), "{what:?}");
    assert_eq!(what.last().map(String::as_str), Some("the whole mesh"));
}

#[test]
fn observed_plaintext_blocks_a_workload_the_inventory_calls_ready() {
    let mut edges = PlaintextEdges::default();
    edges.add(("foo", "httpbin"), ("unknown", "unknown"), 42, 0);
    let evidence = Evidence {
        mode: EvidenceMode::Both,
        window: Duration::from_secs(24 * 3600),
        edges: Some(Arc::new(edges)),
        stale_reason: None,
    };
    let r = assess(&migrated(), Some(&evidence));
    let w = find(&r, "foo", "httpbin");
    assert_eq!(w.status, Status::Blocked);
    assert_eq!(w.blockers[0].tier, Tier::Traffic);
    assert_eq!(w.blockers[0].client, "unknown sender");
    assert!(w.blockers[0].denies);
    assert!(
        w.blockers[0].text.contains("42 req"),
        "{}",
        w.blockers[0].text
    );
    assert!(
        w.blockers[0].text.contains("in the last 24h"),
        "{}",
        w.blockers[0].text
    );
    assert_eq!(
        w.blockers.len(),
        1,
        "the inventory alone has nothing against it"
    );
    assert!(w.lockdown.is_none());
    assert!(r.traffic.used);
}

#[test]
fn an_older_workload_policy_is_updated_not_shadowed() {
    let mut index = migrated();
    let old = serde_json::json!({"apiVersion": "security.istio.io/v1beta1", "kind": "PeerAuthentication",
        "metadata": {"name": "keep-open", "namespace": "foo", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "PERMISSIVE"}}});
    index.upsert_rule(Rule::from_json(RuleKind::PeerAuthentication, &old).unwrap());
    let r = assess(&index, None);
    let w = find(&r, "foo", "httpbin");
    assert_eq!(
        w.ports[0].decided_by.as_deref(),
        Some("PeerAuthentication foo/keep-open")
    );
    let yaml = w.lockdown.as_deref().unwrap();
    assert!(
        yaml.starts_with("# replaces PeerAuthentication foo/keep-open (mode PERMISSIVE)"),
        "{yaml}"
    );
    assert!(yaml.contains("name: keep-open"), "{yaml}");
}

#[test]
fn the_table_and_the_page_name_the_blocker() {
    let r = assess(&seed(), None);
    let text = table(&r);
    assert!(
        text.lines().any(|l| l.starts_with("foo        httpbin")
            && l.contains("blocked")
            && l.contains("legacy/sleep")),
        "{text}"
    );
    assert!(text.contains("    - legacy/sleep -> foo/httpbin"), "{text}");
    let page = html(&r);
    assert!(page.contains("data-client=\"legacy/sleep\" data-server=\"foo/httpbin\""));
    assert!(!page.contains("<script"));
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "self-contained"
    );
}
