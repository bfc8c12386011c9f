//! What is known about observed plaintext traffic: plain data the engine reads on the review
//! path, with no HTTP and no clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

/// Which evidence tiers decide (`--evidence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceMode {
    /// Only what the inventory shows (tiers 1 and 2); traffic is polled but not used to decide.
    Inventory,
    /// Observed traffic decides about sidecar-less clients; the inventory alone only warns.
    Traffic,
    /// Both: inventory findings and observed plaintext traffic deny.
    Both,
}

/// The name Istio's telemetry gives a sender or receiver it could not identify.
pub const UNKNOWN: &str = "unknown";

/// One workload seen sending plaintext to a destination workload within the window.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Sender {
    /// `unknown` when the sender had no sidecar (Istio cannot name it).
    pub namespace: String,
    pub workload: String,
    /// Plaintext HTTP/gRPC requests (`istio_requests_total`), rounded.
    pub requests: u64,
    /// Plaintext TCP connections opened (`istio_tcp_connections_opened_total`), rounded.
    pub connections: u64,
}

impl Sender {
    /// Istio could not say who sent it: a client without a sidecar, or outside the mesh.
    pub fn is_unknown(&self) -> bool {
        self.workload == UNKNOWN
    }
}

/// Observed plaintext edges: (destination namespace, destination workload) -> senders.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlaintextEdges {
    by_destination: HashMap<(String, String), Vec<Sender>>,
}

impl PlaintextEdges {
    /// Adds plaintext traffic seen on one edge; repeated edges add up.
    pub fn add(
        &mut self,
        destination: (&str, &str),
        source: (&str, &str),
        requests: u64,
        connections: u64,
    ) {
        let senders = self
            .by_destination
            .entry((destination.0.to_string(), destination.1.to_string()))
            .or_default();
        match senders
            .iter_mut()
            .find(|s| s.namespace == source.0 && s.workload == source.1)
        {
            Some(s) => {
                s.requests += requests;
                s.connections += connections;
            }
            None => {
                senders.push(Sender {
                    namespace: source.0.to_string(),
                    workload: source.1.to_string(),
                    requests,
                    connections,
                });
                senders.sort();
            }
        }
    }

    /// Who sent plaintext to `namespace/workload` (the owning Deployment's name, as the
    /// inventory groups pods); empty when nobody was seen.
    pub fn senders_to(&self, namespace: &str, workload: &str) -> &[Sender] {
        self.by_destination
            .get(&(namespace.to_string(), workload.to_string()))
            .map_or(&[], Vec::as_slice)
    }

    /// Number of (sender, destination) pairs.
    pub fn edge_count(&self) -> usize {
        self.by_destination.values().map(Vec::len).sum()
    }
}

/// What the review path knows about traffic at one moment.
#[derive(Debug, Clone)]
pub struct Evidence {
    pub mode: EvidenceMode,
    /// The look-back window the counts cover.
    pub window: Duration,
    /// The last successful fetch; `None` before the first one (or without Prometheus).
    pub edges: Option<Arc<PlaintextEdges>>,
    /// Why the edges are missing or may be out of date (the last poll failed), if they are.
    pub stale_reason: Option<String>,
}

impl Evidence {
    /// No Prometheus configured: the inventory decides alone.
    pub fn inventory_only() -> Evidence {
        Evidence {
            mode: EvidenceMode::Inventory,
            window: Duration::ZERO,
            edges: None,
            stale_reason: None,
        }
    }

    /// Senders seen to a destination workload; empty when nobody was, or nothing is known.
    pub fn senders_to(&self, namespace: &str, workload: &str) -> &[Sender] {
        self.edges
            .as_deref()
            .map_or(&[], |e| e.senders_to(namespace, workload))
    }

    /// Whether the traffic tier can be relied on right now (fetched, and the last poll worked).
    pub fn is_current(&self) -> bool {
        self.edges.is_some() && self.stale_reason.is_none()
    }
}

/// A window as PromQL and people write it: `24h`, `90m`, `45s` (humantime would say `1day`).
pub fn window_text(window: Duration) -> String {
    let secs = window.as_secs();
    match secs {
        s if s > 0 && s % 3600 == 0 => format!("{}h", s / 3600),
        s if s > 0 && s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_add_up_per_edge_and_stay_sorted() {
        let mut e = PlaintextEdges::default();
        e.add(("foo", "httpbin"), ("unknown", "unknown"), 5, 0);
        e.add(("foo", "httpbin"), ("bar", "sleep"), 0, 2);
        e.add(("foo", "httpbin"), ("unknown", "unknown"), 3, 1);
        let s = e.senders_to("foo", "httpbin");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].workload.as_str(), s[0].connections), ("sleep", 2));
        assert_eq!((s[1].requests, s[1].connections), (8, 1));
        assert!(s[1].is_unknown());
        assert_eq!(e.edge_count(), 2);
        assert!(e.senders_to("bar", "httpbin").is_empty());
    }

    #[test]
    fn windows_read_as_people_write_them() {
        assert_eq!(window_text(Duration::from_secs(24 * 3600)), "24h");
        assert_eq!(window_text(Duration::from_secs(90 * 60)), "90m");
        assert_eq!(window_text(Duration::from_secs(45)), "45s");
    }
}
