//! The Prometheus text exposition format (version 0.0.4), as applications
//! instrumented with a Prometheus client serve it on `/metrics`: counters,
//! gauges, histograms (`_bucket{le}`, `_sum`, `_count`), summaries
//! (`{quantile}`, `_sum`, `_count`) and untyped samples (read as gauges).
//!
//! A line that does not parse is skipped and counted, not fatal: one odd
//! line in an application's output should not hide all the others.
//! Timestamps are ignored (the agent stamps the scrape).

use std::collections::BTreeMap;

/// One series of a scrape, grouped the way the agent forwards it.
#[derive(Debug, Clone, PartialEq)]
pub struct Scraped {
    /// The family name (`latency_seconds` for a histogram's buckets).
    pub name: String,
    /// Its `# HELP` text.
    pub help: String,
    /// Labels, without `le` or `quantile`.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: ScrapedValue,
}

/// A scraped value, with totals as the application reports them.
#[derive(Debug, Clone, PartialEq)]
pub enum ScrapedValue {
    /// A running total.
    Counter(f64),
    /// A level (also untyped samples).
    Gauge(f64),
    /// Cumulative bucket counts at `bounds` and `+Inf`, and the sum.
    Histogram {
        /// The `le` bounds, ascending, without `+Inf`.
        bounds: Vec<f64>,
        /// Cumulative counts: one per bound, then `+Inf`.
        cumulative: Vec<f64>,
        /// The sum of observations.
        sum: f64,
    },
    /// Quantiles now, and the running sum and count.
    Summary {
        /// The `quantile` labels, ascending.
        quantiles: Vec<f64>,
        /// Their values.
        values: Vec<f64>,
        /// The running sum.
        sum: f64,
        /// The running count.
        count: f64,
    },
}

