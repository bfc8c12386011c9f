use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use clap::Parser;
use mtls_guard::app;
use mtls_guard::config::{Cli, Command, LogFormat};

/// `serve` writes log lines from a background thread, so an admission answer never waits on
/// stderr (a full queue blocks rather than drops); the returned guard flushes them at exit,
/// for at most a second. One-shot commands write straight to stderr and lose nothing.
fn init_tracing(format: LogFormat, background: bool) -> Option<WorkerGuard> {
    let (writer, guard) = if background {
        let (writer, guard) = NonBlockingBuilder::default()
            .buffered_lines_limit(4096)
            .lossy(false)
            .finish(std::io::stderr());
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in log files and collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

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
    let logs = init_tracing(cli.log_format, matches!(cli.command, Command::Serve(_)));
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
