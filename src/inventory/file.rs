//! Inventory from files: what `kubectl get … -o yaml|json` prints (a `List`, or several
//! documents), read through the same conversions the live watches use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1 as core;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{Filters, Index};
use crate::model::{
    self, ApiCaller, CallerKind, MeshConfig, ModelError, NetworkPolicy, Pod, PodObject, Rule,
    RuleKind, Service,
};
use crate::yaml::StreamError;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read inventory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("inventory {source_name} is not valid YAML or JSON: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error("the inventory holds no pods, so every lock-down would be allowed; pass --allow-empty-inventory if that is intended")]
    Empty,
    #[error("inventory {source_name}: {kind} {name}: {source}")]
    Object {
        source_name: String,
        kind: String,
        name: String,
        source: ModelError,
    },
}

/// Reads documents into one index.
pub struct Loader {
    index: Index,
    skipped: BTreeMap<String, usize>,
}

impl Loader {
    pub fn new(filters: Filters) -> Loader {
        Loader {
            index: Index::new(filters),
            skipped: BTreeMap::new(),
        }
    }

    /// A file, or every `.yaml`, `.yml` and `.json` file of a directory (sorted, not recursive).
    pub fn add_path(&mut self, path: &Path) -> Result<(), InventoryError> {
        let io = |source| InventoryError::Io {
            path: path.to_path_buf(),
            source,
        };
        if path.is_dir() {
            for f in manifest_files(path).map_err(io)? {
                self.add_path(&f)?;
            }
            return Ok(());
        }
        let mut reader = std::io::BufReader::new(open_regular(path).map_err(io)?);
        let head = std::io::BufRead::fill_buf(&mut reader).map_err(io)?;
        let is_json = head
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{' || *b == b'[');
        let name = path.display().to_string();
        if is_json {
            return self.add_json(&name, reader);
        }
        let one_document = crate::yaml::is_single_document_in(std::io::BufReader::new(
            open_regular(path).map_err(io)?,
        ));
        if one_document {
            let rest = crate::yaml::stream_items_from(reader, |item| self.add_value(&name, item))
                .map_err(|e| streamed_err(&name, e))?;
            return self.add_value(&name, rest);
        }
        let mut text = String::new();
        std::io::Read::read_to_string(&mut reader, &mut text).map_err(io)?;
        self.add_documents(&name, &text)
    }

    /// Reads one JSON document from `reader`, list items one by one as they are split off.
    fn add_json(&mut self, source: &str, reader: impl std::io::Read) -> Result<(), InventoryError> {
        let parse = |message: String| InventoryError::Parse {
            source_name: source.to_string(),
            message,
        };
        let add = |bytes: &[u8], at: usize| self.add_item(source, bytes, at);
        let rest = super::stream::split_json(reader, add, parse)?;
        let rest = serde_json::from_slice(&rest).map_err(|e| parse(e.to_string()))?;
        self.add_value(source, rest)
    }

    /// One list item: a Pod, nearly all of a large inventory, is read straight into the part
    /// the guard uses (which checks `apiVersion` and `kind` as it meets them, so another kind
    /// fails at once); anything else, or a Pod that does not read as one (reported with its
    /// name), as JSON. An item that names neither kind nor version, as in the API server's
    /// own `PodList` (`kubectl get --raw /api/v1/pods`), is a Pod when it has containers.
    fn add_item(&mut self, source: &str, bytes: &[u8], at: usize) -> Result<(), InventoryError> {
        if let Ok(pod) = serde_json::from_slice::<PodObject>(bytes) {
            let unnamed = !pod.names_its_kind && !pod.names_its_version;
            if pod.names_its_kind || unnamed && !pod.spec.containers.is_empty() {
                return self.add_pod(source, &pod);
            }
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| InventoryError::Parse {
            source_name: source.to_string(),
            message: format!("item {at}: {e}"),
        })?;
        self.add_value(source, value)
    }

    /// Several YAML documents, each read whole.
    fn add_documents(&mut self, source_name: &str, text: &str) -> Result<(), InventoryError> {
        documents(source_name, text)?
            .into_iter()
            .try_for_each(|doc| self.add_value(source_name, doc))
    }

    pub fn add_str(&mut self, source_name: &str, text: &str) -> Result<(), InventoryError> {
        let trimmed = text.trim_start();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            return self.add_json(source_name, text.as_bytes());
        }
        if !crate::yaml::is_single_document(text) {
            return self.add_documents(source_name, text);
        }
        let rest = crate::yaml::stream_items(text, |item| self.add_value(source_name, item))
            .map_err(|e| streamed_err(source_name, e))?;
        self.add_value(source_name, rest)
    }

    fn add_pod(&mut self, source_name: &str, pod: &PodObject) -> Result<(), InventoryError> {
        let pod = Pod::read(pod).map_err(|source| InventoryError::Object {
            source_name: source_name.to_string(),
            kind: "Pod".into(),
            name: pod
                .metadata
                .name
                .clone()
                .unwrap_or_else(|| "<unnamed>".into()),
            source,
        })?;
        self.index.upsert_pod(pod);
        Ok(())
    }

    fn add_value(&mut self, source_name: &str, value: Value) -> Result<(), InventoryError> {
        // A document that is a sequence of objects, as a JSON top-level array is.
        if let Value::Array(items) = value {
            return items
                .into_iter()
                .try_for_each(|item| self.add_value(source_name, item));
        }
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "List" || kind.ends_with("List") && value.get("items").is_some() {
            if let Value::Object(mut map) = value {
                if let Some(Value::Array(items)) = map.remove("items") {
                    for item in items {
                        self.add_value(source_name, item)?;
                    }
                }
            }
            return Ok(());
        }
        if value.is_null() {
            return Ok(());
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let object_err = |source: ModelError| InventoryError::Object {
            source_name: source_name.to_string(),
            kind: kind.to_string(),
            name: value
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("<unnamed>")
                .to_string(),
            source,
        };
        if let Some(rule_kind) = RuleKind::from_group_kind(group, kind) {
            let rule = Rule::from_json(rule_kind, &value).map_err(object_err)?;
            self.index.upsert_rule(rule);
            return Ok(());
        }
        if let Some(caller_kind) = CallerKind::from_group_kind(group, kind) {
            let domain = &self.index.filters().cluster_domain;
            let caller = ApiCaller::from_json(caller_kind, &value, domain).map_err(object_err)?;
            self.index.upsert_api_caller(caller);
            return Ok(());
        }
        match (group, kind) {
            ("", "Pod") => {
                let pod = typed::<PodObject>(kind, &value).map_err(object_err)?;
                self.add_pod(source_name, &pod)?;
            }
            ("", "Service") => {
                let svc = typed::<core::Service>(kind, &value).map_err(object_err)?;
                let domain = &self.index.filters().cluster_domain;
                let svc = Service::from_api(&svc, domain).map_err(object_err)?;
                self.index.upsert_service(svc);
            }
            ("networking.k8s.io", "NetworkPolicy")
                if self.index.filters().respect_network_policies =>
            {
                let np = typed::<k8s_openapi::api::networking::v1::NetworkPolicy>(kind, &value)
                    .map_err(object_err)?;
                self.index
                    .upsert_network_policy(NetworkPolicy::from_api(&np).map_err(object_err)?);
            }
            ("", "Namespace") => {
                let ns = typed::<core::Namespace>(kind, &value).map_err(object_err)?;
                self.index
                    .upsert_namespace(super::read_namespace(&ns).map_err(object_err)?);
            }
            ("", "ConfigMap") => {
                let cm = typed::<core::ConfigMap>(kind, &value).map_err(object_err)?;
                if is_mesh_config(&cm, &self.index.filters().istio_namespace) {
                    self.index
                        .set_mesh(MeshConfig::from_configmap(&cm).map_err(object_err)?);
                }
            }
            _ => {
                *self
                    .skipped
                    .entry(format!("{api_version} {kind}"))
                    .or_default() += 1
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Index {
        for (kind, count) in &self.skipped {
            tracing::info!(kind = %kind, count, "inventory: skipped objects of a kind the guard does not read");
        }
        self.index
    }
}

/// Largest file read as an inventory or manifest: far above a `kubectl get` dump of 100k pods
/// (about 130 MB of JSON), far below what would exhaust memory.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Opens a regular file of at most [`MAX_FILE_BYTES`], reading no further than that: a FIFO
/// would hang and `/dev/zero` would never end.
pub fn open_regular(path: &Path) -> std::io::Result<std::io::Take<std::fs::File>> {
    use std::io::{Error, ErrorKind, Read};
    // Checked before opening: opening a FIFO blocks until someone writes to it.
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("{} bytes is over the limit of {MAX_FILE_BYTES}", meta.len()),
        ));
    }
    Ok(std::fs::File::open(path)?.take(MAX_FILE_BYTES))
}

/// The `.yaml`, `.yml` and `.json` files of a directory, sorted (not recursive), as
/// `kubectl apply -f DIR` reads them.
pub fn manifest_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

pub fn is_mesh_config(cm: &core::ConfigMap, istio_namespace: &str) -> bool {
    cm.metadata.name.as_deref() == Some(model::mesh_config::CONFIGMAP_NAME)
        && cm.metadata.namespace.as_deref() == Some(istio_namespace)
}

fn typed<T: DeserializeOwned>(kind: &str, value: &Value) -> Result<T, ModelError> {
    T::deserialize(value).map_err(|e| ModelError::Invalid(format!("not a valid {kind}: {e}")))
}

/// The documents of a YAML stream (JSON goes through the streaming reader instead).
fn streamed_err(source_name: &str, e: StreamError<InventoryError>) -> InventoryError {
    match e {
        StreamError::Parse(message) => InventoryError::Parse {
            source_name: source_name.to_string(),
            message,
        },
        StreamError::Item(e) => e,
    }
}

fn documents(source_name: &str, text: &str) -> Result<Vec<Value>, InventoryError> {
    crate::yaml::documents(text).map_err(|message| InventoryError::Parse {
        source_name: source_name.to_string(),
        message,
    })
}

/// Loads files and directories into one index; one without pods is an error unless
/// `allow_empty`, since it would allow every lock-down.
pub fn load(
    paths: &[PathBuf],
    filters: Filters,
    allow_empty: bool,
) -> Result<Index, InventoryError> {
    let mut loader = Loader::new(filters);
    for p in paths {
        loader.add_path(p)?;
    }
    let index = loader.finish();
    if index.pod_count() == 0 && !allow_empty {
        return Err(InventoryError::Empty);
    }
    Ok(index)
}

/// The seed scenario (foo, bar with sidecars; legacy without), embedded in the binary.
pub const DEMO_INVENTORY: &str = include_str!("demo.yaml");

pub fn demo(filters: Filters) -> Result<Index, InventoryError> {
    let mut loader = Loader::new(filters);
    loader.add_str("embedded demo inventory", DEMO_INVENTORY)?;
    Ok(loader.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_lists_arrays_and_single_objects_stream_into_the_index() {
        let pod = |name: &str| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "a"}});
        let list = json!({"apiVersion": "v1", "kind": "List", "items": [pod("p1"), pod("p2")], "metadata": {}});
        let mut loader = Loader::new(Filters::default());
        loader.add_str("list", &list.to_string()).unwrap();
        loader
            .add_str("array", &json!([pod("p3")]).to_string())
            .unwrap();
        loader.add_str("object", &pod("p4").to_string()).unwrap();
        assert_eq!(loader.finish().pod_count(), 4);

        let mut loader = Loader::new(Filters::default());
        let err = loader
            .add_str("junk", "{\"kind\": \"List\", \"items\": []} trailing")
            .unwrap_err();
        assert!(err.to_string().contains("junk"), "{err}");
        let bad = json!({"kind": "List", "items": [{"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": {"name": "x"}, "spec": {"mtls": {"mode": "NOPE"}}}]});
        let err = loader.add_str("bad", &bad.to_string()).unwrap_err();
        assert!(err.to_string().contains("PeerAuthentication x"), "{err}");
    }

