//! Who sends plaintext to a server port (README "How it decides", the inventory and client
//! config tiers).
//!
//! Clients without a proxy, ambient clients and the kubelet do not depend on the policies:
//! they are cut off by exactly the ports a change locks down. Sidecar clients depend on their
//! DestinationRules, so they are judged by class: all namespaces without a rule of their own
//! for the host share one answer; namespaces with such rules, and clients with outbound
//! capture exclusions, are judged on their own.

use std::collections::BTreeSet;

use super::budget::afford;
use super::destination::{self, Asker};
use super::mode::ModeResolver;
use super::scope::selected_by;
use super::verdict::{Client, Hit, Reason, Targets, VerdictBuilder, LISTED_UNMESHED};
use super::view::View;
use super::Change;
use crate::inventory::{Index, Route, Workload, WorkloadId};
use crate::model::{Mode, Proxy, Rule, TlsMode};

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
    let ambient_intent = c.ambient_label().unwrap_or_else(|| {
        index
            .namespace(&c.namespace)
            .is_some_and(|ns| ns.wants_ambient())
    });
    if ambient_intent {
        Reason::AmbientNotEnrolled
    } else {
        Reason::NoProxy
    }
}

/// Tier 1, ambient clients and the kubelet: cut off by every port the change locks down,
/// whatever the policies say. The review registers each locked-down port as it walks the
/// servers ([`Unmeshed::lock`]), then names the populations once ([`Unmeshed::finish`]).
pub(super) struct Unmeshed {
    no_proxy: usize,
    ambient: usize,
    locks: bool,
    locks_without_hbone: bool,
}

impl Unmeshed {
    pub(super) fn new(index: &Index) -> Unmeshed {
        Unmeshed {
            no_proxy: index.workloads().no_proxy_count(),
            ambient: index.workloads().ambient_count(),
            locks: false,
            locks_without_hbone: false,
        }
    }

    /// A port `hit` locks down on server `w`: a server of every client without a proxy, of
    /// every ambient client if it does not accept HBONE, and of the kubelet if it probes
    /// the port in plaintext.
    pub(super) fn lock<'a>(
        &mut self,
        index: &Index,
        hit: &Hit<'a>,
        w: &'a Workload,
        out: &mut VerdictBuilder<'a>,
    ) {
        let without_hbone = sidecar_without_hbone(w);
        self.locks = true;
        self.locks_without_hbone |= without_hbone;
        // Under NetworkPolicies a server counts only once a client is found to reach it.
        if !out.reach.is_on() && (self.no_proxy > 0 || (self.ambient > 0 && without_hbone)) {
            out.server(hit, w);
        }
        if let Some(port) = hit.port.filter(|p| probed_without_rewrite(w, *p)) {
            let server = out.server(hit, w);
            let kubelet = Client::Kubelet {
                namespace: w.namespace.clone(),
                name: w.name.clone(),
            };
            out.add(kubelet, Reason::KubeletProbe { port }, server);
        }
        if let Some(port) = hit.port.filter(|_| index.has_outside_callers()) {
            let budget = out.budget;
            if !afford(budget, w.routes.len()) {
                return;
            }
            for route in w.routes_to(port) {
                let svc = &route.service;
                let callers = index.api_callers_of(&svc.namespace, &svc.name, route.port);
                for (kind, name) in callers.take_while(|_| afford(budget, 1)) {
                    let server = out.server(hit, w);
                    let caller = Client::ApiServer {
                        caller: kind,
                        name: std::sync::Arc::clone(name),
                    };
                    out.add(caller, Reason::ApiServerCalls { port: route.port }, server);
                }
                let Some(exposure) = svc.exposure else {
                    continue;
                };
                let server = out.server(hit, w);
                let external = Client::External {
                    namespace: w.namespace.clone(),
                    service: svc.name.as_str().into(),
                    exposure,
                };
                out.add(
                    external,
                    Reason::ExposedOutsideMesh { port: route.port },
                    server,
                );
            }
        }
    }

    /// Lists the first [`LISTED_UNMESHED`] of each population cut off and counts the rest.
    pub(super) fn finish<'a>(
        self,
        index: &'a Index,
        hits: &[Hit<'a>],
        out: &mut VerdictBuilder<'a>,
    ) {
        let workloads = index.workloads();
        if out.reach.is_on() {
            if self.locks && self.no_proxy > 0 {
                let members = workloads
                    .no_proxy()
                    .map(|(_, c)| (c, no_proxy_reason(index, c)));
                reachable(index, hits, members, |_| true, out);
            }
            if self.locks_without_hbone && self.ambient > 0 {
                let members = workloads
                    .ambient()
                    .map(|(_, c)| (c, Reason::AmbientToSidecar));
                reachable(index, hits, members, sidecar_without_hbone, out);
            }
            return;
        }
        if self.locks && self.no_proxy > 0 {
            out.verdict
                .breaks
                .reserve(self.no_proxy.min(LISTED_UNMESHED));
            for (_, c) in workloads.no_proxy().take(LISTED_UNMESHED) {
                out.add_to_all(client(c), no_proxy_reason(index, c), Targets::LockedDown);
            }
            out.verdict.unlisted += self.no_proxy.saturating_sub(LISTED_UNMESHED);
        }
        if self.locks_without_hbone && self.ambient > 0 {
            for (_, c) in workloads.ambient().take(LISTED_UNMESHED) {
                out.add_to_all(
                    client(c),
                    Reason::AmbientToSidecar,
                    Targets::LockedDownWithoutHbone,
                );
            }
            out.verdict.unlisted += self.ambient.saturating_sub(LISTED_UNMESHED);
        }
    }
}

