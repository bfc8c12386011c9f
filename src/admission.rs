//! AdmissionReview in, AdmissionReview out: reads the change, asks the engine, shapes the
//! answer for enforce, audit and break-glass.

use std::collections::HashMap;
use std::fmt::Write;
use std::time::Duration;

use kube::core::admission::{AdmissionResponse, Operation};
use kube::core::Status;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

mod object;

use object::Envelope;
pub use object::{Object, Request};

pub use crate::decision::{settle, Decision, GuardMode};
use crate::engine::{self, Budget, Change, Evidence, Verdict};
use crate::explain;
use crate::inventory::Index;
use crate::model::{Rule, RuleKind};

pub const BREAK_GLASS_ANNOTATION: &str = "mtls-guard.io/break-glass";
/// The API group of the permissions the guard asks the API server about.
pub const PERMISSION_GROUP: &str = "mtls-guard.io";

/// What a request needs the requester to be allowed, asked as a SubjectAccessReview on a
/// virtual resource of [`PERMISSION_GROUP`], which cluster admins grant with ordinary Roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub verb: &'static str,
    pub resource: &'static str,
    pub namespace: Option<String>,
    pub name: String,
}

/// What the API server said of the [`Permission`] a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// No API server to ask (offline `review`, a `serve` on inventory files).
    NotChecked,
    Allowed,
    /// Refused, or the question failed; the text says which.
    Refused(String),
}

impl Authorization {
    /// Words for a warning when the step was skipped.
    fn note(&self) -> &'static str {
        match self {
            Authorization::NotChecked => " (who may do this was not checked: no API server)",
            _ => "",
        }
    }
}

/// The permission this request needs, if any: break-glass that the request sets needs `use` on
/// `breakglass` in the object's namespace; a change of a namespace's `mtls-guard.io/mode` label
/// needs `set-mode` on `namespaces` in that namespace.
pub fn permission_needed(req: &Request) -> Option<Permission> {
    if is_namespace(req) {
        return (mode_label(req.old_object.as_deref()) != mode_label(req.object.as_deref())).then(
            || Permission {
                verb: "set-mode",
                resource: "namespaces",
                namespace: Some(req.name.clone()),
                name: req.name.clone(),
            },
        );
    }
    let mesh_config = is_configmap(req) && req.name == crate::model::mesh_config::CONFIGMAP_NAME;
    if !mesh_config {
        RuleKind::from_group_kind(&req.kind.group, &req.kind.kind)?;
    }
    break_glass(req).ok().flatten()?;
    Some(Permission {
        verb: "use",
        resource: "breakglass",
        namespace: req.namespace.clone(),
        name: req.name.clone(),
    })
}

/// A Namespace request: decided without the inventory.
pub fn is_namespace(req: &Request) -> bool {
    req.kind.group.is_empty() && req.kind.kind == "Namespace"
}

fn is_configmap(req: &Request) -> bool {
    req.kind.group.is_empty() && req.kind.kind == "ConfigMap"
}

fn mode_label(obj: Option<&Object>) -> Option<&str> {
    obj?.metadata
        .labels
        .as_ref()?
        .get(crate::model::namespace::MODE_LABEL)
        .map(String::as_str)
}
const API_VERSION: &str = "admission.k8s.io/v1";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdmissionError {
    #[error("body is not an AdmissionReview: {0}")]
    NotAReview(String),
    #[error("apiVersion {0:?} is not supported; send admission.k8s.io/v1")]
    ApiVersion(String),
    #[error("AdmissionReview has no request")]
    NoRequest,
    #[error("AdmissionReview request has an empty uid; the response must echo it")]
    EmptyUid,
}

