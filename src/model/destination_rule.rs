//! `networking.istio.io` DestinationRule: only what decides the TLS a sidecar client sends.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::SpecSource;
use super::{bounded, Labels, ModelError, Origin, RuleKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

impl TlsMode {
    fn parse(s: &str) -> Result<TlsMode, ModelError> {
        match s {
            "DISABLE" => Ok(TlsMode::Disable),
            "SIMPLE" => Ok(TlsMode::Simple),
            "MUTUAL" => Ok(TlsMode::Mutual),
            "ISTIO_MUTUAL" => Ok(TlsMode::IstioMutual),
            other => Err(ModelError::Invalid(format!("unknown TLS mode {other:?}"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "DISABLE",
            TlsMode::Simple => "SIMPLE",
            TlsMode::Mutual => "MUTUAL",
            TlsMode::IstioMutual => "ISTIO_MUTUAL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRule {
    pub origin: Origin,
    /// As written: a short name is resolved in the rule's own namespace when matched.
    pub host: String,
    pub exports: Exports,
    pub workload_selector: Option<Labels>,
    /// Top-level `trafficPolicy.tls.mode`; `None` leaves auto mTLS in charge.
    pub tls: Option<TlsMode>,
    /// `portLevelSettings` by Service port; an entry replaces the top-level TLS for its port.
    pub port_tls: BTreeMap<u16, Option<TlsMode>>,
    /// A subset whose TLS is not Istio mTLS: some requests may be routed to it.
    pub plaintext_subset: Option<(String, TlsMode)>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    host: String,
    #[serde(default)]
    export_to: Vec<String>,
    workload_selector: Option<Selector>,
    traffic_policy: Option<TrafficPolicy>,
    #[serde(default)]
    subsets: Vec<Subset>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Selector {
    #[serde(default)]
    match_labels: Labels,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct TrafficPolicy {
    tls: Option<Tls>,
    #[serde(default)]
    port_level_settings: Vec<PortSettings>,
}

#[derive(Deserialize)]
struct PortSettings {
    port: Option<PortNumber>,
    tls: Option<Tls>,
}

#[derive(Deserialize)]
struct PortNumber {
    number: Option<u16>,
}

#[derive(Deserialize)]
struct Tls {
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subset {
    #[serde(default)]
    name: String,
    traffic_policy: Option<TrafficPolicy>,
}

/// A `tls` block with no mode is DISABLE, the proto's zero value.
fn tls_mode(tls: Option<&Tls>) -> Result<Option<TlsMode>, ModelError> {
    tls.map(|t| TlsMode::parse(t.mode.as_deref().unwrap_or("DISABLE")))
        .transpose()
}

/// Every TLS mode a traffic policy can select, top level and per port.
fn all_modes(policy: &TrafficPolicy) -> Result<Vec<TlsMode>, ModelError> {
    let mut modes: Vec<TlsMode> = tls_mode(policy.tls.as_ref())?.into_iter().collect();
    for p in &policy.port_level_settings {
        modes.extend(tls_mode(p.tls.as_ref())?);
    }
    Ok(modes)
}

/// `exportTo`, as a set: it is asked once per client namespace and route in a review.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exports {
    /// No list, or `*`.
    everywhere: bool,
    /// `.`: the rule's own namespace.
    own: bool,
    named: std::collections::BTreeSet<String>,
}

impl Exports {
    fn new(list: Vec<String>) -> Exports {
        let mut exports = Exports {
            everywhere: list.is_empty(),
            ..Exports::default()
        };
        for entry in list {
            match entry.as_str() {
                "*" => exports.everywhere = true,
                "." => exports.own = true,
                _ => {
                    exports.named.insert(entry);
                }
            }
        }
        exports
    }

    /// Whether the list names namespaces, so clients in different namespaces see it differently.
    pub fn names_namespaces(&self) -> bool {
        !self.named.is_empty()
    }
}

impl DestinationRule {
    pub fn from_parts(meta: &ObjectMeta, spec: impl SpecSource) -> Result<Self, ModelError> {
        let spec: Spec = spec.read("DestinationRule")?;
        let origin = Origin::from_meta(RuleKind::DestinationRule, meta)?;
        bounded("exportTo", spec.export_to.len())?;
        bounded("subsets", spec.subsets.len())?;
        let policy = spec.traffic_policy.unwrap_or_default();
        bounded(
            "trafficPolicy.portLevelSettings",
            policy.port_level_settings.len(),
        )?;
        for subset in &spec.subsets {
            let settings = subset.traffic_policy.as_ref();
            bounded(
                "subsets[].trafficPolicy.portLevelSettings",
                settings.map_or(0, |p| p.port_level_settings.len()),
            )?;
        }
        let mut port_tls = BTreeMap::new();
        for p in &policy.port_level_settings {
            if let Some(number) = p.port.as_ref().and_then(|p| p.number) {
                port_tls.insert(number, tls_mode(p.tls.as_ref())?);
            }
        }
        let mut plaintext_subset = None;
        for subset in &spec.subsets {
            let Some(policy) = &subset.traffic_policy else {
                continue;
            };
            if let Some(mode) = all_modes(policy)?
                .into_iter()
                .find(|m| *m != TlsMode::IstioMutual)
            {
                plaintext_subset.get_or_insert((subset.name.clone(), mode));
            }
        }
        Ok(DestinationRule {
            origin,
            host: spec.host,
            exports: Exports::new(spec.export_to),
            workload_selector: spec
                .workload_selector
                .map(|s| s.match_labels)
                .filter(|l| !l.is_empty()),
            tls: tls_mode(policy.tls.as_ref())?,
            port_tls,
            plaintext_subset,
        })
    }

    /// The TLS this rule sets for one Service port, if it sets any.
    pub fn tls_for_port(&self, port: u16) -> Option<TlsMode> {
        match self.port_tls.get(&port) {
            Some(mode) => *mode,
            None => self.tls,
        }
    }

    /// Whether a client using this rule can send plaintext: a TLS mode other than
    /// ISTIO_MUTUAL at the top, on a port, or on a subset.
    pub fn may_send_plaintext(&self) -> bool {
        let plaintext = |m: &Option<TlsMode>| m.is_some_and(|m| m != TlsMode::IstioMutual);
        self.plaintext_subset.is_some()
            || plaintext(&self.tls)
            || self.port_tls.values().any(plaintext)
    }

    /// Whether a client in `namespace` sees this rule when it is not its own namespace's.
    pub fn exported_to(&self, namespace: &str) -> bool {
        let e = &self.exports;
        e.everywhere || (e.own && self.origin.namespace == namespace) || e.named.contains(namespace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: &serde_json::Value) -> Result<DestinationRule, ModelError> {
        DestinationRule::from_parts(
            &ObjectMeta::deserialize(&value["metadata"]).unwrap(),
            value.get("spec"),
        )
    }

    #[test]
    fn port_level_settings_replace_top_level_tls() {
        let dr = read(&json!({
            "metadata": {"name": "d", "namespace": "foo"},
            "spec": {"host": "httpbin", "trafficPolicy": {
                "tls": {"mode": "ISTIO_MUTUAL"},
                "portLevelSettings": [{"port": {"number": 8000}, "tls": {"mode": "DISABLE"}},
                                      {"port": {"number": 9000}}]}}
        }))
        .unwrap();
        assert_eq!(dr.tls_for_port(8000), Some(TlsMode::Disable));
        assert_eq!(
            dr.tls_for_port(9000),
            None,
            "a port entry without tls clears it"
        );
        assert_eq!(dr.tls_for_port(80), Some(TlsMode::IstioMutual));
    }

    #[test]
    fn plaintext_subset_is_recorded() {
        let dr = read(&json!({
            "metadata": {"name": "d", "namespace": "foo"},
            "spec": {"host": "httpbin", "subsets": [
                {"name": "v1", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}}},
                {"name": "v2", "trafficPolicy": {"tls": {"mode": "SIMPLE"}}}]}
        }))
        .unwrap();
        assert_eq!(dr.plaintext_subset, Some(("v2".into(), TlsMode::Simple)));
        assert_eq!(dr.tls, None);
    }

    #[test]
    fn only_a_tls_mode_other_than_istio_mutual_may_send_plaintext() {
        let may = |spec: serde_json::Value| {
            read(&json!({
                "metadata": {"name": "d", "namespace": "foo"}, "spec": spec
            }))
            .unwrap()
            .may_send_plaintext()
        };
        let mutual = json!({"tls": {"mode": "ISTIO_MUTUAL"}});
        assert!(!may(json!({"host": "a", "trafficPolicy": mutual})));
        assert!(
            !may(json!({"host": "a"})),
            "no TLS setting leaves auto mTLS"
        );
        assert!(may(
            json!({"host": "a", "trafficPolicy": {"tls": {"mode": "DISABLE"}}})
        ));
        assert!(may(
            json!({"host": "a", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"},
            "portLevelSettings": [{"port": {"number": 8000}, "tls": {"mode": "SIMPLE"}}]}})
        ));
        assert!(may(json!({"host": "a", "trafficPolicy": mutual,
            "subsets": [{"name": "v1", "trafficPolicy": {"tls": {"mode": "DISABLE"}}}]})));
    }

    #[test]
    fn export_to_names_namespaces_and_its_length_is_bounded() {
        let names: Vec<String> = (0..super::super::MAX_LIST_ENTRIES)
            .map(|n| format!("ns{n}"))
            .collect();
        let dr = read(&json!({
            "metadata": {"name": "d", "namespace": "foo"},
            "spec": {"host": "*", "exportTo": names}
        }))
        .unwrap();
        assert!(dr.exported_to("ns255") && !dr.exported_to("foo"));
        assert!(dr.exports.names_namespaces());
        let mut too_many = names.clone();
        too_many.push("one-more".into());
        let err = read(&json!({
            "metadata": {"name": "d", "namespace": "foo"},
            "spec": {"host": "*", "exportTo": too_many}
        }))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "exportTo has 257 entries; at most 256 are accepted"
        );
    }

    #[test]
    fn export_to_dot_means_own_namespace() {
        let dr = read(&json!({
            "metadata": {"name": "d", "namespace": "foo"},
            "spec": {"host": "*", "exportTo": ["."]}
        }))
        .unwrap();
        assert!(dr.exported_to("foo"));
        assert!(!dr.exported_to("bar"));
    }
}
