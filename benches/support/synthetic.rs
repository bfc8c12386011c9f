#![allow(dead_code)] // each bench target uses a different part of the generator
//! A synthetic mesh shaped like `kubectl get ... -o json`: deployments of ten pods over
//! namespaces of twenty deployments, 5% of them without a sidecar, 10% ambient, the rest
//! injected; a Service per deployment; PeerAuthentications at all three levels;
//! DestinationRules in every tenth namespace; auto mTLS on.

use serde_json::{json, Value};

pub const REPLICAS: usize = 10;
const DEPLOYMENTS_PER_NS: usize = 20;

pub fn namespace_name(i: usize) -> String {
    format!("team-{i:04}")
}

pub fn deployment_name(d: usize) -> String {
    format!("svc-{d:05}")
}

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Sidecar,
    Ambient,
    NoProxy,
}

/// The kind of deployment `d`: every 20th has no proxy, every 10th (offset 1) is ambient.
pub fn kind(d: usize) -> Kind {
    if d.is_multiple_of(20) {
        Kind::NoProxy
    } else if d % 10 == 1 {
        Kind::Ambient
    } else {
        Kind::Sidecar
    }
}

fn pod(ns: &str, app: &str, r: usize, k: Kind, ip: usize) -> Value {
    let hash = "7d4f9c8b5";
    let mut labels = json!({"app": app, "version": "v1", "pod-template-hash": hash});
    let mut annotations = json!({"prometheus.io/scrape": "true", "prometheus.io/port": "8080"});
    let mut containers = vec![json!({
        "name": app, "image": format!("registry.example/{app}:1.0"),
        "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}
    })];
    match k {
        Kind::Sidecar => {
            labels["security.istio.io/tlsMode"] = json!("istio");
            labels["service.istio.io/canonical-name"] = json!(app);
            // Sidecars in a mesh with ambient workloads run with HBONE enabled (ambient profile).
            labels["networking.istio.io/tunnel"] = json!("http");
            annotations["sidecar.istio.io/status"] = json!("{\"initContainers\":[\"istio-init\"],\"containers\":[\"istio-proxy\"],\"volumes\":[\"workload-socket\",\"credential-socket\",\"workload-certs\",\"istio-envoy\",\"istio-data\",\"istio-podinfo\",\"istio-token\",\"istiod-ca-cert\"],\"imagePullSecrets\":null,\"revision\":\"default\"}");
            containers.push(json!({"name": "istio-proxy", "image": "proxyv2:1.27.0",
                "ports": [{"name": "http-envoy-prom", "containerPort": 15090}]}));
        }
        Kind::Ambient => {
            annotations["ambient.istio.io/redirection"] = json!("enabled");
            labels["istio.io/dataplane-mode"] = json!("ambient");
        }
        Kind::NoProxy => {}
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{app}-{hash}-{r:05}"), "namespace": ns, "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{hash}"),
                "uid": format!("{ns}-{app}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"containers": containers, "serviceAccountName": app},
        "status": {"phase": "Running", "podIP": format!("10.{}.{}.{}", 64 + ip / 65536 % 64, ip / 256 % 256, ip % 256)}
    })
}

/// The inventory as a `kind: List`, with about `pods` pods.
pub fn inventory(pods: usize) -> Value {
    let deployments = pods.div_ceil(REPLICAS);
    let namespaces = deployments.div_ceil(DEPLOYMENTS_PER_NS);
    let mut items = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
               "data": {"mesh": "enableAutoMtls: true\nrootNamespace: istio-system\n"}}),
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": "default", "namespace": "istio-system", "creationTimestamp": "2024-01-01T00:00:00Z"},
               "spec": {"mtls": {"mode": "PERMISSIVE"}}}),
    ];
    // MTLS_GUARD_BENCH_PLAINTEXT_RULE=1 gives each DestinationRule a DISABLE port no Service
    // uses: the answers stay the same, but a review can no longer skip the rule lookups.
    let plaintext_rule = std::env::var_os("MTLS_GUARD_BENCH_PLAINTEXT_RULE").is_some();
    let mut ip = 0;
    for n in 0..namespaces {
        let ns = namespace_name(n);
        items.push(json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"istio-injection": "enabled"}}}));
        if n % 5 == 0 {
            items.push(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                "metadata": {"name": "default", "namespace": ns, "creationTimestamp": "2024-01-02T00:00:00Z"},
                "spec": {"mtls": {"mode": "PERMISSIVE"}}}));
        }
        if n % 10 == 0 {
            let first = deployment_name(n * DEPLOYMENTS_PER_NS);
            let mut policy = json!({"tls": {"mode": "ISTIO_MUTUAL"},
                "connectionPool": {"http": {"http2MaxRequests": 1000}}});
            if plaintext_rule {
                policy["portLevelSettings"] =
                    json!([{"port": {"number": 9999}, "tls": {"mode": "DISABLE"}}]);
            }
            items.push(json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": first, "namespace": ns, "creationTimestamp": "2024-01-03T00:00:00Z"},
                "spec": {"host": first, "trafficPolicy": policy}}));
        }
        for d in n * DEPLOYMENTS_PER_NS..((n + 1) * DEPLOYMENTS_PER_NS).min(deployments) {
            let app = deployment_name(d);
            items.push(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": app, "namespace": ns},
                "spec": {"selector": {"app": app}, "clusterIP": format!("10.96.{}.{}", d / 256 % 256, d % 256),
                    "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}));
            if d % 10 == 5 {
                items.push(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                    "metadata": {"name": app, "namespace": ns, "creationTimestamp": "2024-01-04T00:00:00Z"},
                    "spec": {"selector": {"matchLabels": {"app": app}}, "mtls": {"mode": "PERMISSIVE"},
                        "portLevelMtls": {"9090": {"mode": "DISABLE"}}}}));
            }
            for r in 0..REPLICAS {
                items.push(pod(&ns, &app, r, kind(d), ip));
                ip += 1;
            }
        }
    }
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

/// A STRICT PeerAuthentication for one sidecar deployment (the usual lock-down).
pub fn workload_lockdown(d: usize) -> Value {
    let ns = namespace_name(d / DEPLOYMENTS_PER_NS);
    let app = deployment_name(d);
    json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": format!("{app}-strict"), "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": app}}, "mtls": {"mode": "STRICT"}}})
}

/// The mesh-wide PeerAuthentication turned from PERMISSIVE to STRICT.
pub fn mesh_lockdown() -> (Value, Value) {
    let meta = json!({"name": "default", "namespace": "istio-system", "creationTimestamp": "2024-01-01T00:00:00Z"});
    let old = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": meta, "spec": {"mtls": {"mode": "PERMISSIVE"}}});
    let new = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": meta, "spec": {"mtls": {"mode": "STRICT"}}});
    (old, new)
}

/// An AdmissionReview for a CREATE of `object`.
pub fn review(object: &Value) -> Value {
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "00000000-0000-4000-8000-000000000001",
        "kind": {"group": "security.istio.io", "version": "v1", "kind": "PeerAuthentication"},
        "resource": {"group": "security.istio.io", "version": "v1", "resource": "peerauthentications"},
        "name": object["metadata"]["name"], "namespace": object["metadata"]["namespace"],
        "operation": "CREATE", "userInfo": {"username": "bench"}, "object": object, "oldObject": null, "dryRun": false}})
}
