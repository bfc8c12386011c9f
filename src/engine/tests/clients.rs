//! Which clients a STRICT server cuts off: sidecars sent to plaintext by DestinationRules or auto
//! mTLS, ambient and proxyless pods, the kubelet, external callers and the API server.

use k8s_openapi::api::core::v1 as core;
use serde_json::{json, Value};

use super::fixtures::*;
use crate::engine::*;

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
    let index = strict_httpbin();
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
    let index = with(seed_without_dr(), [aged(port_level, 1)]);
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
    assert_eq!(
        broken(&create(&strict_httpbin(), &private)),
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
    let mut index = seed_without_dr();
    let unlabelled = pod("foo", "httpbin").container(proxy());
    replace_pod(&mut index, HTTPBIN_POD, unlabelled);
    let b = broken(&create(&index, &strict_httpbin_pa()));
    assert!(
        b.contains(&"bar/sleep: target-not-labelled".to_string()),
        "{b:?}"
    );

    let disable = pa("foo", "default", json!({"mtls": {"mode": "DISABLE"}}));
    let index = with(seed_without_dr(), [aged(disable, 1)]);
    let b = broken(&create(&index, &strict_httpbin_pa()));
    assert!(
        b.contains(&"bar/sleep: namespace-disable".to_string()),
        "{b:?}"
    );

    assert_eq!(
        broken(&create(&seed_without_dr(), &strict_httpbin_pa())),
        ["legacy/sleep: no-proxy"],
        "auto mTLS covers labelled sidecars"
    );
}

#[test]
fn headless_service_with_a_sidecarless_backend_downgrades_every_client() {
    let mut index = seed_without_dr();
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "db", "namespace": "foo"},
        "spec": {"clusterIP": "None", "selector": {"role": "db"}, "ports": [{"port": 5432}]}}))
    .unwrap();
    index.upsert_service(crate::model::Service::from_api(&svc, "cluster.local").unwrap());
    let meshed = pod("foo", "db-0").sidecar().label("role", "db");
    index.upsert_pod(meshed.ports(&[5432]).build());
    let plain = pod("foo", "db-1").label("role", "db");
    index.upsert_pod(plain.ports(&[5432]).build());
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
    index.upsert_pod(pod("bar", "amb").ambient().build());
    let wants = pod("bar", "wants").label("istio.io/dataplane-mode", "ambient");
    index.upsert_pod(wants.build());
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
    index.upsert_pod(pod("bar", "amb").ambient().build());
    let tunnel = pod("foo", "httpbin").sidecar();
    let tunnel = tunnel.label("networking.istio.io/tunnel", "http");
    replace_pod(&mut index, HTTPBIN_POD, tunnel);
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        !b.iter().any(|c| c.starts_with("bar/amb")),
        "HBONE-capable sidecar: {b:?}"
    );
}

#[test]
fn a_namespace_asking_for_ambient_names_its_unenrolled_pods_unless_a_pod_says_none() {
    let mut index = seed();
    let mut ns = core::Namespace::default();
    ns.metadata.name = Some("legacy".into());
    ns.metadata.labels = Some([("istio.io/dataplane-mode".into(), "ambient".into())].into());
    index.upsert_namespace(crate::model::Namespace::from_api(&ns).unwrap());
    let refuses = pod("legacy", "opted-out").label("istio.io/dataplane-mode", "none");
    index.upsert_pod(refuses.build());
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        b.contains(&"legacy/sleep: ambient-not-enrolled".to_string()),
        "{b:?}"
    );
    assert!(
        b.contains(&"legacy/opted-out: no-proxy".to_string()),
        "{b:?}"
    );
}

