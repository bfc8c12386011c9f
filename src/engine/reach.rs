//! Whether NetworkPolicies let a client reach a server port (`--respect-network-policies`,
//! README "Reachability"): the server's ingress policies must admit the client, and the
//! client's egress policies the server, as the CNI enforces them on pod addresses and ports.

use std::cell::Cell;

use super::budget::{self, Budget};
use crate::inventory::{Index, Workload};
use crate::model::network_policy::{Peer, PolicyRule, Selector};
use crate::model::pod::NamedPort;
use crate::model::{Labels, NetworkPolicy};

/// Policy weight a review may evaluate ([`NetworkPolicy::weight`] per check). Past it the
/// remaining suspects are counted unfiltered, so a cluster full of large policies costs a
/// review a bounded amount and errs on the cautious side.
pub const REVIEW_BUDGET: usize = 1 << 23;

pub(super) struct Reach<'i> {
    index: &'i Index,
    on: bool,
    /// Weight still to spend in this review.
    left: Cell<usize>,
    /// Where the review runs on a budget, the weight is charged to it as well.
    budget: Option<&'i Budget>,
}

/// Which way a policy rule looks: ingress rules name sources, egress rules destinations.
#[derive(Clone, Copy)]
enum Way {
    Ingress,
    Egress,
}

impl<'i> Reach<'i> {
    pub(super) fn new(index: &'i Index, budget: Option<&'i Budget>) -> Reach<'i> {
        Reach {
            index,
            on: index.filters_by_network_policy(),
            left: Cell::new(REVIEW_BUDGET),
            budget,
        }
    }

    pub(super) fn is_on(&self) -> bool {
        self.on
    }

    /// Whether the budget ran out, so some suspects were counted without a check.
    pub(super) fn exhausted(&self) -> bool {
        self.left.get() == 0
    }

    /// Whether pods of `client` may open TCP connections to `port` of pods of `server`. A
    /// hostNetwork client sends from the node's address, which no pod selector names: it is
    /// never filtered, nor is a port-less server (no port to match rules against).
    pub(super) fn allows(&self, client: &Workload, server: &Workload, port: Option<u16>) -> bool {
        let Some(port) = port else { return true };
        !self.on
            || client.shape.host_network
            || self.exhausted()
            || (self.admits(Way::Ingress, server, client, server, port)
                && self.admits(Way::Egress, client, server, server, port))
    }

    /// Whether the policies selecting `subject` for `way` admit `peer` on `port` of `server`;
    /// a subject no such policy selects is not isolated and admits everyone.
    fn admits(
        &self,
        way: Way,
        subject: &Workload,
        peer: &Workload,
        server: &Workload,
        port: u16,
    ) -> bool {
        let mut isolated = false;
        for np in self.index.network_policies(&subject.namespace) {
            if !budget::afford(self.budget, 1) {
                return true;
            }
            let rules = match way {
                Way::Ingress => &np.ingress,
                Way::Egress => &np.egress,
            };
            let Some(rules) = rules else { continue };
            let (left, weight) = (self.left.get(), np.weight());
            if left == 0 || !budget::afford(self.budget, weight) {
                return true;
            }
            self.left.set(left.saturating_sub(weight));
            if !np.pod_selector.matches(&subject.shape.labels) {
                continue;
            }
            isolated = true;
            if rules
                .iter()
                .any(|r| self.rule_admits(np, r, peer) && ports_admit(r, server, port))
            {
                return true;
            }
        }
        !isolated
    }

    fn rule_admits(&self, np: &NetworkPolicy, rule: &PolicyRule, peer: &Workload) -> bool {
        let Some(peers) = &rule.peers else {
            return true;
        };
        peers.iter().any(|p| match p {
            // Pods without an address yet (Pending) will get one: judged admitted.
            Peer::Block { .. } => {
                if !budget::afford(self.budget, peer.pods) {
                    return true;
                }
                let mut ips = peer.ips().peekable();
                ips.peek().is_none() || ips.any(|ip| p.admits_ip(ip))
            }
            Peer::Pods { namespaces, pods } => {
                let namespace_ok = match namespaces {
                    None => *peer.namespace == *np.namespace,
                    Some(sel) => self.namespace_matches(sel, &peer.namespace),
                };
                namespace_ok && pods.as_ref().is_none_or(|s| s.matches(&peer.shape.labels))
            }
        })
    }

    /// A namespace the inventory lacks still has the label the API server puts on all.
    fn namespace_matches(&self, selector: &Selector, namespace: &str) -> bool {
        match self.index.namespace(namespace) {
            Some(ns) => selector.matches(&ns.labels),
            None => selector.matches(&Labels::from([(
                crate::model::namespace::NAME_LABEL.to_string(),
                namespace.to_string(),
            )])),
        }
    }
}

/// Whether a rule's ports admit `port` of `server`: by number, by range (`endPort`), or by a
/// name resolved on the server's containers.
fn ports_admit(rule: &PolicyRule, server: &Workload, port: u16) -> bool {
    let Some(ports) = &rule.ports else {
        return true;
    };
    ports.iter().any(|p| match (&p.port, p.end) {
        (None, _) => true,
        (Some(NamedPort::Number(n)), Some(end)) => (*n..=end).contains(&port),
        (Some(NamedPort::Number(n)), None) => *n == port,
        (Some(name), _) => server.shape.resolve_port(name) == Some(port),
    })
}
