//! The indexed inventory snapshot the engine decides on.
//!
//! Pods are grouped into workloads: siblings from one template share a [`PodShape`], so the
//! engine evaluates a Deployment once, not once per replica. Rules are kept per namespace, in
//! Istio's precedence order (oldest first, ties to the smaller name).

mod callers;
mod dest_hosts;
pub mod file;
mod filters;
pub mod live;
mod network_policies;
mod pod_watch;
pub mod protobuf;
mod reconcile;
pub mod shared;
mod stream;
mod workloads;

pub(crate) use dest_hosts::HostKeys;
pub use file::InventoryError;
pub use filters::Filters;
pub use network_policies::NETWORK_POLICY_BUDGET;
pub(crate) use reconcile::read_namespace;
pub use reconcile::{Item, Listed};
pub use shared::{SharedIndex, WatchedKind};
pub use workloads::{Route, Scan, Workload, WorkloadId, Workloads};

use callers::Call;
use dest_hosts::DrHosts;
use network_policies::Policies;

use std::sync::Arc;

use crate::model::{
    ApiCaller, CallerKind, DestinationRule, Labels, LegacyPolicy, MeshConfig, Namespace,
    PeerAuthentication, Pod, Proxy, Rule, Service,
};

/// The index's hash maps: foldhash, several times faster than SipHash on the short strings
/// the index is keyed by, and seeded per process so that names and labels a tenant writes
/// cannot be chosen to collide.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

