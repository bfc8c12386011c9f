//! The Prometheus HTTP API (`/api/v1/query`): two instant queries for Istio's plaintext
//! traffic over the look-back window, turned into [`PlaintextEdges`].

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use super::{PlaintextEdges, UNKNOWN};

const REQUESTS: &str = "istio_requests_total";
const CONNECTIONS: &str = "istio_tcp_connections_opened_total";

#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("--prometheus-ca {path}: {message}")]
    Ca { path: PathBuf, message: String },
    #[error("--prometheus-token-file {path}: {cause}")]
    Token {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("Prometheus client: {0}")]
    Client(String),
    #[error("Prometheus unreachable at {origin}: {message}")]
    Unreachable { origin: String, message: String },
    #[error("Prometheus answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("Prometheus answer is not a query result: {0}")]
    Decode(String),
}

/// Where Prometheus is and how to talk to it.
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    /// Base URL; a path prefix (`https://host/prometheus`) is kept.
    pub url: Url,
    /// Bearer token file, read again before every query so a rotated token is picked up.
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle trusted in addition to the system roots.
    pub ca_file: Option<PathBuf>,
    pub window: Duration,
    /// Bound on one query, connection included.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct PrometheusClient {
    http: reqwest::Client,
    query_url: Url,
    token_file: Option<PathBuf>,
    window: Duration,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<Sample>,
}

#[derive(Deserialize)]
struct Sample {
    metric: HashMap<String, String>,
    /// `[unix time, "value"]`: Prometheus sends numbers as strings.
    value: (f64, String),
}

/// `sum by (source…, destination…) (increase(METRIC{plaintext}[WINDOW]))`.
///
/// `connection_security_policy!="mutual_tls"` keeps sidecars' `none` and ztunnel's `unknown`;
/// `reporter="destination"` counts each request once, at the server that received it.
pub fn plaintext_query(metric: &str, window: Duration) -> String {
    format!(
        "sum by (source_workload, source_workload_namespace, destination_workload, destination_workload_namespace) \
         (increase({metric}{{reporter=\"destination\",connection_security_policy!=\"mutual_tls\"}}[{}s]))",
        window.as_secs().max(1)
    )
}

/// The error and all its causes on one line: reqwest's own text alone says little.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl PrometheusClient {
    pub fn new(opts: PrometheusOptions) -> Result<PrometheusClient, EvidenceError> {
        // In-cluster Prometheus is reached directly; a proxy from the environment would
        // send the guard's token elsewhere.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout);
        if let Some(path) = &opts.ca_file {
            let ca_err = |message: String| EvidenceError::Ca {
                path: path.clone(),
                message,
            };
            let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_err(chain(&e)))?;
            if certs.is_empty() {
                return Err(ca_err("no PEM certificate in the file".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| EvidenceError::Client(chain(&e)))?;
        let mut query_url = opts.url.clone();
        let path = format!("{}/api/v1/query", opts.url.path().trim_end_matches('/'));
        query_url.set_path(&path);
        Ok(PrometheusClient {
            http,
            query_url,
            token_file: opts.token_file,
            window: opts.window,
        })
    }

    /// Plaintext edges in the window, from HTTP requests and TCP connections.
    pub async fn plaintext_edges(&self) -> Result<PlaintextEdges, EvidenceError> {
        let mut edges = PlaintextEdges::default();
        for (metric, is_requests) in [(REQUESTS, true), (CONNECTIONS, false)] {
            for sample in self.query(&plaintext_query(metric, self.window)).await? {
                let Some(count) = count(&sample.value.1) else {
                    continue;
                };
                let label = |name: &str| {
                    sample
                        .metric
                        .get(name)
                        .map(String::as_str)
                        .filter(|v| !v.is_empty())
                        .unwrap_or(UNKNOWN)
                };
                let destination = (
                    label("destination_workload_namespace"),
                    label("destination_workload"),
                );
                // Traffic Istio cannot attribute to a workload cannot block a lock-down of one.
                if destination.0 == UNKNOWN || destination.1 == UNKNOWN {
                    continue;
                }
                let source = (label("source_workload_namespace"), label("source_workload"));
                let (requests, connections) = if is_requests { (count, 0) } else { (0, count) };
                edges.add(destination, source, requests, connections);
            }
        }
        Ok(edges)
    }

    async fn query(&self, promql: &str) -> Result<Vec<Sample>, EvidenceError> {
        let mut request = self
            .http
            .get(self.query_url.clone())
            .query(&[("query", promql)]);
        if let Some(path) = &self.token_file {
            let token = std::fs::read_to_string(path).map_err(|cause| EvidenceError::Token {
                path: path.clone(),
                cause,
            })?;
            let token = token.trim();
            if !token.is_empty() {
                request = request.bearer_auth(token);
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| EvidenceError::Unreachable {
                origin: self.query_url.origin().ascii_serialization(),
                message: chain(&e),
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| EvidenceError::Unreachable {
                origin: self.query_url.origin().ascii_serialization(),
                message: chain(&e),
            })?;
        let answer: Answer = match serde_json::from_slice(&body) {
            Ok(a) => a,
            Err(_) if !status.is_success() => {
                return Err(EvidenceError::Status {
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&body[..body.len().min(200)])
                        .trim()
                        .to_string(),
                })
            }
            Err(e) => return Err(EvidenceError::Decode(e.to_string())),
        };
        if answer.status != "success" {
            return Err(EvidenceError::Status {
                status: status.as_u16(),
                message: answer.error.unwrap_or_else(|| answer.status.clone()),
            });
        }
        match answer.data {
            Some(d) if d.result_type == "vector" => Ok(d.result),
            Some(d) => Err(EvidenceError::Decode(format!(
                "expected a vector, got a {}",
                d.result_type
            ))),
            None => Err(EvidenceError::Decode("no data".into())),
        }
    }
}

/// A positive count from Prometheus's text value; `increase` extrapolates, so a sliver of
/// traffic can come out below one and still counts as one.
fn count(value: &str) -> Option<u64> {
    let v: f64 = value.parse().ok()?;
    (v.is_finite() && v > 0.0).then(|| v.round().max(1.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_the_window_in_seconds_and_excludes_mtls() {
        let q = plaintext_query(REQUESTS, Duration::from_secs(24 * 3600));
        assert!(q.contains("[86400s]"), "{q}");
        assert!(
            q.contains(r#"istio_requests_total{reporter="destination",connection_security_policy!="mutual_tls"}"#),
            "{q}"
        );
    }

    #[test]
    fn counts_are_positive_and_finite() {
        assert_eq!(count("120.4"), Some(120));
        assert_eq!(count("0.2"), Some(1));
        assert_eq!(count("0"), None);
        assert_eq!(count("NaN"), None);
        assert_eq!(count("+Inf"), None);
        assert_eq!(count("x"), None);
    }

    #[test]
    fn a_path_prefix_is_kept() {
        let c = PrometheusClient::new(PrometheusOptions {
            url: "https://mon.example/prometheus/".parse().unwrap(),
            token_file: None,
            ca_file: None,
            window: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        })
        .unwrap();
        assert_eq!(
            c.query_url.as_str(),
            "https://mon.example/prometheus/api/v1/query"
        );
    }
}