/// Reads an `admission.k8s.io/v1` AdmissionReview request.
pub fn parse_review(body: &[u8]) -> Result<Request, AdmissionError> {
    let review: Envelope =
        serde_json::from_slice(body).map_err(|e| AdmissionError::NotAReview(e.to_string()))?;
    if review.api_version != API_VERSION || review.kind != "AdmissionReview" {
        return Err(AdmissionError::ApiVersion(format!(
            "{}/{}",
            review.api_version, review.kind
        )));
    }
    let req = review.request.ok_or(AdmissionError::NoRequest)?;
    // The API server matches the answer to its request by uid; an answer without one is useless.
    if req.uid.is_empty() {
        return Err(AdmissionError::EmptyUid);
    }
    Ok(req)
}

/// One decision, as logged once and counted.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub uid: String,
    pub user: String,
    pub operation: &'static str,
    pub kind: String,
    pub object: String,
    pub decision: Decision,
    pub mode: GuardMode,
    pub clients: usize,
    pub servers: usize,
    pub change: Option<String>,
}

pub struct Answer {
    pub response: AdmissionResponse,
    pub record: Record,
}

/// The AdmissionReview the API server reads back: only the response.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: &'a AdmissionResponse,
}

impl Answer {
    /// The answer, serialised as it is written (no intermediate JSON tree).
    pub fn reply(&self) -> Reply<'_> {
        Reply {
            api_version: API_VERSION,
            kind: "AdmissionReview",
            response: &self.response,
        }
    }

    /// The answer as the API server reads it. sonic-rs escapes a deny message several times
    /// faster than serde_json, which looks at one byte at a time. It reserves room for six
    /// bytes per byte of a string before escaping it, so the buffer is sized for that at once
    /// instead of growing (and being copied) on the way.
    pub fn reply_json(&self) -> Result<Vec<u8>, sonic_rs::Error> {
        let r = &self.response;
        let texts = r.result.message.len()
            + r.warnings.iter().flatten().map(String::len).sum::<usize>()
            + (r.audit_annotations.iter())
                .map(|(k, v)| k.len() + v.len())
                .sum::<usize>();
        let mut out = Vec::with_capacity(512 + 6 * texts);
        sonic_rs::to_writer(&mut out, &self.reply())?;
        Ok(out)
    }

    /// The answer as JSON, read back from the bytes a server writes.
    pub fn into_review_json(self) -> Value {
        self.reply_json()
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(Value::Null)
    }
}

/// An answer to `req` that allows it, to be turned into a denial or given warnings.
fn allowing(req: &Request) -> AdmissionResponse {
    // kube builds a response only from its own request type, which reads every field.
    let mut response = AdmissionResponse::invalid("");
    response.uid.clone_from(&req.uid);
    response.allowed = true;
    response.result = Status::default();
    response
}

fn operation_name(op: &Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The rule one side of a request holds, and its spec as sent (for the change summary).
fn read(kind: RuleKind, obj: Option<&Object>) -> Result<Option<(Rule, Option<&RawValue>)>, String> {
    let Some(obj) = obj else { return Ok(None) };
    let spec = obj.spec.as_deref();
    let rule = Rule::from_parts(kind, &obj.metadata, spec).map_err(|e| e.to_string())?;
    Ok(Some((rule, spec)))
}

/// A spec as a tree, for the change summary. The typed read skips fields it does not know
/// without recursion, so a spec it accepted can still be nested past serde_json's recursion
/// limit for a tree: then there is no summary, rather than one against an empty spec.
fn tree(spec: Option<&RawValue>) -> Result<Option<Value>, serde_json::Error> {
    spec.map(|s| serde_json::from_str(s.get())).transpose()
}

fn annotation(obj: Option<&Object>) -> Option<&str> {
    obj?.metadata
        .annotations
        .as_ref()?
        .get(BREAK_GLASS_ANNOTATION)
        .map(String::as_str)
}

/// Break-glass for this request: honoured when the annotation carries a reason and this request
/// sets it (CREATE, or an UPDATE that adds or changes it), so an annotation left on an object
/// does not wave later changes through. A DELETE reads it from the deleted object, the only
/// place it can be. `Err` says why an annotation present is not honoured.
fn break_glass(req: &Request) -> Result<Option<String>, &'static str> {
    let (now, before) = match req.operation {
        Operation::Delete => (annotation(req.old_object.as_deref()), None),
        _ => (
            annotation(req.object.as_deref()),
            annotation(req.old_object.as_deref()),
        ),
    };
    let Some(reason) = now else { return Ok(None) };
    if reason.trim().is_empty() {
        return Err("it needs a reason");
    }
    if before == Some(reason) {
        return Err("it was already on the object; set a new reason to use it for this change");
    }
    Ok(Some(reason.to_string()))
}

