//! The webhook over real HTTPS: the binary, its generated certificate and a rustls client.

mod common;

use common::Guard;

#[tokio::test]
async fn denies_the_seed_lockdown_naming_legacy_sleep() {
    let guard = Guard::start(&[]).await;
    let review = guard.validate_fixture("seed-strict-policy.json").await;
    let r = &review["response"];
    assert_eq!(r["uid"], "7f0c5a53-0001-4c55-9d7e-5c1f1c0a0001");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    assert!(r["status"]["message"]
        .as_str()
        .unwrap()
        .contains("legacy/sleep -> foo/httpbin"));
}

#[tokio::test]
async fn allows_once_legacy_has_a_sidecar() {
    let inventory = common::data("seed-migrated.yaml");
    let guard = Guard::start(&["--inventory", inventory.to_str().unwrap()]).await;
    let review = guard.validate_fixture("seed-strict-policy.json").await;
    assert_eq!(review["response"]["allowed"], true, "{review}");
}

#[tokio::test]
async fn audit_mode_allows_with_warnings() {
    let guard = Guard::start(&["--mode", "audit"]).await;
    let review = guard.validate_fixture("seed-strict-policy.json").await;
    let r = &review["response"];
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"][0].as_str().unwrap().contains("legacy/sleep"),
        "{r}"
    );
    assert!(r["auditAnnotations"]["would-deny"]
        .as_str()
        .unwrap()
        .contains("legacy/sleep"));
}

