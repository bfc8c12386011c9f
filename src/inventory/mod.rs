//! The indexed inventory snapshot the engine decides on.
//!
//! Pods are grouped into workloads: siblings from one template share a [`PodShape`], so the
//! engine evaluates a Deployment once, not once per replica. Rules are kept per namespace, in
//! Istio's precedence order (oldest first, ties to the smaller name).

pub mod file;
pub mod live;
pub mod shared;
mod stream;
mod workloads;

pub use file::InventoryError;
pub use shared::{SharedIndex, WatchedKind};
pub use workloads::{Route, Workload, WorkloadId, Workloads};

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::model::{
    ApiCaller, CallerKind, DestinationRule, Labels, LegacyPolicy, MeshConfig, Namespace,
    NetworkPolicy, PeerAuthentication, Pod, Proxy, Rule, Service,
};

/// The index's hash maps: foldhash, several times faster than SipHash on the short strings
/// the index is keyed by, and seeded per process so that names and labels a tenant writes
/// cannot be chosen to collide.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type Set<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;

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
    fn ignores(&self, pod: &Pod) -> bool {
        self.ignored_namespaces.contains(&pod.namespace)
            || self
                .ignored_pod_labels
                .iter()
                .any(|(k, v)| pod.shape.label(k) == Some(v.as_str()))
    }
}

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

/// A namespace's NetworkPolicies, sorted by name, their summed weight, and how many could
/// not be read.
#[derive(Debug, Default)]
struct Policies {
    list: Vec<NetworkPolicy>,
    weight: usize,
    unreadable: usize,
}

impl Policies {
    fn add(&mut self, np: &NetworkPolicy) {
        self.weight += np.weight();
        self.unreadable += usize::from(np.unreadable);
    }

    fn take(&mut self, np: &NetworkPolicy) {
        self.weight -= np.weight();
        self.unreadable -= usize::from(np.unreadable);
    }

    /// Used only when all were read and they are within [`NETWORK_POLICY_BUDGET`].
    fn usable(&self) -> bool {
        self.unreadable == 0 && self.weight <= NETWORK_POLICY_BUDGET
    }
}

/// Most [`NetworkPolicy::weight`] a namespace's policies may add up to and still be used: a
/// review checks a client against them once per server, so past this a namespace's pods are
/// judged as if no policy isolated them (counted as suspects, the cautious side).
pub const NETWORK_POLICY_BUDGET: usize = 4096;

/// A Service port the API server calls, and the object that makes it.
#[derive(Debug)]
struct Call {
    port: u16,
    kind: CallerKind,
    name: Arc<str>,
}

/// Which namespaces hold DestinationRules that may match a host, kept per namespace so a
/// review asks only those namespaces instead of every one.
#[derive(Debug, Default)]
struct DrHosts {
    keys: HostKeys,
    /// Key of a fully qualified host -> the host and the namespaces with a rule for exactly it.
    exact: Map<u64, Vec<(String, BTreeSet<String>)>>,
    /// Namespaces with a wildcard-host rule, or with a workloadSelector rule.
    wildcard_or_selector: BTreeSet<String>,
    /// Hosts each namespace contributed to `exact`, to undo them.
    by_namespace: Map<String, Vec<String>>,
    /// Namespaces with a rule that can send plaintext ([`DestinationRule::may_send_plaintext`]).
    plaintext: BTreeSet<String>,
}

/// Hashes a Service host once, when a workload's routes are built, so a review finds the
/// host's DestinationRules without reading or hashing the host again.
#[derive(Debug, Default)]
pub(crate) struct HostKeys(foldhash::fast::RandomState);

impl HostKeys {
    pub(crate) fn of(&self, host: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.0, host)
    }
}

/// One trimmed object, as the index stores it.
#[derive(Debug, Clone)]
pub enum Item {
    Pod(Pod),
    Service(Service),
    Namespace(Namespace),
    Mesh(MeshConfig),
    Rule(Rule),
    ApiCaller(ApiCaller),
    NetworkPolicy(NetworkPolicy),
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
            Item::ApiCaller(c) => (String::new(), c.name.clone()),
            Item::NetworkPolicy(n) => (n.namespace.clone(), n.name.clone()),
        }
    }
}

