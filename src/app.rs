//! What each subcommand does, wired from its parsed arguments.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;

use crate::admission::{self, AdmissionError};
use crate::certs::cluster::SelfManaged;
use crate::certs::plan::Policy;
use crate::certs::CertError;
use crate::check::{self, CheckError};
use crate::config::{
    CertsArgs, CheckArgs, CheckOutput, ClusterArgs, EvidenceArgs, InventoryArgs, ReportArgs,
    ReportOutput, ReviewArgs, ServeArgs, Unsynced,
};
use crate::evidence::{self, EvidenceMode, PrometheusClient, Traffic};
use crate::inventory::{file, live, Index, InventoryError, SharedIndex};
use crate::report;
use crate::server::{self, AppState, Limits, ServeOptions};
use crate::tls::{self, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Inventory(#[from] InventoryError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("--kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cluster inventory: {0}")]
    ClusterSync(String),
    #[error("{0}")]
    Evidence(String),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Cert(#[from] CertError),
}

/// A client for `--kubeconfig`, or for the default kubeconfig / in-cluster config.
async fn cluster_client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())?
        }
        None => kube::Config::infer().await.map_err(|e| e.to_string())?,
    };
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Files, the live cluster, or the demo: in that order of what was asked for; with the
/// cluster's client when it is the cluster.
async fn shared_inventory(
    args: &ServeArgs,
) -> Result<(Arc<SharedIndex>, Option<kube::Client>), AppError> {
    let inv = &args.inventory;
    if !inv.inventory.is_empty() || args.demo {
        return Ok((Arc::new(SharedIndex::complete(load_inventory(inv)?)), None));
    }
    match cluster_client(args.kubeconfig.as_deref()).await {
        Ok(client) => {
            tracing::info!("watching the cluster inventory");
            let shared = Arc::new(SharedIndex::syncing(
                Index::new(inv.filters()),
                *args.max_staleness,
            ));
            live::spawn(client.clone(), Arc::clone(&shared));
            Ok((shared, Some(client)))
        }
        Err(e) if args.kubeconfig.is_some() => Err(AppError::Kubeconfig(e)),
        Err(e) => {
            tracing::info!(reason = %e, "no cluster configured");
            Ok((Arc::new(SharedIndex::complete(load_inventory(inv)?)), None))
        }
    }
}

