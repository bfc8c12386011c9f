//! `mtls-guard review`: one AdmissionReview from a file or stdin, answered offline
//! (README "Commands").

use std::io::Read;

use super::{load_inventory, AppError};
use crate::admission;
use crate::config::ReviewArgs;
use crate::inventory::file;

/// `mtls-guard review`: the AdmissionReview response JSON for one request.
pub fn review(args: &ReviewArgs) -> Result<serde_json::Value, AppError> {
    let body = if args.review == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        let mut buf = Vec::new();
        file::open_regular(std::path::Path::new(&args.review))
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", args.review)))?;
        buf
    };
    let req = admission::parse_review(&body)?;
    let index = load_inventory(&args.inventory)?;
    Ok(admission::decide(&index, args.mode, &req).into_review_json())
}
