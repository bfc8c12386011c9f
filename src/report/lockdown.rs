//! The STRICT PeerAuthentication that would lock a workload, a namespace or the mesh down:
//! the object the readiness report evaluates, and the YAML it tells users to apply.
//!
//! At each level only the oldest PeerAuthentication counts, so a new object would be ignored
//! where an older one already applies: then the lock-down is an update of that object.

use std::collections::BTreeMap;

use serde_json::json;

use crate::check::set_created;
use crate::inventory::{Index, Workload};
use crate::model::{selector_matches, Labels, PeerAuthentication, Rule, RuleKind};

/// Labels that differ between rollouts or are set per pod: a selector on them would stop
/// matching, or match one pod.
const VOLATILE_LABELS: [&str; 12] = [
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "job-name",
    "controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/controller-uid",
    "security.istio.io/tlsMode",
    "service.istio.io/canonical-name",
    "service.istio.io/canonical-revision",
];

/// Labels tried alone first, for the shortest selector that still picks only this workload.
const NAME_LABELS: [&str; 4] = ["app", "app.kubernetes.io/name", "k8s-app", "name"];

pub struct Lockdown {
    /// The object as evaluated; YAML of exactly this is what users are told to apply.
    pub rule: Rule,
    /// The object it replaces, if one already decides that level.
    pub old: Option<Rule>,
    pub yaml: String,
}

fn build(
    namespace: &str,
    name: &str,
    selector: Option<&Labels>,
    old: Option<&PeerAuthentication>,
) -> Result<Lockdown, String> {
    let mut value = json!({
        "apiVersion": "security.istio.io/v1",
        "kind": "PeerAuthentication",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"mtls": {"mode": "STRICT"}},
    });
    if let Some(sel) = selector {
        value["spec"]["selector"] = json!({ "matchLabels": sel });
    }
    let mut rule =
        Rule::from_json(RuleKind::PeerAuthentication, &value).map_err(|e| e.to_string())?;
    if let Some(o) = old {
        set_created(&mut rule, o.origin.created);
    }
    let mut yaml = String::new();
    if let Some(o) = old {
        yaml.push_str(&format!(
            "# replaces {} (mode {}), which decides this level today\n",
            o.origin, o.mode
        ));
    }
    yaml.push_str(&crate::yaml::to_string(&value)?);
    Ok(Lockdown {
        rule,
        old: old.cloned().map(Rule::PeerAuthentication),
        yaml,
    })
}

/// A name no other PeerAuthentication of the namespace has.
fn free_name(index: &Index, namespace: &str, wanted: &str) -> String {
    let taken = |n: &str| {
        index
            .peer_authns(namespace)
            .iter()
            .any(|p| p.origin.name == n)
    };
    if !taken(wanted) {
        return wanted.to_string();
    }
    (2..)
        .map(|i| format!("{wanted}-{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| wanted.to_string())
}

/// The labels every pod shape of the workload carries, without the volatile ones.
fn stable_labels(shapes: &[&Workload]) -> Labels {
    let mut common: Labels = shapes
        .first()
        .map(|w| w.shape.labels.clone())
        .unwrap_or_default();
    common.retain(|k, v| {
        !VOLATILE_LABELS.contains(&k.as_str())
            && shapes.iter().all(|w| w.shape.labels.get(k) == Some(v))
    });
    common
}

/// Whether a selector in `namespace` picks no server workload but `name`.
fn selects_only(index: &Index, namespace: &str, name: &str, sel: &Labels) -> bool {
    index
        .workloads()
        .matching(namespace, sel)
        .filter(|(_, w)| Index::is_server(w))
        .all(|(_, w)| *w.name == *name)
}

fn selector_for(
    index: &Index,
    namespace: &str,
    name: &str,
    shapes: &[&Workload],
) -> Option<Labels> {
    let stable = stable_labels(shapes);
    if stable.is_empty() {
        return None;
    }
    NAME_LABELS
        .iter()
        .filter_map(|k| stable.get_key_value(*k))
        .map(|(k, v)| BTreeMap::from([(k.clone(), v.clone())]))
        .find(|sel| selects_only(index, namespace, name, sel))
        .or(Some(stable))
}

/// Locks down one workload (all its pod shapes), or says why it cannot be done alone.
pub fn for_workload(index: &Index, shapes: &[&Workload]) -> Result<Lockdown, String> {
    let Some(first) = shapes.first() else {
        return Err("no pods".into());
    };
    let (ns, name) = (&*first.namespace, &*first.name);
    if ns == index.mesh().root_namespace {
        return Err(format!(
            "{ns} is the root namespace: Istio ignores selector policies there, only the mesh-wide policy applies"
        ));
    }
    let existing = index.peer_authns(ns).iter().find(|p| {
        p.selector
            .as_ref()
            .is_some_and(|s| shapes.iter().any(|w| selector_matches(s, &w.shape.labels)))
    });
    if let Some(pa) = existing {
        return build(ns, &pa.origin.name, pa.selector.as_ref(), Some(pa));
    }
    let Some(selector) = selector_for(index, ns, name, shapes) else {
        return Err("its pods have no stable labels a selector could match".into());
    };
    build(
        ns,
        &free_name(index, ns, &format!("{name}-strict")),
        Some(&selector),
        None,
    )
}

/// Locks down a namespace with its selector-less policy (the oldest one, if it has any).
pub fn for_namespace(index: &Index, namespace: &str) -> Result<Lockdown, String> {
    let existing = index
        .peer_authns(namespace)
        .iter()
        .find(|p| p.selector.is_none());
    match existing {
        Some(pa) => build(namespace, &pa.origin.name, None, Some(pa)),
        None => build(
            namespace,
            &free_name(index, namespace, "default"),
            None,
            None,
        ),
    }
}

/// Locks down the mesh: the selector-less policy of the root namespace.
pub fn for_mesh(index: &Index) -> Result<Lockdown, String> {
    let root = index.mesh().root_namespace.clone();
    for_namespace(index, &root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{file, Filters};

    #[test]
    fn the_shortest_stable_selector_that_picks_only_the_workload() {
        let index = file::demo(Filters::default()).unwrap();
        let shapes: Vec<&Workload> = index
            .workloads_in("foo")
            .map(|(_, w)| w)
            .filter(|w| *w.name == *"httpbin")
            .collect();
        let l = for_workload(&index, &shapes).unwrap();
        assert!(l.old.is_none());
        assert!(l.yaml.contains("name: httpbin-strict"), "{}", l.yaml);
        assert!(l.yaml.contains("app: httpbin"), "{}", l.yaml);
        assert!(!l.yaml.contains("pod-template-hash"), "{}", l.yaml);
        let Rule::PeerAuthentication(pa) = &l.rule else {
            unreachable!()
        };
        assert_eq!(pa.selector.as_ref().map(BTreeMap::len), Some(1));
    }
}
