//! The whole product on a real kube-apiserver: `mtls-guard serve` watches the cluster under
//! the ServiceAccount and ClusterRole from `manifests/`, is registered by the
//! ValidatingWebhookConfiguration from `manifests/`, and the seed is replayed with kubectl.

mod cluster;
mod common;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use cluster::{demo_objects, ControlPlane, STRICT_POLICY};
use serde_json::json;

const WATCH: Duration = Duration::from_secs(20);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The guard process, reading the cluster with the ServiceAccount token only.
struct Guard {
    child: Child,
    ops_port: u16,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guard {
    fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.ops_port);
        self.rt.block_on(async {
            match self.client.get(url).send().await {
                Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                Err(_) => (0, String::new()),
            }
        })
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

fn start_guard(cp: &ControlPlane) -> Guard {
    start_guard_with(cp, &[])
}

fn start_guard_with(cp: &ControlPlane, extra: &[&str]) -> Guard {
    let (child, port, ops_port, ca_pem) = cp.start_guard_with(common::BIN, extra);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let guard = Guard {
        child,
        ops_port,
        client,
        rt,
    };
    cp.wait_until(
        "the guard to sync the cluster inventory (/readyz)",
        Duration::from_secs(60),
        || guard.get("/readyz").0 == 200,
    );
    cp.register_webhook_url(port, &ca_pem);
    guard
}

fn apply(cp: &ControlPlane, yaml: &str) -> Output {
    cp.kubectl_stdin(&["apply", "-f", "-"], yaml)
}

fn assert_allowed(out: &Output, step: &str) {
    assert!(
        out.status.success(),
        "{step}: expected allowed, got: {}",
        text(out)
    );
}

fn assert_denied(out: &Output, step: &str, names: &[&str]) {
    let t = text(out);
    assert!(!out.status.success(), "{step}: expected denied, got: {t}");
    assert!(t.contains("denied the request"), "{step}: {t}");
    for n in names {
        assert!(t.contains(n), "{step}: message should name {n}: {t}");
    }
}

fn sleep_pod(ns: &str, name: &str, sidecar: bool) -> String {
    let mut containers = vec![json!({"name": "sleep", "image": "curlimages/curl"})];
    let mut labels = json!({"app": "sleep"});
    if sidecar {
        containers.push(json!({"name": "istio-proxy", "image": "istio/proxyv2"}));
        labels["security.istio.io/tlsMode"] = json!("istio");
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
           "spec": {"containers": containers}}).to_string()
}

