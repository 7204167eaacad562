//! Recent history of every host at native resolution, for the dashboard's
//! charts and `GET /api/hosts/{id}/history`.
//!
//! A point is the handful of numbers the dashboard draws, derived once when
//! the sample arrives (rates from counter deltas), stored as `f32`: about
//! 64 + 4 × CPUs bytes. A host keeps `retention / interval` points
//! (`--retention`, default 1 h): 3,600 points at a 1 s interval, about
//! 260 KiB for an 8-CPU host; the count is capped at [`MAX_POINTS`].

use std::collections::VecDeque;

/// Names of [`Point::fields`], in order; also the `metric` values of the
/// history API.
pub const FIELDS: [&str; 12] = [
    "cpu_percent",
    "mem_used_bytes",
    "mem_cached_bytes",
    "mem_available_bytes",
    "swap_used_bytes",
    "load1",
    "load5",
    "load15",
    "net_rx_bytes_per_second",
    "net_tx_bytes_per_second",
    "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
];

/// Points kept per host at most, whatever the retention and interval.
pub const MAX_POINTS: usize = 100_000;

/// One sample as the dashboard draws it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// When the agent took the sample, Unix milliseconds.
    pub t_ms: u64,
    /// Values in [`FIELDS`] order; NaN where not known (no earlier sample
    /// for a rate, or a field the host lacks).
    pub fields: [f32; FIELDS.len()],
    /// Busy percent per CPU.
    pub cores: Box<[f32]>,
}

/// A bounded, time-ordered series of points.
#[derive(Debug, Clone, Default)]
pub struct History {
    points: VecDeque<Point>,
    capacity: usize,
}

impl History {
    /// An empty history holding at most `capacity` points.
    pub fn new(capacity: usize) -> Self {
        History { points: VecDeque::new(), capacity: capacity.clamp(1, MAX_POINTS) }
    }

    /// Changes the capacity (the agent's interval became known), dropping
    /// the oldest points if needed.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity.clamp(1, MAX_POINTS);
        while self.points.len() > self.capacity {
            self.points.pop_front();
        }
    }

    /// Appends a point; one older than the newest (a restarted agent with a
    /// clock step) clears the history rather than breaking its order.
    pub fn push(&mut self, point: Point) {
        if self.points.back().is_some_and(|last| last.t_ms > point.t_ms) {
            self.points.clear();
        }
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// Points taken at or after `since_ms`.
    pub fn since(&self, since_ms: u64) -> impl Iterator<Item = &Point> {
        let start = self.points.partition_point(|p| p.t_ms < since_ms);
        self.points.range(start..)
    }

    /// Number of points held.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no point is held.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(t_ms: u64) -> Point {
        Point { t_ms, fields: [0.0; FIELDS.len()], cores: Box::new([]) }
    }

    #[test]
    fn bounded_ordered_and_queried_by_time() {
        let mut h = History::new(3);
        for t in [1, 2, 3, 4] {
            h.push(point(t));
        }
        assert_eq!(h.since(0).map(|p| p.t_ms).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(h.since(3).map(|p| p.t_ms).collect::<Vec<_>>(), [3, 4]);
        h.set_capacity(2);
        assert_eq!(h.len(), 2);
        h.push(point(1));
        assert_eq!(h.since(0).map(|p| p.t_ms).collect::<Vec<_>>(), [1], "a step back starts over");
    }
}
