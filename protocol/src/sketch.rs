//! A mergeable distribution of observations (request times, sizes): counts
//! in exponential buckets, laid out as Prometheus native histograms and
//! OpenTelemetry exponential histograms lay theirs out, plus the exact
//! count, sum, minimum and maximum.
//!
//! At schema `s`, positive bucket `i` holds the values in
//! `(γ^(i-1), γ^i]` with `γ = 2^(2^-s)`; negative values mirror that, and
//! zero has a bucket of its own. Buckets of schema `s` nest exactly into
//! those of `s - 1` (two into one), so sketches of different schemas merge
//! by coarsening the finer one, and a coarser layout (fewer Prometheus
//! buckets) is derived without loss of consistency.
//!
//! Percentiles are never precomputed: an application's p99 over all its
//! instances is read from the merged sketch. A quantile estimate is a
//! bucket's representative value `2γ^i / (γ + 1)`, whose distance to any
//! value of its bucket is at most `(γ - 1) / (γ + 1)` relative: at the
//! default schema 5 (`γ = 2^(1/32)`), **1.09 %** ([`RELATIVE_ERROR`]). A
//! sketch that would need more than [`MAX_BUCKETS`] buckets on one side
//! lowers its schema (each step doubles the bound), which only a range of
//! values wider than 2^128 can force.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de, ser::SerializeSeq};

/// The schema observations are recorded at.
pub const SCHEMA: i8 = 5;

/// The coarsest and finest schemas a sketch may have: Prometheus's
/// coarsest, and the one observations are recorded at (sketches are only
/// ever coarsened).
pub const SCHEMA_RANGE: std::ops::RangeInclusive<i8> = -4..=SCHEMA;

/// Buckets kept per sign before the schema is lowered.
pub const MAX_BUCKETS: usize = 4096;

/// The relative error of a quantile estimate at [`SCHEMA`]:
/// `(γ - 1) / (γ + 1)` with `γ = 2^(1/32)`.
pub const RELATIVE_ERROR: f64 = 0.010_830_001_253_373_618;

/// The relative error bound of estimates at `schema`.
pub fn relative_error(schema: i8) -> f64 {
    let gamma = growth(schema);
    (gamma - 1.0) / (gamma + 1.0)
}

/// `γ` of `schema`: how much larger each bucket's bound is than the last.
pub fn growth(schema: i8) -> f64 {
    2f64.powf(2f64.powi(-i32::from(schema)))
}

/// Non-empty buckets of one sign, by index, ascending. On the wire each
/// index after the first is the gap from the previous one (small numbers,
/// one byte each).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(pub Vec<(i32, u64)>);

impl Buckets {
    fn add(&mut self, index: i32, count: u64) {
        match self.0.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => self.0[at].1 = self.0[at].1.saturating_add(count),
            Err(at) => self.0.insert(at, (index, count)),
        }
    }

    fn merge(&mut self, other: &Buckets) {
        if other.0.is_empty() {
            return;
        }
        let mut merged = Vec::with_capacity(self.0.len() + other.0.len());
        let (a, b) = (&self.0, &other.0);
        let (mut i, mut j) = (0, 0);
        while i < a.len() || j < b.len() {
            match (a.get(i), b.get(j)) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    merged.push((x.0, x.1.saturating_add(y.1)));
                    i += 1;
                    j += 1;
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    merged.push(*x);
                    i += 1;
                }
                (Some(x), None) => {
                    merged.push(*x);
                    i += 1;
                }
                (_, Some(y)) => {
                    merged.push(*y);
                    j += 1;
                }
                (None, None) => break,
            }
        }
        self.0 = merged;
    }

    /// The same counts one schema coarser: buckets `2j - 1` and `2j` become `j`.
    fn coarsen(&mut self) {
        let mut out: Vec<(i32, u64)> = Vec::with_capacity(self.0.len() / 2 + 1);
        for &(i, c) in &self.0 {
            let j = (i + 1).div_euclid(2);
            match out.last_mut() {
                Some((last, n)) if *last == j => *n = n.saturating_add(c),
                _ => out.push((j, c)),
            }
        }
        self.0 = out;
    }

    fn total(&self) -> u64 {
        self.0.iter().fold(0u64, |t, (_, c)| t.saturating_add(*c))
    }
}

