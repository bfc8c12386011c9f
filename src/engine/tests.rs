//! Engine rules on the seed scenario: foo and bar with sidecars, legacy/sleep without,
//! a PERMISSIVE MeshPolicy, an ISTIO_MUTUAL DestinationRule for httpbin.foo, auto mTLS off.

use serde_json::{json, Value};

use super::*;
use crate::inventory::{file, Filters, Index};
use crate::model::{MeshConfig, Pod, RuleKind};

fn seed() -> Index {
    file::demo(Filters::default()).unwrap()
}

fn auto_mtls(mut index: Index) -> Index {
    index.set_mesh(MeshConfig::default());
    index
}

fn rule(api: &str, kind: &str, ns: &str, name: &str, spec: Value) -> Rule {
    let group = api.split('/').next().unwrap();
    let mut meta = json!({"name": name});
    if !ns.is_empty() {
        meta["namespace"] = json!(ns);
    }
    Rule::from_json(
        RuleKind::from_group_kind(group, kind).unwrap(),
        &json!({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}),
    )
    .unwrap()
}

fn aged(mut r: Rule, created: i64) -> Rule {
    match &mut r {
        Rule::PeerAuthentication(p) => p.origin.created = created,
        Rule::Legacy(p) => p.origin.created = created,
        Rule::DestinationRule(d) => d.origin.created = created,
    }
    r
}

fn pa(ns: &str, name: &str, spec: Value) -> Rule {
    rule(
        "security.istio.io/v1beta1",
        "PeerAuthentication",
        ns,
        name,
        spec,
    )
}

fn policy(ns: &str, name: &str, spec: Value) -> Rule {
    rule("authentication.istio.io/v1alpha1", "Policy", ns, name, spec)
}

fn mesh_policy(spec: Value) -> Rule {
    rule(
        "authentication.istio.io/v1alpha1",
        "MeshPolicy",
        "",
        "default",
        spec,
    )
}

fn dr(ns: &str, name: &str, spec: Value) -> Rule {
    rule(
        "networking.istio.io/v1alpha3",
        "DestinationRule",
        ns,
        name,
        spec,
    )
}

/// The seed's lock-down: `Policy example-httpbin-strict` on httpbin in foo.
fn seed_lockdown() -> Rule {
    policy(
        "foo",
        "example-httpbin-strict",
        json!({"targets": [{"name": "httpbin"}], "peers": [{"mtls": {"mode": "STRICT"}}]}),
    )
}

fn seed_dr_origin() -> crate::model::Origin {
    dr("foo", "example-httpbin-istio-client-mtls", json!({}))
        .origin()
        .clone()
}

fn strict_httpbin_pa() -> Rule {
    pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}}),
    )
}

