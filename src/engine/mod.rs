//! The decision: which clients a change to an mTLS rule cuts off.
//!
//! Pure and synchronous: an [`Index`] snapshot and a [`Change`] in, a [`Verdict`] out. No I/O,
//! no clock, no Kubernetes client, no user-facing text (that is `report`'s job).

mod budget;
mod clients;
mod destination;
mod mode;
mod reach;
mod scope;
#[cfg(test)]
mod tests;
mod traffic;
mod verdict;
mod view;

use crate::inventory::{Index, WorkloadId};
use crate::model::{MeshConfig, Mode, Origin, Rule};

pub use crate::evidence::edges::{Evidence, EvidenceMode};
pub use budget::Budget;
pub use destination::host_matches;
pub use mode::{ModeResolver, Resolved};
pub use verdict::{
    Break, Client, PortChange, Reason, Server, Targets, Tier, Verdict, LISTED_UNMESHED,
};
pub use view::View;

use scope::{candidates, every_workload};
use verdict::{Hit, VerdictBuilder};

/// A reviewed object before and after the request; `None` where it does not exist.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    pub old: Option<&'a Rule>,
    pub new: Option<&'a Rule>,
}

impl<'a> Change<'a> {
    /// The object's identity; `None` when the change has neither side.
    pub fn key(&self) -> Option<&'a Origin> {
        self.new.or(self.old).map(Rule::origin)
    }
}

/// Which clients does applying `change` to `index` cut off, by the inventory alone?
pub fn evaluate<'a>(index: &'a Index, change: &Change<'a>) -> Verdict<'a> {
    evaluate_with(index, change, &Evidence::inventory_only())
}

/// Which clients does applying `change` to `index` cut off, with traffic evidence too?
pub fn evaluate_with<'a>(
    index: &'a Index,
    change: &Change<'a>,
    evidence: &Evidence,
) -> Verdict<'a> {
    evaluate_change(index, change, evidence, None)
}

/// [`evaluate_with`] within `budget`: `None` once the review needs more work than that.
pub fn evaluate_within<'a>(
    index: &'a Index,
    change: &Change<'a>,
    evidence: &Evidence,
    budget: &'a Budget,
) -> Option<Verdict<'a>> {
    let verdict = evaluate_change(index, change, evidence, Some(budget));
    (!budget.is_spent()).then_some(verdict)
}

fn evaluate_change<'a>(
    index: &'a Index,
    change: &Change<'a>,
    evidence: &Evidence,
    budget: Option<&'a Budget>,
) -> Verdict<'a> {
    let Some(key) = change.key() else {
        return Verdict::default();
    };
    let views = [
        View::new(index, key, change.old).within(budget),
        View::new(index, key, change.new).within(budget),
    ];
    let rules = clients::DestRules::new(index, change);
    judge(views, candidates(&views[1], change), &rules, evidence)
}

/// Which clients does replacing mesh config `old` by `new` cut off (README "How it decides",
/// mesh config changes)? Every workload may change mode, and sidecar clients may stop using
/// auto mTLS.
pub fn evaluate_mesh_change<'a>(
    index: &'a Index,
    old: &'a MeshConfig,
    new: &'a MeshConfig,
    evidence: &Evidence,
) -> Verdict<'a> {
    mesh_change(index, old, new, evidence, None)
}

/// [`evaluate_mesh_change`] within `budget`: `None` once the review needs more work than that.
pub fn evaluate_mesh_change_within<'a>(
    index: &'a Index,
    old: &'a MeshConfig,
    new: &'a MeshConfig,
    evidence: &Evidence,
    budget: &'a Budget,
) -> Option<Verdict<'a>> {
    let verdict = mesh_change(index, old, new, evidence, Some(budget));
    (!budget.is_spent()).then_some(verdict)
}

fn mesh_change<'a>(
    index: &'a Index,
    old: &'a MeshConfig,
    new: &'a MeshConfig,
    evidence: &Evidence,
    budget: Option<&'a Budget>,
) -> Verdict<'a> {
    if old == new {
        return Verdict::default();
    }
    let views = [
        View::with_mesh(index, old).within(budget),
        View::with_mesh(index, new).within(budget),
    ];
    let unchanged = Change {
        old: None,
        new: None,
    };
    let rules = clients::DestRules::new(index, &unchanged);
    let mut verdict = judge(views, every_workload(&views[1]), &rules, evidence);
    if old.root_namespace != new.root_namespace
        && index
            .filters()
            .ignored_namespaces
            .contains(&new.root_namespace)
    {
        verdict.ignored_root = Some(new.root_namespace.clone());
    }
    verdict
}

/// Judges the servers `candidates` in the views before and after a change.
fn judge<'a>(
    [before, after]: [View<'a>; 2],
    candidates: Vec<WorkloadId>,
    rules: &clients::DestRules,
    evidence: &Evidence,
) -> Verdict<'a> {
    let index = after.index;
    let mut before = ModeResolver::new(before);
    let mut after = ModeResolver::new(after);
    let mut unmeshed = clients::Unmeshed::new(index);
    let mut out = VerdictBuilder::new(index, candidates.len(), after.view.budget());
    let mut hits = Vec::with_capacity(candidates.len());
    // One pass over the servers, each judged while its workload is in cache.
    for id in candidates {
        let w = index.workload(id);
        if !Index::is_server(w) {
            continue;
        }
        if !after.view.afford(1 + w.ports.len()) {
            break;
        }
        for &port in &w.ports {
            let a = after.port(id, port);
            if a.mode != Mode::Strict {
                continue;
            }
            let hit = Hit {
                id,
                port,
                before: before.port_like(&after, id, port).mode,
                after: a,
            };
            if hit.locks_down() {
                unmeshed.lock(index, &hit, w, &mut out);
            }
            clients::with_sidecar(&mut before, &mut after, &hit, w, rules, &mut out);
            hits.push(hit);
        }
    }
    unmeshed.finish(index, &hits, &mut out);
    traffic::observed(index, &hits, evidence, &mut out);
    traffic::soften_inventory(evidence, &mut out);
    out.finish()
}
