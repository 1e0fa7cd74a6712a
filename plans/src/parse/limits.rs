//! `[limits]` and `[convergence]`: the bounds a migration runs within and how its
//! progress is measured.

use std::ops::Range;

use toml::de::DeTable;

use crate::model::*;
use crate::reader::{Mistakes, TableReader};

pub(super) fn read_limits(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Limits> {
    const KEYS: &[&str] = &[
        "downtime",
        "max_downtime",
        "max_bandwidth",
        "deadline",
        "saving_timeout",
    ];
    let r = TableReader::new("limits", t, s, KEYS);
    let d = Limits::default();
    let downtime = r.duration(m, "downtime", "300ms", false);
    let max_downtime = r.duration(m, "max_downtime", "2s", false);
    let max_bandwidth = r.rate(m, "max_bandwidth", "1GiB/s");
    let deadline = r.duration(m, "deadline", "10m", false);
    let saving_timeout = r.duration(m, "saving_timeout", "30s", false);
    let failed = r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    // Defaults that follow another key are set by `defaults::follow` once all is read.
    Some(Limits {
        downtime: downtime.map_or(d.downtime, |a| a.value),
        max_downtime: max_downtime.map_or(d.max_downtime, |a| a.value),
        max_bandwidth: max_bandwidth.map(|a| a.value),
        deadline: deadline.map_or(d.deadline, |a| a.value),
        saving_timeout: saving_timeout.map_or(d.saving_timeout, |a| a.value),
    })
}

pub(super) fn read_convergence(t: &DeTable<'_>, s: Range<usize>, m: &mut Mistakes) -> Option<Convergence> {
    const KEYS: &[&str] = &[
        "sample_interval",
        "dirty_rate",
        "kernel_mode",
        "calc_time",
        "stall_passes",
    ];
    let r = TableReader::new("convergence", t, s, KEYS);
    let d = Convergence::default();
    let sample_interval = r.duration(m, "sample_interval", "200ms", false);
    let dirty_rate = r.choice(m, "dirty_rate", DirtyRateSource::WORDS);
    let kernel_mode = r.choice(m, "kernel_mode", KernelDirtyMode::WORDS);
    let calc_time = r.duration(m, "calc_time", "1s", false);
    let stall_passes = r.integer(m, "stall_passes", 1..=100);
    let failed = r.failed();
    r.finish(m);
    if failed {
        return None;
    }
    Some(Convergence {
        sample_interval: sample_interval.map_or(d.sample_interval, |a| a.value),
        dirty_rate: dirty_rate.map_or(d.dirty_rate, |a| a.value),
        kernel_mode: kernel_mode.map_or(d.kernel_mode, |a| a.value),
        calc_time: calc_time.map_or(d.calc_time, |a| a.value),
        stall_passes: stall_passes.map_or(d.stall_passes, |a| a.value as u32),
    })
}
