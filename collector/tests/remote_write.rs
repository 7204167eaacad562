//! Prometheus remote write against real receivers: Prometheus and
//! VictoriaMetrics from Debian, and a scripted receiver for the protocol's
//! retry rules. Every check compares what the receivers hold with what the
//! collector stored from real agents, value by value.

mod common;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{
    Fleet,
    servers::{Prometheus, VictoriaMetrics},
    wait_for,
};
use prost::Message as _;
use serde_json::Value;

/// The collector's stored samples of `host`, series by series: for each
/// series index with any value, its (ms, value) pairs taken in `from..=to`.
fn stored(fleet: &Fleet, id: &str, from: u64, to: u64) -> Vec<Vec<(u64, f64)>> {
    let series = fleet.json(&format!("/api/hosts/{id}")).unwrap()["model"]["series"]
        .as_u64()
        .unwrap() as usize;
    (0..series)
        .filter_map(|i| {
            let v = fleet
                .json(&format!("/api/hosts/{id}/samples?since={from}&until={to}&value={i}"))
                .unwrap();
            let points: Vec<(u64, f64)> = v["t"]
                .as_array()
                .unwrap()
                .iter()
                .zip(v["value"].as_array().unwrap())
                .filter_map(|(t, v)| Some((t.as_u64()?, v.as_f64()?)))
                .collect();
            (!points.is_empty()).then_some(points)
        })
        .collect()
}

/// True when every stored series appears among the receiver's, with the
/// same times and values in `from..=to`, and the receiver has no other
/// series of the host (besides `curvemon_host_up`).
fn same(
    stored: &[Vec<(u64, f64)>],
    received: &[(Value, Vec<(u64, f64)>)],
    from: u64,
    to: u64,
) -> Result<(), String> {
    let mut theirs: Vec<Vec<(u64, f64)>> = received
        .iter()
        .filter(|(m, _)| m["__name__"] != "curvemon_host_up")
        .map(|(_, p)| p.iter().copied().filter(|(t, _)| (from..=to).contains(t)).collect())
        .collect();
    if theirs.len() != stored.len() {
        return Err(format!("{} series stored, {} received", stored.len(), theirs.len()));
    }
    for (i, ours) in stored.iter().enumerate() {
        match theirs.iter().position(|t| t == ours) {
            Some(at) => {
                theirs.swap_remove(at);
            }
            None => {
                return Err(format!(
                    "stored series #{i} ({} samples, {:?}..) is not among the received",
                    ours.len(),
                    ours.first()
                ));
            }
        }
    }
    Ok(())
}

