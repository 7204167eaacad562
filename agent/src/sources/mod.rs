//! Where application data comes from: StatsD pushed to the agent's
//! sockets ([`statsd`]) and Prometheus pages the agent pulls ([`scrape`]).
//! Both feed the one registry of application series ([`crate::apps`]); the
//! event loop polls their descriptors, and each sample carries what they
//! gathered in the interval plus their own health as host metrics.

pub mod scrape;
pub mod statsd;

use std::{os::fd::BorrowedFd, time::Instant};

use curvemon_protocol::{AppSeries, Kind};

use crate::{
    apps::{Apps, Drop, Flush, Limits, Origin},
    collectors::{FamilySample, label},
    roots::Roots,
};

/// The `[statsd]` and `[[scrape]]` sections, validated.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// StatsD sockets; `None` when all are off.
    pub statsd: Option<statsd::Config>,
    /// Bounds of the application series.
    pub limits: Limits,
    /// The application of StatsD names without a dot or an `app` tag.
    pub default_app: String,
    /// Pages to scrape.
    pub scrape: Vec<scrape::Target>,
}

/// Every application source and the registry they feed.
pub struct Sources {
    /// The application series.
    pub apps: Apps,
    statsd: Option<statsd::Statsd>,
    scraper: Option<scrape::Scraper>,
    targets: Vec<scrape::Target>,
    health: Vec<scrape::Health>,
    roots: Roots,
}

impl Sources {
    /// Opens the sockets and starts the scrape worker; what cannot be
    /// opened is logged and left out.
    pub fn open(config: &Config, roots: &Roots) -> Sources {
        let statsd = config.statsd.as_ref().map(statsd::Statsd::open).filter(|s| s.is_open());
        let scraper = if config.scrape.is_empty() {
            None
        } else {
            match scrape::Scraper::start(config.scrape.clone()) {
                Ok(scraper) => Some(scraper),
                Err(e) => {
                    tracing::error!(error = %e, "Cannot start the scrape worker; not scraping.");
                    None
                }
            }
        };
        Sources {
            apps: Apps::new(config.limits.clone(), config.default_app.clone(), roots.clone()),
            statsd,
            health: vec![scrape::Health::default(); config.scrape.len()],
            targets: config.scrape.clone(),
            scraper,
            roots: roots.clone(),
        }
    }

    /// The descriptors to poll for reading, in the order [`Sources::read`]
    /// takes back.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds = self.statsd.as_ref().map(statsd::Statsd::fds).unwrap_or_default();
        fds.extend(self.scraper.as_ref().map(scrape::Scraper::fd));
        fds
    }

    /// Takes what the descriptors `ready` marks have.
    pub fn read(&mut self, ready: &[bool], now: Instant) {
        let statsd_fds = self.statsd.as_ref().map_or(0, |s| s.fds().len());
        if let Some(statsd) = &mut self.statsd {
            statsd.read(&ready[..statsd_fds.min(ready.len())], &mut self.apps, now);
        }
        if ready.get(statsd_fds).copied().unwrap_or(false) {
            self.take_scrapes(now);
        }
    }

    fn take_scrapes(&mut self, now: Instant) {
        let Some(scraper) = &mut self.scraper else { return };
        for outcome in scraper.take() {
            let Some(target) = self.targets.get(outcome.target) else { continue };
            self.health[outcome.target].record(target, &outcome);
            if let Ok(parsed) = outcome.result {
                let mut series = parsed.series;
                if series.len() > target.max_series {
                    self.apps
                        .counts
                        .drop(Drop::SeriesCap, (series.len() - target.max_series) as u64);
                    series.truncate(target.max_series);
                }
                let origin = Origin { source: format!("scrape {}", target.url), pid: None };
                self.apps.scrape(&origin, &target.app, &target.instance, series, now);
            }
        }
    }

    /// Ends an interval of application data.
    pub fn flush(&mut self, now: Instant) -> Flush {
        self.apps.flush(now)
    }

    /// Every live application series (for a new connection).
    pub fn full(&mut self) -> AppSeries {
        self.apps.full()
    }

    /// The sources' own health, as host families with a fixed layout:
    /// StatsD's lines and drops (the kernel's buffer drops read now), and
    /// each scrape target's state.
    pub fn families(&mut self) -> Vec<FamilySample> {
        let mut out = Vec::new();
        if let Some(statsd) = &mut self.statsd {
            let kernel = statsd.kernel_drops(self.roots.root());
            self.apps.counts.drop(Drop::ReceiveBuffer, kernel);
            out.push(FamilySample::single(
                "curvemon_statsd_lines_total",
                "StatsD lines taken (a line with several values counts once).",
                Kind::Counter,
                self.apps.counts.lines as f64,
            ));
            let mut dropped = FamilySample::new(
                "curvemon_statsd_dropped_total",
                "StatsD lines, values or datagrams not taken, by reason.",
                Kind::Counter,
            );
            for (reason, n) in Drop::ALL.iter().zip(self.apps.counts.dropped) {
                dropped.push(vec![label("reason", reason.label())], n as f64);
            }
            out.push(dropped);
        }
        if self.statsd.is_some() || !self.targets.is_empty() {
            out.push(FamilySample::single(
                "curvemon_agent_app_series",
                "Application series the agent holds (StatsD and scraped).",
                Kind::Gauge,
                self.apps.series_count() as f64,
            ));
        }
        if !self.targets.is_empty() {
            let g = Kind::Gauge;
            let mut up = FamilySample::new("curvemon_scrape_up", "1 if the last scrape worked.", g);
            let mut seconds = FamilySample::new(
                "curvemon_scrape_duration_seconds",
                "How long the last scrape took.",
                g,
            );
            let mut series =
                FamilySample::new("curvemon_scrape_series", "Series in the last scrape.", g);
            let mut bad = FamilySample::new(
                "curvemon_scrape_skipped_lines_total",
                "Lines of scraped pages that did not parse.",
                Kind::Counter,
            );
            let mut failures = FamilySample::new(
                "curvemon_scrape_failures_total",
                "Scrapes that failed (connection, timeout, status, size).",
                Kind::Counter,
            );
            for (target, h) in self.targets.iter().zip(&self.health) {
                let l = || vec![label("target", target.url.to_string())];
                up.push(l(), h.up);
                seconds.push(l(), h.seconds);
                series.push(l(), h.series);
                bad.push(l(), h.bad_lines);
                failures.push(l(), h.failures);
            }
            out.extend([up, seconds, series, bad, failures]);
        }
        out
    }

    /// Closes the sockets (removing their files) and stops the worker.
    pub fn close(self) {
        if let Some(statsd) = self.statsd {
            statsd.close();
        }
    }
}
