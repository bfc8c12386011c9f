//! The live inventory: one watch per kind keeps the shared index current: kube-rs' watcher,
//! and for Pods the protobuf watch of [`super::pod_watch`].
//!
//! Objects are trimmed to their model form as they arrive; a relist replaces a kind's objects
//! whole, single events change one object. A CRD that is not installed counts as empty and is
//! looked for again every [`CRD_RECHECK`].

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1 as core;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event, InitialListStrategy};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use super::{file::is_mesh_config, pod_watch, Item, Listed, SharedIndex, WatchedKind};
use crate::model::{
    ApiCaller, CallerKind, MeshConfig, ModelError, NetworkPolicy, Pod, PodObject, Rule, RuleKind,
    Service,
};

pub const CRD_RECHECK: Duration = Duration::from_secs(60);
/// Objects of an initial list applied to the index under one write lock.
const INIT_BATCH: usize = 500;

/// API group, served versions in order of preference, and kind, of each reviewed CRD.
const CRDS: [(RuleKind, &str, &[&str], &str); 4] = [
    (
        RuleKind::PeerAuthentication,
        "security.istio.io",
        &["v1", "v1beta1"],
        "PeerAuthentication",
    ),
    (
        RuleKind::Policy,
        "authentication.istio.io",
        &["v1alpha1"],
        "Policy",
    ),
    (
        RuleKind::MeshPolicy,
        "authentication.istio.io",
        &["v1alpha1"],
        "MeshPolicy",
    ),
    (
        RuleKind::DestinationRule,
        "networking.istio.io",
        &["v1", "v1beta1", "v1alpha3"],
        "DestinationRule",
    ),
];

/// Starts a watcher for every kind; they run until the process ends.
pub fn spawn(client: Client, shared: Arc<SharedIndex>) {
    let cfg = watcher::Config::default;
    let (domain, ns, respect_network_policies) = shared.read(|index| {
        let f = index.filters();
        (
            f.cluster_domain.clone(),
            f.istio_namespace.clone(),
            f.respect_network_policies,
        )
    });
    // Pods, most of any cluster, come as one stream of watch events rather than pages of a
    // list: the guard decodes while the API server sends, instead of each waiting on the
    // other page by page; and in protobuf, which costs both sides a fraction of JSON (see
    // `pod_watch`). An API server that does not stream lists gets pages of JSON (see `run`).
    let pods = Api::<PodObject>::all(client.clone());
    let pod_client = client.clone();
    spawn_events(
        move |config: &watcher::Config| match config.initial_list_strategy {
            InitialListStrategy::StreamingList => pod_watch::events(pod_client.clone()).boxed(),
            InitialListStrategy::ListWatch => json_events(&pods, config),
        },
        cfg().streaming_lists(),
        &shared,
        WatchedKind::Pod,
        |p| Pod::read(p).map(Item::Pod),
    );
    spawn_watch(
        Api::<core::Namespace>::all(client.clone()),
        cfg(),
        &shared,
        WatchedKind::Namespace,
        |n| super::read_namespace(n).map(Item::Namespace),
    );
    spawn_callers(&client, &shared, &domain);
    if respect_network_policies {
        spawn_watch(
            Api::<k8s_openapi::api::networking::v1::NetworkPolicy>::all(client.clone()),
            cfg(),
            &shared,
            WatchedKind::NetworkPolicy,
            |n| Ok(Item::NetworkPolicy(NetworkPolicy::read(n))),
        );
    } else {
        shared.mark_synced(WatchedKind::NetworkPolicy);
    }
    spawn_watch(
        Api::<core::Service>::all(client.clone()),
        cfg(),
        &shared,
        WatchedKind::Service,
        move |s| Service::from_api(s, &domain).map(Item::Service),
    );
    let mesh_cfg = cfg().fields(&format!(
        "metadata.name={}",
        crate::model::mesh_config::CONFIGMAP_NAME
    ));
    spawn_watch(
        Api::<core::ConfigMap>::namespaced(client.clone(), &ns),
        mesh_cfg,
        &shared,
        WatchedKind::MeshConfig,
        move |cm| {
            if is_mesh_config(cm, &ns) {
                MeshConfig::from_configmap(cm).map(Item::Mesh)
            } else {
                Err(ModelError::Invalid("not the mesh config".into()))
            }
        },
    );
    for (rule_kind, group, versions, kind) in CRDS {
        tokio::spawn(watch_crd(
            client.clone(),
            Arc::clone(&shared),
            rule_kind,
            group,
            versions,
            kind,
        ));
    }
}

