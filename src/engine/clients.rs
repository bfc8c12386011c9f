//! Who sends plaintext to a server port (design §4, tiers 1 and 2).

use std::collections::BTreeSet;

use super::mode::namespace_level;
use super::view::View;
use super::{Client, Reason};
use crate::inventory::{Index, Workload, WorkloadId};
use crate::model::service::ServicePort;
use crate::model::{
    pod::DATAPLANE_MODE_LABEL, selector_matches, DestinationRule, Mode, Proxy, Service, TlsMode,
};

/// The captured ports of a server workload; `[None]` for a pod that declares no port at all.
pub fn server_ports(index: &Index, w: &Workload) -> Vec<Option<u16>> {
    let mut ports: BTreeSet<u16> = w.shape.container_ports.iter().map(|(_, p)| *p).collect();
    for svc in index.services_in(&w.namespace) {
        if svc.selects(&w.shape.labels) {
            ports.extend(
                svc.ports
                    .iter()
                    .filter_map(|sp| w.shape.resolve_port(&sp.target)),
            );
        }
    }
    if ports.is_empty() {
        return vec![None];
    }
    ports
        .into_iter()
        .filter(|p| w.shape.captures_inbound(*p))
        .map(Some)
        .collect()
}

/// Every client that sends plaintext to `port` of server workload `w` in this view.
pub fn plaintext_clients(
    view: &View,
    server: WorkloadId,
    w: &Workload,
    port: Option<u16>,
) -> Vec<(Client, Reason)> {
    let index = view.index;
    let mut out = Vec::new();
    for (id, c) in index.workloads() {
        if id == server {
            continue;
        }
        match c.shape.proxy {
            Proxy::None => out.push((workload(c), no_proxy_reason(index, c))),
            Proxy::Ambient if w.shape.proxy == Proxy::Sidecar && !w.shape.accepts_hbone() => {
                out.push((workload(c), Reason::AmbientToSidecar));
            }
            _ => {}
        }
    }
    let Some(port) = port else {
        return out;
    };
    if let Some(probe) = kubelet_probe(w, port) {
        out.push(probe);
    }
    for svc in index.services_in(&w.namespace) {
        if !svc.selects(&w.shape.labels) {
            continue;
        }
        let auto = auto_mtls_plaintext(view, w, svc);
        for sp in svc.ports_to(&w.shape, port) {
            for (id, c) in index.workloads() {
                if id == server || c.shape.proxy != Proxy::Sidecar {
                    continue;
                }
                if let Some(reason) = sidecar_plaintext(view, c, w, svc, sp, port, auto.as_ref()) {
                    out.push((workload(c), reason));
                }
            }
        }
    }
    out
}

fn workload(w: &Workload) -> Client {
    Client::Workload {
        namespace: w.namespace.clone(),
        name: w.name.clone(),
    }
}

fn no_proxy_reason(index: &Index, c: &Workload) -> Reason {
    if c.shape.host_network {
        return Reason::HostNetwork;
    }
    let ambient_intent = match c.shape.label(DATAPLANE_MODE_LABEL) {
        Some("ambient") => true,
        Some("none") => false,
        _ => index
            .namespace(&c.namespace)
            .is_some_and(|ns| ns.wants_ambient()),
    };
    if ambient_intent {
        Reason::AmbientNotEnrolled
    } else {
        Reason::NoProxy
    }
}

fn kubelet_probe(w: &Workload, port: u16) -> Option<(Client, Reason)> {
    let probed = w.shape.proxy == Proxy::Sidecar
        && !w.shape.rewrite_probes
        && w.shape
            .probe_ports
            .iter()
            .any(|p| w.shape.resolve_port(p) == Some(port));
    probed.then(|| {
        (
            Client::Kubelet {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            },
            Reason::KubeletProbe { port },
        )
    })
}