/// The mode for this request: the namespace label overrides the global flag.
pub fn mode_for(index: &Index, default: GuardMode, namespace: Option<&str>) -> GuardMode {
    let ns = namespace.unwrap_or(index.mesh().root_namespace.as_str());
    index
        .namespace(ns)
        .and_then(|n| n.guard_mode())
        .unwrap_or(default)
}

/// `namespace/name`, or `name` for a cluster-scoped object.
fn object_name(req: &Request) -> String {
    match &req.namespace {
        Some(ns) => slashed(ns, &req.name),
        None => req.name.clone(),
    }
}

/// `a/b`, built without `format!`: it is on every review's path.
fn slashed(a: &str, b: &str) -> String {
    let mut text = String::with_capacity(a.len() + 1 + b.len());
    text.push_str(a);
    text.push('/');
    text.push_str(b);
    text
}

fn record(req: &Request, mode: GuardMode) -> Record {
    Record {
        uid: req.uid.clone(),
        user: req.user_info.username.clone().unwrap_or_default(),
        operation: operation_name(&req.operation),
        kind: slashed(&req.kind.group, &req.kind.kind),
        object: object_name(req),
        decision: Decision::Allowed,
        mode,
        clients: 0,
        servers: 0,
        change: None,
    }
}

/// The answer while the inventory is not synced: deny (the default) or allow, with the reason.
pub fn unsynced(req: &Request, mode: GuardMode, allow: bool, why: &str) -> Answer {
    let mut record = record(req, mode);
    record.decision = Decision::Unsynced;
    let mut response = allowing(req);
    // Audit mode promises never to block, synced or not.
    if allow || mode == GuardMode::Audit {
        response.warnings = Some(vec![format!("mtls-guard: {why}; allowed without review")]);
    } else {
        response.allowed = false;
        response.result = Status::failure(
            &format!("mtls-guard cannot review this change yet: {why}; retry shortly"),
            "ServiceUnavailable",
        )
        .with_code(503);
    }
    Answer { response, record }
}

/// The answer when no decision came within the review deadline: deny in enforce (a lock-down
/// must not pass unchecked), allow with a warning in audit.
pub fn overdue(req: &Request, mode: GuardMode, deadline: Duration) -> Answer {
    let mut record = record(req, mode);
    record.decision = Decision::Timeout;
    let mut response = allowing(req);
    let why = format!("mtls-guard could not decide within its review deadline ({deadline:?})");
    if mode == GuardMode::Audit {
        response.warnings = Some(vec![format!("{why}; allowed unreviewed (audit mode)")]);
    } else {
        response.allowed = false;
        response.result =
            Status::failure(&format!("{why}; retry shortly"), "ServiceUnavailable").with_code(503);
    }
    Answer { response, record }
}

/// Decides one admission request against an inventory snapshot, by the inventory alone.
pub fn decide(index: &Index, default_mode: GuardMode, req: &Request) -> Answer {
    decide_with(
        index,
        &Evidence::inventory_only(),
        default_mode,
        req,
        &Authorization::NotChecked,
    )
}