/// A pod built like the seed's: `app` label, optional sidecar, extra metadata merged in.
fn pod(ns: &str, app: &str, sidecar: bool, extra: Value) -> Pod {
    let mut labels = json!({"app": app});
    let mut containers = vec![json!({"name": app, "ports": [{"containerPort": 80}]})];
    if sidecar {
        labels["security.istio.io/tlsMode"] = json!("istio");
        containers.push(json!({"name": "istio-proxy"}));
    }
    let mut value = json!({
        "metadata": {"name": format!("{app}-1"), "namespace": ns, "labels": labels},
        "spec": {"containers": containers},
        "status": {"phase": "Running", "podIP": "10.244.9.9"}
    });
    merge(&mut value, extra);
    let mut pod = Pod::from_api(&serde_json::from_value(value).unwrap()).unwrap();
    pod.workload = app.to_string();
    pod
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn create(index: &Index, new: &Rule) -> Verdict {
    evaluate(
        index,
        &Change {
            old: None,
            new: Some(new),
        },
    )
}

fn update(index: &Index, old: &Rule, new: &Rule) -> Verdict {
    evaluate(
        index,
        &Change {
            old: Some(old),
            new: Some(new),
        },
    )
}

fn delete(index: &Index, old: &Rule) -> Verdict {
    evaluate(
        index,
        &Change {
            old: Some(old),
            new: None,
        },
    )
}

fn with(mut index: Index, rules: impl IntoIterator<Item = Rule>) -> Index {
    for r in rules {
        index.upsert_rule(r);
    }
    index
}

/// `ns/name: reason-kind` of every broken client, in verdict order.
fn broken(v: &Verdict) -> Vec<String> {
    v.breaks
        .iter()
        .map(|b| {
            let (ns, name) = match &b.client {
                Client::Workload { namespace, name } => (&**namespace, name.to_string()),
                Client::Kubelet { namespace, name } => (&**namespace, format!("kubelet:{name}")),
                Client::External {
                    namespace, service, ..
                } => (&**namespace, format!("external:{service}")),
                Client::ApiServer { name, .. } => ("kube-apiserver", name.to_string()),
                Client::Unknown => ("unknown", "unknown".to_string()),
            };
            let reason = serde_json::to_value(&b.reason).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string();
            format!("{ns}/{name}: {reason}")
        })
        .collect()
}

#[test]
fn a_statefulset_without_proxy_is_one_client_however_many_pod_shapes() {
    let mut index = seed();
    for i in 0..3 {
        let name = format!("db-{i}");
        index.upsert_pod(pod(
            "legacy",
            "db",
            false,
            json!({"metadata": {"name": name, "labels": {"statefulset.kubernetes.io/pod-name": name}}}),
        ));
    }
    let shapes = index
        .workloads_in("legacy")
        .filter(|(_, w)| &*w.name == "db");
    assert_eq!(shapes.count(), 3, "each pod has its own shape");
    let v = create(&index, &seed_lockdown());
    assert_eq!(
        broken(&v),
        ["legacy/db: no-proxy", "legacy/sleep: no-proxy"]
    );
    assert_eq!(v.client_count(), 2);
}

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
    index.remove_pod("legacy", "sleep-7d9b5c8f4-q9w4z");
    index.upsert_pod(pod("legacy", "sleep", true, json!({})));
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
fn destination_rule_turning_clients_to_plaintext_toward_strict_server() {
    let index = with(seed(), [aged(strict_httpbin_pa(), 1)]);
    let disable = dr(
        "bar",
        "to-httpbin",
        json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    let v = create(&index, &disable);
    assert_eq!(
        broken(&v),
        [
            "bar/httpbin: destination-rule",
            "bar/sleep: destination-rule"
        ]
    );
    assert!(
        !v.servers[0].locked_down(),
        "the server was already STRICT: it is hit, not locked down"
    );

    let simple_subset = dr(
        "foo",
        "example-httpbin-istio-client-mtls",
        json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [{"name": "v1", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}]}),
    );
    let old = dr(
        "foo",
        "example-httpbin-istio-client-mtls",
        json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}}),
    );
    let b = broken(&update(&index, &old, &simple_subset));
    assert!(
        b.contains(&"bar/sleep: plaintext-subset".to_string()),
        "{b:?}"
    );
}

/// With auto mTLS on and no rule in the index able to send plaintext, a review skips the
/// DestinationRule lookups; a port-level setting or a subset in the reviewed rule must not.
#[test]
fn a_rule_sending_plaintext_on_one_port_or_subset_is_still_looked_up() {
    let mut index = with(auto_mtls(seed()), [aged(strict_httpbin_pa(), 1)]);
    index.remove_rule(&seed_dr_origin());
    let port_level = dr(
        "bar",
        "to-httpbin",
        json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
            "portLevelSettings": [{"port": {"number": 8000}, "tls": {"mode": "DISABLE"}}]}}),
    );
    assert_eq!(
        broken(&create(&index, &port_level)),
        [
            "bar/httpbin: destination-rule",
            "bar/sleep: destination-rule"
        ]
    );
    let subset = dr(
        "bar",
        "to-httpbin",
        json!({"host": "httpbin.foo.svc.cluster.local", "subsets": [
            {"name": "v1", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}]}),
    );
    assert_eq!(
        broken(&create(&index, &subset)),
        [
            "bar/httpbin: plaintext-subset",
            "bar/sleep: plaintext-subset"
        ]
    );
    let mut index = with(auto_mtls(seed()), [aged(port_level, 1)]);
    index.remove_rule(&seed_dr_origin());
    assert_eq!(
        broken(&create(&index, &strict_httpbin_pa())),
        [
            "legacy/sleep: no-proxy",
            "bar/httpbin: destination-rule",
            "bar/sleep: destination-rule"
        ],
        "the same rule, already in the index"
    );
}