/// A parsed scrape: the series, and the lines that did not parse.
#[derive(Debug, Default)]
pub struct Parsed {
    /// The series.
    pub series: Vec<Scraped>,
    /// Lines skipped, with the first one's number and text.
    pub bad_lines: usize,
    /// The first bad line: its number and why.
    pub first_bad: Option<(usize, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// One sample line.
struct Line<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

/// `name{a="x",b="y"} value [timestamp]`.
fn sample(line: &str) -> Result<Line<'_>, String> {
    let name_end = line.find(['{', ' ', '\t']).ok_or("no value")?;
    let name = &line[..name_end];
    if name.is_empty() {
        return Err("no name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        let mut key = String::new();
        loop {
            let (i, c) = chars.next().ok_or("unterminated labels")?;
            match c {
                '}' => {
                    rest = &body[i + 1..];
                    break;
                }
                ',' | ' ' if key.is_empty() => {}
                '=' => {
                    if chars.next().map(|(_, c)| c) != Some('"') {
                        return Err("a label value without quotes".into());
                    }
                    let mut value = String::new();
                    loop {
                        match chars.next().ok_or("an unterminated label value")?.1 {
                            '\\' => match chars.next().ok_or("a dangling escape")?.1 {
                                'n' => value.push('\n'),
                                other => value.push(other),
                            },
                            '"' => break,
                            other => value.push(other),
                        }
                    }
                    labels.push((std::mem::take(&mut key).trim().to_string(), value));
                }
                other => key.push(other),
            }
        }
    }
    let text = rest.split_whitespace().next().ok_or("no value")?;
    let value = parse_value(text).ok_or_else(|| format!("{text:?} is not a number"))?;
    Ok(Line { name, labels, value })
}

#[derive(Default)]
struct Histogram {
    buckets: Vec<(f64, f64)>,
    sum: f64,
}

#[derive(Default)]
struct Summary {
    quantiles: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

type Group = (String, Vec<(String, String)>);

/// Parses a whole exposition.
pub fn parse(text: &str) -> Parsed {
    let mut parsed = Parsed::default();
    let mut kinds: BTreeMap<&str, Kind> = BTreeMap::new();
    let mut helps: BTreeMap<&str, String> = BTreeMap::new();
    let mut histograms: BTreeMap<Group, Histogram> = BTreeMap::new();
    let mut summaries: BTreeMap<Group, Summary> = BTreeMap::new();
    let bad = |parsed: &mut Parsed, n: usize, why: String| {
        parsed.bad_lines += 1;
        parsed.first_bad.get_or_insert((n, why));
    };
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.trim_start().splitn(3, char::is_whitespace);
            match (words.next(), words.next(), words.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let kind = match kind.trim() {
                        "counter" => Kind::Counter,
                        "gauge" => Kind::Gauge,
                        "histogram" => Kind::Histogram,
                        "summary" => Kind::Summary,
                        _ => Kind::Untyped,
                    };
                    kinds.insert(name, kind);
                }
                (Some("HELP"), Some(name), help) => {
                    helps.insert(
                        name,
                        help.unwrap_or("").replace("\\n", "\n").replace("\\\\", "\\"),
                    );
                }
                _ => {}
            }
            continue;
        }
        let line = match sample(line) {
            Ok(line) => line,
            Err(why) => {
                bad(&mut parsed, n, why);
                continue;
            }
        };
        let family = |suffix: &str, kind: Kind| {
            line.name.strip_suffix(suffix).filter(|base| kinds.get(base) == Some(&kind))
        };
        if let Some(base) = family("_bucket", Kind::Histogram) {
            let mut labels = line.labels;
            let Some(at) = labels.iter().position(|(k, _)| k == "le") else {
                bad(&mut parsed, n, "a bucket without le".into());
                continue;
            };
            let (_, le) = labels.remove(at);
            let Some(le) = parse_value(&le) else {
                bad(&mut parsed, n, format!("le={le:?} is not a number"));
                continue;
            };
            labels.sort();
            histograms
                .entry((base.to_string(), labels))
                .or_default()
                .buckets
                .push((le, line.value));
        } else if let Some(base) = family("_sum", Kind::Histogram) {
            let mut labels = line.labels;
            labels.sort();
            histograms.entry((base.to_string(), labels)).or_default().sum = line.value;
        } else if family("_count", Kind::Histogram).is_some() {
            // The +Inf bucket says the same.
        } else if let Some(base) = family("_sum", Kind::Summary) {
            let mut labels = line.labels;
            labels.sort();
            summaries.entry((base.to_string(), labels)).or_default().sum = line.value;
        } else if let Some(base) = family("_count", Kind::Summary) {
            let mut labels = line.labels;
            labels.sort();
            summaries.entry((base.to_string(), labels)).or_default().count = line.value;
        } else if kinds.get(line.name) == Some(&Kind::Summary) {
            let mut labels = line.labels;
            let Some(at) = labels.iter().position(|(k, _)| k == "quantile") else {
                bad(&mut parsed, n, "a summary sample without quantile".into());
                continue;
            };
            let (_, q) = labels.remove(at);
            let Some(q) = parse_value(&q).filter(|q| (0.0..=1.0).contains(q)) else {
                bad(&mut parsed, n, format!("quantile={q:?} is not in 0..1"));
                continue;
            };
            labels.sort();
            summaries
                .entry((line.name.to_string(), labels))
                .or_default()
                .quantiles
                .push((q, line.value));
        } else {
            let value = match kinds.get(line.name) {
                Some(Kind::Counter) => ScrapedValue::Counter(line.value),
                _ => ScrapedValue::Gauge(line.value),
            };
            let mut labels = line.labels;
            labels.sort();
            parsed.series.push(Scraped {
                name: line.name.to_string(),
                help: helps.get(line.name).cloned().unwrap_or_default(),
                labels,
                value,
            });
        }
    }
    for ((name, labels), mut h) in histograms {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let Some(&(last, _)) = h.buckets.last() else { continue };
        if last != f64::INFINITY || h.buckets.windows(2).any(|w| w[0].0 == w[1].0) {
            bad(&mut parsed, 0, format!("histogram {name} has no +Inf bucket or repeats one"));
            continue;
        }
        let bounds: Vec<f64> = h.buckets[..h.buckets.len() - 1].iter().map(|b| b.0).collect();
        let cumulative = h.buckets.iter().map(|b| b.1).collect();
        let help = helps.get(name.as_str()).cloned().unwrap_or_default();
        parsed.series.push(Scraped {
            name,
            help,
            labels,
            value: ScrapedValue::Histogram { bounds, cumulative, sum: h.sum },
        });
    }
    for ((name, labels), mut s) in summaries {
        s.quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
        s.quantiles.dedup_by(|a, b| a.0 == b.0);
        let help = helps.get(name.as_str()).cloned().unwrap_or_default();
        parsed.series.push(Scraped {
            name,
            help,
            labels,
            value: ScrapedValue::Summary {
                quantiles: s.quantiles.iter().map(|q| q.0).collect(),
                values: s.quantiles.iter().map(|q| q.1).collect(),
                sum: s.sum,
                count: s.count,
            },
        });
    }
    parsed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Python's prometheus_client serves, shortened.
    const PYTHON: &str = r#"# HELP python_gc_objects_collected_total Objects collected during gc
# TYPE python_gc_objects_collected_total counter
python_gc_objects_collected_total{generation="0"} 315.0
python_gc_objects_collected_total{generation="1"} 20.0
# HELP process_resident_memory_bytes Resident memory size in bytes.
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.1e+07
# HELP jobs_seconds Time per job.
# TYPE jobs_seconds histogram
jobs_seconds_bucket{le="0.1",queue="a"} 1.0
jobs_seconds_bucket{le="1.0",queue="a"} 3.0
jobs_seconds_bucket{le="+Inf",queue="a"} 4.0
jobs_seconds_count{queue="a"} 4.0
jobs_seconds_sum{queue="a"} 7.5
# HELP rpc_seconds RPC latency.
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.05
rpc_seconds{quantile="0.99"} 0.2
rpc_seconds_sum 12.5
rpc_seconds_count 100
odd_gauge{path="a\"b\\c\nd"} -Inf 1700000000000
broken{ 1
"#;

    #[test]
    fn every_kind_of_series() {
        let parsed = parse(PYTHON);
        assert_eq!(parsed.bad_lines, 1);
        assert_eq!(parsed.first_bad.as_ref().unwrap().0, 22);
        let find = |name: &str| parsed.series.iter().filter(|s| s.name == name).collect::<Vec<_>>();
        let gc = find("python_gc_objects_collected_total");
        assert_eq!(gc.len(), 2);
        assert_eq!(gc[0].value, ScrapedValue::Counter(315.0));
        assert_eq!(gc[0].labels, vec![("generation".to_string(), "0".to_string())]);
        assert_eq!(gc[0].help, "Objects collected during gc");
        assert_eq!(find("process_resident_memory_bytes")[0].value, ScrapedValue::Gauge(2.1e7));
        let jobs = find("jobs_seconds");
        assert_eq!(jobs[0].labels, vec![("queue".to_string(), "a".to_string())]);
        assert_eq!(
            jobs[0].value,
            ScrapedValue::Histogram {
                bounds: vec![0.1, 1.0],
                cumulative: vec![1.0, 3.0, 4.0],
                sum: 7.5
            }
        );
        assert_eq!(
            find("rpc_seconds")[0].value,
            ScrapedValue::Summary {
                quantiles: vec![0.5, 0.99],
                values: vec![0.05, 0.2],
                sum: 12.5,
                count: 100.0
            }
        );
        let odd = find("odd_gauge");
        assert_eq!(odd[0].labels[0].1, "a\"b\\c\nd");
        assert_eq!(odd[0].value, ScrapedValue::Gauge(f64::NEG_INFINITY));
    }

    #[test]
    fn a_histogram_without_inf_is_refused() {
        let parsed = parse("# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\n");
        assert!(parsed.series.is_empty());
        assert_eq!(parsed.bad_lines, 1);
    }
}
