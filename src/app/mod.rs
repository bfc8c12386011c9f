//! What each subcommand does, wired from its parsed arguments: one file per command, and
//! where the inventory comes from.

mod certs;
mod check;
mod inventory;
mod report;
mod review;
mod serve;

pub use certs::certs;
pub use check::check;
pub use inventory::load_inventory;
pub use report::report;
pub use review::review;
pub use serve::serve;

use crate::admission::AdmissionError;
use crate::certs::CertError;
use crate::check::CheckError;
use crate::inventory::InventoryError;
use crate::tls::TlsError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("--kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cluster inventory: {0}")]
    ClusterSync(String),
    #[error("{0}")]
    Evidence(String),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Cert(#[from] CertError),
}
