//! Command line and environment (`MTLS_GUARD_*`), parsed once into typed values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::admission::GuardMode;

/// `--mode` values for clap; the mode itself is model vocabulary, which knows no CLI.
impl clap::ValueEnum for GuardMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[GuardMode::Enforce, GuardMode::Audit]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// `--evidence` values for clap, with the help each one shows.
impl clap::ValueEnum for EvidenceMode {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            EvidenceMode::Inventory,
            EvidenceMode::Traffic,
            EvidenceMode::Both,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let (name, help) = match self {
            EvidenceMode::Inventory => ("inventory", "Only what the inventory shows (tiers 1 and 2); traffic is polled but not used to decide"),
            EvidenceMode::Traffic => ("traffic", "Observed traffic decides about sidecar-less clients; the inventory alone only warns"),
            EvidenceMode::Both => ("both", "Both: inventory findings and observed plaintext traffic deny"),
        };
        Some(clap::builder::PossibleValue::new(name).help(help))
    }
}
use crate::evidence::{EvidenceMode, PrometheusOptions};
use crate::inventory::Filters;

#[derive(Debug, Parser)]
#[command(
    name = "mtls-guard",
    version,
    about = "Refuses an Istio STRICT mTLS lock-down while plaintext clients still depend on it"
)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "MTLS_GUARD_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Unsynced {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the validating webhook over HTTPS.
    Serve(Box<ServeArgs>),
    /// Decide one AdmissionReview offline and print the response.
    Review(ReviewArgs),
    /// Make a CA and a serving certificate, and print the caBundle.
    Certs(CertsArgs),
    /// Would applying (or deleting) these manifests be denied? Exit 1 if so. For pipelines.
    Check(CheckArgs),
    /// Migration readiness of the mesh: who blocks which lock-down, and what can be applied now.
    Report(ReportArgs),
}

/// A `key=value` label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelPair(pub String, pub String);

impl FromStr for LabelPair {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok(LabelPair(k.into(), v.into())),
            _ => Err(format!("{s:?} is not key=value")),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct InventoryArgs {
    /// Inventory files or directories (kubectl get -o yaml|json output). Without any, the
    /// embedded demo inventory (the seed scenario) is used.
    #[arg(
        long = "inventory",
        value_name = "FILE|DIR",
        env = "MTLS_GUARD_INVENTORY",
        value_delimiter = ','
    )]
    pub inventory: Vec<PathBuf>,
    /// Accept an inventory file without pods (it allows every lock-down).
    #[arg(long, env = "MTLS_GUARD_ALLOW_EMPTY_INVENTORY")]
    pub allow_empty_inventory: bool,
    /// Namespace of the Istio control plane, where ConfigMap `istio` holds the mesh config.
    #[arg(
        long,
        default_value = "istio-system",
        env = "MTLS_GUARD_ISTIO_NAMESPACE"
    )]
    pub istio_namespace: String,
    /// Cluster DNS domain, for Service host names.
    #[arg(
        long,
        default_value = "cluster.local",
        env = "MTLS_GUARD_CLUSTER_DOMAIN"
    )]
    pub cluster_domain: String,
    /// Namespaces whose pods are neither clients nor servers.
    #[arg(
        long = "ignore-namespace",
        value_delimiter = ',',
        env = "MTLS_GUARD_IGNORE_NAMESPACES",
        default_value = "kube-system,kube-public,kube-node-lease"
    )]
    pub ignore_namespaces: Vec<String>,
    /// Pod labels (key=value) of Istio's own control-plane pods, which are ignored.
    #[arg(
        long = "ignore-pod-label",
        value_delimiter = ',',
        env = "MTLS_GUARD_IGNORE_POD_LABELS",
        default_value = "app=istiod,app=ztunnel,k8s-app=istio-cni-node"
    )]
    pub ignore_pod_labels: Vec<LabelPair>,
    /// Count a suspected client only where NetworkPolicies let it reach the server port. Off
    /// by default: policies hold only where the CNI enforces them.
    #[arg(long, env = "MTLS_GUARD_RESPECT_NETWORK_POLICIES")]
    pub respect_network_policies: bool,
}

