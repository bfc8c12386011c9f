//! A verdict: the servers a change locks down and the clients it cuts off, and the builder
//! the engine's passes fill it with.

use std::borrow::Cow;
use std::sync::Arc;

use serde::Serialize;
use smallvec::SmallVec;

use super::budget::Budget;
use super::mode::Resolved;
use super::reach::Reach;
use crate::inventory::{Index, Map, Set, Workload, WorkloadId};
use crate::model::{Mode, Origin, TlsMode};

/// How the guard knows a client sends plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// The client has no proxy: it could reach the server and cannot speak mTLS.
    Inventory,
    /// The client has a proxy, but its configuration makes it send plaintext to this server.
    ClientConfig,
    /// Istio's telemetry saw plaintext arrive at this server within the look-back window.
    Traffic,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Client {
    /// Pods of a workload (the owning Deployment, StatefulSet, …, or a bare pod).
    Workload { namespace: Arc<str>, name: Arc<str> },
    /// The kubelet probing the server's pods.
    Kubelet { namespace: Arc<str>, name: Arc<str> },
    /// Whoever reaches the server from outside the cluster through a NodePort, LoadBalancer or
    /// externalIPs Service.
    External {
        namespace: Arc<str>,
        service: Arc<str>,
        exposure: crate::model::service::Exposure,
    },
    /// kube-apiserver, calling a webhook, an aggregated API or a conversion webhook.
    ApiServer {
        caller: crate::model::CallerKind,
        name: Arc<str>,
    },
    /// A sender Istio's telemetry could not name: no sidecar, or outside the mesh.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    NoProxy,
    HostNetwork,
    /// `istio.io/dataplane-mode=ambient` asked for it, but istio-cni never enrolled the pod.
    AmbientNotEnrolled,
    DestinationRule {
        rule: Origin,
        mode: TlsMode,
        port: u16,
    },
    PlaintextSubset {
        rule: Origin,
        subset: String,
        mode: TlsMode,
    },
    AutoMtlsOff,
    /// The server pods lack `security.istio.io/tlsMode=istio`, so auto mTLS sends plaintext.
    TargetNotLabelled,
    /// The server namespace's namespace-or-mesh mode is DISABLE, which turns off auto mTLS.
    NamespaceDisable {
        namespace: String,
        by: Option<Origin>,
    },
    /// A headless Service with a backend lacking the tlsMode label: plaintext to all backends.
    HeadlessBackend {
        service: String,
        backend: String,
    },
    /// ztunnel passes traffic through as-is to a sidecar that does not accept HBONE.
    AmbientToSidecar,
    OutboundBypass {
        annotation: &'static str,
        port: u16,
    },
    /// An httpGet or gRPC probe on a captured port with probe rewriting off.
    KubeletProbe {
        port: u16,
    },
    /// The port is open outside the mesh through a Service of this kind.
    ExposedOutsideMesh {
        port: u16,
    },
    /// The API server calls this Service port, over TLS that is not Istio mTLS.
    ApiServerCalls {
        port: u16,
    },
    /// Plaintext requests and TCP connections seen arriving within the window.
    ObservedPlaintext {
        requests: u64,
        connections: u64,
        window_secs: u64,
    },
}

impl Reason {
    pub fn tier(&self) -> Tier {
        match self {
            Reason::NoProxy
            | Reason::HostNetwork
            | Reason::AmbientNotEnrolled
            | Reason::ExposedOutsideMesh { .. }
            | Reason::ApiServerCalls { .. } => Tier::Inventory,
            Reason::ObservedPlaintext { .. } => Tier::Traffic,
            _ => Tier::ClientConfig,
        }
    }
}

/// One port of a server workload that is STRICT after the change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortChange<'a> {
    /// `None` for pods without any port: judged on the workload-level mode.
    pub port: Option<u16>,
    pub before: Mode,
    pub after: Mode,
    /// The policy that decided `after`; `None` when none applies (Istio's PERMISSIVE default).
    pub decided_by: Option<Cow<'a, Origin>>,
}

impl PortChange<'_> {
    fn into_owned(self) -> PortChange<'static> {
        PortChange {
            decided_by: self.decided_by.map(|o| Cow::Owned(o.into_owned())),
            ..self
        }
    }
}

