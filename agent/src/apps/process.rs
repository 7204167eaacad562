//! The process behind an application instance, where the agent knows it
//! (a Unix socket tells the sender's pid): what to call the instance, and
//! what it costs (CPU and resident memory), read from `/proc/PID` like the
//! `[[process]]` groups are.

use std::path::Path;

use crate::roots::Roots;

/// How a process is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The instance name: its systemd service (`shop@2.service`), or
    /// `comm[pid]` (`python3[4242]`).
    pub name: String,
    /// Its systemd unit or container scope, if it runs in one.
    pub unit: String,
}

/// `/proc/PID/cgroup` → the unit the process runs in: the last path
/// component that is a `.service` or `.scope` (v2 line, or v1's
/// `name=systemd` hierarchy).
fn unit(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            (controllers.is_empty() || controllers == "name=systemd").then_some(path)
        })
        .find_map(|path| {
            path.rsplit('/')
                .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
                .map(str::to_string)
        })
}

/// Names the process `pid`; `None` when it is gone or not visible.
pub fn identify(roots: &Roots, pid: u32) -> Option<Identity> {
    let dir = roots.path(&pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
    let comm = comm.trim();
    let unit = std::fs::read_to_string(dir.join("cgroup")).ok().and_then(|c| unit(&c));
    let name = match &unit {
        // A service names its instance; a login session's scope does not.
        Some(u) if u.ends_with(".service") => u.clone(),
        _ => format!("{comm}[{pid}]"),
    };
    Some(Identity { name, unit: unit.unwrap_or_default() })
}

/// CPU seconds used so far and resident bytes of `pid`; `None` when gone.
pub fn usage(roots: &Roots, pid: u32) -> Option<(f64, f64)> {
    usage_at(&roots.path(&pid.to_string()), roots.ticks_per_second(), roots.page_size())
}

fn usage_at(dir: &Path, ticks: u64, page: u64) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    // Fields after the command name, which may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15, rss 24.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    let cpu = (field(14)? + field(15)?) / ticks as f64;
    Some((cpu, field(24)? * page as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_cgroup_files() {
        assert_eq!(unit("0::/system.slice/shop@2.service\n").as_deref(), Some("shop@2.service"));
        assert_eq!(
            unit("0::/user.slice/user-0.slice/session-3.scope\n").as_deref(),
            Some("session-3.scope")
        );
        assert_eq!(
            unit("12:cpu:/x\n1:name=systemd:/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(unit("0::/\n"), None);
    }

    #[test]
    fn this_process() {
        let roots = Roots::new("/proc");
        let me = identify(&roots, std::process::id()).unwrap();
        assert!(
            me.name.ends_with(&format!("[{}]", std::process::id()))
                || me.name.ends_with(".service")
        );
        let (cpu, rss) = usage(&roots, std::process::id()).unwrap();
        assert!(cpu >= 0.0 && rss > 1e6, "{cpu} {rss}");
        assert!(usage(&roots, u32::MAX).is_none());
    }
}
