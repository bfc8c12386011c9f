//! The part of a Kubernetes Pod object the guard reads, decoded without the rest.
//!
//! Nearly all of a large inventory, and nearly all of what a cluster's watch sends, is Pods, and
//! most of a Pod is what the guard never looks at: managed fields, environment, volumes,
//! resources, conditions, and annotations such as kubectl's last applied configuration. Decoding
//! the full API type allocates all of it only to drop it. This type names the fields
//! [`super::Pod::read`] uses; serde skips every other one without allocating. It is still an API
//! resource (kind `Pod`, version `v1`) with its `ObjectMeta`, so the live watch lists and watches
//! it like the generated type.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::Labels;

/// The annotations the guard reads (sidecar capture and ambient enrolment); others are skipped.
pub(crate) const READ_ANNOTATIONS: [&str; 7] = [
    super::pod::AMBIENT_REDIRECTION,
    super::pod::REWRITE_PROBES,
    super::pod::EXCLUDE_INBOUND_PORTS,
    super::pod::INCLUDE_INBOUND_PORTS,
    super::pod::EXCLUDE_OUTBOUND_PORTS,
    super::pod::EXCLUDE_OUTBOUND_RANGES,
    super::pod::INCLUDE_OUTBOUND_RANGES,
];

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PodObject {
    /// Whether the object named its version (`v1`) and its kind (`Pod`); either is checked as
    /// it is read, so another kind's object is not a Pod with fields missing. The API server
    /// leaves both out of a list's items; `kubectl get -o` puts them back.
    #[serde(default, rename = "apiVersion", deserialize_with = "api_version")]
    pub names_its_version: bool,
    #[serde(default, rename = "kind", deserialize_with = "kind")]
    pub names_its_kind: bool,
    /// Only what the guard and the watch read: name, namespace, resource version, labels, the
    /// annotations in [`READ_ANNOTATIONS`], and each owner's kind, name and `controller`. The
    /// rest (uid, timestamps, owners' uids) stays empty.
    #[serde(default, deserialize_with = "metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, deserialize_with = "or_default")]
    pub spec: PodSpec,
    #[serde(default, deserialize_with = "or_default")]
    pub status: PodStatus,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "or_default")]
    pub host_network: bool,
    #[serde(default, deserialize_with = "or_default")]
    pub containers: Vec<Container>,
    #[serde(default, deserialize_with = "or_default")]
    pub init_containers: Vec<Container>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, deserialize_with = "or_default")]
    pub name: String,
    /// Whether an argument is `router` or `waypoint`: how istiod tells a gateway's or a
    /// waypoint's proxy from a sidecar. The arguments themselves are not kept.
    #[serde(default, rename = "args", deserialize_with = "gateway_args")]
    pub gateway_args: bool,
    #[serde(default, deserialize_with = "or_default")]
    pub ports: Vec<ContainerPort>,
    #[serde(default)]
    pub liveness_probe: Option<Probe>,
    #[serde(default)]
    pub readiness_probe: Option<Probe>,
    #[serde(default)]
    pub startup_probe: Option<Probe>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "or_default")]
    pub container_port: i32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    #[serde(default)]
    pub http_get: Option<PortOf<IntOrString>>,
    #[serde(default)]
    pub grpc: Option<PortOf<i32>>,
}

/// A probe's port; a missing or empty one reads as 0, as in the generated API type.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound = "T: Deserialize<'de> + Default")]
pub struct PortOf<T> {
    #[serde(default, deserialize_with = "or_default")]
    pub port: T,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
}

impl k8s_openapi::Resource for PodObject {
    const API_VERSION: &'static str = "v1";
    const GROUP: &'static str = "";
    const KIND: &'static str = "Pod";
    const VERSION: &'static str = "v1";
    const URL_PATH_SEGMENT: &'static str = "pods";
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for PodObject {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A field that may be `null` (as an empty YAML key is) reads as its default.
fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A string compared with the one expected, without allocating it.
struct Expect(&'static str);

impl Visitor<'_> for Expect {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        if v == self.0 {
            Ok(())
        } else {
            Err(E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
}

fn api_version<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_str(Expect("v1")).map(|()| true)
}

fn kind<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_str(Expect("Pod")).map(|()| true)
}

/// Whether a string is a proxy role that is not a sidecar's.
struct GatewayRole;

impl<'de> Visitor<'de> for GatewayRole {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("container arguments (strings)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(v == "router" || v == "waypoint")
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut any = false;
        while let Some(role) = seq.next_element::<Role>()? {
            any |= role.0;
        }
        Ok(any)
    }
}

struct Role(bool);

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Role, D::Error> {
        d.deserialize_str(GatewayRole).map(Role)
    }
}

