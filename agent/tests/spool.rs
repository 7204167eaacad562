//! The spool against a model: any sequence of appends, acknowledgements,
//! crashes (the process dies: what was written stays, nothing is synced
//! or closed), clean closes, torn tails and flipped bytes. After every
//! reopen:
//! - no acknowledged sample comes back;
//! - every unacknowledged sample that is intact comes back, once, in
//!   order;
//! - every unacknowledged sample that does not come back (damaged, torn,
//!   or pushed out by the size bound) is inside a gap the spool reports;
//! - sequence numbers are never handed out twice.

use std::{collections::BTreeSet, path::Path, time::Duration};

use curvemon_agent::spool::{Config, Record, Spool, segment};
use curvemon_protocol::{Family, Kind, Label, Metrics, Schema};
use proptest::prelude::*;

fn schema() -> Schema {
    Schema::new(vec![
        Family {
            name: "node_load1".into(),
            help: "1m load average.".into(),
            kind: Kind::Gauge,
            series: vec![vec![]],
        },
        Family {
            name: "node_network_receive_bytes_total".into(),
            help: "Bytes received.".into(),
            kind: Kind::Counter,
            series: vec![vec![Label::new("device", "eth0")], vec![Label::new("device", "eth1")]],
        },
    ])
}

#[derive(Debug, Clone)]
enum Op {
    Append(u8),
    /// Acknowledge up to this share (in 256ths) of what is unacknowledged.
    Ack(u8),
    Crash,
    Close,
    /// Cut this many bytes off the newest segment (a torn write), then crash.
    Tear(u16),
    /// Flip a byte of a segment (picked by index and offset, modulo), then crash.
    Flip(u8, u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..30).prop_map(Op::Append),
        3 => any::<u8>().prop_map(Op::Ack),
        1 => Just(Op::Crash),
        1 => Just(Op::Close),
        1 => (1u16..400).prop_map(Op::Tear),
        1 => (any::<u8>(), any::<u32>()).prop_map(|(s, o)| Op::Flip(s, o)),
    ]
}

fn config(dir: &Path, max_bytes: u64, boot: u32) -> Config {
    Config {
        dir: Some(dir.to_path_buf()),
        dir_explicit: true,
        max_bytes,
        memory_bytes: 1 << 20,
        sync_every: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        boot_id: format!("boot-{boot}"),
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| segment::first_seq_of(p).is_some())
        .collect();
    paths.sort();
    paths
}

/// The samples whose record overlaps bytes `from..` of a segment.
fn samples_from(path: &Path, from: u64) -> Vec<u64> {
    let scan = segment::scan(path).unwrap();
    let mut start = segment::HEADER;
    let mut hit = Vec::new();
    for (record, end) in scan.records {
        if end > from
            && let Record::Sample(m) = record
        {
            hit.push(m.seq);
        }
        start = end;
    }
    let _ = start;
    hit
}

/// The samples whose record holds byte `at` of a segment (all of them when
/// `at` is in the header).
fn samples_at(path: &Path, at: u64) -> Vec<u64> {
    let scan = segment::scan(path).unwrap();
    let mut start = segment::HEADER;
    let mut hit = Vec::new();
    for (record, end) in scan.records {
        if let Record::Sample(m) = record
            && (at < segment::HEADER || (start..end).contains(&at))
        {
            hit.push(m.seq);
        }
        start = end;
    }
    hit
}

struct Model {
    /// Samples handed to the spool and not forgotten (torn tails are
    /// forgotten when their numbers are given out again).
    appended: BTreeSet<u64>,
    acked: u64,
    /// Samples known damaged (not intact).
    damaged: BTreeSet<u64>,
    /// Every number ever handed out, to check none is reused.
    handed_out: BTreeSet<u64>,
}

