//! Pods grouped into workloads, with the lookups a review needs kept up to date on every
//! change: by namespace, by label, and by what each workload is as a client.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use smallvec::SmallVec;

use super::{HostKeys, Map};
use crate::model::{selector_matches, Labels, Pod, PodShape, Proxy, Service};

/// Pods of one workload that share a shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// Shared by the workloads of a namespace, and by the verdicts that name it.
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub shape: PodShape,
    /// Active (Running or Pending) pods.
    pub pods: usize,
    /// The IPs of those pods that have one.
    ips: Vec<IpAddr>,
    /// How sidecar clients address it: each port of a Service of its namespace that selects
    /// it, with the container port it lands on. Kept by the index on Service and pod events,
    /// so a review neither matches selectors nor resolves named ports.
    pub routes: SmallVec<[Route; 1]>,
    /// The ports its proxy captures, from its containers and its Services' target ports;
    /// `[None]` for pods that declare no port at all.
    pub ports: SmallVec<[Option<u16>; 2]>,
    /// Label facts a review asks of every server or listed client, read from the shape once.
    accepts_hbone: bool,
    tls_labelled: bool,
    ambient_label: Option<bool>,
    /// Another pod group of the workload exists or has existed beside this one; `false`
    /// means none has, so a verdict can give it an entry without looking for one.
    has_siblings: bool,
}

/// A Service port and the container port of a workload it lands on.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The container port.
    pub target: u16,
    /// The Service port.
    pub port: u16,
    /// The Service's `headless`, read here so a review does not follow the pointer.
    pub headless: bool,
    /// The Service host's key in the index of DestinationRule hosts.
    pub host_key: u64,
    pub service: Arc<Service>,
}

impl Workload {
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ips.iter().copied()
    }

    /// The routes that land on container port `port`.
    pub fn routes_to(&self, port: u16) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(move |r| r.target == port)
    }

    /// Whether other pod groups of this workload (same namespace and name) may be in the index.
    pub fn may_have_siblings(&self) -> bool {
        self.has_siblings
    }

    /// Ambient clients reach it over HBONE: ambient itself, or a sidecar labelled for it.
    pub fn accepts_hbone(&self) -> bool {
        self.accepts_hbone
    }

    /// Labelled `security.istio.io/tlsMode=istio`, which auto mTLS looks for.
    pub fn has_istio_tls_label(&self) -> bool {
        self.tls_labelled
    }

    /// See [`PodShape::ambient_label`]; read once, as a review asks it of every client listed.
    pub fn ambient_label(&self) -> Option<bool> {
        self.ambient_label
    }

    fn set_services(&mut self, services: &[Arc<Service>], keys: &HostKeys) {
        self.routes = routes(&self.shape, services, keys);
        self.ports = captured_ports(&self.shape, &self.routes);
    }

    /// A sidecar client whose own annotations can send some traffic around its proxy.
    pub fn has_outbound_exclusions(&self) -> bool {
        let s = &self.shape;
        !s.exclude_outbound_ports.is_empty()
            || !s.exclude_outbound_ranges.is_empty()
            || s.include_outbound_ranges != crate::model::pod::AllOr::All
    }
}

/// The ports of `services` that land on a pod of this shape, in the Services' order.
fn routes(shape: &PodShape, services: &[Arc<Service>], keys: &HostKeys) -> SmallVec<[Route; 1]> {
    let mut routes = SmallVec::new();
    for service in services {
        let host_key = keys.of(&service.host);
        for sp in &service.ports {
            if let Some(target) = shape.resolve_port(&sp.target) {
                routes.push(Route {
                    target,
                    port: sp.port,
                    headless: service.headless,
                    host_key,
                    service: Arc::clone(service),
                });
            }
        }
    }
    routes
}

