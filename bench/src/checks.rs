//! What availability checks cost the agent: two agents side by side in one
//! window, the same but for 20 checks at 10 s in one of them (10 HTTP GETs
//! of the collector's `/healthz` and 10 TCP connections to it), so the
//! difference is the checks' cost on this machine at this moment.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;

use crate::{Killed, cpu_seconds, median, rss_bytes, spawn};

/// The two agents' figures over the window.
pub struct Figures {
    /// CPU, ms per second: without checks, with 20.
    pub cpu_ms_per_s: (f64, f64),
    /// Resident memory, bytes (median of the window's second half).
    pub rss: (f64, f64),
    /// Check runs the collector received.
    pub runs: u64,
    /// The window's length, seconds.
    pub seconds: f64,
}

/// The `[[check]]` entries: 10 HTTP and 10 TCP, every 10 s.
fn config(http: &str) -> String {
    let mut text = String::from("[statsd]\nudp = \"off\"\nunix = \"off\"\nstream = \"off\"\n");
    for i in 0..10 {
        text.push_str(&format!(
            "\n[[check]]\nname = \"http-{i}\"\nkind = \"http\"\nurl = \"http://{http}/healthz\"\ninterval = \"10s\"\n\
             \n[[check]]\nname = \"tcp-{i}\"\nkind = \"tcp\"\naddress = \"{http}\"\ninterval = \"10s\"\n"
        ));
    }
    text
}

/// Runs both agents against the collector at `listen` (HTTP at `http`)
/// for `seconds`; `keys` are two agent key directories.
pub fn run(
    agent_bin: &Path,
    keys: (&str, &str),
    listen: &str,
    http: &str,
    work: &Path,
    seconds: u64,
) -> anyhow::Result<Figures> {
    let with_checks = work.join("checks.toml");
    std::fs::write(&with_checks, config(http))?;
    let without = work.join("no-checks.toml");
    std::fs::write(&without, "[statsd]\nudp = \"off\"\nunix = \"off\"\nstream = \"off\"\n")?;
    let start = |keys: &str, name: &str, config: &Path| -> anyhow::Result<Killed> {
        let config = config.to_str().context("path")?;
        let spool = work.join(format!("spool-{name}"));
        let spool = spool.to_str().context("path")?;
        spawn(
            agent_bin,
            &[
                "--keys",
                keys,
                "--interval",
                "1s",
                "--name",
                name,
                "--config",
                config,
                "--spool-dir",
                spool,
                listen,
            ],
            &work.join(format!("{name}.log")),
        )
    };
    let plain = start(keys.0, "bench-no-checks", &without)?;
    let checking = start(keys.1, "bench-checks", &with_checks)?;
    let checks_url = format!("http://{http}/api/checks");
    crate::wait_until("the checks to report", || {
        crate::get(&checks_url).is_ok_and(|b| b.matches("\"state\":\"up\"").count() == 20)
    })?;
    let runs = |body: &str| -> u64 {
        serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.as_array().map(|a| a.iter().filter_map(|c| c["runs"].as_u64()).sum()))
            .unwrap_or(0)
    };
    let runs0 = runs(&crate::get(&checks_url)?);
    let pids = (plain.0.id(), checking.0.id());
    let cpu0 = (cpu_seconds(pids.0)?, cpu_seconds(pids.1)?);
    let started = Instant::now();
    let (mut rss_plain, mut rss_checks) = (Vec::new(), Vec::new());
    for second in 0..seconds {
        let tick = started + Duration::from_secs(second + 1);
        if second >= seconds / 2 {
            rss_plain.push(rss_bytes(pids.0)?);
            rss_checks.push(rss_bytes(pids.1)?);
        }
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu_seconds(pids.0)? - cpu0.0, cpu_seconds(pids.1)? - cpu0.1);
    let runs = runs(&crate::get(&checks_url)?) - runs0;
    Ok(Figures {
        cpu_ms_per_s: (cpu.0 / elapsed * 1e3, cpu.1 / elapsed * 1e3),
        rss: (median(rss_plain), median(rss_checks)),
        runs,
        seconds: elapsed,
    })
}

/// Prints the figures as a table.
pub fn print(f: &Figures, ne_cpu_ms_per_s: f64, ne_rss: f64) {
    println!(
        "\n## Availability checks: 20 at 10 s (10 HTTP, 10 TCP), two agents side by side, {:.0} s\n",
        f.seconds
    );
    println!("| | no checks | 20 checks | difference | node_exporter |");
    println!("|---|---|---|---|---|");
    println!(
        "| CPU | {:.2} ms/s | {:.2} ms/s | {:+.2} ms/s | {:.2} ms/s |",
        f.cpu_ms_per_s.0,
        f.cpu_ms_per_s.1,
        f.cpu_ms_per_s.1 - f.cpu_ms_per_s.0,
        ne_cpu_ms_per_s
    );
    println!(
        "| resident memory | {:.1} MiB | {:.1} MiB | {:+.1} MiB | {:.1} MiB |",
        f.rss.0 / 1048576.0,
        f.rss.1 / 1048576.0,
        (f.rss.1 - f.rss.0) / 1048576.0,
        ne_rss / 1048576.0
    );
    println!(
        "| check runs in the window | | {} ({:.2} ms of CPU each) | | |",
        f.runs,
        if f.runs > 0 {
            (f.cpu_ms_per_s.1 - f.cpu_ms_per_s.0) * f.seconds / f.runs as f64
        } else {
            f64::NAN
        }
    );
}
