//! mtls-guard: refuses an Istio STRICT mTLS lock-down while plaintext clients depend on it.
//!
//! ```text
//! AdmissionReview ─▶ admission ─▶ model::Rule (old, new) ─▶ engine::evaluate ─▶ Verdict
//!                                                  ▲                              │
//! inventory (files | demo) ─▶ inventory::Index ────┘                              ▼
//!                                        report (message, warnings, audit annotations)
//! ```
//!
//! `engine` is pure: it sees an index snapshot and a change, never the network or a clock.
//! I/O lives at the edges: `inventory::file`, `server`, `tls`, `cli`.
#![forbid(unsafe_code)]

pub mod admission;
pub mod app;
pub mod check;
pub mod config;
pub mod engine;
pub mod evidence;
pub mod inventory;
pub mod metrics;
pub mod model;
pub mod readiness;
pub mod report;
pub mod server;
pub mod tls;
