//! Pods, trimmed to what decides mesh membership, captured ports and client behaviour.

use std::net::IpAddr;
use std::str::FromStr;

use super::pod_object::{Container, PodObject, Probe};
use super::{Labels, ModelError};

pub const PROXY_CONTAINER: &str = "istio-proxy";
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
pub const TUNNEL_LABEL: &str = "networking.istio.io/tunnel";
pub const DATAPLANE_MODE_LABEL: &str = "istio.io/dataplane-mode";
pub(super) const AMBIENT_REDIRECTION: &str = "ambient.istio.io/redirection";
pub(super) const REWRITE_PROBES: &str = "sidecar.istio.io/rewriteAppHTTPProbers";
pub(super) const EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
pub(super) const INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
pub(super) const EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
pub(super) const EXCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
pub(super) const INCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
/// The proxy's own ports: the status port is never captured, the others are not the app's.
const PROXY_PORTS: [u16; 3] = [15020, 15021, 15090];

/// What, if anything, puts a pod's traffic into Istio mTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proxy {
    /// An `istio-proxy` container (classic, gateway) or init container (native sidecar).
    Sidecar,
    /// istio-cni redirected it to ztunnel (`ambient.istio.io/redirection: enabled`).
    Ambient,
    /// No proxy at all: its traffic leaves as the application wrote it.
    None,
}

/// A port named by number or by container port name (Service targetPort, probe port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NamedPort {
    Number(u16),
    Name(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        (a[full] & mask) == (b[full] & mask)
    }
}

impl FromStr for Cidr {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Cidr, ModelError> {
        let bad = || ModelError::Invalid(format!("{s:?} is not an IP range"));
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }
}

/// `*` (everything) or an explicit list.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AllOr<T> {
    All,
    Only(Vec<T>),
}

impl<T: PartialEq> AllOr<T> {
    pub fn includes(&self, item: &T) -> bool {
        match self {
            AllOr::All => true,
            AllOr::Only(items) => items.contains(item),
        }
    }
}

/// What an `istio.io/dataplane-mode` label says of ambient, on a pod or a namespace: `ambient`
/// asks for it, `none` refuses it, and anything else (or no label) says nothing.
pub fn ambient_label(labels: &Labels) -> Option<bool> {
    match labels.get(DATAPLANE_MODE_LABEL).map(String::as_str) {
        Some("ambient") => Some(true),
        Some("none") => Some(false),
        _ => None,
    }
}

/// Everything about a pod that its siblings from one template share: the unit of evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PodShape {
    pub labels: Labels,
    pub proxy: Proxy,
    /// An Istio gateway or waypoint: a client like a sidecar, never a server, since istiod
    /// builds its listeners from Gateway resources, not from PeerAuthentication.
    pub gateway: bool,
    pub host_network: bool,
    /// Non-proxy container ports: (name, number).
    pub container_ports: Vec<(Option<String>, u16)>,
    pub exclude_inbound_ports: Vec<u16>,
    pub include_inbound_ports: AllOr<u16>,
    pub exclude_outbound_ports: Vec<u16>,
    pub exclude_outbound_ranges: Vec<Cidr>,
    pub include_outbound_ranges: AllOr<Cidr>,
    /// httpGet and gRPC probes: the kubelet sends them without a mesh certificate.
    pub probe_ports: Vec<NamedPort>,
    pub rewrite_probes: bool,
}

impl PodShape {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// What the pod's own [`ambient_label`] says; `None` leaves it to the namespace.
    pub fn ambient_label(&self) -> Option<bool> {
        ambient_label(&self.labels)
    }

    pub fn has_istio_tls_label(&self) -> bool {
        self.label(TLS_MODE_LABEL) == Some("istio")
    }

    pub fn accepts_hbone(&self) -> bool {
        self.proxy == Proxy::Ambient || self.label(TUNNEL_LABEL) == Some("http")
    }

    /// A container port by name or number, as Services and probes name them.
    pub fn resolve_port(&self, port: &NamedPort) -> Option<u16> {
        match port {
            NamedPort::Number(n) => Some(*n),
            NamedPort::Name(name) => self
                .container_ports
                .iter()
                .find(|(n, _)| n.as_deref() == Some(name.as_str()))
                .map(|(_, p)| *p),
        }
    }

    /// Whether the proxy captures inbound traffic to this port, so STRICT reaches it.
    pub fn captures_inbound(&self, port: u16) -> bool {
        self.proxy == Proxy::Ambient
            || (!PROXY_PORTS.contains(&port)
                && !self.exclude_inbound_ports.contains(&port)
                && self.include_inbound_ports.includes(&port))
    }

    /// Whether this client's traffic to `ip:port` goes around its sidecar.
    pub fn bypasses_outbound(&self, port: u16, ip: Option<IpAddr>) -> Option<&'static str> {
        if self.exclude_outbound_ports.contains(&port) {
            return Some("excludeOutboundPorts");
        }
        let ip = ip?;
        if self.exclude_outbound_ranges.iter().any(|c| c.contains(ip)) {
            return Some("excludeOutboundIPRanges");
        }
        match &self.include_outbound_ranges {
            AllOr::Only(ranges) if !ranges.iter().any(|c| c.contains(ip)) => {
                Some("includeOutboundIPRanges")
            }
            _ => None,
        }
    }
}

