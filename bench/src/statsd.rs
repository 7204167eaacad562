//! What applications cost the agent: StatsD lines per CPU second (the
//! ceiling, over the Unix stream socket, which never drops), the agent's
//! CPU and memory at a steady 10,000 lines a second over UDP (one line per
//! datagram, as clients send them), and the bytes on the wire for 1,000
//! application series.

use std::{
    io::Write,
    net::UdpSocket,
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Context;
use curvemon_agent::{
    apps::{Apps, Limits, Origin},
    roots::Roots,
    sources::statsd::line,
};
use curvemon_protocol::{HostValues, Message, Sample, codec};

use crate::{cpu_seconds, get, median, rss_bytes};

/// What the StatsD part measured.
pub struct Figures {
    /// Lines per CPU second of the parse and aggregate path alone.
    pub in_process_lines_per_cpu_second: f64,
    /// Lines per CPU second of the whole agent, from a flood.
    pub agent_lines_per_cpu_second: f64,
    /// Lines the flood sent.
    pub flood_lines: u64,
    /// The agent's CPU at 10,000 lines a second, ms per second.
    pub cpu_ms_per_s_at_10k: f64,
    /// Its resident memory then, bytes.
    pub rss_at_10k: f64,
    /// Lines it counted of those sent at 10,000 a second.
    pub taken_at_10k: (f64, u64),
    /// Bytes of the declaration of 1,000 series (once per connection).
    pub declaration_bytes: usize,
    /// Bytes of one sample's application points, all 1,000 changed.
    pub all_changed_bytes: usize,
    /// The same with a tenth changed.
    pub tenth_changed_bytes: usize,
}

/// A line of a realistic mix: 20 metrics of 5 kinds, some tagged.
fn mix(i: usize) -> String {
    let n = i % 20;
    match n % 5 {
        0 => format!("shop.requests_{n}:1|c"),
        1 => format!("shop.latency_{n}:{}|ms", 3 + (i * 7919) % 250),
        2 => format!("shop.queue_{n}:{}|g", i % 50),
        3 => format!("shop.size_{n}:{}|d|#env:prod,region:eu", 100 + i % 900),
        _ => format!("shop.users_{n}:u{}|s", i % 300),
    }
}

/// The parse and aggregate path alone, in this process.
fn in_process() -> f64 {
    let lines: Vec<String> = (0..200_000).map(mix).collect();
    let mut rates = Vec::new();
    for _ in 0..5 {
        let mut apps = Apps::new(Limits::default(), "statsd".into(), Roots::new("/proc"));
        let origin = Origin { source: "statsd-udp".into(), pid: None };
        let now = Instant::now();
        let start = crate::process_cpu_now();
        for text in &lines {
            if let Ok(metric) = line::parse(text) {
                apps.statsd(&origin, &metric, now);
            }
        }
        let _ = apps.flush(now);
        rates.push(lines.len() as f64 / (crate::process_cpu_now() - start));
    }
    median(rates)
}

/// The wire cost of 1,000 series: 600 counters, 300 gauges, 100 timers
/// with 20 observations each per interval.
fn wire() -> (usize, usize, usize) {
    let mut apps = Apps::new(
        Limits { max_series_per_app: 10_000, ..Limits::default() },
        "statsd".into(),
        Roots::new("/proc"),
    );
    let origin = Origin { source: "statsd-udp".into(), pid: None };
    let now = Instant::now();
    let feed = |apps: &mut Apps, every: usize| {
        for i in (0..1000).step_by(every) {
            let text = match i {
                0..600 => format!("shop.c{i}:1|c"),
                600..900 => format!("shop.g{i}:{}|g", i % 40),
                _ => (0..20)
                    .map(|k| format!("shop.t{i}:{}|ms", 5 + k * 13 % 200))
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
            for l in text.lines() {
                if let Ok(metric) = line::parse(l) {
                    apps.statsd(&origin, &metric, now);
                }
            }
        }
    };
    let bytes = |points| {
        codec::encode(&Message::Sample(Sample {
            seq: 1_000_000,
            taken_at_ms: 1_795_000_000_000,
            host: HostValues { schema_revision: 1, values: Vec::new() },
            apps: points,
        }))
        .len()
    };
    feed(&mut apps, 1);
    let first = apps.flush(now);
    let declaration = codec::encode(&Message::AppSeries(apps.full())).len();
    let all = bytes(first.points);
    feed(&mut apps, 10);
    let tenth = bytes(apps.flush(now).points);
    (declaration, all, tenth)
}

/// `curvemon_statsd_lines_total` of host `name`, from the collector.
fn lines_taken(metrics_url: &str, name: &str) -> f64 {
    let Ok(text) = get(metrics_url) else { return 0.0 };
    text.lines()
        .filter(|l| {
            l.starts_with("curvemon_statsd_lines_total{") && l.contains(&format!("host=\"{name}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .next()
        .unwrap_or(0.0)
}

/// Runs the StatsD part against a running agent `pid` named `name` with
/// its UDP socket at `udp` and stream socket at `stream`.
pub fn run(
    pid: u32,
    name: &str,
    udp: u16,
    stream: &Path,
    metrics_url: &str,
) -> anyhow::Result<Figures> {
    let in_process_lines_per_cpu_second = in_process();
    let (declaration_bytes, all_changed_bytes, tenth_changed_bytes) = wire();

    // The ceiling: a flood over the stream socket; the agent's CPU per line.
    let flood_lines = 1_000_000u64;
    let before = lines_taken(metrics_url, name);
    let cpu0 = cpu_seconds(pid)?;
    let mut conn = UnixStream::connect(stream)
        .with_context(|| format!("connecting to {}", stream.display()))?;
    let mut batch = String::new();
    let mut sent = 0u64;
    while sent < flood_lines {
        batch.clear();
        for _ in 0..1000 {
            batch.push_str(&mix(sent as usize));
            batch.push('\n');
            sent += 1;
        }
        conn.write_all(batch.as_bytes())?;
    }
    drop(conn);
    crate::wait_until("the flood to be taken", || {
        lines_taken(metrics_url, name) >= before + flood_lines as f64
    })?;
    let agent_lines_per_cpu_second = flood_lines as f64 / (cpu_seconds(pid)? - cpu0);

    // 10,000 lines a second over UDP for 20 s, one line per datagram.
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let before = lines_taken(metrics_url, name);
    let cpu0 = cpu_seconds(pid)?;
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut sent = 0u64;
    for tick in 0..2000u64 {
        for _ in 0..100 {
            socket.send_to(mix(sent as usize).as_bytes(), ("127.0.0.1", udp))?;
            sent += 1;
        }
        if tick % 100 == 99 {
            rss.push(rss_bytes(pid)?);
        }
        let next = started + Duration::from_millis(10 * (tick + 1));
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid)? - cpu0;
    crate::wait_until("the last lines to be counted", || {
        lines_taken(metrics_url, name) >= before + sent as f64
    })
    .ok();
    let taken = lines_taken(metrics_url, name) - before;
    Ok(Figures {
        in_process_lines_per_cpu_second,
        agent_lines_per_cpu_second,
        flood_lines,
        cpu_ms_per_s_at_10k: cpu / seconds * 1e3,
        rss_at_10k: median(rss),
        taken_at_10k: (taken, sent),
        declaration_bytes,
        all_changed_bytes,
        tenth_changed_bytes,
    })
}

/// Prints the figures as the markdown docs/performance.md quotes.
pub fn print(f: &Figures, idle_cpu_ms_per_s: f64, idle_rss: f64) {
    println!("\n## Applications: StatsD into the agent\n");
    println!("| | |");
    println!("|---|---|");
    println!(
        "| lines per CPU second, parse and aggregate alone (in process) | {:.0} |",
        f.in_process_lines_per_cpu_second
    );
    println!(
        "| lines per CPU second, whole agent ({} lines over the stream socket) | {:.0} |",
        f.flood_lines, f.agent_lines_per_cpu_second
    );
    println!(
        "| agent CPU at 10,000 lines/s over UDP (one per datagram) | {:.2} ms/s (idle, StatsD on: {:.2} ms/s) |",
        f.cpu_ms_per_s_at_10k, idle_cpu_ms_per_s
    );
    println!(
        "| agent resident memory at 10,000 lines/s | {:.1} MiB (idle: {:.1} MiB) |",
        f.rss_at_10k / 1048576.0,
        idle_rss / 1048576.0
    );
    println!("| lines taken at 10,000/s | {:.0} of {} |", f.taken_at_10k.0, f.taken_at_10k.1);
    println!(
        "| bytes on the wire, 1,000 series: the declaration (once per connection) | {} |",
        f.declaration_bytes
    );
    println!(
        "| bytes on the wire, 1,000 series: one interval, all changed / a tenth changed | {} / {} |",
        f.all_changed_bytes, f.tenth_changed_bytes
    );
}
