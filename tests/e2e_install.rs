//! The install as the README gives it, on the test kube-apiserver: `kubectl apply -k
//! manifests/` and the Helm chart, then the guard started with the Deployment's own arguments
//! under its ServiceAccount's token (no kubelet runs here, so the binary stands in for the
//! pod, and an ExternalName Service stands in for the pod network). No certificate is handled
//! by hand: the guard makes its Secret and injects the caBundle itself.

mod cluster;
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use cluster::{free_port, ControlPlane, STRICT_POLICY};
use serde_json::{json, Value};

const NS: &str = "mtls-guard";
const HOST: &str = "mtls-guard.mtls-guard.svc";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap()
}

/// One guard process: what a replica of the Deployment would be.
struct Replica {
    child: Child,
    port: u16,
    ops: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    fn ready(&self) -> bool {
        let url = format!("http://127.0.0.1:{}/readyz", self.ops);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { reqwest::get(url).await.is_ok_and(|r| r.status() == 200) })
    }
}

struct Install {
    cp: ControlPlane,
    kubeconfig: std::path::PathBuf,
    args: Vec<String>,
}

impl Install {
    /// Istio's CRDs and namespace, then `install` (the README's command), then the token the
    /// Deployment's pods would have.
    fn new(install: impl FnOnce(&ControlPlane)) -> Install {
        let cp = ControlPlane::start();
        cp.ok(&[
            "apply",
            "-f",
            &root().join("tests/cluster/crds.yaml").display().to_string(),
        ]);
        cp.ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ]);
        cp.ok(&["create", "namespace", "istio-system"]);
        install(&cp);
        let deployment: Value =
            serde_json::from_str(&cp.ok(&["get", "deployment", NS, "-n", NS, "-o", "json"]))
                .unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let kubeconfig = cp.dir.path().join("pod.kubeconfig");
        std::fs::write(&kubeconfig, cp.token_kubeconfig(NS, NS)).unwrap();
        Install {
            cp,
            kubeconfig,
            args,
        }
    }

    /// The guard with the Deployment's arguments, in the namespace the downward API gives.
    fn replica(&self, name: &str, extra: &[&str]) -> Replica {
        let (port, ops) = (free_port(), free_port());
        let log = std::fs::File::create(self.cp.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new(common::BIN)
            .args(&self.args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{ops}")])
            .args(extra)
            .env("MTLS_GUARD_NAMESPACE", NS)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("mtls-guard starts");
        Replica { child, port, ops }
    }

    fn wait_ready(&self, replica: &Replica) {
        self.cp
            .wait_until("the guard's /readyz", Duration::from_secs(60), || {
                replica.ready()
            });
    }

    /// The Service reaches `replica`: an ExternalName to loopback, and the webhook's Service
    /// port set to the replica's port (the API server dials the ExternalName at that port and
    /// still verifies the certificate for mtls-guard.mtls-guard.svc).
    fn route_to(&self, replica: &Replica) {
        self.cp
            .ok(&["delete", "service", NS, "-n", NS, "--ignore-not-found"]);
        let service = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": NS, "namespace": NS},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1"}});
        let out = self
            .cp
            .kubectl_stdin(&["create", "-f", "-"], &service.to_string());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let patch: Vec<Value> = (0..2)
            .map(|i| json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/service/port"), "value": replica.port}))
            .collect();
        let patch = Value::from(patch);
        self.cp.ok(&[
            "patch",
            "validatingwebhookconfiguration",
            NS,
            "--type=json",
            "-p",
            &patch.to_string(),
        ]);
    }

    fn secret(&self) -> Value {
        serde_json::from_str(&self.cp.ok(&[
            "get",
            "secret",
            "mtls-guard-tls",
            "-n",
            NS,
            "-o",
            "json",
        ]))
        .unwrap()
    }

    fn secret_file(&self, key: &str) -> String {
        String::from_utf8(b64(self.secret()["data"][key].as_str().unwrap())).unwrap()
    }

    fn injected_bundle(&self) -> String {
        let out = self.cp.ok(&[
            "get",
            "validatingwebhookconfiguration",
            NS,
            "-o",
            "jsonpath={.webhooks[0].clientConfig.caBundle}",
        ]);
        String::from_utf8(b64(&out)).unwrap()
    }

    /// The seed's workloads and policies, then its lock-down, denied through kubectl.
    fn seed_lock_down_is_denied(&self) {
        self.cp.apply_seed_workloads();
        self.cp.apply_seed_policies();
        // The guard's watch sees the pods a moment after the API server stores them.
        self.cp.wait_until(
            "the lock-down to be denied naming legacy/sleep",
            Duration::from_secs(20),
            || {
                let out = self
                    .cp
                    .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], STRICT_POLICY);
                let text = String::from_utf8_lossy(&out.stderr);
                !out.status.success()
                    && text.contains("denied the request")
                    && text.contains("legacy/sleep")
            },
        );
    }
}

fn certificate_step_free_install(install: impl FnOnce(&ControlPlane)) {
    let inst = Install::new(install);
    let replica = inst.replica("guard", &[]);
    inst.wait_ready(&replica);
    inst.route_to(&replica);
    let ca = inst.secret_file("ca.crt");
    assert!(ca.contains("BEGIN CERTIFICATE"));
    assert_eq!(inst.secret()["type"], "kubernetes.io/tls");
    inst.cp.wait_until(
        "the caBundle to hold the Secret's CA",
        Duration::from_secs(20),
        || inst.injected_bundle() == inst.secret_file("ca-bundle.crt"),
    );
    inst.seed_lock_down_is_denied();
}