/// A server workload with clients the change cuts off.
///
/// Borrowed from the index and the reviewed object while the review runs: a mesh-wide verdict
/// names thousands of servers, and shared copies of their names and deciding policy would cost
/// three atomic counter updates each to make and three more to drop, a quarter of such a
/// review's time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Server<'a> {
    pub namespace: Cow<'a, str>,
    pub workload: Cow<'a, str>,
    pub pods: usize,
    /// Mostly one: inline, so a mesh-wide verdict does not allocate per server.
    pub ports: SmallVec<[PortChange<'a>; 1]>,
    /// Ambient clients reach it over HBONE (ambient itself, or a sidecar labelled for it).
    pub accepts_hbone: bool,
}

impl Server<'_> {
    fn into_owned(self) -> Server<'static> {
        Server {
            namespace: Cow::Owned(self.namespace.into_owned()),
            workload: Cow::Owned(self.workload.into_owned()),
            pods: self.pods,
            ports: self.ports.into_iter().map(PortChange::into_owned).collect(),
            accepts_hbone: self.accepts_hbone,
        }
    }

    /// A mode change (not-STRICT to STRICT), rather than a client-side change hitting it.
    pub fn locked_down(&self) -> bool {
        self.ports.iter().any(|p| p.before != Mode::Strict)
    }
}

/// The servers a client is cut off from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Targets {
    /// Every server the change locks down (a client without proxy reaches them all).
    LockedDown,
    /// Every locked-down server that does not accept HBONE (what an ambient client cannot reach).
    LockedDownWithoutHbone,
    /// Indices into [`Verdict::servers`].
    Servers(Vec<usize>),
}

/// A client cut off from one or more servers, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Break {
    pub client: Client,
    pub tier: Tier,
    pub reason: Reason,
    pub targets: Targets,
    /// `false` for a finding that only warns (`--evidence traffic` and no traffic seen).
    pub denies: bool,
}

/// Clients without a proxy (and ambient clients) listed by name in a verdict; the rest are
/// only counted, so a review costs the same with ten such workloads or ten thousand.
pub const LISTED_UNMESHED: usize = 10;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verdict<'a> {
    pub servers: Vec<Server<'a>>,
    pub breaks: Vec<Break>,
    /// Further clients without a proxy or ambient, cut off like the listed ones, not listed.
    pub unlisted: usize,
    /// Why traffic evidence was asked for but not used: the decision rests on the inventory.
    pub traffic_unavailable: Option<String>,
    /// Suspected clients not counted because NetworkPolicies keep them from every server they
    /// were suspected for (`--respect-network-policies`).
    pub excluded_by_network_policies: usize,
    /// The review's budget for NetworkPolicy checks ran out: later suspects were counted
    /// without one.
    pub network_policies_partly_checked: bool,
    /// A mesh config change moves the root namespace to this namespace, one the guard ignores:
    /// policies there would be mesh-wide and, where the webhook does not watch it, unreviewed.
    pub ignored_root: Option<String>,
}

impl<'a> Verdict<'a> {
    /// The same verdict, holding its own copy of what it borrowed from the index and the
    /// reviewed object.
    pub fn into_owned(self) -> Verdict<'static> {
        Verdict {
            servers: self.servers.into_iter().map(Server::into_owned).collect(),
            breaks: self.breaks,
            unlisted: self.unlisted,
            traffic_unavailable: self.traffic_unavailable,
            excluded_by_network_policies: self.excluded_by_network_policies,
            network_policies_partly_checked: self.network_policies_partly_checked,
            ignored_root: self.ignored_root,
        }
    }

    pub fn breaks_clients(&self) -> bool {
        !self.breaks.is_empty() || self.ignored_root.is_some()
    }

    /// Whether any finding is strong enough to deny (the rest only warn).
    pub fn denies(&self) -> bool {
        self.breaks.iter().any(|b| b.denies) || self.ignored_root.is_some()
    }

    /// Every client cut off, listed or not.
    pub fn client_count(&self) -> usize {
        self.breaks.len() + self.unlisted
    }

    /// The servers one break cuts its client off from. Not boxed: messages call it for every
    /// client they list.
    pub fn targets<'v>(&'v self, b: &'v Break) -> impl Iterator<Item = &'v Server<'a>> + 'v {
        let (locked_down, listed): (&[Server<'a>], &[usize]) = match &b.targets {
            Targets::Servers(ids) => (&[], ids),
            Targets::LockedDown | Targets::LockedDownWithoutHbone => (&self.servers, &[]),
        };
        let hbone_reaches = matches!(b.targets, Targets::LockedDownWithoutHbone);
        locked_down
            .iter()
            .filter(move |s| s.locked_down() && !(hbone_reaches && s.accepts_hbone))
            .chain(listed.iter().filter_map(|i| self.servers.get(*i)))
    }
}

