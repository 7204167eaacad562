//! One load-generator process: `count` simulated agents on the project's
//! own ZMTP/CURVE client, each with its own key pair and connection,
//! speaking the protocol as docs/protocol.md says (hello, the model when
//! asked, a sample every interval, reconnecting with the agent's back-off)
//! with the model and values of the real agent on this machine.
//!
//! In flood mode every agent sends samples as fast as its connection takes
//! them. Every second the process prints one JSON line of its counters on
//! stdout; it runs until stdin closes (the parent ended).

use std::{
    io::Write as _,
    os::fd::AsFd,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use curvemon_agent::{collectors, options::Options, roots::Roots, sampler::Sampler};
use curvemon_keys::KeyPair;
use curvemon_protocol::{
    Hello, HostValues, MAX_FRAME_BYTES, Message, Model, PROTOCOL_VERSION, Sample, codec,
};
use curvemon_zmtp::{Client, Connector, Keys, Options as ZmtpOptions, Progress};
use rustix::event::{PollFd, PollFlags};

/// What the parent passes.
pub struct Args {
    pub endpoint: String,
    pub server_key: [u8; 32],
    pub first: usize,
    pub count: usize,
    pub interval: Duration,
    pub flood: bool,
    /// The fleet's first connections spread over this long (agent `i` of
    /// `total` starts at `i / total` of it); zero: all at once.
    pub ramp: Duration,
    pub total: usize,
}

enum State {
    Waiting { until: Instant },
    Connecting(Box<Connector>),
    Up { client: Box<Client>, next: Instant },
}

struct Sim {
    pair: KeyPair,
    name: String,
    state: State,
    seq: u64,
    /// Failed attempts in a row (for the back-off).
    failures: u32,
}

#[derive(Default)]
struct Counters {
    up: usize,
    sent: u64,
    connects: u64,
    failures: u64,
    rejects: u64,
    lost: u64,
}

/// The real agent's model and values on this machine.
fn real_sample() -> (curvemon_protocol::Schema, Vec<f64>) {
    let names = collectors::select(None, &Options::default(), &[]).unwrap_or_default();
    let mut sampler = Sampler::new(collectors::build(&names, &Options::default()));
    let roots = Roots::new("/proc");
    let sample = sampler.sample(&roots);
    (sample.schema(), sample.values)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Runs until stdin closes.
pub fn run(args: &Args) -> anyhow::Result<()> {
    let (schema, values) = real_sample();
    let revision = schema.revision;
    let model_for = |name: &str| Model {
        hostname: name.to_string(),
        machine_id: String::new(),
        boot_id: String::new(),
        kernel: "6.1.0-sim".into(),
        os: "Debian GNU/Linux 12 (bookworm)".into(),
        cpu_model: "simulated".into(),
        cpu_count: 2,
        mem_total_bytes: 24 << 30,
        swap_total_bytes: 0,
        boot_time_unix: 1_700_000_000,
        agent_version: env!("CARGO_PKG_VERSION").into(),
        interval_ms: args.interval.as_millis() as u32,
        schema: schema.clone(),
    };
    let start = Instant::now();
    let mut sims: Vec<Sim> = (0..args.count)
        .map(|i| {
            Ok(Sim {
                pair: KeyPair::generate()?,
                name: format!("sim-{:05}", args.first + i),
                state: State::Waiting {
                    until: start
                        + args.ramp.mul_f64((args.first + i) as f64 / args.total.max(1) as f64),
                },
                seq: 0,
                failures: 0,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    // stdin closing (the parent gone) ends the run.
    let stdin = std::io::stdin();
    rustix::io::ioctl_fionbio(stdin.as_fd(), true).context("stdin non-blocking")?;
    let options = ZmtpOptions {
        timeout: Duration::from_secs(10),
        interrupt: None,
        max_message: MAX_FRAME_BYTES,
        send_queue: 1 << 20,
    };
    let mut counters = Counters::default();
    let mut next_report = Instant::now() + Duration::from_secs(1);
    let phase = |i: usize| args.interval.mul_f64(i as f64 / args.count.max(1) as f64);
    // Each pass polls and steps every agent of the process, so passes are
    // at least this far apart (what is due meanwhile is done together):
    // thousands of agents' samples, acknowledgements and heartbeats at
    // their own times would otherwise make a pass each, and the generator
    // would spend the machine on passes rather than on its agents' work.
    let pass_gap = if args.flood { Duration::ZERO } else { Duration::from_millis(10) };
    let mut last_pass = Instant::now();
    loop {
        std::thread::sleep((last_pass + pass_gap).saturating_duration_since(Instant::now()));
        last_pass = Instant::now();
        let now = Instant::now();
        if now >= next_report {
            counters.up = sims.iter().filter(|s| matches!(s.state, State::Up { .. })).count();
            let line = format!(
                "{{\"up\":{},\"sent\":{},\"connects\":{},\"failures\":{},\"rejects\":{},\"lost\":{}}}\n",
                counters.up,
                counters.sent,
                counters.connects,
                counters.failures,
                counters.rejects,
                counters.lost
            );
            let mut out = std::io::stdout().lock();
            out.write_all(line.as_bytes())?;
            out.flush()?;
            next_report += Duration::from_secs(1);
            let mut buf = [0u8; 64];
            match rustix::io::read(stdin.as_fd(), &mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) | Err(rustix::io::Errno::AGAIN) => {}
                Err(_) => return Ok(()),
            }
        }
        // Poll every connection that has one.
        let mut wake = next_report;
        let mut fds = Vec::with_capacity(sims.len());
        let mut which = Vec::with_capacity(sims.len());
        for (i, sim) in sims.iter().enumerate() {
            match &sim.state {
                State::Waiting { until } => wake = wake.min(*until),
                State::Connecting(c) => {
                    wake = wake.min(c.deadline());
                    fds.push(PollFd::from_borrowed_fd(c.fd(), c.interest()));
                    which.push(i);
                }
                State::Up { client, next } => {
                    if !args.flood {
                        wake = wake.min(*next);
                    }
                    let mut flags = PollFlags::IN;
                    if client.wants_write() || args.flood {
                        flags |= PollFlags::OUT;
                    }
                    fds.push(PollFd::from_borrowed_fd(client.fd(), flags));
                    which.push(i);
                }
            }
        }
        let timeout =
            wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        let ts = rustix::time::Timespec {
            tv_sec: timeout.as_secs() as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut is_ready = vec![false; sims.len()];
        for (k, i) in which.into_iter().enumerate() {
            is_ready[i] = ready[k];
        }
        let now = Instant::now();
        for (i, sim) in sims.iter_mut().enumerate() {
            step(
                sim,
                is_ready[i],
                now,
                args,
                &options,
                &model_for,
                (revision, &values),
                phase(i),
                &mut counters,
            );
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn step(
    sim: &mut Sim,
    ready: bool,
    now: Instant,
    args: &Args,
    options: &ZmtpOptions<'_>,
    model_for: &dyn Fn(&str) -> Model,
    (revision, values): (u64, &[f64]),
    phase: Duration,
    counters: &mut Counters,
) {
    let keys = || Keys {
        public: *sim.pair.public.as_bytes(),
        secret: zeroize::Zeroizing::new(*sim.pair.secret.as_bytes()),
        server: args.server_key,
    };
    let back_off = |failures: u32| {
        // The agent's: 250 ms doubling to 30 s, with jitter.
        let base = Duration::from_millis(250) * 2u32.saturating_pow(failures.min(7));
        let base = base.min(Duration::from_secs(30));
        base.mul_f64(0.5 + rand_unit())
    };
    match &mut sim.state {
        State::Waiting { until } => {
            if now < *until {
                return;
            }
            match Connector::start(&args.endpoint, keys(), options) {
                Ok(c) => sim.state = State::Connecting(Box::new(c)),
                Err(_) => {
                    counters.failures += 1;
                    sim.failures += 1;
                    sim.state = State::Waiting { until: now + back_off(sim.failures) };
                }
            }
        }
        State::Connecting(c) => {
            if !ready && now < c.deadline() {
                return;
            }
            match c.advance() {
                Ok(Progress::Done(client)) => {
                    counters.connects += 1;
                    sim.failures = 0;
                    let mut client = Box::new(client);
                    let hello = Message::Hello(Hello {
                        agent_version: env!("CARGO_PKG_VERSION").into(),
                        hostname: sim.name.clone(),
                        machine_id: String::new(),
                        boot_id: String::new(),
                        interval_ms: args.interval.as_millis() as u32,
                    });
                    let _ = client.send(&codec::encode_with_version(&hello, PROTOCOL_VERSION));
                    // Phases spread over the interval, as real agents start
                    // at random times.
                    let next = now + phase;
                    sim.state = State::Up { client, next };
                }
                Ok(Progress::Pending) if now >= c.deadline() => {
                    counters.failures += 1;
                    sim.failures += 1;
                    sim.state = State::Waiting { until: now + back_off(sim.failures) };
                }
                Ok(Progress::Pending) => {}
                Err(_) => {
                    counters.failures += 1;
                    sim.failures += 1;
                    sim.state = State::Waiting { until: now + back_off(sim.failures) };
                }
            }
        }
        State::Up { client, next } => {
            let mut broken = false;
            if ready {
                loop {
                    match client.receive() {
                        Ok(Some(frame)) => match codec::decode(&frame) {
                            Ok(Message::ModelRequest) => {
                                let model = Message::Model(model_for(&sim.name));
                                let _ = client
                                    .send(&codec::encode_with_version(&model, PROTOCOL_VERSION));
                            }
                            Ok(Message::Reject(_)) => {
                                counters.rejects += 1;
                                broken = true;
                                break;
                            }
                            _ => {}
                        },
                        Ok(None) => break,
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                }
            }
            if !broken {
                let due = if args.flood { 64 } else { usize::from(now >= *next) };
                for _ in 0..due {
                    sim.seq += 1;
                    let mut v = values.to_vec();
                    // Counters move, gauges wobble: not one frame repeated.
                    for (k, x) in v.iter_mut().enumerate().take(16) {
                        *x += (sim.seq as f64) * (k as f64 + 1.0);
                    }
                    let sample = Message::Sample(Sample {
                        seq: sim.seq,
                        taken_at_ms: now_ms(),
                        host: HostValues { schema_revision: revision, values: v },
                        apps: Vec::new(),
                    });
                    let frame = codec::encode_with_version(&sample, PROTOCOL_VERSION);
                    match client.send(&frame) {
                        Ok(true) => counters.sent += 1,
                        Ok(false) => {
                            // The queue is full: this sample is not sent
                            // (flood), or is lost (fleet) and shows as a gap.
                            sim.seq -= 1;
                            break;
                        }
                        Err(_) => {
                            broken = true;
                            break;
                        }
                    }
                    if !args.flood {
                        *next += args.interval;
                        if *next < now {
                            *next = now + args.interval;
                        }
                    }
                }
                if !broken && client.flush().is_err() {
                    broken = true;
                }
            }
            if broken {
                counters.lost += 1;
                sim.failures += 1;
                sim.state = State::Waiting { until: now + back_off(0) };
            }
        }
    }
}

/// A uniform number in [0, 1) (the jitter needs no quality).
fn rand_unit() -> f64 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}
