//! The seed scenario and builders for what the tests add to it: foo and bar with sidecars,
//! legacy/sleep without, a PERMISSIVE MeshPolicy, an ISTIO_MUTUAL DestinationRule for
//! httpbin.foo, auto mTLS off.

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};

use crate::engine::{evaluate, Change, Client, Verdict};
use crate::inventory::{file, Filters, Index};
use crate::model::{MeshConfig, Origin, Pod, Rule, RuleKind};

pub(super) fn seed() -> Index {
    file::demo(Filters::default()).unwrap()
}

pub(super) fn auto_mtls(mut index: Index) -> Index {
    index.set_mesh(MeshConfig::default());
    index
}

/// The seed as Istio's defaults leave it: auto mTLS on, and no DestinationRule.
pub(super) fn seed_without_dr() -> Index {
    let mut index = auto_mtls(seed());
    index.remove_rule(&seed_dr_origin());
    index
}

/// [`seed_without_dr`] with httpbin in foo already STRICT.
pub(super) fn strict_httpbin() -> Index {
    with(seed_without_dr(), [aged(strict_httpbin_pa(), 1)])
}

fn rule(api: &str, kind: &str, ns: &str, name: &str, spec: Value) -> Rule {
    let group = api.split('/').next().unwrap();
    let mut meta = json!({"name": name});
    if !ns.is_empty() {
        meta["namespace"] = json!(ns);
    }
    Rule::from_json(
        RuleKind::from_group_kind(group, kind).unwrap(),
        &json!({"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}),
    )
    .unwrap()
}

pub(super) fn aged(mut r: Rule, created: i64) -> Rule {
    match &mut r {
        Rule::PeerAuthentication(p) => p.origin.created = created,
        Rule::Legacy(p) => p.origin.created = created,
        Rule::DestinationRule(d) => d.origin.created = created,
    }
    r
}

pub(super) fn pa(ns: &str, name: &str, spec: Value) -> Rule {
    rule(
        "security.istio.io/v1beta1",
        "PeerAuthentication",
        ns,
        name,
        spec,
    )
}

pub(super) fn policy(ns: &str, name: &str, spec: Value) -> Rule {
    rule("authentication.istio.io/v1alpha1", "Policy", ns, name, spec)
}

pub(super) fn mesh_policy(spec: Value) -> Rule {
    rule(
        "authentication.istio.io/v1alpha1",
        "MeshPolicy",
        "",
        "default",
        spec,
    )
}

pub(super) fn dr(ns: &str, name: &str, spec: Value) -> Rule {
    rule(
        "networking.istio.io/v1alpha3",
        "DestinationRule",
        ns,
        name,
        spec,
    )
}

/// The seed's lock-down: `Policy example-httpbin-strict` on httpbin in foo.
pub(super) fn seed_lockdown() -> Rule {
    policy(
        "foo",
        "example-httpbin-strict",
        json!({"targets": [{"name": "httpbin"}], "peers": [{"mtls": {"mode": "STRICT"}}]}),
    )
}

pub(super) fn seed_dr_origin() -> Origin {
    dr("foo", "example-httpbin-istio-client-mtls", json!({}))
        .origin()
        .clone()
}

pub(super) fn strict_httpbin_pa() -> Rule {
    pa(
        "foo",
        "httpbin",
        json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": {"mode": "STRICT"}}),
    )
}

/// A pod like the seed's, built from typed API objects: an `app` label, one container with
/// port 80, running, with an address. Each method changes one thing.
#[derive(Clone)]
pub(super) struct PodFixture {
    pod: core::Pod,
    workload: String,
}

pub(super) fn pod(ns: &str, app: &str) -> PodFixture {
    let container = core::Container {
        name: app.into(),
        ports: Some(vec![core::ContainerPort {
            container_port: 80,
            ..Default::default()
        }]),
        ..Default::default()
    };
    PodFixture {
        pod: core::Pod {
            metadata: ObjectMeta {
                name: Some(format!("{app}-1")),
                namespace: Some(ns.into()),
                labels: Some([("app".to_string(), app.to_string())].into()),
                ..Default::default()
            },
            spec: Some(core::PodSpec {
                containers: vec![container],
                ..Default::default()
            }),
            status: Some(core::PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some("10.244.9.9".into()),
                ..Default::default()
            }),
        },
        workload: app.into(),
    }
}

impl PodFixture {
    /// An injected sidecar, labelled as the injector labels it.
    pub(super) fn sidecar(self) -> Self {
        self.label("security.istio.io/tlsMode", "istio")
            .container(proxy())
    }

    /// Enrolled in ambient: istio-cni redirects its traffic to ztunnel.
    pub(super) fn ambient(self) -> Self {
        self.annotation("ambient.istio.io/redirection", "enabled")
    }

    pub(super) fn label(mut self, key: &str, value: &str) -> Self {
        let labels = self
            .pod
            .metadata
            .labels
            .get_or_insert_with(Default::default);
        labels.insert(key.into(), value.into());
        self
    }

    pub(super) fn annotation(mut self, key: &str, value: &str) -> Self {
        let notes = self
            .pod
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        notes.insert(key.into(), value.into());
        self
    }

    pub(super) fn named(mut self, name: &str) -> Self {
        self.pod.metadata.name = Some(name.into());
        self
    }

    pub(super) fn container(mut self, container: core::Container) -> Self {
        self.spec().containers.push(container);
        self
    }

    /// `container` in place of all others.
    pub(super) fn only(mut self, container: core::Container) -> Self {
        self.spec().containers = vec![container];
        self
    }

    /// The application container's ports instead of port 80.
    pub(super) fn ports(mut self, ports: &[i32]) -> Self {
        self.spec().containers[0].ports = Some(
            ports
                .iter()
                .map(|&p| core::ContainerPort {
                    container_port: p,
                    ..Default::default()
                })
                .collect(),
        );
        self
    }

    /// An HTTP readiness probe on the application container.
    pub(super) fn probe(mut self, port: i32) -> Self {
        self.spec().containers[0].readiness_probe = Some(core::Probe {
            http_get: Some(core::HTTPGetAction {
                port: IntOrString::Int(port),
                ..Default::default()
            }),
            ..Default::default()
        });
        self
    }

    pub(super) fn host_network(mut self) -> Self {
        self.spec().host_network = Some(true);
        self
    }

    /// In `phase`, without an address.
    pub(super) fn phase(mut self, phase: &str) -> Self {
        self.pod.status = Some(core::PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        self
    }

    pub(super) fn build(self) -> Pod {
        let object = serde_json::to_value(&self.pod).unwrap();
        let mut pod = Pod::read(&serde_json::from_value(object).unwrap()).unwrap();
        pod.workload = self.workload;
        pod
    }

    fn spec(&mut self) -> &mut core::PodSpec {
        self.pod.spec.get_or_insert_with(Default::default)
    }
}

/// An `istio-proxy` container, as the injector adds it.
pub(super) fn proxy() -> core::Container {
    core::Container {
        name: "istio-proxy".into(),
        ..Default::default()
    }
}

/// The seed's pods of httpbin in foo and of sleep in bar.
pub(super) const HTTPBIN_POD: &str = "httpbin-6c8f9d5b7-x7k2p";
pub(super) const BAR_SLEEP_POD: &str = "sleep-7d9b5c8f4-x7k2p";

/// Puts `new` in place of the seed's pod `old` of the same namespace.
pub(super) fn replace_pod(index: &mut Index, old: &str, new: PodFixture) {
    let pod = new.build();
    index.remove_pod(&pod.namespace, old);
    index.upsert_pod(pod);
}

pub(super) fn create(index: &Index, new: &Rule) -> Verdict<'static> {
    evaluate(
        index,
        &Change {
            old: None,
            new: Some(new),
        },
    )
    .into_owned()
}

pub(super) fn update(index: &Index, old: &Rule, new: &Rule) -> Verdict<'static> {
    evaluate(
        index,
        &Change {
            old: Some(old),
            new: Some(new),
        },
    )
    .into_owned()
}

pub(super) fn delete(index: &Index, old: &Rule) -> Verdict<'static> {
    evaluate(
        index,
        &Change {
            old: Some(old),
            new: None,
        },
    )
    .into_owned()
}

pub(super) fn with(mut index: Index, rules: impl IntoIterator<Item = Rule>) -> Index {
    for r in rules {
        index.upsert_rule(r);
    }
    index
}

/// `ns/name: reason-kind` of every broken client, in verdict order.
pub(super) fn broken(v: &Verdict) -> Vec<String> {
    v.breaks
        .iter()
        .map(|b| {
            let (ns, name) = match &b.client {
                Client::Workload { namespace, name } => (&**namespace, name.to_string()),
                Client::Kubelet { namespace, name } => (&**namespace, format!("kubelet:{name}")),
                Client::External {
                    namespace, service, ..
                } => (&**namespace, format!("external:{service}")),
                Client::ApiServer { name, .. } => ("kube-apiserver", name.to_string()),
                Client::Unknown => ("unknown", "unknown".to_string()),
            };
            let reason = serde_json::to_value(&b.reason).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string();
            format!("{ns}/{name}: {reason}")
        })
        .collect()
}