/// A change of a namespace's `mtls-guard.io/mode` label: it turns enforcement off or on for
/// the namespace, so only those granted `set-mode` may make it.
fn namespace_review(req: &Request, mode: GuardMode, auth: &Authorization) -> Answer {
    let mut record = record(req, mode);
    let mut response = allowing(req);
    if permission_needed(req).is_some() {
        match auth {
            Authorization::Refused(why) if mode == GuardMode::Enforce => {
                record.decision = Decision::Denied;
                response.allowed = false;
                response.result = Status::failure(
                    &format!(
                        "mtls-guard: changing the label {} of namespace {} needs verb set-mode on namespaces.{PERMISSION_GROUP}: {why}",
                        crate::model::namespace::MODE_LABEL,
                        req.name
                    ),
                    "Forbidden",
                )
                .with_code(403);
            }
            Authorization::Refused(why) => {
                record.decision = Decision::WouldDeny;
                response.warnings = Some(vec![format!(
                    "mtls-guard would deny this change of {}: {why}",
                    crate::model::namespace::MODE_LABEL
                )]);
            }
            other => {
                response.warnings = Some(vec![format!(
                    "mtls-guard: {} of namespace {} changed{}",
                    crate::model::namespace::MODE_LABEL,
                    req.name,
                    other.note()
                )]);
            }
        }
    }
    Answer { response, record }
}

/// What a request asks the guard to judge.
enum Subject {
    /// A namespace whose `mtls-guard.io/mode` label may change: judged without the inventory.
    Namespace,
    Rule(RuleKind),
    /// The mesh config ConfigMap in the Istio namespace.
    MeshConfig,
    /// Any other ConfigMap of the Istio namespace: the webhook's ConfigMap rule cannot select
    /// one by name, and these are allowed without a word.
    OtherConfigMap,
    Other,
}

impl Subject {
    fn of(index: &Index, req: &Request) -> Subject {
        if is_namespace(req) {
            return Subject::Namespace;
        }
        if let Some(kind) = RuleKind::from_group_kind(&req.kind.group, &req.kind.kind) {
            return Subject::Rule(kind);
        }
        if !is_configmap(req) {
            return Subject::Other;
        }
        let mesh = req.name == crate::model::mesh_config::CONFIGMAP_NAME
            && req.namespace.as_deref() == Some(index.filters().istio_namespace.as_str());
        if mesh {
            Subject::MeshConfig
        } else {
            Subject::OtherConfigMap
        }
    }
}

/// The answer to a request of a kind the guard does not judge, or `None` when it judges it:
/// decided without the inventory, so an unsynced guard never holds up the Istio namespace's
/// other ConfigMaps.
pub fn unjudged(index: &Index, default_mode: GuardMode, req: &Request) -> Option<Answer> {
    let subject = Subject::of(index, req);
    matches!(subject, Subject::OtherConfigMap | Subject::Other)
        .then(|| not_reviewed(req, default_mode, &subject))
}

/// Allowed unjudged; with a warning unless it is one of the Istio namespace's ConfigMaps.
fn not_reviewed(req: &Request, mode: GuardMode, subject: &Subject) -> Answer {
    let mut record = record(req, mode);
    record.decision = Decision::NotReviewed;
    let mut response = allowing(req);
    if !matches!(subject, Subject::OtherConfigMap) {
        response.warnings = Some(vec![format!(
            "mtls-guard does not review {}; allowed",
            record.kind
        )]);
    }
    Answer { response, record }
}

/// A reviewed change as read from the request: its two sides, the object's name in messages,
/// and what changed.
struct Reviewed {
    sides: Sides,
    object: Option<String>,
    change: Option<explain::SpecChange>,
}

/// The object before and after the request, read into what the engine judges.
// One per review, on the stack: boxing the rules would allocate twice in every review.
#[allow(clippy::large_enum_variant)]
enum Sides {
    Rule {
        old: Option<Rule>,
        new: Option<Rule>,
    },
    MeshConfig {
        old: crate::model::MeshConfig,
        new: crate::model::MeshConfig,
    },
}

