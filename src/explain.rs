//! Turns a [`Verdict`] into the words users read: the deny message, warnings, audit entries.

use std::fmt::{self, Write};

use serde::Serialize;

use crate::engine::{Break, Client, Reason, Server, Tier, Verdict};
use crate::model::Origin;
use crate::text::{number, put, Words};

/// Clients listed by name before "+N more".
pub const LISTED_CLIENTS: usize = 10;

pub fn client_name(c: &Client) -> String {
    ClientName(c).text()
}

/// A client as messages name it.
struct ClientName<'a>(&'a Client);

impl Words for ClientName<'_> {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        match self.0 {
            Client::Workload { namespace, name } => put(w, &[namespace, "/", name]),
            Client::Kubelet { namespace, name } => {
                put(w, &["kubelet (probes of ", namespace, "/", name, ")"])
            }
            Client::External {
                namespace,
                service,
                exposure,
            } => put(
                w,
                &[
                    "external clients (Service ",
                    namespace,
                    "/",
                    service,
                    ", ",
                    exposure.as_str(),
                    ")",
                ],
            ),
            Client::ApiServer { caller, name } => {
                put(w, &["kube-apiserver (", caller.as_str(), " ", name, ")"])
            }
            Client::Unknown => w.write_str("unknown sender"),
        }
    }
}

struct ServerName<'v, 'a>(&'v Server<'a>);

impl Words for ServerName<'_, '_> {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        put(w, &[&self.0.namespace, "/", &self.0.workload])
    }
}

/// The evidence tier in words: the deny message, `check` and `report` say it alike.
pub fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Inventory => "inventory",
        Tier::ClientConfig => "client config",
        Tier::Traffic => "traffic",
    }
}

struct OriginName<'a>(&'a Origin);

impl Words for OriginName<'_> {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        self.0.write_name(w)
    }
}

pub fn reason_text(r: &Reason) -> String {
    ReasonText(r).text()
}

struct ReasonText<'a>(&'a Reason);

impl Words for ReasonText<'_> {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        match self.0 {
            Reason::NoProxy => w.write_str("no Istio sidecar and not enrolled in ambient"),
            Reason::HostNetwork => w.write_str("hostNetwork pod: no proxy captures its traffic"),
            Reason::AmbientNotEnrolled => w.write_str(
                "ambient requested (istio.io/dataplane-mode=ambient) but not enrolled by istio-cni",
            ),
            Reason::DestinationRule { rule, mode, port } => {
                w.write_str("DestinationRule ")?;
                OriginName(rule).write_to(w)?;
                put(w, &[" sets tls.mode ", mode.as_str(), " for port "])?;
                number(w, u64::from(*port))
            }
            Reason::PlaintextSubset { rule, subset, mode } => {
                w.write_str("DestinationRule ")?;
                OriginName(rule).write_to(w)?;
                put(w, &[" subset ", subset, " uses tls.mode ", mode.as_str()])
            }
            Reason::AutoMtlsOff => w.write_str(
                "auto mTLS is off (enableAutoMtls: false) and no DestinationRule sets ISTIO_MUTUAL",
            ),
            Reason::TargetNotLabelled => w.write_str(
                "auto mTLS sends plaintext: the server pods lack security.istio.io/tlsMode=istio",
            ),
            Reason::NamespaceDisable { namespace, by } => {
                put(w, &["auto mTLS sends plaintext: namespace ", namespace, " is DISABLE"])?;
                match by {
                    Some(o) => {
                        w.write_str(" (")?;
                        o.write_to(w)?;
                        w.write_char(')')
                    }
                    None => Ok(()),
                }
            }
            Reason::HeadlessBackend { service, backend } => put(
                w,
                &[
                    "headless Service ",
                    service,
                    " has a backend without a sidecar (",
                    backend,
                    "): auto mTLS sends plaintext to all of it",
                ],
            ),
            Reason::AmbientToSidecar => w.write_str(
                "ambient client: the sidecar server lacks networking.istio.io/tunnel=http, so ztunnel passes plaintext",
            ),
            Reason::OutboundBypass { annotation, port } => {
                w.write_str("its traffic to port ")?;
                number(w, u64::from(*port))?;
                put(
                    w,
                    &[" bypasses its sidecar (traffic.sidecar.istio.io/", annotation, ")"],
                )
            }
            Reason::KubeletProbe { port } => {
                w.write_str("httpGet/gRPC probe on port ")?;
                number(w, u64::from(*port))?;
                w.write_str(" with probe rewriting off: the pods would go unready")
            }
            Reason::ExposedOutsideMesh { port } => {
                w.write_str("exposed outside the mesh on Service port ")?;
                number(w, u64::from(*port))
            }
            Reason::ApiServerCalls { port } => {
                w.write_str("the API server calls it on Service port ")?;
                number(w, u64::from(*port))?;
                w.write_str(" without Istio mTLS")
            }
            Reason::ObservedPlaintext {
                requests,
                connections,
                window_secs,
            } => {
                w.write_str("seen sending plaintext: ")?;
                number(w, *requests)?;
                w.write_str(" req, ")?;
                number(w, *connections)?;
                put(
                    w,
                    &[
                        " TCP conn in the last ",
                        &crate::evidence::window_text(std::time::Duration::from_secs(
                            *window_secs,
                        )),
                    ],
                )
            }
        }
    }
}

