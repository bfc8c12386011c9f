//! The container image as a platform team runs it: built by `scripts/build-image.sh`, run by
//! podman with a read-only root filesystem as user 65532, answering over HTTPS from outside
//! the container, and registered as the webhook of the test kube-apiserver, which calls it
//! for the seed's lock-down.

mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cluster::{free_port, ControlPlane, STRICT_POLICY};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// podman with the repository's configuration for a root sandbox (vfs, runc, cgroupfs).
fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env(
        "CONTAINERS_CONF",
        root().join("tests/image/containers.conf"),
    )
    .env(
        "CONTAINERS_STORAGE_CONF",
        root().join("tests/image/storage.conf"),
    );
    cmd
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Builds the image once per test binary with the script users run.
fn image() -> String {
    static IMAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let out = Command::new("bash")
                .arg(root().join("scripts/build-image.sh"))
                .arg("mtls-guard:test")
                .env(
                    "CONTAINERS_CONF",
                    root().join("tests/image/containers.conf"),
                )
                .env(
                    "CONTAINERS_STORAGE_CONF",
                    root().join("tests/image/storage.conf"),
                )
                .output()
                .expect("build-image.sh runs");
            let tag = ok(out, "scripts/build-image.sh");
            let size = ok(
                podman()
                    .args(["image", "inspect", "--format", "{{.Size}}", &tag])
                    .output()
                    .unwrap(),
                "podman image inspect",
            );
            let mb = size.parse::<f64>().unwrap_or(0.0) / 1e6;
            // cargo hides a passing test's output: tests/run.sh prints this file.
            let _ = std::fs::write(
                root().join("target/image-size.txt"),
                format!("image {tag}: {mb:.1} MB\n"),
            );
            tag
        })
        .clone()
}

/// A running container, removed when dropped.
struct Container {
    name: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// Runs the image hardened as the Deployment runs it (read-only root), with `mounts` as
/// (host directory, `path:ro` or `path:rw` inside), on the host's network so loopback ports
/// are shared.
fn run(name: &str, mounts: &[(PathBuf, &str)], args: &[String]) -> Container {
    let _ = podman().args(["rm", "-f", "-t", "0", name]).output();
    let mut cmd = podman();
    cmd.args([
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
    ])
    .args(["--user", "65532:65532", "--cap-drop", "ALL"]);
    for (host, inside) in mounts {
        cmd.arg("-v").arg(format!("{}:{inside}", host.display()));
    }
    ok(cmd.arg(image()).args(args).output().unwrap(), "podman run");
    Container {
        name: name.to_string(),
    }
}

/// A CA and serving certificate for 127.0.0.1 in a directory user 65532 can read.
fn serving_certs() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let pair = mtls_guard::tls::generate(&["127.0.0.1".to_string()]).unwrap();
    mtls_guard::tls::write(dir.path(), &pair).unwrap();
    readable_by_the_image(dir.path());
    (dir, pair.ca_pem)
}

fn readable_by_the_image(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        std::os::unix::fs::chown(entry.unwrap().path(), Some(65532), Some(65532)).unwrap();
    }
    std::os::unix::fs::chown(dir, Some(65532), Some(65532)).unwrap();
}

fn listen_args(port: u16, ops: u16) -> Vec<String> {
    [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        &format!("127.0.0.1:{ops}"),
    ]
    .map(String::from)
    .to_vec()
}

fn tls_args(port: u16, ops: u16) -> Vec<String> {
    let mut args = listen_args(port, ops);
    args.extend(["--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key"].map(String::from));
    args
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn status(url: &str) -> u16 {
    block_on(async {
        match reqwest::Client::new().get(url).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    })
}

#[test]
fn the_image_serves_the_demo_read_only_and_drains_on_stop() {
    // The root filesystem is read-only: the dev certificate goes to the one writable volume.
    let certs = tempfile::tempdir().unwrap();
    readable_by_the_image(certs.path());
    let (port, ops) = (free_port(), free_port());
    let mut args = listen_args(port, ops);
    args.extend(["--demo", "--dev-cert-dir", "/certs"].map(String::from));
    let container = run(
        "mtls-guard-test-demo",
        &[(certs.path().to_path_buf(), "/certs:rw")],
        &args,
    );
    wait_for("/readyz", || {
        status(&format!("http://127.0.0.1:{ops}/readyz")) == 200
    });
    assert_eq!(status(&format!("http://127.0.0.1:{ops}/healthz")), 200);
    let ca_pem = std::fs::read_to_string(certs.path().join("ca.crt")).unwrap();
    let body = std::fs::read(root().join("tests/data/seed-strict-policy.json")).unwrap();
    let review: serde_json::Value = block_on(async {
        ControlPlane::client_trusting(&ca_pem)
            .post(format!("https://127.0.0.1:{port}/validate"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(review["response"]["allowed"], false, "{review}");
    let message = review["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("legacy/sleep"), "{message}");

    let stopped = Instant::now();
    ok(
        podman()
            .args(["stop", "-t", "30", &container.name])
            .output()
            .unwrap(),
        "podman stop",
    );
    let exit = ok(
        podman()
            .args([
                "inspect",
                "--format",
                "{{.State.ExitCode}}",
                &container.name,
            ])
            .output()
            .unwrap(),
        "podman inspect",
    );
    assert_eq!(exit, "0", "SIGTERM drains and exits cleanly");
    let logs = podman().args(["logs", &container.name]).output().unwrap();
    let logs = String::from_utf8_lossy(&logs.stderr);
    assert!(logs.contains("draining"), "{logs}");
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "stopped by SIGTERM, not killed"
    );
}

#[test]
fn the_api_server_calls_the_containerised_guard() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    let kube = tempfile::tempdir().unwrap();
    std::fs::write(
        kube.path().join("config"),
        // By name, so the static binary's resolver is exercised, not only its TLS.
        cp.token_kubeconfig("mtls-guard", "mtls-guard")
            .replace("https://127.0.0.1:", "https://localhost:"),
    )
    .unwrap();
    readable_by_the_image(kube.path());
    let (certs, ca_pem) = serving_certs();
    let (port, ops) = (free_port(), free_port());
    let mut args = tls_args(port, ops);
    args.extend(["--kubeconfig".into(), "/kube/config".into()]);
    let _container = run(
        "mtls-guard-test-cluster",
        &[
            (certs.path().to_path_buf(), "/tls:ro"),
            (kube.path().to_path_buf(), "/kube:ro"),
        ],
        &args,
    );
    wait_for("the containerised guard to sync the cluster", || {
        status(&format!("http://127.0.0.1:{ops}/readyz")) == 200
    });
    cp.register_webhook_url(port, &ca_pem);
    cp.apply_seed_policies();
    let out = cp.kubectl_stdin(&["apply", "-f", "-"], STRICT_POLICY);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the lock-down must be denied");
    assert!(
        text.contains("denied the request") && text.contains("legacy/sleep"),
        "{text}"
    );
}
