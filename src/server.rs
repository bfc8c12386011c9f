//! The HTTPS endpoint: `/validate`, `/healthz`, `/readyz`, `/metrics`.
//!
//! [`router`] is plain axum so tests can call it without a socket; [`serve`] puts it behind
//! rustls with header-read and handshake timeouts and a graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admission::{self, AdmissionError, GuardMode};
use crate::inventory::SharedIndex;
use crate::metrics::Metrics;

#[derive(Debug)]
pub struct AppState {
    pub inventory: Arc<SharedIndex>,
    pub mode: GuardMode,
    /// Allow (rather than deny) reviews that arrive before the inventory is ready.
    pub allow_unsynced: bool,
    pub metrics: Metrics,
    pub shutting_down: AtomicBool,
}

impl AppState {
    pub fn new(inventory: Arc<SharedIndex>, mode: GuardMode, allow_unsynced: bool) -> AppState {
        AppState {
            inventory,
            mode,
            allow_unsynced,
            metrics: Metrics::default(),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// Readiness with its reason: draining, unsynced or stale inventory.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        self.inventory.readiness(Instant::now())
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
}

pub fn router(state: Arc<AppState>, limits: &Limits) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

async fn validate(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    if !is_json(&headers) {
        state.metrics.bad_request("content_type");
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send an AdmissionReview as Content-Type: application/json".into(),
        );
    }
    let started = Instant::now();
    let req = match admission::parse_review(&body) {
        Ok(req) => req,
        Err(e) => {
            state.metrics.bad_request(match e {
                AdmissionError::ApiVersion(_) => "api_version",
                _ => "not_a_review",
            });
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let outcome = match state.inventory.readiness(Instant::now()) {
        Ok(()) => state
            .inventory
            .read(|index| admission::decide(index, state.mode, &req)),
        Err(why) => admission::unsynced(&req, state.mode, state.allow_unsynced, &why),
    };
    let r = &outcome.record;
    state
        .metrics
        .review(&req.kind.kind, r.operation, r.decision, started.elapsed());
    tracing::info!(
        uid = %r.uid, user = %r.user, operation = r.operation, kind = %r.kind, object = %r.object,
        verdict = r.decision.as_str(), mode = %r.mode, clients = r.clients, servers = r.servers,
        change = r.change.as_deref().unwrap_or(""), micros = started.elapsed().as_micros() as u64,
        "admission decision"
    );
    Json(outcome.into_review_json()).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness() {
        Ok(()) => "ok".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (pods, workloads) = state
        .inventory
        .read(|index| (index.pod_count(), index.workloads().count()));
    let text = state.metrics.render(
        pods,
        workloads,
        &state.inventory.status(Instant::now()),
        state.readiness().is_ok(),
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// Serves `app` over TLS until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            conn = listener.accept() => match conn {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let handshake = opts.handshake_timeout;
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(app));
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tracing::info!(connections = graceful.count(), "draining connections");
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period ended with connections still open");
    }
}

/// Binds the listen address, naming the flag on failure.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("--listen {addr}: {e}")))
}