#[test]
fn kubectl_apply_k_installs_a_guard_that_denies_the_seed_lock_down() {
    certificate_step_free_install(|cp| {
        cp.ok(&[
            "apply",
            "-k",
            &root().join("manifests").display().to_string(),
        ]);
    });
}

#[test]
fn the_helm_chart_installs_a_guard_that_denies_the_seed_lock_down() {
    certificate_step_free_install(|cp| {
        let helm = cluster::binaries().join("helm");
        let out = Command::new(helm)
            .args(["template", "mtls-guard", "--namespace", NS])
            .arg(root().join("charts/mtls-guard"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cp.ok(&["create", "namespace", NS]);
        let applied =
            cp.kubectl_stdin(&["apply", "-f", "-"], &String::from_utf8_lossy(&out.stdout));
        assert!(
            applied.status.success(),
            "{}",
            String::from_utf8_lossy(&applied.stderr)
        );
    });
}

/// An HTTPS client trusting only `ca_pem`, reaching `HOST` at `port` on loopback.
fn client_for(ca_pem: &str, port: u16) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .resolve(HOST, ([127, 0, 0, 1], port).into())
        .build()
        .unwrap()
}

#[test]
fn two_replicas_started_together_converge_on_one_ca() {
    let inst = Install::new(|cp| {
        cp.ok(&[
            "apply",
            "-k",
            &root().join("manifests").display().to_string(),
        ]);
    });
    // --cert-name adds a name to the generated certificate; both replicas ask for the same.
    let extra = ["--cert-name", "guard.example.test"];
    let (a, b) = (
        inst.replica("guard-a", &extra),
        inst.replica("guard-b", &extra),
    );
    inst.wait_ready(&a);
    inst.wait_ready(&b);
    let ca = inst.secret_file("ca.crt");
    inst.cp.wait_until(
        "the caBundle to be injected",
        Duration::from_secs(20),
        || inst.injected_bundle() == inst.secret_file("ca-bundle.crt"),
    );
    assert_eq!(
        mtls_guard::certs::issue::certs_in(&inst.injected_bundle()).len(),
        1,
        "one CA"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for replica in [&a, &b] {
        let url = format!("https://{HOST}:{}/validate", replica.port);
        let status = rt.block_on(async {
            client_for(&ca, replica.port)
                .get(url)
                .send()
                .await
                .map(|r| r.status())
        });
        let by_extra_name = rt.block_on(async {
            let url = format!("https://guard.example.test:{}/validate", replica.port);
            reqwest::Client::builder()
                .no_proxy()
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
                .resolve("guard.example.test", ([127, 0, 0, 1], replica.port).into())
                .build()
                .unwrap()
                .get(url)
                .send()
                .await
                .map(|r| r.status())
        });
        assert_eq!(
            by_extra_name.unwrap(),
            405,
            "the --cert-name is in the certificate"
        );
        assert_eq!(
            status.unwrap(),
            405,
            "replica on {} serves a certificate of the one CA",
            replica.port
        );
    }
}

#[test]
fn renewals_and_a_ca_rollover_under_load_fail_no_call() {
    let inst = Install::new(|cp| {
        cp.ok(&[
            "apply",
            "-k",
            &root().join("manifests").display().to_string(),
        ]);
    });
    let short = [
        "--cert-validity",
        "15s",
        "--ca-validity",
        "45s",
        "--cert-reload-interval",
        "1s",
    ];
    let replica = inst.replica("guard", &short);
    inst.wait_ready(&replica);
    inst.route_to(&replica);
    inst.seed_lock_down_is_denied();
    let first_ca = inst.secret_file("ca.crt");

    let allowed = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: foo}\nspec: {mtls: {mode: PERMISSIVE}}\n";
    let (calls, failures) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(std::sync::Mutex::new(Vec::new())),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut leaves = std::collections::BTreeSet::new();
    let started = Instant::now();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let out = inst
                    .cp
                    .kubectl_stdin(&["apply", "--dry-run=server", "-f", "-"], allowed);
                calls.fetch_add(1, Ordering::SeqCst);
                if !out.status.success() {
                    failures
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&out.stderr).into_owned());
                }
            }
        });
        while started.elapsed() < Duration::from_secs(60) {
            leaves.insert(inst.secret_file("tls.crt"));
            std::thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} calls failed: {:?}",
        failures.len(),
        calls.load(Ordering::SeqCst),
        &failures[..failures.len().min(3)]
    );
    assert!(
        calls.load(Ordering::SeqCst) > 50,
        "{} calls",
        calls.load(Ordering::SeqCst)
    );
    assert!(
        leaves.len() >= 4,
        "{} serving certificates in 60 s",
        leaves.len()
    );
    assert_ne!(inst.secret_file("ca.crt"), first_ca, "the CA rolled over");
    println!(
        "{} calls, {} serving certificates, 0 failures",
        calls.load(Ordering::SeqCst),
        leaves.len()
    );
}