/// The captured ports of a pod shape behind `routes`; `[None]` when it declares none.
fn captured_ports(shape: &PodShape, routes: &[Route]) -> SmallVec<[Option<u16>; 2]> {
    let mut ports: Vec<u16> = shape.container_ports.iter().map(|(_, p)| *p).collect();
    ports.extend(routes.iter().map(|r| r.target));
    if ports.is_empty() {
        return smallvec::smallvec![None];
    }
    ports.sort_unstable();
    ports.dedup();
    ports
        .into_iter()
        .filter(|p| shape.captures_inbound(*p))
        .map(Some)
        .collect()
}

pub type WorkloadId = usize;

/// A label of a namespace, as the label index keys it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct LabelKey {
    namespace: Arc<str>,
    key: Box<str>,
    value: Box<str>,
}

/// A [`LabelKey`] borrowed, to look one up without building it. Hashes like it: same fields,
/// same order, and `str`, `Box<str>` and `Arc<str>` hash alike.
#[derive(Hash)]
struct LabelRef<'a> {
    namespace: &'a str,
    key: &'a str,
    value: &'a str,
}

impl hashbrown::Equivalent<LabelKey> for LabelRef<'_> {
    fn equivalent(&self, k: &LabelKey) -> bool {
        *k.namespace == *self.namespace && *k.key == *self.key && *k.value == *self.value
    }
}

fn label_ref<'a>(namespace: &'a str, key: &'a str, value: &'a str) -> LabelRef<'a> {
    LabelRef {
        namespace,
        key,
        value,
    }
}

/// A pod as the index remembers it: its workload and IP.
type PodEntry = (WorkloadId, Option<IpAddr>);

#[derive(Debug, Default)]
pub struct Workloads {
    slots: Vec<Option<Workload>>,
    free: Vec<WorkloadId>,
    /// Its keys are the one copy of each namespace name the workloads share.
    by_namespace: Map<Arc<str>, Vec<WorkloadId>>,
    /// (namespace, label key, label value) -> workloads, one probe per lookup.
    by_label: hashbrown::HashMap<LabelKey, Vec<WorkloadId>, foldhash::fast::RandomState>,
    /// Namespace -> pod name -> its workload and IP: the one place a pod's name is kept.
    pods: Map<Arc<str>, Map<Box<str>, PodEntry>>,
    pod_count: usize,
    /// Ordered by namespace and name, so the first few are the ones a message lists.
    no_proxy: BTreeSet<(Arc<str>, Arc<str>, WorkloadId)>,
    ambient: BTreeSet<(Arc<str>, Arc<str>, WorkloadId)>,
    sidecars: BTreeSet<WorkloadId>,
    /// Sidecar workloads with outbound capture exclusions: judged one by one.
    bypassers: BTreeSet<WorkloadId>,
}

/// The workloads a selector's match will read, known before it reads them.
pub struct Scan<'a> {
    workloads: &'a Workloads,
    read: &'a [WorkloadId],
    selector: &'a Labels,
}

impl<'a> Scan<'a> {
    /// How many workloads the match reads, whatever it finds.
    pub fn reads(&self) -> usize {
        self.read.len()
    }

    pub fn matches(self) -> impl Iterator<Item = (WorkloadId, &'a Workload)> + 'a {
        let Scan {
            workloads,
            read,
            selector,
        } = self;
        // A one-label selector is its posting list: no workload's labels need reading.
        let verify = selector.len() > 1;
        read.iter()
            .map(move |id| (*id, workloads.get(*id)))
            .filter(move |(_, w)| !verify || selector_matches(selector, &w.shape.labels))
    }
}

impl Workloads {
    pub fn get(&self, id: WorkloadId) -> &Workload {
        self.slots[id]
            .as_ref()
            .expect("workload ids handed out by the index are live")
    }

