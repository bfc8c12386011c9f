//! Kubernetes' protobuf encoding, read for the one stream where it pays: the watch of Pods.
//!
//! A cluster's Pods are most of what the API server sends the guard, and encoding them as JSON
//! is most of what it spends doing so: at 100k Pods it streams the list in protobuf in 0.3–0.6×
//! the time it takes in JSON, and the guard parses every byte of the JSON where protobuf lets
//! it step over a field by its length. client-go reads built-in kinds the same
//! way. Only the fields [`PodObject`] keeps are read, into the same type the JSON path fills,
//! so everything after decoding is shared.
//!
//! Field numbers are those of `k8s.io/api/core/v1/generated.proto` and
//! `k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto`. A watch stream is a sequence of
//! frames, each a 4-byte big-endian length and a `WatchEvent`; its object is the `k8s\0`
//! magic and a `runtime.Unknown` naming the kind and holding the object's own encoding.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::model::pod_object::{
    Container, ContainerPort, PodObject, PodSpec, PodStatus, PortOf, Probe, READ_ANNOTATIONS,
};
use crate::model::Labels;

/// The media type the API server streams a watch in when asked for protobuf.
pub const WATCH_MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf;stream=watch";

/// What precedes every object the API server encodes in protobuf.
const MAGIC: &[u8] = b"k8s\0";

/// The annotation of the bookmark that ends a streamed list.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtoError {
    #[error("protobuf message ends inside a field")]
    Truncated,
    #[error("protobuf varint longer than 64 bits")]
    Overlong,
    #[error("protobuf wire type {0} is not used by Kubernetes")]
    WireType(u64),
    #[error("object is not in Kubernetes' protobuf envelope")]
    NoEnvelope,
    #[error("expected a v1 Pod, got {0}")]
    NotAPod(String),
    #[error("watch frame of {0} bytes is over the limit")]
    FrameTooLarge(usize),
}

/// One field of a message: its number and its value, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width number; no field the guard reads has one.
    Fixed,
}

/// The fields of a message in the order they were written.
struct Fields<'a>(&'a [u8]);

fn fields(message: &[u8]) -> Fields<'_> {
    Fields(message)
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.0.len() < n {
            return Err(ProtoError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.take(1)?.first().ok_or(ProtoError::Truncated)?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(ProtoError::Overlong)
    }

    fn field(&mut self) -> Result<(u64, Value<'a>), ProtoError> {
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => self.take(8).map(|_| Value::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| ProtoError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| Value::Fixed)?,
            other => return Err(ProtoError::WireType(other)),
        };
        Ok((key >> 3, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Value<'a>), ProtoError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_err() {
            self.0 = &[];
        }
        Some(field)
    }
}

/// Go strings are bytes; JSON would show invalid UTF-8 replaced, and so does this.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// JSON leaves an empty string out; protobuf writes it. Both read as absent.
fn non_empty(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty()).then(|| text(bytes))
}

/// The last value a message gives a length-delimited field, as protobuf reads a field written
/// twice.
fn last_bytes(message: &[u8], number: u64) -> Result<Option<&[u8]>, ProtoError> {
    let mut last = None;
    for field in fields(message) {
        match field? {
            (n, Value::Bytes(b)) if n == number => last = Some(b),
            _ => {}
        }
    }
    Ok(last)
}

/// The last value a message gives a varint field.
fn last_varint(message: &[u8], number: u64) -> Result<Option<u64>, ProtoError> {
    let mut last = None;
    for field in fields(message) {
        match field? {
            (n, Value::Varint(v)) if n == number => last = Some(v),
            _ => {}
        }
    }
    Ok(last)
}

/// A map entry's key and value.
fn entry(message: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => key = b,
            (2, Value::Bytes(b)) => value = b,
            _ => {}
        }
    }
    Ok((key, value))
}

/// A watch event: its type (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`), the kind its
/// object names, and the object's own encoding.
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub kind: &'a [u8],
    pub object_kind: &'a [u8],
    pub object: &'a [u8],
}

