//! `bench`: what the agent costs, measured side by side with node_exporter
//! on the same machine in the same run (`docs/performance.md`).
//!
//! Part 1, in this process: CPU time of one full collection of every
//! default family (median of many), and the bytes of a metrics message and
//! of the model on the wire; node_exporter's CPU time and bytes per scrape.
//!
//! Part 2, whole processes: the release agent at a 1 s interval reporting
//! to a release collector, and node_exporter scraped once a second, for
//! `--seconds` (60 by default); then, in a second window of the same length,
//! an agent that reads every family every second, beside node_exporter
//! again. CPU is every thread's run time from /proc/<pid>/task/*/schedstat
//! over the window; memory is VmRSS from /proc/<pid>/status, sampled each
//! second (the median of the second half is the steady figure).
//!
//! Part 3, with the first agent (StatsD on, idle until then): StatsD lines
//! per CPU second, its cost at 10,000 lines a second, and the wire bytes of
//! 1,000 application series (see `statsd.rs`).
//!
//! Part 4, two more agents side by side, one with 20 availability checks at
//! 10 s (see `checks.rs`).
//!
//! Part 5, no-loss delivery: the spool's bytes per sample, the store's
//! write cost, bytes per sample and 7-day query time, and 100 agents'
//! backfill (see `delivery.rs`).
//!
//! Every agent here spools to disk and the collector keeps its store, as
//! installed.
//!
//! Exits 1 if the agent's CPU is more than 1/20 of node_exporter's, or its
//! resident memory more than 1/4 (with StatsD on and idle).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use curvemon_agent::{collectors, options::Options, roots::Roots, sampler::Sampler};
use curvemon_protocol::{Message, Metrics, codec};

mod checks;
mod delivery;
mod fleet;
mod statsd;
mod store_fleet;