/// A server's ports, each with its mode before and after and the rule deciding it.
struct PortsText<'v, 'a>(&'v Server<'a>);

impl Words for PortsText<'_, '_> {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        for (i, p) in self.0.ports.iter().enumerate() {
            if i > 0 {
                w.write_str(", ")?;
            }
            match p.port {
                Some(n) => {
                    w.write_str("port ")?;
                    number(w, u64::from(n))?;
                }
                None => w.write_str("all ports")?,
            }
            put(w, &[": ", p.before.as_str(), " -> ", p.after.as_str()])?;
            if let Some(o) = &p.decided_by {
                w.write_str(" by ")?;
                o.write_to(w)?;
            }
        }
        Ok(())
    }
}

/// Servers named in one line of a message.
const LISTED_TARGETS: usize = 3;

/// The servers a client is cut off from: the first [`LISTED_TARGETS`], then how many more.
struct TargetsOf<'v, 'a>(&'v Verdict<'a>, &'v Break);

impl Words for TargetsOf<'_, '_> {
    fn write_to<W: Write>(&self, w: &mut W) -> fmt::Result {
        let mut targets = self.0.targets(self.1);
        for (i, s) in targets.by_ref().take(LISTED_TARGETS).enumerate() {
            if i > 0 {
                w.write_str(", ")?;
            }
            ServerName(s).write_to(w)?;
        }
        match targets.count() {
            0 => Ok(()),
            more => {
                w.write_str(" +")?;
                number(w, more as u64)?;
                w.write_str(" more")
            }
        }
    }
}

/// The message a denied `kubectl apply` shows.
pub fn deny_message(object: &str, v: &Verdict, change: Option<&str>) -> String {
    // Room for the usual message, which would otherwise be copied as it grows.
    let mut m = String::with_capacity(2048);
    let _ = write_deny_message(&mut m, object, v, change);
    m
}

fn write_deny_message(
    m: &mut String,
    object: &str,
    v: &Verdict,
    change: Option<&str>,
) -> fmt::Result {
    put(m, &["mtls-guard: ", object, " would cut off "])?;
    number(m, v.client_count() as u64)?;
    m.push_str(" plaintext client(s).");
    if let Some(root) = &v.ignored_root {
        put(m, &["\n", &ignored_root_text(root)])?;
    }
    for s in &v.servers {
        let verb = if s.locked_down() {
            " becomes STRICT ("
        } else {
            " is STRICT and hit ("
        };
        m.push('\n');
        ServerName(s).write_to(m)?;
        m.push_str(verb);
        PortsText(s).write_to(m)?;
        m.push_str("; ");
        number(m, s.pods as u64)?;
        m.push_str(" pod(s))");
    }
    m.push_str("\nClients that still send plaintext:");
    for b in v.breaks.iter().take(LISTED_CLIENTS) {
        m.push_str("\n  - ");
        ClientName(&b.client).write_to(m)?;
        m.push_str(" -> ");
        TargetsOf(v, b).write_to(m)?;
        m.push_str(": ");
        ReasonText(&b.reason).write_to(m)?;
        put(m, &[" [evidence: ", tier_name(b.tier), "]"])?;
    }
    if v.client_count() > LISTED_CLIENTS {
        m.push_str("\n  +");
        number(m, (v.client_count() - LISTED_CLIENTS) as u64)?;
        m.push_str(" more");
    }
    if v.excluded_by_network_policies > 0 {
        m.push_str("\nNot counted: ");
        number(m, v.excluded_by_network_policies as u64)?;
        m.push_str(" suspected client(s) that NetworkPolicies keep from these servers (--respect-network-policies).");
    }
    if v.network_policies_partly_checked {
        m.push_str("\nNetworkPolicies were checked only in part (the review's work budget ran out): the remaining suspects are counted.");
    }
    if let Some(change) = change {
        put(m, &["\nChange: ", change])?;
    }
    if let Some(why) = &v.traffic_unavailable {
        put(
            m,
            &[
                "\nTraffic evidence unavailable (",
                why,
                "): decided on the inventory alone.",
            ],
        )?;
    }
    m.push_str(
        "\nWays out: inject the Istio sidecar into these clients (or enrol them in ambient) and restart them; \
         keep PERMISSIVE on the ports they use with portLevelMtls (container ports); \
         fix the DestinationRule or annotation that makes a sidecar send plaintext; \
         or, to accept the outage, annotate the object with mtls-guard.io/break-glass: \"<reason>\".",
    );
    Ok(())
}

fn ignored_root_text(root: &str) -> String {
    format!(
        "rootNamespace becomes {root}, a namespace mtls-guard ignores (--ignore-namespace): \
         its policies would apply mesh-wide without review. Choose a root namespace the guard reviews."
    )
}

/// Short lines for `kubectl`'s `Warning:` output (audit mode and break-glass).
pub fn warnings(v: &Verdict) -> Vec<String> {
    let mut w: Vec<String> = v
        .breaks
        .iter()
        .take(LISTED_CLIENTS)
        .map(|b| {
            let mut line = String::with_capacity(128);
            let _ = write_warning(&mut line, v, b);
            line
        })
        .collect();
    if v.client_count() > LISTED_CLIENTS {
        w.push(format!(
            "mtls-guard would deny: +{} more clients",
            v.client_count() - LISTED_CLIENTS
        ));
    }
    if let Some(root) = &v.ignored_root {
        w.push(format!(
            "mtls-guard would deny: {}",
            ignored_root_text(root)
        ));
    }
    w
}

/// One client's warning: `mtls-guard VERB: CLIENT -> SERVERS sends plaintext (REASON)`.
fn write_warning(line: &mut String, v: &Verdict, b: &Break) -> fmt::Result {
    let verb = if b.denies {
        "would deny"
    } else {
        "warning, no traffic seen"
    };
    put(line, &["mtls-guard ", verb, ": "])?;
    ClientName(&b.client).write_to(line)?;
    line.push_str(" -> ");
    TargetsOf(v, b).write_to(line)?;
    put(line, &[" sends plaintext (", short_reason(&b.reason), ")"])
}

fn short_reason(r: &Reason) -> &'static str {
    match r {
        Reason::NoProxy => "no sidecar",
        Reason::HostNetwork => "hostNetwork",
        Reason::AmbientNotEnrolled => "ambient not enrolled",
        Reason::DestinationRule { .. } => "DestinationRule TLS",
        Reason::PlaintextSubset { .. } => "DestinationRule subset TLS",
        Reason::AutoMtlsOff => "auto mTLS off",
        Reason::TargetNotLabelled => "target lacks tlsMode label",
        Reason::NamespaceDisable { .. } => "namespace DISABLE",
        Reason::HeadlessBackend { .. } => "headless backend without sidecar",
        Reason::AmbientToSidecar => "ambient to non-HBONE sidecar",
        Reason::OutboundBypass { .. } => "outbound capture excluded",
        Reason::KubeletProbe { .. } => "kubelet probe",
        Reason::ExposedOutsideMesh { .. } => "exposed outside the mesh",
        Reason::ApiServerCalls { .. } => "called by the API server",
        Reason::ObservedPlaintext { .. } => "seen in traffic",
    }
}