/// A config file of `[[remote_write]]` targets: each a URL and extra keys.
fn config(fleet: &Fleet, targets: &[(&str, &str)]) -> String {
    let path = fleet.path("collector.toml");
    let text: String = targets
        .iter()
        .map(|(u, extra)| {
            format!(
                "[[remote_write]]\nurl = \"{u}\"\nbatch_values = 2000\nliveness_every = \"2s\"\n{extra}\n\n"
            )
        })
        .collect();
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn host_id(fleet: &Fleet, name: &str) -> String {
    fleet.wait_host(name, "a model", Duration::from_secs(30), |h| h["model"].is_object())["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// What the agents sent reaches both receivers, value for value; then
/// Prometheus is down for 60 s, during which the collector is killed and
/// restarted: once it is back, no stored sample is missing from it.
#[test]
fn prometheus_and_victoriametrics_hold_what_the_agents_sent_through_outages() {
    let mut prometheus = Prometheus::start();
    let vm = VictoriaMetrics::start();
    let fleet = Fleet::new();
    let config = config(&fleet, &[(&prometheus.write_url(), ""), (&vm.write_url(), "")]);
    let mut collector = fleet.start_collector(&["--config", &config], "collector.log");
    let keys = fleet.agent_keys("rw", true);
    let _agent = fleet.start_agent("rw", &keys, &["--interval", "1s"]);
    let id = host_id(&fleet, "rw");
    let from = now_ms();
    wait_for("eight samples stored", Duration::from_secs(30), || {
        (stored(&fleet, &id, from, u64::MAX).iter().map(Vec::len).max() >= Some(8)).then_some(())
    });
    let to = now_ms();
    let ours = stored(&fleet, &id, from, to);
    assert!(ours.len() > 100, "only {} series stored", ours.len());
    let selector = "{host=\"rw\"}";
    wait_for("Prometheus to hold every stored sample", Duration::from_secs(30), || {
        same(&ours, &prometheus.raw(selector, "10m"), from, to).ok()
    });
    wait_for("VictoriaMetrics to hold every stored sample", Duration::from_secs(30), || {
        same(&ours, &vm.raw(selector), from, to).ok()
    });
    let up = prometheus.raw("curvemon_host_up{host=\"rw\"}", "10m");
    assert!(
        up.iter().any(|(_, p)| p.iter().any(|(_, v)| *v == 1.0)),
        "no curvemon_host_up: {up:?}"
    );

    // Prometheus down for 60 s; the collector killed and restarted within.
    let outage = now_ms();
    prometheus.stop();
    let kill_at = std::time::Instant::now() + Duration::from_secs(25);
    wait_for("samples stored while Prometheus is down", Duration::from_secs(40), || {
        (std::time::Instant::now() >= kill_at).then_some(())
    });
    collector.kill();
    collector = fleet.start_collector(&["--config", &config], "collector-2.log");
    let back_at = std::time::Instant::now() + Duration::from_secs(30);
    wait_for("the rest of the outage", Duration::from_secs(40), || {
        (std::time::Instant::now() >= back_at).then_some(())
    });
    prometheus.start_again();
    // The agent's samples of the collector's downtime are backfilled (the
    // store holds them once they are acknowledged); compare up to a point
    // after the outage once the store holds a whole range without holes.
    let after = now_ms() + 3_000;
    let mut last = Value::Null;
    let whole = common::poll(Duration::from_secs(60), || {
        let s = fleet.json(&format!("/api/hosts/{id}/samples?since={outage}&until={after}"))?;
        let seqs: Vec<u64> = s["seq"].as_array()?.iter().filter_map(Value::as_u64).collect();
        let whole = seqs.windows(2).all(|w| w[1] == w[0] + 1);
        let ok = whole && seqs.len() >= 45 && s["t"].as_array()?.last()?.as_u64()? >= after - 1_000;
        last = s;
        ok.then_some(())
    });
    assert!(whole.is_some(), "the store holds the outage with holes: {last}");
    let ours = stored(&fleet, &id, outage, after);
    assert!(ours.iter().map(Vec::len).max().unwrap() >= 45);
    wait_for("Prometheus to hold every sample of the outage", Duration::from_secs(90), || {
        same(&ours, &prometheus.raw(selector, "10m"), outage, after).ok()
    });
    let metrics = common::http_get(fleet.http_port, "/metrics").unwrap().1;
    let parsed = common::parse_exposition(&metrics);
    let count =
        |name: &str| -> f64 { parsed.iter().filter(|(k, _)| k.0 == name).map(|(_, v)| *v).sum() };
    assert!(count("curvemon_remote_write_retries_total") >= 1.0, "{metrics}");
    assert_eq!(count("curvemon_remote_write_rejected_samples_total"), 0.0);
    assert_eq!(count("curvemon_remote_write_dropped_samples_total"), 0.0);
    drop(collector);
}

/// Each request's status and body.
type Requests = Arc<Mutex<Vec<(u16, Vec<u8>)>>>;

/// A receiver that answers from a script of statuses, then 200, and keeps
/// every request body.
struct Scripted {
    port: u16,
    bodies: Requests,
}

impl Scripted {
    fn start(script: Vec<u16>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies: Requests = Arc::default();
        let kept = Arc::clone(&bodies);
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut reader = BufReader::new(stream);
                loop {
                    let mut length = None;
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        if line.trim().is_empty() {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse::<usize>().ok();
                        }
                    }
                    let mut body = vec![0; length.unwrap_or(0)];
                    reader.read_exact(&mut body).unwrap();
                    let status = script.next().unwrap_or(200);
                    kept.lock().unwrap().push((status, body));
                    let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 4\r\n\r\nnope");
                    reader.get_mut().write_all(reply.as_bytes()).unwrap();
                }
            }
        });
        Scripted { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/v1/write", self.port)
    }

    fn requests(&self) -> Vec<(u16, Vec<u8>)> {
        self.bodies.lock().unwrap().clone()
    }
}

fn decode(body: &[u8]) -> curvemon_collector::export::prompb::WriteRequest {
    let raw = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    curvemon_collector::export::prompb::WriteRequest::decode(raw.as_slice()).unwrap()
}