/// One watch per kind whose objects make the API server call Services.
fn spawn_callers(client: &Client, shared: &Arc<SharedIndex>, domain: &str) {
    use k8s_openapi::api::admissionregistration::v1 as admission;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    use CallerKind::*;
    spawn_caller::<admission::ValidatingWebhookConfiguration>(
        client,
        shared,
        ValidatingWebhookConfiguration,
        domain,
    );
    spawn_caller::<admission::MutatingWebhookConfiguration>(
        client,
        shared,
        MutatingWebhookConfiguration,
        domain,
    );
    spawn_caller::<APIService>(client, shared, ApiService, domain);
    spawn_caller::<CustomResourceDefinition>(client, shared, CustomResourceDefinition, domain);
}

/// The watch of one caller kind, trimmed to the Service ports its objects name.
fn spawn_caller<K>(client: &Client, shared: &Arc<SharedIndex>, kind: CallerKind, domain: &str)
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug
        + Send
        + 'static,
{
    let domain = domain.to_string();
    spawn_watch(
        Api::<K>::all(client.clone()),
        watcher::Config::default(),
        shared,
        WatchedKind::ApiCaller(kind),
        move |obj: &K| {
            let value =
                serde_json::to_value(obj).map_err(|e| ModelError::decode(kind.as_str(), e))?;
            ApiCaller::from_json(kind, &value, &domain).map(Item::ApiCaller)
        },
    );
}

/// Whether discovery says the kind is not served (as opposed to failing to say anything).
fn not_found(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => status.code == 404,
        kube::Error::Discovery(kube::error::DiscoveryError::MissingKind(_)) => true,
        _ => false,
    }
}

