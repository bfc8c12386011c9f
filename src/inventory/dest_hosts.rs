//! DestinationRules indexed by the hosts they name, so a review asks only the namespaces
//! whose rules may match a Service.

use std::collections::BTreeSet;

use super::{Index, Map, Route};
use crate::model::Service;

/// Which namespaces hold DestinationRules that may match a host, kept per namespace so a
/// review asks only those namespaces instead of every one.
#[derive(Debug, Default)]
pub(super) struct DrHosts {
    pub(super) keys: HostKeys,
    /// Key of a fully qualified host -> the host and the namespaces with a rule for exactly it.
    exact: Map<u64, Vec<(String, BTreeSet<String>)>>,
    /// Namespaces with a wildcard-host rule, or with a workloadSelector rule.
    wildcard_or_selector: BTreeSet<String>,
    /// Hosts each namespace contributed to `exact`, to undo them.
    by_namespace: Map<String, Vec<String>>,
    /// Namespaces with a rule that can send plaintext ([`DestinationRule::may_send_plaintext`]).
    plaintext: BTreeSet<String>,
}

/// Hashes a Service host once, when a workload's routes are built, so a review finds the
/// host's DestinationRules without reading or hashing the host again.
#[derive(Debug, Default)]
pub(crate) struct HostKeys(foldhash::fast::RandomState);

impl HostKeys {
    pub(crate) fn of(&self, host: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.0, host)
    }
}

impl Index {
    /// The Services a DestinationRule host can name: one for an exact host, all for a wildcard.
    pub fn services_for_host(
        &self,
        host: &str,
        rule_namespace: &str,
        domain: &str,
    ) -> Vec<&Service> {
        if host.starts_with('*') {
            return self.services.values().flatten().map(|s| &**s).collect();
        }
        let (name, namespace) = if host.contains('.') {
            let suffix = format!(".svc.{domain}");
            match host.strip_suffix(&suffix).and_then(|h| h.split_once('.')) {
                Some(parts) => parts,
                None => return Vec::new(),
            }
        } else {
            (host, rule_namespace)
        };
        self.services_in(namespace)
            .iter()
            .filter(|s| s.name == name)
            .map(|s| &**s)
            .collect()
    }

    /// Namespaces whose own DestinationRules could match `host` for some client, and every
    /// namespace whose rules use a wildcard host or a workload selector.
    pub fn dr_namespaces_for<'a>(&'a self, route: &'a Route) -> impl Iterator<Item = &'a str> {
        let host = route.service.host.as_str();
        self.dr_hosts
            .exact
            .get(&route.host_key)
            .into_iter()
            .flatten()
            .filter(move |(h, _)| h == host)
            .flat_map(|(_, namespaces)| namespaces)
            .chain(self.dr_hosts.wildcard_or_selector.iter())
            .map(String::as_str)
    }

    /// Whether any DestinationRule can make a client send plaintext. Without one, auto mTLS
    /// decides what every sidecar sends wherever it sends mTLS.
    pub fn has_plaintext_dest_rules(&self) -> bool {
        !self.dr_hosts.plaintext.is_empty()
    }

    pub fn has_selector_dest_rules(&self, namespace: &str) -> bool {
        self.dest_rules(namespace)
            .iter()
            .any(|d| d.workload_selector.is_some())
    }

    pub(super) fn reindex_dr_hosts(&mut self, namespace: &str) {
        let idx = &mut self.dr_hosts;
        for host in idx.by_namespace.remove(namespace).unwrap_or_default() {
            let key = idx.keys.of(&host);
            if let Some(list) = idx.exact.get_mut(&key) {
                for (_, set) in list.iter_mut().filter(|(h, _)| *h == host) {
                    set.remove(namespace);
                }
                list.retain(|(_, set)| !set.is_empty());
                if list.is_empty() {
                    idx.exact.remove(&key);
                }
            }
        }
        idx.wildcard_or_selector.remove(namespace);
        idx.plaintext.remove(namespace);
        let domain = &self.filters.cluster_domain;
        let mut hosts = Vec::new();
        for dr in self.dest_rules.get(namespace).into_iter().flatten() {
            if dr.may_send_plaintext() {
                idx.plaintext.insert(namespace.to_string());
            }
            if dr.host.starts_with('*') || dr.workload_selector.is_some() {
                idx.wildcard_or_selector.insert(namespace.to_string());
                continue;
            }
            let fqdn = if dr.host.contains('.') {
                dr.host.clone()
            } else {
                format!("{}.{namespace}.svc.{domain}", dr.host)
            };
            let list = idx.exact.entry(idx.keys.of(&fqdn)).or_default();
            match list.iter_mut().find(|(h, _)| *h == fqdn) {
                Some((_, set)) => {
                    set.insert(namespace.to_string());
                }
                None => list.push((fqdn.clone(), BTreeSet::from([namespace.to_string()]))),
            }
            hosts.push(fqdn);
        }
        idx.by_namespace.insert(namespace.to_string(), hosts);
    }
}