#[derive(Debug, Default)]
pub struct Index {
    filters: Filters,
    mesh: MeshConfig,
    namespaces: Map<String, Namespace>,
    workloads: Workloads,
    services: Map<String, Vec<Arc<Service>>>,
    peer_authns: Map<String, Vec<PeerAuthentication>>,
    legacy: Map<String, Vec<LegacyPolicy>>,
    dest_rules: Map<String, Vec<DestinationRule>>,
    dr_hosts: DrHosts,
    api_callers: Map<(CallerKind, String), ApiCaller>,
    /// namespace -> Service -> who calls which port, derived from `api_callers`.
    called: Map<String, Map<String, Vec<Call>>>,
    /// Services open outside the cluster (NodePort, LoadBalancer, externalIPs).
    exposed_services: usize,
    /// Kept only with `respect_network_policies`, by namespace, sorted by name.
    network_policies: Map<String, Policies>,
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
        self.workloads.get(id)
    }

    /// Every workload, and the lookups by namespace, label and client role.
    pub fn workloads(&self) -> &Workloads {
        &self.workloads
    }

    pub fn workloads_in(&self, namespace: &str) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.workloads.in_namespace(namespace)
    }

    pub fn pod_count(&self) -> usize {
        self.workloads.pod_count()
    }

    /// Adds or replaces a pod; ignored and inactive pods are only removed.
    pub fn upsert_pod(&mut self, pod: Pod) {
        if !pod.active || self.filters.ignores(&pod) {
            self.remove_pod(&pod.namespace, &pod.name);
        } else if let Some(id) = self.workloads.insert(pod) {
            self.select_services(id);
        }
    }

    /// Files the Services of its namespace that select workload `id` with it.
    fn select_services(&mut self, id: WorkloadId) {
        let w = self.workloads.get(id);
        let services: Vec<Arc<Service>> = self
            .services_in(&w.namespace)
            .iter()
            .filter(|s| s.selects(&w.shape.labels))
            .cloned()
            .collect();
        self.workloads
            .set_services(id, &services, &self.dr_hosts.keys);
    }

    /// Refiles the workloads a Service selected before a change, or selects after it.
    fn reselect(&mut self, namespace: &str, selectors: [Option<&Labels>; 2]) {
        let mut ids: Vec<WorkloadId> = selectors
            .into_iter()
            .flatten()
            .flat_map(|sel| self.workloads.matching(namespace, sel).map(|(id, _)| id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            self.select_services(id);
        }
    }

    pub fn remove_pod(&mut self, namespace: &str, name: &str) {
        self.workloads.remove(namespace, name);
    }

    pub fn services_in(&self, namespace: &str) -> &[Arc<Service>] {
        self.services.get(namespace).map_or(&[], Vec::as_slice)
    }

    pub fn upsert_service(&mut self, svc: Service) {
        let namespace = svc.namespace.clone();
        let old = self.take_service(&namespace, &svc.name);
        self.exposed_services += usize::from(svc.exposure.is_some());
        let svc = Arc::new(svc);
        self.services
            .entry(namespace.clone())
            .or_default()
            .push(Arc::clone(&svc));
        let old = old.as_ref().and_then(|o| o.selector.as_ref());
        self.reselect(&namespace, [old, svc.selector.as_ref()]);
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if let Some(old) = self.take_service(namespace, name) {
            self.reselect(namespace, [old.selector.as_ref(), None]);
        }
    }

    fn take_service(&mut self, namespace: &str, name: &str) -> Option<Arc<Service>> {
        let list = self.services.get_mut(namespace)?;
        let at = list.iter().position(|s| s.name == name)?;
        let svc = list.remove(at);
        self.exposed_services -= usize::from(svc.exposure.is_some());
        Some(svc)
    }

    pub fn peer_authns(&self, namespace: &str) -> &[PeerAuthentication] {
        self.peer_authns.get(namespace).map_or(&[], Vec::as_slice)
    }

    /// Namespaces holding a PeerAuthentication or v1alpha1 policy (`""` for MeshPolicies).
    pub fn policy_namespaces(&self) -> impl Iterator<Item = &str> {
        let pa = self.peer_authns.iter().filter(|(_, l)| !l.is_empty());
        let legacy = self.legacy.iter().filter(|(_, l)| !l.is_empty());
        pa.map(|(ns, _)| ns.as_str())
            .chain(legacy.map(|(ns, _)| ns.as_str()))
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
        let key = |o: &crate::model::Origin| (o.created, o.name.clone());
        match rule {
            Rule::PeerAuthentication(r) => {
                upsert_sorted(self.peer_authns.entry(ns).or_default(), r, |r| {
                    key(&r.origin)
                })
            }
            Rule::Legacy(r) => {
                upsert_sorted(self.legacy.entry(ns).or_default(), r, |r| key(&r.origin))
            }
            Rule::DestinationRule(r) => {
                upsert_sorted(self.dest_rules.entry(ns.clone()).or_default(), r, |r| {
                    key(&r.origin)
                });
                self.reindex_dr_hosts(&ns);
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
                self.reindex_dr_hosts(ns);
            }
        }
    }

    /// Whether a STRICT PeerAuthentication governs the workload: it has a sidecar or is in
    /// ambient, and is no gateway or waypoint.
    pub fn is_server(w: &Workload) -> bool {
        w.shape.proxy != Proxy::None && !w.shape.gateway
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::net::IpAddr;

    fn pod(ns: &str, name: &str, app: &str) -> Pod {
        Pod::read(
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
    fn a_pod_seen_again_replaces_itself_and_its_ip() {
        let at = |ip: &str| {
            let mut p = pod("a", "web-0", "web");
            p.ip = Some(ip.parse().unwrap());
            p
        };
        let mut index = Index::default();
        index.upsert_pod(at("10.0.0.1"));
        index.upsert_pod(at("10.0.0.2"));
        index.upsert_pod(pod("a", "web-1", "web"));
        assert_eq!(index.pod_count(), 2);
        let (_, w) = index.workloads().iter().next().unwrap();
        assert_eq!(w.pods, 2);
        assert_eq!(
            w.ips().collect::<Vec<_>>(),
            ["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        index.remove_pod("a", "web-0");
        let (_, w) = index.workloads().iter().next().unwrap();
        assert_eq!((w.pods, w.ips().count()), (1, 0));
        assert_eq!(
            index.keys(WatchedKind::Pod).collect::<Vec<_>>(),
            [("a", "web-1")]
        );
        let mut finished = pod("a", "web-1", "web");
        finished.active = false;
        index.upsert_pod(finished);
        assert_eq!(index.pod_count(), 0, "a pod that stopped running leaves");
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

    fn service(ns: &str, name: &str, app: &str, target: u16) -> Service {
        let svc = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": target}]}
        }))
        .unwrap();
        Service::from_api(&svc, "cluster.local").unwrap()
    }

    fn served(index: &Index, app: &str) -> (Vec<String>, Vec<Option<u16>>) {
        let (_, w) = index
            .workloads()
            .iter()
            .find(|(_, w)| *w.name == *app)
            .unwrap();
        let names = w.routes.iter().map(|r| r.service.host.clone()).collect();
        (names, w.ports.to_vec())
    }

    #[test]
    fn workloads_follow_the_services_that_select_them() {
        let mut index = Index::default();
        index.upsert_service(service("a", "early", "web", 8080));
        index.upsert_pod(pod("a", "web-0", "web"));
        index.upsert_pod(pod("a", "db-0", "db"));
        assert_eq!(
            served(&index, "web"),
            (vec!["early.a.svc.cluster.local".into()], vec![Some(8080)]),
            "a new workload picks up the Services already there"
        );
        index.upsert_service(service("a", "late", "web", 9090));
        assert_eq!(served(&index, "web").1, [Some(8080), Some(9090)]);
        index.upsert_service(service("a", "early", "db", 5432));
        assert_eq!(
            served(&index, "web"),
            (vec!["late.a.svc.cluster.local".into()], vec![Some(9090)]),
            "a changed selector lets go of the old workload"
        );
        assert_eq!(served(&index, "db").1, [Some(5432)]);
        index.remove_service("a", "late");
        assert_eq!(served(&index, "web"), (vec![], vec![None]));
        let everything = Labels::new();
        assert_eq!(
            index.workloads().matching("a", &everything).count(),
            2,
            "an empty selector matches the whole namespace"
        );
    }
}
