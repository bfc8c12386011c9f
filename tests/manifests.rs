//! What the manifests promise: least privilege, a hardened pod, a v1-only webhook for the
//! reviewed kinds. (That the API server accepts them is the cluster suite's job.)

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

fn objects() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            out.push(Value::deserialize(doc).unwrap());
        }
    }
    out
}

fn find(kind: &str) -> Vec<Value> {
    objects()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .collect()
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn roles_only_read_exactly_the_inventory_kinds() {
    let mut granted = BTreeSet::new();
    for role in find("ClusterRole").into_iter().chain(find("Role")) {
        for rule in role["rules"].as_array().unwrap() {
            let verbs = strings(&rule["verbs"]);
            assert_eq!(
                verbs,
                ["get", "list", "watch"].map(String::from).into(),
                "{rule}"
            );
            for g in strings(&rule["apiGroups"]) {
                for r in strings(&rule["resources"]) {
                    granted.insert(format!("{g}/{r}"));
                }
            }
        }
    }
    let want: BTreeSet<String> = [
        "/pods",
        "/namespaces",
        "/services",
        "/configmaps",
        "security.istio.io/peerauthentications",
        "authentication.istio.io/policies",
        "authentication.istio.io/meshpolicies",
        "networking.istio.io/destinationrules",
    ]
    .map(String::from)
    .into();
    assert_eq!(granted, want);
    let cm_role = &find("Role")[0];
    assert_eq!(
        cm_role["rules"][0]["resourceNames"][0], "istio",
        "only the mesh config ConfigMap"
    );
}

#[test]
fn deployment_is_hardened() {
    let d = &find("Deployment")[0];
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(find("PodDisruptionBudget")[0]["spec"]["minAvailable"], 1);
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
