//! The practical limit for `/validate`: the same rustls and hyper setup as `mtls-guard serve`,
//! answering every AdmissionReview `allowed: true` after reading its uid.
//! `cargo bench --bench bare_server -- ADDR CERT KEY`; runs until Ctrl-C.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::routing::post;
use axum::{Json, Router};
use mtls_guard::server::{self, ServeOptions};
use mtls_guard::tls;
use serde_json::{json, Value};

async fn allow(body: Bytes) -> Json<Value> {
    let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let uid = review
        .pointer("/request/uid")
        .cloned()
        .unwrap_or(Value::Null);
    Json(
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                "response": {"uid": uid, "allowed": true}}),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [addr, cert, key] = args.as_slice() else {
        return Err("usage: bare_server ADDR CERT KEY".into());
    };
    let resolver =
        tls::ReloadingResolver::new(tls::load_certified_key(cert.as_ref(), key.as_ref())?);
    let config = tls::server_config(Arc::clone(&resolver), None)?;
    let listener = server::bind(addr.parse()?, "ADDR").await?;
    let app = Router::new().route("/validate", post(allow));
    let opts = ServeOptions {
        header_read_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        drain_delay: Duration::ZERO,
        shutdown_grace: Duration::from_secs(1),
        connections: None,
    };
    server::serve(listener, Some(config), app, opts, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