pub fn event(frame: &[u8]) -> Result<Event<'_>, ProtoError> {
    let (mut kind, mut raw): (&[u8], &[u8]) = (&[], &[]);
    for field in fields(frame) {
        match field? {
            (1, Value::Bytes(b)) => kind = b,
            (2, Value::Bytes(extension)) => raw = last_bytes(extension, 1)?.unwrap_or(raw),
            _ => {}
        }
    }
    let (object_kind, object) = unknown(raw)?;
    Ok(Event {
        kind,
        object_kind,
        object,
    })
}

/// The kind an enveloped object names, and its encoding.
fn unknown(raw: &[u8]) -> Result<(&[u8], &[u8]), ProtoError> {
    let body = raw.strip_prefix(MAGIC).ok_or(ProtoError::NoEnvelope)?;
    let (mut kind, mut object): (&[u8], &[u8]) = (&[], &[]);
    for field in fields(body) {
        match field? {
            (1, Value::Bytes(type_meta)) => kind = last_bytes(type_meta, 2)?.unwrap_or(kind),
            (2, Value::Bytes(b)) => object = b,
            _ => {}
        }
    }
    Ok((kind, object))
}

/// A Pod, read as [`PodObject`] reads its JSON.
pub fn pod(message: &[u8]) -> Result<PodObject, ProtoError> {
    let mut pod = PodObject {
        names_its_version: true,
        names_its_kind: true,
        ..PodObject::default()
    };
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => pod.metadata = metadata(b)?,
            (2, Value::Bytes(b)) => pod.spec = spec(b)?,
            (3, Value::Bytes(b)) => pod.status = status(b)?,
            _ => {}
        }
    }
    Ok(pod)
}

fn metadata(message: &[u8]) -> Result<ObjectMeta, ProtoError> {
    let mut meta = ObjectMeta::default();
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => meta.name = non_empty(b),
            (3, Value::Bytes(b)) => meta.namespace = non_empty(b),
            (6, Value::Bytes(b)) => meta.resource_version = non_empty(b),
            (11, Value::Bytes(b)) => {
                let (key, value) = entry(b)?;
                let labels = meta.labels.get_or_insert_with(Labels::new);
                labels.insert(text(key), text(value));
            }
            (12, Value::Bytes(b)) => {
                let (key, value) = entry(b)?;
                let kept = meta.annotations.get_or_insert_with(Labels::new);
                if let Some(key) = READ_ANNOTATIONS.iter().find(|k| k.as_bytes() == key) {
                    kept.insert((*key).to_string(), text(value));
                }
            }
            (13, Value::Bytes(b)) => meta
                .owner_references
                .get_or_insert_with(Vec::new)
                .push(owner(b)?),
            _ => {}
        }
    }
    Ok(meta)
}

fn owner(message: &[u8]) -> Result<OwnerReference, ProtoError> {
    let mut owner = OwnerReference::default();
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => owner.kind = text(b),
            (3, Value::Bytes(b)) => owner.name = text(b),
            (6, Value::Varint(v)) => owner.controller = Some(v != 0),
            _ => {}
        }
    }
    Ok(owner)
}

fn spec(message: &[u8]) -> Result<PodSpec, ProtoError> {
    let mut spec = PodSpec::default();
    for field in fields(message) {
        match field? {
            (2, Value::Bytes(b)) => spec.containers.push(container(b)?),
            (20, Value::Bytes(b)) => spec.init_containers.push(container(b)?),
            (11, Value::Varint(v)) => spec.host_network = v != 0,
            _ => {}
        }
    }
    Ok(spec)
}