impl Serialize for Buckets {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        let mut previous: Option<i32> = None;
        for &(index, count) in &self.0 {
            let gap = previous.map_or(index, |p| index.wrapping_sub(p));
            seq.serialize_element(&(gap, count))?;
            previous = Some(index);
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Buckets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let gaps: Vec<(i32, u64)> = Vec::deserialize(deserializer)?;
        let mut out = Vec::with_capacity(gaps.len());
        let mut previous: Option<i32> = None;
        for (gap, count) in gaps {
            let index = match previous {
                None => gap,
                Some(p) if gap >= 1 => {
                    p.checked_add(gap).ok_or_else(|| de::Error::custom("bucket index overflows"))?
                }
                Some(_) => return Err(de::Error::custom("bucket indexes must increase")),
            };
            out.push((index, count));
            previous = Some(index);
        }
        Ok(Buckets(out))
    }
}

/// Observations in exponential buckets with their count, sum, min and max.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    /// The bucket layout (see the module docs).
    pub schema: i8,
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations.
    pub sum: f64,
    /// Smallest observation (+∞ when empty).
    pub min: f64,
    /// Largest observation (-∞ when empty).
    pub max: f64,
    /// Observations equal to zero.
    pub zero: u64,
    /// Positive observations, by bucket.
    pub positive: Buckets,
    /// Negative observations, by the bucket of their absolute value.
    pub negative: Buckets,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch::new()
    }
}

/// `2^(k/32)` for `k` in `0..=32`: the bucket bounds within one power of
/// two at [`SCHEMA`]. A table and the float's own exponent, rather than
/// `log2`, find a bucket exactly and keep libm out of the agent.
const BOUNDS: [f64; 33] = [
    1.0,
    1.0218971486541166,
    1.0442737824274138,
    1.0671404006768237,
    1.0905077326652577,
    1.1143867425958924,
    1.1387886347566916,
    1.1637248587775775,
    1.189207115002721,
    1.215247359980469,
    1.241857812073484,
    1.2690509571917332,
    1.2968395546510096,
    1.3252366431597413,
    1.3542555469368927,
    1.383909881963832,
    std::f64::consts::SQRT_2,
    1.4451808069770467,
    1.4768261459394993,
    1.5091644275934228,
    1.5422108254079407,
    1.5759808451078865,
    1.6104903319492543,
    1.645755478153965,
    1.681792830507429,
    1.718619298122478,
    1.7562521603732995,
    1.7947090750031072,
    1.8340080864093424,
    1.8741676341103,
    1.9152065613971474,
    1.9571441241754002,
    2.0,
];

/// The bucket of `|v|` (finite, not 0) at `schema` (≤ [`SCHEMA`]): the `i`
/// with `γ^(i-1) < |v| ≤ γ^i`.
fn index(v: f64, schema: i8) -> i32 {
    let mut bits = v.abs().to_bits();
    let mut exponent = ((bits >> 52) & 0x7ff) as i32;
    if exponent == 0 {
        // Subnormal: scale into the normal range first.
        bits = (v.abs() * 2f64.powi(64)).to_bits();
        exponent = ((bits >> 52) & 0x7ff) as i32 - 64;
    }
    // |v| = m · 2^e with m in [1, 2).
    let e = exponent - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let k = BOUNDS.partition_point(|b| *b < m) as i32;
    let mut i = e * 32 + k;
    for _ in schema..SCHEMA {
        i = (i + 1).div_euclid(2);
    }
    i
}

/// The representative value of positive bucket `i` at `schema`.
fn representative(i: i32, schema: i8) -> f64 {
    let gamma = growth(schema);
    2.0 * gamma.powi(i) / (gamma + 1.0)
}