/// How long `check --cluster` and `report --cluster` wait for the first full list of every kind.
const CLUSTER_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The cluster's inventory, read once through the same watchers `serve` keeps running.
async fn cluster_index(cluster: &ClusterArgs, inv: &InventoryArgs) -> Result<Index, AppError> {
    let client = cluster_client(cluster.kubeconfig.as_deref())
        .await
        .map_err(AppError::Kubeconfig)?;
    let shared = Arc::new(SharedIndex::syncing(
        Index::new(inv.filters()),
        CLUSTER_SYNC_TIMEOUT,
    ));
    live::spawn(client, Arc::clone(&shared));
    let deadline = std::time::Instant::now() + CLUSTER_SYNC_TIMEOUT;
    while let Err(why) = shared.readiness(std::time::Instant::now()) {
        if std::time::Instant::now() > deadline {
            return Err(AppError::ClusterSync(why));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(shared.take())
}

/// Files or the demo, or with `--cluster` the live cluster.
async fn inventory_for(cluster: &ClusterArgs, inv: &InventoryArgs) -> Result<Index, AppError> {
    if cluster.cluster {
        cluster_index(cluster, inv).await
    } else {
        Ok(load_inventory(inv)?)
    }
}

pub fn load_inventory(args: &InventoryArgs) -> Result<Index, InventoryError> {
    if args.inventory.is_empty() {
        tracing::info!(
            "no --inventory given: using the embedded demo inventory (the seed scenario)"
        );
        return file::demo(args.filters());
    }
    file::load(&args.inventory, args.filters(), args.allow_empty_inventory)
}

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

/// `mtls-guard check`: the report to print, and whether any object would be denied.
pub async fn check(args: &CheckArgs) -> Result<(String, bool), AppError> {
    let manifests = check::read_manifests(&args.files)?;
    let mut index = inventory_for(&args.cluster, &args.inventory).await?;
    let results = check::check(&mut index, &manifests, args.delete, args.mode)?;
    let denied = results.iter().any(check::Checked::denied);
    let out = match args.output {
        CheckOutput::Text => check::text(&results),
        CheckOutput::Json => {
            let mut text = serde_json::to_string_pretty(&check::json(&results))
                .map_err(|e| AppError::Io(std::io::Error::other(e)))?;
            text.push('\n');
            text
        }
    };
    Ok((out, denied))
}

/// `mtls-guard report`: the readiness report in the asked format. With a Prometheus URL the
/// traffic is fetched once; if that fails the report says so and uses the inventory alone.
pub async fn report(args: &ReportArgs) -> Result<String, AppError> {
    let index = inventory_for(&args.cluster, &args.inventory).await?;
    let mut evidence = None;
    if let Some(opts) = args.prometheus.options(Duration::from_secs(30)) {
        let client = PrometheusClient::new(opts).map_err(|e| AppError::Evidence(e.to_string()))?;
        let traffic = Traffic::new(EvidenceMode::Both, *args.prometheus.traffic_window);
        if let Err(e) = evidence::refresh_once(&client, &traffic).await {
            tracing::warn!(error = %e, "traffic evidence unavailable; reporting on the inventory");
        }
        evidence = Some(traffic.evidence());
    }
    let report = report::assess(&index, evidence.as_ref());
    Ok(match args.output {
        ReportOutput::Table => report::table(&report),
        ReportOutput::Html => report::html(&report),
        ReportOutput::Json => {
            let mut text = serde_json::to_string_pretty(&report)
                .map_err(|e| AppError::Io(std::io::Error::other(e)))?;
            text.push('\n');
            text
        }
    })
}

/// `mtls-guard certs`: writes the files and returns the base64 caBundle.
pub fn certs(args: &CertsArgs) -> Result<String, AppError> {
    let generated = tls::generate(&args.names)?;
    tls::write(&args.out, &generated)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(generated.ca_pem))
}

/// Spawns the Prometheus poller when a URL is set; reviews read what it last fetched.
fn start_traffic_evidence(args: &EvidenceArgs) -> Result<Option<Arc<Traffic>>, AppError> {
    let Some(opts) = args.prometheus() else {
        if args.evidence == EvidenceMode::Traffic {
            return Err(AppError::Evidence(
                "--evidence traffic needs --prometheus-url".into(),
            ));
        }
        return Ok(None);
    };
    let client = PrometheusClient::new(opts).map_err(|e| AppError::Evidence(e.to_string()))?;
    let traffic = Arc::new(Traffic::new(args.evidence, args.window()));
    tokio::spawn(evidence::poll(
        client,
        Arc::clone(&traffic),
        *args.traffic_refresh,
    ));
    Ok(Some(traffic))
}

/// The serving certificate: kept in a Secret (`--cert-secret`), read from files (`--tls-cert`,
/// reloaded on change), or a dev certificate for localhost. The returned resolver always hands
/// out the current one.
async fn serving_certificate(args: &ServeArgs) -> Result<Arc<tls::ReloadingResolver>, AppError> {
    let every = *args.cert_reload_interval;
    if let Some(secret) = &args.self_cert.cert_secret {
        let manager = self_managed(args, secret).await?;
        let pair = manager.obtain().await;
        let resolver = tls::ReloadingResolver::new(tls::certified_key(
            pair.cert.as_bytes(),
            pair.key.as_bytes(),
        )?);
        tokio::spawn(manager.keep(Arc::clone(&resolver), pair, every));
        return Ok(resolver);
    }
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let pair = tls::ensure_dev_certs(&args.dev_cert_dir)?;
            let ca = args.dev_cert_dir.join("ca.crt");
            tracing::info!(
                ca = %ca.display(),
                "no --tls-cert: serving a dev certificate for localhost; try: curl --cacert {} -H 'Content-Type: application/json' --data @tests/data/seed-strict-policy.json https://localhost:{}/validate",
                ca.display(),
                args.listen.port()
            );
            pair
        }
    };
    let resolver = tls::ReloadingResolver::new(tls::load_certified_key(&cert, &key)?);
    tokio::spawn(tls::watch(Arc::clone(&resolver), cert, key, every));
    Ok(resolver)
}

