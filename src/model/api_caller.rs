//! Services kube-apiserver itself calls: admission webhooks, aggregated APIs and CRD conversion
//! webhooks. It speaks TLS to them, never Istio mTLS, so a STRICT port behind one of them cuts
//! the API server off (README: Who sends plaintext).

use serde_json::Value;

use super::ModelError;

/// The kinds whose objects make the API server a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum CallerKind {
    ValidatingWebhookConfiguration,
    MutatingWebhookConfiguration,
    #[serde(rename = "APIService")]
    ApiService,
    CustomResourceDefinition,
}

impl CallerKind {
    pub const ALL: [CallerKind; 4] = [
        CallerKind::ValidatingWebhookConfiguration,
        CallerKind::MutatingWebhookConfiguration,
        CallerKind::ApiService,
        CallerKind::CustomResourceDefinition,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CallerKind::ValidatingWebhookConfiguration => "ValidatingWebhookConfiguration",
            CallerKind::MutatingWebhookConfiguration => "MutatingWebhookConfiguration",
            CallerKind::ApiService => "APIService",
            CallerKind::CustomResourceDefinition => "CustomResourceDefinition",
        }
    }

    pub fn from_group_kind(group: &str, kind: &str) -> Option<CallerKind> {
        CallerKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind && k.group() == group)
    }

    fn group(self) -> &'static str {
        match self {
            CallerKind::ValidatingWebhookConfiguration
            | CallerKind::MutatingWebhookConfiguration => "admissionregistration.k8s.io",
            CallerKind::ApiService => "apiregistration.k8s.io",
            CallerKind::CustomResourceDefinition => "apiextensions.k8s.io",
        }
    }

    /// Where the object keeps its client configs (each with `service` or `url`).
    fn client_configs(self, spec_or_root: &Value) -> Vec<&Value> {
        match self {
            CallerKind::ValidatingWebhookConfiguration
            | CallerKind::MutatingWebhookConfiguration => spec_or_root["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| &w["clientConfig"])
                .collect(),
            // An APIService names its Service directly in its spec.
            CallerKind::ApiService => vec![&spec_or_root["spec"]],
            CallerKind::CustomResourceDefinition => {
                vec![&spec_or_root["spec"]["conversion"]["webhook"]["clientConfig"]]
            }
        }
    }
}

/// A Service port the API server calls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceRef {
    pub namespace: String,
    pub name: String,
    pub port: u16,
}

/// One object that makes the API server call Services.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiCaller {
    pub kind: CallerKind,
    pub name: String,
    pub services: Vec<ServiceRef>,
}

/// The Service a client config names: `service` (port 443 unless given), or a `url` whose host
/// is `<service>.<namespace>.svc` or `.svc.<domain>`.
fn service_ref(config: &Value, domain: &str) -> Option<ServiceRef> {
    let service = &config["service"];
    if let (Some(namespace), Some(name)) = (service["namespace"].as_str(), service["name"].as_str())
    {
        let port = service["port"].as_u64().and_then(|p| u16::try_from(p).ok());
        return Some(ServiceRef {
            namespace: namespace.into(),
            name: name.into(),
            port: port.unwrap_or(443),
        });
    }
    let url = url::Url::parse(config["url"].as_str()?).ok()?;
    let host = url.host_str()?;
    let host = host
        .strip_suffix(&format!(".svc.{domain}"))
        .or_else(|| host.strip_suffix(".svc"))?;
    let (name, namespace) = host.split_once('.')?;
    Some(ServiceRef {
        namespace: namespace.into(),
        name: name.into(),
        port: url.port().unwrap_or(443),
    })
}

impl ApiCaller {
    pub fn from_json(kind: CallerKind, value: &Value, domain: &str) -> Result<Self, ModelError> {
        let name = value["metadata"]["name"].as_str().ok_or_else(|| {
            ModelError::Invalid(format!("{} without metadata.name", kind.as_str()))
        })?;
        let mut services: Vec<ServiceRef> = kind
            .client_configs(value)
            .into_iter()
            .filter_map(|c| service_ref(c, domain))
            .collect();
        services.sort();
        services.dedup();
        Ok(ApiCaller {
            kind,
            name: name.into(),
            services,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refs(kind: CallerKind, value: Value) -> Vec<(String, String, u16)> {
        ApiCaller::from_json(kind, &value, "cluster.local")
            .unwrap()
            .services
            .into_iter()
            .map(|s| (s.namespace, s.name, s.port))
            .collect()
    }

    #[test]
    fn service_references_of_each_kind_with_default_ports_and_urls() {
        let webhook = json!({"metadata": {"name": "policy"}, "webhooks": [
            {"name": "a", "clientConfig": {"service": {"namespace": "foo", "name": "hook"}}},
            {"name": "b", "clientConfig": {"service": {"namespace": "foo", "name": "hook", "port": 8443}}},
            {"name": "c", "clientConfig": {"url": "https://other.bar.svc.cluster.local:9443/validate"}},
            {"name": "d", "clientConfig": {"url": "https://example.com/validate"}}]});
        assert_eq!(
            refs(CallerKind::ValidatingWebhookConfiguration, webhook),
            [
                ("bar".into(), "other".into(), 9443),
                ("foo".into(), "hook".into(), 443),
                ("foo".into(), "hook".into(), 8443)
            ]
        );
        let api = json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"service": {"namespace": "kube-system", "name": "metrics-server"}}});
        assert_eq!(
            refs(CallerKind::ApiService, api),
            [("kube-system".into(), "metrics-server".into(), 443)]
        );
        let local = json!({"metadata": {"name": "v1.apps"}, "spec": {}});
        assert!(refs(CallerKind::ApiService, local).is_empty());
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {"conversion": {
            "strategy": "Webhook", "webhook": {"clientConfig": {"url": "https://conv.foo.svc/convert"}}}}});
        assert_eq!(
            refs(CallerKind::CustomResourceDefinition, crd),
            [("foo".into(), "conv".into(), 443)]
        );
    }
}
