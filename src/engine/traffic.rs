//! Tier 3: plaintext that Istio's telemetry saw arriving at a server the change locks down.

use super::budget::afford;
use super::verdict::{Client, Hit, Reason, Tier, VerdictBuilder};
use crate::evidence::edges::{Evidence, EvidenceMode};
use crate::inventory::Index;

/// Adds observed senders to every locked-down server; under `--evidence traffic` the
/// inventory's clients without a proxy only warn. Without current evidence nothing changes
/// but the verdict records why, so the message can say the inventory decided alone.
pub(super) fn observed<'a>(
    index: &'a Index,
    hits: &[Hit<'a>],
    evidence: &Evidence,
    out: &mut VerdictBuilder<'a>,
) {
    if evidence.mode == EvidenceMode::Inventory {
        return;
    }
    if !evidence.is_current() {
        let why = evidence.stale_reason.clone();
        out.verdict.traffic_unavailable = Some(why.unwrap_or_else(|| "no data fetched yet".into()));
        return;
    }
    let window_secs = evidence.window.as_secs();
    let budget = out.budget;
    for hit in hits.iter().filter(|h| h.locks_down()) {
        let w = index.workload(hit.id);
        let senders = evidence.senders_to(&w.namespace, &w.name);
        for sender in senders.iter().take_while(|_| afford(budget, 1)) {
            let server = out.server(hit, w);
            let client = if sender.is_unknown() {
                Client::Unknown
            } else {
                Client::Workload {
                    namespace: sender.namespace.as_str().into(),
                    name: sender.workload.as_str().into(),
                }
            };
            let reason = Reason::ObservedPlaintext {
                requests: sender.requests,
                connections: sender.connections,
                window_secs,
            };
            out.add(client, reason, server);
        }
    }
}

/// Under `--evidence traffic` with current evidence, inventory findings only warn.
pub(super) fn soften_inventory(evidence: &Evidence, out: &mut VerdictBuilder) {
    if evidence.mode == EvidenceMode::Traffic && evidence.is_current() {
        for b in out
            .verdict
            .breaks
            .iter_mut()
            .filter(|b| b.tier == Tier::Inventory)
        {
            b.denies = false;
        }
    }
}
