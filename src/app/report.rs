//! `mtls-guard report`: migration readiness of the mesh (README "Commands").

use std::io::Write;
use std::time::Duration;

use super::inventory::inventory_for;
use super::AppError;
use crate::config::{ReportArgs, ReportOutput};
use crate::evidence::{self, EvidenceMode, PrometheusClient, Traffic};
use crate::report;

/// `mtls-guard report`: the readiness report in the asked format, written to `out`. With a
/// Prometheus URL the traffic is fetched once; if that fails the report says so and uses the
/// inventory alone.
pub async fn report(args: &ReportArgs, out: &mut impl Write) -> Result<(), AppError> {
    let index = inventory_for(&args.cluster, &args.inventory).await?;
    let mut evidence = None;
    if let Some(opts) = args.prometheus.options(Duration::from_secs(30)) {
        let client = PrometheusClient::new(opts).map_err(|e| AppError::Evidence(e.to_string()))?;
        let traffic = Traffic::new(EvidenceMode::Both, *args.prometheus.traffic_window);
        if let Err(e) = evidence::refresh_once(&client, &traffic).await {
            tracing::warn!(error = %e, "traffic evidence unavailable; reporting on the inventory");
        }
        evidence = Some(traffic.evidence());
    }
    let report = report::assess(&index, evidence.as_ref());
    // The index is the larger part of memory; the output no longer needs it.
    drop(index);
    match args.output {
        ReportOutput::Table => out.write_all(report::table(&report).as_bytes())?,
        ReportOutput::Html => out.write_all(report::html(&report).as_bytes())?,
        ReportOutput::Json => {
            serde_json::to_writer_pretty(&mut *out, &report)
                .map_err(|e| AppError::Io(std::io::Error::other(e)))?;
            out.write_all(b"\n")?;
        }
    }
    Ok(out.flush()?)
}
