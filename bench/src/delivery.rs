//! Part 5: what no-loss delivery costs.
//!
//! - The agent's spool: bytes per sample on disk, measured by spooling real
//!   samples of this host (so how long the default 64 MiB lasts).
//! - The collector's store: CPU per sample written through the store's
//!   writer thread (transactions, compaction into compressed blocks), bytes
//!   per sample on disk, and the time to read and bucket a 7-day chart of
//!   one host at 1 s (604,800 samples), all in this process.
//! - Backfill: 100 real agents, each started with 10 minutes of backlog in
//!   its spool, connect to a real collector at once; the rate at which the
//!   collector stores their backlog, and how stale the live data gets
//!   meanwhile (the newest sample of each host versus the clock).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use curvemon_agent::{
    options::Options,
    roots::Roots,
    sampler::{Sample, Sampler},
    spool::{Config, Spool},
};
use curvemon_collector::store::{
    RedbStore, Store,
    writer::{self, Op, Retention},
};
use curvemon_keys::PublicKey;
use curvemon_protocol::{Metrics, Resume, Schema};

/// What part 5 measured.
pub(crate) struct Figures {
    spool_bytes_per_sample: f64,
    store_samples: u64,
    store_cpu_per_sample: f64,
    store_rate: f64,
    store_bytes_per_sample: f64,
    query_7d: Duration,
    query_points: usize,
    backfill_samples: u64,
    backfill_seconds: f64,
    live_stale_max: f64,
}

/// Real samples of this host, a tenth of a second apart.
pub(crate) fn real_samples(n: usize) -> anyhow::Result<(Schema, Vec<Vec<f64>>)> {
    let names = curvemon_agent::collectors::select(None, &Options::default(), &[])?;
    let mut sampler = Sampler::new(curvemon_agent::collectors::build(&names, &Options::default()));
    let roots = Roots::new("/proc");
    let mut samples: Vec<Sample> = Vec::new();
    while samples.len() < n {
        let s = sampler.sample(&roots);
        if samples.first().is_some_and(|f| f.revision != s.revision) {
            samples.clear(); // a mount or interface came or went: anew
        }
        samples.push(s);
        std::thread::sleep(Duration::from_millis(100));
    }
    let schema = samples[0].schema();
    Ok((schema, samples.into_iter().map(|s| s.values).collect()))
}

