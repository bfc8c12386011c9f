//! What a verdict names and counts: one entry per workload, listed and unlisted clients.

use serde_json::json;

use super::fixtures::*;
use crate::engine::*;

#[test]
fn a_statefulset_without_proxy_is_one_client_however_many_pod_shapes() {
    let mut index = seed();
    for i in 0..3 {
        let name = format!("db-{i}");
        index.upsert_pod(
            pod("legacy", "db")
                .named(&name)
                .label("statefulset.kubernetes.io/pod-name", &name)
                .build(),
        );
    }
    let shapes = index
        .workloads_in("legacy")
        .filter(|(_, w)| &*w.name == "db");
    assert_eq!(shapes.count(), 3, "each pod has its own shape");
    let v = create(&index, &seed_lockdown());
    assert_eq!(
        broken(&v),
        ["legacy/db: no-proxy", "legacy/sleep: no-proxy"]
    );
    assert_eq!(v.client_count(), 2);
}

#[test]
fn clients_without_proxy_past_the_listed_ones_are_counted() {
    let mut index = seed();
    for i in 0..LISTED_UNMESHED + 9 {
        index.upsert_pod(pod("zz-legacy", &format!("job-{i:03}")).build());
    }
    let v = create(&index, &seed_lockdown());
    assert_eq!(
        v.client_count(),
        LISTED_UNMESHED + 10,
        "legacy/sleep and the jobs"
    );
    assert_eq!(v.breaks.len(), LISTED_UNMESHED);
    assert_eq!(v.unlisted, 10);
    assert!(
        broken(&v).contains(&"legacy/sleep: no-proxy".to_string()),
        "listed by name order"
    );
}

#[test]
fn ambient_clients_past_the_listed_ones_are_counted_against_sidecars_without_hbone() {
    let mut index = seed();
    for i in 0..LISTED_UNMESHED + 3 {
        index.upsert_pod(pod("amb", &format!("app-{i:03}")).ambient().build());
    }
    let v = create(&index, &seed_lockdown());
    assert_eq!(v.unlisted, 3);
    let ambient = v
        .breaks
        .iter()
        .find(|b| b.reason == Reason::AmbientToSidecar)
        .unwrap();
    let targets: Vec<_> = v.targets(ambient).map(|s| &*s.workload).collect();
    assert_eq!(targets, ["httpbin"]);
}

/// A second pod group of `ns/app`, as a Deployment mid-rollout has under a new ReplicaSet.
fn rollout(index: &mut Index, ns: &str, app: &str) {
    let next = pod(ns, app).sidecar().named(&format!("{app}-new-1"));
    index.upsert_pod(next.label("pod-template-hash", "new").build());
}

/// A review that judges a few servers of a large index keeps its servers apart by hashing
/// instead of a table the size of the index; pod groups still share one entry.
#[test]
fn a_narrow_review_of_a_large_index_is_one_server_per_workload() {
    let mut index = seed();
    for i in 0..200 {
        index.upsert_pod(pod("filler", &format!("app-{i:03}")).sidecar().build());
    }
    rollout(&mut index, "foo", "httpbin");
    let v = create(&index, &seed_lockdown());
    let servers: Vec<_> = v
        .servers
        .iter()
        .map(|s| (&*s.namespace, &*s.workload, s.pods))
        .collect();
    assert_eq!(servers, [("foo", "httpbin", 2)]);
}

/// Pod groups come and go in a live index: a group created after another has gone still
/// joins the one that remains.
#[test]
fn a_pod_group_created_after_another_has_gone_joins_the_remaining_one() {
    let mut index = seed();
    for group in ["a", "b"] {
        let p = pod("roll", "web")
            .sidecar()
            .named(&format!("web-{group}-1"));
        index.upsert_pod(p.label("pod-template-hash", group).build());
    }
    index.remove_pod("roll", "web-a-1");
    let p = pod("roll", "web").sidecar().named("web-c-1");
    index.upsert_pod(p.label("pod-template-hash", "c").build());
    let old = mesh_policy(json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}));
    let v = update(&index, &old, &mesh_policy(json!({"peers": [{"mtls": {}}]})));
    let web: Vec<_> = v.servers.iter().filter(|s| *s.workload == *"web").collect();
    assert_eq!(web.len(), 1, "{:?}", v.servers);
    assert_eq!(web[0].pods, 2);
}

#[test]
fn a_workload_mid_rollout_is_one_server_and_one_client() {
    let mut index = seed();
    rollout(&mut index, "bar", "httpbin");
    rollout(&mut index, "foo", "sleep");
    let groups = |ns: &str, name: &str| {
        index
            .workloads_in(ns)
            .filter(|(_, w)| &*w.name == name)
            .count()
    };
    assert_eq!((groups("bar", "httpbin"), groups("foo", "sleep")), (2, 2));
    let old = mesh_policy(json!({"peers": [{"mtls": {"mode": "PERMISSIVE"}}]}));
    let v = update(&index, &old, &mesh_policy(json!({"peers": [{"mtls": {}}]})));
    let named: Vec<_> = v
        .servers
        .iter()
        .filter(|s| *s.namespace == *"bar" && *s.workload == *"httpbin")
        .collect();
    assert_eq!(named.len(), 1, "{:?}", v.servers);
    assert_eq!(named[0].pods, 2);
    let b = broken(&v);
    let sleeps = b
        .iter()
        .filter(|c| *c == "foo/sleep: auto-mtls-off")
        .count();
    assert_eq!(sleeps, 1, "{b:?}");
    for brk in &v.breaks {
        let mut targets: Vec<_> = v
            .targets(brk)
            .map(|s| (&s.namespace, &s.workload))
            .collect();
        let all = targets.len();
        targets.sort();
        targets.dedup();
        assert_eq!(targets.len(), all, "{:?} names a server twice", brk.client);
    }
}

#[test]
fn a_break_targets_what_its_variant_names_in_order() {
    use crate::model::Mode;
    let server = |name: &'static str, before: Mode, accepts_hbone: bool| Server {
        namespace: "foo".into(),
        workload: name.into(),
        pods: 1,
        ports: smallvec::smallvec![PortChange {
            port: Some(80),
            before,
            after: Mode::Strict,
            decided_by: None,
        }],
        accepts_hbone,
    };
    let verdict = Verdict {
        servers: vec![
            server("hbone", Mode::Permissive, true),
            server("already-strict", Mode::Strict, false),
            server("sidecar", Mode::Permissive, false),
        ],
        ..Verdict::default()
    };
    let names = |targets: Targets| -> Vec<String> {
        let b = Break {
            client: Client::Unknown,
            tier: Tier::Inventory,
            reason: Reason::NoProxy,
            targets,
            denies: true,
        };
        verdict
            .targets(&b)
            .map(|s| s.workload.to_string())
            .collect()
    };
    assert_eq!(names(Targets::LockedDown), ["hbone", "sidecar"]);
    assert_eq!(names(Targets::LockedDownWithoutHbone), ["sidecar"]);
    assert_eq!(
        names(Targets::Servers(vec![2, 7, 1])),
        ["sidecar", "already-strict"]
    );
}