#[test]
fn destination_rule_lookup_order() {
    let index = with(seed(), [aged(strict_httpbin_pa(), 1)]);
    let client_ns_wildcard = dr(
        "bar",
        "all",
        json!({"host": "*.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    assert_eq!(
        broken(&create(&index, &client_ns_wildcard)),
        [
            "bar/httpbin: destination-rule",
            "bar/sleep: destination-rule"
        ],
        "client namespace beats the service namespace"
    );

    let selected = dr(
        "bar",
        "sel",
        json!({"host": "httpbin.foo.svc.cluster.local", "workloadSelector": {"matchLabels": {"app": "other"}}, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    assert!(
        !create(&index, &selected).breaks_clients(),
        "selector matches no client"
    );

    let private = dr(
        "foo",
        "private",
        json!({"host": "httpbin", "exportTo": ["."], "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    let index_no_seed_dr = {
        let mut i = with(seed(), [aged(strict_httpbin_pa(), 1)]);
        i.set_mesh(MeshConfig::default());
        i.remove_rule(&seed_dr_origin());
        i
    };
    assert_eq!(
        broken(&create(&index_no_seed_dr, &private)),
        ["foo/sleep: destination-rule"],
        "exportTo . hides it from bar; short host resolves in foo"
    );

    let root_disable = dr(
        "istio-system",
        "mesh",
        json!({"host": "*.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    assert!(
        !create(&index, &root_disable).breaks_clients(),
        "the seed's exact-host DR in foo is found before the root namespace"
    );
}

#[test]
fn auto_mtls_sends_plaintext_to_unlabelled_targets_and_disabled_namespaces() {
    let mut index = with(auto_mtls(seed()), []);
    index.remove_rule(&seed_dr_origin());
    let mut unlabelled = pod("foo", "httpbin", true, json!({}));
    unlabelled.shape.labels.remove("security.istio.io/tlsMode");
    index.remove_pod("foo", "httpbin-6c8f9d5b7-x7k2p");
    index.upsert_pod(unlabelled);
    let b = broken(&create(&index, &strict_httpbin_pa()));
    assert!(
        b.contains(&"bar/sleep: target-not-labelled".to_string()),
        "{b:?}"
    );

    let index = with(
        auto_mtls(seed()),
        [aged(
            pa("foo", "default", json!({"mtls": {"mode": "DISABLE"}})),
            1,
        )],
    );
    let mut index = index;
    index.remove_rule(&seed_dr_origin());
    let b = broken(&create(&index, &strict_httpbin_pa()));
    assert!(
        b.contains(&"bar/sleep: namespace-disable".to_string()),
        "{b:?}"
    );

    let index = {
        let mut i = auto_mtls(seed());
        i.remove_rule(&seed_dr_origin());
        i
    };
    assert_eq!(
        broken(&create(&index, &strict_httpbin_pa())),
        ["legacy/sleep: no-proxy"],
        "auto mTLS covers labelled sidecars"
    );
}

#[test]
fn headless_service_with_a_sidecarless_backend_downgrades_every_client() {
    let mut index = auto_mtls(seed());
    index.remove_rule(&seed_dr_origin());
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "foo"},
        "spec": {"clusterIP": "None", "selector": {"role": "db"}, "ports": [{"port": 5432}]}}))
    .unwrap();
    index.upsert_service(crate::model::Service::from_api(&svc, "cluster.local").unwrap());
    let mut meshed = pod(
        "foo",
        "db-0",
        true,
        json!({"metadata": {"labels": {"role": "db"}}}),
    );
    meshed.shape.container_ports = vec![(None, 5432)];
    index.upsert_pod(meshed);
    let mut plain = pod(
        "foo",
        "db-1",
        false,
        json!({"metadata": {"labels": {"role": "db"}}}),
    );
    plain.shape.container_ports = vec![(None, 5432)];
    index.upsert_pod(plain);
    let lock = pa(
        "foo",
        "db",
        json!({"selector": {"matchLabels": {"app": "db-0"}}, "mtls": {"mode": "STRICT"}}),
    );
    let b = broken(&create(&index, &lock));
    assert!(
        b.contains(&"bar/sleep: headless-backend".to_string()),
        "{b:?}"
    );
}

#[test]
fn ambient_clients_and_intent() {
    let mut index = seed();
    index.upsert_pod(pod(
        "bar",
        "amb",
        false,
        json!({"metadata": {"annotations": {"ambient.istio.io/redirection": "enabled"}}}),
    ));
    index.upsert_pod(pod(
        "bar",
        "wants",
        false,
        json!({"metadata": {"labels": {"istio.io/dataplane-mode": "ambient"}}}),
    ));
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        b.contains(&"bar/amb: ambient-to-sidecar".to_string()),
        "{b:?}"
    );
    assert!(
        b.contains(&"bar/wants: ambient-not-enrolled".to_string()),
        "{b:?}"
    );

    let mut index = seed();
    index.upsert_pod(pod(
        "bar",
        "amb",
        false,
        json!({"metadata": {"annotations": {"ambient.istio.io/redirection": "enabled"}}}),
    ));
    let mut tunnel = pod(
        "foo",
        "httpbin",
        true,
        json!({"metadata": {"labels": {"networking.istio.io/tunnel": "http"}}}),
    );
    tunnel.workload = "httpbin".into();
    index.remove_pod("foo", "httpbin-6c8f9d5b7-x7k2p");
    index.upsert_pod(tunnel);
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        !b.iter().any(|c| c.starts_with("bar/amb")),
        "HBONE-capable sidecar: {b:?}"
    );
}

#[test]
fn outbound_exclusions_bypass_the_client_sidecar() {
    let mut index = seed();
    index.remove_pod("bar", "sleep-7d9b5c8f4-x7k2p");
    index.upsert_pod(pod("bar", "sleep", true, json!({"metadata": {"annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "8000"}}})));
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        b.contains(&"bar/sleep: outbound-bypass".to_string()),
        "{b:?}"
    );

    let mut index = seed();
    index.remove_pod("bar", "sleep-7d9b5c8f4-x7k2p");
    index.upsert_pod(pod("bar", "sleep", true, json!({"metadata": {"annotations": {"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.0/16"}}})));
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        b.contains(&"bar/sleep: outbound-bypass".to_string()),
        "{b:?}"
    );
}

#[test]
fn a_service_without_a_cluster_ip_is_still_dialled_at_its_service_port() {
    // Hand-written inventories leave clusterIP out; the Service is not headless for that.
    let without_ip = |index: &mut Index| {
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": "httpbin", "namespace": "foo"},
            "spec": {"selector": {"app": "httpbin"}, "ports": [{"name": "http", "port": 8000, "targetPort": 80}]}}))
        .unwrap();
        index.upsert_service(crate::model::Service::from_api(&svc, "cluster.local").unwrap());
    };
    for (excluded, bypasses) in [("8000", true), ("80", false)] {
        let mut index = seed();
        without_ip(&mut index);
        index.remove_pod("bar", "sleep-7d9b5c8f4-x7k2p");
        let note = json!({"metadata": {"annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": excluded}}});
        index.upsert_pod(pod("bar", "sleep", true, note));
        let b = broken(&create(&index, &seed_lockdown()));
        assert_eq!(
            b.contains(&"bar/sleep: outbound-bypass".to_string()),
            bypasses,
            "excludeOutboundPorts {excluded}: {b:?}"
        );
    }
}

#[test]
fn kubelet_probes_break_only_without_probe_rewriting() {
    let probe = json!({"spec": {"containers": [{"name": "httpbin", "ports": [{"containerPort": 80}], "readinessProbe": {"httpGet": {"port": 80}}}, {"name": "istio-proxy"}]}});
    let mut no_rewrite = probe.clone();
    merge(
        &mut no_rewrite,
        json!({"metadata": {"annotations": {"sidecar.istio.io/rewriteAppHTTPProbers": "false"}}}),
    );
    for (extra, want) in [(probe, false), (no_rewrite, true)] {
        let mut index = seed();
        index.remove_pod("foo", "httpbin-6c8f9d5b7-x7k2p");
        index.upsert_pod(pod("foo", "httpbin", true, extra));
        let b = broken(&create(&index, &seed_lockdown()));
        assert_eq!(
            b.contains(&"foo/kubelet:httpbin: kubelet-probe".to_string()),
            want,
            "{b:?}"
        );
    }
}

#[test]
fn inbound_exclusions_are_not_locked_down() {
    let mut index = seed();
    index.remove_pod("foo", "httpbin-6c8f9d5b7-x7k2p");
    index.upsert_pod(pod("foo", "httpbin", true, json!({"metadata": {"annotations": {"traffic.sidecar.istio.io/excludeInboundPorts": "80"}}})));
    assert!(!create(&index, &seed_lockdown()).breaks_clients());
}

#[test]
fn ignored_inactive_and_host_network_clients() {
    let mut index = seed();
    index.upsert_pod(pod("kube-system", "coredns", false, json!({})));
    index.upsert_pod(pod("istio-system", "istiod", false, json!({})));
    index.upsert_pod(pod(
        "bar",
        "done",
        false,
        json!({"status": {"phase": "Succeeded"}}),
    ));
    index.upsert_pod(pod(
        "bar",
        "node-agent",
        false,
        json!({"spec": {"hostNetwork": true}}),
    ));
    let b = broken(&create(&index, &seed_lockdown()));
    assert_eq!(
        b,
        ["bar/node-agent: host-network", "legacy/sleep: no-proxy"]
    );
}

#[test]
fn pods_without_ports_are_judged_on_the_workload_mode() {
    let mut index = seed();
    let mut portless = pod("foo", "worker", true, json!({}));
    portless.shape.container_ports.clear();
    index.upsert_pod(portless);
    let lock = pa(
        "foo",
        "worker",
        json!({"selector": {"matchLabels": {"app": "worker"}}, "mtls": {"mode": "STRICT"}}),
    );
    let v = create(&index, &lock);
    assert_eq!(v.servers[0].ports[0].port, None);
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
}

#[test]
fn export_to_named_namespaces_and_workload_selectors_are_judged_per_client() {
    let mut index = with(auto_mtls(seed()), [aged(strict_httpbin_pa(), 1)]);
    index.remove_rule(&seed_dr_origin());
    index.upsert_pod(pod("baz", "sleep", true, json!({})));
    let only_bar = dr(
        "foo",
        "to-bar",
        json!({"host": "httpbin", "exportTo": ["bar"], "trafficPolicy": {"tls": {"mode": "DISABLE"}}}),
    );
    assert_eq!(
        broken(&create(&index, &only_bar)),
        [
            "bar/httpbin: destination-rule",
            "bar/sleep: destination-rule",
            "foo/sleep: destination-rule"
        ],
        "baz does not see a rule exported to bar only"
    );
    let selected = dr(
        "bar",
        "sleep-only",
        json!({"host": "httpbin.foo.svc.cluster.local", "workloadSelector": {"matchLabels": {"app": "sleep"}}, "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}),
    );
    assert_eq!(
        broken(&create(&index, &selected)),
        ["bar/sleep: destination-rule"]
    );
}

#[test]
fn existing_destination_rules_are_found_through_the_host_index() {
    let mut index = with(auto_mtls(seed()), [aged(strict_httpbin_pa(), 1)]);
    index.remove_rule(&seed_dr_origin());
    index.upsert_rule(aged(dr("bar", "plain", json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}})), 2));
    let relabel = pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin", "version": "v1"}}, "mtls": {"mode": "STRICT"}}),
    );
    assert!(
        !update(&index, &strict_httpbin_pa(), &relabel).breaks_clients(),
        "bar was already cut off"
    );
    let v = delete(&index, &strict_httpbin_pa());
    assert!(!v.breaks_clients(), "relaxing");
    let lock = pa("foo", "default", json!({"mtls": {"mode": "STRICT"}}));
    let fresh = {
        let mut i = auto_mtls(seed());
        i.remove_rule(&seed_dr_origin());
        i.upsert_rule(aged(dr("bar", "plain", json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}})), 2));
        i
    };
    let b = broken(&create(&fresh, &lock));
    assert!(
        b.contains(&"bar/sleep: destination-rule".to_string()),
        "{b:?}"
    );
    assert!(
        !b.contains(&"legacy/sleep: destination-rule".to_string()),
        "{b:?}"
    );
    let mut gone = fresh;
    gone.remove_rule(&dr("bar", "plain", json!({})).origin().clone());
    assert!(!broken(&create(&gone, &lock)).contains(&"bar/sleep: destination-rule".to_string()));
}