#[tokio::test]
async fn bad_requests_get_clear_4xx() {
    let guard = Guard::start(&["--max-body-bytes", "65536"]).await;
    let r = guard.validate(b"{not json".to_vec()).await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("not an AdmissionReview"));

    let r = guard.validate(vec![b' '; 65_537]).await;
    assert_eq!(r.status(), 413);

    let r = guard
        .client()
        .post(guard.url("/validate"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let r = guard
        .client()
        .get(guard.url("/validate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn the_webhook_port_serves_validate_only() {
    let guard = Guard::start(&[]).await;
    for path in ["/healthz", "/readyz", "/metrics", "/report"] {
        let r = guard.client().get(guard.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} on the webhook port");
    }
    let r = guard.ops_get("/validate").await;
    assert_eq!(r.status(), 404, "/validate on the operations port");
}

#[tokio::test]
async fn health_readiness_and_metrics_count_the_calls() {
    let guard = Guard::start(&[]).await;
    assert_eq!(guard.ops_get("/healthz").await.status(), 200);
    assert_eq!(guard.ops_get("/readyz").await.status(), 200);
    for _ in 0..3 {
        guard.validate_fixture("seed-strict-policy.json").await;
    }
    guard.validate_fixture("pa-permissive-foo.json").await;
    guard.validate(b"[]".to_vec()).await;
    let text = guard.ops_get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(
            r#"mtls_guard_reviews_total{kind="Policy",operation="CREATE",verdict="denied"} 3"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"mtls_guard_reviews_total{kind="PeerAuthentication",operation="CREATE",verdict="allowed"} 1"#));
    assert!(text.contains(r#"mtls_guard_bad_requests_total{reason="not_a_review"} 1"#));
    assert!(text.contains("mtls_guard_review_duration_seconds_count 4"));
    assert!(text.contains("mtls_guard_inventory_pods 5"));
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let mut guard = Guard::start(&[]).await;
    let pid = guard.child.id().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(exit) = guard.child.try_wait().unwrap() {
            assert!(exit.success(), "{exit}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running after SIGTERM"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_decision_is_logged_once_as_one_json_line_without_payloads() {
    let guard = Guard::start(&["--log-format", "json"]).await;
    guard
        .validate_fixture("seed-strict-policy-break-glass.json")
        .await;
    guard.validate_fixture("pa-permissive-foo.json").await;
    let log = logged(&guard, 2).await;
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == "admission decision")
        .collect();
    assert_eq!(decisions.len(), 2, "{log}");
    let d = &decisions[0]["fields"];
    assert_eq!(d["uid"], "7f0c5a53-0002-4c55-9d7e-5c1f1c0a0002");
    assert_eq!(d["user"], "alice@example.com");
    assert_eq!(d["operation"], "CREATE");
    assert_eq!(d["object"], "foo/example-httpbin-strict");
    assert_eq!(d["verdict"], "break_glass");
    assert_eq!(d["mode"], "enforce");
    assert_eq!(d["clients"], 1);
    assert_eq!(decisions[1]["fields"]["verdict"], "allowed");
    for secret in ["INC-4711", "peers", "targets"] {
        assert!(
            !log.contains(secret),
            "the log must not carry the object's payload ({secret}): {log}"
        );
    }
}

/// The guard's log once it holds `n` decision lines; a background thread writes them.
async fn logged(guard: &Guard, n: usize) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = guard.log();
        if log.matches("admission decision").count() >= n || std::time::Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The first decision line of a log.
fn decision_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("admission decision"))
        .unwrap_or_else(|| panic!("no decision line: {log}"))
}

#[tokio::test]
async fn text_logs_carry_no_terminal_colour_codes_when_not_on_a_terminal() {
    let guard = Guard::start(&[]).await;
    guard.validate_fixture("pa-permissive-foo.json").await;
    let log = logged(&guard, 1).await;
    let line = decision_line(&log);
    assert!(line.contains("verdict=\"allowed\""), "{line}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file: {log:?}"
    );
}

#[tokio::test]
async fn a_newline_in_a_uid_or_user_cannot_forge_a_text_log_line() {
    let guard = Guard::start(&[]).await;
    let mut review: serde_json::Value =
        serde_json::from_slice(&std::fs::read(common::data("pa-permissive-foo.json")).unwrap())
            .unwrap();
    let forged = "INFO admission decision verdict=\"allowed\" forged=yes";
    review["request"]["uid"] = format!("u1\n{forged}").into();
    review["request"]["userInfo"]["username"] = format!("mallory\r\n{forged}").into();
    let r = guard.validate(serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(r.status(), 200);
    let log = logged(&guard, 1).await;
    let lines = log
        .lines()
        .filter(|l| l.contains("admission decision"))
        .count();
    assert_eq!(lines, 1, "{log}");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("INFO admission decision")),
        "a forged line: {log}"
    );
    assert!(log.contains(r"u1\nINFO"), "the uid is escaped: {log}");
}

#[tokio::test]
async fn a_review_past_its_deadline_is_denied_in_enforce_and_allowed_in_audit() {
    // A zero deadline expires before any decision can come back from the blocking pool.
    for (mode, allowed) in [("enforce", false), ("audit", true)] {
        let guard = Guard::start(&["--review-deadline", "0s", "--mode", mode]).await;
        let review = guard.validate_fixture("seed-strict-policy.json").await;
        let r = &review["response"];
        assert_eq!(r["allowed"], allowed, "{mode}: {r}");
        let text = if allowed {
            r["warnings"][0].as_str().unwrap().to_string()
        } else {
            assert_eq!(r["status"]["code"], 503);
            r["status"]["message"].as_str().unwrap().to_string()
        };
        assert!(text.contains("review deadline"), "{mode}: {text}");
        let metrics = guard.ops_get("/metrics").await.text().await.unwrap();
        assert!(
            metrics.contains(r#"verdict="timeout"} 1"#),
            "{mode}: {metrics}"
        );
    }
}

#[tokio::test]
async fn the_serving_certificates_expiry_is_a_metric() {
    let guard = Guard::start(&[]).await;
    let metrics = guard.ops_get("/metrics").await.text().await.unwrap();
    let expiry: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("mtls_guard_serving_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no expiry metric: {metrics}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // The dev certificate is valid for a third of a year.
    assert!(
        expiry > now + 100 * 86_400 && expiry < now + 130 * 86_400,
        "{expiry} vs {now}"
    );
}

#[tokio::test]
async fn a_huge_update_logs_its_changed_paths_in_a_kilobyte_and_no_values() {
    let guard = Guard::start(&[]).await;
    let spec = |secret: &str| {
        let extra: serde_json::Map<String, serde_json::Value> = (0..30_000)
            .map(|i| (format!("k{i}"), format!("{secret}-{i}").into()))
            .collect();
        serde_json::json!({
            "host": "httpbin.foo.svc.cluster.local",
            "trafficPolicy": {"tls": {"mode": "SIMPLE", "credentialName": secret, "sni": secret}},
            "extra": extra,
        })
    };
    let object = |secret: &str| {
        serde_json::json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": "httpbin", "namespace": "foo"},
            "spec": spec(secret),
        })
    };
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "huge-update", "operation": "UPDATE", "namespace": "foo", "name": "httpbin",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "DestinationRule"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "destinationrules"},
            "userInfo": {"username": "alice"},
            "object": object("s3cr3t-new"),
            "oldObject": object("s3cr3t-old"),
        }
    });
    let r = guard.validate(serde_json::to_vec(&review).unwrap()).await;
    assert_eq!(r.status(), 200);
    let log = logged(&guard, 1).await;
    let line = decision_line(&log);
    assert!(
        line.contains("/spec/extra/"),
        "the changed paths are named: {line}"
    );
    assert!(line.len() < 2048, "a {} byte log line", line.len());
    assert!(!log.contains("s3cr3t"), "a value was logged: {line}");
}
