//! Traffic evidence (README "Traffic evidence"): who was seen sending plaintext to whom, from Istio's
//! telemetry in Prometheus.
//!
//! The types here are plain data, free of HTTP, so the engine can read them on the review
//! path: [`Traffic`] is the shared cell a background poller ([`poll`]) refreshes, and
//! [`Traffic::evidence`] hands out a cheap [`Evidence`] snapshot that never waits on
//! Prometheus.

mod poll;
mod prometheus;

pub use poll::{poll, refresh_once};
pub use prometheus::{EvidenceError, PrometheusClient, PrometheusOptions};

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Which evidence tiers decide (`--evidence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
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

#[derive(Debug)]
struct State {
    edges: Option<Arc<PlaintextEdges>>,
    last_success: Option<SystemTime>,
    last_error: Option<String>,
}

/// The traffic evidence a poller keeps fresh; readers take snapshots.
#[derive(Debug)]
pub struct Traffic {
    mode: EvidenceMode,
    window: Duration,
    state: RwLock<State>,
}

impl Traffic {
    pub fn new(mode: EvidenceMode, window: Duration) -> Traffic {
        Traffic {
            mode,
            window,
            state: RwLock::new(State {
                edges: None,
                last_success: None,
                last_error: Some("Prometheus not queried yet".into()),
            }),
        }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// A snapshot for one decision: an `Arc` clone under a lock held for nanoseconds.
    pub fn evidence(&self) -> Evidence {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Evidence {
            mode: self.mode,
            window: self.window,
            edges: state.edges.clone(),
            stale_reason: state.last_error.as_ref().map(|e| match state.last_success {
                Some(at) => format!("{e} (last success {} ago)", ago(at)),
                None => e.clone(),
            }),
        }
    }

    /// Replaces the edges after a successful fetch.
    pub fn succeeded(&self, edges: PlaintextEdges, at: SystemTime) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.edges = Some(Arc::new(edges));
        state.last_success = Some(at);
        state.last_error = None;
    }

    /// Records a failed fetch; the last good edges stay, marked stale.
    pub fn failed(&self, error: String) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        state.last_error = Some(error);
    }

    pub fn last_success(&self) -> Option<SystemTime> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last_success
    }

    pub fn last_error(&self) -> Option<String> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last_error
            .clone()
    }

    /// Prometheus text for `/metrics`: whether the last poll worked, how many plaintext
    /// edges it found, and when it last worked.
    pub fn metrics_text(&self) -> String {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        out.push_str(
            "# HELP mtls_guard_traffic_evidence_up 1 when the last Prometheus poll succeeded.\n",
        );
        out.push_str("# TYPE mtls_guard_traffic_evidence_up gauge\n");
        let _ = writeln!(
            out,
            "mtls_guard_traffic_evidence_up {}",
            u8::from(state.last_error.is_none())
        );
        out.push_str("# HELP mtls_guard_traffic_edges Plaintext (sender, destination) pairs seen in the window.\n");
        out.push_str("# TYPE mtls_guard_traffic_edges gauge\n");
        let edges = state.edges.as_ref().map_or(0, |e| e.edge_count());
        let _ = writeln!(out, "mtls_guard_traffic_edges {edges}");
        out.push_str("# HELP mtls_guard_traffic_last_success_timestamp_seconds Unix time of the last successful poll (0: never).\n");
        out.push_str("# TYPE mtls_guard_traffic_last_success_timestamp_seconds gauge\n");
        let at = state
            .last_success
            .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let _ = writeln!(
            out,
            "mtls_guard_traffic_last_success_timestamp_seconds {at}"
        );
        out
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

fn ago(at: SystemTime) -> String {
    let secs = SystemTime::now()
        .duration_since(at)
        .map_or(0, |d| d.as_secs());
    humantime::format_duration(Duration::from_secs(secs)).to_string()
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

    #[test]
    fn a_failed_poll_keeps_the_edges_but_marks_them_stale() {
        let t = Traffic::new(EvidenceMode::Both, Duration::from_secs(3600));
        assert!(t.evidence().edges.is_none());
        assert!(t
            .metrics_text()
            .contains("mtls_guard_traffic_evidence_up 0"));
        let mut e = PlaintextEdges::default();
        e.add(("foo", "httpbin"), ("unknown", "unknown"), 1, 0);
        t.succeeded(e, SystemTime::now());
        assert!(t.evidence().is_current());
        assert!(t.metrics_text().contains("mtls_guard_traffic_edges 1"));
        t.failed("connection refused".into());
        let ev = t.evidence();
        assert_eq!(ev.senders_to("foo", "httpbin").len(), 1);
        assert!(!ev.is_current());
        assert!(
            ev.stale_reason
                .as_deref()
                .is_some_and(|r| r.starts_with("connection refused (last success")),
            "{:?}",
            ev.stale_reason
        );
        assert!(t
            .metrics_text()
            .contains("mtls_guard_traffic_evidence_up 0"));
    }
}
