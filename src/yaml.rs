//! The one YAML parser, with budgets: real `kubectl get -o yaml` dumps (100k pods and more)
//! pass, while an alias bomb or an absurdly deep document is refused before it costs time or
//! memory. `kubectl` never writes anchors, so a few hundred are plenty for hand-written files.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Parser events and nodes of one file: a 100k-pod dump has tens of millions; the file size cap
/// (1 GiB) comes first for anything larger.
const MAX_EVENTS: usize = 400_000_000;
const MAX_NODES: usize = 200_000_000;
const MAX_SCALAR_BYTES: usize = 1 << 30;
const MAX_DOCUMENTS: usize = 1_000_000;
const MAX_ANCHORS: usize = 1_000;
const MAX_ALIASES: usize = 1_000;
/// Events an alias may replay in all: what stops an alias bomb.
const MAX_REPLAYED_EVENTS: usize = 100_000;

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = MAX_EVENTS;
    budget.max_nodes = MAX_NODES;
    budget.max_total_scalar_bytes = MAX_SCALAR_BYTES;
    budget.max_documents = MAX_DOCUMENTS;
    budget.max_anchors = MAX_ANCHORS;
    budget.max_aliases = MAX_ALIASES;
    budget.max_recorded_anchor_events = MAX_REPLAYED_EVENTS;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = MAX_REPLAYED_EVENTS;
    options
}

/// The parser's message on one line: it also draws the input around the error, which a one-line
/// error report and a log line do without.
fn message(e: serde_saphyr::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Every document of a YAML stream; an empty document is `null`.
pub fn documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    serde_saphyr::from_multiple_with_options(text, options()).map_err(message)
}

pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_saphyr::from_str_with_options(text, options()).map_err(message)
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    serde_saphyr::to_string(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alias_bomb_is_refused_quickly() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for n in 1..12 {
            let p = n - 1;
            bomb.push_str(&format!(
                "a{n}: &a{n} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = documents(&bomb).unwrap_err();
        assert!(err.contains("limit") || err.contains("budget"), "{err}");
    }

    #[test]
    fn several_documents_and_plain_kubernetes_yaml_read_as_json() {
        let docs = documents(
            "kind: Pod\nmetadata: {name: a}\n---\nkind: Service\nspec:\n  ports: [{port: 80}]\n",
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["spec"]["ports"][0]["port"], 80);
        let anchors = documents("base: &b {app: x}\ncopy: *b\n").unwrap();
        assert_eq!(anchors[0]["copy"]["app"], "x");
    }
}
