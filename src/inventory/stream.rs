//! Streaming read of JSON inventories: every `List` item goes into the index as soon as it is
//! parsed, so a 100k-pod `kubectl get -o json` never sits in memory as one tree.

use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::file::{InventoryError, Loader};

type Outcome = Result<(), InventoryError>;

/// One JSON document: a `List` (streamed item by item), an array of objects, or one object.
struct Document<'l> {
    loader: &'l mut Loader,
    source: &'l str,
}

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Outcome;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Outcome, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Kubernetes object, a List, or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outcome, A::Error> {
        let mut rest = serde_json::Map::new();
        let mut outcome = Ok(());
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "items" {
                streamed = true;
                let items = Items {
                    loader: &mut *self.loader,
                    source: self.source,
                };
                let result = map.next_value_seed(items)?;
                outcome = outcome.and(result);
            } else {
                rest.insert(key, map.next_value::<Value>()?);
            }
        }
        if !streamed {
            outcome =
                outcome.and_then(|()| self.loader.add_value(self.source, Value::Object(rest)));
        }
        Ok(outcome)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Outcome, A::Error> {
        Items {
            loader: self.loader,
            source: self.source,
        }
        .visit_seq(seq)
    }
}

/// The elements of `items` (or of a top-level array), added one at a time.
struct Items<'l> {
    loader: &'l mut Loader,
    source: &'l str,
}

impl<'de> DeserializeSeed<'de> for Items<'_> {
    type Value = Outcome;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Outcome, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Items<'_> {
    type Value = Outcome;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of Kubernetes objects")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Outcome, A::Error> {
        let mut outcome = Ok(());
        while let Some(item) = seq.next_element::<Value>()? {
            if outcome.is_ok() {
                outcome = self.loader.add_value(self.source, item);
            }
        }
        Ok(outcome)
    }
}

/// Reads one JSON document from `reader` into the loader.
pub(super) fn add_json(loader: &mut Loader, source: &str, reader: impl Read) -> Outcome {
    let parse = |e: serde_json::Error| InventoryError::Parse {
        source_name: source.to_string(),
        message: e.to_string(),
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let outcome = Document { loader, source }
        .deserialize(&mut de)
        .map_err(parse)?;
    de.end().map_err(parse)?;
    outcome
}
