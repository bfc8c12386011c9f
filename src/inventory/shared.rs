//! The index shared between the watchers (writers) and the review path (readers).
//!
//! Readers hold the read lock only inside a synchronous decision (microseconds, never across
//! an `.await`); writers apply one small change at a time, or a prepared full list.

use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use super::Index;
use crate::model::{CallerKind, RuleKind};

/// The kinds the inventory is built from; also a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchedKind {
    Pod,
    Namespace,
    Service,
    MeshConfig,
    Rule(RuleKind),
    ApiCaller(CallerKind),
    NetworkPolicy,
}

impl WatchedKind {
    pub const ALL: [WatchedKind; 13] = [
        WatchedKind::Pod,
        WatchedKind::Namespace,
        WatchedKind::Service,
        WatchedKind::MeshConfig,
        WatchedKind::Rule(RuleKind::PeerAuthentication),
        WatchedKind::Rule(RuleKind::Policy),
        WatchedKind::Rule(RuleKind::MeshPolicy),
        WatchedKind::Rule(RuleKind::DestinationRule),
        WatchedKind::ApiCaller(CallerKind::ValidatingWebhookConfiguration),
        WatchedKind::ApiCaller(CallerKind::MutatingWebhookConfiguration),
        WatchedKind::ApiCaller(CallerKind::ApiService),
        WatchedKind::ApiCaller(CallerKind::CustomResourceDefinition),
        WatchedKind::NetworkPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WatchedKind::Pod => "Pod",
            WatchedKind::Namespace => "Namespace",
            WatchedKind::Service => "Service",
            WatchedKind::MeshConfig => "MeshConfig",
            WatchedKind::Rule(k) => k.as_str(),
            WatchedKind::ApiCaller(k) => k.as_str(),
            WatchedKind::NetworkPolicy => "NetworkPolicy",
        }
    }

    fn slot(self) -> usize {
        Self::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct KindState {
    synced: bool,
    /// Since when the watch of this kind has been failing, if it is.
    failing_since: Option<Instant>,
}

/// Sync state of one kind, for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct KindStatus {
    pub kind: WatchedKind,
    pub synced: bool,
    pub stale: bool,
}

#[derive(Debug)]
pub struct SharedIndex {
    index: RwLock<Index>,
    kinds: Mutex<[KindState; WatchedKind::ALL.len()]>,
    max_staleness: Duration,
}

impl SharedIndex {
    /// An index that is complete from the start (files, demo).
    pub fn complete(index: Index) -> SharedIndex {
        let shared = SharedIndex::syncing(index, Duration::MAX);
        for kind in WatchedKind::ALL {
            shared.mark_synced(kind);
        }
        shared
    }

    /// An index that watchers will fill; not ready until every kind has synced.
    pub fn syncing(index: Index, max_staleness: Duration) -> SharedIndex {
        SharedIndex {
            index: RwLock::new(index),
            kinds: Mutex::new(Default::default()),
            max_staleness,
        }
    }

    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        match self.index.read() {
            Ok(i) => f(&i),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Takes the index out, leaving an empty one: for a one-shot read of the cluster.
    pub fn take(&self) -> Index {
        match self.index.write() {
            Ok(mut i) => std::mem::take(&mut *i),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }

    pub fn write(&self, f: impl FnOnce(&mut Index)) {
        match self.index.write() {
            Ok(mut i) => f(&mut i),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn with_state(&self, kind: WatchedKind, f: impl FnOnce(&mut KindState)) {
        if let Ok(mut kinds) = self.kinds.lock() {
            f(&mut kinds[kind.slot()]);
        }
    }

    pub fn mark_synced(&self, kind: WatchedKind) {
        self.with_state(kind, |s| {
            s.synced = true;
            s.failing_since = None;
        });
    }

    pub fn mark_ok(&self, kind: WatchedKind) {
        self.with_state(kind, |s| s.failing_since = None);
    }

    pub fn mark_failing(&self, kind: WatchedKind, now: Instant) {
        self.with_state(kind, |s| {
            s.failing_since.get_or_insert(now);
        });
    }

    pub fn status(&self, now: Instant) -> Vec<KindStatus> {
        let Ok(kinds) = self.kinds.lock() else {
            return Vec::new();
        };
        WatchedKind::ALL
            .iter()
            .zip(kinds.iter())
            .map(|(kind, s)| KindStatus {
                kind: *kind,
                synced: s.synced,
                stale: s
                    .failing_since
                    .is_some_and(|t| now.saturating_duration_since(t) > self.max_staleness),
            })
            .collect()
    }

    /// `Ok` when every kind has synced and none has been failing past the staleness limit.
    pub fn readiness(&self, now: Instant) -> Result<(), String> {
        // Asked on every review: the usual answer takes no list and no allocation.
        let healthy = |s: &KindState| s.synced && s.failing_since.is_none();
        if self
            .kinds
            .lock()
            .is_ok_and(|kinds| kinds.iter().all(healthy))
        {
            return Ok(());
        }
        let status = self.status(now);
        let unsynced: Vec<&str> = status
            .iter()
            .filter(|s| !s.synced)
            .map(|s| s.kind.as_str())
            .collect();
        if !unsynced.is_empty() {
            return Err(format!("inventory not synced yet: {}", unsynced.join(", ")));
        }
        let stale: Vec<&str> = status
            .iter()
            .filter(|s| s.stale)
            .map(|s| s.kind.as_str())
            .collect();
        if !stale.is_empty() {
            return Err(format!(
                "inventory stale for longer than {:?}: {}",
                self.max_staleness,
                stale.join(", ")
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_all_synced_and_none_stale() {
        let shared = SharedIndex::syncing(Index::default(), Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(shared.readiness(t0).unwrap_err().contains("Pod"));
        for kind in WatchedKind::ALL {
            shared.mark_synced(kind);
        }
        assert!(shared.readiness(t0).is_ok());
        shared.mark_failing(WatchedKind::Pod, t0);
        assert!(
            shared.readiness(t0 + Duration::from_secs(30)).is_ok(),
            "within max staleness"
        );
        let err = shared.readiness(t0 + Duration::from_secs(61)).unwrap_err();
        assert!(err.contains("stale") && err.contains("Pod"), "{err}");
        shared.mark_ok(WatchedKind::Pod);
        assert!(shared.readiness(t0 + Duration::from_secs(61)).is_ok());
    }
}