/// Finds the first served version of a CRD kind, or `None` when it is not installed; any other
/// answer (forbidden, a server error, no connection) is an error, never "not installed".
async fn discover(
    client: &Client,
    group: &str,
    versions: &[&str],
    kind: &str,
) -> Result<Option<ApiResource>, kube::Error> {
    for version in versions {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        match kube::discovery::pinned_kind(client, &gvk).await {
            Ok((resource, _)) => return Ok(Some(resource)),
            Err(e) if not_found(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// How long a failed discovery waits before it is tried again.
const DISCOVERY_RETRY: Duration = Duration::from_secs(5);

async fn watch_crd(
    client: Client,
    shared: Arc<SharedIndex>,
    rule_kind: RuleKind,
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
) {
    let watched = WatchedKind::Rule(rule_kind);
    // Back to discovery whenever the served kind goes away (its CRD deleted): then it is
    // empty again, not a watch failing for ever.
    loop {
        let resource = discovered(&client, &shared, watched, group, versions, kind).await;
        tracing::info!(kind, api_version = %resource.api_version, "watching");
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let convert = move |obj: &DynamicObject| {
            Rule::from_parts(rule_kind, &obj.metadata, obj.data.get("spec")).map(Item::Rule)
        };
        run(
            &|config: &watcher::Config| json_events(&api, config),
            watcher::Config::default(),
            &shared,
            watched,
            convert,
        )
        .await;
        tracing::info!(kind, "no longer served; looking for it again");
    }
}

/// The served resource of a CRD kind, once there is one; meanwhile the kind is empty when it
/// is not installed, and failing when discovery itself fails.
async fn discovered(
    client: &Client,
    shared: &SharedIndex,
    watched: WatchedKind,
    group: &'static str,
    versions: &'static [&'static str],
    kind: &'static str,
) -> ApiResource {
    let (mut logged_absent, mut failing) = (false, false);
    loop {
        match discover(client, group, versions, kind).await {
            Ok(Some(r)) => return r,
            Ok(None) => {
                if !logged_absent {
                    tracing::info!(
                        kind,
                        group,
                        "CRD not installed: treating {kind} as empty and checking again every minute"
                    );
                    logged_absent = true;
                }
                failing = false;
                shared.write(|index| index.retain_listed(watched, &Listed::default()));
                shared.mark_synced(watched);
                tokio::time::sleep(CRD_RECHECK).await;
            }
            // Not known to be absent: the kind stays unsynced (or turns stale), never empty.
            Err(e) => {
                if !failing {
                    tracing::warn!(kind, group, error = %e, "discovery failed; retrying");
                    failing = true;
                }
                shared.mark_failing(watched, Instant::now());
                tokio::time::sleep(DISCOVERY_RETRY).await;
            }
        }
    }
}

fn spawn_watch<K, F>(
    api: Api<K>,
    config: watcher::Config,
    shared: &Arc<SharedIndex>,
    kind: WatchedKind,
    convert: F,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(&K) -> Result<Item, ModelError> + Send + Sync + 'static,
{
    spawn_events(
        move |config: &watcher::Config| json_events(&api, config),
        config,
        shared,
        kind,
        convert,
    );
}

/// A kind's watch events, from a watch started with the given configuration.
type Events<K> = BoxStream<'static, Result<Event<K>, watcher::Error>>;

/// kube-rs' watcher: JSON, and any initial list strategy.
fn json_events<K>(api: &Api<K>, config: &watcher::Config) -> Events<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api.clone(), config.clone()).boxed()
}

/// Keeps the watch of one kind running, its events from `open`.
fn spawn_events<K, O, F>(
    open: O,
    config: watcher::Config,
    shared: &Arc<SharedIndex>,
    kind: WatchedKind,
    convert: F,
) where
    K: Resource + Send + 'static,
    O: Fn(&watcher::Config) -> Events<K> + Send + Sync + 'static,
    F: Fn(&K) -> Result<Item, ModelError> + Send + Sync + 'static,
{
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        // A built-in kind is always served; `run` only returns on a 404, so try again.
        loop {
            run(&open, config.clone(), &shared, kind, &convert).await;
            tokio::time::sleep(RESTART_BACKOFF.1).await;
        }
    });
}

fn key<K: Resource>(obj: &K) -> (String, String) {
    let meta = obj.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Waits before a watch that failed is started again: doubling from the first to the last.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(30));

/// A watch that stayed up this long counts as healthy: the next failure waits the least again.
const HEALTHY_FOR: Duration = Duration::from_secs(30);

/// How one watch stream ended.
enum Ended {
    /// It failed; `lasted` is how long it had been up.
    Failed { lasted: Duration },
    /// The API server answered 404: the resource is not served (any more).
    Gone,
    /// The API server refused to stream the initial list (422: its `WatchList` feature is
    /// off, as by default in Kubernetes 1.33).
    NoStreamingLists,
}

/// Keeps a kind's watch running until the resource is not served. After any error the watch
/// starts over with a fresh list, rather than resuming where it stopped: a resumed watch on a
/// quiet kind sends nothing, so nothing would ever show that it works again, and the kind
/// would stay stale (and the guard unready) until something changed. Restarts back off, and
/// only a watch that stayed up [`HEALTHY_FOR`] resets the backoff, so a watch that fails right
/// after each list does not relist in a tight loop.
///
/// A streamed initial list the API server refuses turns, for good, into pages of a list,
/// as client-go's reflector falls back.
async fn run<K, F>(
    open: &impl Fn(&watcher::Config) -> Events<K>,
    mut config: watcher::Config,
    shared: &SharedIndex,
    kind: WatchedKind,
    convert: F,
) where
    K: Resource,
    F: Fn(&K) -> Result<Item, ModelError>,
{
    let (first, last) = RESTART_BACKOFF;
    let mut wait = first;
    loop {
        let stream = open(&config);
        let streaming = config.initial_list_strategy == InitialListStrategy::StreamingList;
        match watch(stream, shared, kind, &convert, streaming).await {
            Ended::Gone => return,
            Ended::NoStreamingLists => {
                tracing::info!(
                    kind = kind.as_str(),
                    "the API server does not stream lists (its WatchList feature is off); listing in pages"
                );
                config.initial_list_strategy = InitialListStrategy::ListWatch;
                continue;
            }
            Ended::Failed { lasted } if lasted >= HEALTHY_FOR => wait = first,
            Ended::Failed { .. } => wait = (wait * 2).min(last),
        }
        tokio::time::sleep(wait).await;
    }
}

