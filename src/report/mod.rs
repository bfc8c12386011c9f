//! Migration readiness of the whole mesh (`mtls-guard report`, `GET /report`): per workload
//! its effective mode per port, who still sends it plaintext and on what evidence, whether it
//! can be locked down now, and the exact PeerAuthentication that would do it.
//!
//! "Can it be locked down" is answered by the engine itself: the report evaluates the STRICT
//! policy it would propose, exactly as the webhook would review it.

mod html;
mod lockdown;
mod table;

pub use html::html;
pub use table::table;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::decision::{settle, Decision, GuardMode};
use crate::engine::{self, Change, ModeResolver, Tier, Verdict, View};
use crate::evidence::{window_text, Evidence, EvidenceMode};
use crate::explain::{cause, findings, Finding};
use crate::inventory::{Index, Set, Workload, WorkloadId};
use crate::model::{Mode, Origin, Proxy, Rule, RuleKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// STRICT already.
    Strict,
    /// A STRICT policy would break nobody: the proposed YAML can be applied now.
    Ready,
    /// Clients still send plaintext.
    Blocked,
    /// Cannot be locked down on its own (see the note).
    Manual,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMode {
    /// `None`: the pods declare no port; the workload-level mode applies.
    pub port: Option<u16>,
    pub mode: Mode,
    pub decided_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadReport {
    pub namespace: String,
    pub workload: String,
    pub proxy: &'static str,
    pub pods: usize,
    pub ports: Vec<PortMode>,
    pub status: Status,
    pub blockers: Vec<Finding>,
    /// Further clients without a proxy, cut off like the listed ones.
    pub more_clients: usize,
    /// Where the suspects come from, and how many NetworkPolicies ruled out.
    pub suspects: Suspects,
    pub note: Option<String>,
    /// The PeerAuthentication to apply, when the status is ready.
    pub lockdown: Option<String>,
}

/// Suspected plaintext clients of a lock-down by source of evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Suspects {
    /// Named by the inventory alone (no proxy, or a client configuration that sends plaintext).
    pub inventory: usize,
    /// Seen sending plaintext in traffic telemetry.
    pub traffic: usize,
    /// Left out because NetworkPolicies keep them from the server (`--respect-network-policies`).
    pub excluded_by_network_policies: usize,
}

impl Suspects {
    fn of(v: &Verdict) -> Suspects {
        let traffic = v.breaks.iter().filter(|b| b.tier == Tier::Traffic).count();
        Suspects {
            inventory: v.client_count() - traffic,
            traffic,
            excluded_by_network_policies: v.excluded_by_network_policies,
        }
    }
}

/// A namespace-wide (or, for the mesh, root-namespace) lock-down.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LockdownReport {
    pub name: String,
    pub mode: Mode,
    pub decided_by: Option<String>,
    pub status: Status,
    pub blocking_clients: usize,
    pub note: Option<String>,
    pub lockdown: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceReport {
    #[serde(flatten)]
    pub level: LockdownReport,
    pub strict: usize,
    pub ready: usize,
    pub blocked: usize,
    pub manual: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// Traffic evidence was fetched and is part of the report.
    pub used: bool,
    /// Which evidence decides, as `--evidence` says.
    pub mode: Option<EvidenceMode>,
    pub window: Option<String>,
    /// Why traffic evidence is missing or out of date.
    pub stale: Option<String>,
}

/// Findings grouped by what would clear them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CauseReport {
    pub cause: String,
    pub fix: &'static str,
    /// (client, server) pairs it cuts off, among the clients the verdicts name.
    pub edges: usize,
    pub clients: usize,
    pub servers: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct MeshReport {
    /// Most edges first: the few changes that unblock the most.
    pub causes: Vec<CauseReport>,
    /// Distinct (client, server) pairs named across all workloads.
    pub edges: usize,
    pub mesh: LockdownReport,
    pub namespaces: Vec<NamespaceReport>,
    pub workloads: Vec<WorkloadReport>,
    pub traffic: TrafficStatus,
}

impl MeshReport {
    /// What can be locked down now and the YAML that does it: workloads, namespaces, mesh.
    pub fn lockdowns(&self) -> Vec<(String, &str)> {
        let workloads = self.workloads.iter().filter_map(|w| {
            Some((
                format!("{}/{}", w.namespace, w.workload),
                w.lockdown.as_deref()?,
            ))
        });
        let namespaces = self.namespaces.iter().filter_map(|n| {
            Some((
                format!("namespace {}", n.level.name),
                n.level.lockdown.as_deref()?,
            ))
        });
        let mesh = self
            .mesh
            .lockdown
            .as_deref()
            .map(|y| ("the whole mesh".to_string(), y));
        workloads.chain(namespaces).chain(mesh).collect()
    }
}

/// The webhook's verdict on a proposed lock-down (`rule` replacing `old`), with traffic
/// evidence when there is some. Takes the lock-down's fields, not the lock-down, so its YAML
/// can be moved into the report while the verdict borrows the rules.
fn judge<'a>(
    index: &'a Index,
    old: Option<&'a Rule>,
    rule: &'a Rule,
    evidence: Option<&Evidence>,
) -> Verdict<'a> {
    let change = Change {
        old,
        new: Some(rule),
    };
    match evidence {
        Some(e) => engine::evaluate_with(index, &change, e),
        None => engine::evaluate(index, &change),
    }
}

