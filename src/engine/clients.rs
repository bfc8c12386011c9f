//! Who sends plaintext to a server port (design §4, tiers 1 and 2).
//!
//! Clients without a proxy, ambient clients and the kubelet do not depend on the policies:
//! they are cut off by exactly the ports a change locks down. Sidecar clients depend on their
//! DestinationRules, so they are judged by class: all namespaces without a rule of their own
//! for the host share one answer; namespaces with such rules, and clients with outbound
//! capture exclusions, are judged on their own.

use std::collections::BTreeSet;

use super::destination::{self, Asker};
use super::mode::Modes;
use super::view::View;
use super::{Client, Hit, Reason, Targets, VerdictBuilder, LISTED_UNMESHED};
use crate::inventory::{Index, Workload, WorkloadId};
use crate::model::service::ServicePort;
use crate::model::{pod::DATAPLANE_MODE_LABEL, Mode, Proxy, Service, TlsMode};

/// Workloads a Service selects.
pub fn selected_by<'a>(
    index: &'a Index,
    svc: &'a Service,
) -> impl Iterator<Item = WorkloadId> + 'a {
    svc.selector
        .iter()
        .flat_map(move |sel| index.workloads().matching(&svc.namespace, sel))
        .map(|(id, _)| id)
}

fn client(w: &Workload) -> Client {
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

/// Tier 1, ambient clients and the kubelet: cut off by every port the change locks down.
/// The first [`LISTED_UNMESHED`] of each population are listed by name, the rest counted.
pub(super) fn without_proxy(index: &Index, hits: &[Hit], out: &mut VerdictBuilder) {
    let locks: Vec<&Hit> = hits.iter().filter(|h| h.locks_down()).collect();
    let workloads = index.workloads();
    let unmeshed = workloads.no_proxy_count();
    if !locks.is_empty() && unmeshed > 0 {
        for hit in &locks {
            out.server(hit, index.workload(hit.id));
        }
        out.verdict.breaks.reserve(unmeshed.min(LISTED_UNMESHED));
        for (_, c) in workloads.no_proxy().take(LISTED_UNMESHED) {
            out.add_to_all(client(c), no_proxy_reason(index, c), Targets::LockedDown);
        }
        out.verdict.unlisted += unmeshed.saturating_sub(LISTED_UNMESHED);
    }
    let without_hbone = |h: &&&Hit| {
        let w = index.workload(h.id);
        w.shape.proxy == Proxy::Sidecar && !w.shape.accepts_hbone()
    };
    let ambient = workloads.ambient_count();
    if ambient > 0 && locks.iter().any(|h| without_hbone(&h)) {
        for hit in locks.iter().filter(without_hbone) {
            out.server(hit, index.workload(hit.id));
        }
        for (_, c) in workloads.ambient().take(LISTED_UNMESHED) {
            out.add_to_all(
                client(c),
                Reason::AmbientToSidecar,
                Targets::LockedDownWithoutHbone,
            );
        }
        out.verdict.unlisted += ambient.saturating_sub(LISTED_UNMESHED);
    }
    for hit in &locks {
        let w = index.workload(hit.id);
        if let Some(port) = hit.port.filter(|p| probed_without_rewrite(w, *p)) {
            let server = out.server(hit, w);
            let kubelet = Client::Kubelet {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            };
            out.add(kubelet, Reason::KubeletProbe { port }, server);
        }
    }
}

fn probed_without_rewrite(w: &Workload, port: u16) -> bool {
    w.shape.proxy == Proxy::Sidecar
        && !w.shape.rewrite_probes
        && w.shape
            .probe_ports
            .iter()
            .any(|p| w.shape.resolve_port(p) == Some(port))
}

/// Why auto mTLS would send plaintext to this server through this Service, if it would.
fn auto_mtls_plaintext(modes: &mut Modes, w: &Workload, svc: &Service) -> Option<Reason> {
    let index = modes.view.index;
    if !index.mesh().enable_auto_mtls {
        return Some(Reason::AutoMtlsOff);
    }
    if w.shape.proxy == Proxy::Sidecar && !w.shape.has_istio_tls_label() {
        return Some(Reason::TargetNotLabelled);
    }
    let ns = modes.namespace(&svc.namespace);
    if ns.mode == Mode::Disable {
        return Some(Reason::NamespaceDisable {
            namespace: svc.namespace.clone(),
            by: ns.by.cloned(),
        });
    }
    if svc.headless {
        let unlabelled = selected_by(index, svc)
            .map(|id| index.workload(id))
            .find(|b| !b.shape.has_istio_tls_label());
        if let Some(backend) = unlabelled {
            return Some(Reason::HeadlessBackend {
                service: svc.name.clone(),
                backend: backend.name.to_string(),
            });
        }
    }
    None
}

/// One Service port of one server, as seen from one view.
struct Route<'s> {
    svc: &'s Service,
    sp: &'s ServicePort,
    host: &'s str,
    auto: Option<Reason>,
}