#[test]
fn outbound_exclusions_bypass_the_client_sidecar() {
    let mut index = seed();
    let excluding = pod("bar", "sleep").sidecar();
    let excluding = excluding.annotation("traffic.sidecar.istio.io/excludeOutboundPorts", "8000");
    replace_pod(&mut index, BAR_SLEEP_POD, excluding);
    let b = broken(&create(&index, &seed_lockdown()));
    assert!(
        b.contains(&"bar/sleep: outbound-bypass".to_string()),
        "{b:?}"
    );

    let mut index = seed();
    let excluding = pod("bar", "sleep").sidecar();
    let excluding = excluding.annotation(
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "10.96.0.0/16",
    );
    replace_pod(&mut index, BAR_SLEEP_POD, excluding);
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
        let sleep = pod("bar", "sleep").sidecar();
        let sleep = sleep.annotation("traffic.sidecar.istio.io/excludeOutboundPorts", excluded);
        replace_pod(&mut index, BAR_SLEEP_POD, sleep);
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
    let probed = pod("foo", "httpbin").sidecar().probe(80);
    let no_rewrite = probed
        .clone()
        .annotation("sidecar.istio.io/rewriteAppHTTPProbers", "false");
    for (httpbin, want) in [(probed, false), (no_rewrite, true)] {
        let mut index = seed();
        replace_pod(&mut index, HTTPBIN_POD, httpbin);
        let b = broken(&create(&index, &seed_lockdown()));
        assert_eq!(
            b.contains(&"foo/kubelet:httpbin: kubelet-probe".to_string()),
            want,
            "{b:?}"
        );
    }
}

#[test]
fn ignored_inactive_and_host_network_clients() {
    let mut index = seed();
    index.upsert_pod(pod("kube-system", "coredns").build());
    index.upsert_pod(pod("istio-system", "istiod").build());
    index.upsert_pod(pod("bar", "done").phase("Succeeded").build());
    index.upsert_pod(pod("bar", "node-agent").host_network().build());
    let b = broken(&create(&index, &seed_lockdown()));
    assert_eq!(
        b,
        ["bar/node-agent: host-network", "legacy/sleep: no-proxy"]
    );
}

#[test]
fn export_to_named_namespaces_and_workload_selectors_are_judged_per_client() {
    let mut index = strict_httpbin();
    index.upsert_pod(pod("baz", "sleep").sidecar().build());
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
    let plain = || {
        let spec = json!({"host": "httpbin.foo.svc.cluster.local", "trafficPolicy": {"tls": {"mode": "DISABLE"}}});
        aged(dr("bar", "plain", spec), 2)
    };
    let index = with(strict_httpbin(), [plain()]);
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
    let fresh = with(seed_without_dr(), [plain()]);
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
    let router = core::Container {
        name: "istio-proxy".into(),
        args: Some(
            [
                "proxy",
                "router",
                "--domain",
                "$(POD_NAMESPACE).svc.cluster.local",
            ]
            .map(String::from)
            .into(),
        ),
        ports: Some(vec![core::ContainerPort {
            container_port: 8080,
            ..Default::default()
        }]),
        ..Default::default()
    };
    let gateway = pod("istio-ingress", "ingressgateway")
        .label("istio", "ingressgateway")
        .label("security.istio.io/tlsMode", "istio")
        .only(router);
    let waypoint = gateway
        .clone()
        .label("gateway.networking.k8s.io/gateway-name", "waypoint");
    let strict_mesh = mesh_policy(json!({"peers": [{"mtls": {}}]}));
    for (kind, proxy) in [("gateway", gateway), ("waypoint", waypoint)] {
        let mut index = auto_mtls(seed());
        index.upsert_pod(proxy.build());
        let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
            "metadata": {"name": "istio-ingressgateway", "namespace": "istio-ingress"},
            "spec": {"type": "LoadBalancer", "selector": {"istio": "ingressgateway"}, "ports": [{"port": 80, "targetPort": 8080}]}}))
        .unwrap();
        index.upsert_service(crate::model::Service::from_api(&svc, "cluster.local").unwrap());
        let old = index.legacy_policies("")[0].clone();
        let v = update(&index, &Rule::Legacy(old), &strict_mesh);
        assert!(
            !v.servers.iter().any(|s| &*s.namespace == "istio-ingress"),
            "{kind}: the gateway is no server"
        );
        assert!(
            !broken(&v)
                .iter()
                .any(|c| c.contains("external:istio-ingressgateway")),
            "{kind}: {:?}",
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