#[test]
fn clients_without_proxy_past_the_listed_ones_are_counted() {
    let mut index = seed();
    for i in 0..LISTED_UNMESHED + 9 {
        index.upsert_pod(pod("zz-legacy", &format!("job-{i:03}"), false, json!({})));
    }
    let v = create(&index, &seed_lockdown());
    assert_eq!(
        v.client_count(),
        LISTED_UNMESHED + 10,
        "legacy/sleep and the jobs"
    );
    assert_eq!(v.breaks.len(), LISTED_UNMESHED);
    assert_eq!(v.unlisted, 10);
    assert!(
        broken(&v).contains(&"legacy/sleep: no-proxy".to_string()),
        "listed by name order"
    );
}

#[test]
fn ambient_clients_past_the_listed_ones_are_counted_against_sidecars_without_hbone() {
    let mut index = seed();
    for i in 0..LISTED_UNMESHED + 3 {
        let enrolled =
            json!({"metadata": {"annotations": {"ambient.istio.io/redirection": "enabled"}}});
        index.upsert_pod(pod("amb", &format!("app-{i:03}"), false, enrolled));
    }
    let v = create(&index, &seed_lockdown());
    assert_eq!(v.unlisted, 3);
    let ambient = v
        .breaks
        .iter()
        .find(|b| b.reason == Reason::AmbientToSidecar)
        .unwrap();
    let targets: Vec<_> = v.targets(ambient).map(|s| &*s.workload).collect();
    assert_eq!(targets, ["httpbin"]);
}

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

