//! The load generator: N simulated agents ([`worker`]), spread over
//! processes of at most [`PER_PROCESS`] (every agent is one descriptor, and
//! a process may hold 20,000 here), against a release collector; and the
//! ingest ceiling beside raw libzmq's ([`raw`]).
//!
//! `bench fleet --agents N [--interval 1s] [--seconds 30] [--restart]`:
//! time until all N are up, then over a window of `--seconds`: messages
//! and samples per second the collector took, its CPU per message and per
//! sample (all its threads, from schedstat), its resident memory at the
//! window's start and end, the fewest hosts up during the window, samples
//! missed (sequence gaps) and samples sent but not stored; with
//! `--restart`, the collector is killed and started again on its store and
//! the time until all N are up again is measured.
//!
//! `bench flood --agents N [--seconds 10]`: every agent sends as fast as
//! its connection takes; messages per second taken by a bare libzmq CURVE
//! ROUTER that only counts them, then by the collector, side by side.

pub mod raw;
pub mod worker;

use std::{
    io::{BufRead, BufReader, Write as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{cpu_seconds, free_port, get, rss_bytes};

/// Simulated agents per process.
pub const PER_PROCESS: usize = 2_400;

/// The workers' counters, summed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub up: u64,
    pub sent: u64,
    pub connects: u64,
    pub failures: u64,
    pub rejects: u64,
    pub lost: u64,
}

/// The worker processes and their latest counters.
pub struct Workers {
    children: Vec<Child>,
    latest: Arc<Mutex<Vec<Totals>>>,
}

impl Workers {
    /// Starts `n` agents against `endpoint` trusting `server_key`.
    pub fn start(
        n: usize,
        endpoint: &str,
        server: &curvemon_keys::PublicKey,
        interval: Duration,
        flood: bool,
        ramp: Duration,
    ) -> anyhow::Result<Workers> {
        let exe = std::env::current_exe()?;
        let processes = n.div_ceil(PER_PROCESS);
        let latest = Arc::new(Mutex::new(vec![Totals::default(); processes]));
        let mut children = Vec::new();
        for p in 0..processes {
            let first = p * PER_PROCESS;
            let count = PER_PROCESS.min(n - first);
            let mut child = Command::new(&exe)
                .args(["fleet-worker", "--endpoint", endpoint, "--server-key", &server.to_z85()])
                .args(["--first", &first.to_string(), "--count", &count.to_string()])
                .args(["--interval-ms", &interval.as_millis().to_string()])
                .args(["--ramp-ms", &ramp.as_millis().to_string(), "--total", &n.to_string()])
                .args(if flood { &["--flood"][..] } else { &[][..] })
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("starting a load-generator process")?;
            let out = child.stdout.take().context("worker stdout")?;
            let latest = Arc::clone(&latest);
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                    let n = |k: &str| v[k].as_u64().unwrap_or(0);
                    let t = Totals {
                        up: n("up"),
                        sent: n("sent"),
                        connects: n("connects"),
                        failures: n("failures"),
                        rejects: n("rejects"),
                        lost: n("lost"),
                    };
                    if let Ok(mut all) = latest.lock() {
                        all[p] = t;
                    }
                }
            });
            children.push(child);
        }
        Ok(Workers { children, latest })
    }

    /// CPU seconds the worker processes have used, all threads.
    pub fn cpu_seconds(&self) -> f64 {
        self.children.iter().filter_map(|c| crate::cpu_seconds(c.id()).ok()).sum()
    }

    /// The counters summed over the processes (each reports every second).
    pub fn totals(&self) -> Totals {
        let all = self.latest.lock().map(|a| a.clone()).unwrap_or_default();
        all.iter().fold(Totals::default(), |a, t| Totals {
            up: a.up + t.up,
            sent: a.sent + t.sent,
            connects: a.connects + t.connects,
            failures: a.failures + t.failures,
            rejects: a.rejects + t.rejects,
            lost: a.lost + t.lost,
        })
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            drop(child.stdin.take());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A release collector on free ports with its store in `work/data`.
pub struct Collector {
    process: Option<Child>,
    pub listen: String,
    pub http: String,
    bin: std::path::PathBuf,
    keys: String,
    data: String,
    log: std::path::PathBuf,
}

impl Collector {
    pub fn start(bin_dir: &Path, work: &Path, extra: &[&str]) -> anyhow::Result<Collector> {
        let bin = bin_dir.join("collector");
        let keys = work.join("collector-keys");
        if !keys.join("collector.key").exists() {
            let ok = Command::new(&bin).args(["keygen", "--keys"]).arg(&keys).output()?;
            if !ok.status.success() {
                bail!("collector keygen: {}", String::from_utf8_lossy(&ok.stderr));
            }
        }
        let (zmq_port, http_port) = (free_port()?, free_port()?);
        let mut c = Collector {
            process: None,
            listen: format!("tcp://127.0.0.1:{zmq_port}"),
            http: format!("127.0.0.1:{http_port}"),
            bin,
            keys: keys.to_str().context("path")?.to_string(),
            data: work.join("data").to_str().context("path")?.to_string(),
            log: work.join("collector.log"),
        };
        c.restart(extra)?;
        Ok(c)
    }

    /// Starts it (again) on the same ports and store.
    pub fn restart(&mut self, extra: &[&str]) -> anyhow::Result<()> {
        self.stop();
        let mut args = vec!["--keys", &self.keys, "--listen", &self.listen, "--http", &self.http];
        args.extend(["--data-dir", &self.data]);
        args.extend_from_slice(extra);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(&args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        self.process = Some(child);
        let url = format!("http://{}/healthz", self.http);
        crate::wait_until("the collector's HTTP", || get(&url).is_ok())?;
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.process.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, as a crash.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn key(&self) -> anyhow::Result<curvemon_keys::PublicKey> {
        Ok(curvemon_keys::cert::read_public(&Path::new(&self.keys).join("collector.key"))?.public)
    }

    pub fn stats(&self) -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&get(&format!("http://{}/api/stats", self.http))?)?)
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One line of the capacity table.
#[derive(Debug, serde::Serialize)]
pub struct FleetResult {
    pub agents: usize,
    pub all_up_s: Option<f64>,
    pub messages_per_s: f64,
    pub samples_per_s: f64,
    pub cpu_cores: f64,
    pub us_per_message: f64,
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    pub min_up: u64,
    /// One scrape of /metrics in the window: seconds and megabytes.
    pub scrape_s: f64,
    pub scrape_mb: f64,
    /// One `/api/hosts` in the window (the mean of five), seconds.
    pub api_hosts_s: f64,
    pub missed: u64,
    /// Connection attempts that failed (refused, timed out), agents' side.
    pub failed_attempts: u64,
    pub restart_all_up_s: Option<f64>,
    /// Whether the restart was measured at all.
    pub restarted: bool,
    /// The load generator's CPU in the window (all its processes).
    pub generator_cores: f64,
    /// The machine's idle CPU in the window (`/proc/stat`).
    pub idle_cores: f64,
}

/// The machine's idle CPU seconds so far (idle and iowait, all CPUs).
fn idle_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // USER_HZ is 100 on Linux.
    (ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0)) / 100.0
}

