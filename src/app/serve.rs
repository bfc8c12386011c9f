//! `mtls-guard serve`: the inventory, traffic evidence and certificate it needs, the two
//! listeners, and the drain on SIGTERM.

use std::sync::Arc;

use super::inventory::cluster_client;
use super::{load_inventory, AppError};
use crate::certs::cluster::SelfManaged;
use crate::certs::plan::Policy;
use crate::config::{EvidenceArgs, ServeArgs, Unsynced};
use crate::evidence::{self, EvidenceMode, PrometheusClient, Traffic};
use crate::inventory::{live, Index, SharedIndex};
use crate::server::{self, AppState, Limits, ServeOptions};
use crate::tls;

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
        connections: None,
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
    let opts = ServeOptions {
        connections: Some(Arc::clone(&state.connections)),
        ..opts
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