fn container(message: &[u8]) -> Result<Container, ProtoError> {
    let mut c = Container::default();
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => c.name = text(b),
            (4, Value::Bytes(arg)) => c.gateway_args |= arg == b"router" || arg == b"waypoint",
            (6, Value::Bytes(b)) => c.ports.push(port(b)?),
            (10, Value::Bytes(b)) => c.liveness_probe = Some(probe(b)?),
            (11, Value::Bytes(b)) => c.readiness_probe = Some(probe(b)?),
            (22, Value::Bytes(b)) => c.startup_probe = Some(probe(b)?),
            _ => {}
        }
    }
    Ok(c)
}

/// An `int32` as protobuf writes it: a negative one sign-extended to 64 bits.
fn int32(v: u64) -> i32 {
    v as i64 as i32
}

fn port(message: &[u8]) -> Result<ContainerPort, ProtoError> {
    let mut port = ContainerPort::default();
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => port.name = non_empty(b),
            (3, Value::Varint(v)) => port.container_port = int32(v),
            _ => {}
        }
    }
    Ok(port)
}

/// A probe; its handler (`httpGet`, `grpc`) is a message of its own in protobuf, inlined in
/// JSON.
fn probe(message: &[u8]) -> Result<Probe, ProtoError> {
    let mut probe = Probe::default();
    for field in fields(message) {
        let (1, Value::Bytes(handler)) = field? else {
            continue;
        };
        for field in fields(handler) {
            match field? {
                (2, Value::Bytes(action)) => probe.http_get = Some(http_get_port(action)?),
                (4, Value::Bytes(action)) => probe.grpc = Some(grpc_port(action)?),
                _ => {}
            }
        }
    }
    Ok(probe)
}

fn http_get_port(message: &[u8]) -> Result<PortOf<IntOrString>, ProtoError> {
    let port = match last_bytes(message, 2)? {
        Some(b) => int_or_string(b)?,
        None => IntOrString::Int(0),
    };
    Ok(PortOf { port })
}

fn int_or_string(message: &[u8]) -> Result<IntOrString, ProtoError> {
    let (mut is_string, mut int, mut string) = (false, 0, String::new());
    for field in fields(message) {
        match field? {
            (1, Value::Varint(v)) => is_string = v == 1,
            (2, Value::Varint(v)) => int = int32(v),
            (3, Value::Bytes(b)) => string = text(b),
            _ => {}
        }
    }
    Ok(if is_string {
        IntOrString::String(string)
    } else {
        IntOrString::Int(int)
    })
}

fn grpc_port(message: &[u8]) -> Result<PortOf<i32>, ProtoError> {
    let port = last_varint(message, 1)?.map_or(0, int32);
    Ok(PortOf { port })
}

fn status(message: &[u8]) -> Result<PodStatus, ProtoError> {
    let mut status = PodStatus::default();
    for field in fields(message) {
        match field? {
            (1, Value::Bytes(b)) => status.phase = non_empty(b),
            (6, Value::Bytes(b)) => status.pod_ip = non_empty(b),
            _ => {}
        }
    }
    Ok(status)
}

/// A bookmark's resource version, and whether it ends a streamed list.
pub fn bookmark(message: &[u8]) -> Result<(String, bool), ProtoError> {
    let (mut version, mut ends_list) = (String::new(), false);
    for field in fields(message) {
        let (1, Value::Bytes(meta)) = field? else {
            continue;
        };
        for field in fields(meta) {
            match field? {
                (6, Value::Bytes(b)) => version = text(b),
                (12, Value::Bytes(b)) => {
                    ends_list |= entry(b)? == (INITIAL_EVENTS_END.as_bytes(), b"true");
                }
                _ => {}
            }
        }
    }
    Ok((version, ends_list))
}

/// The code, reason and message of a `metav1.Status`, as an `ERROR` event carries it.
pub fn api_status(message: &[u8]) -> Result<kube::core::Status, ProtoError> {
    let (mut code, mut reason, mut said) = (0, String::new(), String::new());
    for field in fields(message) {
        match field? {
            (3, Value::Bytes(b)) => said = text(b),
            (4, Value::Bytes(b)) => reason = text(b),
            (6, Value::Varint(v)) => code = int32(v),
            _ => {}
        }
    }
    let code = u16::try_from(code).unwrap_or(500);
    Ok(kube::core::Status::failure(&said, &reason).with_code(code))
}