/// What one change would remove: findings share a cause when fixing one thing (a mesh
/// setting, one DestinationRule, the proxies of the clients) clears them all.
pub fn cause(r: &Reason) -> (String, &'static str) {
    match r {
        Reason::NoProxy => (
            "clients without a proxy".into(),
            "inject the sidecar (or enrol them in ambient) and restart them",
        ),
        Reason::HostNetwork => (
            "hostNetwork clients: no proxy captures their traffic".into(),
            "keep the ports they call PERMISSIVE with portLevelMtls",
        ),
        Reason::AmbientNotEnrolled => (
            "clients that asked for ambient but were not enrolled by istio-cni".into(),
            "check istio-cni on their nodes, then restart the pods",
        ),
        Reason::DestinationRule { rule, .. } | Reason::PlaintextSubset { rule, .. } => (
            format!("DestinationRule {} sends plaintext", OriginName(rule).text()),
            "set its tls.mode to ISTIO_MUTUAL, or delete it",
        ),
        Reason::AutoMtlsOff => (
            "one mesh setting: auto mTLS is off (enableAutoMtls: false) and no DestinationRule \
             sets ISTIO_MUTUAL"
                .into(),
            "set enableAutoMtls: true in the mesh config, or add DestinationRules with tls.mode \
             ISTIO_MUTUAL for these servers",
        ),
        Reason::TargetNotLabelled => (
            "server pods without security.istio.io/tlsMode=istio: auto mTLS sends them plaintext"
                .into(),
            "restart the servers so the injector labels them",
        ),
        Reason::NamespaceDisable { namespace, .. } => (
            format!("namespace {namespace} is DISABLE, which turns auto mTLS off toward it"),
            "make the namespace PERMISSIVE before locking its workloads down",
        ),
        Reason::HeadlessBackend { service, .. } => (
            format!("headless Service {service} has a backend without a sidecar"),
            "inject the backend's sidecar",
        ),
        Reason::AmbientToSidecar => (
            "ambient clients of sidecars without networking.istio.io/tunnel=http".into(),
            "upgrade the servers' sidecars to accept HBONE, or move them to ambient",
        ),
        Reason::OutboundBypass { annotation, .. } => (
            format!("clients whose traffic bypasses their sidecar (traffic.sidecar.istio.io/{annotation})"),
            "remove the exclusion, or keep the port PERMISSIVE",
        ),
        Reason::KubeletProbe { .. } => (
            "probes with rewriting off (sidecar.istio.io/rewriteAppHTTPProbers: \"false\")".into(),
            "turn probe rewriting back on",
        ),
        Reason::ExposedOutsideMesh { .. } => (
            "Services open outside the mesh (NodePort, LoadBalancer, externalIPs)".into(),
            "send outside traffic through an ingress gateway, or keep the port PERMISSIVE",
        ),
        Reason::ApiServerCalls { .. } => (
            "the API server calls webhooks or aggregated APIs they serve".into(),
            "keep those ports PERMISSIVE with portLevelMtls",
        ),
        Reason::ObservedPlaintext { .. } => (
            "plaintext seen in traffic telemetry".into(),
            "find the senders: they have no sidecar or bypass it",
        ),
    }
}

