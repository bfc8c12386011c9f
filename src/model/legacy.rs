//! `authentication.istio.io/v1alpha1` Policy and MeshPolicy (Istio ≤ 1.5, the seed's API).

use serde::Deserialize;

use super::SpecSource;
use super::{bounded, Mode, ModelError, Origin, RuleKind};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

#[derive(Debug, Clone, PartialEq)]
pub struct LegacyPolicy {
    pub origin: Origin,
    pub scope: LegacyScope,
    /// STRICT, PERMISSIVE or DISABLE: v1alpha1 has no UNSET.
    pub mode: Mode,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LegacyScope {
    /// MeshPolicy named `default`.
    Mesh,
    /// Policy named `default` without targets.
    Namespace,
    /// Policy with targets: Services in the policy's namespace.
    Targets(Vec<Target>),
    /// What Pilot never reads: other MeshPolicies, untargeted Policies not named `default`.
    Ignored,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Short Service name, resolved in the policy's namespace.
    pub service: String,
    /// Service ports (not container ports); empty means every port.
    pub ports: Vec<PortSelector>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSelector {
    Number(u16),
    Name(String),
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(default)]
    targets: Vec<RawTarget>,
    peers: Option<Vec<Peer>>,
}

#[derive(Deserialize)]
struct RawTarget {
    name: String,
    #[serde(default)]
    ports: Vec<RawPort>,
}

#[derive(Deserialize)]
struct RawPort {
    number: Option<u16>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct Peer {
    /// `- mtls:` (null) and `mtls: {}` both mean STRICT, so presence of the key matters.
    #[serde(default, deserialize_with = "present")]
    mtls: Option<Option<MutualTls>>,
}

#[derive(Deserialize)]
struct MutualTls {
    mode: Option<String>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<MutualTls>>, D::Error> {
    Option::<MutualTls>::deserialize(d).map(Some)
}

/// The first `mtls` peer decides; without one the sidecar gets no TLS chain at all.
fn mode_of(peers: Option<&[Peer]>) -> Result<Mode, ModelError> {
    let Some(mtls) = peers.into_iter().flatten().find_map(|p| p.mtls.as_ref()) else {
        return Ok(Mode::Disable);
    };
    match mtls.as_ref().and_then(|m| m.mode.as_deref()) {
        None | Some("STRICT") => Ok(Mode::Strict),
        Some("PERMISSIVE") => Ok(Mode::Permissive),
        Some(other) => Err(ModelError::Invalid(format!(
            "unknown v1alpha1 mTLS mode {other:?}"
        ))),
    }
}

impl LegacyPolicy {
    pub fn from_parts(
        kind: RuleKind,
        meta: &ObjectMeta,
        spec: impl SpecSource,
    ) -> Result<Self, ModelError> {
        let spec: Spec = spec.read(kind.as_str())?;
        let origin = Origin::from_meta(kind, meta)?;
        bounded("peers", spec.peers.as_ref().map_or(0, Vec::len))?;
        let ports: usize = spec.targets.iter().map(|t| 1 + t.ports.len()).sum();
        bounded("targets and their ports", ports)?;
        let mode = mode_of(spec.peers.as_deref())?;
        let is_default = origin.name == "default";
        let scope = match kind {
            RuleKind::MeshPolicy if is_default && spec.targets.is_empty() => LegacyScope::Mesh,
            RuleKind::Policy if spec.targets.is_empty() && is_default => LegacyScope::Namespace,
            RuleKind::Policy if !spec.targets.is_empty() && !is_default => {
                LegacyScope::Targets(spec.targets.into_iter().map(Target::from).collect())
            }
            _ => LegacyScope::Ignored,
        };
        Ok(LegacyPolicy {
            origin,
            scope,
            mode,
        })
    }
}

impl From<RawTarget> for Target {
    fn from(raw: RawTarget) -> Target {
        let ports = raw
            .ports
            .into_iter()
            .filter_map(|p| match (p.number, p.name) {
                (Some(n), _) => Some(PortSelector::Number(n)),
                (None, Some(name)) => Some(PortSelector::Name(name)),
                (None, None) => None,
            })
            .collect();
        Target {
            service: raw.name,
            ports,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(kind: RuleKind, name: &str, spec: serde_json::Value) -> LegacyPolicy {
        let meta = ObjectMeta {
            name: Some(name.into()),
            namespace: Some("foo".into()),
            ..Default::default()
        };
        LegacyPolicy::from_parts(kind, &meta, Some(&spec)).unwrap()
    }

    #[test]
    fn peers_decide_the_mode() {
        let cases = [
            (
                json!({"peers": [{"mtls": {"mode": "STRICT"}}]}),
                Mode::Strict,
                "explicit STRICT",
            ),
            (
                json!({"peers": [{"mtls": {}}]}),
                Mode::Strict,
                "mtls: {} is STRICT",
            ),
            (
                json!({"peers": [{"mtls": null}]}),
                Mode::Strict,
                "- mtls: (null) is STRICT",
            ),
            (
                json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}),
                Mode::Permissive,
                "PERMISSIVE",
            ),
            (json!({}), Mode::Disable, "no peers is plaintext only"),
            (
                json!({"peers": [{"jwt": {}}]}),
                Mode::Disable,
                "no mtls peer is plaintext only",
            ),
        ];
        for (spec, want, why) in cases {
            assert_eq!(
                policy(RuleKind::MeshPolicy, "default", spec).mode,
                want,
                "{why}"
            );
        }
    }

    #[test]
    fn scope_follows_names_and_targets() {
        let mesh = policy(RuleKind::MeshPolicy, "default", json!({}));
        assert_eq!(mesh.scope, LegacyScope::Mesh);
        let other_mesh = policy(RuleKind::MeshPolicy, "other", json!({}));
        assert_eq!(other_mesh.scope, LegacyScope::Ignored);
        let ns = policy(RuleKind::Policy, "default", json!({}));
        assert_eq!(ns.scope, LegacyScope::Namespace);
        let untargeted = policy(RuleKind::Policy, "x", json!({}));
        assert_eq!(untargeted.scope, LegacyScope::Ignored);
        let targeted = policy(
            RuleKind::Policy,
            "x",
            json!({"targets": [{"name": "httpbin", "ports": [{"number": 8000}, {"name": "http"}]}]}),
        );
        assert_eq!(
            targeted.scope,
            LegacyScope::Targets(vec![Target {
                service: "httpbin".into(),
                ports: vec![
                    PortSelector::Number(8000),
                    PortSelector::Name("http".into())
                ],
            }])
        );
    }
}
