use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use mtls_guard::app;
use mtls_guard::config::{Cli, Command};

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(app::serve(*args))?,
        Command::Review(args) => {
            println!("{}", serde_json::to_string_pretty(&app::review(&args)?)?)
        }
        Command::Check(args) => {
            let (report, denied) = tokio::runtime::Runtime::new()?.block_on(app::check(&args))?;
            print!("{report}");
            if denied {
                return Ok(ExitCode::from(1));
            }
        }
        Command::Report(args) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            tokio::runtime::Runtime::new()?.block_on(app::report(&args, &mut out))?
        }
        Command::Certs(args) => {
            let bundle = app::certs(&args)?;
            eprintln!(
                "wrote ca.crt, tls.crt and tls.key to {}",
                args.out.display()
            );
            println!("{bundle}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` writes logs from a background thread; one-shot commands straight to stderr.
    // Colour only for a person at a terminal, not in log files and collectors.
    let logs = mtls_guard::logs::init(
        cli.log_format,
        matches!(cli.command, Command::Serve(_)),
        std::io::stderr().is_terminal(),
    );
    let result = run(cli);
    // Queued log lines come before the final word.
    drop(logs);
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mtls-guard: {e:#}");
            ExitCode::from(2)
        }
    }
}
