//! Writes a synthetic inventory: `cargo bench --bench gen_inventory -- PODS FILE`.

#[path = "support/synthetic.rs"]
mod synthetic;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (Some(pods), Some(out)) = (args.first().and_then(|p| p.parse().ok()), args.get(1)) else {
        eprintln!("usage: gen_inventory PODS FILE");
        std::process::exit(2);
    };
    std::fs::write(out, synthetic::inventory(pods).to_string())?;
    let review = synthetic::review(&synthetic::workload_lockdown(2));
    std::fs::write(format!("{out}.review.json"), review.to_string())?;
    eprintln!("wrote {pods} pods to {out} and a workload lock-down review to {out}.review.json");
    Ok(())
}
