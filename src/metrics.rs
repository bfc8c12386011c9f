//! Prometheus text metrics with fixed label sets (never object names).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::admission::Decision;
use crate::evidence::TrafficStatus;
use crate::inventory::shared::KindStatus;

const KINDS: [&str; 6] = [
    "PeerAuthentication",
    "Policy",
    "MeshPolicy",
    "DestinationRule",
    "Namespace",
    "other",
];
const OPERATIONS: [&str; 4] = ["CREATE", "UPDATE", "DELETE", "other"];
const BAD_REQUESTS: [&str; 3] = ["not_a_review", "api_version", "content_type"];
/// Seconds; a review is microseconds of engine work plus JSON, so the low buckets matter.
const BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

fn slot(list: &[&str], value: &str) -> usize {
    list.iter()
        .position(|k| *k == value)
        .unwrap_or(list.len() - 1)
}

#[derive(Debug)]
pub struct Metrics {
    reviews: Vec<AtomicU64>,
    bad_requests: [AtomicU64; BAD_REQUESTS.len()],
    /// Reviews per latency bucket, the last past every bound: one count per review, not one
    /// per bucket it falls under, as two threads serving reviews share these cache lines.
    /// The cumulative counts are summed when rendered.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_nanos: AtomicU64,
    offloaded: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            reviews: (0..KINDS.len() * OPERATIONS.len() * Decision::ALL.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            bad_requests: Default::default(),
            latency_buckets: Default::default(),
            latency_sum_nanos: AtomicU64::new(0),
            offloaded: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// `kind` is the bare kind name (`Policy`), `operation` the admission operation.
    pub fn review(&self, kind: &str, operation: &str, decision: Decision, took: Duration) {
        let d = Decision::ALL
            .iter()
            .position(|x| *x == decision)
            .unwrap_or(0);
        let i = (slot(&KINDS, kind) * OPERATIONS.len() + slot(&OPERATIONS, operation))
            * Decision::ALL.len()
            + d;
        self.reviews[i].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = BUCKETS.partition_point(|&bound| bound < secs);
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A review too large to decide where it was read, handed to the blocking pool.
    pub fn offloaded(&self) {
        self.offloaded.fetch_add(1, Relaxed);
    }

    pub fn bad_request(&self, reason: &str) {
        self.bad_requests[slot(&BAD_REQUESTS, reason)].fetch_add(1, Relaxed);
    }

    /// The exposition text, with the inventory size and readiness as gauges.
    pub fn render(
        &self,
        pods: usize,
        workloads: usize,
        kinds: &[KindStatus],
        ready: bool,
    ) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP mtls_guard_reviews_total Admission reviews by kind, operation and verdict.\n",
        );
        out.push_str("# TYPE mtls_guard_reviews_total counter\n");
        for (k, kind) in KINDS.iter().enumerate() {
            for (o, op) in OPERATIONS.iter().enumerate() {
                for (d, decision) in Decision::ALL.iter().enumerate() {
                    let n = self.reviews[(k * OPERATIONS.len() + o) * Decision::ALL.len() + d]
                        .load(Relaxed);
                    let _ = writeln!(
                        out,
                        "mtls_guard_reviews_total{{kind=\"{kind}\",operation=\"{op}\",verdict=\"{}\"}} {n}",
                        decision.as_str()
                    );
                }
            }
        }
        out.push_str(
            "# HELP mtls_guard_bad_requests_total Requests answered 4xx before a review.\n",
        );
        out.push_str("# TYPE mtls_guard_bad_requests_total counter\n");
        for (r, reason) in BAD_REQUESTS.iter().enumerate() {
            let _ = writeln!(
                out,
                "mtls_guard_bad_requests_total{{reason=\"{reason}\"}} {}",
                self.bad_requests[r].load(Relaxed)
            );
        }
        out.push_str("# HELP mtls_guard_review_duration_seconds Time to decide one review.\n");
        out.push_str("# TYPE mtls_guard_review_duration_seconds histogram\n");
        let mut count = 0;
        for (b, bound) in self.latency_buckets.iter().zip(BUCKETS) {
            count += b.load(Relaxed);
            let _ = writeln!(
                out,
                "mtls_guard_review_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        count += self.latency_buckets[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "mtls_guard_review_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "mtls_guard_review_duration_seconds_sum {sum}");
        let _ = writeln!(out, "mtls_guard_review_duration_seconds_count {count}");
        out.push_str("# HELP mtls_guard_reviews_offloaded_total Reviews too large to decide inline, decided on the blocking pool.\n");
        out.push_str("# TYPE mtls_guard_reviews_offloaded_total counter\n");
        let _ = writeln!(
            out,
            "mtls_guard_reviews_offloaded_total {}",
            self.offloaded.load(Relaxed)
        );
        out.push_str("# HELP mtls_guard_inventory_pods Active pods in the inventory index.\n");
        out.push_str("# TYPE mtls_guard_inventory_pods gauge\n");
        let _ = writeln!(out, "mtls_guard_inventory_pods {pods}");
        out.push_str(
            "# HELP mtls_guard_inventory_workloads Workload groups in the inventory index.\n",
        );
        out.push_str("# TYPE mtls_guard_inventory_workloads gauge\n");
        let _ = writeln!(out, "mtls_guard_inventory_workloads {workloads}");
        per_kind(
            &mut out,
            "mtls_guard_inventory_synced",
            "1 once a kind's first full list is in the index.",
            kinds.iter().map(|k| (k.kind.as_str(), k.synced)),
        );
        per_kind(
            &mut out,
            "mtls_guard_inventory_stale",
            "1 while a kind's watch has failed for longer than --max-staleness.",
            kinds.iter().map(|k| (k.kind.as_str(), k.stale)),
        );
        out.push_str("# HELP mtls_guard_ready 1 when the guard is ready to review.\n");
        out.push_str("# TYPE mtls_guard_ready gauge\n");
        let _ = writeln!(out, "mtls_guard_ready {}", u8::from(ready));
        out
    }
}

/// A 0/1 gauge with one series per watched kind.
fn per_kind<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    values: impl Iterator<Item = (&'a str, bool)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (kind, on) in values {
        let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", u8::from(on));
    }
}