/// A population under NetworkPolicies: each member is cut off from the locked-down servers
/// (those `eligible` for it) it can reach. The first [`LISTED_UNMESHED`] that reach one are
/// listed with exactly those servers; the rest are counted once one reachable server is found.
fn reachable<'a, 'w>(
    index: &'a Index,
    hits: &[Hit<'a>],
    members: impl Iterator<Item = (&'w Workload, Reason)>,
    eligible: impl Fn(&Workload) -> bool,
    out: &mut VerdictBuilder<'a>,
) {
    let locked: Vec<(&Hit<'a>, &Workload)> = hits
        .iter()
        .filter(|h| h.locks_down())
        .map(|h| (h, index.workload(h.id)))
        .filter(|(_, w)| eligible(w))
        .collect();
    let mut listed = 0;
    let budget = out.budget;
    for (c, reason) in members.take_while(|_| afford(budget, 1 + locked.len())) {
        let reached = if listed < LISTED_UNMESHED {
            let reachable: Vec<_> = locked
                .iter()
                .filter(|(h, w)| out.reach.allows(c, w, h.port))
                .collect();
            let before = out.verdict.breaks.len();
            for (h, w) in &reachable {
                let server = out.server(h, w);
                out.add(client(c), reason.clone(), server);
            }
            // Another pod group of a listed workload joins its entry.
            listed += out.verdict.breaks.len() - before;
            !reachable.is_empty()
        } else {
            // The first server it reaches is named, so the message lists every server cut off.
            let first = locked.iter().find(|(h, w)| out.reach.allows(c, w, h.port));
            if let Some((h, w)) = first {
                out.server(h, w);
                if out.unlisted_reached.insert(client(c)) {
                    out.verdict.unlisted += 1;
                }
            }
            first.is_some()
        };
        if !reached {
            out.filtered.insert(client(c));
        }
    }
}

/// A sidecar server an ambient client cannot reach over HBONE: ztunnel sends it plaintext.
fn sidecar_without_hbone(w: &Workload) -> bool {
    w.shape.proxy == Proxy::Sidecar && !w.accepts_hbone()
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
fn auto_mtls_plaintext(modes: &mut ModeResolver, w: &Workload, route: &Route) -> Option<Reason> {
    let index = modes.view.index;
    if !modes.view.mesh.enable_auto_mtls {
        return Some(Reason::AutoMtlsOff);
    }
    if w.shape.proxy == Proxy::Sidecar && !w.has_istio_tls_label() {
        return Some(Reason::TargetNotLabelled);
    }
    // A Service selects pods of its own namespace: the server's.
    let ns = modes.namespace(&w.namespace);
    if ns.mode == Mode::Disable {
        return Some(Reason::NamespaceDisable {
            namespace: w.namespace.to_string(),
            by: ns.by.cloned(),
        });
    }
    if route.headless {
        let svc = &*route.service;
        let unlabelled = selected_by(&modes.view, svc)
            .map(|id| index.workload(id))
            .find(|b| !b.has_istio_tls_label());
        if let Some(backend) = unlabelled {
            return Some(Reason::HeadlessBackend {
                service: svc.name.clone(),
                backend: backend.name.to_string(),
            });
        }
    }
    None
}

/// One Service port of one server, and what auto mTLS sends through it in one view.
struct Path<'s> {
    route: &'s Route,
    auto: Option<Reason>,
}

impl Path<'_> {
    /// Auto mTLS sends mTLS through this route and no rule can turn that into plaintext: only
    /// clients whose traffic leaves around their sidecar can send it.
    fn only_bypassers_can_send_plaintext(&self, index: &Index, rules: &DestRules) -> bool {
        self.auto.is_none() && !rules.may_apply(index, self.route)
    }
}

/// What a sidecar client sends through `path` if it asks as `asker`; `Some` is plaintext.
fn sends_plaintext(view: &View, asker: Asker, path: &Path) -> Option<Reason> {
    let svc = &path.route.service;
    let dr = destination::find(view, asker, &svc.host, &svc.namespace);
    if let Some(dr) = dr {
        if let Some((subset, mode)) = &dr.plaintext_subset {
            return Some(Reason::PlaintextSubset {
                rule: dr.origin.clone(),
                subset: subset.clone(),
                mode: *mode,
            });
        }
        match dr.tls_for_port(path.route.port) {
            Some(TlsMode::IstioMutual) => return None,
            Some(mode) => {
                return Some(Reason::DestinationRule {
                    rule: dr.origin.clone(),
                    mode,
                    port: path.route.port,
                })
            }
            None => {}
        }
    }
    path.auto.clone()
}

/// Traffic of a client with outbound exclusions that leaves around its sidecar.
fn bypass(c: &Workload, w: &Workload, path: &Path, port: u16) -> Option<Reason> {
    let svc = &path.route.service;
    // Only a headless Service is dialled at the pod's own address and port; any other is
    // dialled at its Service port, whether or not the inventory knows its clusterIP.
    let (port, annotation) = if svc.headless {
        let hit = c.shape.bypasses_outbound(port, None).or_else(|| {
            w.ips()
                .find_map(|ip| c.shape.bypasses_outbound(port, Some(ip)))
        });
        (port, hit)
    } else {
        (
            path.route.port,
            c.shape.bypasses_outbound(path.route.port, svc.cluster_ip),
        )
    };
    annotation.map(|annotation| Reason::OutboundBypass { annotation, port })
}

/// A sidecar client judged on its own (outbound exclusions, or selector rules in its namespace).
fn one_client(view: &View, c: &Workload, w: &Workload, path: &Path, port: u16) -> Option<Reason> {
    bypass(c, w, path, port).or_else(|| {
        let asker = Asker {
            namespace: &c.namespace,
            workload: Some(c),
        };
        sends_plaintext(view, asker, path)
    })
}

/// The DestinationRules in play, as far as a review knows before it looks at a server.
pub(super) struct DestRules<'a> {
    /// The reviewed rule's namespace, if it is a DestinationRule: its clients are judged
    /// apart from the shared class.
    changed_ns: BTreeSet<&'a str>,
    /// Whether any rule after the change can make a client send plaintext.
    plaintext_possible: bool,
}

impl<'a> DestRules<'a> {
    /// Whether a rule that can send plaintext may be used for `route`: one exists in the
    /// mesh, and a rule names the route's host, matches it by wildcard or selector, or is
    /// the reviewed one.
    fn may_apply(&self, index: &Index, route: &Route) -> bool {
        self.plaintext_possible
            && (!self.changed_ns.is_empty() || index.dr_namespaces_for(route).next().is_some())
    }

    pub(super) fn new(index: &Index, change: &Change<'a>) -> DestRules<'a> {
        let dest_rule = |r: &Option<&'a Rule>| match r {
            Some(Rule::DestinationRule(d)) => Some(d),
            _ => None,
        };
        let changed = [dest_rule(&change.old), dest_rule(&change.new)];
        DestRules {
            changed_ns: changed
                .iter()
                .flatten()
                .map(|d| d.origin.namespace.as_str())
                .collect(),
            plaintext_possible: index.has_plaintext_dest_rules()
                || changed[1].is_some_and(|d| d.may_send_plaintext()),
        }
    }
}

/// Records that sidecar client `c` is cut off from port `hit` of server `w`.
fn cut_off<'a>(
    out: &mut VerdictBuilder<'a>,
    hit: &Hit<'a>,
    w: &'a Workload,
    c: &Workload,
    reason: Reason,
) {
    if !out.reach.allows(c, w, hit.port) {
        out.filtered.insert(client(c));
        return;
    }
    let server = out.server(hit, w);
    out.add(client(c), reason, server);
}

