//! What the inventory leaves out, and how it names hosts.

use std::collections::BTreeSet;

use crate::model::Pod;

/// What the inventory leaves out, and how it names hosts.
#[derive(Debug, Clone)]
pub struct Filters {
    pub ignored_namespaces: BTreeSet<String>,
    /// `key=value` labels of Istio's own control-plane pods.
    pub ignored_pod_labels: Vec<(String, String)>,
    pub cluster_domain: String,
    /// Where the mesh config ConfigMap lives.
    pub istio_namespace: String,
    /// Read NetworkPolicies and count only clients they let reach a server.
    pub respect_network_policies: bool,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            ignored_namespaces: ["kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .into(),
            ignored_pod_labels: [
                ("app", "istiod"),
                ("app", "ztunnel"),
                ("k8s-app", "istio-cni-node"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into(),
            cluster_domain: "cluster.local".into(),
            istio_namespace: "istio-system".into(),
            respect_network_policies: false,
        }
    }
}

impl Filters {
    pub(super) fn ignores(&self, pod: &Pod) -> bool {
        self.ignored_namespaces.contains(&pod.namespace)
            || self
                .ignored_pod_labels
                .iter()
                .any(|(k, v)| pod.shape.label(k) == Some(v.as_str()))
    }
}