impl InventoryArgs {
    pub fn filters(&self) -> Filters {
        Filters {
            ignored_namespaces: self.ignore_namespaces.iter().cloned().collect(),
            ignored_pod_labels: self
                .ignore_pod_labels
                .iter()
                .map(|l| (l.0.clone(), l.1.clone()))
                .collect(),
            cluster_domain: self.cluster_domain.clone(),
            istio_namespace: self.istio_namespace.clone(),
            respect_network_policies: self.respect_network_policies,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// Kubeconfig of the cluster to watch; without it the default kubeconfig or in-cluster
    /// config is tried, and without a cluster the demo inventory is served.
    #[arg(long, env = "MTLS_GUARD_KUBECONFIG", conflicts_with = "inventory")]
    pub kubeconfig: Option<PathBuf>,
    /// Serve the embedded demo inventory even when a cluster is reachable.
    #[arg(long, conflicts_with_all = ["inventory", "kubeconfig"])]
    pub demo: bool,
    /// What a review gets before the inventory has synced (or while it is stale).
    #[arg(long, value_enum, default_value = "deny", env = "MTLS_GUARD_UNSYNCED")]
    pub unsynced: Unsynced,
    /// Readiness drops when a kind's watch has failed for longer than this.
    #[arg(long, default_value = "60s", env = "MTLS_GUARD_MAX_STALENESS")]
    pub max_staleness: humantime::Duration,
    /// Address of the webhook (HTTPS, POST /validate only).
    #[arg(long, default_value = "0.0.0.0:8443", env = "MTLS_GUARD_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the plain-HTTP port for probes and Prometheus: /healthz, /readyz, /metrics
    /// (and /report with --serve-report).
    #[arg(
        long,
        default_value = "0.0.0.0:9090",
        env = "MTLS_GUARD_METRICS_LISTEN"
    )]
    pub metrics_listen: SocketAddr,
    /// Serve GET /report on the metrics port. It names every workload and namespace.
    #[arg(long, env = "MTLS_GUARD_SERVE_REPORT")]
    pub serve_report: bool,
    /// enforce denies a change that cuts off clients; audit allows it and reports.
    #[arg(long, value_enum, default_value = "enforce", env = "MTLS_GUARD_MODE")]
    pub mode: GuardMode,
    /// PEM serving certificate chain; reloaded when the file changes.
    #[arg(
        long,
        env = "MTLS_GUARD_TLS_CERT",
        requires = "tls_key",
        conflicts_with = "cert_secret"
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the serving certificate.
    #[arg(long, env = "MTLS_GUARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where a dev certificate for localhost is generated when no --tls-cert is given.
    #[arg(long, default_value = "certs/dev", env = "MTLS_GUARD_DEV_CERT_DIR")]
    pub dev_cert_dir: PathBuf,
    #[command(flatten)]
    pub self_cert: SelfCertArgs,
    /// How often the certificate files (or, with --cert-secret, the Secret and the webhook's
    /// caBundle) are checked.
    #[arg(long, default_value = "5s", env = "MTLS_GUARD_CERT_RELOAD_INTERVAL")]
    pub cert_reload_interval: humantime::Duration,
    /// Largest request body accepted; larger ones get 413.
    #[arg(long, default_value_t = 3 * 1024 * 1024, env = "MTLS_GUARD_MAX_BODY_BYTES")]
    pub max_body_bytes: usize,
    /// Request bodies held at once across all connections; past it a request gets 503 with
    /// Retry-After.
    #[arg(long, default_value_t = 32 * 1024 * 1024, env = "MTLS_GUARD_MAX_BUFFERED_BYTES")]
    pub max_buffered_bytes: usize,
    /// Decisions made at once (default: the CPUs available); more reviews wait for a turn.
    #[arg(long, env = "MTLS_GUARD_MAX_CONCURRENT_REVIEWS")]
    pub max_concurrent_reviews: Option<usize>,
    /// Past this, a review is answered without a decision: denied in enforce mode, allowed
    /// with a warning in audit mode. Keep it under --request-timeout.
    #[arg(long, default_value = "3s", env = "MTLS_GUARD_REVIEW_DEADLINE")]
    pub review_deadline: humantime::Duration,
    /// Time to answer one request (keep it under the webhook's timeoutSeconds).
    #[arg(long, default_value = "4s", env = "MTLS_GUARD_REQUEST_TIMEOUT")]
    pub request_timeout: humantime::Duration,
    /// Time a client has to finish the TLS handshake, and then to send each request's headers
    /// (for HTTP/1.1 also the longest wait for the next request on a kept-alive connection).
    #[arg(long, default_value = "5s", env = "MTLS_GUARD_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: humantime::Duration,
    /// A connection with no request in flight for this long is closed.
    #[arg(long, default_value = "60s", env = "MTLS_GUARD_IDLE_TIMEOUT")]
    pub idle_timeout: humantime::Duration,
    /// After SIGTERM, readiness is off but the listener stays open this long, so the endpoints
    /// stop routing to this replica before it refuses connections.
    #[arg(long, default_value = "5s", env = "MTLS_GUARD_DRAIN_DELAY")]
    pub drain_delay: humantime::Duration,
    /// How long the drain then waits for open connections to finish.
    #[arg(long, default_value = "20s", env = "MTLS_GUARD_SHUTDOWN_GRACE")]
    pub shutdown_grace: humantime::Duration,
    /// PEM CA certificate(s): clients must present a certificate that chains to one of them,
    /// or the TLS handshake fails.
    #[arg(long, value_name = "FILE", env = "MTLS_GUARD_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    #[command(flatten)]
    pub evidence: EvidenceArgs,
}