/// One pod: its shape plus what differs between siblings.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// The owning workload (Deployment, StatefulSet, …), or the pod's own name.
    pub workload: String,
    pub ip: Option<IpAddr>,
    /// Running or Pending: only those can send or receive traffic.
    pub active: bool,
    pub shape: PodShape,
}

fn ports_list(s: &str) -> Vec<u16> {
    s.split(',').filter_map(|p| p.trim().parse().ok()).collect()
}

fn ranges_list(s: &str) -> Vec<Cidr> {
    s.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .filter_map(|r| r.parse().ok())
        .collect()
}

fn all_or<T>(value: Option<&String>, parse: fn(&str) -> Vec<T>) -> AllOr<T> {
    match value.map(|v| v.trim()) {
        None | Some("*") => AllOr::All,
        Some(v) => AllOr::Only(parse(v)),
    }
}

fn probe_port(probe: &Probe) -> Option<NamedPort> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    if let Some(http) = &probe.http_get {
        return match &http.port {
            IntOrString::Int(n) => u16::try_from(*n).ok().map(NamedPort::Number),
            IntOrString::String(s) => Some(NamedPort::Name(s.clone())),
        };
    }
    probe
        .grpc
        .as_ref()
        .and_then(|g| u16::try_from(g.port).ok())
        .map(NamedPort::Number)
}

/// The Deployment behind a ReplicaSet is the ReplicaSet's name without its pod-template hash.
fn workload_name(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    let name = meta.name.clone().unwrap_or_default();
    let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.iter().flatten().next())
    else {
        return name;
    };
    let hash = meta
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    match hash {
        Some(hash) if owner.kind == "ReplicaSet" => owner
            .name
            .strip_suffix(hash.as_str())
            .and_then(|n| n.strip_suffix('-'))
            .unwrap_or(&owner.name)
            .to_string(),
        _ => owner.name.clone(),
    }
}

/// Labels Istio puts on the pods of a Gateway API gateway or waypoint.
const GATEWAY_NAME_LABELS: [&str; 2] = [
    "gateway.networking.k8s.io/gateway-name",
    "istio.io/gateway-name",
];

/// Whether the pod's proxy runs as a gateway (`proxy router`) or a waypoint (`proxy waypoint`)
/// rather than a sidecar. istiod builds listeners by proxy type (pilot
/// `networking/core/listener.go` `BuildListeners`: `Router` goes to `buildGatewayListeners` in
/// `gateway.go`, `Waypoint` to `buildWaypointListeners`), and only the sidecar's inbound
/// listeners apply PeerAuthentication.
fn is_gateway(labels: &Labels, containers: &[Container], init: &[Container]) -> bool {
    if GATEWAY_NAME_LABELS.iter().any(|l| labels.contains_key(*l)) {
        return true;
    }
    containers
        .iter()
        .chain(init)
        .any(|c| c.name == PROXY_CONTAINER && c.gateway_args)
}

