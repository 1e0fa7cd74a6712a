//! OpenStack Nova's libvirt driver with its defaults: no auto-converge, no post-copy,
//! and the downtime limit raised in steps (`nova/virt/libvirt/migration.py`,
//! `downtime_steps`): with `live_migration_downtime` D (500 ms),
//! `live_migration_downtime_steps` S (10) and `live_migration_downtime_delay` T (75 s
//! per GiB of data), step `i` of `0..=S` sets `D/S + i·(D − D/S)/S` ms at
//! `i·T·data_gb` s. Nova counts at least 2 GiB of data for a guest's RAM, so a 1 GiB
//! guest starts at 50 ms and gets its next step, 95 ms, after 150 s. The monitor looks
//! every half second. Its completion timeout (800 s per GiB) is beyond the benchmark.

use std::time::Duration;

use serde_json::Value;

use super::policy::{Act, Policy};

/// Nova's downtime steps.
pub struct Nova {
    /// `(at, downtime ms)`, in order.
    steps: Vec<(Duration, u64)>,
    next: usize,
}

impl Nova {
    /// Nova's defaults for a guest of `guest_mib` MiB (no disks to copy).
    pub fn new(guest_mib: u64) -> Self {
        let data_gb = (guest_mib as f64 / 1024.0).max(2.0);
        Nova {
            steps: downtime_steps(500.0, 10, 75.0, data_gb),
            next: 0,
        }
    }
}

/// Nova's `downtime_steps`, in integer milliseconds and seconds as it rounds them.
fn downtime_steps(downtime_ms: f64, steps: u32, delay_s: f64, data_gb: f64) -> Vec<(Duration, u64)> {
    let delay = (delay_s * data_gb).trunc();
    let base = downtime_ms / f64::from(steps);
    let offset = (downtime_ms - base) / f64::from(steps);
    (0..=steps)
        .map(|i| {
            let i = f64::from(i);
            (
                Duration::from_secs((delay * i).trunc() as u64),
                (base + offset * i).trunc() as u64,
            )
        })
        .collect()
}

impl Policy for Nova {
    fn wait(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn on_poll(&mut self, elapsed: Duration, _stats: &Value) -> Vec<Act> {
        let mut acts = Vec::new();
        while let Some((at, ms)) = self.steps.get(self.next) {
            if elapsed < *at {
                break;
            }
            acts.push(Act::Downtime(*ms));
            self.next += 1;
        }
        // Only the latest step that is due matters.
        acts.split_off(acts.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_example_in_novas_docstring() {
        // 10 steps, 30 s per GiB, 3 GiB, 400 ms: every 90 s, 40 ms then +36 ms.
        let steps = downtime_steps(400.0, 10, 30.0, 3.0);
        assert_eq!(steps[0], (Duration::ZERO, 40));
        assert_eq!(steps[1], (Duration::from_secs(90), 76));
        assert_eq!(steps[10], (Duration::from_secs(900), 400));
    }

    #[test]
    fn a_one_gib_guest_keeps_50_ms_for_150_s() {
        let mut nova = Nova::new(1024);
        assert_eq!(
            nova.on_poll(Duration::ZERO, &Value::Null),
            vec![Act::Downtime(50)]
        );
        assert!(nova.on_poll(Duration::from_secs(149), &Value::Null).is_empty());
        assert_eq!(
            nova.on_poll(Duration::from_secs(150), &Value::Null),
            vec![Act::Downtime(95)]
        );
    }
}
