//! Peak memory from `/proc`, to set beside `wait4`'s `ru_maxrss`: `VmHWM` is one
//! process's own high-water mark, while `ru_maxrss` after `wait4` is the largest of the
//! child and of every descendant it reaped. Read every 20 ms until the run exits (a
//! zombie has no memory left to report), so the last reading is the peak.
//!
//! `VmHWM` counts every resident page mapped, the shared libraries' code and read-only
//! data included (pages the host's other users of those libraries share); `RssAnon` is
//! the process's own heap and stacks. Its peak is the largest reading seen, so it can
//! miss a spike shorter than the 20 ms between readings.

use std::thread::JoinHandle;
use std::time::Duration;

/// The peaks seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct Peaks {
    /// The run's `VmHWM`, KiB.
    pub run: Option<u64>,
    /// The largest `VmHWM` among its children (the guardian), KiB.
    pub guardian: Option<u64>,
    /// The run's largest `RssAnon` seen, KiB: its own heap and stacks.
    pub run_anon: Option<u64>,
    /// The largest `RssAnon` seen among its children, KiB.
    pub guardian_anon: Option<u64>,
    /// The most threads the run had.
    pub threads: Option<u64>,
}

/// Watches `pid` and its children on a thread until `pid` has exited.
pub fn watch(pid: u32) -> JoinHandle<Peaks> {
    std::thread::spawn(move || {
        let mut peaks = Peaks::default();
        while let Some(status) = read(pid) {
            let Some(hwm) = field(&status, "VmHWM:") else {
                break; // a zombie
            };
            peaks.run = peaks.run.max(Some(hwm));
            peaks.run_anon = peaks.run_anon.max(field(&status, "RssAnon:"));
            peaks.threads = peaks.threads.max(field(&status, "Threads:"));
            for child in children(pid) {
                if let Some(status) = read(child) {
                    peaks.guardian = peaks.guardian.max(field(&status, "VmHWM:"));
                    peaks.guardian_anon = peaks.guardian_anon.max(field(&status, "RssAnon:"));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        peaks
    })
}

fn read(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// A `Key:   123 kB` line's number.
fn field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The children of every thread of `pid`.
fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}
