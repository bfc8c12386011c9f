//! The readiness report as one self-contained HTML page: inline CSS and SVG, no scripts, no
//! external assets, so it can be mailed, archived or served by the webhook as is.
//!
//! It reads top down as a platform engineer works: the causes that block the most first, then
//! the namespaces, the top blockers as a graph, each namespace's workloads, and what can be
//! applied now. Long lists are cut or folded (`<details>`) so a mesh of 100k pods still makes
//! a page of a few megabytes at most. Every name comes from the cluster and is escaped.

use std::fmt::Write;

use super::table::{ports_text, status_text, traffic_text};
use super::{LockdownReport, MeshReport, NamespaceReport, Status, Tier, WorkloadReport};
use crate::explain::{cause, tier_name};
use crate::inventory::{Map, Set};

/// Namespaces listed before the rest are folded away.
const NAMESPACES_SHOWN: usize = 25;
/// Clients and servers the graph draws: the ones in the most edges.
const GRAPH_CLIENTS: usize = 10;
const GRAPH_SERVERS: usize = 12;
/// Rows of the edge table; `report -o json` has them all.
const EDGE_ROWS: usize = 200;
/// Up to this many workloads in the mesh, every namespace's table opens by itself.
const OPEN_WORKLOADS: usize = 50;
/// Workload rows on the page; namespaces past them get one line of counts.
const WORKLOAD_ROWS: usize = 3000;
/// A workload's blockers are listed one by one up to this many, else summed up by cause.
const BLOCKERS_LISTED: usize = 5;
/// Lock-downs whose YAML is on the page.
const LOCKDOWNS_SHOWN: usize = 50;

