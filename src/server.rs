//! Two listeners: the webhook (HTTPS, `POST /validate` only, where `--client-ca` applies) and
//! the operations port (plain HTTP: `/healthz`, `/readyz`, `/metrics`, and `/report` when
//! turned on), which the kubelet and Prometheus reach without certificates.
//!
//! [`webhook_router`] and [`ops_router`] are plain axum so tests can call them without a
//! socket; [`serve`] puts one behind a listener (rustls for the webhook) with handshake,
//! header-read and idle timeouts and a graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::admission::{self, AdmissionError, Answer, Authorization, GuardMode};
use crate::engine::{Budget, Evidence};
use crate::evidence::Traffic;
use crate::inventory::SharedIndex;
use crate::limits::BodyBudget;
use crate::metrics::{Connections, Metrics};
use crate::report;
use tokio::sync::Semaphore;

#[derive(Debug)]
pub struct AppState {
    pub inventory: Arc<SharedIndex>,
    pub mode: GuardMode,
    /// Allow (rather than deny) reviews that arrive before the inventory is ready.
    pub allow_unsynced: bool,
    pub metrics: Metrics,
    pub connections: Arc<Connections>,
    pub shutting_down: AtomicBool,
    /// The webhook listener is up: it waits for a serving certificate first.
    pub webhook_listening: AtomicBool,
    /// Traffic evidence, when a Prometheus URL is configured.
    pub traffic: Option<Arc<Traffic>>,
    /// The certificate being served, once there is one (for its expiry metric).
    pub serving_certificate: std::sync::OnceLock<Arc<crate::tls::ReloadingResolver>>,
    /// Asks the API server who may use break-glass or change a namespace's mode; `None`
    /// without a cluster.
    pub authorizer: Option<crate::authz::Authorizer>,
    /// Decisions run on the blocking pool, this many at once.
    pub reviews: Arc<Semaphore>,
    /// Past this, a review is answered without a decision (see `admission::overdue`).
    pub review_deadline: Duration,
    /// Work a review may do on the thread that read it ([`INLINE_WORK`]).
    inline_work: usize,
}

impl AppState {
    /// Traffic evidence as last fetched, or the inventory alone without Prometheus.
    fn evidence(&self) -> Evidence {
        self.traffic
            .as_ref()
            .map_or_else(Evidence::inventory_only, |t| t.evidence())
    }

    pub fn new(inventory: Arc<SharedIndex>, mode: GuardMode, allow_unsynced: bool) -> AppState {
        AppState {
            inventory,
            mode,
            allow_unsynced,
            metrics: Metrics::default(),
            connections: Arc::default(),
            shutting_down: AtomicBool::new(false),
            webhook_listening: AtomicBool::new(false),
            traffic: None,
            serving_certificate: std::sync::OnceLock::new(),
            authorizer: None,
            reviews: Arc::new(Semaphore::new(2)),
            review_deadline: Duration::from_secs(3),
            inline_work: INLINE_WORK,
        }
    }

    pub fn with_authorizer(mut self, authorizer: Option<crate::authz::Authorizer>) -> AppState {
        self.authorizer = authorizer;
        self
    }

    /// At most `concurrent` decisions at once, each answered within `deadline`.
    pub fn with_review_limits(mut self, concurrent: usize, deadline: Duration) -> AppState {
        self.reviews = Arc::new(Semaphore::new(concurrent.max(1)));
        self.review_deadline = deadline;
        self
    }

    #[cfg(test)]
    fn with_inline_work(mut self, units: usize) -> AppState {
        self.inline_work = units;
        self
    }

    pub fn with_traffic(mut self, traffic: Option<Arc<Traffic>>) -> AppState {
        self.traffic = traffic;
        self
    }

    /// Readiness with its reason: draining, no serving certificate yet, unsynced or stale
    /// inventory.
    pub fn readiness(&self) -> Result<(), String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Err("shutting down".into());
        }
        if !self.webhook_listening.load(Ordering::Acquire) {
            return Err("the webhook listener waits for a serving certificate".into());
        }
        self.inventory.readiness(Instant::now())
    }
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Request bodies held at once across connections.
    pub max_buffered_bytes: usize,
    pub request_timeout: Duration,
}

/// The webhook port: `POST /validate` and nothing else.
pub fn webhook_router(state: Arc<AppState>, limits: &Limits) -> Router {
    let hook = Webhook {
        app: state,
        bodies: BodyBudget::new(limits.max_buffered_bytes, limits.max_body_bytes),
        request_timeout: limits.request_timeout,
    };
    Router::new()
        .route("/validate", post(validate))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; the webhook is POST /validate (health and metrics are on --metrics-listen)".into(),
            )
        })
        .with_state(Arc::new(hook))
}

