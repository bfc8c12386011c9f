//! A real control plane for tests: etcd and kube-apiserver on loopback, with generated
//! certificates and RBAC, driven with kubectl. Binaries come from `KUBEBUILDER_ASSETS` when
//! set, else they are built once by `build-binaries.sh` into `.cache/` and reused.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const K8S_VERSION: &str = "1.34.4";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Where kube-apiserver, etcd, kubectl and helm are; builds them on first use, once per test
/// binary even when its tests ask at the same time.
pub fn binaries() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(build_binaries).clone()
}

fn build_binaries() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBEBUILDER_ASSETS") {
        return PathBuf::from(dir);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::var_os("MTLS_GUARD_TEST_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".cache").join(format!("k8s-{K8S_VERSION}")));
    let status = Command::new("bash")
        .arg(root.join("tests/cluster/build-binaries.sh"))
        .arg(&dir)
        .env("K8S_VERSION", K8S_VERSION)
        .status()
        .expect("bash runs build-binaries.sh");
    assert!(
        status.success(),
        "building the test control plane failed (see above)"
    );
    dir
}

struct Certs {
    ca_pem: String,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
}

impl Certs {
    fn new() -> Certs {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-cluster-ca");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        Certs {
            ca_pem,
            ca_key,
            ca_params,
        }
    }

    /// (cert PEM, key PEM) for a server (SANs) or a client (CN, O).
    fn issue(&self, sans: &[&str], cn: &str, org: Option<&str>) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if let Some(o) = org {
            p.distinguished_name
                .push(rcgen::DnType::OrganizationName, o);
        }
        p.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        (
            p.signed_by(&key, &issuer).unwrap().pem(),
            key.serialize_pem(),
        )
    }
}

/// The seed's lock-down: a STRICT Policy for foo/httpbin, which legacy/sleep still calls.
pub const STRICT_POLICY: &str = r#"
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: example-httpbin-strict, namespace: foo}
spec:
  targets: [{name: httpbin}]
  peers: [{mtls: {mode: STRICT}}]
"#;

/// The demo inventory's objects of these kinds, as a List for kubectl.
pub fn demo_objects(kinds: &[&str]) -> String {
    let demo: serde_json::Value =
        mtls_guard::yaml::from_str(mtls_guard::inventory::file::DEMO_INVENTORY).unwrap();
    let items: Vec<serde_json::Value> = demo["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| kinds.contains(&i["kind"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

/// The objects of `manifests/base/install.yaml` of these kinds.
pub fn install_objects(kinds: &[&str]) -> Vec<serde_json::Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/base/install.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    mtls_guard::yaml::documents(&text)
        .unwrap()
        .into_iter()
        .filter(|o| kinds.contains(&o["kind"].as_str().unwrap_or("")))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// kube-apiserver on `port` over the etcd at `etcd_port`, with the certificates in `d`; its log
/// is appended to, so a restart keeps the earlier lines.
fn spawn_apiserver(bin: &Path, d: &Path, etcd_port: u16, port: u16, extra: &[String]) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("kube-apiserver.log"))
        .unwrap();
    Command::new(bin.join("kube-apiserver"))
        .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
        .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
        .arg(format!("--secure-port={port}"))
        .arg(format!("--cert-dir={}", d.display()))
        .arg(format!(
            "--tls-cert-file={}",
            d.join("apiserver.crt").display()
        ))
        .arg(format!(
            "--tls-private-key-file={}",
            d.join("apiserver.key").display()
        ))
        .arg(format!("--client-ca-file={}", d.join("ca.crt").display()))
        .arg("--authorization-mode=RBAC")
        .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
        .arg(format!(
            "--service-account-key-file={}",
            d.join("sa.pub").display()
        ))
        .arg(format!(
            "--service-account-signing-key-file={}",
            d.join("sa.key").display()
        ))
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        // No controller-manager creates default ServiceAccounts, so pods are admitted without one.
        .arg("--disable-admission-plugins=ServiceAccount")
        .arg("--enable-priority-and-fairness=false")
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("kube-apiserver starts")
}