/// Reads a Namespace, saying once, as it is read, that its mode label is no mode.
pub(crate) fn read_namespace(
    ns: &k8s_openapi::api::core::v1::Namespace,
) -> Result<Namespace, crate::model::ModelError> {
    let ns = Namespace::from_api(ns)?;
    if let crate::model::LabelledMode::Invalid(reason) = &ns.mode {
        tracing::warn!(namespace = %ns.name, label = crate::model::namespace::MODE_LABEL, %reason,
            "namespace mode label ignored: the global mode applies");
    }
    Ok(ns)
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

    /// Stores a NetworkPolicy when the index respects them; otherwise it is not read at all.
    pub fn upsert_network_policy(&mut self, np: NetworkPolicy) {
        if !self.filters.respect_network_policies {
            return;
        }
        let namespace = np.namespace.clone();
        let policies = self.network_policies.entry(namespace.clone()).or_default();
        let was_usable = policies.usable();
        policies.add(&np);
        match policies.list.binary_search_by(|p| p.name.cmp(&np.name)) {
            Ok(at) => {
                let old = std::mem::replace(&mut policies.list[at], np);
                policies.take(&old);
            }
            Err(at) => policies.list.insert(at, np),
        }
        if was_usable && !policies.usable() {
            tracing::warn!(
                namespace = %namespace,
                budget = NETWORK_POLICY_BUDGET,
                unreadable = policies.unreadable,
                "NetworkPolicies of a namespace are unreadable or over the budget: its pods are judged as if not isolated"
            );
        }
    }

    pub fn remove_network_policy(&mut self, namespace: &str, name: &str) {
        if let Some(policies) = self.network_policies.get_mut(namespace) {
            if let Ok(at) = policies
                .list
                .binary_search_by(|p| p.name.as_str().cmp(name))
            {
                let old = policies.list.remove(at);
                policies.take(&old);
            }
            if policies.list.is_empty() {
                self.network_policies.remove(namespace);
            }
        }
    }

    /// The namespace's policies, or none when one is unreadable or together they are over
    /// [`NETWORK_POLICY_BUDGET`].
    pub fn network_policies(&self, namespace: &str) -> &[NetworkPolicy] {
        match self.network_policies.get(namespace) {
            Some(p) if p.usable() => &p.list,
            _ => &[],
        }
    }

    /// Whether reachability narrows the suspects: asked for, and some policy exists.
    pub fn filters_by_network_policy(&self) -> bool {
        !self.network_policies.is_empty()
    }

    pub fn upsert_api_caller(&mut self, caller: ApiCaller) {
        self.api_callers
            .insert((caller.kind, caller.name.clone()), caller);
        self.recount_callers();
    }

    pub fn remove_api_caller(&mut self, kind: CallerKind, name: &str) {
        if self.api_callers.remove(&(kind, name.to_string())).is_some() {
            self.recount_callers();
        }
    }

    /// Callers are few (webhooks, APIServices, CRDs with conversion): rebuilding the lookup
    /// on each change costs less than keeping it in step.
    fn recount_callers(&mut self) {
        self.called.clear();
        for c in self.api_callers.values() {
            let name: Arc<str> = c.name.as_str().into();
            for s in &c.services {
                self.called
                    .entry(s.namespace.clone())
                    .or_default()
                    .entry(s.name.clone())
                    .or_default()
                    .push(Call {
                        port: s.port,
                        kind: c.kind,
                        name: Arc::clone(&name),
                    });
            }
        }
    }

    /// Who in the API server calls this Service port.
    pub fn api_callers_of<'a>(
        &'a self,
        namespace: &str,
        service: &str,
        port: u16,
    ) -> impl Iterator<Item = (CallerKind, &'a Arc<str>)> + 'a {
        self.called
            .get(namespace)
            .and_then(|services| services.get(service))
            .into_iter()
            .flatten()
            .filter(move |c| c.port == port)
            .map(|c| (c.kind, &c.name))
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

    /// The Services a DestinationRule host can name: one for an exact host, all for a wildcard.
    pub fn services_for_host(
        &self,
        host: &str,
        rule_namespace: &str,
        domain: &str,
    ) -> Vec<&Service> {
        if host.starts_with('*') {
            return self.services.values().flatten().map(|s| &**s).collect();
        }
        let (name, namespace) = if host.contains('.') {
            let suffix = format!(".svc.{domain}");
            match host.strip_suffix(&suffix).and_then(|h| h.split_once('.')) {
                Some(parts) => parts,
                None => return Vec::new(),
            }
        } else {
            (host, rule_namespace)
        };
        self.services_in(namespace)
            .iter()
            .filter(|s| s.name == name)
            .map(|s| &**s)
            .collect()
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

    /// Whether anything outside the mesh pods calls Services: the API server or external
    /// clients. Most meshes have neither, and a lock-down then skips reading its Services.
    pub fn has_outside_callers(&self) -> bool {
        self.exposed_services > 0 || !self.called.is_empty()
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

    /// Namespaces whose own DestinationRules could match `host` for some client, and every
    /// namespace whose rules use a wildcard host or a workload selector.
    pub fn dr_namespaces_for<'a>(&'a self, route: &'a Route) -> impl Iterator<Item = &'a str> {
        let host = route.service.host.as_str();
        self.dr_hosts
            .exact
            .get(&route.host_key)
            .into_iter()
            .flatten()
            .filter(move |(h, _)| h == host)
            .flat_map(|(_, namespaces)| namespaces)
            .chain(self.dr_hosts.wildcard_or_selector.iter())
            .map(String::as_str)
    }

    /// Whether any DestinationRule can make a client send plaintext. Without one, auto mTLS
    /// decides what every sidecar sends wherever it sends mTLS.
    pub fn has_plaintext_dest_rules(&self) -> bool {
        !self.dr_hosts.plaintext.is_empty()
    }

    pub fn has_selector_dest_rules(&self, namespace: &str) -> bool {
        self.dest_rules(namespace)
            .iter()
            .any(|d| d.workload_selector.is_some())
    }

    fn reindex_dr_hosts(&mut self, namespace: &str) {
        let idx = &mut self.dr_hosts;
        for host in idx.by_namespace.remove(namespace).unwrap_or_default() {
            let key = idx.keys.of(&host);
            if let Some(list) = idx.exact.get_mut(&key) {
                for (_, set) in list.iter_mut().filter(|(h, _)| *h == host) {
                    set.remove(namespace);
                }
                list.retain(|(_, set)| !set.is_empty());
                if list.is_empty() {
                    idx.exact.remove(&key);
                }
            }
        }
        idx.wildcard_or_selector.remove(namespace);
        idx.plaintext.remove(namespace);
        let domain = &self.filters.cluster_domain;
        let mut hosts = Vec::new();
        for dr in self.dest_rules.get(namespace).into_iter().flatten() {
            if dr.may_send_plaintext() {
                idx.plaintext.insert(namespace.to_string());
            }
            if dr.host.starts_with('*') || dr.workload_selector.is_some() {
                idx.wildcard_or_selector.insert(namespace.to_string());
                continue;
            }
            let fqdn = if dr.host.contains('.') {
                dr.host.clone()
            } else {
                format!("{}.{namespace}.svc.{domain}", dr.host)
            };
            let list = idx.exact.entry(idx.keys.of(&fqdn)).or_default();
            match list.iter_mut().find(|(h, _)| *h == fqdn) {
                Some((_, set)) => {
                    set.insert(namespace.to_string());
                }
                None => list.push((fqdn.clone(), BTreeSet::from([namespace.to_string()]))),
            }
            hosts.push(fqdn);
        }
        idx.by_namespace.insert(namespace.to_string(), hosts);
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

    /// Adds or replaces one object.
    pub fn apply(&mut self, item: Item) {
        match item {
            Item::Pod(p) => self.upsert_pod(p),
            Item::Service(s) => self.upsert_service(s),
            Item::Namespace(n) => self.upsert_namespace(n),
            Item::Mesh(m) => self.set_mesh(m),
            Item::Rule(r) => self.upsert_rule(r),
            Item::ApiCaller(c) => self.upsert_api_caller(c),
            Item::NetworkPolicy(n) => self.upsert_network_policy(n),
        }
    }

    /// Removes one object of `kind` by namespace and name.
    pub fn remove(&mut self, kind: WatchedKind, namespace: &str, name: &str) {
        match kind {
            WatchedKind::Pod => self.remove_pod(namespace, name),
            WatchedKind::Service => self.remove_service(namespace, name),
            WatchedKind::Namespace => self.remove_namespace(name),
            WatchedKind::MeshConfig => self.set_mesh(MeshConfig::default()),
            WatchedKind::ApiCaller(k) => self.remove_api_caller(k, name),
            WatchedKind::NetworkPolicy => self.remove_network_policy(namespace, name),
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
            WatchedKind::Pod => self.workloads.pod_keys().collect(),
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
            WatchedKind::NetworkPolicy => self
                .network_policies
                .values()
                .flat_map(|p| &p.list)
                .map(|n| (n.namespace.clone(), n.name.clone()))
                .collect(),
            WatchedKind::ApiCaller(k) => self
                .api_callers
                .keys()
                .filter(|(kind, _)| *kind == k)
                .map(|(_, name)| (String::new(), name.clone()))
                .collect(),
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

    /// Drops every object of `kind` that a fresh full list (a watch's initial list or relist,
    /// already applied) did not name; `listed` holds the (namespace, name) of what it did.
    pub fn retain_listed(&mut self, kind: WatchedKind, listed: &Set<(String, String)>) {
        for key in self.keys(kind) {
            if !listed.contains(&key) {
                self.remove(kind, &key.0, &key.1);
            }
        }
        if kind == WatchedKind::MeshConfig && listed.is_empty() {
            self.set_mesh(MeshConfig::default());
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
            index.keys(WatchedKind::Pod),
            [("a".to_string(), "web-1".to_string())]
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

    #[test]
    fn json_lists_arrays_and_single_objects_stream_into_the_index() {
        let pod = |name: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "a"}});
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [pod("p1"), pod("p2")], "metadata": {}});
        let mut loader = file::Loader::new(Filters::default());
        loader.add_str("list", &list.to_string()).unwrap();
        loader
            .add_str("array", &json!([pod("p3")]).to_string())
            .unwrap();
        loader.add_str("object", &pod("p4").to_string()).unwrap();
        assert_eq!(loader.finish().pod_count(), 4);

        let mut loader = file::Loader::new(Filters::default());
        let err = loader
            .add_str("junk", "{\"kind\": \"List\", \"items\": []} trailing")
            .unwrap_err();
        assert!(err.to_string().contains("junk"), "{err}");
        let bad = json!({"kind": "List", "items": [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "x"}, "spec": {"mtls": {"mode": "NOPE"}}}]});
        let err = loader.add_str("bad", &bad.to_string()).unwrap_err();
        assert!(err.to_string().contains("PeerAuthentication x"), "{err}");
    }

    #[test]
    fn a_fresh_list_replaces_a_kind_whole() {
        let mut index = Index::default();
        index.upsert_pod(pod("a", "gone", "x"));
        index.upsert_pod(pod("a", "kept", "y"));
        let fresh = [
            Item::Pod(pod("a", "kept", "y")),
            Item::Pod(pod("b", "new", "z")),
        ];
        let listed = fresh.iter().map(Item::key).collect();
        fresh.into_iter().for_each(|item| index.apply(item));
        index.retain_listed(WatchedKind::Pod, &listed);
        let mut names: Vec<_> = index.workloads().iter().map(|(_, w)| &*w.name).collect();
        names.sort();
        assert_eq!(names, ["y", "z"]);
        index.set_mesh(MeshConfig {
            root_namespace: "r".into(),
            enable_auto_mtls: false,
        });
        index.retain_listed(WatchedKind::MeshConfig, &Set::default());
        assert_eq!(
            index.mesh(),
            &MeshConfig::default(),
            "a deleted mesh config means Istio's defaults"
        );
    }
}

#[cfg(test)]
mod network_policy_tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, rules: usize) -> NetworkPolicy {
        let rules: Vec<_> = (0..rules)
            .map(|i| json!({"ports": [{"port": i}]}))
            .collect();
        let raw = json!({"metadata": {"name": name, "namespace": "att"},
            "spec": {"podSelector": {}, "ingress": rules}});
        NetworkPolicy::from_api(&serde_json::from_value(raw).unwrap()).unwrap()
    }

    #[test]
    fn a_namespace_over_the_budget_is_judged_unisolated_until_it_is_back_under() {
        let mut index = Index::new(Filters {
            respect_network_policies: true,
            ..Filters::default()
        });
        let per = policy("p0", 200).weight();
        let fit = NETWORK_POLICY_BUDGET / per;
        for i in 0..fit {
            index.upsert_network_policy(policy(&format!("p{i}"), 200));
        }
        assert_eq!(index.network_policies("att").len(), fit);
        index.upsert_network_policy(policy("one-too-many", 200));
        assert!(index.network_policies("att").is_empty());
        index.upsert_network_policy(policy("one-too-many", 1));
        assert_eq!(
            index.network_policies("att").len(),
            fit + 1,
            "replaced, reweighed"
        );
        index.upsert_network_policy(policy("again", 200));
        index.remove_network_policy("att", "again");
        assert_eq!(index.network_policies("att").len(), fit + 1);

        let unreadable = NetworkPolicy {
            unreadable: true,
            ..policy("broken", 1)
        };
        index.upsert_network_policy(unreadable);
        assert!(
            index.network_policies("att").is_empty(),
            "an unreadable one may admit anyone"
        );
        index.remove_network_policy("att", "broken");
        assert_eq!(index.network_policies("att").len(), fit + 1);

        let mut ignoring = Index::default();
        ignoring.upsert_network_policy(policy("p", 1));
        assert!(
            ignoring.network_policies("att").is_empty() && !ignoring.filters_by_network_policy()
        );
    }
}
