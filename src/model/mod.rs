//! Normalized mTLS rules and trimmed inventory objects.
//!
//! Each API kind is turned into a plain value holding only what matters for mTLS, in a small
//! file of its own. The same conversion serves the inventory (files, live watches) and the
//! admission request, so what the webhook reads from a request is read exactly as the index
//! reads it from the cluster.

pub mod api_caller;
pub mod destination_rule;
pub mod legacy;
pub mod mesh_config;
pub mod namespace;
pub mod network_policy;
pub mod peer_authentication;
pub mod pod;
pub mod pod_object;
pub mod service;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::text::{put, Words};

pub use api_caller::{ApiCaller, CallerKind};
pub use destination_rule::{DestinationRule, TlsMode};
pub use legacy::{LegacyPolicy, LegacyScope};
pub use mesh_config::MeshConfig;
pub use namespace::{GuardMode, LabelledMode, Namespace};
pub use network_policy::NetworkPolicy;
pub use peer_authentication::PeerAuthentication;
pub use pod::{Pod, PodShape, Proxy};
pub use pod_object::PodObject;
pub use service::{Service, TargetPort};

pub type Labels = BTreeMap<String, String>;

/// `true` when every selector label is on the object with an equal value (Istio's `SubsetOf`).
pub fn selector_matches(selector: &Labels, labels: &Labels) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Inbound mTLS mode of a server port, as Istio's PeerAuthentication names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Mode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl Mode {
    pub fn parse(s: Option<&str>) -> Result<Mode, ModelError> {
        match s.unwrap_or("UNSET") {
            "UNSET" => Ok(Mode::Unset),
            "DISABLE" => Ok(Mode::Disable),
            "PERMISSIVE" => Ok(Mode::Permissive),
            "STRICT" => Ok(Mode::Strict),
            other => Err(ModelError::Invalid(format!("unknown mTLS mode {other:?}"))),
        }
    }

    /// `UNSET` takes the parent's mode.
    pub fn or_inherit(self, parent: Mode) -> Mode {
        if self == Mode::Unset {
            parent
        } else {
            self
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Unset => "UNSET",
            Mode::Disable => "DISABLE",
            Mode::Permissive => "PERMISSIVE",
            Mode::Strict => "STRICT",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kinds the webhook reviews.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum RuleKind {
    PeerAuthentication,
    Policy,
    MeshPolicy,
    DestinationRule,
}

impl RuleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::PeerAuthentication => "PeerAuthentication",
            RuleKind::Policy => "Policy",
            RuleKind::MeshPolicy => "MeshPolicy",
            RuleKind::DestinationRule => "DestinationRule",
        }
    }

    /// The reviewed kind for an API group and kind, or `None` for anything else.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<RuleKind> {
        match (group, kind) {
            ("security.istio.io", "PeerAuthentication") => Some(RuleKind::PeerAuthentication),
            ("authentication.istio.io", "Policy") => Some(RuleKind::Policy),
            ("authentication.istio.io", "MeshPolicy") => Some(RuleKind::MeshPolicy),
            ("networking.istio.io", "DestinationRule") => Some(RuleKind::DestinationRule),
            _ => None,
        }
    }
}

impl fmt::Display for RuleKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which object a rule came from, for ordering (oldest wins) and for messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Origin {
    pub kind: RuleKind,
    /// Empty for the cluster-scoped MeshPolicy.
    pub namespace: String,
    pub name: String,
    /// Seconds since the epoch; an object not yet created (an admission CREATE) is the newest.
    pub created: i64,
}

impl Origin {
    pub fn from_meta(kind: RuleKind, meta: &ObjectMeta) -> Result<Origin, ModelError> {
        let name = meta
            .name
            .clone()
            .ok_or_else(|| ModelError::Invalid(format!("{kind} without metadata.name")))?;
        Ok(Origin {
            kind,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name,
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(i64::MAX, |t| t.0.as_second()),
        })
    }

    /// Istio's order at one level: older first, ties to the smaller name.
    pub fn age_key(&self) -> (i64, &str) {
        (self.created, &self.name)
    }

    pub fn same_object(&self, other: &Origin) -> bool {
        self.kind == other.kind && self.namespace == other.namespace && self.name == other.name
    }

    /// `namespace/name`, or `name` for the cluster-scoped MeshPolicy.
    pub fn write_name<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        if !self.namespace.is_empty() {
            put(w, &[&self.namespace, "/"])?;
        }
        w.write_str(&self.name)
    }
}