/// One client cut off, in the one shape `check -o json`, `report -o json` and the
/// `would-deny` audit annotation share.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub client: String,
    pub tier: Tier,
    /// The reason as data; `text` says it in words.
    pub reason: Reason,
    pub text: String,
    /// `namespace/workload` of each server it is cut off from.
    pub servers: Vec<String>,
    /// `false` for a finding that only warns (`--evidence traffic` and no traffic seen).
    pub denies: bool,
}

pub fn findings(v: &Verdict) -> Vec<Finding> {
    v.breaks
        .iter()
        .map(|b| Finding {
            client: client_name(&b.client),
            tier: b.tier,
            reason: b.reason.clone(),
            text: reason_text(&b.reason),
            servers: v.targets(b).map(|s| ServerName(s).text()).collect(),
            denies: b.denies,
        })
        .collect()
}

/// The compact JSON list recorded as the `would-deny` audit annotation: the [`Finding`]s, then
/// `{"more": N}` for clients past the listed ones.
pub fn would_deny_json(v: &Verdict) -> String {
    let mut entries: Vec<serde_json::Value> = findings(v)
        .into_iter()
        .filter_map(|f| serde_json::to_value(f).ok())
        .collect();
    if v.unlisted > 0 {
        entries.push(serde_json::json!({ "more": v.unlisted }));
    }
    if let Some(root) = &v.ignored_root {
        entries.push(serde_json::json!({ "ignored-root-namespace": root }));
    }
    serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into())
}

/// What an UPDATE changed in the spec, as JSON Patch operations on one line each way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecChange {
    /// Operations and paths without values (`replace /spec/mtls/mode`), for logs: a spec may
    /// hold names of credentials and hosts that logs must not carry.
    pub paths: String,
    /// Operations with values (`replace /spec/mtls/mode STRICT`), for the deny message.
    pub detail: String,
}

