//! Which server workloads a change is judged on.

use serde_json::json;

use super::fixtures::*;
use crate::engine::*;

#[test]
fn a_wildcard_destination_rule_is_judged_where_servers_can_be_strict() {
    let everything = dr(
        "bar",
        "all-plaintext",
        json!({"host": "*", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    let servers = |index: &Index| -> Vec<String> {
        let v = create(index, &everything);
        let mut names: Vec<String> = v
            .servers
            .iter()
            .map(|s| format!("{}/{}", s.namespace, s.workload))
            .collect();
        names.sort();
        names
    };
    let one_strict = with(auto_mtls(seed()), [aged(strict_httpbin_pa(), 1)]);
    assert_eq!(
        servers(&one_strict),
        ["foo/httpbin"],
        "only foo/httpbin is STRICT"
    );
    // A STRICT mesh makes every namespace a place to look.
    let strict_mesh = with(
        auto_mtls(seed()),
        [mesh_policy(json!({"peers": [{"mtls": {}}]}))],
    );
    assert_eq!(
        servers(&strict_mesh),
        ["bar/httpbin", "bar/sleep", "foo/httpbin", "foo/sleep"]
    );
}

#[test]
fn selector_policies_in_the_root_namespace_are_ignored_and_empty_selectors_are_namespace_wide() {
    let root_selector = pa(
        "istio-system",
        "x",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}}),
    );
    assert!(!create(&seed(), &root_selector).breaks_clients());
    let empty = pa(
        "foo",
        "x",
        json!({"selector": {"matchLabels": {}}, "mtls": {"mode": "STRICT"}}),
    );
    let v = create(&seed(), &empty);
    assert!(v
        .servers
        .iter()
        .any(|s| *s.workload == *"sleep" && *s.namespace == *"foo"));
}

#[test]
fn legacy_targets_narrow_to_named_service_ports() {
    let by_number = policy(
        "foo",
        "p",
        json!({"targets": [{"name": "httpbin", "ports": [{"number": 8000}]}], "peers": [{"mtls": {}}]}),
    );
    assert_eq!(
        broken(&create(&seed(), &by_number)),
        ["legacy/sleep: no-proxy"]
    );
    let by_name = policy(
        "foo",
        "p",
        json!({"targets": [{"name": "httpbin", "ports": [{"name": "http"}]}], "peers": [{"mtls": {}}]}),
    );
    assert_eq!(
        broken(&create(&seed(), &by_name)),
        ["legacy/sleep: no-proxy"]
    );
    let other_port = policy(
        "foo",
        "p",
        json!({"targets": [{"name": "httpbin", "ports": [{"number": 9999}]}], "peers": [{"mtls": {}}]}),
    );
    assert!(!create(&seed(), &other_port).breaks_clients());
    let unknown_service = policy(
        "foo",
        "p",
        json!({"targets": [{"name": "nope"}], "peers": [{"mtls": {}}]}),
    );
    assert!(!create(&seed(), &unknown_service).breaks_clients());
}
