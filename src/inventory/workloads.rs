//! Pods grouped into workloads, with the lookups a review needs kept up to date on every
//! change: by namespace, by label, and by what each workload is as a client.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use super::Map;
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
    /// The Services of its namespace that select it: how sidecar clients address it. Kept by
    /// the index on Service and pod events, so a review never matches selectors.
    pub services: Vec<Arc<Service>>,
    /// The ports its proxy captures, from its containers and its Services' target ports;
    /// `[None]` for pods that declare no port at all.
    pub ports: Vec<Option<u16>>,
}

impl Workload {
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ips.iter().copied()
    }

    fn set_services(&mut self, services: Vec<Arc<Service>>) {
        self.ports = captured_ports(&self.shape, &services);
        self.services = services;
    }

    /// A sidecar client whose own annotations can send some traffic around its proxy.
    pub fn has_outbound_exclusions(&self) -> bool {
        let s = &self.shape;
        !s.exclude_outbound_ports.is_empty()
            || !s.exclude_outbound_ranges.is_empty()
            || s.include_outbound_ranges != crate::model::pod::Scope::All
    }
}

/// The captured ports of a pod shape behind `services`; `[None]` when it declares none.
fn captured_ports(shape: &PodShape, services: &[Arc<Service>]) -> Vec<Option<u16>> {
    let mut ports: Vec<u16> = shape.container_ports.iter().map(|(_, p)| *p).collect();
    for svc in services {
        ports.extend(
            svc.ports
                .iter()
                .filter_map(|sp| shape.resolve_port(&sp.target)),
        );
    }
    if ports.is_empty() {
        return vec![None];
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

/// A pod as the index remembers it: its workload and IP.
type PodEntry = (WorkloadId, Option<IpAddr>);

#[derive(Debug, Default)]
pub struct Workloads {
    slots: Vec<Option<Workload>>,
    free: Vec<WorkloadId>,
    /// Its keys are the one copy of each namespace name the workloads share.
    by_namespace: Map<Arc<str>, Vec<WorkloadId>>,
    /// Namespace -> label key -> label value -> workloads.
    by_label: Map<String, Map<String, Map<String, Vec<WorkloadId>>>>,
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

    pub fn pod_count(&self) -> usize {
        self.pod_count
    }

    /// (namespace, name) of every pod.
    pub fn pod_keys(&self) -> impl Iterator<Item = (String, String)> + '_ {
        self.pods.iter().flat_map(|(ns, names)| {
            names
                .keys()
                .map(move |name| (ns.to_string(), name.to_string()))
        })
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
        let postings = self.by_label.get(namespace);
        let rarest = selector
            .iter()
            .map(|(k, v)| {
                postings
                    .and_then(|p| p.get(k.as_str()))
                    .and_then(|values| values.get(v.as_str()))
                    .map_or(&[][..], Vec::as_slice)
            })
            .min_by_key(|ids| ids.len())
            .unwrap_or_else(|| self.by_namespace.get(namespace).map_or(&[], Vec::as_slice));
        rarest
            .iter()
            .map(|id| (*id, self.get(*id)))
            .filter(move |(_, w)| selector_matches(selector, &w.shape.labels))
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
    pub(super) fn set_services(&mut self, id: WorkloadId, services: Vec<Arc<Service>>) {
        if let Some(w) = self.slots[id].as_mut() {
            w.set_services(services);
        }
    }

    /// Adds or replaces a pod, in the workload of its shape; returns the workload's id if it
    /// is new.
    pub fn insert(&mut self, pod: Pod) -> Option<WorkloadId> {
        self.remove(&pod.namespace, &pod.name);
        let existing = self
            .by_namespace
            .get(pod.namespace.as_str())
            .and_then(|ids| {
                ids.iter().copied().find(|id| {
                    let w = self.get(*id);
                    *w.name == *pod.workload && w.shape == pod.shape
                })
            });
        let (id, created) = match existing {
            Some(id) => (id, None),
            None => {
                let id = self.create(&pod);
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
            services: Vec::new(),
            ports: captured_ports(&pod.shape, &[]),
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
        self.by_namespace.entry(namespace).or_default().push(id);
        let postings = self.by_label.entry(pod.namespace.clone()).or_default();
        for (k, v) in &pod.shape.labels {
            let values = postings.entry(k.clone()).or_default();
            values.entry(v.clone()).or_default().push(id);
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
        if let Some(postings) = self.by_label.get_mut(namespace) {
            for (k, v) in &w.shape.labels {
                let values = postings.get_mut(k.as_str());
                if let Some(ids) = values.and_then(|values| values.get_mut(v.as_str())) {
                    ids.retain(|i| *i != id);
                }
            }
        }
        self.set_role(id, &w, false);
    }
}
