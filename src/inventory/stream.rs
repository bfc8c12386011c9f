//! Streaming split of JSON inventories: the document is read in blocks and every element of a
//! `List`'s `items` (or of a top-level array) is handed to a sink as soon as its last byte is
//! read, so a 100k-pod `kubectl get -o json` never sits in memory whole, and each item can be
//! parsed from a byte slice (far faster than serde_json's byte-at-a-time reader). What is left
//! of the document (a List's `kind` and `metadata`, or a single object) is returned.

use std::io::Read;

/// Bytes read from the file at a time.
const BLOCK: usize = 1 << 20;

/// Where the splitter is in the document.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    /// Outside the list of items: bytes go to the rest of the document.
    Rest,
    /// Inside the list, between items.
    Between,
    /// Inside one item, whose bytes are being collected.
    Item,
}

/// Splits a JSON document into its list items and the rest, without validating it: each item
/// and the rest are parsed by serde_json afterwards, which reports any error.
struct Splitter {
    place: Place,
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Depth of the items array's contents.
    list_depth: usize,
    item: Vec<u8>,
    rest: Vec<u8>,
    /// Where in `rest` the string being read started, when it may be a key of the top object.
    key_start: Option<usize>,
    /// The last key of the top object was `items`, and no value has begun since.
    after_items_key: bool,
    items: usize,
}

impl Splitter {
    fn new() -> Splitter {
        Splitter {
            place: Place::Rest,
            depth: 0,
            in_string: false,
            escaped: false,
            list_depth: 0,
            item: Vec::new(),
            rest: Vec::new(),
            key_start: None,
            after_items_key: false,
            items: 0,
        }
    }

    /// Tracks strings; `true` when `b` is inside (or closes) a string.
    fn string(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            return true;
        }
        if b == b'"' {
            self.in_string = true;
            return true;
        }
        false
    }

    fn feed<E>(
        &mut self,
        bytes: &[u8],
        item: &mut impl FnMut(&[u8], usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut i = 0;
        // Where the current item's bytes begin in this block.
        let mut start = 0;
        while i < bytes.len() {
            match self.place {
                Place::Rest => {
                    self.rest_byte(bytes[i]);
                    i += 1;
                }
                Place::Between => {
                    if self.between_byte(bytes[i]) {
                        start = i;
                    } else {
                        i += 1;
                    }
                }
                Place::Item => i = self.item_run(bytes, i, start, item)?,
            }
        }
        if self.place == Place::Item {
            self.item.extend_from_slice(&bytes[start..]);
        }
        Ok(())
    }

    /// Scans the current item from `i`: strings are skipped to their next quote or escape at
    /// once. Returns where scanning stopped: the block's end, or just past the item's end.
    fn item_run<E>(
        &mut self,
        bytes: &[u8],
        mut i: usize,
        start: usize,
        item: &mut impl FnMut(&[u8], usize) -> Result<(), E>,
    ) -> Result<usize, E> {
        while i < bytes.len() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                let Some(off) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
                    return Ok(bytes.len());
                };
                i += off;
                if bytes[i] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                i += 1;
                continue;
            }
            let at_top = self.depth == self.list_depth;
            match bytes[i] {
                b'"' => self.in_string = true,
                // A scalar item ends before the separator or the end of the list.
                b',' | b']' if at_top => {
                    self.finish_item(&bytes[start..i], item)?;
                    return Ok(i);
                }
                // Closes more than the item opened: malformed, so it ends here and its parse
                // reports it, instead of the depth sinking below the list's.
                b'}' if at_top => {
                    self.finish_item(&bytes[start..=i], item)?;
                    return Ok(i + 1);
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == self.list_depth {
                        self.finish_item(&bytes[start..=i], item)?;
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
            i += 1;
        }
        Ok(i)
    }

    fn rest_byte(&mut self, b: u8) {
        let was_in_string = self.in_string;
        self.rest.push(b);
        if self.string(b) {
            if !was_in_string && self.depth == 1 {
                self.key_start = Some(self.rest.len());
            } else if !self.in_string {
                let key = self
                    .key_start
                    .take()
                    .map(|s| &self.rest[s..self.rest.len() - 1]);
                self.after_items_key = key == Some(b"items");
            }
            return;
        }
        match b {
            b' ' | b'\n' | b'\r' | b'\t' | b':' => {}
            b'[' if self.depth == 0 || (self.depth == 1 && self.after_items_key) => {
                self.depth += 1;
                self.list_depth = self.depth;
                self.place = Place::Between;
                self.after_items_key = false;
            }
            b'{' | b'[' => {
                self.depth += 1;
                self.after_items_key = false;
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                self.after_items_key = false;
            }
            _ => self.after_items_key = false,
        }
    }

    /// A byte between items; `true` when it begins an item (and is not consumed).
    fn between_byte(&mut self, b: u8) -> bool {
        match b {
            b' ' | b'\n' | b'\r' | b'\t' | b',' => false,
            b']' => {
                self.rest.push(b']');
                self.depth -= 1;
                self.place = Place::Rest;
                false
            }
            _ => {
                self.place = Place::Item;
                true
            }
        }
    }

    /// Hands over a complete item: its last piece is `tail`, after what earlier blocks held.
    fn finish_item<E>(
        &mut self,
        tail: &[u8],
        item: &mut impl FnMut(&[u8], usize) -> Result<(), E>,
    ) -> Result<(), E> {
        self.place = Place::Between;
        let at = self.items;
        self.items += 1;
        if self.item.is_empty() {
            return item(tail, at);
        }
        self.item.extend_from_slice(tail);
        let result = item(&self.item, at);
        self.item.clear();
        result
    }
}