    pub fn iter(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, w)| w.as_ref().map(|w| (id, w)))
    }

    pub fn count(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Every workload id is below it.
    pub fn id_bound(&self) -> usize {
        self.slots.len()
    }

    pub fn pod_count(&self) -> usize {
        self.pod_count
    }

    /// (namespace, name) of every pod.
    pub fn pod_keys(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pods
            .iter()
            .flat_map(|(ns, names)| names.keys().map(move |name| (&**ns, &**name)))
    }

    pub fn in_namespace(&self, namespace: &str) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.by_namespace
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|id| (*id, self.get(*id)))
    }

    /// Workloads of a namespace whose labels include `selector`, through the rarest label;
    /// an empty selector matches the whole namespace.
    pub fn matching<'a>(
        &'a self,
        namespace: &str,
        selector: &'a Labels,
    ) -> impl Iterator<Item = (WorkloadId, &'a Workload)> + 'a {
        self.scan(namespace, selector).matches()
    }

    /// [`Workloads::matching`] before it reads anything: the rarest label's posting list (the
    /// namespace for an empty selector), whose length is the match's work.
    pub fn scan<'a>(&'a self, namespace: &str, selector: &'a Labels) -> Scan<'a> {
        let read = selector
            .iter()
            .map(|(k, v)| {
                let label = label_ref(namespace, k, v);
                self.by_label.get(&label).map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|ids| ids.len())
            .unwrap_or_else(|| self.by_namespace.get(namespace).map_or(&[], Vec::as_slice));
        Scan {
            workloads: self,
            read,
            selector,
        }
    }

    /// Clients with no proxy at all, by namespace and name.
    pub fn no_proxy(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.no_proxy.iter().map(|(_, _, id)| (*id, self.get(*id)))
    }

    pub fn no_proxy_count(&self) -> usize {
        self.no_proxy.len()
    }

    /// Ambient-enrolled clients, by namespace and name.
    pub fn ambient(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.ambient.iter().map(|(_, _, id)| (*id, self.get(*id)))
    }

    pub fn ambient_count(&self) -> usize {
        self.ambient.len()
    }

    pub fn sidecars(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.sidecars.iter().map(|id| (*id, self.get(*id)))
    }

    pub fn bypassers(&self) -> impl Iterator<Item = (WorkloadId, &Workload)> {
        self.bypassers.iter().map(|id| (*id, self.get(*id)))
    }

    pub fn is_bypasser(&self, id: WorkloadId) -> bool {
        self.bypassers.contains(&id)
    }

    /// Files a workload under its client role (`add`) or takes it out.
    fn set_role(&mut self, id: WorkloadId, w: &Workload, add: bool) {
        let by_name = match w.shape.proxy {
            Proxy::None => Some(&mut self.no_proxy),
            Proxy::Ambient => Some(&mut self.ambient),
            Proxy::Sidecar => None,
        };
        if let Some(by_name) = by_name {
            let key = (w.namespace.clone(), w.name.clone(), id);
            if add {
                by_name.insert(key);
            } else {
                by_name.remove(&key);
            }
            return;
        }
        let set = match w.shape.proxy {
            Proxy::Sidecar if w.has_outbound_exclusions() => {
                if add {
                    self.bypassers.insert(id);
                } else {
                    self.bypassers.remove(&id);
                }
                &mut self.sidecars
            }
            _ => &mut self.sidecars,
        };
        if add {
            set.insert(id);
        } else {
            set.remove(&id);
        }
    }

    /// Sets which Services select workload `id`, and with them its captured ports.
    pub(super) fn set_services(
        &mut self,
        id: WorkloadId,
        services: &[Arc<Service>],
        keys: &HostKeys,
    ) {
        if let Some(w) = self.slots[id].as_mut() {
            w.set_services(services, keys);
        }
    }

    /// Adds or replaces a pod, in the workload of its shape; returns the workload's id if it
    /// is new.
    pub fn insert(&mut self, pod: Pod) -> Option<WorkloadId> {
        self.remove(&pod.namespace, &pod.name);
        let mut siblings = false;
        let existing = self
            .by_namespace
            .get(pod.namespace.as_str())
            .and_then(|ids| {
                ids.iter().copied().find(|id| {
                    let w = self.get(*id);
                    let sibling = *w.name == *pod.workload;
                    siblings |= sibling;
                    sibling && w.shape == pod.shape
                })
            });
        let (id, created) = match existing {
            Some(id) => (id, None),
            None => {
                let id = self.create(&pod);
                if siblings {
                    self.mark_siblings(&pod.namespace, &pod.workload);
                }
                (id, Some(id))
            }
        };
        let Some(w) = self.slots[id].as_mut() else {
            return created;
        };
        w.pods += 1;
        w.ips.extend(pod.ip);
        let names = self.pods.entry(Arc::clone(&w.namespace)).or_default();
        names.insert(pod.name.into_boxed_str(), (id, pod.ip));
        self.pod_count += 1;
        created
    }

    /// Marks every pod group of workload `name` as having siblings.
    fn mark_siblings(&mut self, namespace: &str, name: &str) {
        for id in self.by_namespace.get(namespace).into_iter().flatten() {
            if let Some(w) = self.slots[*id].as_mut().filter(|w| *w.name == *name) {
                w.has_siblings = true;
            }
        }
    }

    fn create(&mut self, pod: &Pod) -> WorkloadId {
        let namespace = match self.by_namespace.get_key_value(pod.namespace.as_str()) {
            Some((ns, _)) => Arc::clone(ns),
            None => Arc::from(pod.namespace.as_str()),
        };
        let w = Workload {
            namespace: Arc::clone(&namespace),
            name: Arc::from(pod.workload.as_str()),
            shape: pod.shape.clone(),
            pods: 0,
            ips: Vec::new(),
            routes: SmallVec::new(),
            ports: captured_ports(&pod.shape, &[]),
            accepts_hbone: pod.shape.accepts_hbone(),
            tls_labelled: pod.shape.has_istio_tls_label(),
            ambient_label: pod.shape.ambient_label(),
            has_siblings: false,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.slots[id] = Some(w);
                id
            }
            None => {
                self.slots.push(Some(w));
                self.slots.len() - 1
            }
        };
        self.by_namespace
            .entry(Arc::clone(&namespace))
            .or_default()
            .push(id);
        for (k, v) in &pod.shape.labels {
            match self.by_label.get_mut(&label_ref(&pod.namespace, k, v)) {
                Some(ids) => ids.push(id),
                None => {
                    let key = LabelKey {
                        namespace: Arc::clone(&namespace),
                        key: k.as_str().into(),
                        value: v.as_str().into(),
                    };
                    self.by_label.insert(key, vec![id]);
                }
            }
        }
        if let Some(w) = self.slots[id].take() {
            self.set_role(id, &w, true);
            self.slots[id] = Some(w);
        }
        id
    }

    pub fn remove(&mut self, namespace: &str, name: &str) {
        let Some(names) = self.pods.get_mut(namespace) else {
            return;
        };
        let Some((id, ip)) = names.remove(name) else {
            return;
        };
        if names.is_empty() {
            self.pods.remove(namespace);
        }
        self.pod_count -= 1;
        let Some(w) = self.slots[id].as_mut() else {
            return;
        };
        w.pods -= 1;
        if let Some(at) = ip.and_then(|ip| w.ips.iter().position(|i| *i == ip)) {
            w.ips.swap_remove(at);
        }
        if w.pods > 0 {
            return;
        }
        let Some(w) = self.slots[id].take() else {
            return;
        };
        self.free.push(id);
        if let Some(ids) = self.by_namespace.get_mut(namespace) {
            ids.retain(|i| *i != id);
        }
        for (k, v) in &w.shape.labels {
            let label = label_ref(namespace, k, v);
            if let Some(ids) = self.by_label.get_mut(&label) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
        self.set_role(id, &w, false);
    }
}
