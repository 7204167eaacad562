//! The collector's /metrics agrees with node_exporter's for the same metric
//! names on the same machine: exactly for static values (memory total, CPU
//! count, file system sizes, boot time), and for counters within the change
//! over the scrape gap (our sample before node_exporter's scrape ≤ its value
//! ≤ our sample after it).

mod common;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::{Duration, SystemTime},
};

use common::{Fleet, Proc, SeriesKey, free_port, http_get, parse_exposition, wait_for};

const LIMIT: Duration = Duration::from_secs(30);

/// Values that do not change while the machine runs.
const STATIC: [&str; 10] = [
    "node_memory_MemTotal_bytes",
    "node_memory_SwapTotal_bytes",
    "node_memory_HugePages_Total",
    "node_memory_Hugepagesize_bytes",
    "node_boot_time_seconds",
    "node_filefd_maximum",
    "node_entropy_pool_size_bits",
    "node_filesystem_size_bytes",
    "node_filesystem_files",
    "node_filesystem_readonly",
];

fn is_counter(name: &str) -> bool {
    (name.ends_with("_total")
        || name.starts_with("node_vmstat_")
        || name.starts_with("node_netstat_"))
        && !matches!(name, "node_netstat_Tcp_CurrEstab" | "node_netstat_Ip_Forwarding")
}

/// Our series for `host`, keyed like node_exporter's (without the host label).
fn ours(text: &str, host: &str) -> HashMap<SeriesKey, f64> {
    parse_exposition(text)
        .into_iter()
        .filter_map(|((name, mut labels), v)| {
            (labels.remove("host")? == host).then_some(((name, labels), v))
        })
        .collect()
}

fn scrape(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics").expect("scrape");
    assert_eq!(status, 200);
    body
}

fn cpus(series: &HashMap<SeriesKey, f64>) -> BTreeSet<String> {
    series
        .keys()
        .filter(|(n, _)| n == "node_cpu_seconds_total")
        .filter_map(|(_, l)| l.get("cpu").cloned())
        .collect()
}

#[test]
fn values_agree_with_node_exporter() {
    let fleet = Fleet::new();
    let keys = fleet.agent_keys("twin-of-node-exporter", true);
    let _collector = fleet.start_collector(&[], "collector.log");
    // Every family every sample, so that counters lag by one interval at
    // most (by default the slow families are read every 10 s).
    let config = fleet.path("agent.toml");
    let every_sample: String = curvemon_agent::collectors::CATALOG
        .iter()
        .filter(|spec| spec.every.is_some())
        .map(|spec| format!("{} = \"500ms\"\n", spec.name))
        .collect();
    std::fs::write(&config, format!("[intervals]\n{every_sample}")).unwrap();
    let _agent = fleet.start_agent(
        "twin-of-node-exporter",
        &keys,
        &["--interval", "500ms", "--config", config.to_str().unwrap()],
    );
    let ne_port = free_port();
    let _ne = Proc::spawn(
        std::path::Path::new("/usr/bin/prometheus-node-exporter"),
        &[&format!("--web.listen-address=127.0.0.1:{ne_port}")],
        fleet.path("node-exporter.log"),
        "node_exporter",
    );
    wait_for("node_exporter to answer", LIMIT, || {
        http_get(ne_port, "/metrics").filter(|(s, _)| *s == 200)
    });
    fleet.wait_host("twin-of-node-exporter", "a second sample", LIMIT, |h| {
        h["latest"]["seq"].as_u64() >= Some(2)
    });

    let before = ours(&scrape(fleet.http_port), "twin-of-node-exporter");
    let node_exporter = parse_exposition(&scrape(ne_port));
    let scraped = SystemTime::now();
    // Wait for a sample the agent took after node_exporter's scrape ended.
    fleet.wait_host("twin-of-node-exporter", "a sample after node_exporter's scrape", LIMIT, |h| {
        h["latest"]["taken_at"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339(t).ok())
            .is_some_and(|t| t > scraped)
    });
    let after = ours(&scrape(fleet.http_port), "twin-of-node-exporter");

    assert_eq!(cpus(&before), cpus(&node_exporter), "CPU count");
    assert!(!cpus(&before).is_empty());

    let mut compared: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, &ne) in &node_exporter {
        let (name, _) = key;
        let (Some(&lo), Some(&hi)) = (before.get(key), after.get(key)) else { continue };
        if STATIC.contains(&name.as_str()) {
            if lo != ne || hi != ne {
                problems.push(format!("{key:?}: ours {lo} / {hi}, node_exporter {ne}"));
            }
        } else if is_counter(name) {
            let slack = 1e-9 * ne.abs().max(1.0);
            if !(lo - slack <= ne && ne <= hi + slack) {
                problems.push(format!("{key:?}: node_exporter {ne} not within ours {lo} ..= {hi}"));
            }
        } else {
            continue;
        }
        *compared.entry(name.as_str()).or_default() += 1;
    }
    assert!(problems.is_empty(), "disagreements:\n{}", problems.join("\n"));
    eprintln!("compared series per family: {compared:#?}");
    for must in [
        "node_memory_MemTotal_bytes",
        "node_boot_time_seconds",
        "node_filesystem_size_bytes",
        "node_cpu_seconds_total",
        "node_context_switches_total",
        "node_forks_total",
        "node_intr_total",
        "node_disk_read_bytes_total",
        "node_network_receive_bytes_total",
        "node_vmstat_pgfault",
        "node_netstat_Tcp_InSegs",
    ] {
        assert!(compared.contains_key(must), "{must} was not compared; compared: {compared:?}");
    }
    let total: usize = compared.values().sum();
    assert!(total >= 60, "only {total} series compared");
}

#[test]
fn exposition_parser_reads_escapes_and_bare_names() {
    let parsed = parse_exposition(
        "# HELP x y\nup 1\nm{a=\"1\",b=\"q\\\"uo,te}\"} 2.5 1700000000\nn{} +Inf\n",
    );
    assert_eq!(parsed[&("up".to_string(), Default::default())], 1.0);
    let labels: std::collections::BTreeMap<String, String> =
        [("a".to_string(), "1".to_string()), ("b".to_string(), "q\"uo,te}".to_string())].into();
    assert_eq!(parsed[&("m".to_string(), labels)], 2.5);
    assert_eq!(parsed[&("n".to_string(), Default::default())], f64::INFINITY);
}