/// What `POST /validate` works with: the shared state and the webhook port's request limits.
/// The handler applies the limits itself: as middleware, each would box every request's future
/// and clone the service behind it.
struct Webhook {
    app: Arc<AppState>,
    bodies: Arc<BodyBudget>,
    request_timeout: Duration,
}

/// The operations port: probes and metrics, and the readiness page when `serve_report`.
pub fn ops_router(state: Arc<AppState>, limits: &Limits, serve_report: bool) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    if serve_report {
        router = router.route("/report", get(readiness_report));
    }
    router
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such endpoint; this port serves /healthz, /readyz, /metrics (and /report with --serve-report)".into(),
            )
        })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .with_state(state)
}

/// An error answer: `{"error": message}` with the status.
pub(crate) fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// A request's own text as one log field: control characters are escaped, so a newline in a
/// uid or a user name cannot start a forged line in text logs.
fn log_safe(text: &str) -> std::borrow::Cow<'_, str> {
    // Control characters are C0, DEL and C1 (U+0080..U+009F, led by 0xC2 in UTF-8): the
    // byte scan clears nearly every text before any is decoded.
    let suspect = |b: u8| b < 0x20 || b == 0x7f || b == 0xc2;
    if text.bytes().any(suspect) && text.chars().any(char::is_control) {
        text.escape_debug().to_string().into()
    } else {
        text.into()
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

/// `POST /validate`, body included, within `--request-timeout` (then 408).
async fn validate(State(hook): State<Arc<Webhook>>, req: Request) -> Response {
    let answer = tokio::time::timeout(hook.request_timeout, read_and_review(&hook, req)).await;
    answer.unwrap_or_else(|_| StatusCode::REQUEST_TIMEOUT.into_response())
}

/// The body read within its budget, which is held until the answer is built.
async fn read_and_review(hook: &Webhook, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    match hook.bodies.read(&parts.headers, body).await {
        Ok((_held, body)) => review(&hook.app, &parts.headers, body).await,
        Err(refused) => refused,
    }
}

async fn review(state: &Arc<AppState>, headers: &HeaderMap, body: Bytes) -> Response {
    if !is_json(headers) {
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
    let kind = req.kind.kind.clone();
    // The request is held by pointer while the decision is awaited: whatever moves this future
    // (axum's handler box, the timeout) copies all it holds.
    let outcome = match answer_at_once(state, Arc::new(req)) {
        ControlFlow::Break(answer) => answer,
        ControlFlow::Continue(req) => {
            decide(state, req, started, body.len() <= INLINE_BODY_BYTES).await
        }
    };
    let r = &outcome.record;
    let took = started.elapsed();
    state.metrics.review(&kind, r.operation, r.decision, took);
    tracing::info!(
        uid = %log_safe(&r.uid), user = %log_safe(&r.user), operation = r.operation,
        kind = %log_safe(&r.kind), object = %log_safe(&r.object),
        verdict = r.decision.as_str(), mode = %r.mode, clients = r.clients, servers = r.servers,
        change = r.change.as_deref().unwrap_or(""), micros = took.as_micros() as u64,
        "admission decision"
    );
    match outcome.reply_json() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the answer could not be written: {e}"),
        ),
    }
}

/// Work a review may do on the thread that read it (engine units, see [`Budget`]). A workload's
/// lock-down in a mesh of 100k pods takes a few dozen; a review that needs more than this
/// costs up to a few hundred microseconds here before it moves to the blocking pool.
pub const INLINE_WORK: usize = 4096;

/// Reviews with a larger body go straight to the pool: comparing the old and new spec and
/// reading a mesh config grow with the object, outside the engine's budget.
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// The answer that needs no engine (a request the guard does not judge, or one that arrives
/// while the inventory is not synced or is stale), or the request handed on to [`decide`].
fn answer_at_once(
    state: &AppState,
    req: Arc<admission::Request>,
) -> ControlFlow<Answer, Arc<admission::Request>> {
    let unjudged = state
        .inventory
        .read(|index| admission::unjudged(index, state.mode, &req));
    if let Some(answer) = unjudged {
        return ControlFlow::Break(answer);
    }
    match state.inventory.readiness(Instant::now()) {
        Ok(()) => ControlFlow::Continue(req),
        // A namespace's mode label is decided without the inventory.
        Err(_) if admission::is_namespace(&req) => ControlFlow::Continue(req),
        Err(why) => ControlFlow::Break(admission::unsynced(
            &req,
            state.mode,
            state.allow_unsynced,
            &why,
        )),
    }
}

