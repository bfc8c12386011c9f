//! The AdmissionReview as the guard reads it: the envelope, the request and each side's object,
//! with only the fields a decision, its answer and the authorization check use. Everything else
//! the API server sends (the resource and subresource, the request's original kind, `dryRun`,
//! options, an object's managed fields and status) is skipped unread, without allocating.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::core::admission::Operation;
use kube::core::GroupVersionKind;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;

/// One `admission.k8s.io/v1` AdmissionRequest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    /// Echoed in the answer: the API server matches the two by it.
    pub uid: String,
    pub kind: GroupVersionKind,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    pub operation: Operation,
    /// Who asked, for the authorization check of break-glass and mode labels.
    pub user_info: UserInfo,
    /// The object as it will be; absent for a DELETE. Boxed, as is `old_object`, so that a
    /// request moved out of the parser (through the envelope, into its `Arc`) is a few hundred
    /// bytes.
    pub object: Option<Box<Object>>,
    /// The object as it was; present for an UPDATE and a DELETE.
    pub old_object: Option<Box<Object>>,
}

/// One side of a request: a policy's metadata and spec, or a ConfigMap's data.
#[derive(Debug, Clone, Deserialize)]
pub struct Object {
    #[serde(default, deserialize_with = "read_meta")]
    pub metadata: ObjectMeta,
    /// Kept as text: it is read into the typed rule directly, and into a tree only when an
    /// update's change is summarised.
    pub spec: Option<Box<RawValue>>,
    pub data: Option<Value>,
}

/// The metadata a decision reads: an object's identity, its labels and annotations (mode,
/// break-glass) and its age (Istio's order among policies).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    creation_timestamp: Option<Time>,
}

fn read_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    let meta = Meta::deserialize(d)?;
    Ok(ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        labels: meta.labels,
        annotations: meta.annotations,
        creation_timestamp: meta.creation_timestamp,
        ..ObjectMeta::default()
    })
}

/// The review's envelope; like kube's, it must name its type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope<'a> {
    #[serde(borrow)]
    pub api_version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    pub request: Option<Request>,
}