fn main() -> std::process::ExitCode {
    match bench() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench() -> anyhow::Result<()> {
    let mut seconds = 60u64;
    let mut args = std::env::args().skip(1).peekable();
    match args.peek().map(String::as_str) {
        Some("fleet-worker") => return fleet_worker(args.skip(1)),
        Some("fleet" | "flood") => return fleet_command(args),
        Some("store") => return store_command(args.skip(1)),
        _ => {}
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => seconds = args.next().context("--seconds N")?.parse()?,
            other => bail!("unknown argument {other:?}; usage: bench [--seconds N]"),
        }
    }
    let bin_dir = std::env::current_exe()?.parent().context("no exe dir")?.to_path_buf();
    let node_exporter = Path::new("/usr/bin/prometheus-node-exporter");
    if !node_exporter.exists() {
        bail!("{} is missing: apt-get install prometheus-node-exporter", node_exporter.display());
    }
    let work = std::env::temp_dir().join(format!("curvemon-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let result = run(&bin_dir, node_exporter, &work, seconds);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `bench fleet-worker ...` (started by `bench fleet` and `bench flood`).
fn fleet_worker(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut w = fleet::worker::Args {
        endpoint: String::new(),
        server_key: [0; 32],
        first: 0,
        count: 0,
        interval: Duration::from_secs(1),
        flood: false,
        ramp: Duration::ZERO,
        total: 0,
    };
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--endpoint" => w.endpoint = value()?,
            "--server-key" => {
                let key: curvemon_keys::PublicKey =
                    value()?.parse().map_err(|e| anyhow::anyhow!("--server-key: {e:?}"))?;
                w.server_key = *key.as_bytes();
            }
            "--first" => w.first = value()?.parse()?,
            "--count" => w.count = value()?.parse()?,
            "--interval-ms" => w.interval = Duration::from_millis(value()?.parse()?),
            "--flood" => w.flood = true,
            "--ramp-ms" => w.ramp = Duration::from_millis(value()?.parse()?),
            "--total" => w.total = value()?.parse()?,
            other => bail!("fleet-worker: unknown argument {other:?}"),
        }
    }
    fleet::worker::run(&w)
}

/// `bench store --hosts N[,N...] [--seconds 30]`.
fn store_command(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let mut hosts = vec![1_000usize];
    let mut seconds = 30;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--hosts" => hosts = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?,
            "--seconds" => seconds = value()?.parse()?,
            other => bail!("store: unknown argument {other:?}"),
        }
    }
    let work = std::env::temp_dir().join(format!("curvemon-store-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let rows: anyhow::Result<Vec<_>> =
        hosts.into_iter().map(|n| store_fleet::run(&work, n, seconds)).collect();
    let _ = std::fs::remove_dir_all(&work);
    store_fleet::print(&rows?);
    Ok(())
}

/// `bench fleet --agents N[,N...] [--interval 1s] [--seconds 30] [--restart] [--ramp 60s] [--json]`
/// or `bench flood --agents N[,N...] [--seconds 10]`.
fn fleet_command(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let command = args.next().unwrap_or_default();
    let mut agents = vec![200usize];
    let mut interval = Duration::from_secs(1);
    let mut seconds = if command == "flood" { 10 } else { 30 };
    let mut restart = false;
    let mut json = false;
    let mut ramp = Duration::ZERO;
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--agents" => {
                agents = value()?.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--interval" => interval = humantime::parse_duration(&value()?)?,
            "--seconds" => seconds = value()?.parse()?,
            "--restart" => restart = true,
            "--ramp" => ramp = humantime::parse_duration(&value()?)?,
            "--json" => json = true,
            other => bail!("{command}: unknown argument {other:?}"),
        }
    }
    let bin_dir = std::env::current_exe()?.parent().context("no exe dir")?.to_path_buf();
    if command == "flood" {
        println!(
            "| agents | raw libzmq CURVE ROUTER (messages/s) | collector (messages/s) | ratio |"
        );
        println!("|---|---|---|---|");
    }
    let mut rows = Vec::new();
    for n in agents {
        let work =
            std::env::temp_dir().join(format!("curvemon-{command}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&work)?;
        let result = if command == "flood" {
            fleet::flood(&bin_dir, &work, n, seconds).map(|(raw, ours)| {
                println!("| {n} | {raw:.0} | {ours:.0} | {:.0} % |", ours / raw * 100.0);
            })
        } else {
            fleet::fleet(&bin_dir, &work, n, interval, seconds, restart, ramp).map(|r| rows.push(r))
        };
        let _ = std::fs::remove_dir_all(&work);
        result?;
    }
    if command == "fleet" && json {
        println!("{}", serde_json::to_string(&rows)?);
    } else if command == "fleet" {
        fleet::print(&rows);
    }
    Ok(())
}

/// CPU seconds a process has used, all threads, in nanosecond resolution
/// (`/proc/<pid>/task/*/schedstat`; utime and stime only count 10 ms ticks).
/// Threads that exited during the window are not counted, which only
/// favours the process that starts threads per request (node_exporter).
pub(crate) fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(&path) {
            total += text.split_whitespace().next().context("schedstat format")?.parse::<u64>()?;
        }
    }
    Ok(total as f64 / 1e9)
}

/// Resident memory of a process in bytes.
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    let kib: f64 = line.split_whitespace().nth(1).context("VmRSS value")?.parse()?;
    Ok(kib * 1024.0)
}

/// This process's resident memory.
pub(crate) fn rss_self() -> anyhow::Result<f64> {
    rss_bytes(std::process::id())
}