/// Reads a JSON document from `reader`, handing each list item to `item` with its position,
/// and returns the rest of the document. `fail` words a read error or a truncated list in
/// the sink's error type.
pub(super) fn split_json<E>(
    mut reader: impl Read,
    mut item: impl FnMut(&[u8], usize) -> Result<(), E>,
    fail: impl Fn(String) -> E,
) -> Result<Vec<u8>, E> {
    let mut splitter = Splitter::new();
    let mut block = vec![0; BLOCK];
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(e.to_string())),
        };
        splitter.feed(&block[..n], &mut item)?;
    }
    if splitter.place != Place::Rest {
        return Err(fail("the document ends inside its list of items".into()));
    }
    Ok(splitter.rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The items and the rest of `doc`, fed `chunk` bytes at a time.
    fn split(doc: &str, chunk: usize) -> (Vec<String>, String) {
        let mut splitter = Splitter::new();
        let mut items = Vec::new();
        let mut add = |bytes: &[u8], _at: usize| -> Result<(), ()> {
            items.push(String::from_utf8(bytes.to_vec()).unwrap());
            Ok(())
        };
        for piece in doc.as_bytes().chunks(chunk) {
            splitter.feed(piece, &mut add).unwrap();
        }
        assert!(splitter.place == Place::Rest);
        (items, String::from_utf8(splitter.rest).unwrap())
    }

    #[test]
    fn items_are_split_whole_however_the_blocks_fall() {
        let doc = r#"{"apiVersion": "v1", "metadata": {"items": [1]},
            "items": [ {"a": "x\"]},[{"}, {"b": [[], {"c": "\\"}]} , 7, "s,]"],
            "kind": "List"}"#;
        let want = vec![
            r#"{"a": "x\"]},[{"}"#.to_string(),
            r#"{"b": [[], {"c": "\\"}]}"#.to_string(),
            "7".to_string(),
            r#""s,]""#.to_string(),
        ];
        for chunk in [1, 2, 3, 7, 64, doc.len()] {
            let (items, rest) = split(doc, chunk);
            assert_eq!(items, want, "chunk {chunk}");
            let rest: serde_json::Value = serde_json::from_str(&rest).unwrap();
            assert_eq!(rest["items"], serde_json::json!([]), "chunk {chunk}");
            assert_eq!(rest["metadata"]["items"], serde_json::json!([1]));
            assert_eq!(rest["kind"], "List");
        }
    }

    #[test]
    fn a_top_level_array_is_its_items_and_a_single_object_is_all_rest() {
        let (items, rest) = split(r#" [{"kind": "Pod"}, {"kind": "Service"}] "#, 5);
        assert_eq!(items.len(), 2);
        assert_eq!(rest.trim(), "[]");
        let one = r#"{"kind": "Namespace", "metadata": {"name": "a"}}"#;
        let (items, rest) = split(one, 4);
        assert!(items.is_empty());
        assert_eq!(rest, one);
    }

    /// Found by fuzzing: a closer at the list's own depth used to drive the depth below the
    /// list's and overflow it.
    #[test]
    fn an_item_that_closes_more_than_it_opens_is_handed_over_for_its_parse_to_reject() {
        for doc in ["[}}]", r#"{"items": [}}]}"#, r#"{"items": [1}, 2]}"#] {
            for chunk in [1, 2, doc.len()] {
                let mut splitter = Splitter::new();
                let mut items = Vec::new();
                let mut add = |bytes: &[u8], _at: usize| -> Result<(), ()> {
                    items.push(bytes.to_vec());
                    Ok(())
                };
                for piece in doc.as_bytes().chunks(chunk) {
                    splitter.feed(piece, &mut add).unwrap();
                }
                assert!(
                    items
                        .iter()
                        .any(|i| serde_json::from_slice::<serde_json::Value>(i).is_err()),
                    "{doc} in chunks of {chunk}: {items:?}"
                );
            }
        }
    }
}
