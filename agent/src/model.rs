//! The host model: who this host is, read from `/proc` and `/etc`, plus the
//! schema of the current sample.

use std::path::Path;

use curvemon_protocol::{Model, Schema};
use procfs::{CpuInfo, KernelStats, Meminfo};

use crate::roots::{ProcReadError, Roots};

/// Facts about the host that change rarely (the hello uses a few of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `/etc/machine-id`, empty if absent.
    pub machine_id: String,
    /// `/proc/sys/kernel/random/boot_id`, empty if absent.
    pub boot_id: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// `PRETTY_NAME` from os-release.
    pub os: String,
    /// The first CPU's model name.
    pub cpu_model: String,
    /// CPUs listed in `/proc/stat`.
    pub cpu_count: u32,
    /// `MemTotal`, bytes.
    pub mem_total_bytes: u64,
    /// `SwapTotal`, bytes.
    pub swap_total_bytes: u64,
    /// `btime`, Unix seconds.
    pub boot_time_unix: u64,
}

/// Reads the facts. `/proc/stat` and `/proc/meminfo` are required; the rest
/// falls back to empty text (containers often lack machine-id).
///
/// # Errors
/// The required file that could not be read.
pub fn read_facts(root: &Roots, etc_root: &Path) -> Result<HostFacts, ProcReadError> {
    let stat: KernelStats = root.read_si()?;
    let mem: Meminfo = root.read()?;
    let cpu_model = root
        .read::<CpuInfo>()
        .ok()
        .and_then(|info| info.model_name(0).map(str::to_string))
        .unwrap_or_default();
    Ok(HostFacts {
        machine_id: read_trimmed(&etc_root.join("machine-id")),
        boot_id: root.read_text("sys/kernel/random/boot_id").unwrap_or_default(),
        kernel: root.read_text("sys/kernel/osrelease").unwrap_or_default(),
        os: os_name(&read_trimmed(&etc_root.join("os-release"))),
        cpu_model,
        cpu_count: u32::try_from(stat.cpu_time.len()).unwrap_or(u32::MAX),
        mem_total_bytes: mem.mem_total,
        swap_total_bytes: mem.swap_total,
        boot_time_unix: stat.btime,
    })
}

/// Builds the model message.
pub fn build(facts: HostFacts, hostname: &str, interval_ms: u32, schema: Schema) -> Model {
    Model {
        hostname: hostname.to_string(),
        machine_id: facts.machine_id,
        boot_id: facts.boot_id,
        kernel: facts.kernel,
        os: facts.os,
        cpu_model: facts.cpu_model,
        cpu_count: facts.cpu_count,
        mem_total_bytes: facts.mem_total_bytes,
        swap_total_bytes: facts.swap_total_bytes,
        boot_time_unix: facts.boot_time_unix,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        interval_ms,
        schema,
    }
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default()
}

/// `PRETTY_NAME`, else `NAME`, else "Linux" (os-release(5)).
fn os_name(os_release: &str) -> String {
    let field = |key: &str| {
        os_release.lines().find_map(|line| {
            let value = line.strip_prefix(key)?.strip_prefix('=')?;
            Some(value.trim().trim_matches('"').trim_matches('\'').to_string())
        })
    };
    field("PRETTY_NAME").or_else(|| field("NAME")).unwrap_or_else(|| "Linux".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_name_prefers_pretty_name() {
        assert_eq!(
            os_name("NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n"),
            "Debian GNU/Linux 12 (bookworm)"
        );
        assert_eq!(os_name("NAME=Alpine\n"), "Alpine");
        assert_eq!(os_name(""), "Linux");
    }
}
