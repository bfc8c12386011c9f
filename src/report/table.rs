//! The readiness report for a terminal: aligned tables, the reasons, then the YAML to apply.

use std::fmt::Write;

use super::{Finding, LockdownReport, MeshReport, Status, WorkloadReport};
use crate::explain::tier_name;

/// Clients named in a table cell before "+N more".
const LISTED: usize = 3;

pub(super) fn status_text(s: Status) -> &'static str {
    match s {
        Status::Strict => "strict",
        Status::Ready => "ready",
        Status::Blocked => "blocked",
        Status::Manual => "manual",
    }
}

pub(super) fn ports_text(w: &WorkloadReport) -> String {
    w.ports
        .iter()
        .map(|p| match p.port {
            Some(n) => format!("{n} {}", p.mode),
            None => format!("all {}", p.mode),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn blocked_by(w: &WorkloadReport) -> String {
    let mut names: Vec<String> = Vec::new();
    for b in &w.blockers {
        if !names.contains(&b.client) {
            names.push(b.client.clone());
        }
    }
    let more = names.len().saturating_sub(LISTED) + w.more_clients;
    names.truncate(LISTED);
    let mut cell = names.join(", ");
    if more > 0 {
        let _ = write!(cell, " +{more} more");
    }
    match (&w.note, cell.is_empty()) {
        (Some(note), true) => note.clone(),
        _ => cell,
    }
}

/// Rows of cells, each column padded to its widest cell.
fn grid(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn level_cell(s: &LockdownReport) -> String {
    match s.status {
        Status::Blocked => format!("blocked ({} client(s))", s.blocking_clients),
        Status::Manual => format!("manual: {}", s.note.as_deref().unwrap_or("")),
        other => status_text(other).to_string(),
    }
}

fn blocker_line(b: &Finding) -> String {
    format!(
        "    - {} -> {} [{}]: {}{}\n",
        b.client,
        b.servers.join(", "),
        tier_name(b.tier),
        b.text,
        if b.denies { "" } else { " (warning only)" }
    )
}

/// The causes first, most edges first, each with its fix.
fn causes(r: &MeshReport) -> String {
    if r.causes.is_empty() {
        return String::new();
    }
    let mut out = String::from("Why lock-downs are blocked (most edges first):\n");
    for c in &r.causes {
        let _ = writeln!(
            out,
            "  {} of {} edge(s), {} client(s) -> {} server(s): {}\n      fix: {}",
            c.edges, r.edges, c.clients, c.servers, c.cause, c.fix
        );
    }
    out.push('\n');
    out
}

pub fn table(r: &MeshReport) -> String {
    let mut rows = vec![[
        "NAMESPACE",
        "WORKLOAD",
        "PROXY",
        "PODS",
        "PORTS",
        "STATUS",
        "BLOCKED BY",
    ]
    .map(String::from)
    .to_vec()];
    for w in &r.workloads {
        rows.push(vec![
            w.namespace.clone(),
            w.workload.clone(),
            w.proxy.to_string(),
            w.pods.to_string(),
            ports_text(w),
            status_text(w.status).to_string(),
            blocked_by(w),
        ]);
    }
    let mut out = causes(r);
    out.push_str(&grid(&rows));
    out.push('\n');
    let mut rows = vec![[
        "NAMESPACE",
        "MODE",
        "STRICT",
        "READY",
        "BLOCKED",
        "MANUAL",
        "NAMESPACE-WIDE STRICT",
    ]
    .map(String::from)
    .to_vec()];
    for n in &r.namespaces {
        rows.push(vec![
            n.level.name.clone(),
            n.level.mode.to_string(),
            n.strict.to_string(),
            n.ready.to_string(),
            n.blocked.to_string(),
            n.manual.to_string(),
            level_cell(&n.level),
        ]);
    }
    out.push_str(&grid(&rows));
    let _ = writeln!(
        out,
        "\nMesh (root namespace {}): {}{}; mesh-wide STRICT: {}",
        r.mesh.name,
        r.mesh.mode,
        r.mesh
            .decided_by
            .as_ref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default(),
        level_cell(&r.mesh)
    );
    let _ = writeln!(out, "Traffic evidence: {}", traffic_text(r));
    let blocked: Vec<&WorkloadReport> = r
        .workloads
        .iter()
        .filter(|w| !w.blockers.is_empty())
        .collect();
    if !blocked.is_empty() {
        out.push_str("\nWhat blocks each lock-down (or only warns):\n");
        for w in blocked {
            let _ = writeln!(out, "  {}/{}:", w.namespace, w.workload);
            for b in &w.blockers {
                out.push_str(&blocker_line(b));
            }
            if w.more_clients > 0 {
                let _ = writeln!(
                    out,
                    "    +{} more client(s) without a proxy",
                    w.more_clients
                );
            }
            let s = &w.suspects;
            let _ = writeln!(
                out,
                "    suspects: {} from the inventory, {} seen in traffic, {} excluded by NetworkPolicies",
                s.inventory, s.traffic, s.excluded_by_network_policies
            );
        }
    }
    let ready = r.lockdowns();
    if ready.is_empty() {
        out.push_str("\nNothing can be locked down yet without cutting someone off.\n");
    } else {
        out.push_str("\nReady to lock down now (kubectl apply -f -):\n");
        for (what, yaml) in ready {
            let _ = write!(out, "---\n# {what}\n{yaml}");
        }
    }
    out
}

pub(super) fn traffic_text(r: &MeshReport) -> String {
    match (&r.traffic.window, &r.traffic.stale, r.traffic.used) {
        (None, _, _) => {
            "not used (no --prometheus-url): inventory and client configuration only".into()
        }
        (Some(w), None, true) => {
            format!("plaintext seen by Prometheus in the last {w} is included")
        }
        (Some(w), Some(why), true) => {
            format!("from the last successful poll ({w} window), now stale: {why}")
        }
        (_, why, false) => format!(
            "unavailable ({}); decided on the inventory",
            why.as_deref().unwrap_or("no data")
        ),
    }
}
