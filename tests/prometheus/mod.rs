//! A real Prometheus (Debian's package; `tests/prometheus/setup.sh` installs it) serving
//! TSDB blocks that `promtool` builds from an OpenMetrics file the test writes.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::common::free_port;

pub struct Prometheus {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Imports `openmetrics` with promtool and serves it on a loopback port.
    pub async fn start(openmetrics: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("input.om");
        let data = dir.path().join("data");
        std::fs::write(&input, openmetrics).unwrap();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "--quiet"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("promtool is installed (run tests/prometheus/setup.sh)");
        assert!(
            out.status.success(),
            "promtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1h\n").unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--config.file={}", config.display()))
            // The imported samples are recent, but keep any retention sweep away from them.
            .arg("--storage.tsdb.retention.time=10y")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("prometheus.log")).unwrap(),
            ))
            .spawn()
            .expect("prometheus is installed (run tests/prometheus/setup.sh)");
        let p = Prometheus {
            port,
            child,
            _dir: dir,
        };
        p.wait_ready().await;
        p
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn wait_ready(&self) {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(format!("{}/-/ready", self.url())).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log =
            std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default();
        panic!("prometheus did not become ready:\n{log}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OpenMetrics text for counters of Istio's standard metrics.
pub struct OpenMetrics {
    families: Vec<(String, String)>,
    now: u64,
}

impl OpenMetrics {
    pub fn new() -> OpenMetrics {
        OpenMetrics {
            families: Vec::new(),
            now: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        }
    }

    /// One counter series: a sample every 10 minutes from `from_min` to `to_min` minutes ago,
    /// growing by `step` each time.
    pub fn counter(
        &mut self,
        metric: &str,
        labels: &[(&str, &str)],
        from_min: u64,
        to_min: u64,
        step: u64,
    ) -> &mut Self {
        let family = metric.strip_suffix("_total").unwrap_or(metric).to_string();
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let labels = labels.join(",");
        let mut lines = String::new();
        let mut value = 0;
        let mut ago = from_min;
        loop {
            let _ = writeln!(
                lines,
                "{metric}{{{labels}}} {value} {}",
                self.now - ago * 60
            );
            if ago <= to_min {
                break;
            }
            ago = ago.saturating_sub(10).max(to_min);
            value += step;
        }
        match self.families.iter_mut().find(|(f, _)| *f == family) {
            Some((_, body)) => body.push_str(&lines),
            None => self.families.push((family, lines)),
        }
        self
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        for (family, body) in &self.families {
            let _ = writeln!(out, "# TYPE {family} counter");
            out.push_str(body);
        }
        out.push_str("# EOF\n");
        out
    }
}

/// Istio's labels for one edge.
pub fn edge<'a>(
    reporter: &'a str,
    policy: &'a str,
    source: (&'a str, &'a str),
    destination: (&'a str, &'a str),
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("reporter", reporter),
        ("connection_security_policy", policy),
        ("source_workload_namespace", source.0),
        ("source_workload", source.1),
        ("destination_workload_namespace", destination.0),
        ("destination_workload", destination.1),
    ]
}
