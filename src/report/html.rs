//! The readiness report as one self-contained HTML page: inline CSS and SVG, no scripts, no
//! external assets, so it can be mailed, archived or served by the webhook as is.
//!
//! Every name comes from the cluster and is escaped.

use std::fmt::Write;

use super::table::{evidence_text, ports_text, status_text, traffic_text};
use super::{MeshReport, NamespaceReport, Status, Tier, WorkloadReport};

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
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:240px;flex:0 1 300px}
.card h3{margin:0 0 6px;font-size:15px}
.bar{display:flex;height:10px;border-radius:5px;overflow:hidden;background:#eaeef2;margin:8px 0}
.bar i{display:block;height:100%}
.muted{color:var(--muted)}
table{border-collapse:collapse;background:#fff;border:1px solid var(--line);width:100%}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#f0f3f6;font-weight:600}
td.arrow{color:var(--muted);text-align:center}
td.nowrap{white-space:nowrap}
svg text.head{font-weight:600;fill:#57606a}
.legend span{margin-right:16px}
.legend i{display:inline-block;width:22px;height:4px;vertical-align:middle;margin-right:6px;border-radius:2px}
svg{background:#fff;border:1px solid var(--line);border-radius:8px;margin-bottom:12px;max-width:100%}
svg text{font:13px system-ui,"DejaVu Sans",sans-serif;fill:#1f2328}
pre{background:#0d1117;color:#e6edf3;padding:12px;border-radius:6px;overflow:auto}
details{margin-bottom:8px}
summary{cursor:pointer;font-weight:600}
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

fn color(e: Tier) -> &'static str {
    match e {
        Tier::Inventory => "var(--inventory)",
        Tier::ClientConfig => "var(--client-config)",
        Tier::Traffic => "var(--traffic)",
    }
}

fn class(e: Tier) -> &'static str {
    match e {
        Tier::Inventory => "ev-inventory",
        Tier::ClientConfig => "ev-client-config",
        Tier::Traffic => "ev-traffic",
    }
}

fn badge(s: Status) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", status_text(s))
}

/// (client, server, evidence, reason), each once, from every workload still to migrate.
fn edges(r: &MeshReport) -> Vec<(&str, &str, Tier, &str)> {
    let mut out: Vec<(&str, &str, Tier, &str)> = Vec::new();
    for w in &r.workloads {
        for b in &w.blockers {
            for s in &b.servers {
                if !out
                    .iter()
                    .any(|e| e.0 == b.client && e.1 == s.as_str() && e.2 == b.tier)
                {
                    out.push((&b.client, s, b.tier, &b.text));
                }
            }
        }
    }
    out
}

fn namespace_card(out: &mut String, n: &NamespaceReport) {
    let total = (n.strict + n.ready + n.blocked + n.manual).max(1);
    let _ = write!(
        out,
        "<div class=\"card\" data-namespace=\"{}\"><h3>{}</h3><div class=\"muted\">namespace mode {}{}</div><div class=\"bar\">",
        esc(&n.level.name),
        esc(&n.level.name),
        n.level.mode,
        n.level
            .decided_by
            .as_ref()
            .map(|b| format!(" by {}", esc(b)))
            .unwrap_or_default()
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
                "<i class=\"{}\" style=\"width:{}%\" title=\"{count} {}\"></i>",
                status_text(s),
                count * 100 / total,
                status_text(s)
            );
        }
    }
    let _ = write!(
        out,
        "</div><div>{} strict · {} ready · {} blocked{}</div><div>namespace-wide STRICT: {}{}</div></div>",
        n.strict,
        n.ready,
        n.blocked,
        if n.manual > 0 {
            format!(" · {} manual", n.manual)
        } else {
            String::new()
        },
        badge(n.level.status),
        if n.level.status == Status::Blocked {
            format!(" <span class=\"muted\">{} client(s)</span>", n.level.blocking_clients)
        } else {
            String::new()
        }
    );
}

/// Clients on the left, servers on the right, one line per edge in its evidence's color.
fn graph(out: &mut String, edges: &[(&str, &str, Tier, &str)]) {
    let mut clients: Vec<&str> = Vec::new();
    let mut servers: Vec<&str> = Vec::new();
    for (c, s, _, _) in edges {
        if !clients.contains(c) {
            clients.push(c);
        }
        if !servers.contains(s) {
            servers.push(s);
        }
    }
    let (width, box_w, row) = (900, 280, 36);
    let height = 44 + row * clients.len().max(servers.len());
    let y = |i: usize| 40 + row * i + 13;
    let _ = write!(
        out,
        "<svg role=\"img\" aria-label=\"plaintext clients and the servers they block\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">"
    );
    for (c, s, e, reason) in edges {
        let (Some(ci), Some(si)) = (
            clients.iter().position(|x| x == c),
            servers.iter().position(|x| x == s),
        ) else {
            continue;
        };
        let (x1, x2) = (20 + box_w, width - 20 - box_w);
        let mid = (x1 + x2) / 2;
        let _ = write!(
            out,
            "<path class=\"edge\" data-client=\"{}\" data-server=\"{}\" d=\"M{x1},{} C{mid},{} {mid},{} {x2},{}\" stroke=\"{}\" stroke-width=\"3\" fill=\"none\" opacity=\"0.85\"><title>{} → {}: {}</title></path>",
            esc(c),
            esc(s),
            y(ci),
            y(ci),
            y(si),
            y(si),
            color(*e),
            esc(c),
            esc(s),
            esc(reason)
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

fn workload_row(out: &mut String, w: &WorkloadReport) {
    let mut blockers = String::new();
    for b in &w.blockers {
        let _ = write!(
            blockers,
            "<div><span class=\"badge {}\">{}</span> {} <span class=\"muted\">{}{}</span></div>",
            class(b.tier),
            evidence_text(b.tier),
            esc(&b.client),
            esc(&b.text),
            if b.denies { "" } else { " (warning only)" }
        );
    }
    if w.more_clients > 0 {
        let _ = write!(
            blockers,
            "<div>+{} more client(s) without a proxy</div>",
            w.more_clients
        );
    }
    if let Some(note) = &w.note {
        let _ = write!(blockers, "<div class=\"muted\">{}</div>", esc(note));
    }
    let _ = write!(
        out,
        "<tr data-workload=\"{}/{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"nowrap\">{}</td><td>{}</td><td>{blockers}</td></tr>",
        esc(&w.namespace),
        esc(&w.workload),
        esc(&w.namespace),
        esc(&w.workload),
        w.proxy,
        w.pods,
        esc(&ports_text(w)),
        badge(w.status)
    );
}

pub fn html(r: &MeshReport) -> String {
    let count = |s: Status| r.workloads.iter().filter(|w| w.status == s).count();
    let mut out = String::from("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>mtls-guard: mTLS migration readiness</title><style>");
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
        r.mesh
            .decided_by
            .as_ref()
            .map(|b| format!(" by {}", esc(b)))
            .unwrap_or_default(),
        badge(r.mesh.status),
        esc(&traffic_text(r))
    );
    out.push_str("<h2>Namespaces</h2><div class=\"cards\">");
    for n in &r.namespaces {
        namespace_card(&mut out, n);
    }
    out.push_str("</div><h2>What blocks what</h2>");
    let edges = edges(r);
    if edges.is_empty() {
        out.push_str("<p>No client still sends plaintext to a workload that is not STRICT.</p>");
    } else {
        out.push_str("<p class=\"legend\">");
        for e in [Tier::Inventory, Tier::ClientConfig, Tier::Traffic] {
            let _ = write!(
                out,
                "<span><i style=\"background:{}\"></i>{}</span>",
                color(e),
                evidence_text(e)
            );
        }
        out.push_str("</p>");
        graph(&mut out, &edges);
        out.push_str("<table class=\"edges\"><thead><tr><th>client</th><th></th><th>server</th><th>evidence</th><th>why</th></tr></thead><tbody>");
        for (c, s, e, reason) in &edges {
            let _ = write!(
                out,
                "<tr class=\"edge\"><td>{}</td><td class=\"arrow\">→</td><td>{}</td><td><span class=\"badge {}\">{}</span></td><td>{}</td></tr>",
                esc(c),
                esc(s),
                class(*e),
                evidence_text(*e),
                esc(reason)
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h2>Workloads</h2><table class=\"workloads\"><thead><tr><th>namespace</th><th>workload</th><th>proxy</th><th>pods</th><th>ports</th><th>status</th><th>blocked by</th></tr></thead><tbody>");
    for w in &r.workloads {
        workload_row(&mut out, w);
    }
    out.push_str("</tbody></table><h2>Ready to lock down now</h2>");
    let ready = r.lockdowns();
    if ready.is_empty() {
        out.push_str("<p>Nothing can be locked down yet without cutting someone off.</p>");
    }
    for (what, yaml) in ready {
        let _ = write!(
            out,
            "<details open><summary>{}</summary><pre>{}</pre></details>",
            esc(&what),
            esc(yaml)
        );
    }
    out.push_str("</main></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::esc;

    #[test]
    fn names_are_escaped() {
        assert_eq!(
            esc("<img src=x onerror='a'>&\""),
            "&lt;img src=x onerror=&#39;a&#39;&gt;&amp;&quot;"
        );
    }
}
