//! The smallest safe alternative to a denied PeerAuthentication lock-down: keep PERMISSIVE on
//! exactly the container ports the cut-off clients use, and nothing else.
//!
//! A proposal is only shown after the patched object has been checked like the original and
//! found to break nobody.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::set_created;
use crate::engine::{self, Change, Verdict};
use crate::inventory::Index;
use crate::model::{Rule, RuleKind};

#[derive(Debug, Clone, PartialEq)]
pub enum Fix {
    /// A JSON Patch (RFC 6902) for the manifest, verified to pass; `kubectl patch --type=json`
    /// accepts it.
    Patch { ops: Value, ports: Vec<u16> },
    /// No patch: why not, and what to do instead.
    Advice(String),
}

/// The container ports of the servers the broken clients reach; `None` when one of them
/// declares no port, so no port-level exception can cover it.
fn exempt_ports(verdict: &Verdict) -> Option<BTreeSet<u16>> {
    let mut ports = BTreeSet::new();
    for b in &verdict.breaks {
        for server in verdict.targets(b) {
            for p in &server.ports {
                ports.insert(p.port?);
            }
        }
    }
    Some(ports)
}

/// JSON Patch operations adding `portLevelMtls: {PORT: {mode: PERMISSIVE}}`, keeping any
/// port-level settings the manifest already has.
fn operations(manifest: &Value, ports: &BTreeSet<u16>) -> Value {
    let permissive = || json!({"mode": "PERMISSIVE"});
    if manifest
        .pointer("/spec/portLevelMtls")
        .is_some_and(Value::is_object)
    {
        let ops: Vec<Value> = ports
            .iter()
            .map(|p| json!({"op": "add", "path": format!("/spec/portLevelMtls/{p}"), "value": permissive()}))
            .collect();
        return Value::Array(ops);
    }
    let map: Map<String, Value> = ports
        .iter()
        .map(|p| (p.to_string(), permissive()))
        .collect();
    json!([{"op": "add", "path": "/spec/portLevelMtls", "value": map}])
}

/// A verified patch for a denied PeerAuthentication CREATE or UPDATE, or advice.
pub(super) fn propose(
    index: &Index,
    old: Option<&Rule>,
    manifest: &Value,
    rule: &Rule,
    verdict: &Verdict,
) -> Fix {
    let Rule::PeerAuthentication(pa) = rule else {
        return Fix::Advice(format!(
            "no patch is proposed for a {}: {}",
            rule.origin().kind,
            match rule.origin().kind {
                RuleKind::DestinationRule =>
                    "set tls.mode ISTIO_MUTUAL (or remove the TLS override) for the hosts above",
                _ => "migrate the clients first, or use a PeerAuthentication with portLevelMtls",
            }
        ));
    };
    if pa.selector.is_none() {
        return Fix::Advice(
            "a namespace- or mesh-wide policy cannot keep single ports PERMISSIVE (Istio applies \
             portLevelMtls only with a selector): keep this scope PERMISSIVE until the clients \
             above send mTLS, and lock down ready workloads one by one with selector policies \
             (`mtls-guard report` lists them with the YAML to apply)"
                .into(),
        );
    }
    let Some(ports) = exempt_ports(verdict).filter(|p| !p.is_empty()) else {
        return Fix::Advice(
            "a server the clients reach declares no port, so portLevelMtls cannot exempt it; \
             no safe patch found"
                .into(),
        );
    };
    let ops = operations(manifest, &ports);
    let verified = serde_json::from_value::<json_patch::Patch>(ops.clone())
        .ok()
        .and_then(|patch| {
            let mut patched = manifest.clone();
            json_patch::patch(&mut patched, &patch).ok()?;
            let mut new = Rule::from_json(RuleKind::PeerAuthentication, &patched).ok()?;
            set_created(&mut new, pa.origin.created);
            let change = Change {
                old,
                new: Some(&new),
            };
            let verdict = engine::evaluate(index, &change);
            Some((verdict.breaks_clients(), verdict.client_count()))
        });
    match verified {
        Some((false, _)) => Fix::Patch {
            ops,
            ports: ports.into_iter().collect(),
        },
        Some((true, clients)) => Fix::Advice(format!(
            "keeping ports {} PERMISSIVE still cuts off {clients} client(s); no safe patch found",
            join(&ports),
        )),
        None => {
            Fix::Advice("the port-level patch could not be applied; no safe patch found".into())
        }
    }
}

fn join(ports: &BTreeSet<u16>) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_port_levels_are_kept() {
        let ports = BTreeSet::from([80, 9000]);
        let fresh = operations(&json!({"spec": {"mtls": {"mode": "STRICT"}}}), &ports);
        assert_eq!(
            fresh,
            json!([{"op": "add", "path": "/spec/portLevelMtls",
                    "value": {"80": {"mode": "PERMISSIVE"}, "9000": {"mode": "PERMISSIVE"}}}])
        );
        let kept = operations(
            &json!({"spec": {"portLevelMtls": {"8443": {"mode": "STRICT"}}}}),
            &ports,
        );
        assert_eq!(kept.as_array().map(Vec::len), Some(2));
        assert_eq!(kept[1]["path"], "/spec/portLevelMtls/9000");
    }
}