/// TLS connections accepted on the webhook port, by the protocol agreed in the handshake: a
/// count rising with the reviews says the API server does not keep its connections, and pays
/// a handshake per call.
#[derive(Debug, Default)]
pub struct Connections {
    http2: AtomicU64,
    http1: AtomicU64,
}

impl Connections {
    pub fn accepted(&self, http2: bool) {
        let counter = if http2 { &self.http2 } else { &self.http1 };
        counter.fetch_add(1, Relaxed);
    }

    pub fn render(&self) -> String {
        format!(
            "# HELP mtls_guard_connections_total TLS connections accepted on the webhook port, by protocol.\n\
             # TYPE mtls_guard_connections_total counter\n\
             mtls_guard_connections_total{{protocol=\"h2\"}} {}\n\
             mtls_guard_connections_total{{protocol=\"http/1.1\"}} {}\n",
            self.http2.load(Relaxed),
            self.http1.load(Relaxed)
        )
    }
}

fn unix_secs(at: std::time::SystemTime) -> u64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The serving certificate's expiry, so an alert can fire before renewal fails for good.
pub fn certificate_expiry(not_after: std::time::SystemTime) -> String {
    let secs = unix_secs(not_after);
    format!(
        "# HELP mtls_guard_serving_certificate_expiry_timestamp_seconds When the certificate being served expires.\n\
         # TYPE mtls_guard_serving_certificate_expiry_timestamp_seconds gauge\n\
         mtls_guard_serving_certificate_expiry_timestamp_seconds {secs}\n"
    )
}

