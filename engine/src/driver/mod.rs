//! The seam between the engine and a hypervisor pair.
//!
//! Every backend (QEMU over QMP, libvirt, the simulator) implements the small core
//! [`Driver`]: connect, read facts, configure, start, sample, set the downtime limit,
//! throttle, stop the guest, cancel, run state, resume, restore. What only some backends
//! can do is a capability trait the driver hands out when it has it:
//!
//! | capability | what it lets the engine guarantee |
//! |---|---|
//! | [`SwitchoverHold`] | the guest is held at `pre-switchover` while the engine checks the devices and the pause, and is cancelled instead of continued when either is wrong |
//! | [`DeviceEvents`] | every VFIO device is followed through its state events, and no dirty-rate decision is taken before all are saving |
//! | [`KernelDirtyRate`] | dirty rates come from the kernel's dirty log, not QEMU's statistics |
//! | [`Listen`] | the tool itself makes the destination listen, so a failed migration leaves it alive |
//!
//! The QMP backend and the simulator have all four. A backend that cannot offer one
//! (libvirt answers `pre-switchover` itself, so it cannot hold the guest there) leaves
//! the accessor at its default, `None`.
//!
//! The engine asks for each capability before a run ([`Capabilities`]), plans on what it
//! got, refuses plans that need one that is missing, and says in the report which ones
//! the run had. Backends report facts and carry out requests; every decision is the
//! engine's. Nothing here names QMP or libvirt types. All futures are `Send`, so a run
//! can be spawned on a multi-threaded runtime next to others.

mod error;
mod event;
mod facts;
mod sample;
mod status;
mod survey;

use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tokio::sync::mpsc;

pub use error::DriverError;
pub use event::DriverEvent;
pub use facts::{
    DeviceInfo, DeviceTransferSetup, OnOffAuto, PairFacts, Setup, SideFacts, StreamSetup, Throttle, TlsSetup,
};
pub use sample::{DirtyRate, DirtyRateMode, Sample, StreamStats, XbzrleStats};
pub use status::{DeviceState, MigrationStatus, RunState, Side};
pub use survey::{DeviceSurvey, SideSurvey};

/// A hypervisor pair the engine can migrate between: what every backend can do.
///
/// Every call has a bounded duration (backends apply their command timeouts).
#[async_trait]
pub trait Driver: Send {
    /// Connects to both sides.
    async fn connect(&mut self) -> Result<(), DriverError>;
    /// The events both sides report from now on; called once.
    fn take_events(&mut self) -> mpsc::UnboundedReceiver<DriverEvent>;
    /// Reads facts about both sides without changing anything.
    async fn inspect(&mut self) -> Result<PairFacts, DriverError>;
    /// Sets capabilities and parameters, and the stream's TLS credentials on both sides
    /// when asked; remembers what it changed and added for [`Driver::restore`].
    async fn configure(&mut self, setup: &Setup) -> Result<(), DriverError>;
    /// Starts the migration.
    async fn start(&mut self, uri: &str) -> Result<(), DriverError>;
    /// Reads the source's migration statistics.
    async fn sample(&mut self) -> Result<Sample, DriverError>;
    /// Changes the downtime limit while migrating.
    async fn set_downtime_limit(&mut self, ms: u64) -> Result<(), DriverError>;
    /// Caps the migration stream at `bytes_per_sec` while it runs (a share of an
    /// evacuation's bandwidth budget); takes effect at once.
    async fn set_max_bandwidth(&mut self, bytes_per_sec: u64) -> Result<(), DriverError>;
    /// Throttles the source's vCPUs.
    async fn throttle(&mut self, throttle: &Throttle) -> Result<(), DriverError>;
    /// Removes a throttle the engine set (after an abort the guest runs at full speed).
    async fn release_throttle(&mut self) -> Result<(), DriverError>;
    /// Stops the source's vCPUs (forcing by pausing).
    async fn stop_source(&mut self) -> Result<(), DriverError>;
    /// Cancels the migration. Backends treat "no migration in progress" as done.
    async fn cancel(&mut self) -> Result<(), DriverError>;
    /// A side's run state.
    async fn run_state(&mut self, side: Side) -> Result<RunState, DriverError>;
    /// The destination's migration status.
    async fn destination_migration(&mut self) -> Result<MigrationStatus, DriverError>;
    /// Starts a side's vCPUs.
    async fn resume(&mut self, side: Side) -> Result<(), DriverError>;
    /// Puts back the capabilities and parameters [`Driver::configure`] changed and
    /// removes what it added; called once the migration is over, however it ended.
    async fn restore(&mut self) -> Result<(), DriverError>;

    /// Connects to `side` again after its connection was lost, so that a run can still
    /// cancel, put back and ask (a closed connection does not mean the process is gone).
    /// Events from the new connection are not delivered. Backends that cannot leave the
    /// default, which refuses.
    async fn reconnect(&mut self, side: Side) -> Result<(), DriverError> {
        Err(DriverError {
            side,
            request: "connect".into(),
            message: format!("{side}: connect: this backend cannot connect again"),
            disconnected: true,
        })
    }

    /// A side whose monitor connection the kernel already reports closed though no
    /// event has said so yet: asked, without a round trip, while QEMU holds the guest at
    /// `pre-switchover`, where continuing into a side that is gone cannot be undone.
    /// `None` by default.
    fn hung_up(&self) -> Option<Side> {
        None
    }

