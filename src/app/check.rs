//! `mtls-guard check`: manifests judged before they are applied (README "Commands").

use super::inventory::inventory_for;
use super::AppError;
use crate::check;
use crate::config::{CheckArgs, CheckOutput};

/// `mtls-guard check`: the report to print, and whether any object would be denied.
pub async fn check(args: &CheckArgs) -> Result<(String, bool), AppError> {
    let manifests = check::read_manifests(&args.files)?;
    let mut index = inventory_for(&args.cluster, &args.inventory).await?;
    let results = check::check(&mut index, &manifests, args.delete, args.mode)?;
    let denied = results.iter().any(check::Checked::denied);
    let out = match args.output {
        CheckOutput::Text => check::text(&results),
        CheckOutput::Json => pretty_json(&check::json(&results))?,
    };
    Ok((out, denied))
}

/// `value` as indented JSON, ending with a newline.
fn pretty_json(value: &impl serde::Serialize) -> Result<String, AppError> {
    let mut text =
        serde_json::to_string_pretty(value).map_err(|e| AppError::Io(std::io::Error::other(e)))?;
    text.push('\n');
    Ok(text)
}
