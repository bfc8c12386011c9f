//! Watch events into the index: one object applied or removed, and a fresh full list
//! replacing a kind whole.

use super::{Index, Map, Set, WatchedKind};
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
    pub fn key(&self) -> (&str, &str) {
        match self {
            Item::Pod(p) => (&p.namespace, &p.name),
            Item::Service(s) => (&s.namespace, &s.name),
            Item::Namespace(n) => ("", &n.name),
            Item::Mesh(_) => ("", ""),
            Item::Rule(r) => (&r.origin().namespace, &r.origin().name),
            Item::ApiCaller(c) => ("", &c.name),
            Item::NetworkPolicy(n) => (&n.namespace, &n.name),
        }
    }
}

/// The (namespace, name) of every object a fresh full list named, grouped by namespace: held
/// beside the index until the list ends, so a relist of 100k pods keeps one short string per
/// object, not two.
#[derive(Debug, Default)]
pub struct Listed(Map<Box<str>, Set<Box<str>>>);

impl Listed {
    pub fn insert(&mut self, (namespace, name): (&str, &str)) {
        match self.0.get_mut(namespace) {
            Some(names) => {
                names.insert(name.into());
            }
            None => {
                self.0
                    .insert(namespace.into(), Set::from_iter([name.into()]));
            }
        }
    }

    pub fn contains(&self, (namespace, name): (&str, &str)) -> bool {
        self.0
            .get(namespace)
            .is_some_and(|names| names.contains(name))
    }

    pub fn len(&self) -> usize {
        self.0.values().map(Set::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Listed {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(keys: I) -> Listed {
        let mut listed = Listed::default();
        keys.into_iter().for_each(|key| listed.insert(key));
        listed
    }
}

fn origin_keys<'a>(
    origins: impl Iterator<Item = &'a crate::model::Origin> + 'a,
) -> Box<dyn Iterator<Item = (&'a str, &'a str)> + 'a> {
    Box::new(origins.map(|o| (o.namespace.as_str(), o.name.as_str())))
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
    pub(super) fn keys(&self, kind: WatchedKind) -> Box<dyn Iterator<Item = (&str, &str)> + '_> {
        match kind {
            WatchedKind::Pod => Box::new(self.workloads.pod_keys()),
            WatchedKind::Service => Box::new(
                self.services
                    .values()
                    .flatten()
                    .map(|s| (s.namespace.as_str(), s.name.as_str())),
            ),
            WatchedKind::Namespace => Box::new(self.namespaces.keys().map(|n| ("", n.as_str()))),
            WatchedKind::MeshConfig => Box::new(std::iter::empty()),
            WatchedKind::NetworkPolicy => Box::new(
                self.network_policies
                    .values()
                    .flat_map(|p| &p.list)
                    .map(|n| (n.namespace.as_str(), n.name.as_str())),
            ),
            WatchedKind::ApiCaller(k) => Box::new(
                self.api_callers
                    .keys()
                    .filter(move |(kind, _)| *kind == k)
                    .map(|(_, name)| ("", name.as_str())),
            ),
            WatchedKind::Rule(crate::model::RuleKind::PeerAuthentication) => {
                origin_keys(self.peer_authns.values().flatten().map(|r| &r.origin))
            }
            WatchedKind::Rule(crate::model::RuleKind::DestinationRule) => {
                origin_keys(self.dest_rules.values().flatten().map(|r| &r.origin))
            }
            WatchedKind::Rule(k) => origin_keys(
                self.legacy
                    .values()
                    .flatten()
                    .map(|r| &r.origin)
                    .filter(move |o| o.kind == k),
            ),
        }
    }

    /// Drops every object of `kind` that a fresh full list (a watch's initial list or relist,
    /// already applied) did not name; `listed` holds the (namespace, name) of what it did.
    pub fn retain_listed(&mut self, kind: WatchedKind, listed: &Listed) {
        // Only the keys to drop are copied: a relist of 100k pods names nearly all of them.
        let gone: Vec<(String, String)> = self
            .keys(kind)
            .filter(|key| !listed.contains(*key))
            .map(|(namespace, name)| (namespace.to_string(), name.to_string()))
            .collect();
        for (namespace, name) in gone {
            self.remove(kind, &namespace, &name);
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
    fn a_listed_name_counts_only_in_its_own_namespace() {
        let listed: Listed = [("a", "web"), ("b", "db"), ("a", "db"), ("", "a")]
            .into_iter()
            .collect();
        assert!(listed.contains(("a", "web")) && listed.contains(("b", "db")));
        assert!(listed.contains(("", "a")), "a namespace's own key");
        assert!(!listed.contains(("b", "web")) && !listed.contains(("", "web")));
        assert_eq!(listed.len(), 4);
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
        index.retain_listed(WatchedKind::MeshConfig, &Listed::default());
        assert_eq!(
            index.mesh(),
            &MeshConfig::default(),
            "a deleted mesh config means Istio's defaults"
        );
    }

    #[test]
    fn a_relist_keeps_the_cluster_scoped_objects_it_names() {
        let mut index = Index::default();
        let mesh = MeshConfig {
            root_namespace: "r".into(),
            enable_auto_mtls: false,
        };
        index.set_mesh(mesh.clone());
        let item = Item::Mesh(mesh.clone());
        index.retain_listed(WatchedKind::MeshConfig, &[item.key()].into_iter().collect());
        assert_eq!(index.mesh(), &mesh, "a listed mesh config stays");
        let namespace = |name: &str| {
            let mut ns = k8s_openapi::api::core::v1::Namespace::default();
            ns.metadata.name = Some(name.into());
            Namespace::from_api(&ns).unwrap()
        };
        index.upsert_namespace(namespace("kept"));
        index.upsert_namespace(namespace("gone"));
        let listed = [("", "kept")].into_iter().collect();
        index.retain_listed(WatchedKind::Namespace, &listed);
        assert!(index.namespace("kept").is_some());
        assert!(index.namespace("gone").is_none());
    }
}
