//! Services: how clients address server pods, and which Service ports map to which pod ports.

use std::net::IpAddr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::pod::{NamedPort, PodShape};
use super::{Labels, ModelError};

pub type TargetPort = NamedPort;

#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub target: TargetPort,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// `None` selects nothing (a Service with manually managed endpoints).
    pub selector: Option<Labels>,
    /// `None` for headless Services (`clusterIP: None`).
    pub cluster_ip: Option<IpAddr>,
    pub headless: bool,
    pub ports: Vec<ServicePort>,
    /// Fully qualified host name (`name.namespace.svc.domain`), as DestinationRules and
    /// clients name it.
    pub host: String,
    /// How clients outside the mesh reach the Service's pods, if they can.
    pub exposure: Option<Exposure>,
}

/// A Service open to clients outside the cluster, which never speak Istio mTLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Exposure {
    NodePort,
    LoadBalancer,
    /// A ClusterIP Service with `externalIPs`.
    ExternalIps,
}

impl Exposure {
    pub fn as_str(self) -> &'static str {
        match self {
            Exposure::NodePort => "NodePort",
            Exposure::LoadBalancer => "LoadBalancer",
            Exposure::ExternalIps => "externalIPs",
        }
    }

    fn of(spec: &core::ServiceSpec) -> Option<Exposure> {
        match spec.type_.as_deref() {
            Some("NodePort") => Some(Exposure::NodePort),
            Some("LoadBalancer") => Some(Exposure::LoadBalancer),
            _ if spec
                .external_ips
                .as_ref()
                .is_some_and(|ips| !ips.is_empty()) =>
            {
                Some(Exposure::ExternalIps)
            }
            _ => None,
        }
    }
}

impl Service {
    /// Trims an API Service; `domain` is the cluster domain its host name ends with.
    pub fn from_api(svc: &core::Service, domain: &str) -> Result<Service, ModelError> {
        let name = svc
            .metadata
            .name
            .clone()
            .ok_or_else(|| ModelError::Invalid("Service without metadata.name".into()))?;
        let spec = svc.spec.clone().unwrap_or_default();
        let ip = spec.cluster_ip.as_deref();
        let ports = spec
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                let port = u16::try_from(p.port).ok()?;
                let target = match &p.target_port {
                    None => NamedPort::Number(port),
                    Some(IntOrString::Int(n)) => NamedPort::Number(u16::try_from(*n).ok()?),
                    Some(IntOrString::String(s)) => NamedPort::Name(s.clone()),
                };
                Some(ServicePort {
                    name: p.name.clone(),
                    port,
                    target,
                })
            })
            .collect();
        let namespace = svc.metadata.namespace.clone().unwrap_or_default();
        let exposure = Exposure::of(&spec);
        Ok(Service {
            exposure,
            host: format!("{name}.{namespace}.svc.{domain}"),
            namespace,
            name,
            selector: spec.selector.filter(|s| !s.is_empty()),
            cluster_ip: ip.and_then(|ip| ip.parse().ok()),
            headless: ip == Some("None"),
            ports,
        })
    }

    pub fn selects(&self, labels: &Labels) -> bool {
        self.selector
            .as_ref()
            .is_some_and(|s| super::selector_matches(s, labels))
    }

    /// The Service ports that land on container port `port` of a pod of this shape.
    pub fn ports_to<'a>(
        &'a self,
        shape: &'a PodShape,
        port: u16,
    ) -> impl Iterator<Item = &'a ServicePort> + 'a {
        self.ports
            .iter()
            .filter(move |p| shape.resolve_port(&p.target) == Some(port))
    }
}