/// CPU seconds of this process's threads named `name`.
pub(crate) fn thread_cpu(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

pub(crate) fn process_cpu_now() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// CPU and memory of an agent and node_exporter over one window.
struct Window {
    seconds: f64,
    agent_cpu: f64,
    ne_cpu: f64,
    /// Medians of the window's second half.
    agent_rss: f64,
    ne_rss: f64,
}

/// Scrapes node_exporter once a second for `seconds` while reading both
/// processes' CPU (start and end) and resident memory (each second).
fn window(agent_pid: u32, ne_pid: u32, ne_url: &str, seconds: u64) -> anyhow::Result<Window> {
    let (agent_cpu0, ne_cpu0) = (cpu_seconds(agent_pid)?, cpu_seconds(ne_pid)?);
    let started = Instant::now();
    let (mut agent_rss, mut ne_rss) = (Vec::new(), Vec::new());
    for second in 0..seconds {
        let tick = started + Duration::from_secs(second + 1);
        get(ne_url)?;
        if second >= seconds / 2 {
            agent_rss.push(rss_bytes(agent_pid)?);
            ne_rss.push(rss_bytes(ne_pid)?);
        }
        std::thread::sleep(tick.saturating_duration_since(Instant::now()));
    }
    Ok(Window {
        seconds: started.elapsed().as_secs_f64(),
        agent_cpu: cpu_seconds(agent_pid)? - agent_cpu0,
        ne_cpu: cpu_seconds(ne_pid)? - ne_cpu0,
        agent_rss: median(agent_rss),
        ne_rss: median(ne_rss),
    })
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A collector on free loopback ports, its store in `data`; with its
/// agent endpoint and HTTP address.
fn collector(
    bin: &Path,
    keys: &str,
    data: &Path,
    log: &Path,
) -> anyhow::Result<(Killed, String, String)> {
    let (zmq_port, http_port) = (free_port()?, free_port()?);
    let listen = format!("tcp://127.0.0.1:{zmq_port}");
    let http = format!("127.0.0.1:{http_port}");
    let data = data.to_str().context("path")?;
    let args = ["--keys", keys, "--listen", &listen, "--http", &http, "--data-dir", data];
    Ok((spawn(bin, &args, log)?, listen, http))
}

fn spawn(bin: &Path, args: &[&str], log: &Path) -> anyhow::Result<Killed> {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    Ok(Killed(child))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub(crate) fn get(url: &str) -> anyhow::Result<String> {
    Ok(ureq::get(url).call()?.body_mut().read_to_string()?)
}

pub(crate) fn wait_until(what: &str, mut ok: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn run(bin_dir: &Path, node_exporter: &Path, work: &Path, seconds: u64) -> anyhow::Result<()> {
    let ne_port = free_port()?;
    let ne = spawn(
        node_exporter,
        &[&format!("--web.listen-address=127.0.0.1:{ne_port}")],
        &work.join("ne.log"),
    )?;
    let ne_url = format!("http://127.0.0.1:{ne_port}/metrics");
    wait_until("node_exporter", || get(&ne_url).is_ok())?;

    // ---- Part 1: one collection, one scrape.
    let names = collectors::select(None, &Options::default(), &[])?;
    let mut sampler = Sampler::new(collectors::build(&names, &Options::default()));
    let roots = Roots::new("/proc");
    let mut sample = sampler.sample(&roots);
    let mut per_collection = Vec::new();
    for _ in 0..200 {
        let start = process_cpu_now();
        sample = sampler.sample(&roots);
        per_collection.push(process_cpu_now() - start);
    }
    let metrics = codec::encode(&Message::Metrics(Metrics {
        seq: 1_000_000,
        taken_at_ms: 1_795_000_000_000,
        schema_revision: sample.revision,
        values: sample.values.clone(),
    }));
    let model_bytes = codec::encode(&Message::Model(curvemon_protocol::Model {
        hostname: "bench".into(),
        machine_id: String::new(),
        boot_id: String::new(),
        kernel: String::new(),
        os: String::new(),
        cpu_model: String::new(),
        cpu_count: 0,
        mem_total_bytes: 0,
        swap_total_bytes: 0,
        boot_time_unix: 0,
        agent_version: String::new(),
        interval_ms: 1000,
        schema: sample.schema(),
    }))
    .len();
    let mut ne_bytes = 0;
    let ne_before = cpu_seconds(ne.0.id())?;
    let scrapes = 20;
    for _ in 0..scrapes {
        ne_bytes = get(&ne_url)?.len();
    }
    let ne_per_scrape = (cpu_seconds(ne.0.id())? - ne_before) / f64::from(scrapes);
    let collection = median(per_collection);
    // The same, once a second as the agent runs: caches are cold each time.
    let mut cold = Vec::new();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_secs(1));
        let start = process_cpu_now();
        sampler.sample(&roots);
        cold.push(process_cpu_now() - start);
    }
    let cold = median(cold);
    let mut costs: Vec<(&str, f64)> = Vec::new();
    for name in &names {
        let mut one = collectors::build(std::slice::from_ref(name), &Options::default());
        let Some(collector) = one.first_mut() else { continue };
        let mut times = Vec::new();
        for _ in 0..200 {
            let start = process_cpu_now();
            let _ = collector.collect(&roots);
            times.push(process_cpu_now() - start);
        }
        costs.push((collector.name(), median(times)));
    }
    println!(
        "## One collection (this machine: {} CPUs)\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| | agent | node_exporter |");
    println!("|---|---|---|");
    println!(
        "| CPU time per collection / scrape | {:.3} ms | {:.3} ms |",
        collection * 1e3,
        ne_per_scrape * 1e3
    );
    println!("| the same, one collection a second (cold caches) | {:.3} ms | - |", cold * 1e3);
    println!("| collectors | {} (the default set) | its default set |", names.join(", "));
    println!("| series | {} | - |", sample.values.len());
    println!(
        "| bytes on the wire per sample | {} (metrics message) | {} (text scrape, uncompressed) |",
        metrics.len(),
        ne_bytes
    );
    println!("| bytes of the model (once per connection or schema change) | {model_bytes} | - |");
    println!("\nCPU time per collector (median of 200 runs):\n");
    println!("| collector | µs |");
    println!("|---|---|");
    for (name, cost) in &costs {
        println!("| {name} | {:.1} |", cost * 1e6);
    }

    // ---- Part 2: whole processes over a window.
    let keys = work.join("keys");
    let collector_bin = bin_dir.join("collector");
    let agent_bin = bin_dir.join("agent");
    for bin in [&collector_bin, &agent_bin] {
        if !bin.exists() {
            bail!(
                "{} is missing: run `cargo build --release --bins` first (scripts/bench does)",
                bin.display()
            );
        }
    }
    let quiet = |bin: &PathBuf, args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new(bin).args(args).output()?;
        if !out.status.success() {
            bail!("{} {:?}: {}", bin.display(), args, String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    let keys_s = keys.to_str().context("path")?;
    quiet(&collector_bin, &["keygen", "--keys", keys_s])?;
    quiet(&agent_bin, &["keygen", "--keys", keys_s])?;
    // A second agent, with its own key, that reads every family every
    // second: what the default cadences save, measured in the same window.
    let keys_all = work.join("keys-every-family");
    let keys_all_s = keys_all.to_str().context("path")?;
    quiet(&agent_bin, &["keygen", "--keys", keys_all_s])?;
    std::fs::copy(keys.join("collector.key"), keys_all.join("collector.key"))?;
    let every_family = work.join("every-family.toml");
    let intervals: String = collectors::CATALOG
        .iter()
        .filter(|spec| spec.every.is_some())
        .map(|spec| format!("{} = \"1s\"\n", spec.name))
        .collect();
    std::fs::write(&every_family, format!("[intervals]\n{intervals}"))?;
    let (_collector, listen, http) =
        collector(&collector_bin, keys_s, &work.join("data"), &work.join("collector.log"))?;
    // StatsD on (UDP and the stream socket), idle in the first window.
    let udp = free_port()?;
    let udp_s = format!("127.0.0.1:{udp}");
    let stream = work.join("statsd.sock");
    let stream_s = stream.to_str().context("path")?;
    let agent = spawn(
        &agent_bin,
        &[
            "--keys",
            keys_s,
            "--interval",
            "1s",
            "--name",
            "bench",
            "--statsd-udp",
            &udp_s,
            "--statsd-unix",
            "off",
            "--statsd-stream",
            stream_s,
            "--spool-dir",
            work.join("spool").to_str().context("path")?,
            &listen,
        ],
        &work.join("agent.log"),
    )?;
    let hosts_url = format!("http://{http}/api/hosts");
    wait_until("the agent to report", || get(&hosts_url).is_ok_and(|b| b.contains("\"seq\"")))?;
    let default = window(agent.0.id(), ne.0.id(), &ne_url, seconds)?;
    let apps = statsd::run(agent.0.id(), "bench", udp, &stream, &format!("http://{http}/metrics"))?;
    drop(agent);

    // Then, alone in a second window, an agent that reads every family
    // every second: what the default cadences save.
    let all = spawn(
        &agent_bin,
        &[
            "--keys",
            keys_all_s,
            "--interval",
            "1s",
            "--name",
            "bench-every-family",
            "--config",
            every_family.to_str().context("path")?,
            "--spool-dir",
            work.join("spool-every-family").to_str().context("path")?,
            &listen,
        ],
        &work.join("agent-every-family.log"),
    )?;
    wait_until("the second agent to report", || {
        get(&hosts_url)
            .is_ok_and(|b| b.contains("bench-every-family") && b.matches("\"seq\"").count() >= 2)
    })?;
    let every = window(all.0.id(), ne.0.id(), &ne_url, seconds)?;
    drop(all);

    // Two more agents, one with 20 checks, side by side.
    let keys_checks: Vec<String> = ["keys-no-checks", "keys-checks"]
        .iter()
        .map(|name| -> anyhow::Result<String> {
            let dir = work.join(name);
            let dir_s = dir.to_str().context("path")?.to_string();
            quiet(&agent_bin, &["keygen", "--keys", &dir_s])?;
            std::fs::copy(keys.join("collector.key"), dir.join("collector.key"))?;
            Ok(dir_s)
        })
        .collect::<anyhow::Result<_>>()?;
    let checks =
        checks::run(&agent_bin, (&keys_checks[0], &keys_checks[1]), &listen, &http, work, seconds)?;
    let delivery = delivery::run(bin_dir, work)?;

    let cpu_ratio = default.agent_cpu / default.ne_cpu;
    let rss_ratio = default.agent_rss / default.ne_rss;
    println!("\n## {seconds} s at 1 s (agent interval 1 s; node_exporter scraped once a second)\n");
    println!("| | agent | node_exporter | ratio | target |");
    println!("|---|---|---|---|---|");
    let cpu_row = |what: &str, w: &Window, target: &str| {
        println!(
            "| {what} | {:.3} s ({:.2} ms/s) | {:.3} s ({:.2} ms/s) | 1/{:.1} | {target} |",
            w.agent_cpu,
            w.agent_cpu / w.seconds * 1e3,
            w.ne_cpu,
            w.ne_cpu / w.seconds * 1e3,
            w.ne_cpu / w.agent_cpu
        );
    };
    cpu_row("CPU, whole process (default cadences)", &default, "≤ 1/20");
    println!(
        "| resident memory, steady | {:.1} MiB | {:.1} MiB | 1/{:.1} | ≤ 1/4 |",
        default.agent_rss / 1048576.0,
        default.ne_rss / 1048576.0,
        1.0 / rss_ratio
    );
    cpu_row("CPU, every family every second (`[intervals]` all 1 s; next window)", &every, "");
    statsd::print(&apps, default.agent_cpu / default.seconds * 1e3, default.agent_rss);
    checks::print(&checks, default.ne_cpu / default.seconds * 1e3, default.ne_rss);
    delivery::print(&delivery);
    let mut failed = Vec::new();
    if cpu_ratio > 1.0 / 20.0 {
        failed.push(format!("CPU ratio 1/{:.1} misses 1/20", 1.0 / cpu_ratio));
    }
    if rss_ratio > 0.25 {
        failed.push(format!("memory ratio 1/{:.1} misses 1/4", 1.0 / rss_ratio));
    }
    if failed.is_empty() {
        println!("\nBoth targets met.");
        Ok(())
    } else {
        bail!("target missed: {}", failed.join("; "))
    }
}
