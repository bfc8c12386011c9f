//! Which ports a change makes STRICT: precedence of mesh, namespace, workload and port-level
//! policies.

use serde_json::json;

use super::fixtures::*;
use crate::engine::*;

#[test]
fn seed_lockdown_breaks_only_legacy_sleep() {
    let v = create(&seed(), &seed_lockdown());
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
    assert_eq!(v.servers.len(), 1);
    let s = &v.servers[0];
    assert_eq!((&*s.namespace, &*s.workload), ("foo", "httpbin"));
    assert_eq!(s.ports[0].port, Some(80));
    assert_eq!(
        (s.ports[0].before, s.ports[0].after),
        (Mode::Permissive, Mode::Strict)
    );
    assert_eq!(
        s.ports[0].decided_by.as_ref().unwrap().name,
        "example-httpbin-strict"
    );
    assert!(s.locked_down());
}

#[test]
fn lockdown_allowed_once_legacy_has_a_sidecar() {
    let mut index = seed();
    replace_pod(
        &mut index,
        "sleep-7d9b5c8f4-q9w4z",
        pod("legacy", "sleep").sidecar(),
    );
    assert!(!create(&index, &seed_lockdown()).breaks_clients());
}

#[test]
fn mesh_wide_strict_breaks_sidecars_without_mtls_config_when_auto_mtls_is_off() {
    let old = mesh_policy(json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}));
    let v = update(
        &seed(),
        &old,
        &mesh_policy(json!({"peers": [{"mtls": {}}]})),
    );
    let b = broken(&v);
    assert!(b.contains(&"legacy/sleep: no-proxy".to_string()), "{b:?}");
    assert!(
        b.contains(&"foo/sleep: auto-mtls-off".to_string()),
        "{b:?}: no DR for bar/httpbin"
    );
    assert!(v
        .servers
        .iter()
        .any(|s| *s.namespace == *"bar" && *s.workload == *"httpbin"));
}

#[test]
fn relaxing_and_unrelated_edits_are_allowed() {
    let index = with(seed(), [aged(strict_httpbin_pa(), 1)]);
    let permissive = pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "PERMISSIVE"}}),
    );
    assert!(
        !update(&index, &strict_httpbin_pa(), &permissive).breaks_clients(),
        "relaxing"
    );
    let relabelled = pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}, "x": 1}),
    );
    assert!(
        !update(&index, &strict_httpbin_pa(), &relabelled).breaks_clients(),
        "no one's mode changes"
    );
}

#[test]
fn deleting_a_permissive_override_under_strict_mesh_is_a_lockdown() {
    let override_ = aged(
        pa("foo", "default", json!({"mtls": {"mode": "PERMISSIVE"}})),
        5,
    );
    let index = with(
        seed(),
        [
            aged(mesh_policy(json!({"peers": [{"mtls": {}}]})), 1),
            override_.clone(),
        ],
    );
    let v = delete(&index, &override_);
    assert!(
        broken(&v).contains(&"legacy/sleep: no-proxy".to_string()),
        "{:?}",
        broken(&v)
    );
    assert!(v.servers.iter().all(|s| *s.namespace == *"foo"));
}

#[test]
fn workload_level_beats_namespace_and_unset_inherits() {
    let keep_permissive = aged(
        pa(
            "foo",
            "httpbin",
            json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "PERMISSIVE"}}),
        ),
        1,
    );
    let index = with(auto_mtls(seed()), [keep_permissive]);
    let v = create(
        &index,
        &pa("foo", "default", json!({"mtls": {"mode": "STRICT"}})),
    );
    assert!(
        v.servers.iter().all(|s| *s.workload != *"httpbin"),
        "workload PERMISSIVE wins"
    );
    assert!(
        v.servers.iter().any(|s| *s.workload == *"sleep"),
        "foo/sleep has no workload policy"
    );

    let unset = aged(
        pa(
            "foo",
            "httpbin",
            json!({"selector": {"matchLabels": {"app": "httpbin"}}}),
        ),
        1,
    );
    let index = with(auto_mtls(seed()), [unset]);
    let v = create(
        &index,
        &pa("foo", "default", json!({"mtls": {"mode": "STRICT"}})),
    );
    assert!(
        v.servers.iter().any(|s| *s.workload == *"httpbin"),
        "UNSET inherits STRICT"
    );
}