/// The decision: small reviews (`small` bodies, within [`INLINE_WORK`]) on the thread that read
/// them, larger ones on the blocking pool
/// behind the review semaphore, so neither a costly review nor many at once hold the threads
/// that answer health checks and other reviews; past the deadline the review is answered
/// without it (the decision still finishes, holding its permit).
async fn decide(
    state: &Arc<AppState>,
    req: Arc<admission::Request>,
    started: Instant,
    small: bool,
) -> Answer {
    let deadline = tokio::time::Instant::from_std(started + state.review_deadline);
    if tokio::time::Instant::now() >= deadline {
        return overdue(state, &req);
    }
    let work = {
        let (state, req) = (Arc::clone(state), Arc::clone(&req));
        async move {
            // Asked before taking a decision permit: a slow API server delays only the
            // reviews that need its word, not every review behind the permit.
            let auth = authorize(&state, &req).await;
            let evidence = state.evidence();
            let budget = Budget::new(state.inline_work);
            let inline = small.then(|| {
                state.inventory.read(|index| {
                    admission::decide_within(index, &evidence, state.mode, &req, &auth, &budget)
                })
            });
            if let Some(answer) = inline.flatten() {
                return Ok(answer);
            }
            state.metrics.offloaded();
            let permit = Arc::clone(&state.reviews).acquire_owned().await.ok();
            tokio::task::spawn_blocking(move || {
                let _permit = permit;
                state
                    .inventory
                    .read(|index| admission::decide_with(index, &evidence, state.mode, &req, &auth))
            })
            .await
        }
    };
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a review's decision failed");
            overdue(state, &req)
        }
        Err(_) => {
            tracing::warn!(uid = %log_safe(&req.uid), deadline = ?state.review_deadline, "a review missed its deadline");
            overdue(state, &req)
        }
    }
}

/// The API server's word on the permission this request needs, when it needs one.
async fn authorize(state: &AppState, req: &admission::Request) -> Authorization {
    match (admission::permission_needed(req), &state.authorizer) {
        (None, _) => Authorization::Allowed,
        (Some(_), None) => Authorization::NotChecked,
        // Boxed: the API call's future is large, and every review's future would carry its
        // size (copied each time a layer moves it) while few reviews make the call.
        (Some(p), Some(authorizer)) => Box::pin(authorizer.check(&req.user_info, &p)).await,
    }
}

fn overdue(state: &AppState, req: &admission::Request) -> Answer {
    let mode = state
        .inventory
        .read(|index| admission::mode_for(index, state.mode, req.namespace.as_deref()));
    admission::overdue(req, mode, state.review_deadline)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.readiness() {
        Ok(()) => "ok".into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

/// The migration-readiness page. It evaluates a lock-down per workload, so it runs on the
/// blocking pool, off the threads that answer reviews.
async fn readiness_report(State(state): State<Arc<AppState>>) -> Response {
    if let Err(why) = state.inventory.readiness(Instant::now()) {
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    let evidence = state.traffic.as_ref().map(|t| t.evidence());
    let page = tokio::task::spawn_blocking(move || {
        let report = state
            .inventory
            .read(|index| report::assess(index, evidence.as_ref()));
        report::html(&report)
    })
    .await;
    match page {
        Ok(page) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let (pods, workloads) = state
        .inventory
        .read(|index| (index.pod_count(), index.workloads().count()));
    let mut text = state.metrics.render(
        pods,
        workloads,
        &state.inventory.status(Instant::now()),
        state.readiness().is_ok(),
    );
    text.push_str(&state.connections.render());
    if let Some(expiry) = state.serving_certificate.get().and_then(|r| r.not_after()) {
        text.push_str(&crate::metrics::certificate_expiry(expiry));
    }
    if let Some(traffic) = &state.traffic {
        text.push_str(&crate::metrics::traffic(traffic.status()));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// HTTP/2 streams a connection may have open at once.
pub const MAX_STREAMS: u32 = 16;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub handshake_timeout: Duration,
    pub idle_timeout: Duration,
    /// Time between readiness turning off and the listener closing, for endpoints to catch up.
    pub drain_delay: Duration,
    pub shutdown_grace: Duration,
    /// Where TLS connections are counted, when they are.
    pub connections: Option<Arc<Connections>>,
}

/// Serves `app` until `shutdown` resolves, over TLS when `tls` is given, then drains: it
/// keeps accepting for `drain_delay` (readiness is already off), closes the listener and waits
/// up to `shutdown_grace` for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Option<rustls::ServerConfig>,
    app: Router,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(|config| TlsAcceptor::from(Arc::new(config)));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    // Few streams per connection: each may hold a request body, and reviews come one by one.
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(MAX_STREAMS);
    // Every connection holds a receiver: it learns that draining began, and the sender learns
    // when the last connection is gone. Answers read the sender, shared.
    let draining = Arc::new(watch::channel(false).0);
    let stop_accepting = async {
        shutdown.await;
        draining.send_replace(true);
        tracing::info!(delay = ?opts.drain_delay, "draining: accepting until the drain delay ends");
        tokio::time::sleep(opts.drain_delay).await;
    };
    tokio::pin!(stop_accepting);
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
            () = &mut stop_accepting => break,
        };
        let conn = Connection {
            peer,
            app: app.clone(),
            builder: builder.clone(),
            draining: draining.subscribe(),
            drain_state: Arc::clone(&draining),
            opts: opts.clone(),
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => conn.serve_tls(tcp, acceptor).await,
                None => conn.serve(tcp, false).await,
            }
        });
    }
    drop(listener);
    tracing::info!(
        connections = draining.receiver_count(),
        "listener closed, waiting for open connections"
    );
    if tokio::time::timeout(opts.shutdown_grace, draining.closed())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period ended with connections still open");
    }
}