/// A `metav1.Status` in its envelope, as the body of a refused request.
pub fn enveloped_status(raw: &[u8]) -> Result<kube::core::Status, ProtoError> {
    api_status(unknown(raw)?.1)
}

/// The watch frames in a buffer: each a 4-byte big-endian length and that many bytes.
/// `None` until a whole frame is in; a length over `limit` is an error rather than a reason
/// to keep reading.
pub fn frame(
    buffer: &mut bytes::BytesMut,
    limit: usize,
) -> Result<Option<bytes::Bytes>, ProtoError> {
    let Some(head) = buffer.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > limit {
        return Err(ProtoError::FrameTooLarge(len));
    }
    if buffer.len() < 4 + len {
        return Ok(None);
    }
    let _ = buffer.split_to(4);
    Ok(Some(buffer.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pod;

    /// A namespace's streamed list from kube-apiserver 1.34, one Pod (`pod-watch.yaml`) and
    /// the bookmark that ends the list, in protobuf and in JSON.
    const WATCH_PB: &[u8] = include_bytes!("../../tests/data/pod-watch.pb");
    const WATCH_JSON: &str = include_str!("../../tests/data/pod-watch.json");

    fn frames(mut stream: &[u8]) -> Vec<bytes::Bytes> {
        let mut buffer = bytes::BytesMut::from(std::mem::take(&mut stream));
        std::iter::from_fn(|| frame(&mut buffer, 1 << 20).unwrap()).collect()
    }

    fn json_pod() -> PodObject {
        let line = WATCH_JSON.lines().next().unwrap();
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        serde_json::from_value(event["object"].clone()).unwrap()
    }

    #[test]
    fn a_pod_reads_the_same_from_protobuf_as_from_json() {
        let frames = frames(WATCH_PB);
        let added = event(&frames[0]).unwrap();
        assert_eq!(
            (added.kind, added.object_kind),
            (&b"ADDED"[..], &b"Pod"[..])
        );
        let from_pb = pod(added.object).unwrap();
        let from_json = json_pod();
        assert_eq!(format!("{from_pb:?}"), format!("{from_json:?}"));
        assert_eq!(Pod::read(&from_pb).unwrap(), Pod::read(&from_json).unwrap());
    }

    #[test]
    fn every_field_the_guard_reads_is_read() {
        let pod = pod(event(&frames(WATCH_PB)[0]).unwrap().object).unwrap();
        let meta = &pod.metadata;
        assert_eq!(meta.name.as_deref(), Some("httpbin-7d4f9c8b5-abcde"));
        assert_eq!(meta.namespace.as_deref(), Some("fixture"));
        assert!(meta.resource_version.is_some());
        assert_eq!(meta.labels.as_ref().unwrap()["app"], "httpbin");
        let annotations: Vec<_> = meta.annotations.as_ref().unwrap().keys().collect();
        assert_eq!(
            annotations,
            [
                "traffic.sidecar.istio.io/excludeInboundPorts",
                "traffic.sidecar.istio.io/includeOutboundIPRanges"
            ]
        );
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("ReplicaSet", Some(true))
        );
        assert!(pod.spec.host_network);
        let proxy = &pod.spec.init_containers[0];
        assert_eq!(
            (proxy.name.as_str(), proxy.gateway_args),
            ("istio-proxy", false)
        );
        assert_eq!(proxy.ports[0].container_port, 15090);
        let [app, gateway] = &pod.spec.containers[..] else {
            panic!("two containers: {:?}", pod.spec.containers);
        };
        assert!(gateway.gateway_args && !app.gateway_args);
        assert_eq!(app.ports[0].name.as_deref(), Some("http"));
        assert_eq!(
            (app.ports[1].name.as_deref(), app.ports[1].container_port),
            (None, 9090)
        );
        let port = |p: &Option<Probe>| p.as_ref().and_then(|p| p.http_get.clone()).map(|h| h.port);
        assert_eq!(
            port(&app.readiness_probe),
            Some(IntOrString::String("http".into()))
        );
        assert_eq!(port(&app.liveness_probe), Some(IntOrString::Int(8080)));
        let grpc = app.startup_probe.as_ref().and_then(|p| p.grpc.as_ref());
        assert_eq!(grpc.map(|g| g.port), Some(9090));
        assert_eq!(pod.status.phase.as_deref(), Some("Running"));
        assert_eq!(pod.status.pod_ip.as_deref(), Some("10.1.2.3"));
    }

    #[test]
    fn the_bookmark_ending_a_list_says_so_and_gives_its_version() {
        let frames = frames(WATCH_PB);
        assert_eq!(frames.len(), 2);
        let mark = event(&frames[1]).unwrap();
        assert_eq!(mark.kind, b"BOOKMARK");
        let (version, ends_list) = bookmark(mark.object).unwrap();
        assert!(ends_list);
        let added = event(&frames[0]).unwrap();
        let listed = pod(added.object)
            .unwrap()
            .metadata
            .resource_version
            .unwrap();
        let number = |v: &str| v.parse::<u64>().unwrap();
        assert!(number(&version) >= number(&listed), "{version} {listed}");
        assert!(!bookmark(added.object).unwrap().1);
    }

    #[test]
    fn an_error_event_and_a_refusal_give_their_code_and_message() {
        let frames = frames(include_bytes!("../../tests/data/watch-expired.pb"));
        let error = event(&frames[0]).unwrap();
        assert_eq!(
            (error.kind, error.object_kind),
            (&b"ERROR"[..], &b"Status"[..])
        );
        let status = api_status(error.object).unwrap();
        assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        assert!(
            status.message.contains("too old resource version"),
            "{status:?}"
        );
        let refused =
            enveloped_status(include_bytes!("../../tests/data/watch-refused.pb")).unwrap();
        assert_eq!(refused.code, 422);
        assert!(refused.message.contains("sendInitialEvents"), "{refused:?}");
    }

    #[test]
    fn a_frame_is_given_only_whole_and_only_under_the_limit() {
        let mut buffer = bytes::BytesMut::from(&[0, 0, 0, 3, b'a', b'b'][..]);
        assert_eq!(frame(&mut buffer, 8), Ok(None));
        buffer.extend_from_slice(b"c\0\0");
        assert_eq!(frame(&mut buffer, 8).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(frame(&mut buffer, 8), Ok(None));
        let mut large = bytes::BytesMut::from(&[0, 0, 1, 0][..]);
        assert_eq!(frame(&mut large, 255), Err(ProtoError::FrameTooLarge(256)));
    }

    #[test]
    fn a_broken_message_is_an_error_not_a_pod() {
        let whole = event(&frames(WATCH_PB)[0]).unwrap().object.to_vec();
        assert_eq!(
            pod(&whole[..whole.len() - 1]).err(),
            Some(ProtoError::Truncated)
        );
        // Field 1 with wire type 3 (a group), which Kubernetes never writes.
        assert_eq!(pod(&[0x0b]).err(), Some(ProtoError::WireType(3)));
        assert_eq!(
            event(b"\x12\x02\x0a\x00").err(),
            Some(ProtoError::NoEnvelope)
        );
        // A varint longer than 64 bits.
        let overlong = [[0x08].as_slice(), &[0xff; 11]].concat();
        assert_eq!(pod(&overlong).err(), Some(ProtoError::Overlong));
    }

    #[test]
    fn an_empty_string_reads_as_absent_as_json_leaves_it_out() {
        // metadata { name: "" } and status { phase: "" }, as protobuf writes them.
        let pod = pod(&[0x0a, 0x02, 0x0a, 0x00, 0x1a, 0x02, 0x0a, 0x00]).unwrap();
        assert_eq!((pod.metadata.name, pod.status.phase), (None, None));
    }
}