/// Whether the last Prometheus poll worked, how many plaintext edges it found, and when it
/// last worked.
pub fn traffic(status: TrafficStatus) -> String {
    let at = status.last_success.map_or(0, unix_secs);
    format!(
        "# HELP mtls_guard_traffic_evidence_up 1 when the last Prometheus poll succeeded.\n\
         # TYPE mtls_guard_traffic_evidence_up gauge\n\
         mtls_guard_traffic_evidence_up {}\n\
         # HELP mtls_guard_traffic_edges Plaintext (sender, destination) pairs seen in the window.\n\
         # TYPE mtls_guard_traffic_edges gauge\n\
         mtls_guard_traffic_edges {}\n\
         # HELP mtls_guard_traffic_last_success_timestamp_seconds Unix time of the last successful poll (0: never).\n\
         # TYPE mtls_guard_traffic_last_success_timestamp_seconds gauge\n\
         mtls_guard_traffic_last_success_timestamp_seconds {at}\n",
        u8::from(status.up),
        status.edges,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_fixed_labels() {
        let m = Metrics::default();
        m.review(
            "Policy",
            "CREATE",
            Decision::Denied,
            Duration::from_micros(50),
        );
        m.review(
            "Widget",
            "CONNECT",
            Decision::NotReviewed,
            Duration::from_millis(3),
        );
        let kinds = [KindStatus {
            kind: crate::inventory::WatchedKind::Pod,
            synced: true,
            stale: false,
        }];
        let text = m.render(7, 5, &kinds, true);
        assert!(text.contains("mtls_guard_inventory_synced{kind=\"Pod\"} 1"));
        assert!(text.contains(
            "# TYPE mtls_guard_inventory_stale gauge\nmtls_guard_inventory_stale{kind=\"Pod\"} 0\n"
        ));
        assert!(text.contains(
            "mtls_guard_reviews_total{kind=\"Policy\",operation=\"CREATE\",verdict=\"denied\"} 1"
        ));
        assert!(text.contains("mtls_guard_reviews_total{kind=\"other\",operation=\"other\",verdict=\"not_reviewed\"} 1"));
        for (bound, count) in [("0.0001", 1), ("0.0025", 1), ("0.005", 2), ("1", 2)] {
            let bucket =
                format!("mtls_guard_review_duration_seconds_bucket{{le=\"{bound}\"}} {count}\n");
            assert!(text.contains(&bucket), "{bucket}");
        }
        // A bound is inclusive; past the last one, only +Inf counts a review.
        m.review(
            "Policy",
            "CREATE",
            Decision::Denied,
            Duration::from_millis(1),
        );
        m.review("Policy", "CREATE", Decision::Denied, Duration::from_secs(2));
        let text = m.render(7, 5, &kinds, true);
        for (bound, count) in [("0.0005", 1), ("0.001", 2), ("1", 3), ("+Inf", 4)] {
            let bucket =
                format!("mtls_guard_review_duration_seconds_bucket{{le=\"{bound}\"}} {count}\n");
            assert!(text.contains(&bucket), "{bucket}");
        }
        assert!(text.contains("mtls_guard_review_duration_seconds_count 4"));
        assert!(text.contains("mtls_guard_inventory_pods 7"));
    }

    #[test]
    fn traffic_status_reads_as_gauges() {
        let status = TrafficStatus {
            up: false,
            edges: 3,
            last_success: Some(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        };
        let text = traffic(status);
        assert!(
            text.contains("\nmtls_guard_traffic_evidence_up 0\n"),
            "{text}"
        );
        assert!(text.contains("\nmtls_guard_traffic_edges 3\n"), "{text}");
        assert!(text.contains("\nmtls_guard_traffic_last_success_timestamp_seconds 1700000000\n"));
        let never = traffic(TrafficStatus {
            up: true,
            edges: 0,
            last_success: None,
        });
        assert!(
            never.contains("\nmtls_guard_traffic_evidence_up 1\n"),
            "{never}"
        );
        assert!(
            never.contains("last_success_timestamp_seconds 0\n"),
            "{never}"
        );
    }
}