fn check(spool: &mut Spool, model: &Model) -> Result<(), TestCaseError> {
    let back: Vec<u64> = spool
        .read_after(0, usize::MAX)
        .into_iter()
        .filter_map(|r| match r {
            Record::Sample(m) => Some(m.seq),
            Record::Schema(_) => None,
        })
        .collect();
    prop_assert!(back.windows(2).all(|w| w[0] < w[1]), "in order, once: {back:?}");
    prop_assert!(
        back.iter().all(|s| *s > model.acked),
        "acknowledged came back: {back:?} (acked {})",
        model.acked
    );
    prop_assert!(back.iter().all(|s| model.appended.contains(s)), "unknown samples: {back:?}");
    let gaps: Vec<(u64, u64)> = spool.gaps().iter().map(|g| (g.from_seq, g.to_seq)).collect();
    let in_gap = |s: u64| gaps.iter().any(|(a, b)| (*a..=*b).contains(&s));
    for seq in model.appended.iter().copied().filter(|s| *s > model.acked && *s < spool.next_seq())
    {
        let returned = back.binary_search(&seq).is_ok();
        if !model.damaged.contains(&seq) && !in_gap(seq) {
            prop_assert!(
                returned,
                "intact sample {seq} lost without a gap; back {back:?}, gaps {gaps:?}"
            );
        }
        prop_assert!(
            returned != in_gap(seq),
            "sample {seq} both returned and in a gap, or neither: gaps {gaps:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_spool_keeps_its_promises(ops in prop::collection::vec(op(), 1..40), small in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let max_bytes = if small { 12 << 10 } else { 64 << 20 };
        let mut boot = 0;
        let mut spool = Spool::open(config(dir.path(), max_bytes, boot)).unwrap();
        let epoch = spool.epoch();
        let schema = schema();
        let mut model = Model { appended: BTreeSet::new(), acked: 0, damaged: BTreeSet::new(), handed_out: BTreeSet::new() };
        for op in ops {
            match op {
                Op::Append(n) => {
                    for _ in 0..n {
                        let seq = spool.take_seq();
                        prop_assert!(model.handed_out.insert(seq), "sequence number {seq} handed out twice");
                        model.appended.insert(seq);
                        spool.append(
                            Metrics { seq, taken_at_ms: 1_000 * seq, schema_revision: schema.revision, values: vec![0.5, seq as f64, 2.0] },
                            || schema.clone(),
                        );
                    }
                }
                Op::Ack(share) => {
                    let unacked: Vec<u64> = model.appended.iter().copied().filter(|s| *s > model.acked).collect();
                    if let Some(&seq) = unacked.get(unacked.len() * usize::from(share) / 256) {
                        spool.ack(epoch, seq);
                        model.acked = seq;
                    }
                }
                Op::Close | Op::Crash | Op::Tear(_) | Op::Flip(..) => {
                    if matches!(op, Op::Close) {
                        spool.close();
                    }
                    drop(spool);
                    let paths = segments(dir.path());
                    match op {
                        Op::Tear(n) => {
                            if let Some(last) = paths.last() {
                                let len = std::fs::metadata(last).unwrap().len();
                                let cut = u64::from(n).min(len - segment::HEADER);
                                model.damaged.extend(samples_from(last, len - cut));
                                std::fs::OpenOptions::new().write(true).open(last).unwrap().set_len(len - cut).unwrap();
                            }
                        }
                        Op::Flip(s, o)
                            if !paths.is_empty() => {
                                let path = &paths[usize::from(s) % paths.len()];
                                let mut bytes = std::fs::read(path).unwrap();
                                let at = u64::from(o) % bytes.len() as u64;
                                model.damaged.extend(samples_at(path, at));
                                bytes[at as usize] ^= 0x5a;
                                std::fs::write(path, bytes).unwrap();
                            }
                        _ => {}
                    }
                    // A torn write means the host lost power: it boots anew.
                    if matches!(op, Op::Tear(_)) {
                        boot += 1;
                    }
                    spool = Spool::open(config(dir.path(), max_bytes, boot)).unwrap();
                    prop_assert_eq!(spool.epoch(), epoch);
                    check(&mut spool, &model)?;
                    // Numbers at or past the next one were never durable:
                    // forget them (the model's torn tail).
                    let next = spool.next_seq();
                    model.appended.retain(|s| *s < next);
                }
            }
        }
        drop(spool);
        let mut spool = Spool::open(config(dir.path(), max_bytes, boot)).unwrap();
        check(&mut spool, &model)?;
    }
}
