//! Runs the real `mtls-guard` binary and talks to it over real TLS.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mtls-guard");

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The entry of `namespace/name` among the workloads of `report -o json`.
pub fn report_workload<'r>(
    report: &'r serde_json::Value,
    namespace: &str,
    name: &str,
) -> &'r serde_json::Value {
    report["workloads"]
        .as_array()
        .expect("a report's workloads")
        .iter()
        .find(|w| w["namespace"] == namespace && w["workload"] == name)
        .unwrap_or_else(|| panic!("{namespace}/{name} is in the report"))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A client builder for `https://localhost:PORT` that connects to 127.0.0.1 only, with no
/// proxy and no built-in roots.
pub fn client_builder(port: u16) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .timeout(Duration::from_secs(30))
}

/// A running `mtls-guard serve` with its own dev certificate directory.
pub struct Guard {
    /// The webhook's HTTPS port.
    pub port: u16,
    /// The plain-HTTP port of /healthz, /readyz, /metrics and /report.
    pub ops_port: u16,
    pub certs: tempfile::TempDir,
    pub child: Child,
    /// The CA its clients trust; the generated dev CA unless given.
    trust: Option<PathBuf>,
    /// PEM client certificate and key, for a guard started with `--client-ca`.
    identity: Option<Vec<u8>>,
}

impl Guard {
    pub async fn start(extra: &[&str]) -> Guard {
        Guard::launch(extra, None, None).await
    }

    /// `trust`: the CA that signs a `--tls-cert` given in `extra` (default: the dev CA);
    /// `identity`: the PEM certificate and key clients present (for `--client-ca`).
    pub async fn start_with(
        extra: &[&str],
        trust: Option<PathBuf>,
        identity: Option<Vec<u8>>,
    ) -> Guard {
        Guard::launch(extra, trust, identity).await
    }

    async fn launch(extra: &[&str], trust: Option<PathBuf>, identity: Option<Vec<u8>>) -> Guard {
        let source = if extra.contains(&"--inventory") {
            None
        } else {
            Some("--demo")
        };
        let certs = tempfile::tempdir().unwrap();
        let (port, ops_port) = (free_port(), free_port());
        let log = std::fs::File::create(certs.path().join("guard.log")).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{ops_port}")])
            .arg("--dev-cert-dir")
            .arg(certs.path())
            .args(extra)
            .args(source)
            // Tests that stop the guard wait for the drain; a flag still overrides this.
            .env("MTLS_GUARD_DRAIN_DELAY", "0s")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("mtls-guard starts");
        let guard = Guard {
            port,
            ops_port,
            certs,
            child,
            trust,
            identity,
        };
        guard.wait_healthy().await;
        guard
    }

    pub fn ca(&self) -> PathBuf {
        self.trust
            .clone()
            .unwrap_or_else(|| self.certs.path().join("ca.crt"))
    }

    /// What the guard has logged so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.certs.path().join("guard.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// A URL on the plain-HTTP operations port.
    pub fn ops_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ops_port)
    }

    /// GET on the operations port, with a plain client.
    pub async fn ops_get(&self, path: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
            .get(self.ops_url(path))
            .send()
            .await
            .unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        client_builder(self.port)
    }

    /// A client that trusts only the guard's CA (and presents the client identity, if any).
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(self.ca()).expect("the CA was written");
        let mut builder = self
            .client_builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
        if let Some(identity) = &self.identity {
            builder = builder.identity(reqwest::Identity::from_pem(identity).unwrap());
        }
        builder.build().unwrap()
    }

    /// Waits until the webhook answers over TLS (any status: GET /validate is 405).
    async fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ca().exists()
                && self
                    .client()
                    .get(self.url("/validate"))
                    .send()
                    .await
                    .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("mtls-guard did not answer on port {}", self.port);
    }

    /// Sends SIGTERM, as the kubelet does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The exit status, waiting at most `bound`.
    pub async fn wait_exit(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(Instant::now() < deadline, "still running after {bound:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn validate(&self, body: Vec<u8>) -> reqwest::Response {
        self.client()
            .post(self.url("/validate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn validate_fixture(&self, name: &str) -> serde_json::Value {
        let r = self.validate(std::fs::read(data(name)).unwrap()).await;
        assert_eq!(r.status(), 200);
        // The API server reads an answer of another content type as an error.
        assert_eq!(r.headers()["content-type"], "application/json");
        r.json().await.unwrap()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