/// Whether the webhook would deny the lock-down. Judged as in enforce mode: a namespace
/// the guard only audits still loses these clients.
fn denied(v: &Verdict) -> bool {
    settle(v, GuardMode::Enforce, false) == Decision::Denied
}

fn origin_text(o: Option<&Origin>) -> Option<String> {
    o.map(ToString::to_string)
}

/// Assesses every server workload, namespace and the mesh; `evidence` adds observed traffic.
pub fn assess(index: &Index, evidence: Option<&Evidence>) -> MeshReport {
    // A key no object has, so the view is the index as it is.
    let key = Origin {
        kind: RuleKind::PeerAuthentication,
        namespace: String::new(),
        name: "#mtls-guard-readiness".into(),
        created: 0,
    };
    let mut modes = ModeResolver::new(View::new(index, &key, None));
    let mut groups: BTreeMap<(&str, &str), Vec<(WorkloadId, &Workload)>> = BTreeMap::new();
    for (id, w) in index
        .workloads()
        .iter()
        .filter(|(_, w)| Index::is_server(w))
    {
        groups
            .entry((&*w.namespace, &*w.name))
            .or_default()
            .push((id, w));
    }
    let workloads: Vec<WorkloadReport> = groups
        .iter()
        .map(|((ns, name), shapes)| workload(index, &mut modes, evidence, ns, name, shapes))
        .collect();
    let mut namespaces = Vec::new();
    // Sorted by namespace, so each namespace's workloads are one run.
    for members in workloads.chunk_by(|a, b| a.namespace == b.namespace) {
        let ns = members[0].namespace.as_str();
        let count = |s: Status| members.iter().filter(|w| w.status == s).count();
        let resolved = modes.namespace(&Arc::from(ns));
        namespaces.push(NamespaceReport {
            level: lockdown(index, evidence, ns, resolved.mode, resolved.by, false),
            strict: count(Status::Strict),
            ready: count(Status::Ready),
            blocked: count(Status::Blocked),
            manual: count(Status::Manual),
        });
    }
    let root = index.mesh().root_namespace.clone();
    let mesh_mode = modes.namespace(&Arc::from(root.as_str()));
    let (causes, edges) = causes(&workloads);
    MeshReport {
        causes,
        edges,
        mesh: lockdown(index, evidence, &root, mesh_mode.mode, mesh_mode.by, true),
        namespaces,
        workloads,
        traffic: TrafficStatus {
            used: evidence.is_some_and(|e| e.edges.is_some()),
            mode: evidence.map(|e| e.mode),
            window: evidence.map(|e| window_text(e.window)),
            stale: evidence.and_then(|e| e.stale_reason.clone()),
        },
    }
}

