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
/// Bytes read from a file streamed through the parser: the file size cap.
const MAX_READER_BYTES: usize = 1 << 30;
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

/// Whether `text` is one YAML document: no `---` or `...` line after the first one. (A block
/// scalar's lines are indented, so a line starting so is always a marker.)
pub fn is_single_document(text: &str) -> bool {
    single_document(text.lines())
}

/// [`is_single_document`] for a file, read line by line; unreadable text counts as several
/// documents, so that the whole-text reader reports the error.
pub fn is_single_document_in(reader: impl std::io::BufRead) -> bool {
    let mut unreadable = false;
    let lines = reader.lines().map_while(|l| {
        unreadable |= l.is_err();
        l.ok()
    });
    single_document(lines) && !unreadable
}

fn single_document<L: AsRef<str>>(lines: impl Iterator<Item = L>) -> bool {
    let mut lines = lines.filter(|l| {
        let l = l.as_ref();
        !l.trim().is_empty() && !l.starts_with('#')
    });
    if lines.next().is_none() {
        return true;
    }
    !lines.any(|l| l.as_ref().starts_with("---") || l.as_ref().starts_with("..."))
}

/// What went wrong reading a stream of items: the YAML, or the sink refused an item.
#[derive(Debug)]
pub enum StreamError<E> {
    Parse(String),
    Item(E),
}

/// Reads one YAML document, handing each element of its top-level `items` (or of a top-level
/// sequence) to `item` as soon as it is parsed, so a 100k-pod List never becomes one tree.
/// Returns the rest of the document, with `items` left empty.
pub fn stream_items<E>(
    text: &str,
    item: impl FnMut(serde_json::Value) -> Result<(), E>,
) -> Result<serde_json::Value, StreamError<E>> {
    streamed(item, |sink| {
        serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
            serde::de::DeserializeSeed::deserialize(Root(sink), de)
        })
    })
}

/// [`stream_items`] from a reader, so that not even the text is held whole.
pub fn stream_items_from<E>(
    reader: impl std::io::Read,
    item: impl FnMut(serde_json::Value) -> Result<(), E>,
) -> Result<serde_json::Value, StreamError<E>> {
    let mut options = options();
    if let Some(budget) = options.budget.as_mut() {
        budget.max_reader_input_bytes = Some(MAX_READER_BYTES);
    }
    streamed(item, |sink| {
        serde_saphyr::with_deserializer_from_reader_with_options(reader, options, |de| {
            serde::de::DeserializeSeed::deserialize(Root(sink), de)
        })
    })
}

fn streamed<E, F: FnMut(serde_json::Value) -> Result<(), E>>(
    item: F,
    read: impl FnOnce(&mut Sink<F, E>) -> Result<serde_json::Value, serde_saphyr::Error>,
) -> Result<serde_json::Value, StreamError<E>> {
    let mut sink = Sink { item, failed: None };
    let read = read(&mut sink);
    match (read, sink.failed) {
        (_, Some(e)) => Err(StreamError::Item(e)),
        (Ok(rest), None) => Ok(rest),
        (Err(e), None) => Err(StreamError::Parse(message(e))),
    }
}

struct Sink<F, E> {
    item: F,
    failed: Option<E>,
}

impl<F: FnMut(serde_json::Value) -> Result<(), E>, E> Sink<F, E> {
    /// Hands one item over; a refusal is kept whole and stops the parse.
    fn take<Er: serde::de::Error>(&mut self, value: serde_json::Value) -> Result<(), Er> {
        (self.item)(value).map_err(|e| {
            self.failed = Some(e);
            Er::custom("an item was refused")
        })
    }
}

/// The document's root: a mapping (its `items` streamed), a sequence (all streamed) or empty.
struct Root<'s, F, E>(&'s mut Sink<F, E>);

impl<'de, F: FnMut(serde_json::Value) -> Result<(), E>, E> serde::de::DeserializeSeed<'de>
    for Root<'_, F, E>
{
    type Value = serde_json::Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(serde_json::Value) -> Result<(), E>, E> serde::de::Visitor<'de>
    for Root<'_, F, E>
{
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a mapping or a sequence of Kubernetes objects")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut rest = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                map.next_value_seed(Items(&mut *self.0))?;
                rest.insert(key, serde_json::Value::Array(Vec::new()));
            } else {
                rest.insert(key, map.next_value()?);
            }
        }
        Ok(serde_json::Value::Object(rest))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Items(self.0).visit_seq(seq)?;
        Ok(serde_json::Value::Null)
    }

    fn visit_unit<Er>(self) -> Result<Self::Value, Er> {
        Ok(serde_json::Value::Null)
    }
}

/// A sequence whose elements go to the sink one at a time.
struct Items<'s, F, E>(&'s mut Sink<F, E>);

impl<'de, F: FnMut(serde_json::Value) -> Result<(), E>, E> serde::de::DeserializeSeed<'de>
    for Items<'_, F, E>
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, F: FnMut(serde_json::Value) -> Result<(), E>, E> serde::de::Visitor<'de>
    for Items<'_, F, E>
{
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a sequence of Kubernetes objects")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element()? {
            self.0.take(value)?;
        }
        Ok(())
    }

    fn visit_unit<Er>(self) -> Result<(), Er> {
        Ok(())
    }
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

    #[test]
    fn a_list_streams_its_items_and_returns_the_rest() {
        let text = "apiVersion: v1\nitems:\n- {kind: Pod, metadata: {name: a}}\n- {kind: Pod, metadata: {name: b}}\nkind: List\n";
        assert!(is_single_document(text));
        let mut names = Vec::new();
        let rest = stream_items(text, |item| -> Result<(), ()> {
            names.push(item["metadata"]["name"].as_str().unwrap().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(rest["kind"], "List");
        assert_eq!(rest["items"], serde_json::json!([]));
    }

    #[test]
    fn a_refused_item_stops_the_stream_with_its_own_error() {
        let mut seen = 0;
        let err = stream_items("- {n: 1}\n- {n: 2}\n- {n: 3}\n", |item| {
            seen += 1;
            if item["n"] == 2 {
                Err("two")
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(matches!(err, StreamError::Item("two")), "{err:?}");
        assert_eq!(seen, 2);
        assert!(!is_single_document("kind: Pod\n---\nkind: Service\n"));
        assert!(is_single_document(
            "---\nkind: Pod\ndata:\n  x: |\n    ---\n"
        ));
    }
}