pub struct ControlPlane {
    pub dir: tempfile::TempDir,
    bin: PathBuf,
    etcd: Child,
    apiserver: Child,
    /// Flags kube-apiserver gets beyond the usual ones.
    apiserver_flags: Vec<String>,
    pub etcd_port: u16,
    pub port: u16,
    pub ca_pem: String,
    pub admin_kubeconfig: PathBuf,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn log_file(dir: &Path, name: &str) -> Stdio {
    Stdio::from(std::fs::File::create(dir.join(name)).unwrap())
}

impl ControlPlane {
    pub fn start() -> ControlPlane {
        let bin = binaries();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let certs = Certs::new();
        write(&d.join("ca.crt"), &certs.ca_pem);
        let (srv_crt, srv_key) = certs.issue(&["127.0.0.1", "localhost"], "kube-apiserver", None);
        write(&d.join("apiserver.crt"), &srv_crt);
        write(&d.join("apiserver.key"), &srv_key);
        let sa_key = rcgen::KeyPair::generate().unwrap();
        write(&d.join("sa.key"), &sa_key.serialize_pem());
        write(&d.join("sa.pub"), &sa_key.public_key_pem());

        let (etcd_port, peer_port, port) = (free_port(), free_port(), free_port());
        let etcd = Command::new(bin.join("etcd"))
            .args([
                "--name",
                "default",
                "--unsafe-no-fsync",
                "--log-level",
                "warn",
            ])
            .arg("--data-dir")
            .arg(d.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=default=http://127.0.0.1:{peer_port}"
            ))
            .stdout(Stdio::null())
            .stderr(log_file(d, "etcd.log"))
            .spawn()
            .expect("etcd starts");
        let apiserver = spawn_apiserver(&bin, d, etcd_port, port, &[]);

        let (admin_crt, admin_key) = certs.issue(&[], "admin", Some("system:masters"));
        let admin_kubeconfig = d.join("admin.kubeconfig");
        let mut cp = ControlPlane {
            bin,
            etcd,
            apiserver,
            apiserver_flags: Vec::new(),
            etcd_port,
            port,
            ca_pem: certs.ca_pem.clone(),
            admin_kubeconfig,
            dir,
        };
        write(
            &cp.admin_kubeconfig,
            &cp.kubeconfig_with(&format!(
                "client-certificate-data: {}\n    client-key-data: {}",
                b64(admin_crt.as_bytes()),
                b64(admin_key.as_bytes())
            )),
        );
        let deadline = Instant::now() + Duration::from_secs(90);
        while !cp.kubectl(&["get", "--raw", "/readyz"]).status.success() {
            let exited = matches!(cp.apiserver.try_wait(), Ok(Some(_)));
            assert!(
                !exited && Instant::now() < deadline,
                "kube-apiserver exited or not ready within 90s\n--- kube-apiserver.log (tail)\n{}\n--- etcd.log (tail)\n{}",
                cp.log_tail("kube-apiserver.log"),
                cp.log_tail("etcd.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        cp
    }

    /// Stops kube-apiserver (as a crash would), for `down` while `during` runs, then starts it
    /// again on the same port and waits until it is ready.
    pub fn restart_apiserver(&mut self, down: Duration, during: impl FnOnce()) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let stopped = Instant::now();
        during();
        if let Some(left) = down.checked_sub(stopped.elapsed()) {
            std::thread::sleep(left);
        }
        self.apiserver = spawn_apiserver(
            &self.bin,
            self.dir.path(),
            self.etcd_port,
            self.port,
            &self.apiserver_flags,
        );
        wait_until(
            "kube-apiserver to be ready again",
            Duration::from_secs(90),
            || self.kubectl(&["get", "--raw", "/readyz"]).status.success(),
        );
    }

    /// Starts kube-apiserver again with `flags` added, as a cluster configured another way.
    pub fn reconfigure_apiserver(&mut self, flags: &[&str]) {
        self.apiserver_flags = flags.iter().map(|f| f.to_string()).collect();
        self.restart_apiserver(Duration::ZERO, || {});
    }

    /// Compacts etcd's history up to its current revision, through etcd's JSON gateway, so
    /// watches resuming from an older resourceVersion get 410 Gone and must list again.
    pub fn compact_etcd(&self) {
        let url = |path: &str| format!("http://127.0.0.1:{}/v3/kv/{path}", self.etcd_port);
        let post = |url: String, body: String| -> serde_json::Value {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let r = reqwest::Client::new().post(&url).body(body).send().await;
                r.unwrap().json().await.unwrap()
            })
        };
        let range = post(url("range"), r#"{"key":"Lw=="}"#.into());
        let revision = range["header"]["revision"].as_str().unwrap().to_string();
        let compacted = post(
            url("compaction"),
            format!(r#"{{"revision":"{revision}","physical":true}}"#),
        );
        assert!(
            compacted.get("header").is_some(),
            "etcd compaction: {compacted}"
        );
    }

    /// A kubeconfig for this API server with the given user credentials (YAML lines).
    pub fn kubeconfig_with(&self, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority-data: {}\nusers:\n- name: user\n  user:\n    {user}\ncontexts:\n- name: test\n  context: {{cluster: test, user: user}}\ncurrent-context: test\n",
            self.port,
            b64(self.ca_pem.as_bytes())
        )
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    /// `kubectl apply -f -` (or another verb reading stdin) with `input`.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = Command::new(self.bin.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.admin_kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Istio's CRDs, the `istio-system` namespace, and the guard's Namespace, ServiceAccount and
    /// RBAC from `manifests/base/`: what `start_guard` needs.
    pub fn install_guard_prerequisites(&self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let path = |p: &str| root.join(p).display().to_string();
        self.ok(&["apply", "-f", &path("tests/cluster/crds.yaml")]);
        self.ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ]);
        self.ok(&["create", "namespace", "istio-system"]);
        let identity = [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
        ];
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": install_objects(&identity)});
        self.ok(&["apply", "-f", &path("manifests/base/namespace.yaml")]);
        let out = self.kubectl_stdin(&["apply", "-f", "-"], &list.to_string());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `mtls-guard serve` on a loopback port, reading this API server with the token of the
    /// manifests' ServiceAccount (never the admin identity), with a fresh serving certificate.
    /// Returns the process, its webhook and operations ports, and the CA clients must trust.
    pub fn start_guard(&self, bin: &str) -> (Child, u16, u16, String) {
        self.start_guard_with(bin, &[])
    }