#[test]
fn seed_replayed_with_kubectl_against_a_real_api_server() {
    let cp = ControlPlane::start();

    cp.install_guard_prerequisites();
    let manifests = root().join("manifests");
    let dry = cp.kubectl(&[
        "apply",
        "--dry-run=server",
        "-k",
        manifests.to_str().unwrap(),
    ]);
    assert!(
        dry.status.success(),
        "manifests/ must pass server-side dry run: {}",
        text(&dry)
    );

    // The seed's cluster before any policy: namespaces, mesh config, pods, services.
    let out = apply(&cp, &demo_objects(&["Namespace", "ConfigMap"]));
    assert_allowed(&out, "namespaces and mesh config");
    let out = apply(&cp, &demo_objects(&["Service", "Pod"]));
    assert_allowed(&out, "seed pods and services");

    let guard = start_guard(&cp);
    assert_eq!(
        guard.metric("mtls_guard_inventory_pods"),
        Some(5.0),
        "the guard sees the seed's five pods"
    );

    let out = apply(&cp, &demo_objects(&["MeshPolicy"]));
    assert_allowed(&out, "PERMISSIVE MeshPolicy");
    let out = apply(&cp, &demo_objects(&["DestinationRule"]));
    assert_allowed(&out, "ISTIO_MUTUAL DestinationRule");

    let out = apply(&cp, STRICT_POLICY);
    assert_denied(
        &out,
        "STRICT Policy on httpbin",
        &["legacy/sleep", "foo/httpbin"],
    );
    check_and_report_read_the_cluster(&cp);

    // legacy/sleep gets its sidecar: wait until the guard's watch has seen it.
    cp.ok(&[
        "delete",
        "pod",
        "-n",
        "legacy",
        "--all",
        "--grace-period=0",
        "--force",
    ]);
    let out = apply(&cp, &sleep_pod("legacy", "sleep-injected", true));
    assert_allowed(&out, "legacy sleep with a sidecar");
    cp.wait_until("the guard to allow the lock-down", WATCH, || {
        cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], STRICT_POLICY)
            .status
            .success()
    });
    assert_allowed(
        &apply(&cp, STRICT_POLICY),
        "STRICT Policy once legacy is meshed",
    );

    // Mesh-wide STRICT while sidecars still send plaintext (the seed's era: auto mTLS off,
    // and no DestinationRule for bar/httpbin).
    let mesh_strict = r#"{"apiVersion":"authentication.istio.io/v1alpha1","kind":"MeshPolicy","metadata":{"name":"default"},"spec":{"peers":[{"mtls":{}}]}}"#;
    assert_denied(
        &apply(&cp, mesh_strict),
        "MeshPolicy mtls: {}",
        &["bar/httpbin", "auto mTLS is off"],
    );

    // A PeerAuthentication v1beta1 lock-down, denied; then audited once bar is labelled.
    let pa = r#"{"apiVersion":"security.istio.io/v1beta1","kind":"PeerAuthentication","metadata":{"name":"httpbin","namespace":"bar"},"spec":{"selector":{"matchLabels":{"app":"httpbin"}},"mtls":{"mode":"STRICT"}}}"#;
    assert_denied(
        &apply(&cp, pa),
        "PeerAuthentication v1beta1 STRICT",
        &["bar/httpbin", "foo/sleep"],
    );
    cp.ok(&["label", "namespace", "bar", "mtls-guard.io/mode=audit"]);
    cp.wait_until("the guard to see bar's audit label", WATCH, || {
        cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], pa)
            .status
            .success()
    });
    let out = apply(&cp, pa);
    assert_allowed(&out, "audit mode");
    assert!(
        text(&out).contains("Warning: mtls-guard would deny"),
        "{}",
        text(&out)
    );
    cp.ok(&["get", "peerauthentication", "-n", "bar", "httpbin"]);

    // Break-glass puts a STRICT mesh in place; deleting foo's PERMISSIVE override is then a lock-down.
    let override_ = r#"{"apiVersion":"authentication.istio.io/v1alpha1","kind":"Policy","metadata":{"name":"default","namespace":"legacy"},"spec":{"peers":[{"mtls":{"mode":"PERMISSIVE"}}]}}"#;
    assert_allowed(
        &apply(&cp, override_),
        "PERMISSIVE namespace override (relaxing)",
    );
    let glass = r#"{"apiVersion":"authentication.istio.io/v1alpha1","kind":"MeshPolicy","metadata":{"name":"default","annotations":{"mtls-guard.io/break-glass":"CHG-1 approved"}},"spec":{"peers":[{"mtls":{}}]}}"#;
    let out = apply(&cp, glass);
    assert_allowed(&out, "break-glass MeshPolicy STRICT");
    assert!(text(&out).contains("break-glass"), "{}", text(&out));
    cp.wait_until("the guard to see the STRICT mesh", WATCH, || {
        !cp.kubectl(&[
            "delete",
            "policy",
            "default",
            "-n",
            "legacy",
            "--dry-run=server",
        ])
        .status
        .success()
    });
    let out = cp.kubectl(&["delete", "policy", "default", "-n", "legacy"]);
    assert_denied(
        &out,
        "DELETE of the PERMISSIVE override under a STRICT mesh",
        &["legacy/sleep"],
    );

    watch_sees_pods_come_and_go(&cp);
}

/// `check --cluster` and `report --cluster` read the same live inventory the webhook watches.
fn check_and_report_read_the_cluster(cp: &ControlPlane) {
    let policy = cp.dir.path().join("strict-policy.yaml");
    std::fs::write(&policy, STRICT_POLICY).unwrap();
    let kubeconfig = cp.admin_kubeconfig.to_str().unwrap();
    let check = Command::new(common::BIN)
        .args(["check", "--cluster", "--kubeconfig", kubeconfig, "-f"])
        .arg(&policy)
        .output()
        .unwrap();
    assert_eq!(
        check.status.code(),
        Some(1),
        "check --cluster: {}",
        text(&check)
    );
    assert!(text(&check).contains("legacy/sleep"), "{}", text(&check));
    let report = Command::new(common::BIN)
        .args([
            "report",
            "--cluster",
            "--kubeconfig",
            kubeconfig,
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        report.status.success(),
        "report --cluster: {}",
        text(&report)
    );
    assert!(String::from_utf8_lossy(&report.stdout).contains("legacy/sleep"));
}

/// A sidecar-less pod created after start is seen (deny) and its deletion is seen (allow).
fn watch_sees_pods_come_and_go(cp: &ControlPlane) {
    cp.ok(&["create", "namespace", "late"]);
    let server = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "late",
        "labels": {"app": "web", "security.istio.io/tlsMode": "istio"}},
        "spec": {"containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
                                {"name": "istio-proxy", "image": "istio/proxyv2"}]}});
    assert_allowed(&apply(cp, &server.to_string()), "meshed server in late");
    // Under the STRICT mesh a STRICT namespace changes nothing; relax the mesh first.
    let relaxed = r#"{"apiVersion":"authentication.istio.io/v1alpha1","kind":"MeshPolicy","metadata":{"name":"default"},"spec":{"peers":[{"mtls":{"mode":"PERMISSIVE"}}]}}"#;
    assert_allowed(&apply(cp, relaxed), "relaxing the mesh");
    let pa = r#"{"apiVersion":"security.istio.io/v1","kind":"PeerAuthentication","metadata":{"name":"default","namespace":"late"},"spec":{"mtls":{"mode":"STRICT"}}}"#;
    let dry_run = || cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], pa);
    cp.wait_until("a STRICT late namespace to be allowed", WATCH, || {
        dry_run().status.success()
    });

    assert_allowed(
        &apply(cp, &sleep_pod("late", "intruder", false)),
        "sidecar-less pod",
    );
    cp.wait_until("the guard to deny because of the new pod", WATCH, || {
        let out = dry_run();
        !out.status.success() && text(&out).contains("late/intruder")
    });
    cp.ok(&[
        "delete",
        "pod",
        "-n",
        "late",
        "intruder",
        "--grace-period=0",
        "--force",
    ]);
    cp.wait_until("the guard to allow after the pod is gone", WATCH, || {
        dry_run().status.success()
    });
}