/// `Kind namespace/name`.
impl Words for Origin {
    fn write_to<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        put(w, &[self.kind.as_str(), " "])?;
        self.write_name(w)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

/// One normalized reviewed object.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    PeerAuthentication(PeerAuthentication),
    Legacy(LegacyPolicy),
    DestinationRule(DestinationRule),
}

impl Rule {
    pub fn origin(&self) -> &Origin {
        match self {
            Rule::PeerAuthentication(r) => &r.origin,
            Rule::Legacy(r) => &r.origin,
            Rule::DestinationRule(r) => &r.origin,
        }
    }

    /// Reads a reviewed object from its JSON form (`kubectl get -o json`, a manifest).
    pub fn from_json(kind: RuleKind, value: &serde_json::Value) -> Result<Rule, ModelError> {
        let meta = match value.get("metadata") {
            Some(meta) => {
                ObjectMeta::deserialize(meta).map_err(|e| ModelError::decode(kind.as_str(), e))?
            }
            None => ObjectMeta::default(),
        };
        Rule::from_parts(kind, &meta, value.get("spec"))
    }

    /// Reads a reviewed object from its metadata and spec as they arrive, already apart, in an
    /// admission request or a watch event: no second trip through a JSON tree.
    pub fn from_parts(
        kind: RuleKind,
        meta: &ObjectMeta,
        spec: impl SpecSource,
    ) -> Result<Rule, ModelError> {
        Ok(match kind {
            RuleKind::PeerAuthentication => {
                Rule::PeerAuthentication(PeerAuthentication::from_parts(meta, spec)?)
            }
            RuleKind::Policy | RuleKind::MeshPolicy => {
                Rule::Legacy(LegacyPolicy::from_parts(kind, meta, spec)?)
            }
            RuleKind::DestinationRule => {
                Rule::DestinationRule(DestinationRule::from_parts(meta, spec)?)
            }
        })
    }
}

/// Most entries a list in a reviewed object may have (`exportTo`, `subsets`,
/// `portLevelSettings`, `portLevelMtls`, `targets` and their ports, `peers`, selector labels).
/// Real objects have a handful; the bound keeps one object from making a review costly.
pub const MAX_LIST_ENTRIES: usize = 256;

/// Refuses a list longer than [`MAX_LIST_ENTRIES`], naming the field.
pub(crate) fn bounded(field: &str, len: usize) -> Result<(), ModelError> {
    if len > MAX_LIST_ENTRIES {
        return Err(ModelError::Invalid(format!(
            "{field} has {len} entries; at most {MAX_LIST_ENTRIES} are accepted"
        )));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read {kind}: {message}")]
    Decode { kind: &'static str, message: String },
}

impl ModelError {
    pub fn decode(kind: &'static str, err: serde_json::Error) -> ModelError {
        ModelError::Decode {
            kind,
            message: err.to_string(),
        }
    }

    /// As [`ModelError::decode`] reads a tree's error: the position serde_json adds for text
    /// would count from the start of the spec, not of anything the user sent.
    fn decode_text(kind: &'static str, err: &serde_json::Error) -> ModelError {
        let message = err.to_string();
        let position = format!(" at line {} column {}", err.line(), err.column());
        let message = match message.strip_suffix(&position) {
            Some(plain) => plain.to_string(),
            None => message,
        };
        ModelError::Decode { kind, message }
    }
}

/// A rule's spec as it reaches a reader: a JSON tree (the inventory, a manifest), or the text of
/// a reviewed object, which is read straight into the typed spec without building a tree.
pub trait SpecSource: Copy {
    /// The typed spec; an absent or null spec is empty.
    fn read<S: serde::de::DeserializeOwned + Default>(
        self,
        kind: &'static str,
    ) -> Result<S, ModelError>;
}

impl SpecSource for Option<&serde_json::Value> {
    fn read<S: serde::de::DeserializeOwned + Default>(
        self,
        kind: &'static str,
    ) -> Result<S, ModelError> {
        match self {
            None | Some(serde_json::Value::Null) => Ok(S::default()),
            Some(spec) => S::deserialize(spec).map_err(|e| ModelError::decode(kind, e)),
        }
    }
}

impl SpecSource for Option<&serde_json::value::RawValue> {
    fn read<S: serde::de::DeserializeOwned + Default>(
        self,
        kind: &'static str,
    ) -> Result<S, ModelError> {
        let Some(spec) = self else {
            return Ok(S::default());
        };
        serde_json::from_str::<Option<S>>(spec.get())
            .map(Option::unwrap_or_default)
            .map_err(|e| ModelError::decode_text(kind, &e))
    }
}