    /// `start_guard` with more flags.
    pub fn start_guard_with(&self, bin: &str, extra: &[&str]) -> (Child, u16, u16, String) {
        let d = self.dir.path();
        let kubeconfig = d.join("guard.kubeconfig");
        write(
            &kubeconfig,
            &self.token_kubeconfig("mtls-guard", "mtls-guard"),
        );
        let pair = mtls_guard::tls::generate(&["127.0.0.1".to_string()]).unwrap();
        let tls = d.join("guard-tls");
        mtls_guard::tls::write(&tls, &pair).unwrap();
        let (port, ops_port) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{ops_port}")])
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--tls-cert")
            .arg(tls.join("tls.crt"))
            .arg("--tls-key")
            .arg(tls.join("tls.key"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log_file(d, "guard.log"))
            .spawn()
            .expect("mtls-guard starts");
        (child, port, ops_port, pair.ca_pem)
    }

    /// The `response` a guard on `port` gives the AdmissionReview `body`, posted straight to it;
    /// `None` when it does not answer.
    pub fn post_review(
        client: &reqwest::Client,
        port: u16,
        body: Vec<u8>,
    ) -> Option<serde_json::Value> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = client
                .post(format!("https://127.0.0.1:{port}/validate"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .ok()?;
            r.json::<serde_json::Value>()
                .await
                .ok()
                .map(|v| v["response"].clone())
        })
    }

    /// An HTTPS client trusting only `ca_pem` (the guard's serving CA from `start_guard`).
    pub fn client_trusting(ca_pem: &str) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    }

    /// The `response` that `bin review` gives `request` (an AdmissionReview file) on a kubectl
    /// dump of the cluster as it is now: what a guard watching it must answer too.
    pub fn review_on_dump(&self, bin: &str, request: &Path) -> serde_json::Value {
        let dump = self.dir.path().join("dump.json");
        let listed = self.ok(&[
            "get",
            "pods,services,namespaces,configmaps,peerauthentications,policies,meshpolicies,destinationrules",
            "-A",
            "-o",
            "json",
        ]);
        write(&dump, &listed);
        let out = Command::new(bin)
            .args(["review", "--inventory"])
            .arg(&dump)
            .arg(request)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        answer["response"].clone()
    }

    /// The ValidatingWebhookConfiguration of `manifests/base/install.yaml`, pointed at a
    /// loopback guard by URL with its CA.
    pub fn register_webhook_url(&self, port: u16, ca_pem: &str) {
        let mut webhook = install_objects(&["ValidatingWebhookConfiguration"]).remove(0);
        for w in webhook["webhooks"].as_array_mut().unwrap() {
            w["clientConfig"] = serde_json::json!({
                "url": format!("https://127.0.0.1:{port}/validate"),
                "caBundle": b64(ca_pem.as_bytes()),
            });
        }
        let out = self.kubectl_stdin(&["apply", "-f", "-"], &webhook.to_string());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The seed's policies: the PERMISSIVE MeshPolicy and the ISTIO_MUTUAL DestinationRule.
    pub fn apply_seed_policies(&self) {
        for kinds in [&["MeshPolicy"][..], &["DestinationRule"]] {
            let out = self.kubectl_stdin(&["apply", "-f", "-"], &demo_objects(kinds));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// A kubeconfig for this API server with a fresh token of a ServiceAccount.
    pub fn token_kubeconfig(&self, namespace: &str, account: &str) -> String {
        let token = self.ok(&["create", "token", account, "-n", namespace, "--duration=1h"]);
        self.kubeconfig_with(&format!("token: {}", token.trim()))
    }

    /// The seed's cluster before any policy: namespaces, mesh config, pods and services.
    pub fn apply_seed_workloads(&self) {
        for kinds in [&["Namespace", "ConfigMap"][..], &["Service", "Pod"]] {
            let out = self.kubectl_stdin(&["apply", "-f", "-"], &demo_objects(kinds));
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs kubectl and panics with its output unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The last lines of a component's log, for failure messages.
    pub fn log_tail(&self, name: &str) -> String {
        let log = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn wait_until(&self, what: &str, timeout: Duration, ok: impl FnMut() -> bool) {
        wait_until(what, timeout, ok)
    }
}