fn n(v: &Value, path: &[&str]) -> u64 {
    path.iter().fold(v, |v, k| &v[*k]).as_u64().unwrap_or(0)
}

/// Waits until the collector counts `agents` hosts up; the seconds it took,
/// or `None` after `limit`.
fn until_all_up(c: &Collector, agents: usize, limit: Duration) -> Option<f64> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if c.stats().is_ok_and(|s| n(&s, &["hosts_up"]) >= agents as u64) {
            return Some(start.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    None
}

/// `bench fleet`.
pub fn fleet(
    bin_dir: &Path,
    work: &Path,
    agents: usize,
    interval: Duration,
    seconds: u64,
    restart: bool,
    ramp: Duration,
) -> anyhow::Result<FleetResult> {
    let mut c = Collector::start(bin_dir, work, &[])?;
    let started = Instant::now();
    let workers = Workers::start(agents, &c.listen, &c.key()?, interval, false, ramp)?;
    let limit = Duration::from_secs(240) + ramp;
    let all_up = until_all_up(&c, agents, limit.saturating_sub(started.elapsed()));
    let all_up_s = all_up.map(|_| started.elapsed().as_secs_f64());
    // Settle, then the window.
    // (Shorter for a short window: the test's 200 agents settle at once.)
    std::thread::sleep(Duration::from_secs(5.min(seconds / 2)));
    let s0 = c.stats()?;
    let (cpu0, t0, rss0) = (cpu_seconds(c.pid())?, Instant::now(), rss_bytes(c.pid())?);
    let (gen0, idle0) = (workers.cpu_seconds(), idle_seconds());
    let mut min_up = u64::MAX;
    let mut scrape = None;
    while t0.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        min_up = min_up.min(n(&c.stats()?, &["hosts_up"]));
        // Halfway: one Prometheus scrape of /metrics, timed, while the
        // fleet goes on sending (the hosts up before and after it show
        // whether ingest noticed).
        if scrape.is_none() && t0.elapsed() >= Duration::from_secs(seconds / 2) {
            let started = Instant::now();
            let body = ureq::get(&format!("http://{}/metrics", c.http))
                .call()?
                .body_mut()
                .with_config()
                .limit(1 << 32)
                .read_to_string()?;
            let scraped = started.elapsed().as_secs_f64();
            // Then five dashboard loads of the fleet (`/api/hosts`).
            let started = Instant::now();
            for _ in 0..5 {
                ureq::get(&format!("http://{}/api/hosts", c.http))
                    .call()?
                    .body_mut()
                    .with_config()
                    .limit(1 << 32)
                    .read_to_string()?;
            }
            scrape =
                Some((scraped, body.len() as f64 / 1e6, started.elapsed().as_secs_f64() / 5.0));
        }
    }
    let s1 = c.stats()?;
    let (cpu1, wall, rss1) =
        (cpu_seconds(c.pid())?, t0.elapsed().as_secs_f64(), rss_bytes(c.pid())?);
    let messages = n(&s1, &["frames_received"]) - n(&s0, &["frames_received"]);
    let samples = n(&s1, &["store", "samples"]) - n(&s0, &["store", "samples"]);
    let cpu = cpu1 - cpu0;
    let generator_cores = (workers.cpu_seconds() - gen0) / wall;
    let idle_cores = (idle_seconds() - idle0) / wall;
    let missed = n(&s1, &["missed_samples"]);
    let failed_attempts = workers.totals().failures;
    let restart_all_up_s = if restart {
        c.restart(&[])?;
        until_all_up(&c, agents, Duration::from_secs(120))
    } else {
        None
    };
    drop(workers);
    Ok(FleetResult {
        agents,
        all_up_s,
        messages_per_s: messages as f64 / wall,
        samples_per_s: samples as f64 / wall,
        cpu_cores: cpu / wall,
        us_per_message: cpu / messages.max(1) as f64 * 1e6,
        rss_start_mib: rss0 / 1048576.0,
        rss_end_mib: rss1 / 1048576.0,
        min_up: if min_up == u64::MAX { 0 } else { min_up },
        scrape_s: scrape.map_or(0.0, |s| s.0),
        scrape_mb: scrape.map_or(0.0, |s| s.1),
        api_hosts_s: scrape.map_or(0.0, |s| s.2),
        missed,
        failed_attempts,
        restart_all_up_s,
        restarted: restart,
        generator_cores,
        idle_cores,
    })
}

