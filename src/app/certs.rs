//! `mtls-guard certs`: a CA and serving certificate written to a directory (README "Certificates").

use base64::Engine as _;

use super::AppError;
use crate::config::CertsArgs;
use crate::tls;

/// `mtls-guard certs`: writes the files and returns the base64 caBundle.
pub fn certs(args: &CertsArgs) -> Result<String, AppError> {
    let generated = tls::generate(&args.names)?;
    tls::write(&args.out, &generated)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(generated.ca_pem))
}
