//! Which server workloads a change can affect: the scope of the rules before and after it.

use super::{host_matches, Change, View};
use crate::inventory::{Index, Scan, WorkloadId};
use crate::model::{Labels, LegacyScope, Mode, Rule, Service};

/// Server workloads whose mode or clients the change can affect, in a stable order; none
/// when listing them is more than the view's budget allows.
pub(super) fn candidates(view: &View, change: &Change) -> Vec<WorkloadId> {
    let mut ids = Vec::new();
    for rule in [change.old, change.new].into_iter().flatten() {
        if scope(view, rule, &mut ids) == Reach::Mesh {
            return every_workload(view);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Every workload, already in order (no need to sort ten thousand ids); none when the view's
/// budget cannot afford them all.
pub(super) fn every_workload(view: &View) -> Vec<WorkloadId> {
    let workloads = view.index.workloads();
    if !view.afford(workloads.count()) {
        return Vec::new();
    }
    workloads.iter().map(|(id, _)| id).collect()
}

/// How far a rule reaches: the whole mesh, or the workloads [`scope`] added.
#[derive(PartialEq)]
enum Reach {
    Mesh,
    Listed,
}

fn scope(view: &View, rule: &Rule, ids: &mut Vec<WorkloadId>) -> Reach {
    let index = view.index;
    let ns = rule.origin().namespace.as_str();
    let root = index.mesh().root_namespace.as_str();
    match rule {
        Rule::PeerAuthentication(pa) => match &pa.selector {
            None if ns == root => return Reach::Mesh,
            None => select(view, ids, ns, &Labels::new()),
            Some(_) if ns == root => {}
            Some(sel) => select(view, ids, ns, sel),
        },
        Rule::Legacy(p) => match &p.scope {
            LegacyScope::Mesh => return Reach::Mesh,
            LegacyScope::Namespace => select(view, ids, ns, &Labels::new()),
            LegacyScope::Targets(targets) => {
                if !view.afford(index.services_in(ns).len() * targets.len()) {
                    return Reach::Listed;
                }
                for svc in index
                    .services_in(ns)
                    .iter()
                    .filter(|s| targets.iter().any(|t| t.service == s.name))
                {
                    ids.extend(selected_by(view, svc));
                }
            }
            LegacyScope::Ignored => {}
        },
        Rule::DestinationRule(dr) => {
            let domain = &index.filters().cluster_domain;
            // A DestinationRule changes no mode: only servers that can be STRICT matter, so a
            // wildcard host looks only where a STRICT policy is, whatever the cluster size.
            let wildcard = dr.host.starts_with('*');
            let services = match wildcard.then(|| strict_namespaces(index, root)).flatten() {
                Some(strict) => strict
                    .into_iter()
                    .flat_map(|n| index.services_in(n).iter().map(|s| &**s))
                    .collect(),
                None => index.services_for_host(&dr.host, ns, domain),
            };
            if !view.afford(services.len()) {
                return Reach::Listed;
            }
            for svc in services
                .into_iter()
                .filter(|s| host_matches(dr, &s.host, domain).is_some())
            {
                ids.extend(selected_by(view, svc));
            }
        }
    }
    Reach::Listed
}

/// Lists the workloads of `namespace` that `selector` picks (all for an empty one), if the
/// view's budget affords reading them.
fn select(view: &View, ids: &mut Vec<WorkloadId>, namespace: &str, selector: &Labels) {
    let scan = view.index.workloads().scan(namespace, selector);
    if view.afford(scan.reads()) {
        ids.extend(scan.matches().map(|(id, _)| id));
    }
}

/// Whether a policy of `namespace` can make a port STRICT (its mode or a port's).
fn holds_strict(index: &Index, namespace: &str) -> bool {
    let pa = index
        .peer_authns(namespace)
        .iter()
        .any(|pa| pa.mode == Mode::Strict || pa.port_modes.values().any(|m| *m == Mode::Strict));
    pa || index
        .legacy_policies(namespace)
        .iter()
        .any(|p| p.mode == Mode::Strict)
}

/// The namespaces where a server can be STRICT, or `None` when the mesh level may make any
/// namespace STRICT.
fn strict_namespaces<'i>(index: &'i Index, root: &str) -> Option<Vec<&'i str>> {
    if holds_strict(index, root) || holds_strict(index, "") {
        return None;
    }
    let mut strict: Vec<&str> = index
        .policy_namespaces()
        .filter(|n| holds_strict(index, n))
        .collect();
    strict.sort_unstable();
    strict.dedup();
    Some(strict)
}

/// The workloads a Service's selector picks, in its namespace; none once the view's budget
/// cannot afford reading them.
pub(super) fn selected_by<'a>(
    view: &View<'a>,
    svc: &'a Service,
) -> impl Iterator<Item = WorkloadId> + 'a {
    let workloads = view.index.workloads();
    svc.selector
        .as_ref()
        .map(|sel| workloads.scan(&svc.namespace, sel))
        .filter(|scan| view.afford(scan.reads()))
        .into_iter()
        .flat_map(Scan::matches)
        .map(|(id, _)| id)
}