/// Longest change summary kept, in bytes: a 30k-key update must not make a megabyte log line or
/// message.
pub const CHANGE_SUMMARY_BYTES: usize = 1024;

/// JSON Patch operations from old to new spec, or `None` when the spec is unchanged.
pub fn spec_diff(
    old: Option<&serde_json::Value>,
    new: Option<&serde_json::Value>,
) -> Option<SpecChange> {
    let null = serde_json::Value::Null;
    let old = old.unwrap_or(&null);
    let new = new.unwrap_or(&null);
    let patch = json_patch::diff(old, new);
    if patch.0.is_empty() {
        return None;
    }
    let op = |op: &json_patch::PatchOperation, values: bool| match op {
        json_patch::PatchOperation::Add(a) if values => format!("add /spec{} {}", a.path, a.value),
        json_patch::PatchOperation::Add(a) => format!("add /spec{}", a.path),
        json_patch::PatchOperation::Remove(r) => format!("remove /spec{}", r.path),
        json_patch::PatchOperation::Replace(r) if values => {
            format!("replace /spec{} {}", r.path, plain(&r.value))
        }
        json_patch::PatchOperation::Replace(r) => format!("replace /spec{}", r.path),
        other => other.to_string(),
    };
    Some(SpecChange {
        paths: capped(patch.0.iter().map(|o| op(o, false))),
        detail: capped(patch.0.iter().map(|o| op(o, true))),
    })
}

/// Joins operations with `; ` up to [`CHANGE_SUMMARY_BYTES`], then says how many were left out.
fn capped(ops: impl ExactSizeIterator<Item = String>) -> String {
    let total = ops.len();
    let mut out = String::new();
    for (n, op) in ops.enumerate() {
        let sep = if n == 0 { "" } else { "; " };
        if out.len() + sep.len() + op.len() > CHANGE_SUMMARY_BYTES {
            let _ = write!(out, "{sep}+{} more", total - n);
            break;
        }
        out.push_str(sep);
        out.push_str(&op);
    }
    out
}

