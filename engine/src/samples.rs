//! The statistics read at each tick of the convergence loop, kept for the report so a
//! chart can draw remaining bytes between pass boundaries too.
//!
//! A long run ticks thousands of times (a 15-minute deadline at 200 ms), and the report
//! is read by Ansible, which holds it in memory: the series is kept to at most
//! [`MAX_SAMPLES`] points by dropping every other one each time it fills, so it stays
//! evenly spread over the whole run at a coarser step instead of losing its start.

use serde::Serialize;
use tokio::time::Instant;

use crate::driver::Sample;

/// The most sample points a report carries.
pub const MAX_SAMPLES: usize = 512;

/// One tick's statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SamplePoint {
    /// Milliseconds since `migrate`.
    pub at_ms: u64,
    /// The pass (dirty-sync count) under way.
    pub pass: u64,
    /// RAM still to send (QEMU's `ram.remaining`).
    pub remaining: u64,
    /// Bytes sent so far.
    pub transferred: u64,
    /// Throughput, bytes/s (QEMU's `ram.mbps`).
    pub bandwidth: u64,
    /// QEMU's own dirty rate, bytes/s (`ram.dirty-pages-rate` × page size): the
    /// statistic, never the kernel's measurement, which only pass boundaries carry.
    pub stats_dirty_rate: u64,
}

impl SamplePoint {
    /// The point for `sample`, on a clock that started at `started`.
    pub(crate) fn of(sample: &Sample, started: Instant) -> Self {
        SamplePoint {
            at_ms: sample.at.saturating_duration_since(started).as_millis() as u64,
            pass: sample.dirty_sync_count,
            remaining: sample.remaining_bytes,
            transferred: sample.transferred_bytes,
            bandwidth: sample.bandwidth,
            stats_dirty_rate: sample.stats_dirty_rate(),
        }
    }
}

/// The kept points: every `stride`-th tick, at most [`MAX_SAMPLES`] of them.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    points: Vec<SamplePoint>,
    /// Keep one tick in this many.
    stride: u64,
    /// Ticks seen so far.
    seen: u64,
    /// The newest tick, kept aside when the stride skips it so the series always ends
    /// where the run ended.
    last: Option<SamplePoint>,
}

impl Default for Samples {
    fn default() -> Self {
        Samples {
            points: Vec::new(),
            stride: 1,
            seen: 0,
            last: None,
        }
    }
}

impl Samples {
    /// Takes one tick's point.
    pub(crate) fn push(&mut self, point: SamplePoint) {
        let keep = self.seen.is_multiple_of(self.stride);
        self.seen += 1;
        if !keep {
            self.last = Some(point);
            return;
        }
        self.last = None;
        if self.points.len() == MAX_SAMPLES {
            // Keep the even ones: the series keeps its start and its spacing doubles.
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
            if !(self.seen - 1).is_multiple_of(self.stride) {
                self.last = Some(point);
                return;
            }
        }
        self.points.push(point);
    }

    /// The kept points in time order, ending with the newest tick.
    pub(crate) fn into_points(self) -> Vec<SamplePoint> {
        let mut points = self.points;
        if let Some(last) = self.last {
            if points.len() == MAX_SAMPLES {
                points.pop();
            }
            points.push(last);
        }
        points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: u64) -> SamplePoint {
        SamplePoint {
            at_ms,
            pass: 1,
            remaining: 0,
            transferred: 0,
            bandwidth: 0,
            stats_dirty_rate: 0,
        }
    }

    fn kept(ticks: u64) -> Vec<u64> {
        let mut samples = Samples::default();
        for t in 0..ticks {
            samples.push(point(t));
        }
        samples.into_points().iter().map(|p| p.at_ms).collect()
    }

    #[test]
    fn a_short_run_keeps_every_tick() {
        assert_eq!(kept(5), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn a_long_run_keeps_at_most_the_bound_spread_evenly_from_start_to_end() {
        for ticks in [MAX_SAMPLES as u64 + 1, 3000, 10_000] {
            let at = kept(ticks);
            assert!(at.len() <= MAX_SAMPLES, "{ticks} ticks kept {}", at.len());
            assert!(at.len() > MAX_SAMPLES / 2, "{ticks} ticks kept only {}", at.len());
            assert_eq!(at.first(), Some(&0));
            assert_eq!(at.last(), Some(&(ticks - 1)), "the series ends at the last tick");
            assert!(at.windows(2).all(|w| w[0] < w[1]), "in time order");
        }
    }
}