/// What a sidecar client sends through `route` if it asks as `asker`; `Some` is plaintext.
fn sends_plaintext(view: &View, asker: Asker, route: &Route) -> Option<Reason> {
    let dr = destination::find(view, asker, route.host, &route.svc.namespace);
    if let Some(dr) = dr {
        if let Some((subset, mode)) = &dr.plaintext_subset {
            return Some(Reason::PlaintextSubset {
                rule: dr.origin.clone(),
                subset: subset.clone(),
                mode: *mode,
            });
        }
        match dr.tls_for_port(route.sp.port) {
            Some(TlsMode::IstioMutual) => return None,
            Some(mode) => {
                return Some(Reason::DestinationRule {
                    rule: dr.origin.clone(),
                    mode,
                    port: route.sp.port,
                })
            }
            None => {}
        }
    }
    route.auto.clone()
}

/// Traffic of a client with outbound exclusions that leaves around its sidecar.
fn bypass(c: &Workload, w: &Workload, route: &Route, port: u16) -> Option<Reason> {
    let svc = route.svc;
    let (port, annotation) = if svc.headless || svc.cluster_ip.is_none() {
        let hit = c.shape.bypasses_outbound(port, None).or_else(|| {
            w.ips()
                .find_map(|ip| c.shape.bypasses_outbound(port, Some(ip)))
        });
        (if svc.headless { port } else { route.sp.port }, hit)
    } else {
        (
            route.sp.port,
            c.shape.bypasses_outbound(route.sp.port, svc.cluster_ip),
        )
    };
    annotation.map(|annotation| Reason::OutboundBypass { annotation, port })
}

/// A sidecar client judged on its own (outbound exclusions, or selector rules in its namespace).
fn one_client(view: &View, c: &Workload, w: &Workload, route: &Route, port: u16) -> Option<Reason> {
    bypass(c, w, route, port).or_else(|| {
        let asker = Asker {
            namespace: &c.namespace,
            workload: Some(c),
        };
        sends_plaintext(view, asker, route)
    })
}

/// Tier 2: sidecar clients newly sending plaintext to one STRICT server port.
pub(super) fn with_sidecar(
    before: &mut Modes,
    after: &mut Modes,
    hit: &Hit,
    changed_dr_ns: &BTreeSet<&str>,
    out: &mut VerdictBuilder,
) {
    let index = after.view.index;
    let w = index.workload(hit.id);
    let Some(port) = hit.port else { return };
    for svc in &w.services {
        let host = svc.host.as_str();
        let after_auto = auto_mtls_plaintext(after, w, svc);
        let before_auto = if hit.locks_down() {
            None
        } else {
            auto_mtls_plaintext(before, w, svc)
        };
        for sp in svc.ports_to(&w.shape, port) {
            let now = Route {
                svc,
                sp,
                host,
                auto: after_auto.clone(),
            };
            let was = (!hit.locks_down()).then(|| Route {
                svc,
                sp,
                host,
                auto: before_auto.clone(),
            });
            let judge = Judge {
                before: before.view,
                after: after.view,
                now: &now,
                was: was.as_ref(),
            };
            judge.classes(w, hit, port, changed_dr_ns, out);
        }
    }
}