fn gateway_args<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    d.deserialize_any(GatewayRole)
}

/// The metadata fields the guard and the watch use; the rest (managed fields above all) is
/// skipped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    resource_version: Option<String>,
    #[serde(default)]
    labels: Option<Labels>,
    #[serde(default, deserialize_with = "read_annotations")]
    annotations: Option<Labels>,
    #[serde(default)]
    owner_references: Option<Vec<Owner>>,
}

#[derive(Deserialize)]
struct Owner {
    #[serde(default, deserialize_with = "or_default")]
    kind: String,
    #[serde(default, deserialize_with = "or_default")]
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

fn metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let Some(m) = Option::<Metadata>::deserialize(d)? else {
        return Ok(ObjectMeta::default());
    };
    let owner = |o: Owner| OwnerReference {
        kind: o.kind,
        name: o.name,
        controller: o.controller,
        ..Default::default()
    };
    Ok(ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        labels: m.labels,
        annotations: m.annotations,
        owner_references: m
            .owner_references
            .map(|o| o.into_iter().map(owner).collect()),
        ..Default::default()
    })
}

/// Keeps [`READ_ANNOTATIONS`] only: others can be large (a last applied configuration is the
/// whole object again), and neither their keys nor their values are allocated.
struct ReadAnnotations;

impl<'de> Visitor<'de> for ReadAnnotations {
    type Value = Option<Labels>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = Labels::new();
        while let Some(ReadAnnotation(read)) = map.next_key()? {
            if let Some(key) = read {
                kept.insert(key.to_string(), map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(kept))
    }
}

/// An annotation's key: which of [`READ_ANNOTATIONS`] it is, if any, compared without
/// allocating it.
struct ReadAnnotation(Option<&'static str>);

impl<'de> Deserialize<'de> for ReadAnnotation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ReadAnnotation, D::Error> {
        d.deserialize_str(ReadAnnotationKey).map(ReadAnnotation)
    }
}

struct ReadAnnotationKey;

impl Visitor<'_> for ReadAnnotationKey {
    type Value = Option<&'static str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an annotation's key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(READ_ANNOTATIONS.into_iter().find(|k| *k == v))
    }
}

fn read_annotations<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Labels>, D::Error> {
    d.deserialize_any(ReadAnnotations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_the_guard_reads_and_drops_the_rest() {
        let pod: PodObject = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "n", "resourceVersion": "7",
                "labels": {"app": "a"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                    "traffic.sidecar.istio.io/excludeInboundPorts": "9000"},
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a-1", "uid": "u", "controller": true}]},
            "spec": {"containers": [{"name": "istio-proxy", "args": ["proxy", "router"], "env": [{"name": "X"}]},
                {"name": "app", "ports": [{"name": "http", "containerPort": 80}],
                 "readinessProbe": {"httpGet": {"port": "http"}}}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": []}
        }))
        .unwrap();
        let annotations = pod.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations.len(), 1);
        assert!(annotations.contains_key("traffic.sidecar.istio.io/excludeInboundPorts"));
        assert_eq!(pod.metadata.resource_version.as_deref(), Some("7"));
        let owners = pod.metadata.owner_references.as_ref().unwrap();
        assert_eq!(
            (owners[0].kind.as_str(), owners[0].controller),
            ("ReplicaSet", Some(true))
        );
        assert!(pod.spec.containers[0].gateway_args);
        assert!(!pod.spec.containers[1].gateway_args);
        assert_eq!(pod.spec.containers[1].ports[0].container_port, 80);
        assert_eq!(pod.status.pod_ip.as_deref(), Some("10.0.0.1"));
    }

    #[test]
    fn another_kind_or_version_is_refused() {
        for (api_version, kind) in [("v1", "Service"), ("apps/v1", "Pod")] {
            let value = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "p"}});
            assert!(
                serde_json::from_value::<PodObject>(value).is_err(),
                "{api_version} {kind}"
            );
        }
    }

    #[test]
    fn says_whether_it_named_its_kind() {
        let named: PodObject = serde_json::from_value(json!({"kind": "Pod"})).unwrap();
        let unnamed: PodObject = serde_json::from_value(json!({"metadata": {}})).unwrap();
        assert!(named.names_its_kind && !unnamed.names_its_kind);
    }

    #[test]
    fn empty_fields_read_as_absent() {
        let yaml = "metadata:\n  name: p\n  labels:\n  annotations:\nspec:\n  containers:\n  - name: app\n    args:\n    ports:\nstatus:\n";
        let pod: PodObject = crate::yaml::from_str(yaml).unwrap();
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        assert!(pod.spec.containers[0].ports.is_empty());
    }
}
