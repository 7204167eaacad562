//! `agent`: parse flags, set up logging and signals, run; errors become a
//! message on stderr and exit status 1.

use std::{io::Write as _, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use curvemon_agent::{
    Config,
    cli::{Cli, Command, KeygenArgs, LogFormat},
    signals::Signals,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    if cli.run.list_collectors {
        for spec in curvemon_agent::collectors::CATALOG {
            let every = spec.every.map_or_else(
                || "every sample".to_string(),
                |d| format!("every {}", humantime::format_duration(d)),
            );
            let on = if spec.default_on { "on" } else { "off" };
            println!("{:<11} {on:<4} {every:<13} {}", spec.name, spec.reads);
        }
        return ExitCode::SUCCESS;
    }
    let result = match cli.command {
        Some(Command::Keygen(args)) => keygen(args),
        None => Config::from_args(cli.run).and_then(|config| {
            let signals = Signals::install().context("installing signal handlers")?;
            curvemon_agent::run(config, &signals)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not `eprintln!`: with stderr gone it would panic (exit 101,
            // not 1).
            let _ = writeln!(std::io::stderr(), "agent: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let dir = curvemon_keys::keygen::key_dir(args.keys)?;
    let name = args.name.unwrap_or_else(curvemon_keys::keygen::local_hostname);
    let generated = curvemon_keys::keygen::generate(&dir, "agent", &name, args.force)?;
    println!("public key:  {}", generated.public);
    println!("wrote        {} (give this to the collector)", generated.public_path.display());
    println!("wrote        {} (mode 0600, keep it here)", generated.secret_path.display());
    println!(
        "next:        copy the collector's collector.key into {} and copy agent.key into the \
         collector's authorized_agents/ as {name}.key",
        dir.display()
    );
    Ok(())
}

/// Logs go to stderr; under systemd (JOURNAL_STREAM set) without timestamps,
/// which journald adds itself.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::{
        filter::Targets, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _,
    };
    // `Targets` ("info", "warn,curvemon_agent=debug") rather than EnvFilter:
    // the same RUST_LOG levels without a regex engine in every agent.
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|spec| spec.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written is dropped, not reported with
    // `eprintln!` (tracing's default), which panics when stderr is gone (a
    // closed pipe, a restarted log reader) and would stop the agent.
    let layer =
        fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(filter);
    match (format, journald) {
        (LogFormat::Json, _) => registry.with(layer.json()).init(),
        (LogFormat::Text, true) => registry.with(layer.without_time()).init(),
        (LogFormat::Text, false) => registry.with(layer).init(),
    }
}
