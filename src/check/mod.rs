//! `mtls-guard check`: would the webhook deny applying (or deleting) these manifests?
//!
//! Each reviewed object becomes the [`Change`] the API server would send: an UPDATE when the
//! inventory holds an object of the same kind, namespace and name, a CREATE otherwise, a
//! DELETE with `--delete`. Objects are checked in order, and each one the webhook would let
//! through is applied to the index before the next, as `kubectl apply -f` would.

mod manifest;
mod patch;
mod render;

pub use manifest::{read_manifests, Manifest};
pub use patch::Fix;
pub use render::{json, text};

use serde_json::Value;

use crate::admission::{self, BREAK_GLASS_ANNOTATION};
use crate::decision::{settle, Decision, GuardMode};
use crate::engine::{self, Change, Evidence, Verdict};
use crate::explain;
use crate::inventory::Index;
use crate::model::{MeshConfig, ModelError, Origin, Rule, RuleKind};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("cannot read {path}: {cause}")]
    Io {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error("{source_name} is not valid YAML or JSON: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: {object}: {cause}")]
    Object {
        source_name: String,
        object: String,
        cause: ModelError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Verb {
    Create,
    Update,
    Delete,
}

/// What the webhook would answer for one object.
#[derive(Debug)]
pub enum Ruling {
    /// A kind the webhook does not review (`apiVersion kind`).
    NotReviewed(String),
    Allowed,
    /// Allowed although it cuts clients off: the namespace is audited, or the object carries
    /// a break-glass reason.
    AllowedAnyway {
        verdict: Verdict<'static>,
        /// The break-glass reason, when that is why.
        break_glass: Option<String>,
    },
    Denied {
        verdict: Verdict<'static>,
        /// The message `kubectl apply` would print.
        message: String,
        fix: Fix,
    },
}

#[derive(Debug)]
pub struct Checked {
    pub source: String,
    /// `Kind namespace/name`.
    pub object: String,
    pub verb: Option<Verb>,
    /// A DELETE of an object the inventory does not hold, judged as the manifest describes it.
    pub assumed_from_manifest: bool,
    pub ruling: Ruling,
}

impl Checked {
    pub fn denied(&self) -> bool {
        matches!(self.ruling, Ruling::Denied { .. })
    }
}

/// The inventory's object with the same identity as `origin`, as a rule.
fn existing(index: &Index, origin: &Origin) -> Option<Rule> {
    let ns = origin.namespace.as_str();
    match origin.kind {
        RuleKind::PeerAuthentication => index
            .peer_authns(ns)
            .iter()
            .find(|r| r.origin.same_object(origin))
            .map(|r| Rule::PeerAuthentication(r.clone())),
        RuleKind::Policy | RuleKind::MeshPolicy => index
            .legacy_policies(ns)
            .iter()
            .find(|r| r.origin.same_object(origin))
            .map(|r| Rule::Legacy(r.clone())),
        RuleKind::DestinationRule => index
            .dest_rules(ns)
            .iter()
            .find(|r| r.origin.same_object(origin))
            .map(|r| Rule::DestinationRule(r.clone())),
    }
}

/// An update keeps the stored object's creation time, which decides precedence at its level;
/// a manifest rarely carries one.
pub(crate) fn set_created(rule: &mut Rule, created: i64) {
    match rule {
        Rule::PeerAuthentication(r) => r.origin.created = created,
        Rule::Legacy(r) => r.origin.created = created,
        Rule::DestinationRule(r) => r.origin.created = created,
    }
}

/// The reviewed kind of a manifest object, from its `apiVersion` group and `kind`.
fn rule_kind(value: &Value) -> (Option<RuleKind>, String) {
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    (
        RuleKind::from_group_kind(group, kind),
        format!("{api_version} {kind}"),
    )
}

/// The mesh config ConfigMap (`istio` in the Istio namespace), judged as the webhook's
/// ConfigMap rule would; `None` for any other object.
fn check_mesh_config(
    index: &mut Index,
    m: &Manifest,
    delete: bool,
    mode: GuardMode,
) -> Result<Option<Checked>, CheckError> {
    let v = &m.value;
    let istio_namespace = index.filters().istio_namespace.clone();
    let is_mesh = v.get("apiVersion").and_then(Value::as_str) == Some("v1")
        && v.get("kind").and_then(Value::as_str) == Some("ConfigMap")
        && v.pointer("/metadata/name").and_then(Value::as_str)
            == Some(crate::model::mesh_config::CONFIGMAP_NAME)
        && v.pointer("/metadata/namespace").and_then(Value::as_str) == Some(&istio_namespace);
    if !is_mesh {
        return Ok(None);
    }
    let object = format!(
        "ConfigMap {istio_namespace}/{}",
        crate::model::mesh_config::CONFIGMAP_NAME
    );
    let new = if delete {
        MeshConfig::default()
    } else {
        MeshConfig::from_configmap_json(v).map_err(|cause| CheckError::Object {
            source_name: m.source.clone(),
            object: object.clone(),
            cause,
        })?
    };
    let old = index.mesh().clone();
    let verdict =
        engine::evaluate_mesh_change(index, &old, &new, &Evidence::inventory_only()).into_owned();
    let mode = admission::mode_for(index, mode, Some(&istio_namespace));
    let ruling = match let_through(verdict, mode, break_glass(v)) {
        Ok(ruling) => {
            index.set_mesh(new);
            ruling
        }
        Err(verdict) => Ruling::Denied {
            message: explain::deny_message(&object, &verdict, None),
            verdict,
            fix: Fix::Advice(
                "keep the mesh config until the clients no longer depend on it".into(),
            ),
        },
    };
    Ok(Some(Checked {
        source: m.source.clone(),
        object,
        verb: Some(if delete { Verb::Delete } else { Verb::Update }),
        assumed_from_manifest: false,
        ruling,
    }))
}

/// What the webhook answers when it lets the object through, or the verdict back when it
/// denies it (the caller words the denial).
fn let_through(
    verdict: Verdict<'static>,
    mode: GuardMode,
    break_glass: Option<String>,
) -> Result<Ruling, Verdict<'static>> {
    match settle(&verdict, mode, break_glass.is_some()) {
        Decision::Denied => Err(verdict),
        Decision::Allowed => Ok(Ruling::Allowed),
        _ => Ok(Ruling::AllowedAnyway {
            verdict,
            break_glass,
        }),
    }
}

