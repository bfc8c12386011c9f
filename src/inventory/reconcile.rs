//! Watch events into the index: one object applied or removed, and a fresh full list
//! replacing a kind whole.

use super::{Index, Set, WatchedKind};
use crate::model::{ApiCaller, MeshConfig, Namespace, NetworkPolicy, Pod, Rule, Service};

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

impl Index {
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
    pub(super) fn keys(&self, kind: WatchedKind) -> Vec<(String, String)> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, app: &str) -> Pod {
        let mut pod = crate::model::PodObject::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some(ns.into());
        pod.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        let mut pod = Pod::read(&pod).unwrap();
        pod.workload = app.into();
        pod
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