    #[test]
    fn the_api_servers_own_pod_list_reads_though_its_items_name_no_kind() {
        let raw = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
            {"metadata": {"name": "p1", "namespace": "a"}, "spec": {"containers": [{"name": "app"}]}},
            {"metadata": {"name": "svc", "namespace": "a"}, "spec": {"ports": [{"port": 80}]}}]});
        let mut loader = Loader::new(Filters::default());
        loader.add_str("raw", &raw.to_string()).unwrap();
        let index = loader.finish();
        assert_eq!(
            index.pod_count(),
            1,
            "the item without containers is no Pod"
        );
    }

    #[test]
    fn a_probe_without_a_port_does_not_fail_the_pod() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "a"},
            "spec": {"containers": [{"name": "app", "readinessProbe": {"httpGet": {"path": "/"}},
                "livenessProbe": {"grpc": {"port": null}}}]}});
        let mut loader = Loader::new(Filters::default());
        loader.add_str("probe", &pod.to_string()).unwrap();
        assert_eq!(loader.finish().pod_count(), 1);
    }

    #[test]
    fn a_yaml_list_streams_into_the_index_and_names_a_bad_item() {
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p1, namespace: a}\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p2, namespace: a}\n";
        let mut loader = Loader::new(Filters::default());
        loader.add_str("list.yaml", list).unwrap();
        assert_eq!(loader.finish().pod_count(), 2);

        let bad = "kind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: PeerAuthentication\n  metadata: {name: x}\n  spec: {mtls: {mode: NOPE}}\n";
        let err = Loader::new(Filters::default())
            .add_str("bad.yaml", bad)
            .unwrap_err();
        assert!(err.to_string().contains("PeerAuthentication x"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("list.yaml");
        std::fs::write(&file, list).unwrap();
        let index = load(std::slice::from_ref(&file), Filters::default(), false).unwrap();
        assert_eq!(index.pod_count(), 2, "read from the file as a stream");
        std::fs::write(&file, bad).unwrap();
        let err = load(&[file], Filters::default(), false).unwrap_err();
        assert!(err.to_string().contains("PeerAuthentication x"), "{err}");
        let sequences = "- {apiVersion: v1, kind: Pod, metadata: {name: p3, namespace: a}}\n---\n- {apiVersion: v1, kind: Pod, metadata: {name: p4, namespace: a}}\n";
        let mut loader = Loader::new(Filters::default());
        loader.add_str("sequences.yaml", sequences).unwrap();
        assert_eq!(
            loader.finish().pod_count(),
            2,
            "a document that is a sequence is read whether or not others follow"
        );
        let broken = "kind: List\nitems:\n- {kind: Pod\n";
        let err = Loader::new(Filters::default())
            .add_str("broken.yaml", broken)
            .unwrap_err();
        assert!(err.to_string().contains("broken.yaml"), "{err}");
    }
}
