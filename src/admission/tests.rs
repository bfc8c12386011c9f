use serde_json::{json, Value};

use super::*;
use crate::inventory::{file, Filters};
use crate::model::{namespace::MODE_LABEL, Namespace};

fn seed() -> Index {
    file::demo(Filters::default()).unwrap()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn run(index: &Index, mode: GuardMode, name: &str) -> (Value, Record) {
    let req = parse_review(&fixture(name)).unwrap();
    let out = decide(index, mode, &req);
    let record = out.record.clone();
    (out.into_review_json(), record)
}

#[test]
fn enforce_denies_the_seed_lockdown_with_403_naming_legacy_sleep() {
    let (review, record) = run(&seed(), GuardMode::Enforce, "seed-strict-policy.json");
    let r = &review["response"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    assert_eq!(r["uid"], "7f0c5a53-0001-4c55-9d7e-5c1f1c0a0001");
    assert_eq!(r["allowed"], false);
    assert_eq!(r["status"]["code"], 403);
    let msg = r["status"]["message"].as_str().unwrap();
    assert!(msg.contains("Policy foo/example-httpbin-strict"), "{msg}");
    assert!(msg.contains("foo/httpbin becomes STRICT"), "{msg}");
    assert!(msg.contains("legacy/sleep -> foo/httpbin"), "{msg}");
    assert_eq!(record.decision, Decision::Denied);
    assert_eq!(record.user, "alice@example.com");
}

#[test]
fn audit_allows_with_warnings_and_would_deny_annotation() {
    let (review, record) = run(&seed(), GuardMode::Audit, "seed-strict-policy.json");
    let r = &review["response"];
    assert_eq!(r["allowed"], true);
    assert!(
        r["warnings"][0].as_str().unwrap().contains("legacy/sleep"),
        "{r}"
    );
    let would: Value =
        serde_json::from_str(r["auditAnnotations"]["would-deny"].as_str().unwrap()).unwrap();
    assert_eq!(would[0]["client"], "legacy/sleep");
    assert_eq!(record.decision, Decision::WouldDeny);
}

/// Namespace `name` with the mode label set to `mode`, read as the inventory reads it.
fn labelled(name: &str, mode: &str) -> Namespace {
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some(name.into());
    ns.metadata.labels = Some([(MODE_LABEL.to_string(), mode.to_string())].into());
    Namespace::from_api(&ns).unwrap()
}

#[test]
fn namespace_label_overrides_the_global_mode() {
    let mut index = seed();
    index.upsert_namespace(labelled("foo", "audit"));
    let (review, _) = run(&index, GuardMode::Enforce, "seed-strict-policy.json");
    assert_eq!(review["response"]["allowed"], true, "foo is labelled audit");

    index.upsert_namespace(labelled("foo", "enforce"));
    let (review, _) = run(&index, GuardMode::Audit, "seed-strict-policy.json");
    assert_eq!(
        review["response"]["allowed"], false,
        "foo is labelled enforce"
    );

    index.upsert_namespace(labelled("foo", "Audit"));
    let (review, _) = run(&index, GuardMode::Enforce, "seed-strict-policy.json");
    assert_eq!(
        review["response"]["allowed"], false,
        "no mode: the global one applies"
    );
}

#[test]
fn cluster_scoped_mesh_policy_takes_the_root_namespace_label() {
    let mut index = seed();
    index.upsert_namespace(labelled("istio-system", "audit"));
    let (review, record) = run(&index, GuardMode::Enforce, "seed-mesh-strict-update.json");
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(record.decision, Decision::WouldDeny);
    assert_eq!(
        record.change.as_deref(),
        Some("remove /spec/peers/0/mtls/mode")
    );
}

#[test]
fn the_answer_is_json_whatever_the_text_it_carries() {
    let reason = "INC-1 \"quoted\" back\\slash\nnew line\ttab \u{1} ü → 🚀 </script>";
    let mut review: Value =
        serde_json::from_slice(&fixture("seed-strict-policy-break-glass.json")).unwrap();
    review["request"]["object"]["metadata"]["annotations"][BREAK_GLASS_ANNOTATION] = json!(reason);
    let req = parse_review(&serde_json::to_vec(&review).unwrap()).unwrap();
    let out = decide(&seed(), GuardMode::Enforce, &req);
    let written: Value = serde_json::from_slice(&out.reply_json().unwrap()).unwrap();
    assert_eq!(written, serde_json::to_value(out.reply()).unwrap());
    assert_eq!(
        written["response"]["auditAnnotations"]["break-glass"],
        reason
    );
}

#[test]
fn break_glass_allows_and_records_the_reason() {
    let (review, record) = run(
        &seed(),
        GuardMode::Enforce,
        "seed-strict-policy-break-glass.json",
    );
    let r = &review["response"];
    assert_eq!(r["allowed"], true);
    assert!(r["warnings"][0].as_str().unwrap().contains("INC-4711"));
    assert_eq!(
        r["auditAnnotations"]["break-glass"],
        "INC-4711 legacy decommissioned tonight"
    );
    assert!(r["auditAnnotations"]["would-deny"].is_string());
    assert_eq!(record.decision, Decision::BreakGlass);
}

#[test]
fn break_glass_on_delete_is_read_from_the_old_object() {
    let mut review: Value =
        serde_json::from_slice(&fixture("seed-strict-policy-break-glass.json")).unwrap();
    let mut index = seed();
    index.upsert_rule(crate::model::Rule::from_json(
        crate::model::RuleKind::MeshPolicy,
        &json!({"metadata": {"name": "default", "creationTimestamp": "2020-01-10T09:00:00Z"}, "spec": {"peers": [{"mtls": {}}]}}),
    ).unwrap());
    let permissive = json!({"apiVersion": "authentication.istio.io/v1alpha1", "kind": "Policy",
        "metadata": {"name": "default", "namespace": "foo", "annotations": {"mtls-guard.io/break-glass": "planned"}},
        "spec": {"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}});
    review["request"]["operation"] = json!("DELETE");
    review["request"]["name"] = json!("default");
    review["request"]["object"] = Value::Null;
    review["request"]["oldObject"] = permissive.clone();
    let req = parse_review(&serde_json::to_vec(&review).unwrap()).unwrap();
    let out = decide(&index, GuardMode::Enforce, &req);
    assert_eq!(out.record.decision, Decision::BreakGlass);

    review["request"]["oldObject"]["metadata"]["annotations"] = json!({});
    let req = parse_review(&serde_json::to_vec(&review).unwrap()).unwrap();
    assert_eq!(
        decide(&index, GuardMode::Enforce, &req).record.decision,
        Decision::Denied
    );
}

#[test]
fn relaxing_change_is_allowed_without_warnings() {
    let (review, record) = run(&seed(), GuardMode::Enforce, "pa-permissive-foo.json");
    let sent: Value = serde_json::from_slice(&fixture("pa-permissive-foo.json")).unwrap();
    // The whole answer: the uid echoed, allowed, an empty status, and nothing else.
    assert_eq!(
        review["response"],
        json!({"uid": sent["request"]["uid"], "allowed": true, "status": {}})
    );
    assert_eq!(record.decision, Decision::Allowed);
}

#[test]
fn unreviewed_kind_is_allowed_with_a_warning() {
    let (review, record) = run(&seed(), GuardMode::Enforce, "unreviewed-pod.json");
    assert_eq!(review["response"]["allowed"], true);
    assert!(review["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("does not review"));
    assert_eq!(record.decision, Decision::NotReviewed);
}

/// The break-glass fixture as an UPDATE whose old object carried `old_reason`.
fn glass_update(old_reason: Option<&str>, new_reason: &str) -> Answer {
    let mut review: Value =
        serde_json::from_slice(&fixture("seed-strict-policy-break-glass.json")).unwrap();
    let mut old = review["request"]["object"].clone();
    old["spec"] =
        json!({"targets": [{"name": "httpbin"}], "peers": [{"mtls": {"mode": "PERMISSIVE"}}]});
    old["metadata"]["annotations"] = match old_reason {
        Some(r) => json!({BREAK_GLASS_ANNOTATION: r}),
        None => json!({}),
    };
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = old;
    review["request"]["object"]["metadata"]["annotations"] =
        json!({BREAK_GLASS_ANNOTATION: new_reason});
    let req = parse_review(&serde_json::to_vec(&review).unwrap()).unwrap();
    decide(&seed(), GuardMode::Enforce, &req)
}

#[test]
fn break_glass_left_on_an_object_does_not_wave_a_later_update_through() {
    let out = glass_update(Some("INC-1 long ago"), "INC-1 long ago");
    assert_eq!(out.record.decision, Decision::Denied);
    let msg = out.response.result.message.clone();
    assert!(
        msg.contains("Break-glass annotation ignored: it was already on the object"),
        "{msg}"
    );
    assert_eq!(
        glass_update(Some("INC-1 long ago"), "INC-2 tonight")
            .record
            .decision,
        Decision::BreakGlass
    );
    assert_eq!(
        glass_update(None, "INC-2 tonight").record.decision,
        Decision::BreakGlass
    );
}

#[test]
fn break_glass_needs_a_reason() {
    let out = glass_update(None, "  ");
    assert_eq!(out.record.decision, Decision::Denied);
    assert!(out.response.result.message.contains("it needs a reason"));
}

#[test]
fn audit_mode_allows_an_unreadable_object_with_a_warning() {
    let (review, record) = run(&seed(), GuardMode::Audit, "pa-invalid-mode.json");
    assert_eq!(review["response"]["allowed"], true);
    let warning = review["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("STRICTEST") && warning.contains("audit mode"),
        "{warning}"
    );
    assert_eq!(record.decision, Decision::Invalid);
}

#[test]
fn unreadable_object_is_denied_with_a_clear_reason() {
    let (review, record) = run(&seed(), GuardMode::Enforce, "pa-invalid-mode.json");
    assert_eq!(review["response"]["allowed"], false);
    assert_eq!(review["response"]["status"]["code"], 400);
    assert!(review["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("STRICTEST"));
    assert_eq!(record.decision, Decision::Invalid);
}

#[test]
fn a_spec_is_read_from_the_review_text_as_from_a_manifest_and_its_error_says_no_position() {
    let review: Value = serde_json::from_slice(&fixture("pa-invalid-mode.json")).unwrap();
    let with_spec = |spec: Value| {
        let mut review = review.clone();
        review["request"]["object"]["spec"] = spec;
        review
    };
    let decide_spec = |spec: Value| {
        let req = parse_review(&serde_json::to_vec(&with_spec(spec)).unwrap()).unwrap();
        decide(&seed(), GuardMode::Enforce, &req)
    };

    let unreadable = json!({"selector": {"matchLabels": {"app": "httpbin"}}, "mtls": 5});
    let object = &with_spec(unreadable.clone())["request"]["object"];
    let manifest = crate::model::Rule::from_json(RuleKind::PeerAuthentication, object);
    let expected = manifest.expect_err("a number is no mtls").to_string();
    let out = decide_spec(unreadable);
    assert_eq!(out.record.decision, Decision::Invalid);
    let message = &out.response.result.message;
    assert!(message.ends_with(&expected), "{message} / {expected}");
    assert!(!message.contains(" at line "), "{message}");

    let out = decide_spec(json!({"mtls": {"mode": "STRICT"}}));
    assert_eq!(
        out.record.decision,
        Decision::Denied,
        "a namespace lock-down"
    );
    let out = decide_spec(Value::Null);
    assert_eq!(
        out.record.decision,
        Decision::Allowed,
        "no spec: nothing changes"
    );
}

#[test]
fn an_update_whose_spec_is_too_deep_for_a_tree_gets_no_change_summary_rather_than_a_wrong_one() {
    let mut review: Value =
        serde_json::from_slice(&fixture("seed-mesh-strict-update.json")).unwrap();
    review["request"]["object"]["spec"]["unknown"] = json!("NESTED");
    let nested = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let body = review.to_string().replace(r#""NESTED""#, &nested);
    let out = decide(
        &seed(),
        GuardMode::Enforce,
        &parse_review(body.as_bytes()).unwrap(),
    );
    assert_ne!(out.record.decision, Decision::Invalid, "the rule reads");
    assert_eq!(out.record.change, None);
}

#[test]
fn parse_errors() {
    assert!(matches!(
        parse_review(b"{"),
        Err(AdmissionError::NotAReview(_))
    ));
    let mut untyped: Value = serde_json::from_slice(&fixture("seed-strict-policy.json")).unwrap();
    untyped.as_object_mut().unwrap().remove("apiVersion");
    assert!(matches!(
        parse_review(&serde_json::to_vec(&untyped).unwrap()),
        Err(AdmissionError::NotAReview(why)) if why.contains("apiVersion")
    ));
    let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": null});
    assert!(matches!(
        parse_review(&serde_json::to_vec(&v1beta1).unwrap()),
        Err(AdmissionError::ApiVersion(_))
    ));
    let mut empty_uid: Value = serde_json::from_slice(&fixture("seed-strict-policy.json")).unwrap();
    empty_uid["request"]["uid"] = json!("");
    assert_eq!(
        parse_review(&serde_json::to_vec(&empty_uid).unwrap()).unwrap_err(),
        AdmissionError::EmptyUid
    );
    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    assert_eq!(
        parse_review(&serde_json::to_vec(&no_request).unwrap()).unwrap_err(),
        AdmissionError::NoRequest
    );
}

#[test]
fn unsynced_denies_by_default_and_allows_when_configured() {
    let req = parse_review(&fixture("seed-strict-policy.json")).unwrap();
    let out = unsynced(
        &req,
        GuardMode::Enforce,
        false,
        "inventory not synced yet: Pod",
    )
    .into_review_json();
    assert_eq!(out["response"]["allowed"], false);
    assert_eq!(out["response"]["status"]["code"], 503);
    assert!(out["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .contains("not synced yet: Pod"));
    let out = unsynced(
        &req,
        GuardMode::Enforce,
        true,
        "inventory not synced yet: Pod",
    )
    .into_review_json();
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"]["warnings"][0]
        .as_str()
        .unwrap()
        .contains("allowed without review"));
}

#[test]
fn traffic_only_warnings_allow_and_unavailable_traffic_is_said() {
    use crate::evidence::{Evidence, EvidenceMode, PlaintextEdges};
    let req = parse_review(&fixture("seed-strict-policy.json")).unwrap();
    let current = Evidence {
        mode: EvidenceMode::Traffic,
        window: std::time::Duration::from_secs(3600),
        edges: Some(std::sync::Arc::new(PlaintextEdges::default())),
        stale_reason: None,
    };
    let out = decide_with(
        &seed(),
        &current,
        GuardMode::Enforce,
        &req,
        &Authorization::NotChecked,
    )
    .into_review_json();
    assert_eq!(out["response"]["allowed"], true);
    assert!(
        out["response"]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("no traffic seen"),
        "{out}"
    );
    let down = Evidence {
        mode: EvidenceMode::Both,
        edges: None,
        stale_reason: Some("prometheus: connection refused".into()),
        ..current
    };
    let out = decide_with(
        &seed(),
        &down,
        GuardMode::Enforce,
        &req,
        &Authorization::NotChecked,
    )
    .into_review_json();
    let msg = out["response"]["status"]["message"].as_str().unwrap();
    assert!(
        msg.contains("Traffic evidence unavailable (prometheus: connection refused)"),
        "{msg}"
    );
}

/// The seed inventory's decision, with what the API server said of the needed permission.
fn decide_as(mode: GuardMode, req: &Request, auth: &Authorization) -> Answer {
    decide_with(&seed(), &Evidence::inventory_only(), mode, req, auth)
}

fn glass_request() -> Request {
    parse_review(&fixture("seed-strict-policy-break-glass.json")).unwrap()
}

#[test]
fn break_glass_needs_use_on_breakglass_in_the_objects_namespace() {
    let req = glass_request();
    assert_eq!(
        permission_needed(&req),
        Some(Permission {
            verb: "use",
            resource: "breakglass",
            namespace: Some("foo".into()),
            name: "example-httpbin-strict".into(),
        })
    );
    let plain = parse_review(&fixture("seed-strict-policy.json")).unwrap();
    assert_eq!(permission_needed(&plain), None);
}

#[test]
fn break_glass_refused_by_the_api_server_is_denied_with_its_reason() {
    let req = glass_request();
    let refused = Authorization::Refused("alice may not use breakglass".into());
    let out = decide_as(GuardMode::Enforce, &req, &refused);
    assert_eq!(out.record.decision, Decision::Denied);
    assert!(out
        .response
        .result
        .message
        .contains("alice may not use breakglass"));
    let allowed = decide_as(GuardMode::Enforce, &req, &Authorization::Allowed);
    assert_eq!(allowed.record.decision, Decision::BreakGlass);
    let warnings = allowed.response.warnings.unwrap();
    assert!(!warnings[0].contains("not checked"), "{warnings:?}");
}

#[test]
fn offline_break_glass_says_who_may_use_it_was_not_checked() {
    let out = decide(&seed(), GuardMode::Enforce, &glass_request());
    assert_eq!(out.record.decision, Decision::BreakGlass);
    let warnings = out.response.warnings.unwrap();
    assert!(warnings[0].contains("was not checked"), "{warnings:?}");
}

/// A review of an UPDATE of namespace `legacy` whose mode label goes from `old` to `new`.
pub(crate) fn namespace_review(old: Option<&str>, new: Option<&str>) -> Value {
    let labels = |mode: Option<&str>| match mode {
        Some(m) => json!({MODE_LABEL: m}),
        None => json!({}),
    };
    let object = |mode| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "legacy", "labels": labels(mode)}});
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "ns-1", "kind": {"group": "", "version": "v1", "kind": "Namespace"},
        "resource": {"group": "", "version": "v1", "resource": "namespaces"},
        "name": "legacy", "operation": "UPDATE", "userInfo": {"username": "bob"},
        "object": object(new), "oldObject": object(old)}})
}

fn namespace_update(old: Option<&str>, new: Option<&str>) -> Request {
    parse_review(&serde_json::to_vec(&namespace_review(old, new)).unwrap()).unwrap()
}

#[test]
fn setting_a_namespaces_mode_label_needs_set_mode() {
    let req = namespace_update(None, Some("audit"));
    let needed = permission_needed(&req).unwrap();
    assert_eq!((needed.verb, needed.resource), ("set-mode", "namespaces"));
    assert_eq!(needed.namespace.as_deref(), Some("legacy"));
    let refused = Authorization::Refused("bob may not set-mode".into());
    let out = decide_as(GuardMode::Enforce, &req, &refused);
    assert_eq!(out.record.decision, Decision::Denied);
    assert!(out.response.result.message.contains("bob may not set-mode"));
    let out = decide_as(GuardMode::Audit, &req, &refused);
    assert_eq!(out.record.decision, Decision::WouldDeny);
    assert!(out.response.allowed);
    let ok = decide_as(GuardMode::Enforce, &req, &Authorization::Allowed);
    assert!(ok.response.allowed);
    for (old, new) in [(Some("audit"), None), (Some("audit"), Some("enforce"))] {
        assert!(
            permission_needed(&namespace_update(old, new)).is_some(),
            "{old:?} -> {new:?}"
        );
    }
    let unchanged = namespace_update(Some("audit"), Some("audit"));
    assert_eq!(permission_needed(&unchanged), None);
    let out = decide_as(GuardMode::Enforce, &unchanged, &refused);
    assert!(out.response.allowed);
}

#[test]
fn audit_mode_allows_while_unsynced() {
    let req = parse_review(&fixture("seed-strict-policy.json")).unwrap();
    let out = unsynced(&req, GuardMode::Audit, false, "inventory stale: Pod");
    assert!(out.response.allowed);
    assert!(out.response.warnings.unwrap()[0].contains("inventory stale: Pod"));
}

#[test]
fn a_namespace_that_opted_in_to_enforce_stays_governed_under_audit() {
    let refused = Authorization::Refused("bob may not set-mode".into());
    let drop_enforce = namespace_update(Some("enforce"), None);
    let out = decide_as(GuardMode::Audit, &drop_enforce, &refused);
    assert_eq!(out.record.decision, Decision::Denied);
    let to_audit = namespace_update(None, Some("audit"));
    let out = decide_as(GuardMode::Audit, &to_audit, &refused);
    assert_eq!(out.record.decision, Decision::WouldDeny);
}

/// A review of ConfigMap `name` in istio-system, from mesh `old` to mesh `new`.
fn configmap_review(name: &str, old: Option<&str>, new: Option<&str>) -> Request {
    let cm = |mesh: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "istio-system"}, "data": {"mesh": mesh}})
    };
    let operation = match (old, new) {
        (None, _) => "CREATE",
        (_, None) => "DELETE",
        _ => "UPDATE",
    };
    let mut req = json!({"uid": "u-cm", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
        "resource": {"group": "", "version": "v1", "resource": "configmaps"},
        "name": name, "namespace": "istio-system", "operation": operation,
        "userInfo": {"username": "alice"}});
    if let Some(o) = old {
        req["oldObject"] = cm(o);
    }
    if let Some(n) = new {
        req["object"] = cm(n);
    }
    let review =
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req});
    parse_review(review.to_string().as_bytes()).unwrap()
}

