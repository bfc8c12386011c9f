//! Namespaces: the guard's per-namespace mode and ambient intent.

use k8s_openapi::api::core::v1 as core;

use super::{pod::DATAPLANE_MODE_LABEL, Labels, ModelError};

pub const MODE_LABEL: &str = "mtls-guard.io/mode";
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
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
        Ok(Namespace { name, labels })
    }

    pub fn wants_ambient(&self) -> bool {
        self.labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) == Some("ambient")
    }

    pub fn guard_mode(&self) -> Option<&str> {
        self.labels.get(MODE_LABEL).map(String::as_str)
    }
}
