//! `check` results for people (text) and for pipelines (JSON).

use std::fmt::Write;

use serde_json::{json, Value};

use super::{Checked, Fix, Ruling};
use crate::explain;

fn indent(text: &str, by: &str) -> String {
    text.lines()
        .map(|l| format!("{by}{l}\n"))
        .collect::<String>()
}

/// `peerauthentication NAME -n NS`: how kubectl names the object on its command line.
fn kubectl_target(object: &str) -> String {
    let (kind, rest) = object.split_once(' ').unwrap_or((object, ""));
    let kind = kind.to_lowercase();
    match rest.split_once('/') {
        Some((ns, name)) => format!("{kind} {name} -n {ns}"),
        None => format!("{kind} {rest}"),
    }
}

fn fix_text(c: &Checked, fix: &Fix) -> String {
    match fix {
        Fix::Patch { ops, ports } => {
            let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
            format!(
                "Smallest safe change (verified: the patched object passes this check): keep \
                 container port(s) {} PERMISSIVE with portLevelMtls.\n  kubectl patch {} \
                 --type=json -p '{ops}'\n  or, before applying the manifest: kubectl patch --local \
                 -f {} --type=json -p '{ops}' -o yaml\n",
                ports.join(", "),
                kubectl_target(&c.object),
                c.source,
            )
        }
        Fix::Advice(why) => format!("No patch proposed: {why}.\n"),
    }
}

/// One block per object, then a summary line.
pub fn text(results: &[Checked]) -> String {
    let mut out = String::new();
    for c in results {
        let op = c
            .verb
            .map(|o| format!("{o:?}").to_uppercase())
            .unwrap_or_default();
        match &c.ruling {
            Ruling::NotReviewed(kind) => {
                let _ = writeln!(
                    out,
                    "SKIP  {} ({}): mtls-guard does not review {kind}",
                    c.object, c.source
                );
            }
            Ruling::Allowed => {
                let _ = writeln!(out, "OK    {} ({op}, {})", c.object, c.source);
            }
            Ruling::AllowedAnyway {
                verdict,
                break_glass,
            } => {
                let why = match break_glass {
                    // `check` sends no SubjectAccessReview, even with --cluster.
                    Some(reason) => {
                        format!("break-glass: {reason} (who may use it is not checked by `check`)")
                    }
                    None => format!(
                        "audit: would deny, {} client(s) cut off",
                        verdict.client_count()
                    ),
                };
                let _ = writeln!(out, "OK    {} ({op}, {}) ({why})", c.object, c.source);
                for w in explain::warnings(verdict) {
                    let _ = writeln!(out, "      {w}");
                }
            }
            Ruling::Denied { .. } => {
                let _ = writeln!(out, "DENY  {} ({op}, {})", c.object, c.source);
            }
        }
        if c.assumed_from_manifest {
            out.push_str("      (not in the inventory: judged as the manifest describes it)\n");
        }
        if let Ruling::Denied { message, fix, .. } = &c.ruling {
            out.push_str(&indent(message, "      "));
            out.push_str(&indent(&fix_text(c, fix), "      "));
        }
    }
    let denied = results.iter().filter(|c| c.denied()).count();
    let _ = writeln!(
        out,
        "{denied} of {} object(s) would be denied.",
        results.len()
    );
    out
}

/// The findings exactly as the `would-deny` audit annotation lists them.
fn clients(verdict: &crate::engine::Verdict) -> Value {
    serde_json::from_str(&explain::would_deny_json(verdict)).unwrap_or(Value::Null)
}

/// `{"denied": N, "results": [...]}`, with each finding's clients in the shape of the
/// `would-deny` audit annotation, and a denial's verified patch, if any.
pub fn json(results: &[Checked]) -> Value {
    let items: Vec<Value> = results
        .iter()
        .map(|c| {
            let mut item = json!({
                "source": c.source,
                "object": c.object,
                "operation": c.verb,
                "assumedFromManifest": c.assumed_from_manifest,
            });
            match &c.ruling {
                Ruling::NotReviewed(_) => item["verdict"] = "not-reviewed".into(),
                Ruling::Allowed => item["verdict"] = "allowed".into(),
                Ruling::AllowedAnyway {
                    verdict,
                    break_glass,
                } => {
                    item["verdict"] = match break_glass {
                        Some(_) => "break-glass".into(),
                        None => "would-deny".into(),
                    };
                    item["breakGlass"] = json!(break_glass);
                    if break_glass.is_some() {
                        item["breakGlassPermission"] = "not checked by check".into();
                    }
                    item["clients"] = clients(verdict);
                    item["warnings"] = json!(explain::warnings(verdict));
                }
                Ruling::Denied {
                    verdict,
                    message,
                    fix,
                } => {
                    item["verdict"] = "denied".into();
                    item["message"] = message.as_str().into();
                    item["clients"] = clients(verdict);
                    item["warnings"] = json!(explain::warnings(verdict));
                    match fix {
                        Fix::Patch { ops, ports } => {
                            item["patch"] = ops.clone();
                            item["permissivePorts"] = json!(ports);
                        }
                        Fix::Advice(why) => item["advice"] = why.as_str().into(),
                    }
                }
            }
            item
        })
        .collect();
    json!({
        "denied": results.iter().filter(|c| c.denied()).count(),
        "results": items,
    })
}
