//! The indexed inventory snapshot the engine decides on.
//!
//! Pods are grouped into workloads: siblings from one template share a [`PodShape`], so the
//! engine evaluates a Deployment once, not once per replica. Rules are kept per namespace, in
//! Istio's precedence order (oldest first, ties to the smaller name).

pub mod file;
pub mod live;
pub mod shared;

pub use file::InventoryError;
pub use shared::{SharedIndex, WatchedKind};

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use crate::model::{
    DestinationRule, LegacyPolicy, MeshConfig, Namespace, PeerAuthentication, Pod, PodShape, Proxy,
    Rule, Service,
};

/// What the inventory leaves out, and how it names hosts.
#[derive(Debug, Clone)]
pub struct Filters {
    pub ignored_namespaces: BTreeSet<String>,
    /// `key=value` labels of Istio's own control-plane pods.
    pub ignored_pod_labels: Vec<(String, String)>,
    pub cluster_domain: String,
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
        }
    }
}

impl Filters {
    fn ignores(&self, pod: &Pod) -> bool {
        self.ignored_namespaces.contains(&pod.namespace)
            || self
                .ignored_pod_labels
                .iter()
                .any(|(k, v)| pod.shape.label(k) == Some(v.as_str()))
    }
}

/// Pods of one workload that share a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub shape: PodShape,
    /// Active (Running or Pending) pods: name and IP.
    pub pods: Vec<(String, Option<IpAddr>)>,
}

impl Workload {
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.pods.iter().filter_map(|(_, ip)| *ip)
    }
}

pub type WorkloadId = usize;

#[derive(Debug, Default)]
pub struct Index {
    filters: Filters,
    mesh: MeshConfig,
    namespaces: HashMap<String, Namespace>,
    workloads: Vec<Option<Workload>>,
    free: Vec<WorkloadId>,
    by_namespace: HashMap<String, Vec<WorkloadId>>,
    pod_slots: HashMap<(String, String), WorkloadId>,
    services: HashMap<String, Vec<Service>>,
    peer_authns: HashMap<String, Vec<PeerAuthentication>>,
    legacy: HashMap<String, Vec<LegacyPolicy>>,
    dest_rules: HashMap<String, Vec<DestinationRule>>,
}

/// One trimmed object, as the index stores it.
#[derive(Debug, Clone)]
pub enum Item {
    Pod(Pod),
    Service(Service),
    Namespace(Namespace),
    Mesh(MeshConfig),
    Rule(Rule),
}

impl Item {
    /// (namespace, name); namespaces themselves have an empty namespace.
    pub fn key(&self) -> (String, String) {
        match self {
            Item::Pod(p) => (p.namespace.clone(), p.name.clone()),
            Item::Service(s) => (s.namespace.clone(), s.name.clone()),
            Item::Namespace(n) => (String::new(), n.name.clone()),
            Item::Mesh(_) => (String::new(), String::new()),
            Item::Rule(r) => (r.origin().namespace.clone(), r.origin().name.clone()),
        }
    }
}

fn upsert_sorted<T: Clone>(list: &mut Vec<T>, item: T, key: impl Fn(&T) -> (i64, String)) {
    let k = key(&item);
    list.retain(|x| key(x).1 != k.1);
    let at = list.partition_point(|x| key(x) < k);
    list.insert(at, item);
}

impl Index {
    pub fn new(filters: Filters) -> Index {
        Index {
            filters,
            ..Index::default()
        }
    }

    pub fn filters(&self) -> &Filters {
        &self.filters
    }

    pub fn mesh(&self) -> &MeshConfig {
        &self.mesh
    }

    pub fn set_mesh(&mut self, mesh: MeshConfig) {
        self.mesh = mesh;
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }

    pub fn upsert_namespace(&mut self, ns: Namespace) {
        self.namespaces.insert(ns.name.clone(), ns);
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn workload(&self, id: WorkloadId) -> &Workload {
        self.workloads[id]
            .as_ref()
            .expect("workload ids handed out by the index are live")
    }

    pub fn workloads(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.workloads
            .iter()
            .enumerate()
            .filter_map(|(id, w)| w.as_ref().map(|w| (id, w)))
    }

    pub fn workloads_in(&self, namespace: &str) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|id| (*id, self.workload(*id)))
    }

    pub fn pod_count(&self) -> usize {
        self.pod_slots.len()
    }

    /// Adds or replaces a pod; ignored and inactive pods are only removed.
    pub fn upsert_pod(&mut self, pod: Pod) {
        self.remove_pod(&pod.namespace, &pod.name);
        if !pod.active || self.filters.ignores(&pod) {
            return;
        }
        let existing = self.by_namespace.get(&pod.namespace).and_then(|ids| {
            ids.iter().copied().find(|id| {
                let w = self.workload(*id);
                w.name == pod.workload && w.shape == pod.shape
            })
        });
        let id = match existing {
            Some(id) => id,
            None => self.new_workload(&pod),
        };
        if let Some(w) = self.workloads[id].as_mut() {
            w.pods.push((pod.name.clone(), pod.ip));
        }
        self.pod_slots.insert((pod.namespace, pod.name), id);
    }

    fn new_workload(&mut self, pod: &Pod) -> WorkloadId {
        let w = Workload {
            namespace: pod.namespace.clone(),
            name: pod.workload.clone(),
            shape: pod.shape.clone(),
            pods: Vec::new(),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.workloads[id] = Some(w);
                id
            }
            None => {
                self.workloads.push(Some(w));
                self.workloads.len() - 1
            }
        };
        self.by_namespace
            .entry(pod.namespace.clone())
            .or_default()
            .push(id);
        id
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        let Some(id) = self
            .pod_slots
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        let Some(w) = self.workloads[id].as_mut() else {
            return;
        };
        w.pods.retain(|(n, _)| n != name);
        if w.pods.is_empty() {
            self.workloads[id] = None;
            self.free.push(id);
            if let Some(ids) = self.by_namespace.get_mut(namespace) {
                ids.retain(|i| *i != id);
            }
        }
    }

    pub fn services_in(&self, namespace: &str) -> &[Service] {
        self.services.get(namespace).map_or(&[], Vec::as_slice)
    }

    pub fn upsert_service(&mut self, svc: Service) {
        let list = self.services.entry(svc.namespace.clone()).or_default();
        list.retain(|s| s.name != svc.name);
        list.push(svc);
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if let Some(list) = self.services.get_mut(namespace) {
            list.retain(|s| s.name != name);
        }
    }

    pub fn peer_authns(&self, namespace: &str) -> &[PeerAuthentication] {
        self.peer_authns.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Policies of `namespace`; the cluster-scoped MeshPolicies live under `""`.
    pub fn legacy_policies(&self, namespace: &str) -> &[LegacyPolicy] {
        self.legacy.get(namespace).map_or(&[], Vec::as_slice)
    }

    pub fn dest_rules(&self, namespace: &str) -> &[DestinationRule] {
        self.dest_rules.get(namespace).map_or(&[], Vec::as_slice)
    }

    pub fn upsert_rule(&mut self, rule: Rule) {
        let ns = rule.origin().namespace.clone();
        match rule {
            Rule::PeerAuthentication(r) => {
                upsert_sorted(self.peer_authns.entry(ns).or_default(), r, |r| {
                    (r.origin.created, r.origin.name.clone())
                })
            }
            Rule::Legacy(r) => upsert_sorted(self.legacy.entry(ns).or_default(), r, |r| {
                (
                    r.origin.created,
                    format!("{}/{}", r.origin.kind, r.origin.name),
                )
            }),
            Rule::DestinationRule(r) => {
                upsert_sorted(self.dest_rules.entry(ns).or_default(), r, |r| {
                    (r.origin.created, r.origin.name.clone())
                })
            }
        }
    }

    pub fn remove_rule(&mut self, origin: &crate::model::Origin) {
        let ns = origin.namespace.as_str();
        match origin.kind {
            crate::model::RuleKind::PeerAuthentication => {
                if let Some(l) = self.peer_authns.get_mut(ns) {
                    l.retain(|r| !r.origin.same_object(origin));
                }
            }
            crate::model::RuleKind::Policy | crate::model::RuleKind::MeshPolicy => {
                if let Some(l) = self.legacy.get_mut(ns) {
                    l.retain(|r| !r.origin.same_object(origin));
                }
            }
            crate::model::RuleKind::DestinationRule => {
                if let Some(l) = self.dest_rules.get_mut(ns) {
                    l.retain(|r| !r.origin.same_object(origin));
                }
            }
        }
    }

    /// Adds or replaces one object.
    pub fn apply(&mut self, item: Item) {
        match item {
            Item::Pod(p) => self.upsert_pod(p),
            Item::Service(s) => self.upsert_service(s),
            Item::Namespace(n) => self.upsert_namespace(n),
            Item::Mesh(m) => self.set_mesh(m),
            Item::Rule(r) => self.upsert_rule(r),
        }
    }

    /// Removes one object of `kind` by namespace and name.
    pub fn remove(&mut self, kind: WatchedKind, namespace: &str, name: &str) {
        match kind {
            WatchedKind::Pod => self.remove_pod(namespace, name),
            WatchedKind::Service => self.remove_service(namespace, name),
            WatchedKind::Namespace => self.remove_namespace(name),
            WatchedKind::MeshConfig => self.set_mesh(MeshConfig::default()),
            WatchedKind::Rule(rule_kind) => self.remove_rule(&crate::model::Origin {
                kind: rule_kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
                created: 0,
            }),
        }
    }

    /// Keys (namespace, name) of every object of `kind` the index holds.
    fn keys(&self, kind: WatchedKind) -> Vec<(String, String)> {
        let rules = |origins: Vec<&crate::model::Origin>| {
            origins
                .into_iter()
                .map(|o| (o.namespace.clone(), o.name.clone()))
                .collect()
        };
        match kind {
            WatchedKind::Pod => self.pod_slots.keys().cloned().collect(),
            WatchedKind::Service => self
                .services
                .values()
                .flatten()
                .map(|s| (s.namespace.clone(), s.name.clone()))
                .collect(),
            WatchedKind::Namespace => self
                .namespaces
                .keys()
                .map(|n| (String::new(), n.clone()))
                .collect(),
            WatchedKind::MeshConfig => Vec::new(),
            WatchedKind::Rule(crate::model::RuleKind::PeerAuthentication) => rules(
                self.peer_authns
                    .values()
                    .flatten()
                    .map(|r| &r.origin)
                    .collect(),
            ),
            WatchedKind::Rule(crate::model::RuleKind::DestinationRule) => rules(
                self.dest_rules
                    .values()
                    .flatten()
                    .map(|r| &r.origin)
                    .collect(),
            ),
            WatchedKind::Rule(k) => rules(
                self.legacy
                    .values()
                    .flatten()
                    .map(|r| &r.origin)
                    .filter(|o| o.kind == k)
                    .collect(),
            ),
        }
    }

    /// Replaces every object of `kind` with a fresh full list (a watch's initial list or relist).
    pub fn resync(&mut self, kind: WatchedKind, items: Vec<Item>) {
        let fresh: std::collections::HashSet<(String, String)> =
            items.iter().map(Item::key).collect();
        for (ns, name) in self.keys(kind) {
            if !fresh.contains(&(ns.clone(), name.clone())) {
                self.remove(kind, &ns, &name);
            }
        }
        if kind == WatchedKind::MeshConfig && items.is_empty() {
            self.set_mesh(MeshConfig::default());
        }
        for item in items {
            self.apply(item);
        }
    }

    /// Workloads with a proxy that can be locked down.
    pub fn is_server(w: &Workload) -> bool {
        w.shape.proxy != Proxy::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, app: &str) -> Pod {
        Pod::from_api(
            &serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns, "labels": {"app": app},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": app, "uid": "u", "controller": true}]},
                "spec": {"containers": [{"name": "app"}]}
            }))
            .unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn siblings_share_one_workload_and_leave_it_when_removed() {
        let mut index = Index::default();
        index.upsert_pod(pod("a", "web-0", "web"));
        index.upsert_pod(pod("a", "web-1", "web"));
        index.upsert_pod(pod("a", "db-0", "db"));
        assert_eq!(index.pod_count(), 3);
        assert_eq!(index.workloads_in("a").count(), 2);
        index.remove_pod("a", "web-0");
        index.remove_pod("a", "web-1");
        assert_eq!(
            index.workloads_in("a").count(),
            1,
            "an empty workload is dropped"
        );
        index.upsert_pod(pod("a", "web-0", "web"));
        assert_eq!(index.workloads().count(), 2, "its slot is reused");
    }

    #[test]
    fn resync_replaces_a_kind_whole() {
        let mut index = Index::default();
        index.upsert_pod(pod("a", "gone", "x"));
        index.upsert_pod(pod("a", "kept", "y"));
        index.resync(
            WatchedKind::Pod,
            vec![
                Item::Pod(pod("a", "kept", "y")),
                Item::Pod(pod("b", "new", "z")),
            ],
        );
        let mut names: Vec<_> = index.workloads().map(|(_, w)| w.name.clone()).collect();
        names.sort();
        assert_eq!(names, ["y", "z"]);
        index.set_mesh(MeshConfig {
            root_namespace: "r".into(),
            enable_auto_mtls: false,
        });
        index.resync(WatchedKind::MeshConfig, Vec::new());
        assert_eq!(
            index.mesh(),
            &MeshConfig::default(),
            "a deleted mesh config means Istio's defaults"
        );
    }
}