impl Sides {
    /// The verdict, borrowing names from `index` and these sides; with a spent budget it is
    /// empty, and the caller drops the answer.
    fn judge<'a>(
        &'a self,
        index: &'a Index,
        evidence: &Evidence,
        budget: Option<&'a Budget>,
    ) -> Verdict<'a> {
        match self {
            Sides::Rule { old, new } => {
                let rules = Change {
                    old: old.as_ref(),
                    new: new.as_ref(),
                };
                match budget {
                    None => engine::evaluate_with(index, &rules, evidence),
                    Some(b) => {
                        engine::evaluate_within(index, &rules, evidence, b).unwrap_or_default()
                    }
                }
            }
            Sides::MeshConfig { old, new } => match budget {
                None => engine::evaluate_mesh_change(index, old, new, evidence),
                Some(b) => engine::evaluate_mesh_change_within(index, old, new, evidence, b)
                    .unwrap_or_default(),
            },
        }
    }
}

fn review_rule(kind: RuleKind, req: &Request) -> Result<Reviewed, String> {
    let unreadable = |e| format!("{kind} {}: {e}", object_name(req));
    let old = read(kind, req.old_object.as_deref()).map_err(unreadable)?;
    let new = read(kind, req.object.as_deref()).map_err(unreadable)?;
    let change = match (&old, &new) {
        (Some((_, o)), Some((_, n))) => match (tree(*o), tree(*n)) {
            (Ok(o), Ok(n)) => explain::spec_diff(o.as_ref(), n.as_ref()),
            _ => None,
        },
        _ => None,
    };
    let (old, new) = (old.map(|(r, _)| r), new.map(|(r, _)| r));
    let object = Change {
        old: old.as_ref(),
        new: new.as_ref(),
    }
    .key()
    .map(ToString::to_string);
    Ok(Reviewed {
        sides: Sides::Rule { old, new },
        object,
        change,
    })
}

/// The mesh config one side of a request holds; a side that does not exist has Istio's
/// defaults, as istiod reads a missing ConfigMap.
fn mesh_of(obj: Option<&Object>) -> Result<crate::model::MeshConfig, String> {
    obj.map_or_else(
        || Ok(crate::model::MeshConfig::default()),
        |o| crate::model::MeshConfig::from_configmap_data(o.data.as_ref()),
    )
    .map_err(|e| e.to_string())
}

fn review_mesh_config(index: &Index, req: &Request) -> Result<Reviewed, String> {
    let object = format!("ConfigMap {}", object_name(req));
    let unreadable = |e| format!("{object}: {e}");
    // An unreadable config already in place must stay fixable: judge from what is in force.
    let old = mesh_of(req.old_object.as_deref()).unwrap_or_else(|_| index.mesh().clone());
    let new = mesh_of(req.object.as_deref()).map_err(unreadable)?;
    let mut changed = Vec::new();
    if old.enable_auto_mtls != new.enable_auto_mtls {
        changed.push((
            "enableAutoMtls",
            old.enable_auto_mtls.to_string(),
            new.enable_auto_mtls.to_string(),
        ));
    }
    if old.root_namespace != new.root_namespace {
        changed.push((
            "rootNamespace",
            old.root_namespace.clone(),
            new.root_namespace.clone(),
        ));
    }
    let change = (!changed.is_empty()).then(|| explain::SpecChange {
        paths: changed
            .iter()
            .map(|(k, ..)| format!("mesh.{k}"))
            .collect::<Vec<_>>()
            .join("; "),
        detail: changed
            .iter()
            .map(|(k, o, n)| format!("mesh {k}: {o} -> {n}"))
            .collect::<Vec<_>>()
            .join("; "),
    });
    Ok(Reviewed {
        sides: Sides::MeshConfig { old, new },
        object: Some(object),
        change,
    })
}

/// Decides one admission request against an inventory snapshot and traffic evidence.
pub fn decide_with(
    index: &Index,
    evidence: &Evidence,
    default_mode: GuardMode,
    req: &Request,
    auth: &Authorization,
) -> Answer {
    judge(index, evidence, default_mode, req, auth, None)
}