impl Pod {
    pub fn read(pod: &PodObject) -> Result<Pod, ModelError> {
        let meta = &pod.metadata;
        let name = meta
            .name
            .clone()
            .ok_or_else(|| ModelError::Invalid("Pod without metadata.name".into()))?;
        let labels: Labels = meta.labels.clone().unwrap_or_default();
        let empty = Default::default();
        let annotations = meta.annotations.as_ref().unwrap_or(&empty);
        let spec = &pod.spec;
        let host_network = spec.host_network;
        let is_proxy = |c: &Container| c.name == PROXY_CONTAINER;
        let sidecar =
            spec.containers.iter().any(is_proxy) || spec.init_containers.iter().any(is_proxy);
        let proxy = if host_network {
            Proxy::None
        } else if sidecar {
            Proxy::Sidecar
        } else if annotations.get(AMBIENT_REDIRECTION).map(String::as_str) == Some("enabled") {
            Proxy::Ambient
        } else {
            Proxy::None
        };
        let gateway = is_gateway(&labels, &spec.containers, &spec.init_containers);
        let app_containers = spec.containers.iter().filter(|c| !is_proxy(c));
        let mut container_ports = Vec::new();
        let mut probe_ports = Vec::new();
        for c in app_containers {
            for p in &c.ports {
                if let Ok(port) = u16::try_from(p.container_port) {
                    container_ports.push((p.name.clone(), port));
                }
            }
            for probe in [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
                .into_iter()
                .flatten()
            {
                probe_ports.extend(probe_port(probe));
            }
        }
        let phase = pod.status.phase.as_deref();
        let ip = pod.status.pod_ip.as_deref().and_then(|ip| ip.parse().ok());
        Ok(Pod {
            namespace: meta.namespace.clone().unwrap_or_default(),
            workload: workload_name(meta),
            name,
            ip,
            active: matches!(phase, None | Some("Running") | Some("Pending")),
            shape: PodShape {
                proxy,
                gateway,
                host_network,
                container_ports,
                exclude_inbound_ports: annotations
                    .get(EXCLUDE_INBOUND_PORTS)
                    .map_or_else(Vec::new, |v| ports_list(v)),
                include_inbound_ports: all_or(annotations.get(INCLUDE_INBOUND_PORTS), ports_list),
                exclude_outbound_ports: annotations
                    .get(EXCLUDE_OUTBOUND_PORTS)
                    .map_or_else(Vec::new, |v| ports_list(v)),
                exclude_outbound_ranges: annotations
                    .get(EXCLUDE_OUTBOUND_RANGES)
                    .map_or_else(Vec::new, |v| ranges_list(v)),
                include_outbound_ranges: all_or(
                    annotations.get(INCLUDE_OUTBOUND_RANGES),
                    ranges_list,
                ),
                probe_ports,
                rewrite_probes: annotations.get(REWRITE_PROBES).map(String::as_str)
                    != Some("false"),
                labels,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        Pod::read(&serde_json::from_value(value).unwrap()).unwrap()
    }

    #[test]
    fn proxy_detection() {
        let cases = [
            (
                json!({"containers": [{"name": "app"}, {"name": "istio-proxy"}]}),
                json!({}),
                Proxy::Sidecar,
                "classic sidecar",
            ),
            (
                json!({"containers": [{"name": "app"}], "initContainers": [{"name": "istio-proxy"}]}),
                json!({}),
                Proxy::Sidecar,
                "native sidecar",
            ),
            (
                json!({"containers": [{"name": "app"}]}),
                json!({"ambient.istio.io/redirection": "enabled"}),
                Proxy::Ambient,
                "ambient enrolled",
            ),
            (
                json!({"containers": [{"name": "app"}]}),
                json!({}),
                Proxy::None,
                "no proxy",
            ),
            (
                json!({"hostNetwork": true, "containers": [{"name": "istio-proxy"}]}),
                json!({}),
                Proxy::None,
                "hostNetwork has no proxy",
            ),
        ];
        for (spec, annotations, want, why) in cases {
            let p = pod(
                json!({"metadata": {"name": "p", "namespace": "n", "annotations": annotations}, "spec": spec}),
            );
            assert_eq!(p.shape.proxy, want, "{why}");
        }
    }

    #[test]
    fn deployment_name_from_replicaset_owner() {
        let p = pod(
            json!({"metadata": {"name": "httpbin-5d8f-abcde", "namespace": "foo",
            "labels": {"pod-template-hash": "5d8f"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "httpbin-5d8f", "uid": "u", "controller": true}]}}),
        );
        assert_eq!(p.workload, "httpbin");
        let bare = pod(json!({"metadata": {"name": "sleep", "namespace": "legacy"}}));
        assert_eq!(bare.workload, "sleep");
    }

    #[test]
    fn phase_filter() {
        for (phase, active) in [
            ("Running", true),
            ("Pending", true),
            ("Succeeded", false),
            ("Failed", false),
        ] {
            let p = pod(json!({"metadata": {"name": "p"}, "status": {"phase": phase}}));
            assert_eq!(p.active, active, "{phase}");
        }
    }

    #[test]
    fn capture_annotations() {
        let p = pod(json!({"metadata": {"name": "p", "annotations": {
            "traffic.sidecar.istio.io/excludeInboundPorts": "9000, 9001",
            "traffic.sidecar.istio.io/excludeOutboundPorts": "5432",
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.96.0.0/12",
            "traffic.sidecar.istio.io/includeOutboundIPRanges": "10.0.0.0/8"}},
            "spec": {"containers": [{"name": "istio-proxy"}]}}));
        assert!(!p.shape.captures_inbound(9001));
        assert!(!p.shape.captures_inbound(15020));
        assert!(p.shape.captures_inbound(80));
        assert_eq!(
            p.shape.bypasses_outbound(5432, None),
            Some("excludeOutboundPorts")
        );
        assert_eq!(
            p.shape.bypasses_outbound(80, "10.96.0.10".parse().ok()),
            Some("excludeOutboundIPRanges")
        );
        assert_eq!(
            p.shape.bypasses_outbound(80, "192.168.1.1".parse().ok()),
            Some("includeOutboundIPRanges")
        );
        assert_eq!(p.shape.bypasses_outbound(80, "10.1.0.1".parse().ok()), None);
    }

    #[test]
    fn include_inbound_ports_narrows_capture() {
        let p = pod(json!({"metadata": {"name": "p", "annotations": {
            "traffic.sidecar.istio.io/includeInboundPorts": "80"}},
            "spec": {"containers": [{"name": "istio-proxy"}]}}));
        assert!(p.shape.captures_inbound(80));
        assert!(!p.shape.captures_inbound(8080));
    }

    #[test]
    fn cidr_contains() {
        let c: Cidr = "10.96.0.0/12".parse().unwrap();
        assert!(c.contains("10.111.1.1".parse().unwrap()));
        assert!(!c.contains("10.112.0.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        let host: Cidr = "fd00::1".parse().unwrap();
        assert!(host.contains("fd00::1".parse().unwrap()));
    }
}