fn plain(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{PortChange, Server, Targets};
    use crate::model::Mode;
    use serde_json::json;

    fn verdict(clients: usize) -> Verdict<'static> {
        Verdict {
            servers: vec![Server {
                namespace: "foo".into(),
                workload: "httpbin".into(),
                pods: 1,
                ports: smallvec::smallvec![PortChange {
                    port: Some(80),
                    before: Mode::Permissive,
                    after: Mode::Strict,
                    decided_by: None,
                }],
                accepts_hbone: false,
            }],
            breaks: (0..clients)
                .map(|i| Break {
                    client: Client::Workload {
                        namespace: "legacy".into(),
                        name: format!("sleep{i}").into(),
                    },
                    tier: Tier::Inventory,
                    reason: Reason::NoProxy,
                    targets: Targets::Servers(vec![0]),
                    denies: true,
                })
                .collect(),
            unlisted: 0,
            traffic_unavailable: None,
            excluded_by_network_policies: 0,
            network_policies_partly_checked: false,
            ignored_root: None,
        }
    }

    #[test]
    fn message_names_target_clients_tier_and_ways_out() {
        let m = deny_message(
            "Policy foo/strict",
            &verdict(1),
            Some("replace /spec/mtls/mode STRICT"),
        );
        assert!(
            m.contains("foo/httpbin becomes STRICT (port 80: PERMISSIVE -> STRICT"),
            "{m}"
        );
        assert!(
            m.contains("legacy/sleep0 -> foo/httpbin: no Istio sidecar"),
            "{m}"
        );
        assert!(m.contains("[evidence: inventory]"), "{m}");
        assert!(
            m.contains("portLevelMtls") && m.contains("mtls-guard.io/break-glass"),
            "{m}"
        );
        assert!(m.contains("Change: replace /spec/mtls/mode STRICT"), "{m}");
    }

    #[test]
    fn the_message_says_how_many_suspects_network_policies_ruled_out() {
        let mut v = verdict(1);
        assert!(!deny_message("x", &v, None).contains("Not counted"));
        v.excluded_by_network_policies = 3;
        let m = deny_message("x", &v, None);
        assert!(
            m.contains(
                "Not counted: 3 suspected client(s) that NetworkPolicies keep from these servers"
            ),
            "{m}"
        );
    }

    #[test]
    fn unlisted_clients_count_in_the_message_and_the_annotation() {
        let mut v = verdict(2);
        v.unlisted = 40;
        assert!(deny_message("x", &v, None).contains("would cut off 42 plaintext client(s)"));
        let j: serde_json::Value = serde_json::from_str(&would_deny_json(&v)).unwrap();
        assert_eq!(j[2]["more"], 40);
    }

    #[test]
    fn lists_are_capped() {
        let m = deny_message("x", &verdict(13), None);
        assert!(
            m.contains("legacy/sleep9 ") && !m.contains("legacy/sleep10 "),
            "{m}"
        );
        assert!(m.contains("+3 more"), "{m}");
        let w = warnings(&verdict(13));
        assert_eq!(w.len(), LISTED_CLIENTS + 1);
        assert!(w.iter().all(|l| l.len() <= 120), "{w:?}");
    }

    #[test]
    fn would_deny_is_compact_json() {
        let j: serde_json::Value = serde_json::from_str(&would_deny_json(&verdict(1))).unwrap();
        assert_eq!(j[0]["client"], "legacy/sleep0");
        assert_eq!(j[0]["servers"][0], "foo/httpbin");
        assert_eq!(j[0]["reason"]["kind"], "no-proxy");
    }

    #[test]
    fn spec_diff_renders_json_patch() {
        let old = json!({"mtls": {"mode": "PERMISSIVE"}});
        let new = json!({"mtls": {"mode": "STRICT"}});
        let diff = spec_diff(Some(&old), Some(&new)).unwrap();
        assert_eq!(diff.detail, "replace /spec/mtls/mode STRICT");
        assert_eq!(diff.paths, "replace /spec/mtls/mode");
        assert_eq!(spec_diff(Some(&old), Some(&old)), None);
    }

    #[test]
    fn a_huge_change_is_summarised_in_a_kilobyte_and_logs_no_values() {
        let keys: serde_json::Map<String, serde_json::Value> = (0..30_000)
            .map(|n| (format!("k{n}"), json!("secret-credential-name")))
            .collect();
        let old = json!({});
        let new = json!({"labels": keys});
        let diff = spec_diff(Some(&old), Some(&new)).unwrap();
        assert!(
            diff.detail.len() <= CHANGE_SUMMARY_BYTES + 16,
            "{}",
            diff.detail.len()
        );
        assert!(
            !diff.paths.contains("secret-credential-name"),
            "{}",
            diff.paths
        );
        let big = json!({"trafficPolicy": {"tls": {"credentialName": "prod-db-cert"}}});
        let diff = spec_diff(Some(&old), Some(&big)).unwrap();
        assert!(!diff.paths.contains("prod-db-cert"), "{}", diff.paths);
        assert!(diff.detail.contains("prod-db-cert"));
        let many: Vec<_> = (0..5_000)
            .map(|n| json!({"host": format!("h{n}")}))
            .collect();
        let diff = spec_diff(Some(&old), Some(&json!({"subsets": many}))).unwrap();
        assert!(diff.paths.len() <= CHANGE_SUMMARY_BYTES + 16);
    }

    fn origin(namespace: &str) -> Origin {
        Origin {
            kind: crate::model::RuleKind::PeerAuthentication,
            namespace: namespace.into(),
            name: "p".into(),
            created: 0,
        }
    }

    #[test]
    fn every_reason_reads_as_documented() {
        use crate::model::TlsMode;
        let rule = Origin {
            kind: crate::model::RuleKind::DestinationRule,
            ..origin("bar")
        };
        let cases = [
            (Reason::NoProxy, "no Istio sidecar and not enrolled in ambient"),
            (Reason::HostNetwork, "hostNetwork pod: no proxy captures its traffic"),
            (
                Reason::AmbientNotEnrolled,
                "ambient requested (istio.io/dataplane-mode=ambient) but not enrolled by istio-cni",
            ),
            (
                Reason::DestinationRule { rule: rule.clone(), mode: TlsMode::Disable, port: 8080 },
                "DestinationRule bar/p sets tls.mode DISABLE for port 8080",
            ),
            (
                Reason::PlaintextSubset {
                    rule: Origin { namespace: String::new(), ..rule },
                    subset: "v1".into(),
                    mode: TlsMode::Simple,
                },
                "DestinationRule p subset v1 uses tls.mode SIMPLE",
            ),
            (
                Reason::AutoMtlsOff,
                "auto mTLS is off (enableAutoMtls: false) and no DestinationRule sets ISTIO_MUTUAL",
            ),
            (
                Reason::TargetNotLabelled,
                "auto mTLS sends plaintext: the server pods lack security.istio.io/tlsMode=istio",
            ),
            (
                Reason::NamespaceDisable { namespace: "foo".into(), by: Some(origin("foo")) },
                "auto mTLS sends plaintext: namespace foo is DISABLE (PeerAuthentication foo/p)",
            ),
            (
                Reason::NamespaceDisable { namespace: "foo".into(), by: None },
                "auto mTLS sends plaintext: namespace foo is DISABLE",
            ),
            (
                Reason::HeadlessBackend { service: "db".into(), backend: "db-0".into() },
                "headless Service db has a backend without a sidecar (db-0): auto mTLS sends plaintext to all of it",
            ),
            (
                Reason::AmbientToSidecar,
                "ambient client: the sidecar server lacks networking.istio.io/tunnel=http, so ztunnel passes plaintext",
            ),
            (
                Reason::OutboundBypass { annotation: "excludeOutboundPorts", port: 5432 },
                "its traffic to port 5432 bypasses its sidecar (traffic.sidecar.istio.io/excludeOutboundPorts)",
            ),
            (
                Reason::KubeletProbe { port: 0 },
                "httpGet/gRPC probe on port 0 with probe rewriting off: the pods would go unready",
            ),
            (
                Reason::ExposedOutsideMesh { port: 65535 },
                "exposed outside the mesh on Service port 65535",
            ),
            (
                Reason::ApiServerCalls { port: 443 },
                "the API server calls it on Service port 443 without Istio mTLS",
            ),
            (
                Reason::ObservedPlaintext { requests: 12, connections: 3, window_secs: 600 },
                "seen sending plaintext: 12 req, 3 TCP conn in the last 10m",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason_text(&reason), text);
        }
    }

    #[test]
    fn every_client_reads_as_documented() {
        use crate::model::{service::Exposure, CallerKind};
        let cases = [
            (
                Client::Kubelet {
                    namespace: "foo".into(),
                    name: "httpbin".into(),
                },
                "kubelet (probes of foo/httpbin)",
            ),
            (
                Client::External {
                    namespace: "foo".into(),
                    service: "web".into(),
                    exposure: Exposure::NodePort,
                },
                "external clients (Service foo/web, NodePort)",
            ),
            (
                Client::ApiServer {
                    caller: CallerKind::ApiService,
                    name: "v1.metrics".into(),
                },
                "kube-apiserver (APIService v1.metrics)",
            ),
            (Client::Unknown, "unknown sender"),
        ];
        for (client, text) in cases {
            assert_eq!(client_name(&client), text);
        }
        assert_eq!(origin("").to_string(), "PeerAuthentication p");
    }

    #[test]
    fn the_message_names_each_port_its_rule_and_servers_past_the_third() {
        let mut v = verdict(1);
        v.servers[0].ports = smallvec::smallvec![
            PortChange {
                port: None,
                before: Mode::Permissive,
                after: Mode::Strict,
                decided_by: Some(std::borrow::Cow::Owned(origin("foo"))),
            },
            PortChange {
                port: Some(9090),
                before: Mode::Strict,
                after: Mode::Strict,
                decided_by: None,
            },
        ];
        let server = |name: &'static str| Server {
            workload: name.into(),
            ports: smallvec::smallvec![PortChange {
                port: Some(80),
                before: Mode::Strict,
                after: Mode::Strict,
                decided_by: None,
            }],
            ..v.servers[0].clone()
        };
        v.servers.extend(["b", "c", "d", "e"].map(server));
        v.breaks[0].targets = Targets::Servers(vec![0, 1, 2, 3, 4]);
        let m = deny_message("x", &v, None);
        assert!(
            m.contains(
                "\nfoo/httpbin becomes STRICT (all ports: PERMISSIVE -> STRICT by \
                 PeerAuthentication foo/p, port 9090: STRICT -> STRICT; 1 pod(s))\n\
                 foo/b is STRICT and hit (port 80: STRICT -> STRICT; 1 pod(s))"
            ),
            "{m}"
        );
        assert!(
            m.contains("legacy/sleep0 -> foo/httpbin, foo/b, foo/c +2 more: no Istio"),
            "{m}"
        );
        assert!(m.starts_with("mtls-guard: x would cut off 1 plaintext client(s).\n"));
    }
}