/// Sample `i` of an endless series made of the real ones: each pass over
/// them goes on from where the last ended, so counters keep rising.
pub(crate) fn synth(real: &[Vec<f64>], i: usize) -> Vec<f64> {
    let n = real.len();
    let (pass, k) = (i / n, i % n);
    real[k]
        .iter()
        .enumerate()
        .map(|(j, v)| {
            let step = real[n - 1][j] - real[0][j] + (real[1][j] - real[0][j]);
            if v.is_finite() && step.is_finite() { v + pass as f64 * step } else { *v }
        })
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn spool_config(dir: &Path) -> Config {
    Config {
        dir: Some(dir.to_path_buf()),
        dir_explicit: true,
        interval: Duration::from_secs(1),
        ..Config::default()
    }
}

/// Fills a spool at `dir` with `n` samples taken a second apart, ending now.
fn fill_spool(dir: &Path, schema: &Schema, real: &[Vec<f64>], n: usize) -> anyhow::Result<u64> {
    let mut spool = Spool::open(spool_config(dir))?;
    let end = now_ms();
    for i in 0..n {
        let seq = spool.take_seq();
        let m = Metrics {
            seq,
            taken_at_ms: end - (n - i) as u64 * 1000,
            schema_revision: schema.revision,
            values: synth(real, i),
        };
        spool.append(m, || schema.clone());
    }
    let bytes = spool.disk_bytes();
    spool.close();
    Ok(bytes)
}

/// Writes `n` samples of one host, a second apart and ending now, through
/// the store's writer; returns (CPU seconds of this process, wall seconds).
fn write_store(
    dir: &Path,
    schema: &Schema,
    real: &[Vec<f64>],
    n: usize,
) -> anyhow::Result<(f64, f64, Arc<RedbStore>, PublicKey)> {
    let store = Arc::new(RedbStore::open(dir)?);
    let retention = Retention { age: Duration::from_secs(30 * 86_400), bytes: u64::MAX };
    let handle = writer::start(Arc::clone(&store) as Arc<dyn Store>, retention, false)?;
    let host = PublicKey::from_bytes([7; 32]);
    let epoch = 42;
    handle.send(Op::Schema(Arc::new(schema.clone())));
    handle.send(Op::Resume { host, resume: Resume { epoch, oldest_seq: 1, next_seq: 1 } });
    let end = now_ms();
    let (cpu0, wall0) = (crate::process_cpu_now(), Instant::now());
    let mut acked = 0u64;
    let mut sent = 0usize;
    while acked < n as u64 {
        // Keep a few thousand samples queued: as agents keep it busy.
        while sent < n && sent as u64 - acked.min(sent as u64) < 4096 {
            let batch: Vec<Metrics> = (sent..(sent + 64).min(n))
                .map(|i| Metrics {
                    seq: i as u64 + 1,
                    taken_at_ms: end - (n - i) as u64 * 1000,
                    schema_revision: schema.revision,
                    values: synth(real, i),
                })
                .collect();
            sent += batch.len();
            if !handle.send(Op::Samples {
                host,
                epoch,
                name: Arc::from("bench"),
                samples: batch,
                point: None,
            }) {
                bail!("the store's queue is full");
            }
        }
        std::thread::sleep(Duration::from_millis(2));
        for ack in handle.take_acks() {
            acked = acked.max(ack.seq);
        }
        if wall0.elapsed() > Duration::from_secs(600) {
            bail!("the store took more than 10 minutes ({acked} of {n} acknowledged)");
        }
    }
    let cpu = crate::process_cpu_now() - cpu0;
    let wall = wall0.elapsed().as_secs_f64();
    handle.stop();
    Ok((cpu, wall, store, host))
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Runs part 5.
pub(crate) fn run(bin_dir: &Path, work: &Path) -> anyhow::Result<Figures> {
    let (schema, real) = real_samples(120)?;

    // The spool.
    let spool_dir = work.join("spool-measure");
    let spool_bytes = fill_spool(&spool_dir, &schema, &real, 3_600)?;
    let spool_bytes_per_sample = spool_bytes as f64 / 3_600.0;

    // The store: 7 days at 1 s.
    let n = 7 * 86_400;
    let dir = work.join("store-measure");
    let (cpu, wall, store, host) = write_store(&dir, &schema, &real, n)?;
    let file_bytes = std::fs::metadata(dir.join(curvemon_collector::store::FILE))?.len();
    let t0 = Instant::now();
    let now = now_ms();
    let points = store.points(&host, now - 7 * 86_400_000, now)?;
    let series =
        curvemon_collector::store::query::bucket(&points.items, now - 7 * 86_400_000, now, 1_500);
    let query_7d = t0.elapsed();
    drop(store);

    // Backfill: 100 agents with 10 minutes each.
    let agents = 100;
    let backlog = 600;
    let collector_bin = bin_dir.join("collector");
    let agent_bin = bin_dir.join("agent");
    let keys = work.join("bf-collector");
    let keys_s = keys.to_str().context("path")?;
    let quiet = |bin: &Path, args: &[&str]| -> anyhow::Result<()> {
        let out = std::process::Command::new(bin).args(args).output()?;
        if !out.status.success() {
            bail!("{} {:?}: {}", bin.display(), args, String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    };
    quiet(&collector_bin, &["keygen", "--keys", keys_s])?;
    std::fs::create_dir_all(keys.join("authorized_agents"))?;
    for i in 0..agents {
        let dir = work.join(format!("bf-agent-{i}"));
        let dir_s = dir.to_str().context("path")?;
        quiet(&agent_bin, &["keygen", "--keys", dir_s, "--name", &format!("bf-{i}")])?;
        std::fs::copy(keys.join("collector.key"), dir.join("collector.key"))?;
        std::fs::copy(dir.join("agent.key"), keys.join(format!("authorized_agents/bf-{i}.key")))?;
        fill_spool(&dir.join("spool"), &schema, &real, backlog)?;
    }
    let (_collector, listen, http) = crate::collector(
        &collector_bin,
        keys_s,
        &work.join("bf-data"),
        &work.join("bf-collector.log"),
    )?;
    let metrics_url = format!("http://{http}/metrics");
    crate::wait_until("the collector", || crate::get(&metrics_url).is_ok())?;
    let start = Instant::now();
    let mut procs = Vec::new();
    for i in 0..agents {
        let dir = work.join(format!("bf-agent-{i}"));
        let spool = dir.join("spool");
        procs.push(crate::spawn(
            &agent_bin,
            &[
                "--keys",
                dir.to_str().context("path")?,
                "--name",
                &format!("bf-{i}"),
                "--interval",
                "1s",
                "--spool-dir",
                spool.to_str().context("path")?,
                &listen,
            ],
            &work.join(format!("bf-agent-{i}.log")),
        )?);
    }
    let want = (agents * backlog) as f64;
    let hosts_url = format!("http://{http}/api/hosts");
    let mut live_stale_max = 0.0f64;
    let mut stored = 0.0;
    while stored < want + agents as f64 {
        if start.elapsed() > Duration::from_secs(600) {
            bail!("the backlog was not stored in 10 minutes ({stored} of {want})");
        }
        std::thread::sleep(Duration::from_millis(500));
        stored = metric(&crate::get(&metrics_url)?, "curvemon_collector_store_samples_total");
        // How old each host's newest live sample is, once it has one.
        if let Ok(body) = crate::get(&hosts_url) {
            let hosts: serde_json::Value = serde_json::from_str(&body)?;
            let now = std::time::SystemTime::now();
            for h in hosts.as_array().into_iter().flatten() {
                let taken =
                    h["latest"]["taken_at"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok());
                if let Some(age) = taken.and_then(|t| now.duration_since(t).ok()) {
                    live_stale_max = live_stale_max.max(age.as_secs_f64());
                }
            }
        }
    }
    let backfill_seconds = start.elapsed().as_secs_f64();
    drop(procs);
    Ok(Figures {
        spool_bytes_per_sample,
        store_samples: n as u64,
        store_cpu_per_sample: cpu / n as f64,
        store_rate: n as f64 / wall,
        store_bytes_per_sample: file_bytes as f64 / n as f64,
        query_7d,
        query_points: series.t.len(),
        backfill_samples: stored as u64,
        backfill_seconds,
        live_stale_max,
    })
}

/// Prints part 5.
pub(crate) fn print(f: &Figures) {
    println!("\n## No-loss delivery: spool, store, backfill\n");
    println!("| | figure |");
    println!("|---|---|");
    println!(
        "| agent spool, bytes per sample on disk (this host's default series) | {:.0} |",
        f.spool_bytes_per_sample
    );
    let covers = |interval: f64| (64.0 * 1048576.0 / f.spool_bytes_per_sample) * interval / 3600.0;
    println!(
        "| outage the default 64 MiB spool covers | {:.1} h at 1 s, {:.1} days at 10 s |",
        covers(1.0),
        covers(10.0) / 24.0
    );
    println!(
        "| store: CPU per sample written (writer thread: transactions, compaction) | {:.1} µs |",
        f.store_cpu_per_sample * 1e6
    );
    println!(
        "| store: samples written per second, one host, {} samples | {:.0} |",
        f.store_samples, f.store_rate
    );
    println!(
        "| store: bytes per sample on disk (file size / samples) | {:.1} |",
        f.store_bytes_per_sample
    );
    println!(
        "| 7-day chart of one host at 1 s: read {} samples and bucket into {} points | {:.0} ms |",
        f.store_samples,
        f.query_points,
        f.query_7d.as_secs_f64() * 1e3
    );
    println!(
        "| backfill: 100 agents × 10 min backlog, stored (backlog + live) | {} samples in {:.1} s = {:.0} samples/s |",
        f.backfill_samples,
        f.backfill_seconds,
        f.backfill_samples as f64 / f.backfill_seconds
    );
    println!(
        "| backfill: the oldest newest-live-sample seen meanwhile (live first) | {:.1} s |",
        f.live_stale_max
    );
}
