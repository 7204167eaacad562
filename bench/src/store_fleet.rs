//! `bench store --hosts N[,N...] [--seconds 30]`: the history store alone
//! under a fleet's live load, without sockets or CURVE.
//!
//! The fleet benchmark runs its simulated agents on the same cores as the
//! collector, so past a few thousand agents it measures the machine. This
//! one drives the store's writer thread directly, in this process, as the
//! router does: every host a live sample a second (its real values, from
//! this machine's own 208-series model), one operation each, paced in real
//! time. It reports what the store committed and acknowledged per second,
//! the writer's CPU per sample, how far acknowledgements trailed the
//! samples, the queue's drops, and the process's memory.

use std::{
    collections::HashMap,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use curvemon_collector::store::{
    RedbStore, Store,
    writer::{self, Op, Retention},
};
use curvemon_keys::PublicKey;
use curvemon_protocol::{Metrics, Resume};
use std::sync::atomic::Ordering;

/// One run's figures.
pub(crate) struct Row {
    hosts: usize,
    offered: f64,
    acknowledged: f64,
    cpu_per_sample_us: f64,
    cores: f64,
    ack_lag_p99_s: f64,
    queue_full: u64,
    rss_mib: (f64, f64),
    bytes_per_sample: f64,
}

fn host_key(i: usize) -> PublicKey {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
    k[31] = 0xc7;
    PublicKey::from_bytes(k)
}

/// Drives `hosts` hosts for `seconds` (after a warm-up of a third of it).
pub(crate) fn run(work: &Path, hosts: usize, seconds: u64) -> anyhow::Result<Row> {
    let (schema, real) = crate::delivery::real_samples(40)?;
    let dir = work.join(format!("store-{hosts}"));
    let store = Arc::new(RedbStore::open(&dir)?);
    let retention = Retention { age: Duration::from_secs(86_400), bytes: u64::MAX };
    let handle = writer::start(Arc::clone(&store) as Arc<dyn Store>, retention, false)?;
    handle.send(Op::Schema(Arc::new(schema.clone())));
    let epoch = 7;
    for i in 0..hosts {
        handle.send(Op::Resume {
            host: host_key(i),
            resume: Resume { epoch, oldest_seq: 1, next_seq: 1 },
        });
    }
    let keys: Vec<PublicKey> = (0..hosts).map(host_key).collect();
    let index: HashMap<PublicKey, usize> = keys.iter().enumerate().map(|(i, k)| (*k, i)).collect();
    let name: Arc<str> = Arc::from("bench");
    // Per host: the next sequence number, and when each unacknowledged
    // one was sent (to measure how far acknowledgements trail).
    let mut next = vec![1u64; hosts];
    let mut acked = vec![0u64; hosts];
    let mut lags: Vec<f64> = Vec::new();
    let warm = Duration::from_secs((seconds / 3).max(3));
    let total = warm + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut sent_at: Vec<std::collections::VecDeque<(u64, Instant)>> =
        vec![std::collections::VecDeque::new(); hosts];
    let (mut offered, mut acked_in_window) = (0u64, 0u64);
    let mut window: Option<(Instant, f64, f64)> = None;
    let mut cursor = 0usize;
    let tick = Duration::from_millis(10);
    let per_tick = hosts.div_ceil(100);
    let mut next_tick = Instant::now();
    while started.elapsed() < total {
        if window.is_none() && started.elapsed() >= warm {
            window = Some((Instant::now(), crate::thread_cpu("store"), crate::rss_self()?));
            offered = 0;
            acked_in_window = 0;
            lags.clear();
        }
        // A hundredth of the fleet every 10 ms: each host once a second.
        for _ in 0..per_tick {
            let i = cursor % hosts;
            cursor += 1;
            let seq = next[i];
            next[i] += 1;
            let m = Metrics {
                seq,
                taken_at_ms: crate::delivery::now_ms(),
                schema_revision: schema.revision,
                values: crate::delivery::synth(&real, seq as usize + i),
            };
            let now = Instant::now();
            if handle.send(Op::Samples {
                host: keys[i],
                epoch,
                name: Arc::clone(&name),
                point: None,
                samples: vec![m],
            }) {
                sent_at[i].push_back((seq, now));
            }
            offered += 1;
        }
        for ack in handle.take_acks() {
            let Some(&i) = index.get(&ack.host) else { continue };
            if ack.seq > acked[i] {
                acked_in_window += ack.seq - acked[i];
                acked[i] = ack.seq;
            }
            let now = Instant::now();
            while sent_at[i].front().is_some_and(|(s, _)| *s <= ack.seq) {
                let (_, at) = sent_at[i].pop_front().unwrap_or((0, now));
                lags.push(now.duration_since(at).as_secs_f64());
            }
        }
        next_tick += tick;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    let (w0, cpu0, rss0) = window.unwrap_or((started, 0.0, 0.0));
    let wall = w0.elapsed().as_secs_f64();
    let cpu = crate::thread_cpu("store") - cpu0;
    let rss1 = crate::rss_self()?;
    let queue_full = handle.stats.queue_full.load(Ordering::Relaxed);
    let stored = handle.stats.stored.load(Ordering::Relaxed);
    handle.stop();
    let file = std::fs::metadata(dir.join(curvemon_collector::store::FILE))?.len();
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    lags.sort_by(f64::total_cmp);
    let p99 = lags.get(lags.len() * 99 / 100).copied().unwrap_or(f64::NAN);
    Ok(Row {
        hosts,
        offered: offered as f64 / wall,
        acknowledged: acked_in_window as f64 / wall,
        cpu_per_sample_us: cpu / acked_in_window.max(1) as f64 * 1e6,
        cores: cpu / wall,
        ack_lag_p99_s: p99,
        queue_full,
        rss_mib: (rss0 / 1048576.0, rss1 / 1048576.0),
        bytes_per_sample: file as f64 / stored.max(1) as f64,
    })
}

/// The table.
pub(crate) fn print(rows: &[Row]) {
    println!(
        "| hosts | offered samples/s | acknowledged samples/s | store CPU (cores) | µs CPU per sample | acknowledgement lag p99 | queue drops | RSS start → end (MiB) | file bytes per sample |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} | {:.1} s | {} | {:.0} → {:.0} | {:.0} |",
            r.hosts,
            r.offered,
            r.acknowledged,
            r.cores,
            r.cpu_per_sample_us,
            r.ack_lag_p99_s,
            r.queue_full,
            r.rss_mib.0,
            r.rss_mib.1,
            r.bytes_per_sample
        );
    }
}
