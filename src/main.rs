use std::process::ExitCode;

use clap::Parser;
use mtls_guard::app;
use mtls_guard::config::{Cli, Command, LogFormat};

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(app::serve(*args))?,
        Command::Review(args) => {
            println!("{}", serde_json::to_string_pretty(&app::review(&args)?)?)
        }
        Command::Check(args) => {
            let (report, denied) = tokio::runtime::Runtime::new()?.block_on(app::check(&args))?;
            print!("{report}");
            if denied {
                std::io::Write::flush(&mut std::io::stdout())?;
                std::process::exit(1);
            }
        }
        Command::Report(args) => {
            print!(
                "{}",
                tokio::runtime::Runtime::new()?.block_on(app::report(&args))?
            )
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
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mtls-guard: {e:#}");
            ExitCode::from(2)
        }
    }
}
