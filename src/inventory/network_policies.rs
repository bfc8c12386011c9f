//! A namespace's NetworkPolicies in the index, and the budget past which they are not used.

use super::Index;
use crate::model::NetworkPolicy;

/// A namespace's NetworkPolicies, sorted by name, their summed weight, and how many could
/// not be read.
#[derive(Debug, Default)]
pub(super) struct Policies {
    pub(super) list: Vec<NetworkPolicy>,
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

impl Index {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Filters;
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