const CSS: &str = r#"
:root{--inventory:#c62828;--client-config:#ef6c00;--traffic:#6a1b9a;--strict:#1b5e20;--ready:#2e7d32;--blocked:#c62828;--manual:#757575;--line:#d0d7de;--muted:#57606a}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;background:#f6f8fa}
header{background:#0d1117;color:#f0f6fc;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#c9d1d9}
main{padding:8px 32px 40px;max-width:1400px}
h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid var(--line);padding-bottom:6px}
.totals span{display:inline-block;margin-right:14px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;color:#fff;font-size:12px;font-weight:600;white-space:nowrap}
.strict{background:var(--strict)}.ready{background:var(--ready)}.blocked{background:var(--blocked)}.manual{background:var(--manual)}
.ev-inventory{background:var(--inventory)}.ev-client-config{background:var(--client-config)}.ev-traffic{background:var(--traffic)}
.bar{display:flex;height:10px;width:220px;border-radius:5px;overflow:hidden;background:#eaeef2;margin-top:5px}
.bar i{display:block;height:100%}
.muted{color:var(--muted)}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);width:100%;margin-bottom:8px}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#f0f3f6;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.arrow{color:var(--muted);text-align:center}
td.nowrap{white-space:nowrap}
svg text.head{font-weight:600;fill:#57606a}
.legend span{margin-right:16px}
.legend i{display:inline-block;width:22px;height:8px;vertical-align:middle;margin-right:6px;border-radius:2px}
svg{background:#fff;border:1px solid var(--line);border-radius:8px;margin-bottom:12px;max-width:100%}
svg text{font:13px system-ui,"DejaVu Sans",sans-serif;fill:#1f2328}
pre{background:#0d1117;color:#e6edf3;padding:12px;border-radius:6px;overflow:auto}
details{margin-bottom:8px}
summary{cursor:pointer;font-weight:600;padding:4px 0}
"#;

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn tier_key(e: Tier) -> &'static str {
    match e {
        Tier::Inventory => "inventory",
        Tier::ClientConfig => "client-config",
        Tier::Traffic => "traffic",
    }
}

fn badge(s: Status) -> String {
    format!("<b class=\"badge {0}\">{0}</b>", status_text(s))
}

/// ` by <policy>` when a policy decides the level's mode.
fn by(level: &LockdownReport) -> String {
    level
        .decided_by
        .as_ref()
        .map(|b| format!(" by {}", esc(b)))
        .unwrap_or_default()
}

/// `open` on a `<details>` when `yes`.
fn open(yes: bool) -> &'static str {
    if yes {
        " open"
    } else {
        ""
    }
}

/// One (client, server) edge, with the evidence and reason of its first finding.
struct Edge<'r> {
    client: &'r str,
    server: &'r str,
    tier: Tier,
    reason: &'r str,
}

/// Every (client, server) edge once, as the causes count them, sorted by client then server.
fn edges(r: &MeshReport) -> Vec<Edge<'_>> {
    let mut seen: Set<(&str, &str)> = Set::default();
    let mut out = Vec::new();
    for b in r.workloads.iter().flat_map(|w| &w.blockers) {
        for s in &b.servers {
            if seen.insert((&b.client, s)) {
                out.push(Edge {
                    client: &b.client,
                    server: s,
                    tier: b.tier,
                    reason: &b.text,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.client, a.server).cmp(&(b.client, b.server)));
    out
}

fn header(out: &mut String, r: &MeshReport) {
    let count = |s: Status| r.workloads.iter().filter(|w| w.status == s).count();
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mtls-guard: mTLS migration readiness</title><style>");
    out.push_str(CSS);
    let _ = write!(
        out,
        "</style></head><body><header><h1>mTLS migration readiness</h1><p class=\"totals\"><span>{} server workload(s)</span><span>{} strict</span><span>{} ready to lock down</span><span>{} blocked</span><span>{} manual</span></p><p>Mesh (root namespace {}): {}{} · mesh-wide STRICT: {}</p><p>Traffic evidence: {}</p></header><main>",
        r.workloads.len(),
        count(Status::Strict),
        count(Status::Ready),
        count(Status::Blocked),
        count(Status::Manual),
        esc(&r.mesh.name),
        r.mesh.mode,
        by(&r.mesh),
        badge(r.mesh.status),
        esc(&traffic_text(r))
    );
}

/// Causes first: the one mesh setting or rule behind most edges is the first line to read.
fn causes(out: &mut String, r: &MeshReport) {
    out.push_str("<h2>Why lock-downs are blocked</h2>");
    if r.causes.is_empty() {
        out.push_str("<p>No client still sends plaintext to a workload that is not STRICT.</p>");
        return;
    }
    out.push_str("<table class=\"causes\"><thead><tr><th>cause</th><th>blocks</th><th>clients</th><th>servers</th><th>fix</th></tr></thead><tbody>");
    for c in &r.causes {
        let _ = write!(
            out,
            "<tr class=\"cause\"><td>{}</td><td class=\"nowrap\">{} of {} edge(s)</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&c.cause),
            c.edges,
            r.edges,
            c.clients,
            c.servers,
            esc(c.fix)
        );
    }
    out.push_str("</tbody></table><p class=\"muted\">Edges and clients count what the verdicts name: each names its first clients without a proxy and counts the rest (the workloads below say how many).</p>");
}

fn status_legend(out: &mut String) {
    out.push_str("<p class=\"legend\">");
    for s in [
        Status::Strict,
        Status::Ready,
        Status::Blocked,
        Status::Manual,
    ] {
        let _ = write!(out, "<span><i class=\"{0}\"></i>{0}</span>", status_text(s));
    }
    out.push_str("</p>");
}

fn namespace_row(out: &mut String, n: &NamespaceReport) {
    let total = (n.strict + n.ready + n.blocked + n.manual).max(1);
    let _ = write!(
        out,
        "<tr data-namespace=\"{0}\"><td>{0}<div class=\"muted\">mode {1}{2}</div></td><td><div class=\"bar\">",
        esc(&n.level.name),
        n.level.mode,
        by(&n.level)
    );
    for (count, s) in [
        (n.strict, Status::Strict),
        (n.ready, Status::Ready),
        (n.blocked, Status::Blocked),
        (n.manual, Status::Manual),
    ] {
        if count > 0 {
            let _ = write!(
                out,
                "<i class=\"{0}\" style=\"width:{1}%\" title=\"{count} {0}\"></i>",
                status_text(s),
                count * 100 / total
            );
        }
    }
    let _ = write!(
        out,
        "</div></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}{}</td></tr>",
        n.strict,
        n.ready,
        n.blocked,
        n.manual,
        badge(n.level.status),
        if n.level.status == Status::Blocked {
            format!(" <span class=\"muted\">{} client(s)</span>", n.level.blocking_clients)
        } else {
            String::new()
        }
    );
}

fn namespace_table(out: &mut String, namespaces: &[&NamespaceReport]) {
    out.push_str("<table class=\"namespaces\"><thead><tr><th>namespace</th><th>workloads</th><th>strict</th><th>ready</th><th>blocked</th><th>manual</th><th>namespace-wide STRICT</th></tr></thead><tbody>");
    for n in namespaces {
        namespace_row(out, n);
    }
    out.push_str("</tbody></table>");
}

/// Most blocked first; past [`NAMESPACES_SHOWN`] folded away.
/// The namespaces most blocked first, ties by name: the order of both namespace sections.
fn most_blocked_first(r: &MeshReport) -> Vec<&NamespaceReport> {
    let mut sorted: Vec<&NamespaceReport> = r.namespaces.iter().collect();
    sorted.sort_by(|a, b| {
        b.blocked
            .cmp(&a.blocked)
            .then(a.level.name.cmp(&b.level.name))
    });
    sorted
}

fn namespaces(out: &mut String, r: &MeshReport) {
    out.push_str("<h2>Namespaces</h2>");
    status_legend(out);
    let mut sorted = most_blocked_first(r);
    let rest = sorted.split_off(sorted.len().min(NAMESPACES_SHOWN));
    namespace_table(out, &sorted);
    if !rest.is_empty() {
        let _ = write!(
            out,
            "<details><summary>{} more namespace(s)</summary>",
            rest.len()
        );
        namespace_table(out, &rest);
        out.push_str("</details>");
    }
}

/// The first `n` of `items` ranked by how often they occur, most first, ties by name.
fn top<'r>(items: impl Iterator<Item = &'r str>, n: usize) -> Vec<&'r str> {
    let mut counts: Map<&str, usize> = Map::default();
    for i in items {
        *counts.entry(i).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    ranked.truncate(n);
    let mut names: Vec<&str> = ranked.into_iter().map(|(name, _)| name).collect();
    names.sort_unstable();
    names
}

fn edge_legend(out: &mut String) {
    out.push_str("<p class=\"legend\">");
    for e in [Tier::Inventory, Tier::ClientConfig, Tier::Traffic] {
        let _ = write!(
            out,
            "<span><i class=\"ev-{}\"></i>{}</span>",
            tier_key(e),
            tier_name(e)
        );
    }
    out.push_str("</p>");
}

/// Where the `k`th of `n` lines meets a node at height `y`: spread over the box, not one point.
fn spread(y: usize, k: usize, n: usize) -> f64 {
    let step = if n > 1 { 18.0 / (n - 1) as f64 } else { 0.0 };
    y as f64 - 9.0 + step * k as f64 + if n > 1 { 0.0 } else { 9.0 }
}

/// The top blockers: clients in the most edges, the servers they block most; every line
/// ends in an arrowhead at the server, in its evidence's colour.
fn graph(out: &mut String, edges: &[Edge]) {
    let clients = top(edges.iter().map(|e| e.client), GRAPH_CLIENTS);
    let shown_client = |c: &str| clients.binary_search(&c).is_ok();
    let servers = top(
        edges
            .iter()
            .filter(|e| shown_client(e.client))
            .map(|e| e.server),
        GRAPH_SERVERS,
    );
    let drawn: Vec<&Edge> = edges
        .iter()
        .filter(|e| shown_client(e.client) && servers.binary_search(&e.server).is_ok())
        .collect();
    let (width, box_w, row) = (900, 280, 36);
    let height = 44 + row * clients.len().max(servers.len());
    let y = |i: usize| 40 + row * i + 13;
    let _ = write!(
        out,
        "<svg role=\"img\" aria-label=\"plaintext clients and the servers they block\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\"><defs>"
    );
    for e in [Tier::Inventory, Tier::ClientConfig, Tier::Traffic] {
        let _ = write!(
            out,
            "<marker id=\"head-{0}\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\"><path d=\"M0,0L10,5L0,10z\" style=\"fill:var(--{0})\"/></marker>",
            tier_key(e)
        );
    }
    out.push_str("</defs>");
    let out_degree = |c: &str| drawn.iter().filter(|e| e.client == c).count();
    let in_degree = |s: &str| drawn.iter().filter(|e| e.server == s).count();
    let mut sent = vec![0; clients.len()];
    let mut received = vec![0; servers.len()];
    let (x1, x2) = (20 + box_w, width - 20 - box_w);
    let mid = (x1 + x2) / 2;
    for e in &drawn {
        let (Ok(ci), Ok(si)) = (
            clients.binary_search(&e.client),
            servers.binary_search(&e.server),
        ) else {
            continue;
        };
        let from = spread(y(ci), sent[ci], out_degree(e.client));
        let to = spread(y(si), received[si], in_degree(e.server));
        sent[ci] += 1;
        received[si] += 1;
        let key = tier_key(e.tier);
        let _ = write!(
            out,
            "<path class=\"edge\" data-client=\"{0}\" data-server=\"{1}\" d=\"M{x1},{from:.1} C{mid},{from:.1} {mid},{to:.1} {x2},{to:.1}\" style=\"stroke:var(--{key})\" stroke-width=\"2\" fill=\"none\" opacity=\"0.85\" marker-end=\"url(#head-{key})\"><title>{0} → {1}: {2}</title></path>",
            esc(e.client),
            esc(e.server),
            esc(e.reason)
        );
    }
    let _ = write!(
        out,
        "<text class=\"head\" x=\"20\" y=\"22\">sends plaintext</text><text class=\"head\" x=\"{}\" y=\"22\">would reject it once STRICT</text>",
        width - 20 - box_w
    );
    for (i, c) in clients.iter().enumerate() {
        node(out, 20, y(i), box_w, c);
    }
    for (i, s) in servers.iter().enumerate() {
        node(out, width - 20 - box_w, y(i), box_w, s);
    }
    out.push_str("</svg>");
    let all_clients: Set<&str> = edges.iter().map(|e| e.client).collect();
    let all_servers: Set<&str> = edges.iter().map(|e| e.server).collect();
    if drawn.len() < edges.len() {
        let _ = write!(
            out,
            "<p class=\"muted\">Drawn: the {} of {} clients in the most edges and {} of the {} servers, {} of {} edges.</p>",
            clients.len(),
            all_clients.len(),
            servers.len(),
            all_servers.len(),
            drawn.len(),
            edges.len()
        );
    }
}

fn node(out: &mut String, x: usize, y: usize, w: usize, label: &str) {
    let _ = write!(
        out,
        "<rect x=\"{x}\" y=\"{}\" width=\"{w}\" height=\"26\" rx=\"6\" fill=\"#f6f8fa\" stroke=\"#8c959f\"/><text x=\"{}\" y=\"{}\">{}</text>",
        y - 13,
        x + 10,
        y + 5,
        esc(label)
    );
}

fn edge_table(out: &mut String, edges: &[Edge]) {
    let _ = write!(
        out,
        "<details{}><summary>Every edge ({})</summary><table class=\"edges\"><thead><tr><th>client</th><th></th><th>server</th><th>evidence</th><th>why</th></tr></thead><tbody>",
        open(edges.len() <= 20),
        edges.len()
    );
    for e in edges.iter().take(EDGE_ROWS) {
        let _ = write!(
            out,
            "<tr class=\"edge\"><td>{}</td><td class=\"arrow\">→</td><td>{}</td><td><span class=\"badge ev-{}\">{}</span></td><td>{}</td></tr>",
            esc(e.client),
            esc(e.server),
            tier_key(e.tier),
            tier_name(e.tier),
            esc(e.reason)
        );
    }
    out.push_str("</tbody></table>");
    if edges.len() > EDGE_ROWS {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more edge(s): <code>mtls-guard report -o json</code> lists every finding.</p>",
            edges.len() - EDGE_ROWS
        );
    }
    out.push_str("</details>");
}

fn blockers(out: &mut String, r: &MeshReport) {
    out.push_str("<h2>What blocks what</h2>");
    let edges = edges(r);
    if edges.is_empty() {
        out.push_str("<p>Nothing: every workload can be locked down or already is.</p>");
        return;
    }
    edge_legend(out);
    graph(out, &edges);
    edge_table(out, &edges);
}

/// A workload's blockers one by one when few, else one line per cause with its clients.
fn blocked_by(w: &WorkloadReport) -> String {
    let mut cell = String::new();
    if w.blockers.len() <= BLOCKERS_LISTED {
        for b in &w.blockers {
            let _ = write!(
                cell,
                "<div><span class=\"badge ev-{}\">{}</span> {} <span class=\"muted\">{}{}</span></div>",
                tier_key(b.tier),
                tier_name(b.tier),
                esc(&b.client),
                esc(&b.text),
                if b.denies { "" } else { " (warning only)" }
            );
        }
    } else {
        // (cause, first client, distinct clients): a set, as a workload can have thousands.
        let mut by_cause: Vec<(String, &str, Set<&str>)> = Vec::new();
        for b in &w.blockers {
            let (text, _) = cause(&b.reason);
            let at = match by_cause.iter().position(|(c, _, _)| *c == text) {
                Some(at) => at,
                None => {
                    by_cause.push((text, &b.client, Set::default()));
                    by_cause.len() - 1
                }
            };
            by_cause[at].2.insert(&b.client);
        }
        for (text, first, clients) in by_cause {
            let _ = write!(
                cell,
                "<div>{}: {} client(s), first {}</div>",
                esc(&text),
                clients.len(),
                esc(first)
            );
        }
    }
    if w.more_clients > 0 {
        let _ = write!(
            cell,
            "<div>+{} more client(s) without a proxy</div>",
            w.more_clients
        );
    }
    if let Some(note) = &w.note {
        let _ = write!(cell, "<div class=\"muted\">{}</div>", esc(note));
    }
    cell
}

fn workload_row(out: &mut String, w: &WorkloadReport) {
    let _ = write!(
        out,
        "<tr data-workload=\"{}/{}\"><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        esc(&w.namespace),
        esc(&w.workload),
        esc(&w.workload),
        w.proxy,
        w.pods,
        esc(&ports_text(w)),
        badge(w.status),
        blocked_by(w)
    );
}

fn counts_text(n: &NamespaceReport) -> String {
    let mut text = format!(
        "{} blocked, {} ready, {} strict",
        n.blocked, n.ready, n.strict
    );
    if n.manual > 0 {
        let _ = write!(text, ", {} manual", n.manual);
    }
    text
}

/// One folded table per namespace, most blocked first as in the namespace table, until
/// [`WORKLOAD_ROWS`] rows are on the page; the remaining namespaces get their counts.
fn workloads(out: &mut String, r: &MeshReport) {
    out.push_str("<h2>Workloads</h2>");
    let unfold = r.workloads.len() <= OPEN_WORKLOADS;
    let groups: Map<&str, &[WorkloadReport]> = r
        .workloads
        .chunk_by(|a, b| a.namespace == b.namespace)
        .map(|g| (g[0].namespace.as_str(), g))
        .collect();
    let mut rows = 0;
    let mut summarised = Vec::new();
    for n in most_blocked_first(r) {
        let Some(&group) = groups.get(n.level.name.as_str()) else {
            continue;
        };
        let room = WORKLOAD_ROWS - rows;
        // Whole namespaces at a time, except a first one larger than the page.
        if !summarised.is_empty() || room == 0 || (group.len() > room && rows > 0) {
            summarised.push(n);
            continue;
        }
        let shown = &group[..group.len().min(room)];
        rows += shown.len();
        let _ = write!(
            out,
            "<details{}><summary>{}: {}</summary><table class=\"workloads\"><thead><tr><th>workload</th><th>proxy</th><th>pods</th><th>ports</th><th>status</th><th>blocked by</th></tr></thead><tbody>",
            open(unfold),
            esc(&n.level.name),
            counts_text(n)
        );
        for w in shown {
            workload_row(out, w);
        }
        out.push_str("</tbody></table>");
        if shown.len() < group.len() {
            let _ = write!(
                out,
                "<p class=\"muted\">{} more workload(s) in this namespace.</p>",
                group.len() - shown.len()
            );
        }
        out.push_str("</details>");
    }
    if summarised.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "<details><summary>{} more namespace(s), counts only</summary><p class=\"muted\">The page lists {rows} of {} workloads; <code>mtls-guard report</code> and <code>-o json</code> list every one.</p><ul>",
        summarised.len(),
        r.workloads.len()
    );
    for n in summarised {
        let _ = write!(out, "<li>{}: {}</li>", esc(&n.level.name), counts_text(n));
    }
    out.push_str("</ul></details>");
}

fn lockdowns(out: &mut String, r: &MeshReport) {
    out.push_str("<h2>Ready to lock down now</h2>");
    let ready = r.lockdowns();
    if ready.is_empty() {
        out.push_str("<p>Nothing can be locked down yet without cutting someone off.</p>");
    }
    for (i, (what, yaml)) in ready.iter().take(LOCKDOWNS_SHOWN).enumerate() {
        let _ = write!(
            out,
            "<details{}><summary>{}</summary><pre>{}</pre></details>",
            open(i < 3),
            esc(what),
            esc(yaml)
        );
    }
    if ready.len() > LOCKDOWNS_SHOWN {
        let _ = write!(
            out,
            "<p class=\"muted\">{} more: <code>mtls-guard report</code> prints the YAML of every one.</p>",
            ready.len() - LOCKDOWNS_SHOWN
        );
    }
}

pub fn html(r: &MeshReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    header(&mut out, r);
    causes(&mut out, r);
    namespaces(&mut out, r);
    blockers(&mut out, r);
    workloads(&mut out, r);
    lockdowns(&mut out, r);
    out.push_str("</main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Suspects, TrafficStatus};
    use super::*;
    use crate::model::Mode;

    fn workload(namespace: &str, n: usize) -> WorkloadReport {
        WorkloadReport {
            namespace: namespace.into(),
            workload: format!("w-{n:05}"),
            proxy: "sidecar",
            pods: 1,
            ports: Vec::new(),
            status: Status::Blocked,
            blockers: Vec::new(),
            more_clients: 0,
            suspects: Suspects::default(),
            note: None,
            lockdown: None,
        }
    }

    fn level(name: &str) -> LockdownReport {
        LockdownReport {
            name: name.into(),
            mode: Mode::Permissive,
            decided_by: None,
            status: Status::Blocked,
            blocking_clients: 1,
            note: None,
            lockdown: None,
        }
    }

    /// A report of blocked `workloads`, with one namespace entry per namespace as `assess`
    /// makes them.
    fn mesh(workloads: Vec<WorkloadReport>) -> MeshReport {
        let namespaces = workloads
            .chunk_by(|a, b| a.namespace == b.namespace)
            .map(|g| NamespaceReport {
                level: level(&g[0].namespace),
                strict: 0,
                ready: 0,
                blocked: g.len(),
                manual: 0,
            })
            .collect();
        MeshReport {
            causes: Vec::new(),
            edges: 0,
            mesh: level("istio-system"),
            namespaces,
            workloads,
            traffic: TrafficStatus {
                used: false,
                mode: None,
                window: None,
                stale: None,
            },
        }
    }

    #[test]
    fn rows_stop_at_the_cap_even_inside_one_namespace_and_the_rest_is_counted() {
        let mut all: Vec<WorkloadReport> =
            (0..=WORKLOAD_ROWS).map(|n| workload("big", n)).collect();
        all.extend((0..5).map(|n| workload("small", n)));
        let page = html(&mesh(all));
        assert_eq!(page.matches("<tr data-workload=").count(), WORKLOAD_ROWS);
        assert!(
            page.contains("1 more workload(s) in this namespace."),
            "the big one is cut"
        );
        assert!(
            page.contains("<li>small: 5 blocked, 0 ready, 0 strict</li>"),
            "the next is counted"
        );
        assert!(page.contains(&format!(
            "lists {WORKLOAD_ROWS} of {} workloads",
            WORKLOAD_ROWS + 6
        )));
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }

    #[test]
    fn the_graph_draws_the_most_frequent_names_sorted() {
        let names = ["b", "a", "c", "b", "c", "c"].into_iter();
        assert_eq!(top(names, 2), ["b", "c"], "a occurs once");
    }

    #[test]
    fn lines_into_one_node_spread_over_its_box() {
        assert_eq!(spread(100, 0, 1), 100.0);
        let ends: Vec<f64> = (0..3).map(|k| spread(100, k, 3)).collect();
        assert_eq!(ends, [91.0, 100.0, 109.0]);
    }
}
