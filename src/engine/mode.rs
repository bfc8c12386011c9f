//! Effective inbound mode of a server port: workload > namespace > mesh (design §3).
//!
//! PeerAuthentication follows istiod's `ComposePeerAuthentication`; v1alpha1 Policy and
//! MeshPolicy follow Pilot 1.4. At each level an applicable PeerAuthentication, even one with
//! an UNSET mode, replaces the v1alpha1 policy of that level.

use super::view::View;
use crate::inventory::{Map, Workload, WorkloadId};
use crate::model::legacy::PortSelector;
use crate::model::{LegacyScope, Mode, Origin, PeerAuthentication};

/// A mode and the policy that decided it (`None`: nothing applies, Istio's PERMISSIVE default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved<'a> {
    pub mode: Mode,
    pub by: Option<&'a Origin>,
}

impl<'a> Resolved<'a> {
    const DEFAULT: Resolved<'static> = Resolved {
        mode: Mode::Permissive,
        by: None,
    };

    /// `UNSET` keeps the parent's mode but still names the policy that applied.
    fn inherit(self, mode: Mode, by: &'a Origin) -> Resolved<'a> {
        Resolved {
            mode: mode.or_inherit(self.mode),
            by: if mode == Mode::Unset {
                self.by
            } else {
                Some(by)
            },
        }
    }
}

/// The oldest selector-less PeerAuthentication of a namespace.
fn namespace_wide<'a>(view: &View<'a>, namespace: &str) -> Option<&'a PeerAuthentication> {
    view.peer_authns(namespace).find(|p| p.selector.is_none())
}

fn mesh_level<'a>(view: &View<'a>) -> Resolved<'a> {
    let root = view.index.mesh().root_namespace.as_str();
    if let Some(pa) = namespace_wide(view, root) {
        return Resolved::DEFAULT.inherit(pa.mode, &pa.origin);
    }
    view.legacy_policies("")
        .find(|p| p.scope == LegacyScope::Mesh)
        .map_or(Resolved::DEFAULT, |p| Resolved {
            mode: p.mode,
            by: Some(&p.origin),
        })
}

fn namespace_level<'a>(view: &View<'a>, mesh: Resolved<'a>, namespace: &str) -> Resolved<'a> {
    let root = view.index.mesh().root_namespace.as_str();
    if namespace != root {
        if let Some(pa) = namespace_wide(view, namespace) {
            return mesh.inherit(pa.mode, &pa.origin);
        }
    }
    view.legacy_policies(namespace)
        .find(|p| p.scope == LegacyScope::Namespace)
        .map_or(mesh, |p| Resolved {
            mode: p.mode,
            by: Some(&p.origin),
        })
}

/// What one namespace gives every port of its workloads in one view, worked out once per
/// review: its namespace-or-mesh mode, which of its workloads a selector PeerAuthentication
/// picks (found through the label index, not by testing every workload against every
/// selector), and whether any v1alpha1 Policy there targets Services.
struct Level<'a> {
    base: Resolved<'a>,
    /// Workload -> the oldest selector PeerAuthentication of the namespace that selects it.
    selected: Map<WorkloadId, &'a PeerAuthentication>,
    legacy_targets: bool,
}

/// Mode resolution in one view, remembering the mesh and namespace levels it has computed.
pub struct Modes<'a> {
    pub view: View<'a>,
    mesh: Resolved<'a>,
    levels: Vec<(String, Level<'a>)>,
    by_namespace: Map<String, usize>,
    /// The last level asked for: a review walks workloads namespace by namespace.
    last: usize,
}

impl<'a> Modes<'a> {
    pub fn new(view: View<'a>) -> Modes<'a> {
        Modes {
            mesh: mesh_level(&view),
            view,
            levels: Vec::new(),
            by_namespace: Map::default(),
            last: 0,
        }
    }

    fn level(&mut self, namespace: &str) -> &Level<'a> {
        let at = match self.levels.get(self.last) {
            Some((name, _)) if name == namespace => self.last,
            _ => match self.by_namespace.get(namespace) {
                Some(at) => *at,
                None => {
                    let level = self.compute_level(namespace);
                    self.levels.push((namespace.to_string(), level));
                    let at = self.levels.len() - 1;
                    self.by_namespace.insert(namespace.to_string(), at);
                    at
                }
            },
        };
        self.last = at;
        &self.levels[at].1
    }

    fn compute_level(&self, namespace: &str) -> Level<'a> {
        let view = self.view;
        let mut selected = Map::default();
        if namespace != view.index.mesh().root_namespace {
            for pa in view.peer_authns(namespace) {
                let Some(selector) = &pa.selector else {
                    continue;
                };
                for (id, _) in view.index.workloads().matching(namespace, selector) {
                    selected.entry(id).or_insert(pa);
                }
            }
        }
        let legacy_targets = view
            .legacy_policies(namespace)
            .any(|p| matches!(p.scope, LegacyScope::Targets(_)));
        Level {
            base: namespace_level(&view, self.mesh, namespace),
            selected,
            legacy_targets,
        }
    }

    /// The namespace-or-mesh mode: what auto mTLS reads for every Service of the namespace.
    pub fn namespace(&mut self, namespace: &str) -> Resolved<'a> {
        self.level(namespace).base
    }

    /// The mode of one port of server workload `id`; `None` for a pod without ports.
    pub fn port(&mut self, id: WorkloadId, port: Option<u16>) -> Resolved<'a> {
        let view = self.view;
        let w = view.index.workload(id);
        let level = self.level(&w.namespace);
        let base = level.base;
        if let Some(pa) = level.selected.get(&id) {
            let resolved = base.inherit(pa.mode, &pa.origin);
            return match port.and_then(|p| pa.port_modes.get(&p)) {
                Some(m) => resolved.inherit(*m, &pa.origin),
                None => resolved,
            };
        }
        if !level.legacy_targets || *w.namespace == *view.index.mesh().root_namespace {
            return base;
        }
        legacy_target(&view, w, port).unwrap_or(base)
    }
}

/// The targeted v1alpha1 Policy for a port: one naming the port wins, then the oldest.
fn legacy_target<'a>(view: &View<'a>, w: &Workload, port: Option<u16>) -> Option<Resolved<'a>> {
    let services = view.index.services_in(&w.namespace);
    let mut whole_pod = None;
    for policy in view.legacy_policies(&w.namespace) {
        let LegacyScope::Targets(targets) = &policy.scope else {
            continue;
        };
        for target in targets {
            let Some(svc) = services
                .iter()
                .find(|s| s.name == target.service && s.selects(&w.shape.labels))
            else {
                continue;
            };
            let resolved = Resolved {
                mode: policy.mode,
                by: Some(&policy.origin),
            };
            if target.ports.is_empty() {
                whole_pod.get_or_insert(resolved);
                continue;
            }
            let Some(port) = port else { continue };
            let names_port = svc.ports_to(&w.shape, port).any(|sp| {
                target.ports.iter().any(|sel| match sel {
                    PortSelector::Number(n) => *n == sp.port,
                    PortSelector::Name(name) => sp.name.as_deref() == Some(name.as_str()),
                })
            });
            if names_port {
                return Some(resolved);
            }
        }
    }
    whole_pod
}
