//! Instruction counts, which do not move with the neighbours' load: the mesh-wide or a
//! workload lock-down on an inventory file, reviewed once by a function callgrind counts alone
//! (`benches/run.sh` runs it so); `admission` counts the workload lock-down's whole admission
//! path instead (the AdmissionReview parsed, decided, and its answer written):
//!
//! ```sh
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*counted_review*' \
//!     --callgrind-out-file=OUT target/release/deps/instructions-* INVENTORY.json mesh|workload|admission
//! grep '^summary:' OUT
//! ```

#[path = "support/synthetic.rs"]
mod synthetic;

use mtls_guard::admission::{self, GuardMode};
use mtls_guard::engine::{evaluate, Change, Verdict};
use mtls_guard::inventory::file;
use mtls_guard::inventory::{Filters, Index};
use mtls_guard::model::{Rule, RuleKind};

fn pa(value: &serde_json::Value) -> Rule {
    Rule::from_json(RuleKind::PeerAuthentication, value).expect("synthetic policy reads")
}

/// The review callgrind counts; never inlined, so its name stays in the profile.
#[inline(never)]
fn counted_review<'a>(index: &'a Index, change: &Change<'a>) -> Verdict<'a> {
    evaluate(index, change)
}

/// The admission path callgrind counts: what `/validate` does between the body and the answer.
#[inline(never)]
fn counted_review_admission(index: &Index, body: &[u8]) -> Result<Vec<u8>, String> {
    let req = admission::parse_review(body).map_err(|e| e.to_string())?;
    let answer = admission::decide(index, GuardMode::Enforce, &req);
    answer.reply_json().map_err(|e| e.to_string())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let [path, which] = args.as_slice() else {
        return Err("usage: instructions INVENTORY.json mesh|workload|admission".into());
    };
    let index = file::load(&[path.into()], Filters::default(), false)?;
    if which == "admission" {
        let body = serde_json::to_vec(&synthetic::review(&synthetic::workload_lockdown(2)))?;
        let answer = counted_review_admission(&index, &body)?;
        println!("admission path: a {}-byte answer", answer.len());
        return Ok(());
    }
    let (old, new) = match which.as_str() {
        "mesh" => {
            let (old, new) = synthetic::mesh_lockdown();
            (Some(pa(&old)), pa(&new))
        }
        "workload" => (None, pa(&synthetic::workload_lockdown(2))),
        other => return Err(format!("no review {other:?}: mesh, workload or admission").into()),
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
