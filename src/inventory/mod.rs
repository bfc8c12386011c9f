//! The indexed inventory snapshot the engine decides on.
//!
//! Pods are grouped into workloads: siblings from one template share a [`PodShape`], so the
//! engine evaluates a Deployment once, not once per replica. Rules are kept per namespace, in
//! Istio's precedence order (oldest first, ties to the smaller name).

pub mod file;

pub use file::InventoryError;

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

    /// Workloads with a proxy that can be locked down.
    pub fn is_server(w: &Workload) -> bool {
        w.shape.proxy != Proxy::None
    }
}