/// Certificates the guard manages itself in the cluster: a CA and a serving certificate in a
/// Secret of its own namespace, and the CA injected into its ValidatingWebhookConfiguration.
#[derive(Debug, Clone, Args)]
pub struct SelfCertArgs {
    /// Secret (in --namespace) holding the CA and the serving certificate; created and renewed
    /// by the guard.
    #[arg(long, value_name = "NAME", env = "MTLS_GUARD_CERT_SECRET")]
    pub cert_secret: Option<String>,
    /// ValidatingWebhookConfiguration whose caBundle the guard keeps equal to its CA.
    #[arg(
        long,
        value_name = "NAME",
        env = "MTLS_GUARD_WEBHOOK_CONFIG",
        requires = "cert_secret"
    )]
    pub webhook_config: Option<String>,
    /// The guard's own namespace; default: the pod's (in-cluster) or the kubeconfig context's.
    #[arg(long, env = "MTLS_GUARD_NAMESPACE")]
    pub namespace: Option<String>,
    /// The Service in front of the guard: the certificate names <service>.<namespace>.svc and
    /// <service>.<namespace>.svc.<cluster-domain>.
    #[arg(long, default_value = "mtls-guard", env = "MTLS_GUARD_SERVICE_NAME")]
    pub service_name: String,
    /// More names (DNS or IP) for the serving certificate.
    #[arg(
        long = "cert-name",
        value_delimiter = ',',
        env = "MTLS_GUARD_CERT_NAMES"
    )]
    pub cert_names: Vec<String>,
    /// Validity of the generated CA; a new one is rolled in when a third of it is left.
    #[arg(long, default_value = "365d", env = "MTLS_GUARD_CA_VALIDITY")]
    pub ca_validity: humantime::Duration,
    /// Validity of the serving certificate; it is renewed when a third of it is left.
    #[arg(long, default_value = "90d", env = "MTLS_GUARD_CERT_VALIDITY")]
    pub cert_validity: humantime::Duration,
}

