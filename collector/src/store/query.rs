//! Points as charts draw them: at full resolution when there are few, else
//! in time buckets with the average, minimum and maximum of each field, so
//! a week of one-second samples is a thousand points, and a spike is still
//! seen in the maximum.

use crate::history::{FIELDS, Point};

/// Points in buckets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// Each bucket's start (or each point's time), Unix ms.
    pub t: Vec<u64>,
    /// Per field, the average per bucket (`None` where it has no value).
    pub avg: Vec<Vec<Option<f32>>>,
    /// Per field, the minimum per bucket.
    pub min: Vec<Vec<Option<f32>>>,
    /// Per field, the maximum per bucket.
    pub max: Vec<Vec<Option<f32>>>,
    /// Per core, the average busy percent per bucket.
    pub cores: Vec<Vec<Option<f32>>>,
    /// The bucket width (0: not bucketed).
    pub step_ms: u64,
}

fn finite(v: f32) -> Option<f32> {
    v.is_finite().then_some(v)
}

/// `points` (in time order) as at most `max_points` buckets over
/// `from_ms..=to_ms`; at full resolution when they fit.
pub fn bucket(points: &[Point], from_ms: u64, to_ms: u64, max_points: usize) -> Series {
    let cores = points.iter().map(|p| p.cores.len()).max().unwrap_or(0);
    let max_points = max_points.max(1);
    if points.len() <= max_points {
        let col = |f: &dyn Fn(&Point) -> Option<f32>| points.iter().map(f).collect::<Vec<_>>();
        let avg: Vec<_> = (0..FIELDS.len()).map(|j| col(&|p| finite(p.fields[j]))).collect();
        return Series {
            t: points.iter().map(|p| p.t_ms).collect(),
            min: avg.clone(),
            max: avg.clone(),
            avg,
            cores: (0..cores).map(|c| col(&|p| p.cores.get(c).copied().and_then(finite))).collect(),
            step_ms: 0,
        };
    }
    let span = to_ms.saturating_sub(from_ms).max(1);
    // Whole seconds, so buckets line up with one-second samples and a
    // bucket never holds a varying count of them.
    let step = span.div_ceil(max_points as u64).max(1);
    let step = if step >= 1000 { step.div_ceil(1000) * 1000 } else { step };
    let buckets = usize::try_from(span.div_ceil(step)).unwrap_or(max_points).max(1);
    #[derive(Clone, Copy)]
    struct Acc {
        sum: f64,
        n: u32,
        min: f32,
        max: f32,
    }
    let empty = Acc { sum: 0.0, n: 0, min: f32::INFINITY, max: f32::NEG_INFINITY };
    let mut fields = vec![vec![empty; buckets]; FIELDS.len()];
    let mut core_acc = vec![vec![empty; buckets]; cores];
    let mut seen = vec![false; buckets];
    let add = |acc: &mut Acc, v: f32| {
        if v.is_finite() {
            acc.sum += f64::from(v);
            acc.n += 1;
            acc.min = acc.min.min(v);
            acc.max = acc.max.max(v);
        }
    };
    for p in points {
        let i =
            usize::try_from(p.t_ms.saturating_sub(from_ms) / step).unwrap_or(0).min(buckets - 1);
        seen[i] = true;
        for (j, v) in p.fields.iter().enumerate() {
            add(&mut fields[j][i], *v);
        }
        for (c, v) in p.cores.iter().enumerate() {
            add(&mut core_acc[c][i], *v);
        }
    }
    let keep: Vec<usize> = (0..buckets).filter(|i| seen[*i]).collect();
    let pick = |accs: &[Acc], f: &dyn Fn(&Acc) -> f32| -> Vec<Option<f32>> {
        keep.iter().map(|i| (accs[*i].n > 0).then(|| f(&accs[*i]))).collect()
    };
    Series {
        t: keep.iter().map(|i| from_ms + *i as u64 * step).collect(),
        avg: fields.iter().map(|a| pick(a, &|x| (x.sum / f64::from(x.n)) as f32)).collect(),
        min: fields.iter().map(|a| pick(a, &|x| x.min)).collect(),
        max: fields.iter().map(|a| pick(a, &|x| x.max)).collect(),
        cores: core_acc.iter().map(|a| pick(a, &|x| (x.sum / f64::from(x.n)) as f32)).collect(),
        step_ms: step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_ms: u64, cpu: f32) -> Point {
        let mut fields = [f32::NAN; FIELDS.len()];
        fields[0] = cpu;
        Point { t_ms, fields, cores: vec![cpu].into_boxed_slice() }
    }

    #[test]
    fn few_points_stay_as_they_are_and_many_are_bucketed() {
        let few: Vec<Point> = (0..10).map(|i| point(i * 1000, i as f32)).collect();
        let s = bucket(&few, 0, 9_000, 100);
        assert_eq!((s.t.len(), s.step_ms), (10, 0));
        assert_eq!(s.avg[0][3], Some(3.0));
        assert_eq!(s.avg[1][3], None, "NaN is no value");

        let many: Vec<Point> = (0..10_000).map(|i| point(i * 1000, (i % 100) as f32)).collect();
        let s = bucket(&many, 0, 9_999_000, 100);
        assert!(s.t.len() <= 100 && s.t.len() >= 99, "{}", s.t.len());
        assert_eq!(s.step_ms, 100_000);
        assert_eq!((s.min[0][0], s.max[0][0]), (Some(0.0), Some(99.0)));
        assert_eq!(s.avg[0][0], Some(49.5));
        assert_eq!(s.cores[0][0], Some(49.5));
    }
}