/// kubectl as the ServiceAccount `foo/alice`, a user with no special rights.
fn as_alice(cp: &ControlPlane, args: &[&str], input: Option<&str>) -> Output {
    let kubeconfig = cp.dir.path().join("alice.kubeconfig");
    std::fs::write(&kubeconfig, cp.token_kubeconfig("foo", "alice")).unwrap();
    let mut cmd = Command::new(cluster::binaries().join("kubectl"));
    cmd.arg("--kubeconfig").arg(&kubeconfig).args(args);
    match input {
        None => cmd.output().unwrap(),
        Some(text) => {
            use std::io::Write;
            let mut child = cmd
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            child.wait_with_output().unwrap()
        }
    }
}

#[test]
fn break_glass_and_namespace_modes_are_for_whom_rbac_grants_them() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    let _guard = start_guard(&cp);
    cp.apply_seed_policies();
    // alice may write policies in foo and label the namespace legacy, nothing more.
    cp.ok(&["create", "serviceaccount", "alice", "-n", "foo"]);
    cp.ok(&[
        "create",
        "role",
        "policy-writer",
        "-n",
        "foo",
        "--verb=get,create,update,patch",
        "--resource=policies.authentication.istio.io",
    ]);
    cp.ok(&[
        "create",
        "rolebinding",
        "alice-writes",
        "-n",
        "foo",
        "--role=policy-writer",
        "--serviceaccount=foo:alice",
    ]);
    cp.ok(&[
        "create",
        "clusterrole",
        "legacy-labeller",
        "--verb=get,patch",
        "--resource=namespaces",
        "--resource-name=legacy",
    ]);
    cp.ok(&[
        "create",
        "clusterrolebinding",
        "alice-labels",
        "--clusterrole=legacy-labeller",
        "--serviceaccount=foo:alice",
    ]);

    let glass = STRICT_POLICY.replace(
        "metadata: {name: example-httpbin-strict, namespace: foo}",
        "metadata: {name: example-httpbin-strict, namespace: foo, annotations: {mtls-guard.io/break-glass: INC-7 approved}}",
    );
    let out = as_alice(&cp, &["apply", "-f", "-"], Some(&glass));
    assert_denied(
        &out,
        "break-glass without the grant",
        &["may not use breakglass.mtls-guard.io"],
    );
    let label = ["label", "namespace", "legacy", "mtls-guard.io/mode=audit"];
    let out = as_alice(&cp, &label, None);
    assert_denied(&out, "mode label without the grant", &["set-mode"]);

    cp.ok(&[
        "create",
        "rolebinding",
        "alice-glass",
        "-n",
        "foo",
        "--clusterrole=mtls-guard:break-glass",
        "--serviceaccount=foo:alice",
    ]);
    cp.ok(&[
        "create",
        "rolebinding",
        "alice-mode",
        "-n",
        "legacy",
        "--clusterrole=mtls-guard:set-mode",
        "--serviceaccount=foo:alice",
    ]);
    cp.wait_until("the grants to let alice through", WATCH, || {
        let glass_ok = as_alice(&cp, &["apply", "--dry-run=server", "-f", "-"], Some(&glass));
        let label_ok = as_alice(
            &cp,
            &[
                "label",
                "--dry-run=server",
                "namespace",
                "legacy",
                "mtls-guard.io/mode=audit",
            ],
            None,
        );
        glass_ok.status.success() && label_ok.status.success()
    });
    let out = as_alice(&cp, &["apply", "-f", "-"], Some(&glass));
    assert_allowed(&out, "break-glass with the grant");
    assert!(text(&out).contains("break-glass"), "{}", text(&out));
    assert_allowed(&as_alice(&cp, &label, None), "mode label with the grant");
}