/// Newly plaintext = plaintext after the change, and not before (for ports STRICT before).
struct Judge<'v, 'r> {
    before: View<'v>,
    after: View<'v>,
    now: &'r Route<'r>,
    was: Option<&'r Route<'r>>,
}

impl Judge<'_, '_> {
    fn newly(&self, judge: impl Fn(&View, &Route) -> Option<Reason>) -> Option<Reason> {
        let reason = judge(&self.after, self.now)?;
        match self.was {
            Some(was) if judge(&self.before, was).is_some() => None,
            _ => Some(reason),
        }
    }

    fn classes(
        &self,
        w: &Workload,
        hit: &Hit,
        port: u16,
        changed_dr_ns: &BTreeSet<&str>,
        out: &mut VerdictBuilder,
    ) {
        let index = self.after.index;
        let svc_ns = self.now.svc.namespace.as_str();
        let root = index.mesh().root_namespace.as_str();
        let mut own: BTreeSet<&str> = index.dr_namespaces_for(self.now.host).collect();
        own.extend(changed_dr_ns.iter().copied());
        // Without a rule for this host in the Service's or the root namespace, clients of the
        // shared class have no rule at all: auto mTLS decides, no lookup needed.
        // (A rule without a namespace, possible in a file inventory, is every client's own.)
        let rules_in_reach = own.contains(svc_ns) || own.contains(root) || own.contains("");
        let uniform = !rules_in_reach
            || (destination::uniform_exports(&self.after, svc_ns)
                && destination::uniform_exports(&self.before, svc_ns));
        let add = |c: &Workload, reason: Reason, out: &mut VerdictBuilder| {
            let server = out.server(hit, w);
            out.add(client(c), reason, server);
        };
        let workloads = index.workloads();
        let eligible = |id: WorkloadId| id != hit.id && !workloads.is_bypasser(id);
        if uniform {
            let shared = Asker {
                namespace: "",
                workload: None,
            };
            let judge = |v: &View, r: &Route| match rules_in_reach {
                true => sends_plaintext(v, shared, r),
                false => r.auto.clone(),
            };
            if let Some(reason) = self.newly(judge) {
                for (id, c) in workloads.sidecars() {
                    if eligible(id) && !own.contains(&*c.namespace) {
                        add(c, reason.clone(), out);
                    }
                }
            }
        } else {
            own.extend(workloads.sidecars().map(|(_, c)| &*c.namespace));
        }
        for ns in own {
            let per_workload = index.has_selector_dest_rules(ns) || changed_dr_ns.contains(ns);
            let members = index
                .workloads_in(ns)
                .filter(|(id, c)| c.shape.proxy == Proxy::Sidecar && eligible(*id));
            if per_workload {
                for (_, c) in members {
                    let asker = Asker {
                        namespace: ns,
                        workload: Some(c),
                    };
                    if let Some(reason) = self.newly(|v, r| sends_plaintext(v, asker, r)) {
                        add(c, reason, out);
                    }
                }
            } else {
                let asker = Asker {
                    namespace: ns,
                    workload: None,
                };
                if let Some(reason) = self.newly(|v, r| sends_plaintext(v, asker, r)) {
                    for (_, c) in members {
                        add(c, reason.clone(), out);
                    }
                }
            }
        }
        for (id, c) in workloads.bypassers() {
            if id != hit.id {
                if let Some(reason) = self.newly(|v, r| one_client(v, c, w, r, port)) {
                    add(c, reason, out);
                }
            }
        }
    }
}