/// One client connection: HTTP until the client leaves, the connection idles past
/// `idle_timeout`, or (HTTP/2) draining begins.
struct Connection {
    peer: SocketAddr,
    app: Router,
    builder: auto::Builder<TokioExecutor>,
    draining: watch::Receiver<bool>,
    /// Whether draining began, as each answer reads it: not one more receiver, which would
    /// count as a connection.
    drain_state: Arc<watch::Sender<bool>>,
    opts: ServeOptions,
}

impl Connection {
    /// The TLS handshake under a deadline, then HTTP.
    async fn serve_tls(self, tcp: TcpStream, acceptor: TlsAcceptor) {
        let peer = self.peer;
        let accept = acceptor.accept(tcp);
        let tls = match tokio::time::timeout(self.opts.handshake_timeout, accept).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
        };
        let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        if let Some(connections) = &self.opts.connections {
            connections.accepted(http2);
        }
        self.serve(tls, http2).await
    }

    async fn serve<I>(mut self, io: I, http2: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (peer, opts) = (self.peer, self.opts.clone());
        let activity = Activity::new();
        let service = {
            let activity = Arc::clone(&activity);
            let app = self.app.clone();
            let drain_state = Arc::clone(&self.drain_state);
            tower::service_fn(move |req: Request<hyper::body::Incoming>| {
                let in_flight = activity.begin();
                let http1 = req.version() < Version::HTTP_2;
                let call = app.clone().oneshot(req);
                let draining = Arc::clone(&drain_state);
                async move {
                    let mut res = call.await;
                    // While draining, every HTTP/1.1 answer carries `Connection: close`: the
                    // client learns from the answer itself not to reuse the connection, so
                    // closing it never races a request it is sending. (HTTP/2 gets a GOAWAY.)
                    match &mut res {
                        Ok(res) if http1 && *draining.borrow() => {
                            res.headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        _ => {}
                    }
                    drop(in_flight);
                    res
                }
            })
        };
        let conn = self
            .builder
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let mut closing = false;
        // An idle HTTP/2 connection closes once the client acknowledges the GOAWAY; one that
        // never does is dropped at this point instead of living on.
        let mut drop_at = None;
        loop {
            let idle_at = activity.idle_deadline(opts.idle_timeout);
            tokio::select! {
                done = conn.as_mut() => {
                    if let Err(e) = done {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                // GOAWAY lets the client finish what it sent and open a new connection for the
                // rest, so HTTP/2 can be told at once; HTTP/1.1 is told per answer instead.
                _ = self.draining.wait_for(|d| *d), if http2 && !closing => {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(idle_at), if !closing => {
                    if activity.idle_since(opts.idle_timeout) {
                        tracing::debug!(%peer, "closing idle connection");
                        closing = true;
                        drop_at = Some(tokio::time::Instant::now() + opts.header_read_timeout);
                        conn.as_mut().graceful_shutdown();
                    }
                }
                () = tokio::time::sleep_until(drop_at.unwrap_or(idle_at)), if drop_at.is_some() => {
                    return tracing::debug!(%peer, "dropping an idle connection that did not close");
                }
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended, for the idle timer.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<tokio::time::Instant>,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(tokio::time::Instant::now()),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    fn last(&self) -> tokio::time::Instant {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection will have idled for `idle` unless a request comes; while one is in
    /// flight, a time to look again.
    fn idle_deadline(&self, idle: Duration) -> tokio::time::Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            tokio::time::Instant::now() + idle
        } else {
            self.last() + idle
        }
    }

    fn idle_since(&self, idle: Duration) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && self.last().elapsed() >= idle
    }
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(PoisonError::into_inner) = tokio::time::Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Binds a listen address, naming the flag on failure.
pub async fn bind(addr: SocketAddr, flag: &str) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("{flag} {addr}: {e}")))
}

#[cfg(test)]
mod tests;
