//! The value a plan gets for each key it leaves out, in one place.
//!
//! The model's `Default` impls and serde defaults (and through them the JSON Schema) and
//! the reader take their values from here, and `tests/documented_defaults.rs` holds the
//! tables of `docs/plan.md` to them. A default that depends on another key is applied by
//! [`follow`] once the whole plan is read, and gives way to that key: a default must never
//! make a plan invalid that is valid as written.

use crate::model::Plan;

/// `[vm]`.
pub mod vm {
    /// VFIO devices the plan does not list make the migration refuse to start.
    pub const ALLOW_UNLISTED_DEVICES: bool = false;
}

/// `[destination]`.
pub mod destination {
    /// The tool starts a destination that waits paused, once the migration completed.
    pub const RESUME: bool = true;
}

/// `[migration]`.
pub mod migration {
    use std::path::{Path, PathBuf};

    use crate::model::MultifdCompression;

    /// Pre-copy only: post-copy is refused with VFIO devices anyway.
    pub const POSTCOPY: bool = false;
    /// The stream as QEMU sends it, in the clear. Only on this host: a plan whose
    /// stream leaves it must write `tls` either way (checked in `validate`).
    pub const TLS: bool = false;
    /// Where QEMU's documentation and libvirt (`default_tls_x509_cert_dir`) keep QEMU's
    /// x509 certificates.
    pub const TLS_DIR: &str = "/etc/pki/qemu";
    /// Pages go uncompressed, as they do without multifd: compression costs CPU on
    /// both sides and pays only on a slow link.
    pub const MULTIFD_COMPRESSION: MultifdCompression = MultifdCompression::None;

    /// `tls_dir_source` or `tls_dir_destination` left out: `tls_dir`.
    pub fn tls_dir_side(tls_dir: &Path) -> PathBuf {
        tls_dir.to_path_buf()
    }
}

/// `[[devices]]`.
pub mod devices {
    /// A device without pre-copy support is marked `precopy = false`.
    pub const PRECOPY: bool = true;
}

/// `[limits]`.
pub mod limits {
    use std::time::Duration;

    /// QEMU's own default `downtime-limit`, unless `max_downtime` is lower (see
    /// [`downtime`]).
    pub const DOWNTIME: Duration = Duration::from_millis(300);
    /// Wall-clock limit for the whole migration.
    pub const DEADLINE: Duration = Duration::from_secs(600);
    /// How long VFIO devices may take to reach their saving state, unless the deadline
    /// is shorter (see [`saving_timeout`]).
    pub const SAVING_TIMEOUT: Duration = Duration::from_secs(30);

    /// `downtime` left out: [`DOWNTIME`], or `max_downtime` when that is lower, since a
    /// ceiling below the starting limit is refused.
    pub fn downtime(max_downtime: Duration) -> Duration {
        DOWNTIME.min(max_downtime)
    }

    /// `max_downtime` left out: the downtime the plan starts with, so forcing cannot
    /// raise it beyond what the plan asked for.
    pub fn max_downtime(downtime: Duration) -> Duration {
        downtime
    }

    /// `saving_timeout` left out: [`SAVING_TIMEOUT`], or the deadline when that is
    /// shorter, since a saving timeout longer than the deadline is refused.
    pub fn saving_timeout(deadline: Duration) -> Duration {
        SAVING_TIMEOUT.min(deadline)
    }
}

/// `[convergence]`.
pub mod convergence {
    use std::time::Duration;

    use crate::model::{DirtyRateSource, KernelDirtyMode};

    /// How often migration statistics are read, unless the deadline is shorter (see
    /// [`sample_interval`]).
    pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);
    /// The kernel's dirty log, through QEMU's `calc-dirty-rate`.
    pub const DIRTY_RATE: DirtyRateSource = DirtyRateSource::Kernel;
    /// The dirty ring when the guest has one.
    pub const KERNEL_MODE: KernelDirtyMode = KernelDirtyMode::Auto;
    /// Length of one dirty-rate measurement.
    pub const CALC_TIME: Duration = Duration::from_secs(1);
    /// Stalled passes in a row before the policy acts.
    pub const STALL_PASSES: u32 = 2;

    /// `sample_interval` left out: [`SAMPLE_INTERVAL`], or `limits.deadline` when that
    /// is shorter, since an interval longer than the deadline is refused.
    pub fn sample_interval(deadline: Duration) -> Duration {
        SAMPLE_INTERVAL.min(deadline)
    }
}

