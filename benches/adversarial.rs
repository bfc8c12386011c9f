//! The adversarial review of the hardening round: one DestinationRule with `host: "*"`, TLS
//! `DISABLE` and a long `exportTo`, against 40 STRICT servers and 400 client namespaces. It
//! shows a review's time against the object's size (exportTo entries, and past the 256-entry
//! bound the refusal) and against unrelated cluster size (namespaces with servers the rule
//! cannot affect), each at 1x, 10x and 100x. Then NetworkPolicies under
//! `--respect-network-policies`: a namespace of clients without a proxy whose egress policies
//! admit none of the servers, at 1x, 10x and 100x policy size and client count. Last, the
//! inline attempt a server makes on each of these within its budget (`INLINE_WORK`): what it
//! costs before the review goes to the blocking pool. `cargo bench --bench adversarial`.

use std::time::{Duration, Instant};

use mtls_guard::admission::{self, Authorization, GuardMode};
use mtls_guard::engine::{Budget, Evidence};
use mtls_guard::inventory::file::Loader;
use mtls_guard::inventory::{Filters, Index};
use mtls_guard::server::INLINE_WORK;
use serde_json::{json, Value};

const SERVERS: usize = 40;
const CLIENT_NAMESPACES: usize = 400;

fn sidecar_pod(ns: &str, name: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"app": app, "security.istio.io/tlsMode": "istio"}},
        "spec": {"containers": [
            {"name": "app", "image": "app", "ports": [{"containerPort": 8080}]},
            {"name": "istio-proxy", "image": "proxyv2"}]},
        "status": {"phase": "Running", "podIP": "10.0.0.1"}})
}

fn service(ns: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": app, "namespace": ns},
        "spec": {"selector": {"app": app}, "clusterIP": "10.96.0.10",
            "ports": [{"port": 80, "targetPort": 8080}]}})
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

/// The 40 servers of namespace `srv`, each with its Service.
fn servers(items: &mut Vec<Value>) {
    for s in 0..SERVERS {
        let app = format!("srv-{s}");
        items.push(sidecar_pod("srv", &app, &app));
        items.push(service("srv", &app));
    }
}

/// 40 STRICT servers in `srv`, one sidecar client in each of 400 namespaces, and `unrelated`
/// namespaces each holding a PERMISSIVE server no STRICT policy reaches.
fn inventory(unrelated: usize) -> Index {
    let mut items = vec![namespace("srv")];
    items.push(json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "srv", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"mtls": {"mode": "STRICT"}}}));
    servers(&mut items);
    for c in 0..CLIENT_NAMESPACES {
        let ns = format!("c-{c}");
        items.push(namespace(&ns));
        items.push(sidecar_pod(&ns, "client", "client"));
    }
    for u in 0..unrelated {
        let ns = format!("u-{u}");
        items.push(namespace(&ns));
        items.push(sidecar_pod(&ns, "other", "other"));
        items.push(service(&ns, "other"));
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let mut loader = Loader::new(Filters::default());
    loader
        .add_str("adversarial", &list)
        .expect("inventory loads");
    loader.finish()
}

/// The DestinationRule's CREATE review with `entries` exportTo namespaces.
fn review(entries: usize) -> Vec<u8> {
    let export: Vec<String> = (0..entries)
        .map(|i| format!("c-{}", i % CLIENT_NAMESPACES))
        .collect();
    let object = json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "everything-plaintext", "namespace": "c-0"},
        "spec": {"host": "*", "exportTo": export, "trafficPolicy": {"tls": {"mode": "DISABLE"}}}});
    create(
        "networking.istio.io",
        "DestinationRule",
        "destinationrules",
        object,
    )
}

/// The AdmissionReview of a CREATE of `object` (kind `kind` of `group`, resource `resource`).
fn create(group: &str, kind: &str, resource: &str, object: Value) -> Vec<u8> {
    let meta = &object["metadata"];
    serde_json::to_vec(
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "adv", "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": meta["name"], "namespace": meta["namespace"], "operation": "CREATE",
            "userInfo": {"username": "mallory"}, "object": object}}),
    )
    .expect("review serializes")
}

/// Median time of the whole admission path (parse, read, decide) and the answer's status.
fn median(index: &Index, body: &[u8]) -> (Duration, i32) {
    let mut code = 0;
    let t = median_of(|| {
        let req = admission::parse_review(body).expect("a review");
        let out = admission::decide(index, GuardMode::Enforce, &req);
        code = out.response.result.code.into();
    });
    (t, code)
}