#[test]
fn observed_plaintext_traffic_denies_naming_the_sender() {
    let ev = traffic(
        EvidenceMode::Both,
        &[("unknown", "unknown", 1200), ("bar", "sleep", 7)],
        None,
    );
    let v = evaluate_with(
        &seed(),
        &Change {
            old: None,
            new: Some(&seed_lockdown()),
        },
        &ev,
    );
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
    let v = evaluate_with(
        &seed(),
        &Change {
            old: None,
            new: Some(&seed_lockdown()),
        },
        &ev,
    );
    assert_eq!(broken(&v), ["legacy/sleep: no-proxy"]);
    assert!(!v.denies(), "no plaintext seen: legacy/sleep only warns");
    let ev = traffic(EvidenceMode::Traffic, &[("unknown", "unknown", 3)], None);
    let v = evaluate_with(
        &seed(),
        &Change {
            old: None,
            new: Some(&seed_lockdown()),
        },
        &ev,
    );
    assert!(v.denies(), "unknown plaintext sender seen");
}

#[test]
fn stale_or_unused_traffic_leaves_the_inventory_in_charge() {
    let ev = traffic(
        EvidenceMode::Traffic,
        &[("unknown", "unknown", 3)],
        Some("connection refused"),
    );
    let v = evaluate_with(
        &seed(),
        &Change {
            old: None,
            new: Some(&seed_lockdown()),
        },
        &ev,
    );
    assert!(v.denies(), "inventory decides while Prometheus is down");
    assert_eq!(v.traffic_unavailable.as_deref(), Some("connection refused"));
    assert!(v.breaks.iter().all(|b| b.tier != Tier::Traffic));
    let ev = traffic(EvidenceMode::Inventory, &[("unknown", "unknown", 3)], None);
    let v = evaluate_with(
        &seed(),
        &Change {
            old: None,
            new: Some(&seed_lockdown()),
        },
        &ev,
    );
    assert!(
        v.breaks.iter().all(|b| b.tier != Tier::Traffic),
        "--evidence inventory ignores traffic"
    );
    assert_eq!(v.traffic_unavailable, None);
}

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