/// The upper bound of positive bucket `i` at `schema`: `γ^i`.
pub fn upper_bound(i: i32, schema: i8) -> f64 {
    2f64.powf(f64::from(i) * 2f64.powi(-i32::from(schema)))
}

impl Sketch {
    /// An empty sketch at [`SCHEMA`].
    pub fn new() -> Self {
        Sketch {
            schema: SCHEMA,
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero: 0,
            positive: Buckets::default(),
            negative: Buckets::default(),
        }
    }

    /// True when nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records `value` `weight` times (a StatsD sample rate of 0.1 is a
    /// weight of 10). NaN and infinities are not values and are ignored.
    pub fn observe(&mut self, value: f64, weight: u64) {
        if !value.is_finite() || weight == 0 {
            return;
        }
        self.count = self.count.saturating_add(weight);
        self.sum += value * weight as f64;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value == 0.0 {
            self.zero = self.zero.saturating_add(weight);
        } else if value > 0.0 {
            self.positive.add(index(value, self.schema), weight);
        } else {
            self.negative.add(index(value, self.schema), weight);
        }
        self.bound();
    }

    /// Adds `other`'s observations to these.
    pub fn merge(&mut self, other: &Sketch) {
        if other.is_empty() {
            return;
        }
        let mut other = std::borrow::Cow::Borrowed(other);
        while other.schema > self.schema {
            other.to_mut().coarsen();
        }
        while self.schema > other.schema {
            self.coarsen();
        }
        self.count = self.count.saturating_add(other.count);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.zero = self.zero.saturating_add(other.zero);
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.bound();
    }

    /// One schema coarser (twice the error bound, half the buckets).
    pub fn coarsen(&mut self) {
        if self.schema <= *SCHEMA_RANGE.start() {
            return;
        }
        self.schema -= 1;
        self.positive.coarsen();
        self.negative.coarsen();
    }

    /// Coarsens until each side has at most [`MAX_BUCKETS`].
    fn bound(&mut self) {
        while (self.positive.0.len() > MAX_BUCKETS || self.negative.0.len() > MAX_BUCKETS)
            && self.schema > *SCHEMA_RANGE.start()
        {
            self.coarsen();
        }
    }

    /// Whether the sketch is internally consistent: its schema in range,
    /// bucket counts adding up to `count`, indexes strictly increasing.
    /// (What a collector checks of a sketch an agent sent.)
    pub fn is_consistent(&self) -> bool {
        let increasing = |b: &Buckets| b.0.windows(2).all(|w| w[0].0 < w[1].0);
        let total =
            self.positive.total().saturating_add(self.negative.total()).saturating_add(self.zero);
        SCHEMA_RANGE.contains(&self.schema)
            && total == self.count
            && increasing(&self.positive)
            && increasing(&self.negative)
            && self.positive.0.len() <= MAX_BUCKETS
            && self.negative.0.len() <= MAX_BUCKETS
    }