fn median_of(mut run: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..15)
        .map(|_| {
            let started = Instant::now();
            run();
            started.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

/// Median time of a server's inline attempt (the decision within [`INLINE_WORK`]), whether it
/// finished, and the median time of the whole decision.
fn inline_attempt(index: &Index, body: &[u8]) -> (Duration, bool, Duration) {
    let req = admission::parse_review(body).expect("a review");
    let (evidence, auth) = (Evidence::inventory_only(), Authorization::NotChecked);
    let mut finished = false;
    let attempt = median_of(|| {
        let budget = Budget::new(INLINE_WORK);
        let answer =
            admission::decide_within(index, &evidence, GuardMode::Enforce, &req, &auth, &budget);
        finished = answer.is_some();
    });
    let whole = median_of(|| {
        admission::decide(index, GuardMode::Enforce, &req);
    });
    (attempt, finished, whole)
}

fn inline_budget() {
    println!("\nthe inline attempt within {INLINE_WORK} units, then the whole decision");
    println!(
        "{:<44} {:>12} {:>8} {:>12}",
        "review", "attempt p50", "inline", "whole p50"
    );
    let cases = [
        (
            "exportTo 250, 40,000 unrelated namespaces",
            inventory(40_000),
            review(250),
        ),
        (
            "exportTo 250, no unrelated namespace",
            inventory(0),
            review(250),
        ),
        (
            "NetworkPolicies: 100 clients, 1 x 10 rules",
            with_policies(100, 1, 10),
            lockdown(),
        ),
        (
            "NetworkPolicies: 10k clients, 10 x 100 rules",
            with_policies(10_000, 10, 100),
            lockdown(),
        ),
    ];
    for (name, index, body) in cases {
        let (attempt, finished, whole) = inline_attempt(&index, &body);
        let inline = if finished { "yes" } else { "pool" };
        println!("{name:<44} {attempt:>12.2?} {inline:>8} {whole:>12.2?}");
    }
}

/// `clients` pods without a proxy in namespace `att`, whose egress policies (`rules` rules in
/// each of `policies`) admit only UDP 53, beside the 40 servers, read with
/// `--respect-network-policies`.
fn with_policies(clients: usize, policies: usize, rules: usize) -> Index {
    let mut items = vec![namespace("srv"), namespace("att")];
    servers(&mut items);
    for c in 0..clients {
        let app = format!("plain-{c}");
        items.push(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": app, "namespace": "att", "labels": {"app": app}},
            "spec": {"containers": [{"name": "app", "image": "app"}]},
            "status": {"phase": "Running", "podIP": "10.1.0.1"}}));
    }
    let rules: Vec<Value> = (0..rules)
        .map(|_| json!({"ports": [{"port": 53, "protocol": "UDP"}]}))
        .collect();
    for p in 0..policies {
        items.push(
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": format!("egress-{p}"), "namespace": "att"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}}),
        );
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string();
    let filters = Filters {
        respect_network_policies: true,
        ..Filters::default()
    };
    let mut loader = Loader::new(filters);
    loader.add_str("policies", &list).expect("inventory loads");
    loader.finish()
}

/// A namespace-wide STRICT PeerAuthentication for the 40 servers.
fn lockdown() -> Vec<u8> {
    let object = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "default", "namespace": "srv"}, "spec": {"mtls": {"mode": "STRICT"}}});
    create(
        "security.istio.io",
        "PeerAuthentication",
        "peerauthentications",
        object,
    )
}

fn network_policies() {
    println!(
        "\nNetworkPolicies: egress policies of the clients' namespace admit none of 40 servers"
    );
    println!(
        "{:>8} {:>9} {:>6} {:>12} {:>7} {:>9}",
        "clients", "policies", "rules", "p50", "status", "vs 1x"
    );
    let body = lockdown();
    let mut base = None;
    for (clients, policies, rules) in [
        (100, 1, 10),
        (100, 10, 10),
        (100, 10, 100),
        (1_000, 1, 10),
        (10_000, 1, 10),
        (10_000, 10, 100),
    ] {
        let index = with_policies(clients, policies, rules);
        let (t, code) = median(&index, &body);
        let b = *base.get_or_insert(t);
        println!(
            "{clients:>8} {policies:>9} {rules:>6} {t:>12.2?} {code:>7} {:>8.2}x",
            t.as_secs_f64() / b.as_secs_f64()
        );
    }
}

fn main() {
    println!("object size: 40 STRICT servers, 400 client namespaces");
    println!(
        "{:>10} {:>12} {:>12} {:>7} {:>9}",
        "exportTo", "body bytes", "p50", "status", "vs 1x"
    );
    let index = inventory(0);
    for row in [[2, 25, 250], [2_500, 25_000, 250_000]] {
        let mut base = None;
        for entries in row {
            let body = review(entries);
            let (t, code) = median(&index, &body);
            let b = *base.get_or_insert(t);
            println!(
                "{entries:>10} {:>12} {t:>12.2?} {code:>7} {:>8.2}x",
                body.len(),
                t.as_secs_f64() / b.as_secs_f64()
            );
        }
    }
    println!(
        "\nunrelated cluster size: exportTo of 250, plus namespaces with servers it cannot reach"
    );
    println!(
        "{:>10} {:>12} {:>7} {:>9}",
        "unrelated", "p50", "status", "vs 1x"
    );
    let body = review(250);
    let mut base = None;
    for unrelated in [400, 4_000, 40_000] {
        let index = inventory(unrelated);
        let (t, code) = median(&index, &body);
        let b = *base.get_or_insert(t);
        println!(
            "{unrelated:>10} {t:>12.2?} {code:>7} {:>8.2}x",
            t.as_secs_f64() / b.as_secs_f64()
        );
    }
    network_policies();
    inline_budget();
}
