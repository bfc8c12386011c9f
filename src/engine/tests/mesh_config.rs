//! Mesh config changes: auto mTLS and the root namespace.

use serde_json::json;

use super::fixtures::*;
use crate::engine::*;

/// The seed with auto mTLS on and a mesh-wide STRICT PeerAuthentication in `root`.
fn strict_mesh_under(root: &str) -> Index {
    with(
        auto_mtls(seed()),
        [pa(root, "default", json!({"mtls": {"mode": "STRICT"}}))],
    )
}

fn mesh(root: &str, enable_auto_mtls: bool) -> MeshConfig {
    MeshConfig {
        root_namespace: root.into(),
        enable_auto_mtls,
    }
}

#[test]
fn turning_auto_mtls_off_cuts_off_sidecar_clients_of_strict_servers() {
    let index = strict_mesh_under("istio-system");
    let (on, off) = (mesh("istio-system", true), mesh("istio-system", false));
    let v = evaluate_mesh_change(&index, &on, &off, &Evidence::inventory_only());
    let b = broken(&v);
    assert!(b.contains(&"foo/sleep: auto-mtls-off".to_string()), "{b:?}");
    assert!(
        !b.iter().any(|c| c.starts_with("legacy/")),
        "legacy/sleep was cut off before the change: {b:?}"
    );
    assert!(v.servers.iter().all(|s| !s.locked_down()));
    assert!(
        !v.servers
            .iter()
            .any(|s| *s.namespace == *"foo" && *s.workload == *"httpbin"),
        "httpbin.foo has an ISTIO_MUTUAL DestinationRule"
    );
    let back = evaluate_mesh_change(&index, &off, &on, &Evidence::inventory_only());
    assert!(!back.breaks_clients(), "turning it on relaxes");
}

#[test]
fn moving_the_root_namespace_makes_its_policy_mesh_wide() {
    let index = strict_mesh_under("mesh-root");
    let (old, new) = (mesh("istio-system", true), mesh("mesh-root", true));
    let v = evaluate_mesh_change(&index, &old, &new, &Evidence::inventory_only());
    assert!(broken(&v).contains(&"legacy/sleep: no-proxy".to_string()));
    assert!(v.servers.iter().any(|s| s.locked_down()));
    assert_eq!(v.ignored_root, None);
    let unchanged = old.clone();
    let same = evaluate_mesh_change(&index, &old, &unchanged, &Evidence::inventory_only());
    assert_eq!(same, Verdict::default());
}

#[test]
fn a_root_namespace_the_guard_ignores_is_denied_even_without_policies() {
    let index = auto_mtls(seed());
    let (old, new) = (mesh("istio-system", true), mesh("kube-system", true));
    let v = evaluate_mesh_change(&index, &old, &new, &Evidence::inventory_only());
    assert_eq!(v.ignored_root.as_deref(), Some("kube-system"));
    assert!(v.denies() && v.breaks.is_empty());
}
