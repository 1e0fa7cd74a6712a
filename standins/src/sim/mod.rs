//! An embedded, simulated hypervisor pair: a second [`engine::Driver`] that needs no QEMU.
//!
//! The demo uses it when QEMU is absent, and policy and engine tests use it with tokio's
//! paused clock (`#[tokio::test(start_paused = true)]`), where a minute-long migration
//! runs in milliseconds. All time is tokio time.
//!
//! To the engine it looks exactly like [`backends::qemu::QmpDriver`]: the same statuses,
//! event kinds, units and error texts (`source (sim): COMMAND: CLASS: DESC`). What it
//! models, and which QEMU 10 behaviour each rule mirrors:
//!
//! - **RAM** (`ram.rs`): page by page over the working set (4 KiB pages, laid out at the
//!   start of guest RAM); the rest of RAM is zero pages, which cost QEMU's 9-byte zero
//!   page record on the wire (`save_zero_page`), data pages 8 + 4096 bytes. The guest
//!   writes its working set cyclically; writes are logged in a KVM-style dirty log while
//!   a migration tracks dirty pages. A bitmap sync (`migration_bitmap_sync`) moves the log
//!   into the migration bitmap, bumps `dirty-sync-count` and emits `MIGRATION_PASS`.
//! - **The migration thread** (`passes.rs`, clocked by `model.rs`): 100 ms iterations
//!   (`BUFFER_DELAY`), sending at `min(max-bandwidth, link)`; `max-bandwidth` defaults to
//!   QEMU's 128 MiB/s (`MAX_THROTTLE`) when the engine leaves it unset. At each iteration
//!   the bandwidth, `threshold = bandwidth × downtime-limit` and `expected-downtime` are
//!   recomputed (`migration_update_counters`); when the estimated RAM left is below the
//!   threshold the bitmap is synced and the exact pending data (RAM + every device's
//!   stop-copy size) is compared with it; QEMU switches over when that is below the
//!   threshold (or zero) and `switchover-ack`, when enabled, has been received
//!   (`migration_iteration_run`). A bitmap that runs dry also ends a pass at once.
//! - **Switchover** (`switchover.rs`; QEMU's `migration_completion_precopy`): the VM
//!   stops (device callbacks, then `STOP`), then `pre-switchover` when
//!   `pause-before-switchover` is on, then `device` after `migrate-continue`: a last sync,
//!   the remaining RAM and every device's state at the link's speed (the rate limit is
//!   lifted), `completed`, and only then do the devices go from `stop-copy` to `stop`
//!   (`vfio_save_cleanup`). `downtime` counts from the stop at switchover, so a pause
//!   caused earlier by `stop` is not in it.
//! - **Devices** (`devices.rs`): the `VFIO_MIGRATION` transitions of `hw/vfio/migration.c`,
//!   taken by [`crate::vfio`]'s state machine at the points above; P2P-capable devices
//!   pass through `running-p2p` / `pre-copy-p2p` when the VM stops or starts.
//! - **Throttles**: auto-converge (`migration_trigger_throttle`: at a sync at least 1 s
//!   after the last rate update, if the bytes dirtied exceed 50% of those sent, a counter
//!   rises; every second time the throttle starts at `cpu-throttle-initial` or rises by
//!   `cpu-throttle-increment`, up to `max-cpu-throttle`); the guest then dirties
//!   `(1 - throttle)` as fast. A vCPU dirty limit (`set-vcpu-dirty-limit`, KVM dirty ring
//!   only) caps the guest's rate (one vCPU) from one period (1 s) after it is set: QEMU's
//!   dirty limit measures each vCPU's rate over a period before it first slows it.
//! - **Dirty-rate measurement** (`calc-dirty-rate`): distinct bytes written over the
//!   window, in whole MiB/s; dirty-ring mode needs the ring, dirty-bitmap mode needs it
//!   off, and under TCG the bitmap reads 0.
//! - **Cancel and failure**: `cancelling` → `cancelled` after 15 ms; a source the
//!   migration stopped is restarted if it ran before (`migration_iteration_finish`), one
//!   the operator paused stays paused; devices go back to `running`.
//! - **The destination** is started `-incoming defer -S`: `migrate-incoming` makes it
//!   listen (`setup`), loading makes it `active` (devices `resuming`), and after
//!   completion it is `paused` (QEMU's `process_incoming_migration_bh` without autostart)
//!   until `cont`.
//! - **TLS** is not modelled: the simulated stream never leaves the process, so
//!   `Setup::tls` is accepted and ignored (no credentials, no handshake, no failure).
//!
//! Faults ([`crate::vfio::Fault`]) inject what real devices do wrong. The simulator also
//! counts guest pages the destination ended up without ([`SimInspector::guest_pages_lost`]):
//! it stays 0 for every completed migration unless the model has a bug.

mod commands;
mod devices;
mod driver;
mod model;
mod passes;
mod ram;
mod switchover;

pub use driver::{SimDriver, SimInspector};
pub use model::Exchange;

use crate::vfio::ModelDevice;

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;
/// Guest page size.
pub const PAGE_SIZE: u64 = 4096;

/// The simulated guest and the link between the two hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVm {
    /// Guest RAM in bytes.
    pub ram_bytes: u64,
    /// The working set: the guest RAM that holds data and is written; the rest is zero.
    pub wss_bytes: u64,
    /// Bytes per second the guest writes into its working set (before throttling).
    pub dirty_rate: u64,
    /// The physical link, bytes per second: the migration's speed when `max-bandwidth`
    /// is higher, and always during the switchover (QEMU lifts the rate limit then).
    pub link_bytes_per_sec: u64,
    /// KVM runs with the dirty ring (`-accel kvm,dirty-ring-size=4096`); needs `kvm`.
    pub dirty_ring: bool,
    /// The guest runs under KVM (else TCG).
    pub kvm: bool,
    /// The VFIO devices passed through to the guest. Their `host` goes unused here: the
    /// engine's device list does not carry it.
    pub devices: Vec<ModelDevice>,
}

impl Default for SimVm {
    /// A 1 GiB KVM guest with the dirty ring, an idle working set of 256 MiB, no devices,
    /// over a 10 Gbit/s link.
    fn default() -> Self {
        SimVm {
            ram_bytes: 1024 * MIB,
            wss_bytes: 256 * MIB,
            dirty_rate: 0,
            link_bytes_per_sec: 1_250_000_000,
            dirty_ring: true,
            kvm: true,
            devices: Vec::new(),
        }
    }
}