/// The manifest's break-glass reason. The webhook honours it only when the request sets it;
/// the inventory keeps no annotations, so here a reason in the manifest counts as set.
fn break_glass(value: &Value) -> Option<String> {
    let reason = value
        .pointer("/metadata/annotations")?
        .get(BREAK_GLASS_ANNOTATION)?
        .as_str()?;
    (!reason.trim().is_empty()).then(|| reason.to_string())
}

/// Checks the manifests in order against `index`, applying each change the webhook would let
/// through (in `mode`, or the namespace's label) to it.
pub fn check(
    index: &mut Index,
    manifests: &[Manifest],
    delete: bool,
    mode: GuardMode,
) -> Result<Vec<Checked>, CheckError> {
    let mut results = Vec::new();
    for m in manifests {
        if let Some(checked) = check_mesh_config(index, m, delete, mode)? {
            results.push(checked);
            continue;
        }
        let (kind, kind_name) = rule_kind(&m.value);
        let Some(kind) = kind else {
            results.push(Checked {
                source: m.source.clone(),
                object: format!("{kind_name} {}", m.name()),
                verb: None,
                assumed_from_manifest: false,
                ruling: Ruling::NotReviewed(kind_name),
            });
            continue;
        };
        let value = m.with_default_namespace(kind);
        let mut rule = Rule::from_json(kind, &value).map_err(|cause| CheckError::Object {
            source_name: m.source.clone(),
            object: format!("{kind} {}", m.name()),
            cause,
        })?;
        let old = existing(index, rule.origin());
        if let Some(o) = &old {
            set_created(&mut rule, o.origin().created);
        }
        let object = rule.origin().to_string();
        let assumed_from_manifest = delete && old.is_none();
        let (verb, change) = match (&old, delete) {
            (_, true) => (
                Verb::Delete,
                Change {
                    old: Some(old.as_ref().unwrap_or(&rule)),
                    new: None,
                },
            ),
            (Some(o), false) => (
                Verb::Update,
                Change {
                    old: Some(o),
                    new: Some(&rule),
                },
            ),
            (None, false) => (
                Verb::Create,
                Change {
                    old: None,
                    new: Some(&rule),
                },
            ),
        };
        let verdict = engine::evaluate(index, &change).into_owned();
        let ns = &rule.origin().namespace;
        let mode = admission::mode_for(index, mode, (!ns.is_empty()).then_some(ns.as_str()));
        let ruling = match let_through(verdict, mode, break_glass(&value)) {
            Ok(ruling) => {
                if delete {
                    index.remove_rule(rule.origin());
                } else {
                    index.upsert_rule(rule);
                }
                ruling
            }
            Err(verdict) => {
                let fix = match verb {
                    Verb::Delete => Fix::Advice(
                        "deleting it is what locks the servers down: keep it until the clients send mTLS"
                            .into(),
                    ),
                    _ => patch::propose(index, change.old, &value, &rule, &verdict),
                };
                Ruling::Denied {
                    message: explain::deny_message(&object, &verdict, None),
                    verdict,
                    fix,
                }
            }
        };
        results.push(Checked {
            source: m.source.clone(),
            object,
            verb: Some(verb),
            assumed_from_manifest,
            ruling,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::inventory::{file, Filters};

    fn pa(name: &str, selector: Option<&str>, mode: &str) -> Manifest {
        let mut spec = json!({"mtls": {"mode": mode}});
        if let Some(app) = selector {
            spec["selector"] = json!({"matchLabels": {"app": app}});
        }
        Manifest {
            source: "m.yaml".into(),
            value: json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
                          "metadata": {"name": name, "namespace": "foo"}, "spec": spec}),
        }
    }

    fn servers(c: &Checked) -> Vec<String> {
        match &c.ruling {
            Ruling::Denied { verdict, .. } => verdict
                .servers
                .iter()
                .map(|s| format!("{}/{}", s.namespace, s.workload))
                .collect(),
            _ => Vec::new(),
        }
    }

    #[test]
    fn each_allowed_object_is_applied_before_the_next_is_checked() {
        let lockdown = pa("default", None, "STRICT");
        let mut index = file::demo(Filters::default()).unwrap();
        let alone = check(
            &mut index,
            std::slice::from_ref(&lockdown),
            false,
            GuardMode::Enforce,
        )
        .unwrap();
        assert!(servers(&alone[0]).contains(&"foo/httpbin".to_string()));

        let mut index = file::demo(Filters::default()).unwrap();
        let exception = pa("httpbin-permissive", Some("httpbin"), "PERMISSIVE");
        let both = check(
            &mut index,
            &[exception, lockdown],
            false,
            GuardMode::Enforce,
        )
        .unwrap();
        assert!(matches!(both[0].ruling, Ruling::Allowed));
        assert_eq!(both[0].verb, Some(Verb::Create));
        assert!(both[1].denied());
        assert!(!servers(&both[1]).contains(&"foo/httpbin".to_string()));
    }

    #[test]
    fn an_object_the_inventory_holds_is_an_update_that_keeps_its_age() {
        let mut index = file::demo(Filters::default()).unwrap();
        let mut old = Rule::from_json(
            RuleKind::PeerAuthentication,
            &pa("httpbin", Some("httpbin"), "PERMISSIVE").value,
        )
        .unwrap();
        set_created(&mut old, 1_700_000_000);
        index.upsert_rule(old);
        let out = check(
            &mut index,
            &[pa("httpbin", Some("httpbin"), "STRICT")],
            false,
            GuardMode::Enforce,
        )
        .unwrap();
        assert_eq!(out[0].verb, Some(Verb::Update));
        assert!(out[0].denied());
        let Ruling::Denied { fix, .. } = &out[0].ruling else {
            unreachable!()
        };
        assert!(
            matches!(fix, Fix::Patch { ports, .. } if ports == &[80]),
            "{fix:?}"
        );
    }
}