#[test]
fn only_the_oldest_workload_policy_counts_and_newer_port_levels_are_ignored() {
    let older = aged(
        pa(
            "foo",
            "a-old",
            json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "PERMISSIVE"}}),
        ),
        1,
    );
    let index = with(seed(), [older]);
    let newer = pa(
        "foo",
        "b-new",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}}),
    );
    assert!(
        !create(&index, &newer).breaks_clients(),
        "the older PERMISSIVE policy wins"
    );

    let index = with(seed(), [aged(strict_httpbin_pa(), 1)]);
    let newer_port = pa(
        "foo",
        "z",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"80": {"mode": "PERMISSIVE"}}}),
    );
    let same_age_smaller_name = aged(
        pa(
            "foo",
            "a",
            json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "PERMISSIVE"}}),
        ),
        1,
    );
    let v = create(
        &with(seed(), [aged(strict_httpbin_pa(), 1)]),
        &same_age_smaller_name,
    );
    assert!(!v.breaks_clients(), "a relaxing tie-winner breaks no one");
    assert!(
        !create(&index, &newer_port).breaks_clients(),
        "newer port-level has no effect, nothing changes"
    );
}

#[test]
fn port_level_mtls_keys_are_container_ports() {
    let container = pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"80": {"mode": "PERMISSIVE"}}}),
    );
    assert!(
        !create(&seed(), &container).breaks_clients(),
        "port 80 stays PERMISSIVE"
    );
    let service_port = pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}, "portLevelMtls": {"8000": {"mode": "PERMISSIVE"}}}),
    );
    assert_eq!(
        broken(&create(&seed(), &service_port)),
        ["legacy/sleep: no-proxy"],
        "a Service port key does nothing"
    );
}

#[test]
fn mesh_peer_authentication_replaces_mesh_policy_even_when_unset() {
    let index = with(
        seed(),
        [aged(mesh_policy(json!({"peers": [{"mtls": {}}]})), 1)],
    );
    let unset_mesh_pa = aged(pa("istio-system", "default", json!({})), 2);
    let index = with(index, [unset_mesh_pa.clone()]);
    let v = delete(&index, &unset_mesh_pa);
    assert!(
        broken(&v).contains(&"legacy/sleep: no-proxy".to_string()),
        "deleting it exposes the STRICT MeshPolicy"
    );
}

#[test]
fn the_policy_naming_the_port_wins_over_an_older_whole_pod_policy() {
    let whole = aged(
        policy(
            "foo",
            "whole",
            json!({"targets": [{"name": "httpbin"}], "peers": [{"mtls": {}}]}),
        ),
        1,
    );
    let index = with(seed(), [whole]);
    let named = policy(
        "foo",
        "named",
        json!({"targets": [{"name": "httpbin", "ports": [{"number": 8000}]}], "peers": [{"mtls": {"mode": "PERMISSIVE"}}]}),
    );
    assert!(!create(&index, &named).breaks_clients(), "relaxes port 80");
    let v = delete(&with(index, [aged(named.clone(), 2)]), &named);
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
}

#[test]
fn inbound_exclusions_are_not_locked_down() {
    let mut index = seed();
    let excluding = pod("foo", "httpbin")
        .sidecar()
        .annotation("traffic.sidecar.istio.io/excludeInboundPorts", "80");
    replace_pod(&mut index, HTTPBIN_POD, excluding);
    assert!(!create(&index, &seed_lockdown()).breaks_clients());
}

#[test]
fn pods_without_ports_are_judged_on_the_workload_mode() {
    let mut index = seed();
    index.upsert_pod(pod("foo", "worker").sidecar().ports(&[]).build());
    let lock = pa(
        "foo",
        "worker",
        json!({"selector": {"matchLabels": {"app": "worker"}}, "mtls": {"mode": "STRICT"}}),
    );
    let v = create(&index, &lock);
    assert_eq!(v.servers[0].ports[0].port, None);
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
}
