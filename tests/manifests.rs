//! What the install promises: least privilege, a hardened pod, probes that need no
//! certificate, a v1-only webhook for the reviewed kinds, and one source for Helm and kubectl
//! (that the API server accepts it is `e2e_install`'s job).

mod cluster;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn parse_all(text: &str) -> Vec<Value> {
    mtls_guard::yaml::documents(text)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn objects() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("manifests/base/install.yaml")).unwrap();
    parse_all(&text)
}

fn find(kind: &str) -> Vec<Value> {
    objects()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn named<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no object {name}"))
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// (group/resource, verbs, resourceNames) of every rule of every Role and ClusterRole.
fn grants() -> BTreeSet<(String, BTreeSet<String>, BTreeSet<String>)> {
    let mut out = BTreeSet::new();
    for role in find("ClusterRole").into_iter().chain(find("Role")) {
        for rule in role["rules"].as_array().unwrap() {
            let names = match rule.get("resourceNames") {
                Some(n) => strings(n),
                None => BTreeSet::new(),
            };
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    out.insert((format!("{g}/{r}"), strings(&rule["verbs"]), names.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn roles_grant_reads_of_the_inventory_and_writes_of_the_own_certificate_only() {
    let read = set(&["get", "list", "watch"]);
    let none = BTreeSet::new();
    let mut want = BTreeSet::new();
    for kind in [
        "/pods",
        "/namespaces",
        "/services",
        "security.istio.io/peerauthentications",
        "authentication.istio.io/policies",
        "authentication.istio.io/meshpolicies",
        "networking.istio.io/destinationrules",
    ] {
        want.insert((kind.to_string(), read.clone(), none.clone()));
    }
    for kind in [
        "admissionregistration.k8s.io/validatingwebhookconfigurations",
        "admissionregistration.k8s.io/mutatingwebhookconfigurations",
        "apiregistration.k8s.io/apiservices",
        "apiextensions.k8s.io/customresourcedefinitions",
    ] {
        want.insert((kind.to_string(), read.clone(), none.clone()));
    }
    want.insert(("/configmaps".into(), read, set(&["istio"])));
    want.insert((
        "/secrets".into(),
        set(&["get", "update"]),
        set(&["mtls-guard-tls"]),
    ));
    // Create cannot be limited by name; the manifest says so.
    want.insert(("/secrets".into(), set(&["create"]), none.clone()));
    // Asking the API server who may use break-glass or set a namespace's mode.
    want.insert((
        "authorization.k8s.io/subjectaccessreviews".into(),
        set(&["create"]),
        none.clone(),
    ));
    // The two ClusterRoles shipped for people, bound by cluster admins.
    want.insert((
        "mtls-guard.io/breakglass".into(),
        set(&["use"]),
        none.clone(),
    ));
    want.insert(("mtls-guard.io/namespaces".into(), set(&["set-mode"]), none));
    want.insert((
        "admissionregistration.k8s.io/validatingwebhookconfigurations".into(),
        set(&["get", "patch"]),
        set(&["mtls-guard"]),
    ));
    assert_eq!(grants(), want);
    let roles = find("Role");
    assert_eq!(
        named(&roles, "mtls-guard-mesh-config")["metadata"]["namespace"],
        "istio-system"
    );
    assert_eq!(
        named(&roles, "mtls-guard-cert-secret")["metadata"]["namespace"],
        "mtls-guard"
    );
}

#[test]
fn deployment_is_hardened_and_probed_without_certificates() {
    let d = &find("Deployment")[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    let spread = &pod["topologySpreadConstraints"][0];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert_eq!(spread["whenUnsatisfiable"], "DoNotSchedule");
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path);
        assert_eq!(get["port"], "metrics", "{probe} on the plain-HTTP port");
        assert_eq!(get["scheme"], "HTTP");
        assert!(
            c[probe]["timeoutSeconds"].is_u64(),
            "{probe} timeoutSeconds"
        );
    }
    let ports: Vec<_> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].clone())
        .collect();
    assert_eq!(ports, [8443, 9090]);
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    let args = strings(&c["args"]);
    for arg in [
        "--cert-secret=mtls-guard-tls",
        "--webhook-config=mtls-guard",
        "--service-name=mtls-guard",
    ] {
        assert!(args.contains(arg), "{arg} in {args:?}");
    }
    assert_eq!(c["env"][0]["name"], "MTLS_GUARD_NAMESPACE");
    assert_eq!(find("PodDisruptionBudget")[0]["spec"]["minAvailable"], 1);
}

#[test]
fn network_policy_admits_only_the_webhook_and_metrics_ports() {
    let np = &find("NetworkPolicy")[0];
    assert_eq!(strings(&np["spec"]["policyTypes"]), set(&["Ingress"]));
    let ports: Vec<_> = np["spec"]["ingress"][0]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].clone())
        .collect();
    assert_eq!(ports, [8443, 9090]);
    assert_eq!(np["spec"]["ingress"].as_array().unwrap().len(), 1);
}

#[test]
fn namespace_mode_labels_are_reviewed_only_where_a_namespace_carries_one() {
    let w = &find("ValidatingWebhookConfiguration")[0]["webhooks"][1];
    assert_eq!(w["name"], "namespaces.mtls-guard.io");
    let selector = &w["objectSelector"]["matchExpressions"][0];
    assert_eq!(selector["key"], "mtls-guard.io/mode");
    assert_eq!(selector["operator"], "Exists");
    let rule = &w["rules"][0];
    assert_eq!(strings(&rule["resources"]), set(&["namespaces"]));
    assert_eq!(strings(&rule["operations"]), set(&["CREATE", "UPDATE"]));
    assert_eq!(w["clientConfig"]["service"]["path"], "/validate");
}

#[test]
fn the_mesh_config_rule_sees_only_the_istio_namespace_and_never_blocks_istiod() {
    let w = &find("ValidatingWebhookConfiguration")[0]["webhooks"][2];
    assert_eq!(w["name"], "meshconfig.mtls-guard.io");
    assert_eq!(w["failurePolicy"], "Ignore");
    assert_eq!(
        w["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "istio-system"
    );
    let rule = &w["rules"][0];
    assert_eq!(strings(&rule["resources"]), set(&["configmaps"]));
    assert_eq!(
        strings(&rule["operations"]),
        set(&["CREATE", "UPDATE", "DELETE"])
    );
}

#[test]
fn webhook_has_no_ca_bundle_for_the_guard_injects_it() {
    let w = &find("ValidatingWebhookConfiguration")[0];
    assert_eq!(w["metadata"]["name"], "mtls-guard");
    for webhook in w["webhooks"].as_array().unwrap() {
        assert!(webhook["clientConfig"].get("caBundle").is_none());
    }
    assert_eq!(
        w["webhooks"][0]["clientConfig"]["service"]["name"],
        "mtls-guard"
    );
    assert_eq!(w["webhooks"][0]["clientConfig"]["service"]["port"], 443);
}

fn helm() -> PathBuf {
    cluster::binaries().join("helm")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn manifests_are_the_charts_default_render() {
    let dir = cluster::binaries();
    run(Command::new("bash")
        .arg(root().join("scripts/render-manifests.sh"))
        .arg("--check")
        .env("KUBEBUILDER_ASSETS", dir));
}

#[test]
fn chart_lints_and_renders_each_certificate_mode() {
    let chart = root().join("charts/mtls-guard");
    for (mode, extra) in [
        ("self", vec![]),
        ("cert-manager", vec![]),
        ("secret", vec!["--set", "certificates.caBundle=Zm9v"]),
    ] {
        let mode_arg = format!("certificates.mode={mode}");
        run(Command::new(helm())
            .arg("lint")
            .arg("--strict")
            .arg(&chart)
            .args(["--set", &mode_arg])
            .args(&extra));
        let text = run(Command::new(helm())
            .args(["template", "mtls-guard", "--namespace", "mtls-guard"])
            .arg(&chart)
            .args(["--set", &mode_arg])
            .args(&extra));
        let objects = parse_all(&text);
        let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        let webhook = objects
            .iter()
            .find(|o| o["kind"] == "ValidatingWebhookConfiguration")
            .unwrap();
        let client = &webhook["webhooks"][0]["clientConfig"];
        let annotations = &webhook["metadata"]["annotations"];
        match mode {
            "self" => assert!(args.contains("--cert-secret=mtls-guard-tls"), "{args:?}"),
            "cert-manager" => {
                assert!(args.contains("--tls-cert=/tls/tls.crt"), "{args:?}");
                assert_eq!(
                    annotations["cert-manager.io/inject-ca-from"],
                    "mtls-guard/mtls-guard-tls"
                );
                assert!(objects.iter().any(|o| o["kind"] == "Certificate"));
            }
            _ => {
                assert!(args.contains("--tls-cert=/tls/tls.crt"), "{args:?}");
                assert_eq!(client["caBundle"], "Zm9v");
            }
        }
        if mode != "self" {
            assert!(
                !args.iter().any(|a| a.starts_with("--cert-secret")),
                "{args:?}"
            );
            assert!(!objects
                .iter()
                .any(|o| o["metadata"]["name"] == "mtls-guard-cert-secret"));
        }
    }
}

#[test]
fn respecting_network_policies_adds_the_flag_and_the_read_permission() {
    let chart = root().join("charts/mtls-guard");
    let render = |extra: &[&str]| {
        parse_all(&run(Command::new(helm())
            .args(["template", "mtls-guard", "--namespace", "mtls-guard"])
            .arg(&chart)
            .args(extra)))
    };
    for (on, extra) in [
        (false, &[][..]),
        (true, &["--set", "respectNetworkPolicies=true"][..]),
    ] {
        let objects = render(extra);
        let deployment = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
        assert_eq!(args.contains("--respect-network-policies"), on, "{args:?}");
        let role = objects.iter().find(|o| o["kind"] == "ClusterRole").unwrap();
        let reads = role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| strings(&r["resources"]).contains("networkpolicies"));
        assert_eq!(reads, on);
    }
}

#[test]
fn kustomize_variants_render_and_switch_what_they_say() {
    let kubectl = cluster::binaries().join("kubectl");
    let render = |dir: &str| {
        parse_all(&run(Command::new(&kubectl)
            .arg("kustomize")
            .arg(root().join(dir))))
    };
    let base = render("manifests");
    assert!(base
        .iter()
        .any(|o| o["kind"] == "Namespace"
            && o["metadata"]["labels"]["istio-injection"] == "disabled"));
    let image = |objects: &[Value]| {
        let d = objects.iter().find(|o| o["kind"] == "Deployment").unwrap();
        d["spec"]["template"]["spec"]["containers"][0].clone()
    };
    assert_eq!(image(&base)["image"], "mtls-guard:0.1.0");
    let audit = image(&render("manifests/audit"));
    let env = audit["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "MTLS_GUARD_MODE" && e["value"] == "audit"),
        "{env:?}"
    );
    let cm = render("manifests/cert-manager");
    assert!(cm.iter().any(|o| o["kind"] == "Certificate"));
    assert!(strings(&image(&cm)["args"]).contains("--tls-cert=/tls/tls.crt"));
}

#[test]
fn webhook_reviews_the_design_kinds_with_v1_only() {
    let w = &find("ValidatingWebhookConfiguration")[0]["webhooks"][0];
    assert_eq!(
        strings(&w["admissionReviewVersions"]),
        ["v1".to_string()].into()
    );
    assert_eq!(w["sideEffects"], "None");
    assert_eq!(w["timeoutSeconds"], 5);
    assert_eq!(w["clientConfig"]["service"]["path"], "/validate");
    let excluded = strings(&w["namespaceSelector"]["matchExpressions"][0]["values"]);
    assert!(excluded.contains("kube-system") && excluded.contains("mtls-guard"));
    let mut reviewed = BTreeSet::new();
    for rule in w["rules"].as_array().unwrap() {
        assert_eq!(
            strings(&rule["operations"]),
            ["CREATE", "UPDATE", "DELETE"].map(String::from).into()
        );
        for g in strings(&rule["apiGroups"]) {
            for v in strings(&rule["apiVersions"]) {
                for r in strings(&rule["resources"]) {
                    reviewed.insert(format!("{g}/{v}/{r}"));
                }
            }
        }
    }
    let want: BTreeSet<String> = [
        "security.istio.io/v1beta1/peerauthentications",
        "security.istio.io/v1/peerauthentications",
        "authentication.istio.io/v1alpha1/policies",
        "authentication.istio.io/v1alpha1/meshpolicies",
        "networking.istio.io/v1alpha3/destinationrules",
        "networking.istio.io/v1beta1/destinationrules",
        "networking.istio.io/v1/destinationrules",
    ]
    .map(String::from)
    .into();
    assert_eq!(reviewed, want);
}
