//! Every collector against the checked-in fixture trees, with exact values
//! taken from the fixture files (see tests/fixtures/README.md).

use std::path::PathBuf;

use curvemon_agent::{
    collectors::{self, Collector, FamilySample},
    model,
    proc_root::ProcRoot,
    sampler::Sampler,
};
use curvemon_protocol::Kind;
use procfs::ExplicitSystemInfo;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn root(name: &str) -> ProcRoot {
    ProcRoot::with_system_info(
        fixture(name),
        ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: true,
        },
    )
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
    let f = collect(&mut collectors::Cpu, "proc");
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
}

#[test]
fn cpu_on_an_old_kernel_without_steal() {
    let f = collect(&mut collectors::Cpu, "proc-old-kernel");
    let cpu = |c, m| value(&f, "node_cpu_seconds_total", &[("cpu", c), ("mode", m)]);
    assert_eq!(cpu("1", "user"), 397.40);
    assert_eq!(cpu("1", "softirq"), 6.01);
    assert_eq!(cpu("1", "steal"), 0.0, "absent column reads as zero time");
    assert_eq!(value(&f, "node_procs_blocked", &[]), 1.0);
}

#[test]
fn memory_from_meminfo_in_bytes() {
    let f = collect(&mut collectors::Memory, "proc");
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
    let f = collect(&mut collectors::Memory, "proc-old-kernel");
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
    let f = collect(&mut collectors::Load, "proc");
    assert_eq!(value(&f, "node_load1", &[]), 1.06);
    assert_eq!(value(&f, "node_load5", &[]), 0.58);
    assert_eq!(value(&f, "node_load15", &[]), 0.29);
    let f = collect(&mut collectors::Uptime, "proc");
    assert_eq!(value(&f, "curvemon_uptime_seconds", &[]), 678.34);
    let f = collect(&mut collectors::Uptime, "proc-old-kernel");
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
    let mut sampler = Sampler::new(collectors::all());
    let sample = sampler.sample(&root("proc"));
    let series: usize = sample.families.iter().map(|f| f.series.len()).sum();
    assert_eq!(series, sample.values.len());
    // 16 cpu seconds + 5 stat scalars + 11 memory + 3 load + 1 uptime + 4 success + 4 duration
    assert_eq!(series, 44);
    assert_eq!(sample.families[0].name, "node_cpu_seconds_total");
    assert_eq!(sample.values[0], 128.61);
    let again = sampler.sample(&root("proc"));
    assert_eq!(again.revision, sample.revision, "same layout, same revision");
    let success =
        sample.families.iter().position(|f| f.name == "curvemon_agent_collector_success").unwrap();
    let offset: usize = sample.families[..success].iter().map(|f| f.series.len()).sum();
    assert_eq!(&sample.values[offset..offset + 4], &[1.0, 1.0, 1.0, 1.0]);
}

#[test]
fn a_failing_collector_keeps_its_layout_and_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["stat", "meminfo", "loadavg", "uptime"] {
        std::fs::copy(fixture("proc").join(f), dir.path().join(f)).unwrap();
    }
    let root = ProcRoot::with_system_info(
        dir.path(),
        ExplicitSystemInfo {
            boot_time_secs: 0,
            ticks_per_second: 100,
            page_size: 4096,
            is_little_endian: true,
        },
    );
    let mut sampler = Sampler::new(collectors::all());
    let healthy = sampler.sample(&root);
    std::fs::remove_file(dir.path().join("loadavg")).unwrap();
    let failing = sampler.sample(&root);
    assert_eq!(failing.revision, healthy.revision, "layout kept while failing");
    let at = |sample: &curvemon_agent::sampler::Sample, name: &str| {
        let i = sample.families.iter().position(|f| f.name == name).unwrap();
        sample.families[..i].iter().map(|f| f.series.len()).sum::<usize>()
    };
    assert!(failing.values[at(&failing, "node_load1")].is_nan());
    assert_eq!(
        failing.values[at(&failing, "node_memory_MemTotal_bytes")],
        (24_684_092u64 * 1024) as f64
    );
    let success = at(&failing, "curvemon_agent_collector_success");
    // Order: cpu, memory, load, uptime.
    assert_eq!(&failing.values[success..success + 4], &[1.0, 1.0, 0.0, 1.0]);
}
