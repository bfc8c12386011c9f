//! Effective inbound mode of a server port: workload > namespace > mesh (README "How it
//! decides", effective mode).
//!
//! PeerAuthentication follows istiod's `ComposePeerAuthentication`; v1alpha1 Policy and
//! MeshPolicy follow Pilot 1.4. At each level an applicable PeerAuthentication, even one with
//! an UNSET mode, replaces the v1alpha1 policy of that level.

use std::rc::Rc;
use std::sync::Arc;

use super::view::View;
use crate::inventory::{Map, Workload, WorkloadId};
use crate::model::legacy::PortSelector;
use crate::model::{LegacyPolicy, LegacyScope, Mode, Origin, PeerAuthentication};

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
    let root = view.mesh.root_namespace.as_str();
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

/// What a namespace's own rules make of the mesh level.
#[derive(Clone, Copy)]
enum OwnRule<'a> {
    /// A selector-less PeerAuthentication: refines the mesh level (UNSET inherits it).
    PeerAuthn(&'a PeerAuthentication),
    /// A v1alpha1 namespace Policy: replaces the mesh level.
    Legacy(&'a LegacyPolicy),
    Mesh,
}

impl<'a> OwnRule<'a> {
    fn of(view: &View<'a>, namespace: &str) -> OwnRule<'a> {
        let root = view.mesh.root_namespace.as_str();
        if namespace != root {
            if let Some(pa) = namespace_wide(view, namespace) {
                return OwnRule::PeerAuthn(pa);
            }
        }
        view.legacy_policies(namespace)
            .find(|p| p.scope == LegacyScope::Namespace)
            .map_or(OwnRule::Mesh, OwnRule::Legacy)
    }

    fn over(self, mesh: Resolved<'a>) -> Resolved<'a> {
        match self {
            OwnRule::PeerAuthn(pa) => mesh.inherit(pa.mode, &pa.origin),
            OwnRule::Legacy(p) => Resolved {
                mode: p.mode,
                by: Some(&p.origin),
            },
            OwnRule::Mesh => mesh,
        }
    }
}

/// What one namespace gives every port of its workloads in one view, worked out once per
/// review: its namespace-or-mesh mode, which of its workloads a selector PeerAuthentication
/// picks (found through the label index, not by testing every workload against every
/// selector), and whether any v1alpha1 Policy there targets Services.
#[derive(Clone)]
struct Level<'a> {
    own: OwnRule<'a>,
    base: Resolved<'a>,
    /// Workload -> the oldest selector PeerAuthentication of the namespace that selects it,
    /// sorted by workload; shared with the other view of the change.
    selected: Rc<[(WorkloadId, &'a PeerAuthentication)]>,
    legacy_targets: bool,
}

/// Mode resolution in one view, remembering the mesh and namespace levels it has computed.
pub struct ModeResolver<'a> {
    pub view: View<'a>,
    mesh: Resolved<'a>,
    /// Keyed by the workloads' shared copy of each namespace name, so the walk, which goes
    /// namespace by namespace, mostly finds the last level by comparing pointers.
    levels: Vec<(Arc<str>, Level<'a>)>,
    by_namespace: Map<Arc<str>, usize>,
    last: usize,
}

impl<'a> ModeResolver<'a> {
    pub fn new(view: View<'a>) -> ModeResolver<'a> {
        ModeResolver {
            mesh: mesh_level(&view),
            view,
            levels: Vec::new(),
            by_namespace: Map::default(),
            last: 0,
        }
    }

    /// The level of `namespace`, taken from `twin` (the same index in another view of the
    /// same change) when that view has worked it out and the change does not touch it.
    fn level(&mut self, namespace: &Arc<str>, twin: Option<&ModeResolver<'a>>) -> &Level<'a> {
        let same = match self.levels.get(self.last) {
            Some((name, _)) => Arc::ptr_eq(name, namespace) || name == namespace,
            None => false,
        };
        if !same {
            self.last = self.find_level(namespace, twin);
        }
        &self.levels[self.last].1
    }

    /// Out of line: the walk goes namespace by namespace, so [`ModeResolver::level`] mostly
    /// returns the last level and stays small enough to inline.
    #[inline(never)]
    fn find_level(&mut self, namespace: &Arc<str>, twin: Option<&ModeResolver<'a>>) -> usize {
        if let Some(at) = self.by_namespace.get(namespace) {
            return *at;
        }
        let shared = twin.and_then(|t| t.untouched_level(namespace));
        let level = match shared {
            Some(l) => Level {
                base: l.own.over(self.mesh),
                ..l.clone()
            },
            None => self.compute_level(namespace),
        };
        self.levels.push((Arc::clone(namespace), level));
        let at = self.levels.len() - 1;
        self.by_namespace.insert(Arc::clone(namespace), at);
        at
    }

    /// A level this view has worked out, if the reviewed object is not in its namespace:
    /// then every view of the change sees the same rules there.
    fn untouched_level(&self, namespace: &str) -> Option<&Level<'a>> {
        if self.view.touches(namespace) {
            return None;
        }
        let at = self.by_namespace.get(namespace)?;
        Some(&self.levels[*at].1)
    }

    fn compute_level(&self, namespace: &str) -> Level<'a> {
        let view = self.view;
        let mut selected = Vec::new();
        let index = view.index;
        // The namespace's policies are read below whether or not they select anyone.
        let affordable = view.afford_counted(|| {
            1 + index.peer_authns(namespace).len() + index.legacy_policies(namespace).len()
        });
        if namespace != view.mesh.root_namespace && affordable {
            let workloads = index.workloads();
            for pa in view.peer_authns(namespace) {
                let Some(selector) = &pa.selector else {
                    continue;
                };
                let scan = workloads.scan(namespace, selector);
                if !view.afford(scan.reads()) {
                    break;
                }
                selected.extend(scan.matches().map(|(id, _)| (id, pa)));
            }
        }
        // Stable: of the policies selecting a workload, the oldest stays first.
        selected.sort_by_key(|(id, _)| *id);
        selected.dedup_by_key(|(id, _)| *id);
        let legacy_targets = view
            .legacy_policies(namespace)
            .any(|p| matches!(p.scope, LegacyScope::Targets(_)));
        let own = OwnRule::of(&view, namespace);
        Level {
            own,
            base: own.over(self.mesh),
            selected: selected.into(),
            legacy_targets,
        }
    }

    /// The namespace-or-mesh mode: what auto mTLS reads for every Service of the namespace.
    pub fn namespace(&mut self, namespace: &Arc<str>) -> Resolved<'a> {
        self.level(namespace, None).base
    }

    /// The mode of one port of server workload `id`; `None` for a pod without ports.
    pub fn port(&mut self, id: WorkloadId, port: Option<u16>) -> Resolved<'a> {
        self.port_sharing(None, id, port)
    }

    /// [`ModeResolver::port`], reusing what `twin`, a view of the same change, has worked out.
    pub fn port_like(
        &mut self,
        twin: &ModeResolver<'a>,
        id: WorkloadId,
        port: Option<u16>,
    ) -> Resolved<'a> {
        self.port_sharing(Some(twin), id, port)
    }

    fn port_sharing(
        &mut self,
        twin: Option<&ModeResolver<'a>>,
        id: WorkloadId,
        port: Option<u16>,
    ) -> Resolved<'a> {
        let view = self.view;
        let w = view.index.workload(id);
        let level = self.level(&w.namespace, twin);
        let base = level.base;
        let selected = level.selected.binary_search_by_key(&id, |(id, _)| *id);
        if let Some((_, pa)) = selected.ok().map(|at| level.selected[at]) {
            let resolved = base.inherit(pa.mode, &pa.origin);
            return match port.and_then(|p| pa.port_modes.get(&p)) {
                Some(m) => resolved.inherit(*m, &pa.origin),
                None => resolved,
            };
        }
        if !level.legacy_targets || *w.namespace == *view.mesh.root_namespace {
            return base;
        }
        legacy_target(&view, w, port).unwrap_or(base)
    }
}

/// The targeted v1alpha1 Policy for a port: one naming the port wins, then the oldest.
fn legacy_target<'a>(view: &View<'a>, w: &Workload, port: Option<u16>) -> Option<Resolved<'a>> {
    let services = view.index.services_in(&w.namespace);
    if !view.afford_counted(|| view.index.legacy_policies(&w.namespace).len()) {
        return None;
    }
    let mut whole_pod = None;
    for policy in view.legacy_policies(&w.namespace) {
        let LegacyScope::Targets(targets) = &policy.scope else {
            continue;
        };
        if !view.afford(1 + targets.len() * services.len()) {
            return None;
        }
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
