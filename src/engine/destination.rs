//! Which DestinationRule a sidecar client uses for a host (istiod's lookup order).

use super::view::View;
use crate::inventory::Workload;
use crate::model::{selector_matches, DestinationRule};

/// How well a DestinationRule's host matches `host`: exact beats the longest wildcard.
pub fn host_matches(dr: &DestinationRule, host: &str, domain: &str) -> Option<(bool, usize)> {
    let h = dr.host.as_str();
    if let Some(suffix) = h.strip_prefix('*') {
        return host.ends_with(suffix).then_some((false, suffix.len()));
    }
    let exact = if h.contains('.') {
        h == host
    } else {
        host.strip_prefix(h)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(dr.origin.namespace.as_str()))
            .and_then(|rest| rest.strip_prefix(".svc."))
            == Some(domain)
    };
    exact.then_some((true, h.len()))
}

/// The most specific match among `rules` (oldest first, so the oldest wins a tie).
fn best<'a>(
    rules: impl Iterator<Item = &'a DestinationRule>,
    host: &str,
    domain: &str,
) -> Option<&'a DestinationRule> {
    let mut best: Option<(&'a DestinationRule, (bool, usize))> = None;
    for dr in rules {
        if let Some(score) = host_matches(dr, host, domain) {
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((dr, score));
            }
        }
    }
    best.map(|(dr, _)| dr)
}

/// Who is asking: a namespace, and the client's labels when its own selector rules matter.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    pub namespace: &'a str,
    pub workload: Option<&'a Workload>,
}

/// The rule a sidecar client uses for `host`: its own selector rules, its namespace, the
/// Service's namespace, then the root namespace; the first namespace with a match wins.
pub fn find<'a>(
    view: &View<'a>,
    asker: Asker<'_>,
    host: &str,
    service_ns: &str,
) -> Option<&'a DestinationRule> {
    let domain = view.index.filters().cluster_domain.as_str();
    let root = view.mesh.root_namespace.as_str();
    let own = asker.namespace;
    if !view.afford_counted(|| rule_count(view, [own, service_ns, root])) {
        return None;
    }
    if let Some(w) = asker.workload {
        let selected = view.dest_rules(own).filter(|d| {
            d.workload_selector
                .as_ref()
                .is_some_and(|s| selector_matches(s, &w.shape.labels))
        });
        if let Some(dr) = best(selected, host, domain) {
            return Some(dr);
        }
    }
    let unselected = |d: &&DestinationRule| d.workload_selector.is_none();
    if let Some(dr) = best(view.dest_rules(own).filter(unselected), host, domain) {
        return Some(dr);
    }
    for ns in [service_ns, root] {
        if ns == own {
            continue;
        }
        let exported = view
            .dest_rules(ns)
            .filter(unselected)
            .filter(|d| d.exported_to(own));
        if let Some(dr) = best(exported, host, domain) {
            return Some(dr);
        }
    }
    None
}

/// Whether every client namespace without rules of its own resolves `service_ns` and the
/// root namespace alike: true unless a rule there exports to a list of named namespaces.
pub fn uniform_exports(view: &View, service_ns: &str) -> bool {
    let root = view.mesh.root_namespace.as_str();
    if !view.afford_counted(|| rule_count(view, [service_ns, root])) {
        return false;
    }
    [service_ns, root]
        .iter()
        .all(|ns| view.dest_rules(ns).all(|d| !d.exports.names_namespaces()))
}

/// The DestinationRules a lookup may read in these namespaces, the review's cost of it.
fn rule_count<const N: usize>(view: &View, namespaces: [&str; N]) -> usize {
    1 + namespaces
        .iter()
        .map(|ns| view.index.dest_rules(ns).len())
        .sum::<usize>()
}
