//! mtls-guard: refuses an Istio STRICT mTLS lock-down while plaintext clients depend on it.
//!
//! ```text
//! AdmissionReview ─▶ admission ─▶ model::Rule (old, new) ─▶ engine::evaluate_with ─▶ Verdict
//!                                                  ▲               ▲                    │
//! inventory (files | demo | live watches) ─▶ Index ┘               │                    ▼
//! evidence (Prometheus, polled in the background) ─▶ PlaintextEdges┘   explain (message,
//!                                                                       warnings, audit)
//! check (manifests ─▶ changes) and report (one lock-down per workload) reuse the engine.
//! ```
//!
//! `engine` is pure: it sees an index snapshot, a change and a traffic snapshot, never the
//! network or a clock. I/O lives at the edges: `inventory::file`, `inventory::live`,
//! `evidence`, `server`, `tls`, `certs::cluster`, `app`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod authz;
pub mod certs;
pub mod check;
pub mod config;
pub mod decision;
pub mod engine;
pub mod evidence;
pub mod explain;
pub mod inventory;
pub mod limits;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod report;
pub mod server;
pub mod text;
pub mod tls;
pub mod yaml;
