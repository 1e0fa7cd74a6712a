//! Linear scales from data to pixels, and tick values people can read (1, 2, 5 × 10ⁿ).

/// Maps `[0, max]` of the data onto `[from, to]` pixels (`to` may be below `from`, as a
/// y axis is).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    max: f64,
    from: f64,
    to: f64,
}

impl Scale {
    /// A scale from 0 to at least `max` (a range of 0 becomes 1, so nothing divides by
    /// zero), rounded up to the last tick.
    pub fn new(max: f64, from: f64, to: f64) -> Self {
        let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
        let step = tick_step(max, 5);
        Scale {
            max: (max / step).ceil() * step,
            from,
            to,
        }
    }

    /// The pixel for a data value; values outside the domain are clamped to its ends.
    pub fn at(&self, v: f64) -> f64 {
        let t = (v / self.max).clamp(0.0, 1.0);
        self.from + t * (self.to - self.from)
    }

    /// The top of the domain.
    pub fn max(&self) -> f64 {
        self.max
    }

    /// Tick values from 0 to the top, about `wanted` of them.
    pub fn ticks(&self, wanted: usize) -> Vec<f64> {
        let step = tick_step(self.max, wanted);
        let n = (self.max / step).round() as usize;
        (0..=n).map(|i| i as f64 * step).collect()
    }
}

/// A step of 1, 2 or 5 × 10ⁿ that cuts `[0, max]` into at most about `wanted` parts.
pub fn tick_step(max: f64, wanted: usize) -> f64 {
    let rough = max / wanted.max(1) as f64;
    if !rough.is_finite() || rough <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude)
}

/// A step in powers of two times 1, 2 or 5 for byte values, so ticks read `256MiB`, not
/// `268.4MB`.
pub fn byte_step(max: f64, wanted: usize) -> f64 {
    let rough = max / wanted.max(1) as f64;
    if !rough.is_finite() || rough <= 0.0 {
        return 1.0;
    }
    let mut step = 1.0;
    while step < rough {
        step *= 2.0;
    }
    step
}

/// A scale for bytes: ticks at powers of two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ByteScale {
    inner: Scale,
    step: f64,
}

impl ByteScale {
    /// A scale from 0 to at least `max` bytes, rounded up to a tick.
    pub fn new(max: f64, from: f64, to: f64) -> Self {
        let max = if max.is_finite() && max > 0.0 { max } else { 1.0 };
        let step = byte_step(max, 5);
        ByteScale {
            inner: Scale {
                max: (max / step).ceil() * step,
                from,
                to,
            },
            step,
        }
    }

    /// The pixel for a byte value.
    pub fn at(&self, v: f64) -> f64 {
        self.inner.at(v)
    }

    /// Tick values from 0 to the top.
    pub fn ticks(&self) -> Vec<f64> {
        let n = (self.inner.max / self.step).round() as usize;
        (0..=n).map(|i| i as f64 * self.step).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(tick_step(2714.0, 8), 500.0);
        assert_eq!(tick_step(9.0, 5), 2.0);
        assert_eq!(tick_step(0.0, 5), 1.0);
    }

    #[test]
    fn the_domain_ends_on_a_tick_and_the_y_axis_runs_upwards() {
        let s = Scale::new(2714.0, 0.0, 100.0);
        assert_eq!(s.max(), 3000.0);
        assert_eq!(
            s.ticks(6),
            vec![0.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0]
        );
        let y = Scale::new(10.0, 300.0, 100.0);
        assert_eq!(y.at(0.0), 300.0);
        assert_eq!(y.at(10.0), 100.0);
        assert_eq!(y.at(20.0), 100.0, "clamped");
    }

    #[test]
    fn an_empty_range_does_not_divide_by_zero() {
        let s = Scale::new(0.0, 0.0, 100.0);
        assert_eq!(s.at(0.0), 0.0);
        assert!(s.at(5.0).is_finite());
    }

    #[test]
    fn byte_ticks_are_powers_of_two() {
        let s = ByteScale::new(1000.0 * 1048576.0, 0.0, 100.0);
        let ticks = s.ticks();
        assert_eq!(ticks[1], 256.0 * 1048576.0);
        assert_eq!(*ticks.last().unwrap_or(&0.0), 1024.0 * 1048576.0);
    }
}
