//! `mtls-guard check` as a GitOps pipeline runs it: the real binary on manifest files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{data, BIN};

fn demo_inventory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/inventory/demo.yaml")
}

fn check(args: &[&str]) -> Output {
    Command::new(BIN).arg("check").args(args).output().unwrap()
}

fn path(name: &str) -> String {
    data(name).display().to_string()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_lockdown_with_a_plaintext_client_is_denied_naming_it() {
    let out = check(&["-f", &path("check-pa-strict-foo-httpbin.yaml")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("DENY  PeerAuthentication foo/httpbin-strict (CREATE,"),
        "{text}"
    );
    assert!(
        text.contains("- legacy/sleep -> foo/httpbin: no Istio sidecar"),
        "{text}"
    );
    assert!(text.contains("[evidence: inventory]"), "{text}");
    assert!(
        text.ends_with("1 of 1 object(s) would be denied.\n"),
        "{text}"
    );
}

#[test]
fn the_same_lockdown_is_allowed_once_the_clients_migrated() {
    let out = check(&[
        "-f",
        &path("check-pa-strict-foo-httpbin.yaml"),
        "--inventory",
        &path("seed-migrated.yaml"),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("OK    PeerAuthentication foo/httpbin-strict (CREATE,"),
        "{text}"
    );
    assert!(!text.contains("legacy/sleep"), "{text}");
}

#[test]
fn deleting_a_permissive_exception_is_denied_and_deleting_a_lockdown_is_not() {
    let inv = demo_inventory().display().to_string();
    let out = check(&[
        "--delete",
        "-f",
        &path("check-pa-httpbin-permissive.yaml"),
        "--inventory",
        &inv,
        "--inventory",
        &path("check-inventory-foo-strict.yaml"),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("DENY  PeerAuthentication foo/httpbin-permissive (DELETE,"),
        "{text}"
    );
    assert!(text.contains("by PeerAuthentication foo/default"), "{text}");
    assert!(text.contains("legacy/sleep -> foo/httpbin"), "{text}");
    assert!(!text.contains("not in the inventory"), "{text}");

    let out = check(&["--delete", "-f", &path("check-pa-strict-foo-httpbin.yaml")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("OK    PeerAuthentication foo/httpbin-strict (DELETE,"));
    assert!(text.contains("not in the inventory"), "{text}");
}

#[test]
fn unreviewed_kinds_are_skipped_and_the_rest_still_checked() {
    let out = check(&["-f", &path("check-mixed.yaml"), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["denied"], 1);
    assert_eq!(j["results"][0]["verdict"], "not-reviewed");
    assert_eq!(j["results"][0]["object"], "apps/v1 Deployment foo/web");
    assert_eq!(j["results"][1]["verdict"], "denied");
    assert_eq!(j["results"][1]["clients"][0]["client"], "legacy/sleep");
    assert_eq!(j["results"][1]["clients"][0]["tier"], "inventory");
}

#[test]
fn bad_input_exits_two_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_yaml = dir.path().join("not.yaml");
    std::fs::write(&not_yaml, "kind: [unclosed\n").unwrap();
    let cases = [
        vec!["-f".to_string(), "/nonexistent/policy.yaml".to_string()],
        vec!["-f".to_string(), path("check-pa-invalid.yaml")],
        vec!["-f".to_string(), not_yaml.display().to_string()],
        vec![
            "-f".to_string(),
            path("check-pa-strict-foo-httpbin.yaml"),
            "--inventory".to_string(),
            "/nonexistent/inventory.yaml".to_string(),
        ],
    ];
    for args in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = check(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("mtls-guard: "), "{stderr}");
    }
    let out = check(&["-f", &path("check-pa-invalid.yaml")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PeerAuthentication foo/broken: unknown mTLS mode \"STRICTEST\""),
        "{stderr}"
    );
}

#[test]
fn the_proposed_patch_applies_and_then_passes() {
    let manifest = data("check-pa-strict-foo-httpbin.yaml");
    let out = check(&["-f", manifest.to_str().unwrap(), "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &j["results"][0];
    assert_eq!(result["permissivePorts"], serde_json::json!([80]));
    let patch: json_patch::Patch = serde_json::from_value(result["patch"].clone()).unwrap();

    let mut doc: serde_json::Value =
        mtls_guard::yaml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc["spec"]["portLevelMtls"]["80"]["mode"], "PERMISSIVE");
    assert_eq!(
        doc["spec"]["mtls"]["mode"], "STRICT",
        "the rest stays STRICT"
    );
    let dir = tempfile::tempdir().unwrap();
    let patched = dir.path().join("patched.json");
    std::fs::write(&patched, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = check(&["-f", patched.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("OK    PeerAuthentication foo/httpbin-strict"));

    // The text output shows the same patch as a kubectl command.
    let text = stdout(&check(&["-f", manifest.to_str().unwrap()]));
    let ops = serde_json::to_string(&result["patch"]).unwrap();
    assert!(
        text.contains(&format!(
            "kubectl patch peerauthentication httpbin-strict -n foo --type=json -p '{ops}'"
        )),
        "{text}"
    );
}

#[test]
fn a_namespace_wide_lockdown_gets_advice_not_a_patch() {
    let out = check(&[
        "-f",
        &path("check-pa-strict-foo-namespace.yaml"),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let result = &j["results"][0];
    assert!(result.get("patch").is_none(), "{result}");
    let advice = result["advice"].as_str().unwrap();
    assert!(advice.contains("only with a selector"), "{advice}");
    assert!(advice.contains("keep this scope PERMISSIVE"), "{advice}");
}

#[test]
fn check_answers_as_the_webhook_would_under_audit_and_break_glass() {
    let demo = demo_inventory().display().to_string();
    let audited = check(&[
        "-f",
        &path("check-pa-strict-foo-httpbin.yaml"),
        "--inventory",
        &demo,
        "--inventory",
        &path("foo-audited.yaml"),
    ]);
    let text = stdout(&audited);
    assert_eq!(audited.status.code(), Some(0), "{text}");
    assert!(
        text.starts_with("OK    PeerAuthentication foo/httpbin-strict (CREATE, ")
            && text.contains("(audit: would deny, 1 client(s) cut off)"),
        "{text}"
    );
    assert!(
        text.contains("mtls-guard would deny: legacy/sleep -> foo/httpbin"),
        "{text}"
    );
    let global_audit = check(&[
        "-f",
        &path("check-pa-strict-foo-httpbin.yaml"),
        "--mode",
        "audit",
    ]);
    assert_eq!(
        global_audit.status.code(),
        Some(0),
        "{}",
        stdout(&global_audit)
    );

    let glass = check(&["-f", &path("check-pa-strict-foo-httpbin-break-glass.yaml")]);
    let text = stdout(&glass);
    assert_eq!(glass.status.code(), Some(0), "{text}");
    assert!(
        text.contains(
            "(break-glass: INC-4711 legacy decommissioned tonight (who may use it is not checked by `check`))"
        ),
        "{text}"
    );
    let json = check(&[
        "-f",
        &path("check-pa-strict-foo-httpbin-break-glass.yaml"),
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["denied"], 0);
    assert_eq!(v["results"][0]["verdict"], "break-glass");
    assert_eq!(
        v["results"][0]["breakGlassPermission"],
        "not checked by check"
    );
    assert_eq!(v["results"][0]["clients"][0]["client"], "legacy/sleep");
}

/// The keys of the first client entry of a JSON list.
fn keys(entry: &serde_json::Value) -> Vec<String> {
    let mut keys: Vec<String> = entry.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[test]
fn a_cut_off_client_has_one_json_shape_in_check_report_and_the_audit_annotation() {
    let checked: serde_json::Value = serde_json::from_slice(
        &check(&[
            "-f",
            &path("check-pa-strict-foo-httpbin.yaml"),
            "-o",
            "json",
        ])
        .stdout,
    )
    .unwrap();
    let from_check = &checked["results"][0]["clients"][0];
    let report = Command::new(BIN)
        .args(["report", "-o", "json"])
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let blocked = common::report_workload(&report, "foo", "httpbin");
    let from_report = &blocked["blockers"][0];
    let review = Command::new(BIN)
        .args(["review", "--mode", "audit"])
        .arg(data("seed-strict-policy.json"))
        .output()
        .unwrap();
    let review: serde_json::Value = serde_json::from_slice(&review.stdout).unwrap();
    let annotation: serde_json::Value = serde_json::from_str(
        review["response"]["auditAnnotations"]["would-deny"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let from_annotation = &annotation[0];
    assert_eq!(keys(from_check), keys(from_report));
    assert_eq!(keys(from_check), keys(from_annotation));
    for entry in [from_check, from_report, from_annotation] {
        assert_eq!(entry["client"], "legacy/sleep");
        assert_eq!(entry["tier"], "inventory");
        assert_eq!(entry["reason"]["kind"], "no-proxy");
        assert_eq!(entry["servers"][0], "foo/httpbin");
    }
}

#[test]
fn a_mesh_config_manifest_is_checked_like_the_webhook_reviews_it() {
    let out = check(&[
        "-f",
        &path("check-mesh-auto-mtls-off.yaml"),
        "--inventory",
        &path("strict-mesh-auto-mtls.yaml"),
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("DENY  ConfigMap istio-system/istio (UPDATE, "),
        "{text}"
    );
    assert!(
        text.contains("foo/sleep -> bar/httpbin: auto mTLS is off"),
        "{text}"
    );
}
