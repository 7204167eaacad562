//! `collector`: parse flags, set up logging and signals, run; errors become a
//! message on stderr and exit status 1.

use std::{io::Write as _, process::ExitCode};

use anyhow::Context;
use clap::Parser;
use curvemon_collector::{
    Config,
    cli::{AllowArgs, Cli, Command, KeygenArgs, LogFormat, RevokeArgs},
};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(command) => {
            init_tracing(cli.log_format.unwrap_or(LogFormat::Text));
            match command {
                Command::Keygen(args) => keygen(args),
                Command::Allow(args) => allow(args),
                Command::Revoke(args) => revoke(args),
            }
        }
        // The config file may set the log format: read it first.
        None => Config::from_args(cli.run, cli.log_format).and_then(|config| {
            init_tracing(config.log_format);
            serve(config)
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Not `eprintln!`: with stderr gone it would panic (exit 101,
            // not 1).
            let _ = writeln!(std::io::stderr(), "collector: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let token = CancellationToken::new();
        tokio::spawn(cancel_on_signal(token.clone()));
        curvemon_collector::run(config, token).await
    })
}

/// SIGTERM (systemd) and SIGINT (a terminal) both stop the collector cleanly.
async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) =
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("Cannot install signal handlers; stop the collector with SIGKILL.");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
        () = token.cancelled() => return,
    };
    tracing::info!(signal = name, "Shutting down.");
    token.cancel();
}

fn keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let dir = curvemon_keys::keygen::key_dir(args.keys)?;
    let name = curvemon_keys::keygen::local_hostname();
    let generated = curvemon_keys::keygen::generate(&dir, "collector", &name, args.force)?;
    println!("public key:  {}", generated.public);
    println!("wrote        {} (give this to every agent)", generated.public_path.display());
    println!("wrote        {} (mode 0600, keep it here)", generated.secret_path.display());
    println!(
        "next:        to admit only known agents, put their agent.key files in {}",
        dir.join("authorized_agents").display()
    );
    Ok(())
}

fn allow(args: AllowArgs) -> anyhow::Result<()> {
    let dir = curvemon_keys::keygen::key_dir(args.keys)?.join("authorized_agents");
    let name = match args.name {
        Some(name) => name,
        None => curvemon_keys::cert::read_public(&args.certificate)?
            .name
            .context("the key file names no host; pass --name NAME")?,
    };
    let written = curvemon_keys::allowlist::allow(&dir, &args.certificate, &name, args.force)?;
    println!("allowed     {} as {name} (the agent must use --name {name})", written.display());
    println!(
        "a running collector picks this up within seconds (or: systemctl reload curvemon-collector)"
    );
    Ok(())
}

fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    let dir = curvemon_keys::keygen::key_dir(args.keys)?.join("authorized_agents");
    let removed = curvemon_keys::allowlist::revoke(&dir, &args.name)?;
    println!("revoked     {} (removed {})", args.name, removed.display());
    println!("a running collector cuts that agent off within seconds and shows its host down");
    Ok(())
}

/// Logs go to stderr; under systemd (JOURNAL_STREAM set) without timestamps,
/// which journald adds itself.
fn init_tracing(format: LogFormat) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written is dropped, not reported with
    // `eprintln!` (tracing's default), which panics when stderr is gone (a
    // closed pipe, a restarted log reader) and would take the router or
    // the signal task with it: a collector that stops collecting, or that
    // SIGTERM no longer stops.
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .log_internal_errors(false);
    match (format, journald) {
        (LogFormat::Json, _) => builder.json().init(),
        (LogFormat::Text, true) => builder.without_time().init(),
        (LogFormat::Text, false) => builder.init(),
    }
}