/// Whether a watch error is the API server refusing `sendInitialEvents`.
fn streaming_refused(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchStartFailed(kube::Error::Api(s)) if s.code == 422)
}

/// Whether a watch error says the resource is not served.
fn gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => matches!(e, kube::Error::Api(s) if s.code == 404),
        watcher::Error::WatchError(status) => status.code == 404,
        watcher::Error::NoResourceVersion => false,
    }
}

/// Applies one watch stream to the shared index, converting each object once, until the
/// stream fails. Only a `streaming` watch can end in [`Ended::NoStreamingLists`]; any other
/// 422 is a failure like the rest.
async fn watch<K, F>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>>,
    shared: &SharedIndex,
    kind: WatchedKind,
    convert: &F,
    streaming: bool,
) -> Ended
where
    K: Resource,
    F: Fn(&K) -> Result<Item, ModelError>,
{
    let trim = |obj: &K| match convert(obj) {
        Ok(item) => Some(item),
        Err(e) => {
            let (ns, name) = key(obj);
            tracing::warn!(kind = kind.as_str(), namespace = %ns, name = %name, error = %e, "skipping object the guard cannot read");
            None
        }
    };
    // A (re)list is applied as it arrives, a batch at a time, so the listed objects are never
    // all held beside the index; what the list did not name is dropped at its end.
    let mut batch: Vec<Item> = Vec::new();
    let mut listed = Listed::default();
    let apply = |items: Vec<Item>| {
        shared.write(|index| items.into_iter().for_each(|item| index.apply(item)))
    };
    let started = Instant::now();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(e) => e,
            Err(e) if gone(&e) => return Ended::Gone,
            Err(e) if streaming && streaming_refused(&e) => return Ended::NoStreamingLists,
            Err(e) => {
                shared.mark_failing(kind, Instant::now());
                tracing::warn!(kind = kind.as_str(), error = %e, "watch failed; listing again after a backoff");
                return Ended::Failed {
                    lasted: started.elapsed(),
                };
            }
        };
        // Current once a list is complete, or a watch delivers a change.
        if !matches!(event, Event::Init | Event::InitApply(_)) {
            shared.mark_ok(kind);
        }
        match event {
            Event::Init => {
                batch.clear();
                listed = Listed::default();
            }
            Event::InitApply(obj) => {
                if let Some(item) = trim(&obj) {
                    listed.insert(item.key());
                    batch.push(item);
                }
                if batch.len() >= INIT_BATCH {
                    apply(std::mem::take(&mut batch));
                }
            }
            Event::InitDone => {
                apply(std::mem::take(&mut batch));
                let listed = std::mem::take(&mut listed);
                let count = listed.len();
                shared.write(|index| index.retain_listed(kind, &listed));
                shared.mark_synced(kind);
                tracing::info!(kind = kind.as_str(), count, "synced");
            }
            Event::Apply(obj) => match trim(&obj) {
                Some(item) => shared.write(|index| index.apply(item)),
                None => {
                    let (ns, name) = key(&obj);
                    shared.write(|index| index.remove(kind, &ns, &name));
                }
            },
            Event::Delete(obj) => {
                let (ns, name) = key(&obj);
                shared.write(|index| index.remove(kind, &ns, &name));
            }
        }
    }
    Ended::Failed {
        lasted: started.elapsed(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("x", "y")
                .with_code(code)
                .boxed(),
        )
    }

    #[test]
    fn only_not_found_counts_a_crd_as_absent() {
        assert!(not_found(&api_error(404)));
        let missing = kube::error::DiscoveryError::MissingKind("PeerAuthentication".into());
        assert!(not_found(&kube::Error::Discovery(missing)));
        for code in [401, 403, 429, 500, 503] {
            assert!(!not_found(&api_error(code)), "{code}");
        }
    }
}