/// The workloads' findings grouped by cause, most edges first, and the distinct edges in all.
fn causes(workloads: &[WorkloadReport]) -> (Vec<CauseReport>, usize) {
    #[derive(Default)]
    struct Tally<'a> {
        edges: Set<(&'a str, &'a str)>,
        clients: Set<&'a str>,
        servers: Set<&'a str>,
    }
    let mut by: BTreeMap<(String, &'static str), Tally> = BTreeMap::new();
    let mut all: Set<(&str, &str)> = Set::default();
    for b in workloads.iter().flat_map(|w| &w.blockers) {
        let tally = by.entry(cause(&b.reason)).or_default();
        tally.clients.insert(&b.client);
        for s in &b.servers {
            tally.edges.insert((&b.client, s));
            tally.servers.insert(s);
            all.insert((&b.client, s));
        }
    }
    let mut causes: Vec<CauseReport> = by
        .into_iter()
        .map(|((cause, fix), t)| CauseReport {
            cause,
            fix,
            edges: t.edges.len(),
            clients: t.clients.len(),
            servers: t.servers.len(),
        })
        .collect();
    causes.sort_by(|a, b| b.edges.cmp(&a.edges).then_with(|| a.cause.cmp(&b.cause)));
    (causes, all.len())
}

fn workload(
    index: &Index,
    modes: &mut ModeResolver,
    evidence: Option<&Evidence>,
    ns: &str,
    name: &str,
    members: &[(WorkloadId, &Workload)],
) -> WorkloadReport {
    let shapes: Vec<&Workload> = members.iter().map(|(_, w)| *w).collect();
    let shapes = shapes.as_slice();
    let mut ports: Vec<PortMode> = Vec::new();
    for (id, w) in members {
        for &port in &w.ports {
            if ports.iter().any(|p| p.port == port) {
                continue;
            }
            let r = modes.port(*id, port);
            ports.push(PortMode {
                port,
                mode: r.mode,
                decided_by: origin_text(r.by),
            });
        }
    }
    ports.sort_by_key(|p| p.port);
    let mut report = WorkloadReport {
        namespace: ns.to_string(),
        workload: name.to_string(),
        proxy: match shapes.first().map(|w| w.shape.proxy) {
            Some(Proxy::Ambient) => "ambient",
            _ => "sidecar",
        },
        pods: shapes.iter().map(|w| w.pods).sum(),
        ports,
        status: Status::Strict,
        blockers: Vec::new(),
        more_clients: 0,
        suspects: Suspects::default(),
        note: None,
        lockdown: None,
    };
    if report.ports.iter().all(|p| p.mode == Mode::Strict) {
        return report;
    }
    let lockdown = match lockdown::for_workload(index, shapes) {
        Ok(l) => l,
        Err(why) => {
            report.status = Status::Manual;
            report.note = Some(why);
            return report;
        }
    };
    let verdict = judge(index, lockdown.old.as_ref(), &lockdown.rule, evidence);
    report.blockers = findings(&verdict);
    report.more_clients = verdict.unlisted;
    report.suspects = Suspects::of(&verdict);
    if !denied(&verdict) {
        report.status = Status::Ready;
        report.lockdown = Some(lockdown.yaml);
    } else {
        report.status = Status::Blocked;
    }
    report
}

/// A namespace (or with `mesh`, the whole mesh) locked down with one selector-less policy.
fn lockdown(
    index: &Index,
    evidence: Option<&Evidence>,
    name: &str,
    mode: Mode,
    by: Option<&Origin>,
    mesh: bool,
) -> LockdownReport {
    let mut report = LockdownReport {
        name: name.to_string(),
        mode,
        decided_by: origin_text(by),
        status: Status::Strict,
        blocking_clients: 0,
        note: None,
        lockdown: None,
    };
    if mode == Mode::Strict {
        return report;
    }
    if !mesh && name == index.mesh().root_namespace {
        report.status = Status::Manual;
        report.note = Some("the root namespace's selector-less policy is the mesh-wide one".into());
        return report;
    }
    let lockdown = if mesh {
        lockdown::for_mesh(index)
    } else {
        lockdown::for_namespace(index, name)
    };
    let lockdown = match lockdown {
        Ok(l) => l,
        Err(why) => {
            report.status = Status::Manual;
            report.note = Some(why);
            return report;
        }
    };
    let verdict = judge(index, lockdown.old.as_ref(), &lockdown.rule, evidence);
    report.blocking_clients = verdict.client_count();
    if !denied(&verdict) {
        report.status = Status::Ready;
        report.lockdown = Some(lockdown.yaml);
    } else {
        report.status = Status::Blocked;
    }
    report
}

#[cfg(test)]
mod tests;