/// Why auto mTLS would send plaintext to this server through this Service, if it would.
fn auto_mtls_plaintext(view: &View, w: &Workload, svc: &Service) -> Option<Reason> {
    let index = view.index;
    if !index.mesh().enable_auto_mtls {
        return Some(Reason::AutoMtlsOff);
    }
    if w.shape.proxy == Proxy::Sidecar && !w.shape.has_istio_tls_label() {
        return Some(Reason::TargetNotLabelled);
    }
    let ns = namespace_level(view, &svc.namespace);
    if ns.mode == Mode::Disable {
        return Some(Reason::NamespaceDisable {
            namespace: svc.namespace.clone(),
            by: ns.by.cloned(),
        });
    }
    if svc.headless {
        let unlabelled = index
            .workloads_in(&svc.namespace)
            .find(|(_, b)| svc.selects(&b.shape.labels) && !b.shape.has_istio_tls_label());
        if let Some((_, backend)) = unlabelled {
            return Some(Reason::HeadlessBackend {
                service: svc.name.clone(),
                backend: backend.name.clone(),
            });
        }
    }
    None
}

/// Why a sidecar client `c` sends plaintext to `w` through `svc`/`sp`, if it does.
fn sidecar_plaintext(
    view: &View,
    c: &Workload,
    w: &Workload,
    svc: &Service,
    sp: &ServicePort,
    port: u16,
    auto: Option<&Reason>,
) -> Option<Reason> {
    let bypass = if svc.headless || svc.cluster_ip.is_none() {
        c.shape.bypasses_outbound(port, None).or_else(|| {
            w.ips()
                .find_map(|ip| c.shape.bypasses_outbound(port, Some(ip)))
        })
    } else {
        c.shape.bypasses_outbound(sp.port, svc.cluster_ip)
    };
    if let Some(annotation) = bypass {
        let port = if svc.headless { port } else { sp.port };
        return Some(Reason::OutboundBypass { annotation, port });
    }
    let domain = &view.index.filters().cluster_domain;
    let dr = find_destination_rule(view, c, &svc.host(domain), &svc.namespace);
    if let Some(dr) = dr {
        if let Some((subset, mode)) = &dr.plaintext_subset {
            return Some(Reason::PlaintextSubset {
                rule: dr.origin.clone(),
                subset: subset.clone(),
                mode: *mode,
            });
        }
        match dr.tls_for_port(sp.port) {
            Some(TlsMode::IstioMutual) => return None,
            Some(mode) => {
                return Some(Reason::DestinationRule {
                    rule: dr.origin.clone(),
                    mode,
                    port: sp.port,
                })
            }
            None => {}
        }
    }
    auto.cloned()
}

/// How well a DestinationRule's host matches `host`: exact beats the longest wildcard.
pub fn host_matches(dr: &DestinationRule, host: &str, domain: &str) -> Option<(bool, usize)> {
    let h = dr.host.as_str();
    if let Some(suffix) = h.strip_prefix('*') {
        return host.ends_with(suffix).then_some((false, suffix.len()));
    }
    let exact = if h.contains('.') {
        h == host
    } else {
        host.strip_prefix(h)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_prefix(dr.origin.namespace.as_str()))
            .and_then(|rest| rest.strip_prefix(".svc."))
            == Some(domain)
    };
    exact.then_some((true, h.len()))
}

/// The rule a sidecar client uses for `host`: its own selector rules, its namespace, the
/// Service's namespace, then the root namespace; the first with a match wins.
fn find_destination_rule<'a>(
    view: &View<'a>,
    c: &Workload,
    host: &str,
    service_ns: &str,
) -> Option<&'a DestinationRule> {
    let domain = view.index.filters().cluster_domain.as_str();
    let root = view.index.mesh().root_namespace.as_str();
    let best = |rules: &mut dyn Iterator<Item = &'a DestinationRule>| {
        let mut best: Option<(&'a DestinationRule, (bool, usize))> = None;
        for dr in rules {
            if let Some(score) = host_matches(dr, host, domain) {
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((dr, score));
                }
            }
        }
        best.map(|(dr, _)| dr)
    };
    let own = c.namespace.as_str();
    let selected = best(&mut view.dest_rules(own).filter(|d| {
        d.workload_selector
            .as_ref()
            .is_some_and(|s| selector_matches(s, &c.shape.labels))
    }));
    if selected.is_some() {
        return selected;
    }
    let unselected = |d: &&DestinationRule| d.workload_selector.is_none();
    if let Some(dr) = best(&mut view.dest_rules(own).filter(unselected)) {
        return Some(dr);
    }
    for ns in [service_ns, root] {
        if ns == own {
            continue;
        }
        let found = best(
            &mut view
                .dest_rules(ns)
                .filter(unselected)
                .filter(|d| d.exported_to(own)),
        );
        if found.is_some() {
            return found;
        }
    }
    None
}
