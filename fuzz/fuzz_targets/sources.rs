//! Any bytes as what applications send the agent: StatsD lines, and a
//! scraped Prometheus page. Parsing and aggregating must never panic, and
//! whatever the agent then declares must pass the collector's checks
//! (a hostile application cannot make its agent send a model the
//! collector refuses).
#![no_main]

use std::time::Instant;

use curvemon_agent::{
    apps::{Apps, Limits, Origin},
    roots::Roots,
    sources::{scrape::text, statsd::line},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let mut apps = Apps::new(Limits::default(), "statsd".into(), Roots::new("/nonexistent"));
    let origin = Origin { source: "statsd-udp".into(), pid: None };
    for raw in data.split(|b| *b == b'\n') {
        if let Ok(text) = std::str::from_utf8(raw) {
            if let Ok(metric) = line::parse(text) {
                apps.statsd(&origin, &metric, now);
            }
        }
    }
    if let Ok(page) = std::str::from_utf8(data) {
        let parsed = text::parse(page);
        let origin = Origin { source: "scrape http://127.0.0.1:1/metrics".into(), pid: None };
        apps.scrape(&origin, "app", "127.0.0.1:1", parsed.series, now);
    }
    let flush = apps.flush(now);
    if let Some(declarations) = flush.declarations {
        let checked = curvemon_protocol::validate::app_series(&declarations);
        assert!(checked.is_ok(), "the agent declared what the collector refuses: {checked:?}");
    }
});