/// The certificate keeper for `--cert-secret`: the Service's names in the guard's namespace.
async fn self_managed(args: &ServeArgs, secret: &str) -> Result<SelfManaged, AppError> {
    let flags = &args.self_cert;
    let client = cluster_client(args.kubeconfig.as_deref())
        .await
        .map_err(AppError::Kubeconfig)?;
    let namespace = flags
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let host = format!("{}.{namespace}.svc", flags.service_name);
    let mut names = vec![
        host.clone(),
        format!("{host}.{}", args.inventory.cluster_domain),
    ];
    names.extend(flags.cert_names.iter().cloned());
    let policy = Policy {
        names,
        ca_validity: *flags.ca_validity,
        cert_validity: *flags.cert_validity,
    };
    tracing::info!(%namespace, secret, webhook = flags.webhook_config.as_deref().unwrap_or(""), "keeping the serving certificate in a Secret");
    Ok(SelfManaged::new(
        client,
        &namespace,
        secret.to_string(),
        flags.webhook_config.clone(),
        policy,
    )?)
}

/// `mtls-guard serve`: runs until SIGTERM or Ctrl-C, then drains.
pub async fn serve(args: ServeArgs) -> Result<(), AppError> {
    let (inventory, client) = shared_inventory(&args).await?;
    let traffic = start_traffic_evidence(&args.evidence)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let state = Arc::new(
        AppState::new(inventory, args.mode, args.unsynced == Unsynced::Allow)
            .with_traffic(traffic)
            .with_authorizer(client.map(crate::authz::Authorizer::new))
            .with_review_limits(
                args.max_concurrent_reviews.unwrap_or(cpus),
                *args.review_deadline,
            ),
    );
    let limits = Limits {
        max_body_bytes: args.max_body_bytes,
        max_buffered_bytes: args.max_buffered_bytes,
        request_timeout: *args.request_timeout,
    };
    let opts = ServeOptions {
        header_read_timeout: *args.header_read_timeout,
        handshake_timeout: *args.header_read_timeout,
        idle_timeout: *args.idle_timeout,
        drain_delay: *args.drain_delay,
        shutdown_grace: *args.shutdown_grace,
    };
    // Probes and metrics come up first: while the guard waits for its certificate, the
    // kubelet sees it alive and not ready, with the reason.
    let ops = server::bind(args.metrics_listen, "--metrics-listen").await?;
    tracing::info!(listen = %ops.local_addr()?, "health and metrics (plain HTTP)");
    let ops_app = server::ops_router(Arc::clone(&state), &limits, args.serve_report);
    tokio::spawn(server::serve(
        ops,
        None,
        ops_app,
        opts.clone(),
        std::future::pending(),
    ));
    let resolver = serving_certificate(&args).await?;
    state
        .serving_certificate
        .get_or_init(|| Arc::clone(&resolver));
    let client_ca = match &args.client_ca {
        Some(path) => {
            let ca = tls::ReloadingClientCa::load(path)?;
            tokio::spawn(Arc::clone(&ca).watch(*args.cert_reload_interval));
            Some(ca)
        }
        None => None,
    };
    let tls_config = tls::server_config(resolver, client_ca)?;
    let app = server::webhook_router(Arc::clone(&state), &limits);
    let listener = server::bind(args.listen, "--listen").await?;
    state
        .webhook_listening
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(listen = %listener.local_addr()?, mode = %args.mode, "mtls-guard serving");
    let drain = {
        let state = Arc::clone(&state);
        async move {
            shutdown_signal().await;
            state
                .shutting_down
                .store(true, std::sync::atomic::Ordering::Release);
            tracing::info!("shutdown requested: readiness off, draining");
        }
    };
    server::serve(listener, Some(tls_config), app, opts, drain).await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
