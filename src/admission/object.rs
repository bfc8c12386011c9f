//! The AdmissionReview as the guard reads it: the envelope and each side's object, with only
//! the fields a decision uses. kube's `AdmissionReview` and `DynamicObject` flatten their type
//! fields, which makes serde buffer the whole body, then each object, before reading it again.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::admission::AdmissionRequest;
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::Deserialize;
use serde_json::Value;

/// An AdmissionReview request as the guard reads it.
pub type Request = AdmissionRequest<Object>;

/// One side of a request: a policy's metadata and spec, or a ConfigMap's data. Every other
/// field of the object is skipped unread.
#[derive(Debug, Clone, Deserialize)]
pub struct Object {
    #[serde(default)]
    pub metadata: ObjectMeta,
    pub spec: Option<Value>,
    pub data: Option<Value>,
}

/// As for kube's `DynamicObject`: the type is known from the request, not from the object.
impl Resource for Object {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The review's envelope, read without flattening; like kube's, it must name its type.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope {
    pub api_version: String,
    pub kind: String,
    pub request: Option<Request>,
}
