//! Traffic evidence (README "Traffic evidence"): who was seen sending plaintext to whom, from Istio's
//! telemetry in Prometheus.
//!
//! The types here are plain data, free of HTTP, so the engine can read them on the review
//! path: [`Traffic`] is the shared cell a background poller ([`poll`]) refreshes, and
//! [`Traffic::evidence`] hands out a cheap [`Evidence`] snapshot that never waits on
//! Prometheus.

pub mod edges;
mod poll;
mod prometheus;

pub use edges::{window_text, Evidence, EvidenceMode, PlaintextEdges, Sender, UNKNOWN};
pub use poll::{poll, refresh_once};
pub use prometheus::{EvidenceError, PrometheusClient, PrometheusOptions};

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// The poller's health at one moment, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrafficStatus {
    /// The last poll succeeded.
    pub up: bool,
    /// Plaintext (sender, destination) pairs in the last good fetch.
    pub edges: usize,
    pub last_success: Option<SystemTime>,
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

    /// What `/metrics` says about the poller.
    pub fn status(&self) -> TrafficStatus {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        TrafficStatus {
            up: state.last_error.is_none(),
            edges: state.edges.as_ref().map_or(0, |e| e.edge_count()),
            last_success: state.last_success,
        }
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
    fn a_failed_poll_keeps_the_edges_but_marks_them_stale() {
        let t = Traffic::new(EvidenceMode::Both, Duration::from_secs(3600));
        assert!(t.evidence().edges.is_none());
        assert!(!t.status().up);
        let mut e = PlaintextEdges::default();
        e.add(("foo", "httpbin"), ("unknown", "unknown"), 1, 0);
        t.succeeded(e, SystemTime::now());
        assert!(t.evidence().is_current());
        assert_eq!((t.status().up, t.status().edges), (true, 1));
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
        assert_eq!((t.status().up, t.status().edges), (false, 1));
    }
}