fn api_service(spec: Value) -> crate::model::Service {
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "httpbin-public", "namespace": "foo"}, "spec": spec}))
    .unwrap();
    crate::model::Service::from_api(&svc, "cluster.local").unwrap()
}

#[test]
fn services_open_outside_the_cluster_make_external_clients() {
    let ports = json!([{"port": 8080, "targetPort": 80}]);
    for (spec, exposed) in [
        (
            json!({"type": "LoadBalancer", "selector": {"app": "httpbin"}, "ports": ports}),
            true,
        ),
        (
            json!({"type": "NodePort", "selector": {"app": "httpbin"}, "ports": ports}),
            true,
        ),
        (
            json!({"externalIPs": ["192.0.2.7"], "selector": {"app": "httpbin"}, "ports": ports}),
            true,
        ),
        (
            json!({"selector": {"app": "httpbin"}, "ports": ports}),
            false,
        ),
    ] {
        let mut index = seed();
        index.upsert_service(api_service(spec.clone()));
        let b = broken(&create(&index, &seed_lockdown()));
        assert_eq!(
            b.contains(&"foo/external:httpbin-public: exposed-outside-mesh".to_string()),
            exposed,
            "{spec}: {b:?}"
        );
    }
}

#[test]
fn gateways_and_waypoints_are_clients_never_servers() {
    // The ingress gateway as Istio's gateway chart injects it, behind a LoadBalancer Service.
    let gateway = |extra: Value| {
        let mut p = json!({"metadata": {"labels": {"istio": "ingressgateway"}},
            "spec": {"containers": [{"name": "istio-proxy", "args": ["proxy", "router", "--domain", "$(POD_NAMESPACE).svc.cluster.local"],
                "ports": [{"containerPort": 8080}]}]}});
        merge(&mut p, extra);
        p
    };
    let strict_mesh = mesh_policy(json!({"peers": [{"mtls": {}}]}));
    for extra in [
        json!({}),
        json!({"metadata": {"labels": {"gateway.networking.k8s.io/gateway-name": "waypoint"}}}),
    ] {
        let mut index = auto_mtls(seed());
        index.upsert_pod(pod(
            "istio-ingress",
            "ingressgateway",
            true,
            gateway(extra.clone()),
        ));
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-ingress"},
            "spec": {"type": "LoadBalancer", "selector": {"istio": "ingressgateway"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
        .unwrap();
        index.upsert_service(crate::model::Service::from_api(&svc, "cluster.local").unwrap());
        let old = index.legacy_policies("")[0].clone();
        let v = update(&index, &Rule::Legacy(old), &strict_mesh);
        assert!(
            !v.servers.iter().any(|s| &*s.namespace == "istio-ingress"),
            "{extra}: the gateway is no server"
        );
        assert!(
            !broken(&v)
                .iter()
                .any(|c| c.contains("external:istio-ingressgateway")),
            "{extra}: {:?}",
            broken(&v)
        );
    }
}

fn caller(kind: crate::model::CallerKind, value: Value) -> crate::model::ApiCaller {
    crate::model::ApiCaller::from_json(kind, &value, "cluster.local").unwrap()
}

#[test]
fn the_api_server_is_a_client_of_the_webhooks_it_calls() {
    use crate::model::CallerKind;
    // foo/httpbin's Service port 8000 lands on container port 80, which the lock-down covers.
    let hooks = [
        (
            CallerKind::ValidatingWebhookConfiguration,
            json!({"metadata": {"name": "policy-hook"},
            "webhooks": [{"name": "a.example.com", "clientConfig": {"service": {"namespace": "foo", "name": "httpbin", "port": 8000}}}]}),
        ),
        (
            CallerKind::MutatingWebhookConfiguration,
            json!({"metadata": {"name": "injector"},
            "webhooks": [{"name": "b.example.com", "clientConfig": {"url": "https://httpbin.foo.svc:8000/mutate"}}]}),
        ),
        (
            CallerKind::ApiService,
            json!({"metadata": {"name": "v1.example.com"},
            "spec": {"service": {"namespace": "foo", "name": "httpbin", "port": 8000}}}),
        ),
        (
            CallerKind::CustomResourceDefinition,
            json!({"metadata": {"name": "widgets.example.com"},
            "spec": {"conversion": {"webhook": {"clientConfig": {"service": {"namespace": "foo", "name": "httpbin", "port": 8000}}}}}}),
        ),
    ];
    for (kind, value) in hooks {
        let mut index = seed();
        index.upsert_api_caller(caller(kind, value));
        let b = broken(&create(&index, &seed_lockdown()));
        assert!(
            b.iter()
                .any(|c| c.starts_with("kube-apiserver/") && c.ends_with(": api-server-calls")),
            "{kind:?}: {b:?}"
        );
    }
    // Another port of the Service, or the default 443 it lacks, is no call to the server.
    let mut index = seed();
    index.upsert_api_caller(caller(
        CallerKind::ValidatingWebhookConfiguration,
        json!({"metadata": {"name": "elsewhere"}, "webhooks": [{"name": "c", "clientConfig": {"service": {"namespace": "foo", "name": "httpbin"}}}]}),
    ));
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(!b.iter().any(|c| c.starts_with("kube-apiserver/")), "{b:?}");
}

/// The seed with auto mTLS on and a mesh-wide STRICT PeerAuthentication in `root`.
fn strict_mesh_under(root: &str) -> Index {
    with(
        auto_mtls(seed()),
        [pa(root, "default", json!({"mtls": {"mode": "STRICT"}}))],
    )
}

fn mesh(root: &str, enable_auto_mtls: bool) -> MeshConfig {
    MeshConfig {
        root_namespace: root.into(),
        enable_auto_mtls,
    }
}

#[test]
fn turning_auto_mtls_off_cuts_off_sidecar_clients_of_strict_servers() {
    let index = strict_mesh_under("istio-system");
    let v = evaluate_mesh_change(
        &index,
        &mesh("istio-system", true),
        &mesh("istio-system", false),
        &Evidence::inventory_only(),
    );
    let b = broken(&v);
    assert!(b.contains(&"foo/sleep: auto-mtls-off".to_string()), "{b:?}");
    assert!(
        !b.iter().any(|c| c.starts_with("legacy/")),
        "legacy/sleep was cut off before the change: {b:?}"
    );
    assert!(v.servers.iter().all(|s| !s.locked_down()));
    assert!(
        !v.servers
            .iter()
            .any(|s| *s.namespace == *"foo" && *s.workload == *"httpbin"),
        "httpbin.foo has an ISTIO_MUTUAL DestinationRule"
    );
    let back = evaluate_mesh_change(
        &index,
        &mesh("istio-system", false),
        &mesh("istio-system", true),
        &Evidence::inventory_only(),
    );
    assert!(!back.breaks_clients(), "turning it on relaxes");
}

#[test]
fn moving_the_root_namespace_makes_its_policy_mesh_wide() {
    let index = strict_mesh_under("mesh-root");
    let v = evaluate_mesh_change(
        &index,
        &mesh("istio-system", true),
        &mesh("mesh-root", true),
        &Evidence::inventory_only(),
    );
    assert!(broken(&v).contains(&"legacy/sleep: no-proxy".to_string()));
    assert!(v.servers.iter().any(|s| s.locked_down()));
    assert_eq!(v.ignored_root, None);
    let same = evaluate_mesh_change(
        &index,
        &mesh("istio-system", true),
        &mesh("istio-system", true),
        &Evidence::inventory_only(),
    );
    assert_eq!(same, Verdict::default());
}

#[test]
fn a_root_namespace_the_guard_ignores_is_denied_even_without_policies() {
    let v = evaluate_mesh_change(
        &auto_mtls(seed()),
        &mesh("istio-system", true),
        &mesh("kube-system", true),
        &Evidence::inventory_only(),
    );
    assert_eq!(v.ignored_root.as_deref(), Some("kube-system"));
    assert!(v.denies() && v.breaks.is_empty());
}

/// A second pod group of `ns/app`, as a Deployment mid-rollout has under a new ReplicaSet.
fn rollout(index: &mut Index, ns: &str, app: &str) {
    index.upsert_pod(pod(
        ns,
        app,
        true,
        json!({"metadata": {"name": format!("{app}-new-1"), "labels": {"pod-template-hash": "new"}}}),
    ));
}

#[test]
fn a_workload_mid_rollout_is_one_server_and_one_client() {
    let mut index = seed();
    rollout(&mut index, "bar", "httpbin");
    rollout(&mut index, "foo", "sleep");
    let groups = |ns: &str, name: &str| {
        index
            .workloads_in(ns)
            .filter(|(_, w)| &*w.name == name)
            .count()
    };
    assert_eq!((groups("bar", "httpbin"), groups("foo", "sleep")), (2, 2));
    let old = mesh_policy(json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}));
    let v = update(&index, &old, &mesh_policy(json!({"peers": [{"mtls": {}}]})));
    let named: Vec<_> = v
        .servers
        .iter()
        .filter(|s| *s.namespace == *"bar" && *s.workload == *"httpbin")
        .collect();
    assert_eq!(named.len(), 1, "{:?}", v.servers);
    assert_eq!(named[0].pods, 2);
    let b = broken(&v);
    let sleeps = b
        .iter()
        .filter(|c| *c == "foo/sleep: auto-mtls-off")
        .count();
    assert_eq!(sleeps, 1, "{b:?}");
    for brk in &v.breaks {
        let mut targets: Vec<_> = v
            .targets(brk)
            .map(|s| (&s.namespace, &s.workload))
            .collect();
        let all = targets.len();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), all, "{:?} names a server twice", brk.client);
    }
}

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
    index.upsert_pod(pod(
        "legacy",
        "node-agent",
        false,
        json!({"spec": {"hostNetwork": true}}),
    ));
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
        index.upsert_pod(pod(
            "legacy",
            &app,
            false,
            json!({"metadata": {"name": app}}),
        ));
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
    assert!(crate::report::deny_message("x", &v, None).contains("checked only in part"));
}

#[test]
fn pods_without_an_address_and_namespaces_the_inventory_lacks_are_matched_cautiously() {
    let from_ip = httpbin_only_from(json!([{"ipBlock": {"cidr": "192.168.0.0/16"}}]), json!([]));
    let mut index = seed_with_policies(&[from_ip]);
    index.upsert_pod(pod(
        "legacy",
        "pending",
        false,
        json!({"status": {"phase": "Pending", "podIP": null}}),
    ));
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