pub(super) struct VerdictBuilder<'a> {
    pub(super) verdict: Verdict<'a>,
    pub(super) reach: Reach<'a>,
    pub(super) budget: Option<&'a Budget>,
    /// Suspects NetworkPolicies kept from a server; counted at the end unless cut off elsewhere.
    pub(super) filtered: Set<Client>,
    /// Unlisted clients found to reach a server, counted once whatever their pod groups.
    pub(super) unlisted_reached: Set<Client>,
    server_slots: ServerSlots,
    /// The pod groups of one workload (a Deployment mid-rollout) share one server entry.
    workload_slots: Map<(&'a str, &'a str), usize>,
    break_slots: Map<(Client, Reason), usize>,
}

impl<'a> VerdictBuilder<'a> {
    /// Room for `servers` servers: a mesh-wide review registers thousands.
    pub(super) fn new(
        index: &'a Index,
        servers: usize,
        budget: Option<&'a Budget>,
    ) -> VerdictBuilder<'a> {
        let mut out = VerdictBuilder {
            verdict: Verdict::default(),
            reach: Reach::new(index, budget),
            budget,
            filtered: Set::default(),
            unlisted_reached: Set::default(),
            server_slots: ServerSlots::new(index.workloads().id_bound(), servers),
            workload_slots: Map::default(),
            break_slots: Map::default(),
        };
        out.verdict.servers.reserve(servers);
        out
    }

    /// Registers a server port that cuts someone off; returns the server's index.
    pub(super) fn server(&mut self, hit: &Hit<'a>, w: &'a Workload) -> usize {
        let slot = match self.server_slots.get(hit.id) {
            Some(slot) => slot,
            None => {
                let slot = self.workload_slot(w);
                self.verdict.servers[slot].pods += w.pods;
                self.server_slots.set(hit.id, slot);
                slot
            }
        };
        let entry = &mut self.verdict.servers[slot];
        entry.accepts_hbone &= w.accepts_hbone();
        if let Some(known) = entry.ports.iter_mut().find(|p| p.port == hit.port) {
            // Pod groups of one workload may differ: a port one of them had not STRICT is
            // a lock-down for the workload.
            if known.before == Mode::Strict {
                known.before = hit.before;
            }
        } else {
            self.verdict.servers[slot].ports.push(PortChange {
                port: hit.port,
                before: hit.before,
                after: hit.after.mode,
                decided_by: hit.after.by.map(Cow::Borrowed),
            });
        }
        slot
    }

    /// The entry of `w`'s workload, created without pods; looked up only for a workload that
    /// may have other pod groups.
    fn workload_slot(&mut self, w: &'a Workload) -> usize {
        let servers = &mut self.verdict.servers;
        let mut create = || {
            servers.push(Server {
                namespace: Cow::Borrowed(&w.namespace),
                workload: Cow::Borrowed(&w.name),
                pods: 0,
                ports: SmallVec::new(),
                accepts_hbone: w.accepts_hbone(),
            });
            servers.len() - 1
        };
        if !w.may_have_siblings() {
            return create();
        }
        *self
            .workload_slots
            .entry((&w.namespace, &w.name))
            .or_insert_with(create)
    }

    /// Records that `client` is cut off from one server.
    pub(super) fn add(&mut self, client: Client, reason: Reason, server: usize) {
        let slot = self.slot(client, reason, || Targets::Servers(Vec::new()));
        if let Targets::Servers(ids) = &mut self.verdict.breaks[slot].targets {
            if !ids.contains(&server) {
                ids.push(server);
            }
        }
    }

    /// Records that a listed member of a population (no proxy, ambient) is cut off from a
    /// whole class of servers. No other path reports a client with a population reason, and
    /// the shapes of one workload (a StatefulSet's pods, a rollout) come in a row, so only
    /// the last entry can repeat it.
    pub(super) fn add_to_all(&mut self, client: Client, reason: Reason, targets: Targets) {
        let last = self.verdict.breaks.last();
        if last.is_some_and(|b| b.client == client && b.reason == reason) {
            return;
        }
        self.verdict.breaks.push(Break {
            client,
            tier: reason.tier(),
            reason,
            targets,
            denies: true,
        });
    }

    pub(super) fn slot(
        &mut self,
        client: Client,
        reason: Reason,
        targets: impl FnOnce() -> Targets,
    ) -> usize {
        let breaks = &mut self.verdict.breaks;
        *self
            .break_slots
            .entry((client.clone(), reason.clone()))
            .or_insert_with(|| {
                let tier = reason.tier();
                breaks.push(Break {
                    client,
                    tier,
                    reason,
                    targets: targets(),
                    denies: true,
                });
                breaks.len() - 1
            })
    }

    pub(super) fn finish(mut self) -> Verdict<'a> {
        self.verdict.network_policies_partly_checked = self.reach.exhausted();
        if !self.filtered.is_empty() {
            let counted: Set<&Client> = self
                .verdict
                .breaks
                .iter()
                .map(|b| &b.client)
                .chain(&self.unlisted_reached)
                .collect();
            self.verdict.excluded_by_network_policies += self
                .filtered
                .iter()
                .filter(|c| !counted.contains(c))
                .count();
        }
        self.verdict
            .breaks
            .sort_by(|a, b| (a.tier, &a.client).cmp(&(b.tier, &b.client)));
        self.verdict
    }
}