/// Tier 2: sidecar clients newly sending plaintext to one STRICT server port.
pub(super) fn with_sidecar<'a>(
    before: &mut ModeResolver,
    after: &mut ModeResolver,
    hit: &Hit<'a>,
    w: &'a Workload,
    rules: &DestRules,
    out: &mut VerdictBuilder<'a>,
) {
    let Some(port) = hit.port else { return };
    let index = after.view.index;
    let no_bypassers = index.workloads().bypassers().next().is_none();
    // `routes_to` reads every route of the server to find the port's.
    if !after.view.afford(w.routes.len()) {
        return;
    }
    for route in w.routes_to(port) {
        let now = Path {
            route,
            auto: auto_mtls_plaintext(after, w, route),
        };
        // What a mesh-wide review mostly finds: nobody can send plaintext through this route.
        if no_bypassers && now.only_bypassers_can_send_plaintext(index, rules) {
            continue;
        }
        let was = (!hit.locks_down()).then(|| Path {
            route,
            auto: auto_mtls_plaintext(before, w, route),
        });
        let judge = Judge {
            before: before.view,
            after: after.view,
            now: &now,
            was: was.as_ref(),
        };
        judge.classes(w, hit, port, rules, out);
    }
}

/// Newly plaintext = plaintext after the change, and not before (for ports STRICT before).
struct Judge<'v, 'r> {
    before: View<'v>,
    after: View<'v>,
    now: &'r Path<'r>,
    was: Option<&'r Path<'r>>,
}

