//! The mesh config (ConfigMap `istio`, key `mesh`): root namespace and auto mTLS.

use k8s_openapi::api::core::v1 as core;
use serde::Deserialize;

use super::ModelError;

pub const CONFIGMAP_NAME: &str = "istio";

#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    pub root_namespace: String,
    pub enable_auto_mtls: bool,
}

impl Default for MeshConfig {
    /// Istio's code defaults for keys the ConfigMap leaves out.
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".into(),
            enable_auto_mtls: true,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Raw {
    root_namespace: Option<String>,
    enable_auto_mtls: Option<bool>,
}

impl MeshConfig {
    pub fn from_configmap(cm: &core::ConfigMap) -> Result<MeshConfig, ModelError> {
        MeshConfig::from_yaml(
            cm.data
                .as_ref()
                .and_then(|d| d.get("mesh"))
                .map(String::as_str),
        )
    }

    /// A ConfigMap as JSON (a manifest): its `data.mesh`, which must be a string when present.
    pub fn from_configmap_json(cm: &serde_json::Value) -> Result<MeshConfig, ModelError> {
        MeshConfig::from_configmap_data(cm.get("data"))
    }

    /// The ConfigMap's `data`, as an AdmissionReview carries it.
    pub fn from_configmap_data(data: Option<&serde_json::Value>) -> Result<MeshConfig, ModelError> {
        match data.and_then(|d| d.get("mesh")) {
            None | Some(serde_json::Value::Null) => MeshConfig::from_yaml(None),
            Some(serde_json::Value::String(mesh)) => MeshConfig::from_yaml(Some(mesh)),
            Some(_) => Err(ModelError::Invalid("data.mesh is not a string".into())),
        }
    }

    /// The ConfigMap's `mesh` key; absent, Istio's defaults.
    pub fn from_yaml(mesh: Option<&str>) -> Result<MeshConfig, ModelError> {
        let Some(mesh) = mesh else {
            return Ok(MeshConfig::default());
        };
        let raw: Raw = crate::yaml::from_str::<Option<Raw>>(mesh)
            .map_err(|e| ModelError::Invalid(format!("mesh config is not valid YAML: {e}")))?
            .unwrap_or_default();
        let defaults = MeshConfig::default();
        Ok(MeshConfig {
            root_namespace: raw
                .root_namespace
                .filter(|r| !r.is_empty())
                .unwrap_or(defaults.root_namespace),
            enable_auto_mtls: raw.enable_auto_mtls.unwrap_or(defaults.enable_auto_mtls),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(mesh: &str) -> core::ConfigMap {
        serde_json::from_value(json!({"metadata": {"name": "istio"}, "data": {"mesh": mesh}}))
            .unwrap()
    }

    #[test]
    fn a_configmap_read_as_json_needs_mesh_to_be_text() {
        let read = |v| MeshConfig::from_configmap_json(&v);
        assert_eq!(read(json!({"data": {}})).unwrap(), MeshConfig::default());
        assert_eq!(
            read(json!({"data": {"mesh": null}})).unwrap(),
            MeshConfig::default()
        );
        let off = read(json!({"data": {"mesh": "enableAutoMtls: false"}})).unwrap();
        assert!(!off.enable_auto_mtls);
        assert!(read(json!({"data": {"mesh": {"enableAutoMtls": false}}})).is_err());
    }

    #[test]
    fn missing_keys_take_istio_defaults() {
        assert_eq!(
            MeshConfig::from_configmap(&cm("")).unwrap(),
            MeshConfig::default()
        );
        let set =
            MeshConfig::from_configmap(&cm("rootNamespace: mesh-root\nenableAutoMtls: false\n"))
                .unwrap();
        assert_eq!(set.root_namespace, "mesh-root");
        assert!(!set.enable_auto_mtls);
    }
}