/// `bench flood`: (raw libzmq messages/s, collector messages/s).
pub fn flood(
    bin_dir: &Path,
    work: &Path,
    agents: usize,
    seconds: u64,
) -> anyhow::Result<(f64, f64)> {
    let raw_rate = {
        let server = raw::Server::start()?;
        let workers = Workers::start(
            agents,
            &server.endpoint,
            &server.public(),
            Duration::from_secs(1),
            true,
            Duration::ZERO,
        )?;
        let rate = measure(seconds, || Ok(server.received()))?;
        drop(workers);
        rate
    };
    let c = Collector::start(bin_dir, work, &["--max-agent-rate", "1000000000"])?;
    let workers =
        Workers::start(agents, &c.listen, &c.key()?, Duration::from_secs(1), true, Duration::ZERO)?;
    until_all_up(&c, agents, Duration::from_secs(60));
    let rate = measure(seconds, || Ok(n(&c.stats()?, &["frames_received"])))?;
    drop(workers);
    Ok((raw_rate, rate))
}

/// Messages per second of a counter over `seconds`, after 3 s of warm-up.
fn measure(seconds: u64, count: impl Fn() -> anyhow::Result<u64>) -> anyhow::Result<f64> {
    std::thread::sleep(Duration::from_secs(3));
    let (c0, t0) = (count()?, Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    Ok((count()? - c0) as f64 / t0.elapsed().as_secs_f64())
}

/// Prints the fleet table's header and rows.
pub fn print(rows: &[FleetResult]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "| agents | all up after | messages/s | samples stored/s | collector CPU (cores) | µs CPU per message | RSS start → end (MiB) | fewest up in window | /metrics scrape | /api/hosts | missed | failed connection attempts | all up after a restart | generator CPU (cores) | machine idle (cores) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let secs =
            |s: Option<f64>| s.map_or("not within the limit".to_string(), |s| format!("{s:.1} s"));
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.0} → {:.0} | {} | {:.2} s, {:.0} MB | {:.2} s | {} | {} | {} | {:.2} | {:.2} |",
            r.agents,
            secs(r.all_up_s),
            r.messages_per_s,
            r.samples_per_s,
            r.cpu_cores,
            r.us_per_message,
            r.rss_start_mib,
            r.rss_end_mib,
            r.min_up,
            r.scrape_s,
            r.scrape_mb,
            r.api_hosts_s,
            r.missed,
            r.failed_attempts,
            if r.restarted { secs(r.restart_all_up_s) } else { "not measured".into() },
            r.generator_cores,
            r.idle_cores,
        );
    }
}