#[test]
fn a_mesh_config_moving_the_root_to_an_ignored_namespace_is_denied() {
    let req = configmap_review(
        "istio",
        Some("rootNamespace: istio-system"),
        Some("rootNamespace: kube-system"),
    );
    let out = decide(&seed(), GuardMode::Enforce, &req);
    assert_eq!(out.record.decision, Decision::Denied);
    let msg = out.response.result.message.clone();
    assert!(msg.contains("ConfigMap istio-system/istio"), "{msg}");
    assert!(msg.contains("rootNamespace becomes kube-system"), "{msg}");
    assert_eq!(out.record.change.as_deref(), Some("mesh.rootNamespace"));
    let audit = decide(&seed(), GuardMode::Audit, &req);
    let would = &audit.response.audit_annotations["would-deny"];
    assert!(
        would.contains("\"ignored-root-namespace\":\"kube-system\""),
        "{would}"
    );
}

#[test]
fn a_mesh_config_that_is_not_yaml_is_a_bad_request_and_delete_means_the_defaults() {
    let bad = configmap_review(
        "istio",
        Some("enableAutoMtls: false"),
        Some("enableAutoMtls: [oops"),
    );
    let out = decide(&seed(), GuardMode::Enforce, &bad);
    assert_eq!(out.record.decision, Decision::Invalid);
    assert_eq!(out.response.result.code, 400);
    assert!(out
        .response
        .result
        .message
        .contains("ConfigMap istio-system/istio"));
    let fixed = configmap_review(
        "istio",
        Some("enableAutoMtls: [oops"),
        Some("enableAutoMtls: false"),
    );
    assert_eq!(
        decide(&seed(), GuardMode::Enforce, &fixed).record.decision,
        Decision::Allowed
    );
    // The seed runs with auto mTLS off; deleting the ConfigMap turns it on, which relaxes.
    let delete = configmap_review("istio", Some("enableAutoMtls: false"), None);
    let out = decide(&seed(), GuardMode::Enforce, &delete);
    assert_eq!(out.record.decision, Decision::Allowed);
    assert_eq!(out.record.change.as_deref(), Some("mesh.enableAutoMtls"));
}

#[test]
fn other_configmaps_are_allowed_silently_without_the_inventory() {
    let req = configmap_review("istio-ca-root-cert", None, Some("anything"));
    let out = unjudged(&Index::default(), GuardMode::Enforce, &req).expect("not judged");
    assert!(out.response.allowed);
    assert_eq!(out.response.warnings, None);
    assert_eq!(out.record.decision, Decision::NotReviewed);
    let mesh = configmap_review("istio", None, Some("enableAutoMtls: true"));
    assert!(unjudged(&Index::default(), GuardMode::Enforce, &mesh).is_none());
}

#[test]
fn a_namespace_label_change_is_judged_not_waved_through() {
    let req = namespace_update(None, Some("audit"));
    assert!(unjudged(&Index::default(), GuardMode::Enforce, &req).is_none());
}
