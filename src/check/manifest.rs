//! Manifests as `kubectl apply -f` reads them: YAML documents, JSON values, `List`s.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::CheckError;
use crate::model::RuleKind;

/// One object of a manifest file.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub source: String,
    pub value: Value,
}

impl Manifest {
    /// `namespace/name` (or `name`) as the object states it.
    pub fn name(&self) -> String {
        let field = |p: &str| self.value.pointer(p).and_then(Value::as_str);
        let name = field("/metadata/name").unwrap_or("<unnamed>");
        match field("/metadata/namespace") {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_string(),
        }
    }

    /// The object with the namespace `kubectl apply` would give it: `default` when a
    /// namespaced object names none.
    pub fn with_default_namespace(&self, kind: RuleKind) -> Value {
        let mut value = self.value.clone();
        if kind != RuleKind::MeshPolicy && self.value.pointer("/metadata/namespace").is_none() {
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".into(), "default".into());
            }
        }
        value
    }
}

/// Every object of the files, in order; directories contribute their `.yaml`, `.yml` and
/// `.json` files in name order.
pub fn read_manifests(paths: &[PathBuf]) -> Result<Vec<Manifest>, CheckError> {
    let mut out = Vec::new();
    for path in paths {
        add_path(path, &mut out)?;
    }
    Ok(out)
}

fn add_path(path: &Path, out: &mut Vec<Manifest>) -> Result<(), CheckError> {
    let io = |cause| CheckError::Io {
        path: path.to_path_buf(),
        cause,
    };
    if path.is_dir() {
        for f in crate::inventory::file::manifest_files(path).map_err(io)? {
            add_path(&f, out)?;
        }
        return Ok(());
    }
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut crate::inventory::file::open_regular(path).map_err(io)?,
        &mut text,
    )
    .map_err(io)?;
    let source = path.display().to_string();
    for doc in documents(&source, &text)? {
        flatten(&source, doc, out);
    }
    Ok(())
}

fn flatten(source: &str, value: Value, out: &mut Vec<Manifest>) {
    match value {
        Value::Null => {}
        Value::Object(mut map)
            if map
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && map.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = map.remove("items") {
                for item in items {
                    flatten(source, item, out);
                }
            }
        }
        value => out.push(Manifest {
            source: source.to_string(),
            value,
        }),
    }
}

fn documents(source_name: &str, text: &str) -> Result<Vec<Value>, CheckError> {
    let parse = |message: String| CheckError::Parse {
        source_name: source_name.to_string(),
        message,
    };
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut out = Vec::new();
        for v in serde_json::Deserializer::from_str(text).into_iter::<Value>() {
            match v.map_err(|e| parse(e.to_string()))? {
                Value::Array(items) => out.extend(items),
                v => out.push(v),
            }
        }
        return Ok(out);
    }
    let docs: Vec<Value> = crate::yaml::documents(text).map_err(parse)?;
    if let Some(bad) = docs.iter().find(|d| !d.is_object() && !d.is_null()) {
        return Err(parse(format!("a document is not an object: {bad}")));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_documents_flatten_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.yaml");
        std::fs::write(
            &f,
            "kind: List\nitems:\n- {kind: A, metadata: {name: a}}\n- {kind: B, metadata: {name: b}}\n---\n---\nkind: C\nmetadata: {name: c, namespace: x}\n",
        )
        .unwrap();
        let m = read_manifests(&[f]).unwrap();
        let names: Vec<String> = m.iter().map(Manifest::name).collect();
        assert_eq!(names, ["a", "b", "x/c"]);
    }

    #[test]
    fn scalars_and_broken_yaml_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [("s.yaml", "just a string\n"), ("b.yaml", "a: [1,\n")] {
            let f = dir.path().join(name);
            std::fs::write(&f, text).unwrap();
            assert!(matches!(
                read_manifests(&[f]),
                Err(CheckError::Parse { .. })
            ));
        }
    }
}