#[test]
fn a_webhook_served_by_a_sidecar_names_the_api_server_as_its_client() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    let _guard = start_guard(&cp);
    cp.apply_seed_policies();
    // A webhook the API server would call on foo/httpbin's Service port 8000 (container port 80).
    // It matches no namespace, so this test's own requests never wait on it.
    let hook = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "httpbin-hook"},
        "webhooks": [{"name": "httpbin.example.com", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Fail", "namespaceSelector": {"matchLabels": {"never": "matches"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
            "clientConfig": {"service": {"namespace": "foo", "name": "httpbin", "port": 8000, "path": "/validate"}}}]});
    assert_allowed(
        &apply(&cp, &hook.to_string()),
        "a webhook backed by foo/httpbin",
    );
    cp.wait_until("the guard to name the API server", WATCH, || {
        let out = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], STRICT_POLICY);
        text(&out).contains("kube-apiserver (ValidatingWebhookConfiguration httpbin-hook)")
    });
    let out = apply(&cp, STRICT_POLICY);
    assert_denied(
        &out,
        "STRICT Policy on a webhook's backend",
        &[
            "kube-apiserver (ValidatingWebhookConfiguration httpbin-hook) -> foo/httpbin",
            "legacy/sleep",
        ],
    );
}

fn mesh_config(mesh: &str) -> String {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
           "data": {"mesh": mesh}})
    .to_string()
}

#[test]
fn turning_auto_mtls_off_under_a_strict_mesh_is_denied_through_kubectl() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    cp.ok(&["delete", "pod", "-n", "legacy", "--all", "--wait=false"]);
    let _guard = start_guard(&cp);
    cp.apply_seed_policies();
    assert_allowed(
        &apply(&cp, &mesh_config("enableAutoMtls: true\n")),
        "turning auto mTLS on relaxes",
    );
    let strict_mesh = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "istio-system"}, "spec": {"mtls": {"mode": "STRICT"}}});
    cp.wait_until(
        "the guard to see auto mTLS on and legacy empty",
        WATCH,
        || apply(&cp, &strict_mesh.to_string()).status.success(),
    );
    let out = apply(&cp, &mesh_config("enableAutoMtls: false\n"));
    assert_denied(
        &out,
        "auto mTLS off under a STRICT mesh",
        &[
            "ConfigMap istio-system/istio",
            "foo/sleep -> bar/httpbin",
            "auto mTLS is off",
            "mesh enableAutoMtls: true -> false",
        ],
    );
    let other = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "istio-ca-root-cert", "namespace": "istio-system"}, "data": {"root-cert.pem": "x"}});
    let out = apply(&cp, &other.to_string());
    assert_allowed(&out, "another ConfigMap of the Istio namespace");
    assert!(!text(&out).contains("mtls-guard"), "{}", text(&out));
}

#[test]
fn network_policies_watched_live_rule_out_a_client_and_back_in() {
    let cp = ControlPlane::start();
    cp.install_guard_prerequisites();
    cp.apply_seed_workloads();
    // The chart grants this read only with respectNetworkPolicies; the test grants it by hand.
    cp.ok(&[
        "create",
        "clusterrole",
        "np-reader",
        "--verb=get,list,watch",
        "--resource=networkpolicies",
    ]);
    cp.ok(&[
        "create",
        "clusterrolebinding",
        "np-reader",
        "--clusterrole=np-reader",
        "--serviceaccount=mtls-guard:mtls-guard",
    ]);
    let _guard = start_guard_with(&cp, &["--respect-network-policies"]);
    cp.apply_seed_policies();
    let policy =
        std::fs::read_to_string(root().join("tests/data/np-httpbin-only-from-mesh.yaml")).unwrap();
    assert_allowed(&apply(&cp, &policy), "the NetworkPolicy");
    cp.wait_until("the guard to see legacy kept out", WATCH, || {
        cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], STRICT_POLICY)
            .status
            .success()
    });
    cp.ok(&["delete", "networkpolicy", "httpbin-from-mesh", "-n", "foo"]);
    cp.wait_until("the guard to see the policy gone", WATCH, || {
        let out = cp.kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], STRICT_POLICY);
        text(&out).contains("legacy/sleep")
    });
}
