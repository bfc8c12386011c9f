//! `--respect-network-policies`: which suspects NetworkPolicies rule out, and the budget.

use serde_json::{json, Value};

use super::fixtures::*;
use crate::engine::*;
use crate::inventory::{file, Filters, Index};

/// The seed, read with `--respect-network-policies`, with these policies.
fn seed_with_policies(policies: &[Value]) -> Index {
    seed_reading_policies(true, policies)
}

fn seed_reading_policies(respect: bool, policies: &[Value]) -> Index {
    let filters = Filters {
        respect_network_policies: respect,
        ..Filters::default()
    };
    let mut index = file::demo(filters).unwrap();
    for (n, p) in policies.iter().enumerate() {
        let mut raw = p.clone();
        raw["metadata"]["name"] = json!(format!("np-{n}"));
        let np = crate::model::NetworkPolicy::from_api(&serde_json::from_value(raw).unwrap());
        index.upsert_network_policy(np.unwrap());
    }
    index
}

/// A policy of `ns` isolating `selected` pods for ingress, admitting `rules`.
fn ingress_policy(ns: &str, selected: Value, rules: Value) -> Value {
    json!({"metadata": {"namespace": ns}, "spec": {"podSelector": selected, "ingress": rules}})
}

fn httpbin_only_from(from: Value, ports: Value) -> Value {
    ingress_policy(
        "foo",
        json!({"matchLabels": {"app": "httpbin"}}),
        json!([{"from": from, "ports": ports}]),
    )
}

#[test]
fn network_policies_keep_unreachable_suspects_out_and_say_how_many() {
    let from_bar =
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bar"}}}]);
    let index = seed_with_policies(&[httpbin_only_from(from_bar.clone(), json!([]))]);
    let v = create(&index, &seed_lockdown());
    assert!(!v.denies(), "{:?}", broken(&v));
    assert_eq!(v.excluded_by_network_policies, 1);
    assert!(v.servers.is_empty(), "a server nobody reaches is not named");

    let ignored = seed_reading_policies(false, &[httpbin_only_from(from_bar.clone(), json!([]))]);
    assert!(
        create(&ignored, &seed_lockdown()).denies(),
        "without the flag"
    );

    let from_legacy =
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "legacy"}}}]);
    let index = seed_with_policies(&[httpbin_only_from(from_legacy, json!([]))]);
    let v = create(&index, &seed_lockdown());
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
    assert_eq!(v.excluded_by_network_policies, 0);
}

#[test]
fn ip_blocks_ports_and_ranges_are_matched_like_the_cni_does() {
    let counted = |from: Value, ports: Value| {
        let index = seed_with_policies(&[httpbin_only_from(from, ports)]);
        create(&index, &seed_lockdown()).denies()
    };
    let everyone = json!([]);
    assert!(counted(
        json!([{"ipBlock": {"cidr": "10.244.0.0/24"}}]),
        everyone.clone()
    ));
    assert!(!counted(
        json!([{"ipBlock": {"cidr": "10.244.0.0/24", "except": ["10.244.0.14/32"]}}]),
        everyone.clone()
    ));
    assert!(counted(
        everyone.clone(),
        json!([{"port": 70, "endPort": 90}])
    ));
    assert!(!counted(
        everyone.clone(),
        json!([{"port": 81, "endPort": 90}])
    ));
    assert!(!counted(
        everyone.clone(),
        json!([{"port": 80, "protocol": "UDP"}])
    ));
    assert!(
        !counted(everyone, json!([{"port": "http"}])),
        "no container port named http"
    );
}

#[test]
fn egress_policies_of_the_client_count_too_and_host_network_is_never_filtered() {
    let dns_only = json!({"metadata": {"namespace": "legacy"}, "spec": {"podSelector": {},
        "policyTypes": ["Egress"], "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}});
    let index = seed_with_policies(std::slice::from_ref(&dns_only));
    let v = create(&index, &seed_lockdown());
    assert!(!v.denies());
    assert_eq!(v.excluded_by_network_policies, 1);

    let mut index = seed_with_policies(&[dns_only]);
    index.upsert_pod(pod("legacy", "node-agent").host_network().build());
    let v = create(&index, &seed_lockdown());
    assert_eq!(broken(&v), ["legacy/node-agent: host-network"]);
}

#[test]
fn a_sidecar_client_kept_out_by_a_policy_is_not_counted() {
    let deny_from_foo = ingress_policy(
        "bar",
        json!({}),
        json!([{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bar"}}}]}]),
    );
    let index = seed_with_policies(&[deny_from_foo]);
    let old = mesh_policy(json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}));
    let v = update(&index, &old, &mesh_policy(json!({"peers": [{"mtls": {}}]})));
    let to_bar = v.breaks.iter().any(|b| {
        matches!(&b.client, Client::Workload { namespace, .. } if **namespace == *"foo")
            && v.targets(b).any(|s| *s.namespace == *"bar")
    });
    assert!(!to_bar, "{:?}", broken(&v));
    assert!(
        broken(&v).contains(&"bar/sleep: auto-mtls-off".to_string()),
        "bar's own clients still reach bar/httpbin: {:?}",
        broken(&v)
    );
    assert!(v.excluded_by_network_policies >= 1);
}

#[test]
fn past_the_review_budget_network_policies_stop_ruling_suspects_out() {
    let rules: Vec<Value> = (0..256).map(|_| json!({"ports": [{"port": 9}]})).collect();
    let egress = json!({"metadata": {"namespace": "legacy"}, "spec": {"podSelector": {},
        "policyTypes": ["Egress"], "egress": rules}});
    let mut index = seed_with_policies(&vec![egress; 7]);
    assert!(create(&index, &seed_lockdown()).excluded_by_network_policies > 0);
    for i in 0..2_400 {
        let app = format!("plain-{i}");
        index.upsert_pod(pod("legacy", &app).named(&app).build());
    }
    let v = create(&index, &seed_lockdown());
    assert!(
        v.network_policies_partly_checked,
        "{} excluded, {} unlisted, {:?}",
        v.excluded_by_network_policies,
        v.unlisted,
        broken(&v)
    );
    assert!(v.denies(), "the suspects left unchecked are counted");
    assert!(crate::explain::deny_message("x", &v, None).contains("checked only in part"));
}

#[test]
fn pods_without_an_address_and_namespaces_the_inventory_lacks_are_matched_cautiously() {
    let from_ip = httpbin_only_from(json!([{"ipBlock": {"cidr": "192.168.0.0/16"}}]), json!([]));
    let mut index = seed_with_policies(&[from_ip]);
    index.upsert_pod(pod("legacy", "pending").phase("Pending").build());
    let v = create(&index, &seed_lockdown());
    assert_eq!(
        broken(&v),
        ["legacy/pending: no-proxy"],
        "legacy/sleep's address is outside"
    );

    let by_name =
        json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "legacy"}}}]);
    let mut index = seed_with_policies(&[httpbin_only_from(by_name, json!([]))]);
    index.remove_namespace("legacy");
    assert_eq!(
        broken(&create(&index, &seed_lockdown())),
        ["legacy/sleep: no-proxy"]
    );
}
