//! systemd's notification protocol (`sd_notify`) for the curvemon daemons.
//!
//! Both units are `Type=notify` with `WatchdogSec=`: systemd waits for
//! `READY=1` before it counts the daemon started, shows the last `STATUS=`
//! line in `systemctl status`, and restarts the daemon when `WATCHDOG=1`
//! stops arriving. The watchdog is only worth having if the loop that does
//! the work feeds it: a helper thread pinging on a timer would keep a wedged
//! daemon alive. So a [`Notifier`] is owned by that loop and fed on each of
//! its turns; it sends at half the period systemd asked for, and nothing at
//! all when the daemon was not started by systemd (no `NOTIFY_SOCKET`).
//!
//! The datagrams are sent by the `sd-notify` crate. A failed send is logged
//! once and counted, never fatal: monitoring must not stop because the
//! service manager went away.

use std::time::{Duration, Instant};

/// What a daemon tells systemd, from the loop that does its work.
#[derive(Debug)]
pub struct Notifier {
    /// `NOTIFY_SOCKET` was set when the daemon started.
    active: bool,
    /// Half of `WATCHDOG_USEC`: the owning loop wakes at least this often,
    /// and a ping is due once half of it has passed, so that a loop turning
    /// exactly this often (a little early or late) still pings every turn.
    ping_every: Option<Duration>,
    last_ping: Option<Instant>,
    status: String,
    failed_sends: u64,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` as systemd
    /// sets them; without them every call is a no-op.
    pub fn from_env() -> Self {
        let active = std::env::var_os("NOTIFY_SOCKET").is_some();
        let ping_every = sd_notify::watchdog_enabled().filter(|_| active).map(|period| period / 2);
        Notifier { active, ping_every, last_ping: None, status: String::new(), failed_sends: 0 }
    }

    /// A notifier that never sends: for tests and embedded use.
    pub fn disabled() -> Self {
        Notifier {
            active: false,
            ping_every: None,
            last_ping: None,
            status: String::new(),
            failed_sends: 0,
        }
    }

    /// Whether the daemon runs under a service manager that listens: a
    /// loop builds its status line only then.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// How often the owning loop must call [`Notifier::watchdog`] at the
    /// latest, so that a loop that sleeps can wake in time.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.ping_every
    }

    /// `READY=1` with a first status line, and the watchdog's first ping.
    pub fn ready(&mut self, status: &str, now: Instant) {
        if !self.active {
            return;
        }
        self.status = status.to_owned();
        let mut states =
            vec![sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(status)];
        if self.ping_every.is_some() {
            states.push(sd_notify::NotifyState::Watchdog);
            self.last_ping = Some(now);
        }
        self.send(&states);
    }

    /// `STATUS=`, sent only when it differs from the last one, so a loop
    /// may call this on every turn.
    pub fn status(&mut self, status: &str) {
        if !self.active || self.status == status {
            return;
        }
        self.status = status.to_owned();
        self.send(&[sd_notify::NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1` when a quarter of the watchdog period has passed since
    /// the last: pings at most every quarter period, and at least every half
    /// given [`Notifier::watchdog_interval`]'s wake-ups.
    pub fn watchdog(&mut self, now: Instant) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self.last_ping.is_some_and(|last| now.saturating_duration_since(last) < every / 2) {
            return;
        }
        self.last_ping = Some(now);
        self.send(&[sd_notify::NotifyState::Watchdog]);
    }

    /// `STOPPING=1`: the daemon is shutting down on purpose.
    pub fn stopping(&mut self, status: &str) {
        if !self.active {
            return;
        }
        self.send(&[sd_notify::NotifyState::Stopping, sd_notify::NotifyState::Status(status)]);
    }

    /// Datagrams the service manager did not take.
    pub fn failed_sends(&self) -> u64 {
        self.failed_sends
    }

    fn send(&mut self, states: &[sd_notify::NotifyState<'_>]) {
        if let Err(error) = sd_notify::notify(states) {
            self.failed_sends += 1;
            if self.failed_sends == 1 {
                tracing::warn!(%error, "cannot notify the service manager (NOTIFY_SOCKET); counting further failures silently");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_notifier_never_asks_to_be_woken_and_counts_nothing() {
        let mut notifier = Notifier::disabled();
        let now = Instant::now();
        notifier.ready("ready", now);
        notifier.status("working");
        notifier.watchdog(now + Duration::from_secs(3600));
        notifier.stopping("bye");
        assert_eq!(notifier.watchdog_interval(), None);
        assert_eq!(notifier.failed_sends(), 0);
    }
}