/// `[policy]`.
pub mod policy {
    use crate::model::{ForceMethod, Step, ThrottleMethod};
    use crate::units::Rate;

    /// Slow the guest, then force, then give up.
    pub const ESCALATION: [Step; 3] = [Step::Throttle, Step::ForceDowntime, Step::Abort];
    /// At the deadline the migration is cancelled and the VM keeps running on the source.
    pub const ON_DEADLINE: Step = Step::Abort;
    /// Auto-converge: unlike a dirty limit, it needs no KVM dirty ring.
    pub const THROTTLE: ThrottleMethod = ThrottleMethod::AutoConverge;
    /// The lowest per-vCPU dirty limit the `dirty-limit` method sets, whatever the
    /// computed one: QEMU holds a limit only to within 25 MB/s, and a very low one
    /// (its own default is 1 MB/s) stalls the guest.
    pub const DIRTY_LIMIT: Rate = Rate(10 * 1024 * 1024);
    /// Auto-converge: the least first throttle percentage (QEMU's own default), unless
    /// `throttle_max` is lower (see [`throttle_initial`]).
    pub const THROTTLE_INITIAL: u8 = 20;
    /// Auto-converge: the least a correction adds (QEMU's own default increment).
    pub const THROTTLE_INCREMENT: u8 = 10;
    /// Auto-converge: the most the guest is throttled (QEMU's own default).
    pub const THROTTLE_MAX: u8 = 99;
    /// Raise the downtime limit, so QEMU switches over with devices in stop-copy.
    pub const FORCE: ForceMethod = ForceMethod::RaiseLimit;

    /// `throttle_initial` left out: [`THROTTLE_INITIAL`], or `throttle_max` when that is
    /// lower, since a first step above the maximum is refused.
    pub fn throttle_initial(throttle_max: u8) -> u8 {
        THROTTLE_INITIAL.min(throttle_max)
    }
}

/// `[security]`.
pub mod security {
    /// QMP reaches monitors on this host only (a unix socket or loopback TCP).
    pub const REMOTE_QMP: bool = false;
}

/// `[libvirt]`.
pub mod libvirt {
    /// Managed migration: the tool's own connections to both daemons drive it.
    pub const PEER_TO_PEER: bool = false;
    /// The domain is defined on the destination afterwards, as it was on the source.
    pub const PERSIST: bool = true;
    /// The source's definition is removed afterwards, so the VM cannot be started twice.
    pub const UNDEFINE_SOURCE: bool = true;
}

/// `[notify]`.
pub mod notify {
    use std::time::Duration;

    /// A webhook receiver answers at once and does its work afterwards; one that takes
    /// longer is taken as not answering, and tried again.
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    /// Long enough to ride out a receiver's restart, short enough that a finished
    /// migration's process does not linger long for a receiver that is gone.
    pub const RETRY_FOR: Duration = Duration::from_secs(30);
}

/// Applies the defaults that follow another key to the keys the plan left out;
/// `written` tells whether the plan wrote a key (by dotted path).
pub(crate) fn follow(plan: &mut Plan, written: impl Fn(&str) -> bool) {
    let m = &mut plan.migration;
    if !written("migration.tls_dir_source") {
        m.tls_dir_source = migration::tls_dir_side(&m.tls_dir);
    }
    if !written("migration.tls_dir_destination") {
        m.tls_dir_destination = migration::tls_dir_side(&m.tls_dir);
    }
    let l = &mut plan.limits;
    // `downtime` before `max_downtime`: each follows the other only when that one is
    // written, and both left out are the same default.
    if !written("limits.downtime") {
        l.downtime = limits::downtime(l.max_downtime);
    }
    if !written("limits.max_downtime") {
        l.max_downtime = limits::max_downtime(l.downtime);
    }
    if !written("limits.saving_timeout") {
        l.saving_timeout = limits::saving_timeout(l.deadline);
    }
    if !written("convergence.sample_interval") {
        plan.convergence.sample_interval = convergence::sample_interval(plan.limits.deadline);
    }
    let p = &mut plan.policy;
    if !written("policy.throttle_initial") {
        p.throttle_initial = policy::throttle_initial(p.throttle_max);
    }
}