    /// What [`Driver::configure`] changed, in a form a journal can keep, so that another
    /// process can put it back after this one died. `None` when nothing was changed.
    fn saved_settings(&self) -> Option<serde_json::Value> {
        None
    }
    /// Takes over settings another process saved (see [`Driver::saved_settings`]), so
    /// that [`Driver::restore`] puts them back.
    fn adopt_saved_settings(&mut self, saved: serde_json::Value) -> Result<(), DriverError> {
        let _ = saved;
        Ok(())
    }

    /// What this run did to the VM beyond migrating it that its operator should know,
    /// in words for the report's `notes` (libvirt marks a domain tainted when QEMU
    /// commands are sent through it). Empty by default.
    fn footprint(&self) -> Vec<String> {
        Vec::new()
    }

    /// Holding the guest at `pre-switchover`, when this backend can.
    fn switchover_hold(&mut self) -> Option<&mut dyn SwitchoverHold> {
        None
    }
    /// Listing VFIO devices and following their states, when this backend can.
    fn device_events(&mut self) -> Option<&mut dyn DeviceEvents> {
        None
    }
    /// Measuring the kernel's dirty rate, when this backend can.
    fn kernel_dirty_rate(&mut self) -> Option<&mut dyn KernelDirtyRate> {
        None
    }
    /// Making the destination listen, when this backend can.
    fn listener(&mut self) -> Option<&mut dyn Listen> {
        None
    }
    /// Reading what `check` compares, when this backend can. Not a guarantee a run
    /// relies on, so not among [`Capabilities`].
    fn survey(&mut self) -> Option<&mut dyn Survey> {
        None
    }

    /// Which capabilities this backend has.
    fn capabilities(&mut self) -> Capabilities {
        Capabilities {
            switchover_hold: self.switchover_hold().is_some(),
            device_events: self.device_events().is_some(),
            kernel_dirty_rate: self.kernel_dirty_rate().is_some(),
            listen: self.listener().is_some(),
        }
    }
}

/// Writes the accessors of the capabilities a driver implements itself, inside its
/// `impl Driver` block: `engine::capabilities!(switchover_hold, device_events,
/// kernel_dirty_rate, listener);`.
#[macro_export]
macro_rules! capabilities {
    ($($accessor:ident),* $(,)?) => { $( $crate::capabilities!(@one $accessor); )* };
    (@one switchover_hold) => {
        fn switchover_hold(&mut self) -> Option<&mut dyn $crate::driver::SwitchoverHold> {
            Some(self)
        }
    };
    (@one device_events) => {
        fn device_events(&mut self) -> Option<&mut dyn $crate::driver::DeviceEvents> {
            Some(self)
        }
    };
    (@one kernel_dirty_rate) => {
        fn kernel_dirty_rate(&mut self) -> Option<&mut dyn $crate::driver::KernelDirtyRate> {
            Some(self)
        }
    };
    (@one survey) => {
        fn survey(&mut self) -> Option<&mut dyn $crate::driver::Survey> {
            Some(self)
        }
    };
    (@one listener) => {
        fn listener(&mut self) -> Option<&mut dyn $crate::driver::Listen> {
            Some(self)
        }
    };
}

/// The guest waits at `pre-switchover` (VM stopped, devices in their final saving
/// states) until the engine continues or cancels.
#[async_trait]
pub trait SwitchoverHold: Send {
    /// Lets a migration waiting in `pre-switchover` finish.
    async fn continue_switchover(&mut self) -> Result<(), DriverError>;
}

/// VFIO devices can be listed and their state changes arrive as
/// [`DriverEvent::DeviceState`].
#[async_trait]
pub trait DeviceEvents: Send {
    /// The VFIO devices on the source.
    async fn vfio_devices(&mut self) -> Result<Vec<DeviceInfo>, DriverError>;
    /// Turns on `migration-events` for a device on the source (a change to QEMU).
    async fn enable_migration_events(&mut self, qom_path: &str) -> Result<(), DriverError>;
}

/// The source's dirty rate can be measured from the kernel's dirty log.
#[async_trait]
pub trait KernelDirtyRate: Send {
    /// Starts a measurement on the source.
    async fn start_dirty_rate(&mut self, mode: DirtyRateMode, calc: Duration) -> Result<(), DriverError>;
    /// The last measurement, or `None` while one is still running.
    async fn dirty_rate(&mut self) -> Result<Option<DirtyRate>, DriverError>;
}

/// The tool makes the destination listen for the stream itself.
#[async_trait]
pub trait Listen: Send {
    /// Makes the destination listen on `uri` (and survive a failed migration).
    async fn listen(&mut self, uri: &str) -> Result<(), DriverError>;
}

/// `check` can read more about a side than a run needs ([`SideSurvey`]).
#[async_trait]
pub trait Survey: Send {
    /// Reads `side` without changing anything. Needs only that side connected.
    async fn survey(&mut self, side: Side) -> Result<SideSurvey, DriverError>;
    /// Connects to `side` alone (a check of one side must not need the other).
    async fn connect_side(&mut self, side: Side) -> Result<(), DriverError>;
}

/// Which capabilities a run had; the report carries it so that an operator knows which
/// guarantees held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The guest was held at `pre-switchover` while devices and pause were checked.
    pub switchover_hold: bool,
    /// VFIO devices were followed through their state events (the saving gate).
    pub device_events: bool,
    /// Dirty rates could come from the kernel's dirty log.
    pub kernel_dirty_rate: bool,
    /// The tool made the destination listen.
    pub listen: bool,
}
