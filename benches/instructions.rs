//! Instruction counts, which do not move with the neighbours' load: the mesh-wide or a
//! workload lock-down on an inventory file, reviewed once by a function callgrind counts alone
//! (`benches/run.sh` runs it so):
//!
//! ```sh
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*counted_review*' \
//!     --callgrind-out-file=OUT target/release/deps/instructions-* INVENTORY.json mesh|workload
//! grep '^summary:' OUT
//! ```

#[path = "support/synthetic.rs"]
mod synthetic;

use mtls_guard::engine::{evaluate, Change, Verdict};
use mtls_guard::inventory::file;
use mtls_guard::inventory::{Filters, Index};
use mtls_guard::model::{Rule, RuleKind};

fn pa(value: &serde_json::Value) -> Rule {
    Rule::from_json(RuleKind::PeerAuthentication, value).expect("synthetic policy reads")
}

/// The review callgrind counts; never inlined, so its name stays in the profile.
#[inline(never)]
fn counted_review(index: &Index, change: &Change) -> Verdict {
    evaluate(index, change)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [path, which] = args.as_slice() else {
        return Err("usage: instructions INVENTORY.json mesh|workload".into());
    };
    let index = file::load(&[path.into()], Filters::default(), false)?;
    let (old, new) = match which.as_str() {
        "mesh" => {
            let (old, new) = synthetic::mesh_lockdown();
            (Some(pa(&old)), pa(&new))
        }
        "workload" => (None, pa(&synthetic::workload_lockdown(2))),
        other => return Err(format!("no review {other:?}: mesh or workload").into()),
    };
    let change = Change {
        old: old.as_ref(),
        new: Some(&new),
    };
    let v = counted_review(&index, &change);
    println!(
        "{which} lock-down: {} servers, {} clients",
        v.servers.len(),
        v.client_count()
    );
    Ok(())
}