/// Where Istio's telemetry is: the Prometheus that scrapes the proxies.
#[derive(Debug, Clone, Args)]
pub struct PrometheusArgs {
    /// Prometheus base URL (e.g. http://prometheus.istio-system:9090); without it only the
    /// inventory decides.
    #[arg(long, value_name = "URL", env = "MTLS_GUARD_PROMETHEUS_URL")]
    pub prometheus_url: Option<reqwest::Url>,
    /// File with a bearer token for Prometheus, read again before every query.
    #[arg(long, value_name = "FILE", env = "MTLS_GUARD_PROMETHEUS_TOKEN_FILE")]
    pub prometheus_token_file: Option<PathBuf>,
    /// PEM CA bundle trusted for an https Prometheus, besides the system roots.
    #[arg(long, value_name = "FILE", env = "MTLS_GUARD_PROMETHEUS_CA")]
    pub prometheus_ca: Option<PathBuf>,
    /// Look-back window: plaintext traffic seen within it counts.
    #[arg(long, default_value = "24h", env = "MTLS_GUARD_TRAFFIC_WINDOW")]
    pub traffic_window: humantime::Duration,
}

impl PrometheusArgs {
    /// Client options when a URL is set.
    pub fn options(&self, timeout: Duration) -> Option<PrometheusOptions> {
        Some(PrometheusOptions {
            url: self.prometheus_url.clone()?,
            token_file: self.prometheus_token_file.clone(),
            ca_file: self.prometheus_ca.clone(),
            window: *self.traffic_window,
            timeout,
        })
    }
}

/// Traffic evidence from Istio's telemetry in Prometheus.
#[derive(Debug, Clone, Args)]
pub struct EvidenceArgs {
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// How often Prometheus is polled.
    #[arg(long, default_value = "60s", env = "MTLS_GUARD_TRAFFIC_REFRESH")]
    pub traffic_refresh: humantime::Duration,
    /// Which evidence decides: the inventory, observed traffic, or both.
    #[arg(long, value_enum, default_value = "both", env = "MTLS_GUARD_EVIDENCE")]
    pub evidence: EvidenceMode,
}

impl EvidenceArgs {
    /// Client options when a URL is set; one query may take up to the refresh interval,
    /// bounded to keep a hung Prometheus from holding a poll for long.
    pub fn prometheus(&self) -> Option<PrometheusOptions> {
        self.prometheus
            .options((*self.traffic_refresh).clamp(Duration::from_secs(1), Duration::from_secs(30)))
    }

    pub fn window(&self) -> Duration {
        *self.prometheus.traffic_window
    }
}

#[derive(Debug, Clone, Args)]
pub struct ReviewArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    /// enforce denies a change that cuts off clients; audit allows it and reports.
    #[arg(long, value_enum, default_value = "enforce", env = "MTLS_GUARD_MODE")]
    pub mode: GuardMode,
    /// AdmissionReview JSON file, or - for standard input.
    pub review: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckOutput {
    Text,
    Json,
}

/// Reading the inventory once from a live cluster, for `check` and `report`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// Read the inventory from the cluster (the default kubeconfig or in-cluster config, or
    /// --kubeconfig) instead of files.
    #[arg(long, conflicts_with = "inventory")]
    pub cluster: bool,
    /// Kubeconfig for --cluster.
    #[arg(long, requires = "cluster")]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Manifests (YAML or JSON, several documents or a List; a directory means its .yaml,
    /// .yml and .json files), checked in order as `kubectl apply -f` would apply them.
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub files: Vec<PathBuf>,
    /// Check deleting the objects instead of applying them.
    #[arg(long)]
    pub delete: bool,
    /// The webhook's --mode: enforce denies; audit only reports. A namespace's
    /// mtls-guard.io/mode label overrides it, as in the webhook.
    #[arg(long, value_enum, default_value = "enforce", env = "MTLS_GUARD_MODE")]
    pub mode: GuardMode,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "text")]
    pub output: CheckOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportOutput {
    Table,
    Json,
    Html,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub inventory: InventoryArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    /// Output format: a terminal table, JSON, or one self-contained HTML page.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    pub output: ReportOutput,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// DNS names (or IPs) of the serving certificate, e.g. mtls-guard.mtls-guard.svc.
    #[arg(long = "dns", required = true)]
    pub names: Vec<String>,
    /// Directory for ca.crt, tls.crt and tls.key.
    #[arg(long, default_value = "certs/out")]
    pub out: PathBuf,
}
