//! The background refresh: reviews read the last snapshot and never wait on Prometheus.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::MissedTickBehavior;

use super::{EvidenceError, PrometheusClient, Traffic};

/// Fetches once and stores the result (or the error) in `traffic`; returns the edge count.
pub async fn refresh_once(
    client: &PrometheusClient,
    traffic: &Traffic,
) -> Result<usize, EvidenceError> {
    match client.plaintext_edges().await {
        Ok(edges) => {
            let n = edges.edge_count();
            traffic.succeeded(edges, SystemTime::now());
            Ok(n)
        }
        Err(e) => {
            traffic.failed(e.to_string());
            Err(e)
        }
    }
}

/// Refreshes `traffic` every `refresh`, forever; the first fetch starts at once.
pub async fn poll(client: PrometheusClient, traffic: Arc<Traffic>, refresh: Duration) {
    let mut ticker = tokio::time::interval(refresh.max(Duration::from_secs(1)));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // Logged on changes only, so an outage is one line, not one per poll.
    let mut was_ok: Option<bool> = None;
    loop {
        ticker.tick().await;
        let result = refresh_once(&client, &traffic).await;
        match &result {
            Ok(edges) if was_ok != Some(true) => {
                tracing::info!(edges, window = ?traffic.window(), "traffic evidence from Prometheus");
            }
            Err(e) if was_ok != Some(false) => {
                tracing::warn!(error = %e, "traffic evidence unavailable; deciding on the inventory");
            }
            _ => {}
        }
        was_ok = Some(result.is_ok());
    }
}