/// Times of the host samples in a request (not the liveness series).
fn sample_times(body: &[u8]) -> Vec<i64> {
    let mut times: Vec<i64> = decode(body)
        .timeseries
        .iter()
        .filter(|s| s.labels.iter().any(|l| l.name == "__name__" && l.value != "curvemon_host_up"))
        .flat_map(|s| s.samples.iter().map(|x| x.timestamp))
        .collect();
    times.sort_unstable();
    times.dedup();
    times
}

/// 500 then 200: the same request comes again; 400: it is counted as
/// rejected and not sent again (the next request carries newer samples).
#[test]
fn a_5xx_is_sent_again_a_4xx_is_not_and_the_queue_bound_holds() {
    let retry = Scripted::start(vec![500, 503, 429]);
    let refuse = Scripted::start(vec![400]);
    // Failing for ~8 s (pauses of 0.25, 0.5, 1, 2 and 4 s) while a sample
    // a second arrives, with a bound of 3 samples: the request is given up.
    let overflow = Scripted::start(vec![503; 6]);
    let fleet = Fleet::new();
    let config = config(
        &fleet,
        &[(&retry.url(), ""), (&refuse.url(), ""), (&overflow.url(), "queue_samples = 3")],
    );
    let _collector = fleet.start_collector(&["--config", &config], "collector.log");
    let keys = fleet.agent_keys("rules", true);
    let _agent = fleet.start_agent("rules", &keys, &["--interval", "1s"]);
    wait_for("four requests at the retrying receiver", Duration::from_secs(60), || {
        (retry.requests().len() >= 4).then_some(())
    });
    let r = retry.requests();
    assert_eq!(r.iter().map(|(s, _)| *s).take(4).collect::<Vec<_>>(), [500, 503, 429, 200]);
    assert!(r[..4].windows(2).all(|w| w[0].1 == w[1].1), "a retried request changed");
    assert!(!sample_times(&r[0].1).is_empty(), "the first request held no samples");

    wait_for("a second request at the refusing receiver", Duration::from_secs(30), || {
        (refuse.requests().len() >= 2).then_some(())
    });
    let f = refuse.requests();
    assert_eq!(f[0].0, 400);
    let (first, second) = (sample_times(&f[0].1), sample_times(&f[1].1));
    assert!(!first.is_empty() && !second.is_empty());
    assert!(
        second.iter().all(|t| !first.contains(t)),
        "the refused samples were sent again: {first:?} then {second:?}"
    );
    let target = refuse.url();
    wait_for("the refusal counted", Duration::from_secs(10), || {
        let text = common::http_get(fleet.http_port, "/metrics")?.1;
        let parsed = common::parse_exposition(&text);
        let rejected: HashMap<_, _> = parsed
            .iter()
            .filter(|(k, _)| k.0 == "curvemon_remote_write_rejected_samples_total")
            .map(|(k, v)| (format!("{:?}", k.1), *v))
            .collect();
        rejected.iter().any(|(labels, v)| labels.contains(&target) && *v >= 1.0).then_some(())
    });
    let log = std::fs::read_to_string(fleet.path("collector.log")).unwrap();
    assert!(log.contains("refused a remote-write request") && log.contains("nope"), "{log}");

    wait_for("a delivered request after the overflow", Duration::from_secs(60), || {
        overflow.requests().iter().any(|(s, _)| *s == 200).then_some(())
    });
    let o = overflow.requests();
    let given_up = sample_times(&o[0].1);
    let delivered = o.iter().find(|(s, _)| *s == 200).map(|(_, b)| sample_times(b)).unwrap();
    assert!(
        delivered.iter().all(|t| !given_up.contains(t)),
        "the given-up request was delivered: {given_up:?} then {delivered:?}"
    );
    let target = overflow.url();
    let text = common::http_get(fleet.http_port, "/metrics").unwrap().1;
    let dropped: f64 = common::parse_exposition(&text)
        .iter()
        .filter(|(k, _)| {
            k.0 == "curvemon_remote_write_dropped_samples_total"
                && k.1.get("target") == Some(&target)
        })
        .map(|(_, v)| *v)
        .sum();
    assert!(dropped >= given_up.len() as f64 && dropped >= 1.0, "dropped {dropped}");
}
