//! The index as it is before or after a change: one object replaced, added or removed, or
//! the mesh config replaced.

use super::budget::{self, Budget};
use crate::inventory::Index;
use crate::model::{DestinationRule, LegacyPolicy, MeshConfig, Origin, PeerAuthentication, Rule};

/// The index with the reviewed object set to `rule` (or absent), under mesh config `mesh`.
#[derive(Clone, Copy)]
pub struct View<'a> {
    pub index: &'a Index,
    pub mesh: &'a MeshConfig,
    /// The reviewed object; `None` when the change is to the mesh config.
    key: Option<&'a Origin>,
    rule: Option<&'a Rule>,
    budget: Option<&'a Budget>,
}

impl<'a> View<'a> {
    pub fn new(index: &'a Index, key: &'a Origin, rule: Option<&'a Rule>) -> View<'a> {
        View {
            index,
            mesh: index.mesh(),
            key: Some(key),
            rule,
            budget: None,
        }
    }

    /// The index's objects under another mesh config.
    pub fn with_mesh(index: &'a Index, mesh: &'a MeshConfig) -> View<'a> {
        View {
            index,
            mesh,
            key: None,
            rule: None,
            budget: None,
        }
    }

    /// The same view, charging the work done in it to `budget`.
    pub(super) fn within(self, budget: Option<&'a Budget>) -> View<'a> {
        View { budget, ..self }
    }

    /// Takes `units` of work from the review's budget, if it has one; `false` when spent.
    pub(super) fn afford(&self, units: usize) -> bool {
        budget::afford(self.budget, units)
    }

    /// [`View::afford`] for a charge worth counting only when the review has a budget.
    pub(super) fn afford_counted(&self, units: impl FnOnce() -> usize) -> bool {
        self.budget.is_none_or(|b| b.afford(units()))
    }

    pub(super) fn budget(&self) -> Option<&'a Budget> {
        self.budget
    }

    /// Whether views of this change may differ in `namespace`: where the reviewed object is,
    /// or anywhere when the mesh config changes.
    pub fn touches(&self, namespace: &str) -> bool {
        self.key.is_none_or(|k| k.namespace == namespace)
    }

    fn keep(&self, origin: &Origin) -> bool {
        self.key.is_none_or(|k| !origin.same_object(k))
    }

    fn extra<T>(&self, namespace: &str, pick: fn(&'a Rule) -> Option<&'a T>) -> Option<&'a T> {
        self.rule
            .filter(|r| r.origin().namespace == namespace)
            .and_then(pick)
    }

    /// PeerAuthentications of a namespace, oldest first.
    pub fn peer_authns(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = &'a PeerAuthentication> + '_ {
        let extra = self.extra(namespace, |r| match r {
            Rule::PeerAuthentication(p) => Some(p),
            _ => None,
        });
        sorted(
            self.index.peer_authns(namespace),
            extra,
            |p| &p.origin,
            *self,
        )
    }

    pub fn legacy_policies(&self, namespace: &str) -> impl Iterator<Item = &'a LegacyPolicy> + '_ {
        let extra = self.extra(namespace, |r| match r {
            Rule::Legacy(p) => Some(p),
            _ => None,
        });
        sorted(
            self.index.legacy_policies(namespace),
            extra,
            |p| &p.origin,
            *self,
        )
    }

    pub fn dest_rules(&self, namespace: &str) -> impl Iterator<Item = &'a DestinationRule> + '_ {
        let extra = self.extra(namespace, |r| match r {
            Rule::DestinationRule(d) => Some(d),
            _ => None,
        });
        sorted(
            self.index.dest_rules(namespace),
            extra,
            |d| &d.origin,
            *self,
        )
    }
}

/// Merges the reviewed object into the index's age-ordered list, in its place by age.
fn sorted<'a, T>(
    list: &'a [T],
    extra: Option<&'a T>,
    origin: fn(&T) -> &Origin,
    view: View<'a>,
) -> impl Iterator<Item = &'a T> + 'a {
    let at = extra.map_or(list.len(), |e| {
        list.partition_point(|x| origin(x).age_key() < origin(e).age_key())
    });
    list[..at]
        .iter()
        .chain(extra)
        .chain(list[at..].iter())
        .filter(move |x| extra.is_some_and(|e| std::ptr::eq(*x, e)) || view.keep(origin(x)))
}