    /// The `q`-quantile (0 ≤ q ≤ 1) of the observations: the value of rank
    /// `floor(q·(count − 1))` (0-based), within [`relative_error`] of it;
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        // The extremes are known exactly.
        if rank == 0 {
            return Some(self.min);
        }
        if rank >= self.count - 1 {
            return Some(self.max);
        }
        let mut seen = 0u64;
        let within = |value: f64| Some(value.clamp(self.min, self.max));
        // Most negative first: the largest absolute value.
        for &(i, c) in self.negative.0.iter().rev() {
            seen = seen.saturating_add(c);
            if seen > rank {
                return within(-representative(i, self.schema));
            }
        }
        seen = seen.saturating_add(self.zero);
        if seen > rank {
            return within(0.0);
        }
        for &(i, c) in &self.positive.0 {
            seen = seen.saturating_add(c);
            if seen > rank {
                return within(representative(i, self.schema));
            }
        }
        within(self.max)
    }

    /// Cumulative counts at each bucket's upper bound, ascending, as a
    /// Prometheus classic histogram lays them out (`le`), at `schema` or
    /// this sketch's, whichever is coarser; the last is `+Inf`.
    pub fn cumulative(&self, schema: i8) -> Vec<(f64, u64)> {
        let mut sketch = std::borrow::Cow::Borrowed(self);
        while sketch.schema > schema && sketch.schema > *SCHEMA_RANGE.start() {
            sketch.to_mut().coarsen();
        }
        let s = sketch.schema;
        let mut out = Vec::with_capacity(sketch.positive.0.len() + sketch.negative.0.len() + 2);
        let mut seen = 0u64;
        // Negative bucket i holds [-γ^i, -γ^(i-1)): its upper bound is -γ^(i-1).
        for &(i, c) in sketch.negative.0.iter().rev() {
            seen = seen.saturating_add(c);
            out.push((-upper_bound(i - 1, s), seen));
        }
        if sketch.zero > 0 || !sketch.negative.0.is_empty() {
            seen = seen.saturating_add(sketch.zero);
            out.push((0.0, seen));
        }
        for &(i, c) in &sketch.positive.0 {
            seen = seen.saturating_add(c);
            out.push((upper_bound(i, s), seen));
        }
        out.push((f64::INFINITY, sketch.count));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic xorshift uniform in (0, 1).
    fn uniform(state: &mut u64) -> f64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Log-normal values (median 50 ms, σ = 1), Box–Muller.
    fn log_normal(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        (0..n)
            .map(|_| {
                let (u, v) = (uniform(&mut state), uniform(&mut state));
                let z = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
                0.05 * z.exp()
            })
            .collect()
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn buckets_hold_what_their_bounds_say() {
        for v in [1.0, 1.5, 2.0, 0.25, 3.0, 1e-300, 1e-310, 1e300, 0.012, 7.0] {
            for schema in [SCHEMA, 3, 0, -4] {
                let i = index(v, schema);
                let (lower, upper) = (upper_bound(i - 1, schema), upper_bound(i, schema));
                assert!(
                    lower < v * 1.000_000_001 && v <= upper * 1.000_000_001,
                    "{v} at {schema}: ({lower}, {upper}]"
                );
            }
        }
        assert_eq!(index(8.0, SCHEMA), 96, "a power of two is its bucket's upper bound");
        assert_eq!(index(5e-324, SCHEMA), -1074 * 32, "the smallest float: 2^-1074");
        assert_eq!(index(8.0 * BOUNDS[1], SCHEMA), 97);
    }

    #[test]
    fn the_documented_error_bound() {
        assert!((relative_error(SCHEMA) - RELATIVE_ERROR).abs() < 1e-15);
        assert!((growth(5) - 2f64.powf(1.0 / 32.0)).abs() < 1e-15);
    }

    /// 100,000 log-normal values: every quantile within the bound, also
    /// after splitting them over three instances and merging.
    #[test]
    fn quantiles_of_100000_log_normal_values_are_within_the_bound() {
        let values = log_normal(100_000, 0x9e37_79b9_7f4a_7c15);
        let mut whole = Sketch::new();
        let mut parts = [Sketch::new(), Sketch::new(), Sketch::new()];
        for (n, v) in values.iter().enumerate() {
            whole.observe(*v, 1);
            parts[n % 3].observe(*v, 1);
        }
        let mut merged = Sketch::new();
        for part in &parts {
            merged.merge(part);
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for sketch in [&whole, &merged] {
            assert_eq!(sketch.count, 100_000);
            assert_eq!(sketch.min, sorted[0]);
            assert_eq!(sketch.max, sorted[99_999]);
            for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let (want, got) = (exact(&sorted, q), sketch.quantile(q).unwrap());
                let error = (got - want).abs() / want;
                assert!(error <= RELATIVE_ERROR, "q={q}: {got} vs {want}: {error}");
            }
        }
        assert_eq!(
            (&whole.positive, whole.count, whole.min, whole.max),
            (&merged.positive, merged.count, merged.min, merged.max),
            "merging is exact"
        );
        assert!((whole.sum - merged.sum).abs() < 1e-9 * whole.sum);
        assert!(whole.is_consistent());
    }

    #[test]
    fn zero_negative_and_weights() {
        let mut s = Sketch::new();
        for v in [-8.0, -1.0, 0.0, 0.0, 3.0] {
            s.observe(v, 1);
        }
        s.observe(100.0, 5);
        s.observe(f64::NAN, 1);
        assert_eq!((s.count, s.zero), (10, 2));
        assert_eq!(s.sum, -8.0 - 1.0 + 3.0 + 500.0);
        assert_eq!(s.quantile(0.0), Some(-8.0), "clamped to the exact minimum");
        let q = s.quantile(0.15).unwrap();
        // -1 sits on a bucket bound: the error is the bound itself (to rounding).
        assert!((q + 1.0).abs() <= RELATIVE_ERROR * (1.0 + 1e-9), "{q}");
        assert_eq!(s.quantile(0.25), Some(0.0));
        assert_eq!(s.quantile(1.0), Some(100.0));
        assert!(Sketch::new().quantile(0.5).is_none());
        let cumulative = s.cumulative(SCHEMA);
        let counts: Vec<u64> = cumulative.iter().map(|(_, c)| *c).collect();
        assert_eq!(counts, [1, 2, 4, 5, 10, 10], "-8, -1, zero, 3, 100, +Inf");
        assert!(cumulative.windows(2).all(|w| w[0].0 < w[1].0), "{cumulative:?}");
        assert!((cumulative[0].0 + 8.0 / growth(SCHEMA)).abs() < 1e-9, "-8 is in [-8, -8/γ)");
        assert!(cumulative[4].0 >= 100.0, "100 is under its bucket's bound");
    }

    #[test]
    fn coarser_layouts_nest_and_merge() {
        let values = log_normal(10_000, 7);
        let mut fine = Sketch::new();
        values.iter().for_each(|v| fine.observe(*v, 1));
        let mut coarse = fine.clone();
        coarse.coarsen();
        coarse.coarsen();
        assert_eq!(coarse.schema, SCHEMA - 2);
        assert!(coarse.positive.0.len() < fine.positive.0.len());
        // The same +Inf total and a bound every value is under.
        let classic = fine.cumulative(2);
        assert_eq!(classic.last().unwrap().1, 10_000);
        assert_eq!(classic, coarse.cumulative(2), "derived from fine or coarse, the same");
        let mut mixed = coarse.clone();
        mixed.merge(&fine);
        assert_eq!((mixed.schema, mixed.count), (SCHEMA - 2, 20_000));
        let mut sorted = values;
        sorted.sort_by(f64::total_cmp);
        let got = mixed.quantile(0.5).unwrap();
        assert!((got - exact(&sorted, 0.5)).abs() / exact(&sorted, 0.5) <= relative_error(3));
    }

    #[test]
    fn a_huge_range_lowers_the_schema_instead_of_growing_without_bound() {
        let mut s = Sketch::new();
        for e in -8000..8000 {
            s.observe(2f64.powf(f64::from(e) / 8.0), 1);
        }
        assert!(s.positive.0.len() <= MAX_BUCKETS);
        assert!(s.schema < SCHEMA);
        assert!(s.is_consistent());
    }

    #[test]
    fn bucket_gaps_round_trip_and_bad_ones_are_refused() {
        let mut s = Sketch::new();
        for v in [0.001, 0.0011, 0.5, 7.0, -3.0] {
            s.observe(v, 2);
        }
        let bytes = bincode::serde::encode_to_vec(&s, bincode::config::standard()).unwrap();
        let (back, _): (Sketch, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        assert_eq!(back, s);
        let bad = vec![(5i32, 1u64), (0, 1)];
        let bytes = bincode::serde::encode_to_vec(&bad, bincode::config::standard()).unwrap();
        let decoded: Result<(Buckets, usize), _> =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard());
        assert!(decoded.is_err(), "a gap of 0 is refused");
    }
}
