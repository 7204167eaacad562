//! `agent`: parse flags, set up logging and signals, run; errors become a
//! message on stderr and exit status 1.

use std::process::ExitCode;

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
        for (name, default, reads) in curvemon_agent::collectors::CATALOG {
            println!("{name:<11} {:<4} {reads}", if *default { "on" } else { "off" });
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
            eprintln!("agent: error: {error:#}");
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
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match (format, journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}