impl Judge<'_, '_> {
    fn newly(&self, judge: impl Fn(&View, &Path) -> Option<Reason>) -> Option<Reason> {
        let reason = judge(&self.after, self.now)?;
        match self.was {
            Some(was) if judge(&self.before, was).is_some() => None,
            _ => Some(reason),
        }
    }

    fn classes<'a>(
        &self,
        w: &'a Workload,
        hit: &Hit<'a>,
        port: u16,
        rules: &DestRules,
        out: &mut VerdictBuilder<'a>,
    ) {
        let index = self.after.index;
        if self.now.only_bypassers_can_send_plaintext(index, rules) {
            return self.bypassers(w, hit, port, out);
        }
        // The Service's namespace: a Service selects pods of its own namespace.
        let svc_ns = &*w.namespace;
        let roots = [&self.before, &self.after].map(|v| v.mesh.root_namespace.as_str());
        let mut own: BTreeSet<&str> = index
            .dr_namespaces_for(self.now.route)
            .take_while(|_| self.after.afford(1))
            .collect();
        own.extend(rules.changed_ns.iter().copied());
        // Without a rule for this host in the Service's or a root namespace, clients of the
        // shared class have no rule at all: auto mTLS decides, no lookup needed.
        // (A rule without a namespace, possible in a file inventory, is every client's own.)
        let rules_in_reach =
            own.contains(svc_ns) || roots.iter().any(|r| own.contains(r)) || own.contains("");
        let uniform = !rules_in_reach
            || (destination::uniform_exports(&self.after, svc_ns)
                && destination::uniform_exports(&self.before, svc_ns));
        let add = |c: &Workload, reason: Reason, out: &mut VerdictBuilder<'a>| {
            cut_off(out, hit, w, c, reason)
        };
        let workloads = index.workloads();
        let eligible = |id: WorkloadId| id != hit.id && !workloads.is_bypasser(id);
        if uniform {
            let shared = Asker {
                namespace: "",
                workload: None,
            };
            let judge = |v: &View, r: &Path| match rules_in_reach {
                true => sends_plaintext(v, shared, r),
                false => r.auto.clone(),
            };
            if let Some(reason) = self.newly(judge) {
                for (id, c) in workloads.sidecars().take_while(|_| self.after.afford(1)) {
                    if eligible(id) && !own.contains(&*c.namespace) {
                        add(c, reason.clone(), out);
                    }
                }
            }
        } else {
            let sidecars = workloads.sidecars().take_while(|_| self.after.afford(1));
            own.extend(sidecars.map(|(_, c)| &*c.namespace));
        }
        for ns in own {
            let per_workload = index.has_selector_dest_rules(ns) || rules.changed_ns.contains(ns);
            let members = index
                .workloads_in(ns)
                .take_while(|_| self.after.afford(1))
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
        self.bypassers(w, hit, port, out);
    }

    /// Sidecar clients with outbound exclusions, judged one by one.
    fn bypassers<'a>(
        &self,
        w: &'a Workload,
        hit: &Hit<'a>,
        port: u16,
        out: &mut VerdictBuilder<'a>,
    ) {
        let bypassers = self.after.index.workloads().bypassers();
        for (id, c) in bypassers.take_while(|_| self.after.afford(1)) {
            if id != hit.id {
                if let Some(reason) = self.newly(|v, r| one_client(v, c, w, r, port)) {
                    cut_off(out, hit, w, c, reason);
                }
            }
        }
    }
}
