//! Certificates the guard makes and keeps itself: a CA and a serving certificate in a Secret
//! of its own namespace, the CA injected into its ValidatingWebhookConfiguration, both renewed
//! before they expire (README: Certificates).
//!
//! `issue` makes and reads certificates, `plan` decides the next step from what is stored
//! (pure), and `cluster` carries the steps out against the API server on every replica.

pub mod cluster;
pub mod issue;
pub mod plan;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what}: {message}")]
    Parse { what: &'static str, message: String },
    #[error("--cert-validity must be at most a third of --ca-validity, and not zero")]
    Validity,
    #[error("{action}: {source}")]
    Api {
        action: &'static str,
        source: Box<kube::Error>,
    },
    #[error("the Secret and the webhook kept changing under this replica; retrying")]
    NoProgress,
}