/// The server entry of each pod group a verdict names: by position when the review judges a
/// good share of the index (no hashing per server), hashed when it judges a few (no table
/// the size of the index to clear).
enum ServerSlots {
    /// Each workload id's entry plus one; 0 for none yet. Ids of the index are below its
    /// `id_bound`, the table's length.
    Dense(Vec<usize>),
    Sparse(Map<WorkloadId, usize>),
}

impl ServerSlots {
    fn new(ids: usize, servers: usize) -> ServerSlots {
        if servers.saturating_mul(64) >= ids {
            ServerSlots::Dense(vec![0; ids])
        } else {
            ServerSlots::Sparse(Map::default())
        }
    }

    fn get(&self, id: WorkloadId) -> Option<usize> {
        match self {
            ServerSlots::Dense(slots) => slots[id].checked_sub(1),
            ServerSlots::Sparse(slots) => slots.get(&id).copied(),
        }
    }

    fn set(&mut self, id: WorkloadId, slot: usize) {
        match self {
            ServerSlots::Dense(slots) => slots[id] = slot + 1,
            ServerSlots::Sparse(slots) => {
                slots.insert(id, slot);
            }
        }
    }
}

/// A server port that is STRICT after the change.
pub(super) struct Hit<'a> {
    pub(super) id: WorkloadId,
    pub(super) port: Option<u16>,
    pub(super) before: Mode,
    pub(super) after: Resolved<'a>,
}

impl Hit<'_> {
    /// Not STRICT before: every plaintext client is newly cut off.
    pub(super) fn locks_down(&self) -> bool {
        self.before != Mode::Strict
    }
}

#[cfg(test)]
mod tests {
    use super::ServerSlots;

    #[test]
    fn server_slots_remember_each_id_whether_dense_or_hashed() {
        let dense = ServerSlots::new(100, 2);
        let sparse = ServerSlots::new(1_000, 2);
        assert!(matches!(dense, ServerSlots::Dense(_)));
        assert!(matches!(sparse, ServerSlots::Sparse(_)));
        for mut slots in [dense, sparse] {
            assert_eq!(slots.get(7), None);
            slots.set(7, 0);
            slots.set(99, 5);
            assert_eq!(
                (slots.get(7), slots.get(99), slots.get(8)),
                (Some(0), Some(5), None)
            );
        }
    }
}
