//! Proxmox VE's policy, as `qemu-server`'s `PVE/QemuMigrate.pm` (`phase2`) and
//! `PVE/QemuMigrate/Helpers.pm` (`set_migration_caps`) have it:
//!
//! - `auto-converge` and `xbzrle` on from the start; the XBZRLE cache is a tenth of the
//!   guest's RAM rounded up to a power of two; `downtime-limit` 100 ms (the default
//!   `migrate_downtime` of 0.1 s).
//! - `query-migrate` once a second, every 100 ms once the RAM left is below the average
//!   sent per poll so far.
//! - At each poll that saw data move, a count goes up when `ram.remaining` grew since the
//!   last such poll (or is 0); when the count passes 5 it is reset and `downtime-limit`
//!   is doubled (capped at QEMU's 2000 s). It never aborts.
//!
//! The benchmark also runs it with `xbzrle` off, to separate the policy from the
//! encoding (the rig's guest rewrites 8 bytes of each page, which flatters XBZRLE).

use std::time::Duration;

use serde_json::{json, Value};

use super::policy::{Act, Policy};

/// QEMU's largest `downtime-limit`, ms.
const DOWNTIME_MAX_MS: u64 = 2_000_000;

/// Proxmox's migration loop.
pub struct Proxmox {
    xbzrle: bool,
    cache_bytes: u64,
    downtime_ms: u64,
    polls: u64,
    wait: Duration,
    last_transferred: u64,
    last_remaining: Option<u64>,
    counter: u32,
}

impl Proxmox {
    /// For a guest of `guest_mib` MiB, with or without XBZRLE.
    pub fn new(guest_mib: u64, xbzrle: bool) -> Self {
        Proxmox {
            xbzrle,
            cache_bytes: (guest_mib * 1024 * 1024 / 10).next_power_of_two(),
            downtime_ms: 100,
            polls: 0,
            wait: Duration::from_secs(1),
            last_transferred: 0,
            last_remaining: None,
            counter: 0,
        }
    }
}

impl Policy for Proxmox {
    fn capabilities(&self) -> Vec<&'static str> {
        match self.xbzrle {
            true => vec!["auto-converge", "xbzrle"],
            false => vec!["auto-converge"],
        }
    }

    fn parameters(&self) -> serde_json::Map<String, Value> {
        let mut p = serde_json::Map::new();
        p.insert("downtime-limit".into(), json!(self.downtime_ms));
        p.insert("xbzrle-cache-size".into(), json!(self.cache_bytes));
        p
    }

    fn wait(&self) -> Duration {
        self.wait
    }

    fn on_poll(&mut self, _elapsed: Duration, stats: &Value) -> Vec<Act> {
        self.polls += 1;
        // The average is taken before this poll's reading, as the Perl loop does.
        let average = self.last_transferred / self.polls;
        let ram = &stats["ram"];
        let transferred = ram["transferred"].as_u64().unwrap_or(0);
        let mut acts = Vec::new();
        let status = stats["status"].as_str().unwrap_or("");
        if matches!(status, "active" | "device") && transferred != self.last_transferred {
            let remaining = ram["remaining"].as_u64().unwrap_or(0);
            if average > 0 && remaining < average {
                self.wait = Duration::from_millis(100);
            }
            if self
                .last_remaining
                .is_some_and(|last| last > 0 && remaining > last)
                || remaining == 0
            {
                self.counter += 1;
            }
            self.last_remaining = Some(remaining);
            if self.counter > 5 {
                self.counter = 0;
                if self.downtime_ms < DOWNTIME_MAX_MS {
                    self.downtime_ms = (self.downtime_ms * 2).min(DOWNTIME_MAX_MS);
                    acts.push(Act::Downtime(self.downtime_ms));
                }
            }
        }
        self.last_transferred = transferred;
        acts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(transferred: u64, remaining: u64) -> Value {
        json!({"status": "active", "ram": {"transferred": transferred, "remaining": remaining}})
    }

    #[test]
    fn the_cache_is_a_tenth_of_the_guest_rounded_up_to_a_power_of_two() {
        assert_eq!(Proxmox::new(1024, true).cache_bytes, 128 * 1024 * 1024);
    }

    #[test]
    fn doubles_the_downtime_after_the_sixth_poll_whose_remaining_grew() {
        let mut p = Proxmox::new(1024, false);
        let mut acts = Vec::new();
        let mut sent = 0;
        for i in 0..13u64 {
            sent += 100;
            // Remaining alternates down and up: it grows at every other poll.
            let remaining = if i % 2 == 0 { 500 } else { 900 };
            acts.extend(p.on_poll(Duration::ZERO, &stats(sent, remaining)));
        }
        assert_eq!(acts, vec![Act::Downtime(200)]);
    }
}
