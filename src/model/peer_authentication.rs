//! `security.istio.io` PeerAuthentication (v1beta1 and v1 share one schema).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SpecSource;
use super::{bounded, Labels, Mode, ModelError, Origin, RuleKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Debug, Clone, PartialEq)]
pub struct PeerAuthentication {
    pub origin: Origin,
    /// `None` when absent or `matchLabels` is empty: Istio treats both as "no selector".
    pub selector: Option<Labels>,
    pub mode: Mode,
    /// Keyed by the workload's container port, never the Service port.
    pub port_modes: BTreeMap<u16, Mode>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    selector: Option<Selector>,
    mtls: Option<Mtls>,
    #[serde(default)]
    port_level_mtls: BTreeMap<String, Option<Mtls>>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: Option<Labels>,
}

#[derive(Deserialize, Default)]
struct Mtls {
    mode: Option<String>,
}

fn mode_of(mtls: Option<&Mtls>) -> Result<Mode, ModelError> {
    Mode::parse(mtls.and_then(|m| m.mode.as_deref()))
}

impl PeerAuthentication {
    pub fn from_parts(meta: &ObjectMeta, spec: impl SpecSource) -> Result<Self, ModelError> {
        let spec: Spec = spec.read("PeerAuthentication")?;
        let origin = Origin::from_meta(RuleKind::PeerAuthentication, meta)?;
        let selector = spec
            .selector
            .and_then(|s| s.match_labels)
            .filter(|l| !l.is_empty());
        bounded(
            "selector.matchLabels",
            selector.as_ref().map_or(0, Labels::len),
        )?;
        bounded("portLevelMtls", spec.port_level_mtls.len())?;
        let mut port_modes = BTreeMap::new();
        for (port, mtls) in &spec.port_level_mtls {
            let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                ModelError::Invalid(format!("portLevelMtls key {port:?} is not a port"))
            })?;
            port_modes.insert(port, mode_of(mtls.as_ref())?);
        }
        Ok(PeerAuthentication {
            origin,
            selector,
            mode: mode_of(spec.mtls.as_ref())?,
            port_modes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: &serde_json::Value) -> Result<PeerAuthentication, ModelError> {
        PeerAuthentication::from_parts(
            &ObjectMeta::deserialize(&value["metadata"]).unwrap(),
            value.get("spec"),
        )
    }

    #[test]
    fn empty_match_labels_is_no_selector() {
        let pa = read(&json!({
            "metadata": {"name": "default", "namespace": "foo"},
            "spec": {"selector": {"matchLabels": {}}, "mtls": {"mode": "STRICT"}}
        }))
        .unwrap();
        assert_eq!(pa.selector, None);
        assert_eq!(pa.mode, Mode::Strict);
    }

    #[test]
    fn a_null_or_missing_spec_is_an_empty_one_as_the_api_server_stores_it() {
        for spec in [
            json!({"metadata": {"name": "p", "namespace": "foo"}, "spec": null}),
            json!({"metadata": {"name": "p", "namespace": "foo"}}),
        ] {
            let pa = read(&spec).unwrap();
            assert_eq!((pa.mode, pa.selector), (Mode::Unset, None));
        }
        let wrong = json!({"metadata": {"name": "p", "namespace": "foo"}, "spec": "STRICT"});
        assert!(read(&wrong).is_err());
    }

    #[test]
    fn missing_mtls_is_unset_and_port_levels_parse() {
        let pa = read(&json!({
            "metadata": {"name": "p", "namespace": "foo", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"selector": {"matchLabels": {"app": "httpbin"}},
                     "portLevelMtls": {"80": {"mode": "PERMISSIVE"}, "81": {}}}
        }))
        .unwrap();
        assert_eq!(pa.mode, Mode::Unset);
        assert_eq!(pa.port_modes.get(&80), Some(&Mode::Permissive));
        assert_eq!(pa.port_modes.get(&81), Some(&Mode::Unset));
        assert_eq!(pa.origin.created, 1_704_067_200);
    }

    #[test]
    fn bad_mode_and_bad_port_are_errors() {
        let bad_mode = json!({"metadata": {"name": "p"}, "spec": {"mtls": {"mode": "STRICTEST"}}});
        assert!(read(&bad_mode).is_err());
        let bad_port = json!({"metadata": {"name": "p"}, "spec": {"portLevelMtls": {"http": {}}}});
        assert!(read(&bad_port).is_err());
    }
}
