//! `mtls-guard review` and `mtls-guard certs` as a pipeline would run them.

mod common;

use std::process::{Command, Output, Stdio};

use common::{data, BIN};

const NO_FLAGS: [&str; 0] = [];

fn review(args: &[impl AsRef<std::ffi::OsStr>], fixture: &str) -> Output {
    Command::new(BIN)
        .arg("review")
        .args(args)
        .arg(data(fixture))
        .output()
        .unwrap()
}

/// `--inventory` flags for the embedded demo's file plus `extra` from tests/data.
fn demo_and(extra: &str) -> Vec<String> {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inventory/demo.yaml");
    let extra = data(extra);
    [
        "--inventory",
        demo.to_str().unwrap(),
        "--inventory",
        extra.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec()
}

fn response(out: &Output) -> serde_json::Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["response"].clone()
}

#[test]
fn deny_prints_the_response_and_exits_zero() {
    let r = response(&review(&NO_FLAGS, "seed-strict-policy.json"));
    assert_eq!(r["allowed"], false);
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("legacy/sleep"));
}

#[test]
fn allow_with_a_migrated_inventory() {
    let inv = data("seed-migrated.yaml");
    let r = response(&review(
        &["--inventory", inv.to_str().unwrap()],
        "seed-strict-policy.json",
    ));
    assert_eq!(r["allowed"], true);
}

#[test]
fn audit_and_break_glass() {
    let r = response(&review(&["--mode", "audit"], "seed-strict-policy.json"));
    assert_eq!(r["allowed"], true);
    assert!(r["auditAnnotations"]["would-deny"].is_string());
    let r = response(&review(&NO_FLAGS, "seed-strict-policy-break-glass.json"));
    assert_eq!(r["allowed"], true);
    assert_eq!(
        r["auditAnnotations"]["break-glass"],
        "INC-4711 legacy decommissioned tonight"
    );
}

#[test]
fn reads_the_review_from_stdin() {
    let mut child = Command::new(BIN)
        .args(["review", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = std::fs::read(data("seed-strict-policy.json")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &body).unwrap();
    let r = response(&child.wait_with_output().unwrap());
    assert_eq!(r["allowed"], false);
}

#[test]
fn bad_input_exits_two_with_one_line() {
    let cases: [(&[&str], &str); 3] = [
        (&[], "does-not-exist.json"),
        (&[], "seed-migrated.yaml"),
        (
            &["--inventory", "/nonexistent/inventory.yaml"],
            "seed-strict-policy.json",
        ),
    ];
    for (args, fixture) in cases {
        let out = review(args, fixture);
        assert_eq!(out.status.code(), Some(2), "{args:?} {fixture}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("mtls-guard: "), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn certs_writes_a_pair_and_prints_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["certs", "--dns", "mtls-guard.mtls-guard.svc", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let bundle = String::from_utf8(out.stdout).unwrap();
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(bundle.trim())
        .unwrap();
    assert_eq!(decoded, ca.as_bytes());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the private key is for its owner only");
}

/// Runs `review` and returns its exit code and last stderr line, failing if it hangs.
fn review_exit(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .arg("review")
        .args(args)
        .arg(data("seed-strict-policy.json"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("review {args:?} hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    (
        out.status.code(),
        stderr.lines().last().unwrap_or("").to_string(),
    )
}

#[test]
fn inventory_files_must_be_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yaml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for path in ["/dev/zero", fifo.to_str().unwrap()] {
        let (code, line) = review_exit(&["--inventory", path]);
        assert_eq!(code, Some(2), "{path}: {line}");
        assert!(line.contains("not a regular file"), "{path}: {line}");
    }
}

#[test]
fn an_inventory_without_pods_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.yaml");
    std::fs::write(&empty, "apiVersion: v1\nkind: List\nitems: []\n").unwrap();
    let (code, line) = review_exit(&["--inventory", empty.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{line}");
    assert!(line.contains("holds no pods"), "{line}");
    let out = review(
        &[
            "--inventory",
            empty.to_str().unwrap(),
            "--allow-empty-inventory",
        ],
        "seed-strict-policy.json",
    );
    assert_eq!(response(&out)["allowed"], true);
}

#[test]
fn a_load_balancer_names_external_clients_and_the_ingress_gateway_is_no_server() {
    let r = response(&review(
        &demo_and("exposed-services.yaml"),
        "seed-strict-policy.json",
    ));
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("legacy/sleep -> foo/httpbin"), "{message}");
    assert!(
        message.contains("external clients (Service foo/httpbin-public, LoadBalancer) -> foo/httpbin: exposed outside the mesh on Service port 80"),
        "{message}"
    );
    // The gateway is a client like a sidecar; its own LoadBalancer exposes no server.
    assert!(
        !message.contains("Service istio-ingress/istio-ingressgateway"),
        "{message}"
    );
}

#[test]
fn turning_auto_mtls_off_in_the_mesh_config_is_denied() {
    let inv = data("strict-mesh-auto-mtls.yaml");
    let r = response(&review(
        &["--inventory", inv.to_str().unwrap()],
        "mesh-config-auto-mtls-off.json",
    ));
    assert_eq!(r["allowed"], false);
    let msg = r["status"]["message"].as_str().unwrap();
    for want in [
        "ConfigMap istio-system/istio would cut off 1 plaintext client(s)",
        "bar/httpbin is STRICT and hit",
        "foo/sleep -> bar/httpbin: auto mTLS is off",
        "Change: mesh enableAutoMtls: true -> false",
    ] {
        assert!(msg.contains(want), "{want:?} missing from {msg}");
    }
}

#[test]
fn a_deployment_mid_rollout_is_named_once_with_its_pods_summed() {
    let r = response(&review(
        &demo_and("httpbin-rollout.yaml"),
        "seed-strict-policy.json",
    ));
    let msg = r["status"]["message"].as_str().unwrap();
    assert_eq!(
        msg.matches("foo/httpbin becomes STRICT").count(),
        1,
        "{msg}"
    );
    assert!(msg.contains("2 pod(s))"), "{msg}");
    assert!(msg.contains("legacy/sleep -> foo/httpbin: "), "{msg}");
}

#[test]
fn network_policies_rule_out_a_client_only_when_asked_to() {
    let inventory = demo_and("np-httpbin-only-from-mesh.yaml");
    let r = response(&review(&inventory, "seed-strict-policy.json"));
    assert_eq!(r["allowed"], false, "policies are ignored by default");
    let respecting = [&inventory[..], &["--respect-network-policies".to_string()]].concat();
    let r = response(&review(&respecting, "seed-strict-policy.json"));
    assert_eq!(r["allowed"], true, "{r}");

    let report = Command::new(BIN)
        .arg("report")
        .args(&respecting)
        .args(["-o", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let httpbin = common::report_workload(&report, "foo", "httpbin");
    assert_eq!(httpbin["status"], "ready", "{httpbin}");
    assert_eq!(
        httpbin["suspects"]["excludedByNetworkPolicies"], 1,
        "{httpbin}"
    );
    assert_eq!(httpbin["suspects"]["inventory"], 0, "{httpbin}");
}