/// [`decide_with`] within `budget`: `None` once the review needs more work than that.
pub fn decide_within(
    index: &Index,
    evidence: &Evidence,
    default_mode: GuardMode,
    req: &Request,
    auth: &Authorization,
    budget: &Budget,
) -> Option<Answer> {
    let answer = judge(index, evidence, default_mode, req, auth, Some(budget));
    (!budget.is_spent()).then_some(answer)
}

fn judge(
    index: &Index,
    evidence: &Evidence,
    default_mode: GuardMode,
    req: &Request,
    auth: &Authorization,
    budget: Option<&Budget>,
) -> Answer {
    let subject = Subject::of(index, req);
    let reviewed = match subject {
        Subject::Namespace => {
            // A namespace that opted in to enforce stays governed even when the guard audits.
            let labelled = mode_label(req.old_object.as_deref()).and_then(|m| m.parse().ok());
            let mode = match labelled {
                Some(GuardMode::Enforce) => GuardMode::Enforce,
                _ => default_mode,
            };
            return namespace_review(req, mode, auth);
        }
        Subject::Rule(kind) => Some(review_rule(kind, req)),
        Subject::MeshConfig => Some(review_mesh_config(index, req)),
        Subject::OtherConfigMap | Subject::Other => None,
    };
    let mode = mode_for(index, default_mode, req.namespace.as_deref());
    let Some(reviewed) = reviewed else {
        return not_reviewed(req, mode, &subject);
    };
    let mut record = record(req, mode);
    let mut response = allowing(req);
    let Reviewed {
        sides,
        object,
        change,
    } = match reviewed {
        Ok(reviewed) => reviewed,
        Err(e) => {
            record.decision = Decision::Invalid;
            let why = format!("mtls-guard cannot read {e}");
            // Audit mode promises never to block: it says what it could not check instead.
            if mode == GuardMode::Audit {
                response.warnings = Some(vec![format!("{why}; allowed unreviewed (audit mode)")]);
            } else {
                response.allowed = false;
                response.result = Status::failure(&why, "BadRequest").with_code(400);
            }
            return Answer { response, record };
        }
    };
    let verdict = sides.judge(index, evidence, budget);
    let change_detail = change.map(|c| {
        record.change = Some(c.paths);
        c.detail
    });
    record.clients = verdict.client_count();
    record.servers = verdict.servers.len();
    let object = object.unwrap_or_else(|| record.object.clone());
    let (glass, ignored) = match (break_glass(req), auth) {
        (Ok(Some(_)), Authorization::Refused(why)) => (None, Some(why.clone())),
        (Ok(glass), _) => (glass, None),
        (Err(why), _) => (None, Some(why.to_string())),
    };
    record.decision = settle(&verdict, mode, glass.is_some());
    match (record.decision, glass) {
        (Decision::Denied, _) => {
            response.allowed = false;
            let mut message = explain::deny_message(&object, &verdict, change_detail.as_deref());
            if let Some(why) = ignored {
                let _ = write!(message, "\nBreak-glass annotation ignored: {why}.");
            }
            // The message moved in: `Status::failure` would copy it.
            response.result = Status::failure("", "Forbidden").with_code(403);
            response.result.message = message;
        }
        (Decision::BreakGlass | Decision::WouldDeny, glass) => {
            // Allowed although it would be denied: say so in warnings and the audit log.
            let mut audit =
                HashMap::from([("would-deny".to_string(), explain::would_deny_json(&verdict))]);
            let mut warnings = explain::warnings(&verdict);
            if let Some(reason) = glass {
                let note = auth.note();
                warnings.insert(
                    0,
                    format!("mtls-guard break-glass on {object}: {reason}{note}"),
                );
                audit.insert("break-glass".into(), reason);
            }
            response.warnings = Some(warnings);
            response.audit_annotations = audit;
        }
        _ if verdict.breaks_clients() => response.warnings = Some(explain::warnings(&verdict)),
        _ => {}
    }
    Answer { response, record }
}

#[cfg(test)]
pub(crate) mod tests;
