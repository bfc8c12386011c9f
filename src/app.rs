//! What each subcommand does, wired from its parsed arguments.

use std::io::Read;
use std::sync::Arc;

use base64::Engine as _;

use crate::admission::{self, AdmissionError};
use crate::config::{CertsArgs, InventoryArgs, ReviewArgs, ServeArgs};
use crate::inventory::{file, Index, InventoryError};
use crate::metrics::Metrics;
use crate::server::{self, AppState, Inventory, Limits, ServeOptions};
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
}

pub fn load_inventory(args: &InventoryArgs) -> Result<Index, InventoryError> {
    if args.inventory.is_empty() {
        tracing::info!(
            "no --inventory given: using the embedded demo inventory (the seed scenario)"
        );
        return file::demo(args.filters(), &args.istio_namespace);
    }
    file::load(&args.inventory, args.filters(), &args.istio_namespace)
}

/// `mtls-guard review`: the AdmissionReview response JSON for one request.
pub fn review(args: &ReviewArgs) -> Result<serde_json::Value, AppError> {
    let body = if args.review == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        std::fs::read(&args.review)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", args.review)))?
    };
    let req = admission::parse_review(&body)?;
    let index = load_inventory(&args.inventory)?;
    Ok(admission::decide(&index, args.mode, &req).into_review_json())
}

/// `mtls-guard certs`: writes the files and returns the base64 caBundle.
pub fn certs(args: &CertsArgs) -> Result<String, AppError> {
    let generated = tls::generate(&args.names)?;
    tls::write(&args.out, &generated)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(generated.ca_pem))
}

/// `mtls-guard serve`: runs until SIGTERM or Ctrl-C, then drains.
pub async fn serve(args: ServeArgs) -> Result<(), AppError> {
    let index = load_inventory(&args.inventory)?;
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            let pair = tls::ensure_dev_certs(&args.dev_cert_dir)?;
            let ca = args.dev_cert_dir.join("ca.crt");
            tracing::info!(
                ca = %ca.display(),
                "no --tls-cert: serving a dev certificate for localhost; try: curl --cacert {} https://localhost:{}/healthz",
                ca.display(),
                args.listen.port()
            );
            pair
        }
    };
    let resolver = tls::ReloadingResolver::new(tls::load_certified_key(&cert, &key)?);
    tokio::spawn(tls::watch(
        Arc::clone(&resolver),
        cert,
        key,
        *args.cert_reload_interval,
    ));
    let state = Arc::new(AppState {
        inventory: Inventory::new(index, true),
        mode: args.mode,
        metrics: Metrics::default(),
    });
    let app = server::router(
        Arc::clone(&state),
        &Limits {
            max_body_bytes: args.max_body_bytes,
            request_timeout: *args.request_timeout,
        },
    );
    let listener = server::bind(args.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, mode = %args.mode, "mtls-guard serving");
    let drain = {
        let state = Arc::clone(&state);
        async move {
            shutdown_signal().await;
            state.inventory.set_ready(false);
            tracing::info!("shutdown requested: readiness off, draining");
        }
    };
    server::serve(
        listener,
        tls::server_config(resolver)?,
        app,
        ServeOptions {
            header_read_timeout: *args.header_read_timeout,
            handshake_timeout: *args.header_read_timeout,
            shutdown_grace: *args.shutdown_grace,
        },
        drain,
    )
    .await;
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
