//! Every collector against the checked-in fixture trees, with exact values
//! taken from the fixture files (see tests/fixtures/README.md).

use std::path::PathBuf;

use curvemon_agent::{
    collectors::{self, Collector, FamilySample},
    model,
    options::{Options, ProcessGroup},
    roots::Roots,
    sampler::Sampler,
};
use curvemon_protocol::Kind;
use procfs::ExplicitSystemInfo;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn root(name: &str) -> Roots {
    root_at(&fixture(name))
}

/// A root over any tree, with the fixture machine's system values.
fn root_at(path: &std::path::Path) -> Roots {
    Roots::with_system_info(
        path,
        ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: true,
        },
    )
}

/// Where `family`'s first value is in a sample.
fn index_of(sample: &curvemon_agent::sampler::Sample, family: &str) -> usize {
    let i = sample.families().iter().position(|f| f.name == family).unwrap();
    sample.families()[..i].iter().map(|f| f.series.len()).sum()
}

/// The value of `name` whose labels include all of `labels`.
fn value(families: &[FamilySample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let family =
        families.iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no family {name}"));
    let (_, v) = family
        .series
        .iter()
        .find(|(ls, _)| {
            labels.iter().all(|(n, v)| ls.iter().any(|l| l.name == *n && l.value == *v))
        })
        .unwrap_or_else(|| panic!("no series {name}{labels:?}"));
    *v
}

fn collect(collector: &mut dyn Collector, tree: &str) -> Vec<FamilySample> {
    collector.collect(&root(tree)).unwrap()
}

#[test]
fn cpu_from_proc_stat() {
    let f = collect(&mut collectors::Cpu::default(), "proc");
    let cpu = |c, m| value(&f, "node_cpu_seconds_total", &[("cpu", c), ("mode", m)]);
    // cpu0 12861 0 3510 50900 186 0 11 13 0 0 (ticks at 100 Hz)
    assert_eq!(cpu("0", "user"), 128.61);
    assert_eq!(cpu("0", "system"), 35.10);
    assert_eq!(cpu("0", "idle"), 509.00);
    assert_eq!(cpu("0", "iowait"), 1.86);
    assert_eq!(cpu("0", "softirq"), 0.11);
    assert_eq!(cpu("0", "steal"), 0.13);
    // cpu1 13360 0 3862 49655 506 0 65 18 0 0
    assert_eq!(cpu("1", "user"), 133.60);
    assert_eq!(cpu("1", "idle"), 496.55);
    let family = f.iter().find(|x| x.name == "node_cpu_seconds_total").unwrap();
    assert_eq!(family.kind, Kind::Counter);
    assert_eq!(family.series.len(), 2 * 8, "2 CPUs × 8 modes");
    assert_eq!(value(&f, "node_boot_time_seconds", &[]), 1_795_295_856.0);
    assert_eq!(value(&f, "node_context_switches_total", &[]), 431_843.0);
    assert_eq!(value(&f, "node_forks_total", &[]), 14_250.0);
    assert_eq!(value(&f, "node_procs_running", &[]), 1.0);
    assert_eq!(value(&f, "node_procs_blocked", &[]), 0.0);
    assert_eq!(value(&f, "node_intr_total", &[]), 304_162.0);
    assert_eq!(value(&f, "node_cpu_guest_seconds_total", &[("cpu", "1"), ("mode", "nice")]), 0.0);
}

#[test]
fn cpu_on_an_old_kernel_without_steal() {
    let f = collect(&mut collectors::Cpu::default(), "proc-old-kernel");
    let cpu = |c, m| value(&f, "node_cpu_seconds_total", &[("cpu", c), ("mode", m)]);
    assert_eq!(cpu("1", "user"), 397.40);
    assert_eq!(cpu("1", "softirq"), 6.01);
    assert_eq!(cpu("1", "steal"), 0.0, "absent column reads as zero time");
    assert_eq!(value(&f, "node_procs_blocked", &[]), 1.0);
}

#[test]
fn memory_from_meminfo_in_bytes() {
    let f = collect(&mut collectors::Memory::default(), "proc");
    let kib = |n: u64| (n * 1024) as f64;
    assert_eq!(value(&f, "node_memory_MemTotal_bytes", &[]), kib(24_684_092));
    assert_eq!(value(&f, "node_memory_MemFree_bytes", &[]), kib(22_553_064));
    assert_eq!(value(&f, "node_memory_MemAvailable_bytes", &[]), kib(24_130_976));
    assert_eq!(value(&f, "node_memory_Buffers_bytes", &[]), kib(4_936));
    assert_eq!(value(&f, "node_memory_Cached_bytes", &[]), kib(1_736_656));
    assert_eq!(value(&f, "node_memory_Dirty_bytes", &[]), kib(328_336));
    assert_eq!(value(&f, "node_memory_Shmem_bytes", &[]), kib(8_856));
    assert_eq!(value(&f, "node_memory_Slab_bytes", &[]), kib(137_792));
    assert_eq!(value(&f, "node_memory_SwapTotal_bytes", &[]), 0.0);
    assert!(f.iter().all(|x| x.kind == Kind::Gauge));
}

#[test]
fn memory_on_an_old_kernel_marks_missing_fields() {
    let f = collect(&mut collectors::Memory::default(), "proc-old-kernel");
    assert_eq!(value(&f, "node_memory_MemTotal_bytes", &[]), (2_056_968u64 * 1024) as f64);
    assert_eq!(value(&f, "node_memory_SwapFree_bytes", &[]), (4_192_812u64 * 1024) as f64);
    assert!(
        value(&f, "node_memory_MemAvailable_bytes", &[]).is_nan(),
        "no MemAvailable before 3.14"
    );
    assert!(value(&f, "node_memory_Shmem_bytes", &[]).is_nan());
}

#[test]
fn load_and_uptime() {
    let f = collect(&mut collectors::Load::default(), "proc");
    assert_eq!(value(&f, "node_load1", &[]), 1.06);
    assert_eq!(value(&f, "node_load5", &[]), 0.58);
    assert_eq!(value(&f, "node_load15", &[]), 0.29);
    let f = collect(&mut collectors::Uptime::default(), "proc");
    assert_eq!(value(&f, "curvemon_uptime_seconds", &[]), 678.34);
    let f = collect(&mut collectors::Uptime::default(), "proc-old-kernel");
    assert_eq!(value(&f, "curvemon_uptime_seconds", &[]), 8_812_345.12);
}

#[test]
fn host_facts_for_the_model() {
    let facts = model::read_facts(&root("proc"), &fixture("etc")).unwrap();
    assert_eq!(facts.cpu_count, 2);
    assert_eq!(facts.cpu_model, "AMD EPYC");
    assert_eq!(facts.mem_total_bytes, 24_684_092 * 1024);
    assert_eq!(facts.swap_total_bytes, 0);
    assert_eq!(facts.boot_time_unix, 1_795_295_856);
    assert_eq!(facts.kernel, "6.18.44-fc-v657");
    assert_eq!(facts.os, "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(facts.machine_id, "0123456789abcdef0123456789abcdef");
    assert_eq!(facts.boot_id.len(), 36);

    let old = model::read_facts(&root("proc-old-kernel"), &fixture("absent-etc")).unwrap();
    assert_eq!((old.cpu_count, old.kernel.as_str()), (2, "2.6.18-419.el5"));
    assert_eq!((old.cpu_model.as_str(), old.boot_id.as_str(), old.os.as_str()), ("", "", "Linux"));
}

#[test]
fn sample_lays_out_schema_and_values_in_order() {
    let mut sampler = Sampler::new(vec![
        Box::new(collectors::Cpu::default()),
        Box::new(collectors::Memory::default()),
        Box::new(collectors::Load::default()),
        Box::new(collectors::Uptime::default()),
    ]);
    let sample = sampler.sample(&root("proc"));
    let series: usize = sample.families().iter().map(|f| f.series.len()).sum();
    assert_eq!(series, sample.values.len());
    // cpu: 16 seconds + 4 guest + 6 scalars; 18 memory; 3 load; 1 uptime;
    // 4 success and 4 duration.
    assert_eq!(series, 56);
    assert_eq!(sample.families()[0].name, "node_cpu_seconds_total");
    assert_eq!(sample.values[0], 128.61);
    let again = sampler.sample(&root("proc"));
    assert_eq!(again.revision, sample.revision, "same layout, same revision");
    assert_eq!(again.schema(), sample.schema());
    assert_eq!(again.revision, curvemon_protocol::Schema::compute_revision(again.families()));
    let success = sample
        .families()
        .iter()
        .position(|f| f.name == "curvemon_agent_collector_success")
        .unwrap();
    let offset: usize = sample.families()[..success].iter().map(|f| f.series.len()).sum();
    assert_eq!(&sample.values[offset..offset + 4], &[1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn a_failing_collector_keeps_its_layout_and_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["stat", "meminfo", "loadavg", "uptime"] {
        std::fs::copy(fixture("proc").join(f), dir.path().join(f)).unwrap();
    }
    let root = root_at(dir.path());
    let mut sampler = Sampler::new(vec![
        Box::new(collectors::Cpu::default()),
        Box::new(collectors::Memory::default()),
        Box::new(collectors::Load::default()),
        Box::new(collectors::Uptime::default()),
    ]);
    let healthy = sampler.sample(&root);
    // Rewritten in place (same inode, as kernel files are): unparseable now.
    std::fs::write(dir.path().join("loadavg"), "garbage\n").unwrap();
    let failing = sampler.sample(&root);
    assert_eq!(failing.revision, healthy.revision, "layout kept while failing");
    let at = index_of;
    assert!(failing.values[at(&failing, "node_load1")].is_nan());
    assert_eq!(
        failing.values[at(&failing, "node_memory_MemTotal_bytes")],
        (24_684_092u64 * 1024) as f64
    );
    let success = at(&failing, "curvemon_agent_collector_success");
    // Order: cpu, memory, load, uptime.
    assert_eq!(&failing.values[success..success + 4], &[1.0, 1.0, 0.0, 1.0]);
}

#[test]
fn a_slow_family_is_read_on_its_cadence_and_held_in_between() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sys/fs")).unwrap();
    std::fs::write(dir.path().join("sys/fs/file-nr"), "383\t0\t2466177\n").unwrap();
    let root = root_at(dir.path());
    let mut sampler = Sampler::new(vec![
        Box::new(collectors::Load::default()),
        Box::new(collectors::Filefd::default()),
    ])
    .with_cadence(|name| if name == "filefd" { 3 } else { 1 });
    let at = |sample: &curvemon_agent::sampler::Sample, name: &str| {
        sample.values[index_of(sample, name)]
    };
    let mut seen = Vec::new();
    for n in 0..7 {
        // Both files change before every sample (rewritten in place).
        std::fs::write(dir.path().join("sys/fs/file-nr"), format!("{}\t0\t2466177\n", 400 + n))
            .unwrap();
        std::fs::write(dir.path().join("loadavg"), format!("{n}.00 0.00 0.00 1/80 1\n")).unwrap();
        let sample = sampler.sample(&root);
        assert_eq!(at(&sample, "node_load1"), f64::from(n), "load runs every sample");
        seen.push(at(&sample, "node_filefd_allocated"));
    }
    // filefd runs on samples 0, 3 and 6 and repeats its last value between.
    assert_eq!(seen, [400.0, 400.0, 400.0, 403.0, 403.0, 403.0, 406.0]);
}

fn names(f: &[FamilySample]) -> Vec<&str> {
    f.iter().map(|x| x.name.as_ref()).collect()
}

#[test]
fn vmstat_fields() {
    let f = collect(&mut collectors::Vmstat::default(), "proc");
    assert_eq!(value(&f, "node_vmstat_pgfault", &[]), 24_910_070.0);
    assert_eq!(value(&f, "node_vmstat_pgmajfault", &[]), 5_370.0);
    assert_eq!(value(&f, "node_vmstat_pgpgout", &[]), 5_734_348.0);
    assert_eq!(value(&f, "node_vmstat_pswpin", &[]), 0.0);
    assert_eq!(value(&f, "node_vmstat_oom_kill", &[]), 0.0);
    assert_eq!(f.len(), 7);
}

#[test]
fn pressure_where_the_kernel_has_it() {
    let f = collect(&mut collectors::Pressure::default(), "proc");
    assert_eq!(value(&f, "node_pressure_cpu_waiting_seconds_total", &[]), 53.6178);
    assert_eq!(value(&f, "node_pressure_io_waiting_seconds_total", &[]), 7.638442);
    assert_eq!(value(&f, "node_pressure_io_stalled_seconds_total", &[]), 6.417263);
    assert_eq!(value(&f, "node_pressure_memory_stalled_seconds_total", &[]), 0.0);
    assert_eq!(f.len(), 6);
    // The 2.6.18 tree has no /proc/pressure: absent, not failed.
    assert!(collect(&mut collectors::Pressure::default(), "proc-old-kernel").is_empty());
}

#[test]
fn disks_without_partitions_loop_or_zram() {
    let f = collect(&mut collectors::Disk::new(Options::default().disk_exclude), "proc");
    let reads = f.iter().find(|x| x.name == "node_disk_reads_completed_total").unwrap();
    let devices: Vec<&str> = reads.series.iter().map(|(l, _)| l[0].value.as_str()).collect();
    assert_eq!(devices, ["vda"], "loop0-7 and zram0 are excluded");
    // vda 94486 11870 9311954 141708 19852 35130 11468696 45401 0 16132 188657 ...
    assert_eq!(value(&f, "node_disk_reads_completed_total", &[("device", "vda")]), 94_486.0);
    assert_eq!(value(&f, "node_disk_read_bytes_total", &[("device", "vda")]), 9_311_954.0 * 512.0);
    assert_eq!(value(&f, "node_disk_read_time_seconds_total", &[("device", "vda")]), 141.708);
    assert_eq!(
        value(&f, "node_disk_written_bytes_total", &[("device", "vda")]),
        11_468_696.0 * 512.0
    );
    assert_eq!(value(&f, "node_disk_io_now", &[("device", "vda")]), 0.0);
    assert_eq!(value(&f, "node_disk_io_time_seconds_total", &[("device", "vda")]), 16.132);
    assert_eq!(
        value(&f, "node_disk_io_time_weighted_seconds_total", &[("device", "vda")]),
        188.657
    );
    let all = collect(&mut collectors::Disk::new(regex_lite::Regex::new("^$").unwrap()), "proc");
    assert_eq!(all[0].series.len(), 10, "with no exclusion every device is reported");
}

#[test]
fn network_interfaces_sorted_without_loopback() {
    let f = collect(&mut collectors::Network::new(Options::default().network_exclude), "proc");
    let family = f.iter().find(|x| x.name == "node_network_receive_bytes_total").unwrap();
    let devices: Vec<&str> = family.series.iter().map(|(l, _)| l[0].value.as_str()).collect();
    assert_eq!(devices, ["eth0", "ifb0", "ifb1"]);
    assert_eq!(value(&f, "node_network_receive_bytes_total", &[("device", "eth0")]), 191_680_361.0);
    assert_eq!(value(&f, "node_network_receive_packets_total", &[("device", "eth0")]), 9_708.0);
    assert_eq!(value(&f, "node_network_transmit_bytes_total", &[("device", "eth0")]), 615_898.0);
    assert_eq!(value(&f, "node_network_transmit_packets_total", &[("device", "eth0")]), 6_575.0);
    assert_eq!(f.len(), 8);
}

#[test]
fn netstat_default_fields() {
    let f = collect(&mut collectors::Netstat::default(), "proc");
    assert_eq!(value(&f, "node_netstat_Tcp_ActiveOpens", &[]), 2_434.0);
    assert_eq!(value(&f, "node_netstat_Tcp_PassiveOpens", &[]), 2_302.0);
    assert_eq!(value(&f, "node_netstat_Tcp_OutRsts", &[]), 125.0);
    assert_eq!(value(&f, "node_netstat_Tcp_RetransSegs", &[]), 0.0);
    assert_eq!(value(&f, "node_netstat_Udp_InDatagrams", &[]), 80.0);
    assert_eq!(value(&f, "node_netstat_Udp_OutDatagrams", &[]), 81.0);
    assert_eq!(value(&f, "node_netstat_Ip_Forwarding", &[]), 2.0);
    assert_eq!(value(&f, "node_netstat_Icmp_InMsgs", &[]), 1.0);
    assert_eq!(value(&f, "node_netstat_TcpExt_SyncookiesSent", &[]), 0.0);
    assert_eq!(
        value(&f, "node_netstat_Ip6_InOctets", &[]),
        value(&f, "node_netstat_Ip6_InOctets", &[])
    );
    let kinds = |n: &str| f.iter().find(|x| x.name == n).unwrap().kind;
    assert_eq!(kinds("node_netstat_Tcp_CurrEstab"), Kind::Gauge);
    assert_eq!(kinds("node_netstat_Tcp_InSegs"), Kind::Counter);
    assert!(!names(&f).contains(&"node_netstat_Tcp_RtoMin"), "not in the default field set");
}

#[test]
fn sockstat_counts_and_bytes() {
    let f = collect(&mut collectors::Sockstat::default(), "proc");
    assert_eq!(value(&f, "node_sockstat_sockets_used", &[]), 8.0);
    assert_eq!(value(&f, "node_sockstat_TCP_inuse", &[]), 1.0);
    assert_eq!(value(&f, "node_sockstat_TCP_tw", &[]), 3.0);
    assert_eq!(value(&f, "node_sockstat_TCP_mem", &[]), 187.0);
    assert_eq!(value(&f, "node_sockstat_TCP_mem_bytes", &[]), 187.0 * 4096.0);
    assert_eq!(value(&f, "node_sockstat_FRAG_memory", &[]), 0.0);
    assert_eq!(value(&f, "node_sockstat_TCP6_inuse", &[]), 0.0);
}

#[test]
fn tcp_connection_states() {
    let f = collect(&mut collectors::Tcpstat::default(), "proc");
    assert_eq!(value(&f, "node_tcp_connection_states", &[("state", "time_wait")]), 3.0);
    assert_eq!(value(&f, "node_tcp_connection_states", &[("state", "listen")]), 1.0);
    assert_eq!(value(&f, "node_tcp_connection_states", &[("state", "established")]), 0.0);
    assert_eq!(f[0].series.len(), 11, "every state, always");
}

#[test]
fn file_handles_entropy_and_process_counts() {
    let f = collect(&mut collectors::Filefd::default(), "proc");
    assert_eq!(value(&f, "node_filefd_allocated", &[]), 383.0);
    assert_eq!(value(&f, "node_filefd_maximum", &[]), 2_466_177.0);
    let f = collect(&mut collectors::Entropy::default(), "proc");
    assert_eq!(value(&f, "node_entropy_available_bits", &[]), 256.0);
    assert_eq!(value(&f, "node_entropy_pool_size_bits", &[]), 256.0);
    let f = collect(&mut collectors::Processes::default(), "proc");
    assert_eq!(value(&f, "node_processes_pids", &[]), 3.0, "29902, 29903 and 31000");
    assert_eq!(value(&f, "node_processes_threads", &[]), 80.0, "loadavg's 1/80");
    assert_eq!(value(&f, "node_processes_max_processes", &[]), 32_768.0);
    assert_eq!(value(&f, "node_processes_max_threads", &[]), 192_730.0);
}

#[test]
fn cgroups_unified_layout() {
    let roots = root("proc").with_sys(fixture("sys-unified"));
    let f = collectors::Cgroups::new(Options::default().cgroup_parents).collect(&roots).unwrap();
    let cpu = f.iter().find(|x| x.name == "container_cpu_usage_seconds_total").unwrap();
    let ids: Vec<&str> = cpu.series.iter().map(|(l, _)| l[0].value.as_str()).collect();
    assert_eq!(ids, ["/system.slice/docker-4f2a.scope", "/system.slice/nginx.service"]);
    let nginx = [("name", "nginx.service")];
    assert_eq!(value(&f, "container_cpu_usage_seconds_total", &nginx), 8.123456);
    assert_eq!(value(&f, "container_memory_usage_bytes", &nginx), 52_428_800.0);
    assert_eq!(
        value(&f, "container_spec_memory_limit_bytes", &nginx),
        0.0,
        "max = unlimited = 0, as cAdvisor"
    );
    assert_eq!(value(&f, "container_fs_reads_bytes_total", &nginx), 1_048_576.0 + 512.0);
    assert_eq!(value(&f, "container_fs_writes_bytes_total", &nginx), 4_096.0);
    assert_eq!(value(&f, "container_threads", &nginx), 7.0);
    assert_eq!(value(&f, "container_pressure_cpu_waiting_seconds_total", &nginx), 1.5);
    assert_eq!(value(&f, "container_pressure_memory_stalled_seconds_total", &nginx), 0.02);
    assert_eq!(value(&f, "container_pressure_io_stalled_seconds_total", &nginx), 0.3);
    let docker = [("id", "/system.slice/docker-4f2a.scope")];
    assert_eq!(value(&f, "container_spec_memory_limit_bytes", &docker), 268_435_456.0);
    assert!(value(&f, "container_fs_reads_bytes_total", &docker).is_nan(), "no io.stat");
}

#[test]
fn cgroups_hybrid_layout_as_on_this_machine() {
    let roots = root("proc").with_sys(fixture("sys-hybrid"));
    let f = collectors::Cgroups::new(Options::default().cgroup_parents).collect(&roots).unwrap();
    let api = [("id", "/system.slice/api.service")];
    assert_eq!(value(&f, "container_cpu_usage_seconds_total", &api), 783.535361291);
    assert_eq!(value(&f, "container_memory_usage_bytes", &api), 1_168_158_720.0);
    assert_eq!(
        value(&f, "container_spec_memory_limit_bytes", &api),
        0.0,
        "v1's huge number means unlimited"
    );
    assert_eq!(value(&f, "container_fs_reads_bytes_total", &api), 4_194_304.0);
    assert_eq!(value(&f, "container_fs_writes_bytes_total", &api), 65_536.0);
    assert_eq!(value(&f, "container_threads", &api), 12.0);
    assert_eq!(value(&f, "container_pressure_cpu_waiting_seconds_total", &api), 56.593549);
    assert_eq!(value(&f, "container_pressure_io_stalled_seconds_total", &api), 8.750088);
}

#[test]
fn cgroups_legacy_layout_and_none() {
    let dir = tempfile::tempdir().unwrap();
    let cg = dir.path().join("fs/cgroup");
    std::fs::create_dir_all(cg.join("systemd/system.slice/cron.service")).unwrap();
    std::fs::create_dir_all(cg.join("memory/system.slice/cron.service")).unwrap();
    std::fs::write(cg.join("memory/system.slice/cron.service/memory.usage_in_bytes"), "4096\n")
        .unwrap();
    let roots = root("proc").with_sys(dir.path());
    let f = collectors::Cgroups::new(vec!["system.slice".into()]).collect(&roots).unwrap();
    assert_eq!(value(&f, "container_memory_usage_bytes", &[("name", "cron.service")]), 4096.0);
    assert!(value(&f, "container_cpu_usage_seconds_total", &[("name", "cron.service")]).is_nan());
    assert!(!names(&f).iter().any(|n| n.starts_with("container_pressure")), "v1 has no PSI");
    let empty = root("proc").with_sys(dir.path().join("nothing"));
    assert!(
        collectors::Cgroups::new(vec!["system.slice".into()]).collect(&empty).unwrap().is_empty()
    );
}

#[test]
fn process_groups_by_cmdline_name_and_unit() {
    let group =
        |name: &str, comm: &[&str], cmdline: Option<&str>, unit: Option<&str>| ProcessGroup {
            name: name.into(),
            comm: comm.iter().map(|s| s.to_string()).collect(),
            cmdline: cmdline.map(|c| regex_lite::Regex::new(c).unwrap()),
            pidfile: None,
            unit: unit.map(str::to_string),
        };
    let mut collector = collectors::ProcessGroups::new(vec![
        group("leak", &[], Some(r"bytearray\(30_000_000\)"), None),
        group("demo", &["leakdemo"], None, None),
        group("web", &[], None, Some("nginx.service")),
        group("idle", &["nothing-runs-this"], None, None),
    ]);
    let f = collector.collect(&root("proc")).unwrap();
    let g = |name: &'static str| [("groupname", name)];
    assert_eq!(value(&f, "namedprocess_namegroup_num_procs", &g("leak")), 1.0);
    assert_eq!(value(&f, "namedprocess_namegroup_num_procs", &g("demo")), 1.0);
    assert_eq!(value(&f, "namedprocess_namegroup_num_procs", &g("web")), 1.0, "by its cgroup");
    assert_eq!(value(&f, "namedprocess_namegroup_num_procs", &g("idle")), 0.0);
    // 29903 (python3): utime 4, stime 4 ticks, rss 10646 pages, read_bytes 86016.
    let leak_user = [("groupname", "leak"), ("mode", "user")];
    assert_eq!(value(&f, "namedprocess_namegroup_cpu_seconds_total", &leak_user), 0.04);
    assert_eq!(value(&f, "namedprocess_namegroup_memory_bytes", &g("leak")), 10_646.0 * 4096.0);
    assert_eq!(value(&f, "namedprocess_namegroup_num_threads", &g("leak")), 1.0);
    assert_eq!(value(&f, "namedprocess_namegroup_open_filedesc", &g("leak")), 3.0);
    assert_eq!(value(&f, "namedprocess_namegroup_read_bytes_total", &g("leak")), 86_016.0);
    assert_eq!(value(&f, "namedprocess_namegroup_memory_bytes", &g("demo")), 428.0 * 4096.0);
    assert_eq!(value(&f, "namedprocess_namegroup_open_filedesc", &g("web")), 1.0);
}

#[test]
fn process_group_by_pidfile() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("app.pid");
    std::fs::write(&pidfile, "29902\n").unwrap();
    let mut collector = collectors::ProcessGroups::new(vec![ProcessGroup {
        name: "app".into(),
        comm: vec![],
        cmdline: None,
        pidfile: Some(pidfile),
        unit: None,
    }]);
    let f = collector.collect(&root("proc")).unwrap();
    assert_eq!(value(&f, "namedprocess_namegroup_num_procs", &[("groupname", "app")]), 1.0);
}

/// Every mount point of the fixture mountinfo, made under a temporary root
/// file system, so statvfs answers for paths this test controls.
fn rootfs_with_mount_points(mounts: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in mounts {
        std::fs::create_dir_all(dir.path().join(m.trim_start_matches('/'))).unwrap();
    }
    dir
}

const FIXTURE_MOUNTS: [&str; 2] = ["/", "/mnt/sandboxing/model_tools_env/v1/python"];

#[test]
fn filesystems_from_mountinfo_without_pseudo_mounts() {
    let rootfs = rootfs_with_mount_points(&FIXTURE_MOUNTS);
    let roots = root("proc").with_rootfs(rootfs.path());
    let o = Options::default();
    let f = collectors::Filesystem::new(o.mount_exclude, o.fstype_exclude, o.fs_timeout)
        .collect(&roots)
        .unwrap();
    let size = f.iter().find(|x| x.name == "node_filesystem_size_bytes").unwrap();
    let labels: Vec<Vec<&str>> =
        size.series.iter().map(|(l, _)| l.iter().map(|x| x.value.as_str()).collect()).collect();
    assert_eq!(
        labels,
        [
            vec!["/dev/vda", "ext4", "/"],
            vec!["model_tools_unavailable", "tmpfs", "/mnt/sandboxing/model_tools_env/v1/python"],
        ],
        "proc, sysfs, devtmpfs, devpts, /dev/shm and cgroup mounts are excluded"
    );
    // Both mount points live on the test's own file system: same numbers.
    let expected = curvemon_agent::collectors::statvfs(rootfs.path()).unwrap();
    let root_mount = [("mountpoint", "/")];
    assert_eq!(value(&f, "node_filesystem_size_bytes", &root_mount), expected.size);
    assert_eq!(value(&f, "node_filesystem_files", &root_mount), expected.files);
    assert!(
        value(&f, "node_filesystem_avail_bytes", &root_mount)
            <= value(&f, "node_filesystem_free_bytes", &root_mount)
    );
    assert_eq!(value(&f, "node_filesystem_device_error", &root_mount), 0.0);
    assert_eq!(value(&f, "node_filesystem_readonly", &root_mount), 0.0);
    let ro = [("fstype", "tmpfs")];
    assert_eq!(value(&f, "node_filesystem_readonly", &ro), 1.0, "mounted ro");
}

/// Stands in for a dead NFS server: statvfs on the archive mount blocks.
fn hanging_statvfs(path: &std::path::Path) -> std::io::Result<collectors::FsStats> {
    if path.to_string_lossy().contains("archive") {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    collectors::statvfs(path)
}

/// A procfs tree whose mount table has a local root and an NFS mount.
fn proc_with_nfs_mount() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("self")).unwrap();
    std::fs::write(
        dir.path().join("self/mountinfo"),
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
         40 27 0:50 / /mnt/archive rw,relatime - nfs4 nas:/export/archive rw,vers=4.2\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_hanging_network_mount_is_time_boxed_and_reported() {
    let proc = proc_with_nfs_mount();
    let rootfs = rootfs_with_mount_points(&["/", "/mnt/archive"]);
    let roots = root("proc").with_rootfs(rootfs.path());
    let roots =
        Roots::with_system_info(proc.path(), *roots.system_info()).with_rootfs(rootfs.path());
    let o = Options::default();
    let mut fs = collectors::Filesystem::with_stat(
        o.mount_exclude.clone(),
        o.fstype_exclude.clone(),
        std::time::Duration::from_millis(100),
        hanging_statvfs,
    );
    let hung = [("fstype", "nfs4")];
    let f = fs.collect(&roots).unwrap();
    assert_eq!(value(&f, "node_filesystem_device_error", &hung), 1.0);
    assert!(value(&f, "node_filesystem_size_bytes", &hung).is_nan());
    assert_eq!(
        value(&f, "node_filesystem_device_error", &[("mountpoint", "/")]),
        0.0,
        "others unaffected"
    );
    // While the call is stuck, the mount is skipped, not asked again.
    let f = fs.collect(&roots).unwrap();
    assert_eq!(value(&f, "node_filesystem_device_error", &hung), 1.0);
    assert_eq!(value(&f, "node_filesystem_device_error", &[("mountpoint", "/")]), 0.0);
    // A slow but answering server is measured when the time box allows it.
    let mut patient = collectors::Filesystem::with_stat(
        o.mount_exclude,
        o.fstype_exclude,
        std::time::Duration::from_secs(10),
        hanging_statvfs,
    );
    let f = patient.collect(&roots).unwrap();
    assert_eq!(value(&f, "node_filesystem_device_error", &hung), 0.0);
    assert_eq!(
        value(&f, "node_filesystem_size_bytes", &hung),
        collectors::statvfs(rootfs.path()).unwrap().size
    );
}

/// A `FsStats` from the mount point's number (`/srv/vol007` → 7), so each
/// mount's values say which line of mountinfo they came from.
fn numbered_statvfs(path: &std::path::Path) -> std::io::Result<collectors::FsStats> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let n: f64 = name.strip_prefix("vol").and_then(|n| n.parse().ok()).unwrap_or(1000.0);
    Ok(collectors::FsStats {
        size: (n + 1.0) * 1e9,
        free: n * 1e9,
        avail: n * 1e8,
        files: 1e6,
        files_free: 1e5,
    })
}

/// The files of a large host, each well over one page (see
/// fixtures/make-big.py): every CPU, interface, disk and mount arrives.
#[test]
fn a_large_host_reports_every_cpu_interface_disk_and_mount() {
    let f = collect(&mut collectors::Cpu::default(), "proc-big");
    let seconds = f.iter().find(|x| x.name == "node_cpu_seconds_total").unwrap();
    assert_eq!(seconds.series.len(), 128 * 8, "128 CPUs × 8 modes");
    for n in [0u32, 63, 127] {
        let cpu = n.to_string();
        let user = value(&f, "node_cpu_seconds_total", &[("cpu", &cpu), ("mode", "user")]);
        assert_eq!(user, f64::from(1000 + n) / 100.0, "cpu{n}");
    }
    assert_eq!(value(&f, "node_intr_total", &[]), 123_456_789.0);
    assert_eq!(
        value(&f, "node_context_switches_total", &[]),
        987_654_321.0,
        "after the long intr line"
    );

    let f = collect(&mut collectors::Network::new(Options::default().network_exclude), "proc-big");
    let rx = f.iter().find(|x| x.name == "node_network_receive_bytes_total").unwrap();
    assert_eq!(rx.series.len(), 100);
    for i in [0u32, 50, 99] {
        let dev = format!("eth{i}");
        let labels = [("device", dev.as_str())];
        assert_eq!(
            value(&f, "node_network_receive_bytes_total", &labels),
            f64::from(1000 * (i + 1))
        );
        assert_eq!(
            value(&f, "node_network_transmit_bytes_total", &labels),
            f64::from(2000 * (i + 1))
        );
    }

    let f = collect(&mut collectors::Disk::new(Options::default().disk_exclude), "proc-big");
    let reads = f.iter().find(|x| x.name == "node_disk_reads_completed_total").unwrap();
    assert_eq!(reads.series.len(), 128);
    assert_eq!(value(&f, "node_disk_reads_completed_total", &[("device", "vddx")]), 227.0);

    let o = Options::default();
    let mut fs = collectors::Filesystem::with_stat(
        o.mount_exclude,
        o.fstype_exclude,
        o.fs_timeout,
        numbered_statvfs,
    );
    let f = fs.collect(&root("proc-big")).unwrap();
    let size = f.iter().find(|x| x.name == "node_filesystem_size_bytes").unwrap();
    assert_eq!(size.series.len(), 201, "/ and 200 volumes; proc and sysfs excluded");
    for i in [0, 100, 199] {
        let mount = format!("/srv/vol{i:03}");
        let device = format!("/dev/vdb{}", i + 1);
        let labels = [("mountpoint", mount.as_str()), ("device", device.as_str())];
        assert_eq!(value(&f, "node_filesystem_size_bytes", &labels), (f64::from(i) + 1.0) * 1e9);
    }
}

/// CPU labels are the kernel's CPU numbers: with CPU 2 offline, the third
/// line is `cpu3` and is labelled 3, not 2.
#[test]
fn cpu_labels_are_the_kernels_numbers_with_offline_cpus_left_out() {
    let f = collect(&mut collectors::Cpu::default(), "proc-cpu-holes");
    let seconds = f.iter().find(|x| x.name == "node_cpu_seconds_total").unwrap();
    let mut cpus: Vec<&str> = seconds
        .series
        .iter()
        .filter_map(|(labels, _)| labels.iter().find(|l| l.name == "cpu"))
        .map(|l| l.value.as_str())
        .collect();
    cpus.dedup();
    assert_eq!(cpus, ["0", "1", "3"]);
    assert_eq!(value(&f, "node_cpu_seconds_total", &[("cpu", "3"), ("mode", "user")]), 12.0);
    assert_eq!(value(&f, "node_cpu_seconds_total", &[("cpu", "1"), ("mode", "idle")]), 501.0);
}

/// What the agent declares, on this machine and on every fixture tree,
/// passes the collector's checks (`curvemon_protocol::validate`).
#[test]
fn the_agents_own_models_are_valid() {
    let trees: Vec<Roots> = vec![
        Roots::new("/proc"),
        root("proc").with_sys(fixture("sys-unified")),
        root("proc").with_sys(fixture("sys-hybrid")),
        root("proc-old-kernel"),
        root("proc-big"),
    ];
    for roots in trees {
        let mut sampler = Sampler::new(collectors::all());
        let sample = sampler.sample(&roots);
        let facts = model::read_facts(&roots, &fixture("etc"))
            .unwrap_or_else(|_| model::read_facts(&root("proc"), &fixture("etc")).unwrap());
        let model = model::build(facts, "web-01", 1000, sample.schema());
        let checked = curvemon_protocol::validate::model(&model);
        assert!(checked.is_ok(), "{}: {checked:?}", roots.root().display());
    }
}
