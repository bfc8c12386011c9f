//! Namespaces: the guard's per-namespace mode and ambient intent.

use std::fmt;
use std::str::FromStr;

use k8s_openapi::api::core::v1 as core;
use serde::Serialize;

use super::{pod::ambient_label, Labels, ModelError};

pub const MODE_LABEL: &str = "mtls-guard.io/mode";
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
    /// The [`MODE_LABEL`], read once here.
    pub mode: LabelledMode,
    /// Labelled `istio.io/dataplane-mode=ambient`, read once here.
    ambient: bool,
}

/// What a namespace's [`MODE_LABEL`] says.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelledMode {
    Unset,
    Set(GuardMode),
    /// A value that is no mode: the global mode applies, and the inventory says so once.
    Invalid(String),
}

/// Enforce denies a breaking change; audit allows it and reports what it would have denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GuardMode {
    Enforce,
    Audit,
}

impl FromStr for GuardMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "enforce" => Ok(GuardMode::Enforce),
            "audit" => Ok(GuardMode::Audit),
            other => Err(format!("mode must be enforce or audit, not {other:?}")),
        }
    }
}

impl GuardMode {
    pub fn as_str(self) -> &'static str {
        match self {
            GuardMode::Enforce => "enforce",
            GuardMode::Audit => "audit",
        }
    }
}

impl fmt::Display for GuardMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Namespace {
    pub fn from_api(ns: &core::Namespace) -> Result<Namespace, ModelError> {
        let name = ns
            .metadata
            .name
            .clone()
            .ok_or_else(|| ModelError::Invalid("Namespace without metadata.name".into()))?;
        let mut labels = ns.metadata.labels.clone().unwrap_or_default();
        // The API server sets it on every namespace, and NetworkPolicies select by it; a
        // hand-written inventory may leave it out.
        labels
            .entry(NAME_LABEL.to_string())
            .or_insert_with(|| name.clone());
        let mode = match labels.get(MODE_LABEL) {
            None => LabelledMode::Unset,
            Some(value) => value
                .parse()
                .map_or_else(LabelledMode::Invalid, LabelledMode::Set),
        };
        let ambient = ambient_label(&labels) == Some(true);
        Ok(Namespace {
            name,
            labels,
            mode,
            ambient,
        })
    }

    pub fn wants_ambient(&self) -> bool {
        self.ambient
    }

    /// The mode the label sets, if it sets a valid one.
    pub fn guard_mode(&self) -> Option<GuardMode> {
        match self.mode {
            LabelledMode::Set(mode) => Some(mode),
            LabelledMode::Unset | LabelledMode::Invalid(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labelled(value: &str) -> LabelledMode {
        let mut ns = core::Namespace::default();
        ns.metadata.name = Some("foo".into());
        ns.metadata.labels = Some([(MODE_LABEL.to_string(), value.to_string())].into());
        Namespace::from_api(&ns).unwrap().mode
    }

    #[test]
    fn the_mode_label_is_read_once_and_a_bad_value_is_kept_as_such() {
        assert_eq!(labelled("audit"), LabelledMode::Set(GuardMode::Audit));
        assert_eq!(labelled("enforce"), LabelledMode::Set(GuardMode::Enforce));
        assert!(matches!(labelled("Audit"), LabelledMode::Invalid(r) if r.contains("\"Audit\"")));
        let unlabelled = Namespace::from_api(&core::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("bar".into()),
                ..Default::default()
            },
            ..Default::default()
        });
        assert_eq!(unlabelled.unwrap().mode, LabelledMode::Unset);
    }
}
