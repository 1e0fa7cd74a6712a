//! What the engine tells the outside world while it runs. The CLI renders these as
//! progress bars or JSON lines; the engine never prints.

use serde::Serialize;

use crate::driver::PairFacts;
use crate::phase::Phase;
use crate::policy::PassRecord;
use crate::report::ActionRecord;

/// A progress reading, taken every sample interval.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// Milliseconds since `migrate`.
    pub elapsed_ms: u64,
    /// QEMU's migration status.
    pub status: String,
    /// Guest RAM, bytes.
    pub total_bytes: u64,
    /// RAM left to send, bytes.
    pub remaining_bytes: u64,
    /// Sent so far, bytes.
    pub transferred_bytes: u64,
    /// Throughput, bytes/s.
    pub bandwidth: u64,
    /// Latest dirty rate, bytes/s, and where it came from.
    pub dirty_rate: Option<u64>,
    /// `kernel:dirty-ring`, `kernel:dirty-bitmap` or `stats`.
    pub dirty_rate_source: String,
    /// Expected downtime in ms: (remaining + device state) / bandwidth.
    pub expected_downtime_ms: Option<u64>,
    /// Current downtime limit, ms.
    pub downtime_limit_ms: u64,
    /// Dirty-sync passes so far.
    pub pass: u64,
    /// Auto-converge's throttle, percent.
    pub cpu_throttle_percentage: Option<u64>,
}

/// An event of a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EngineEvent {
    /// A phase began.
    Phase {
        /// The phase.
        phase: Phase,
    },
    /// Facts read in preflight.
    Facts {
        /// Both sides.
        facts: PairFacts,
    },
    /// A preflight check failed.
    NotReady {
        /// What is wrong.
        problems: Vec<String>,
    },
    /// Statistics were read.
    Progress(Progress),
    /// A dirty-sync boundary was measured.
    Pass(PassRecord),
    /// The policy acted.
    Action(ActionRecord),
    /// A VFIO device changed state on the source.
    Device {
        /// The device's plan id (or QEMU's id when it is not followed).
        id: String,
        /// Its new state.
        state: String,
        /// Time since `migrate`, ms.
        at_ms: u64,
    },
    /// What configuring changed on the source, as the backend can put it back: a
    /// journal keeps it so that a successor of a run that died can restore it.
    SettingsSaved {
        /// The backend's saved settings (opaque to the engine).
        settings: serde_json::Value,
    },
    /// Something the operator should know that changes nothing by itself.
    Note {
        /// The message.
        message: String,
    },
}

/// Receives the engine's events.
pub trait EventSink: Send {
    /// Handles one event; must not block for long (it runs on the engine's task).
    fn emit(&mut self, event: EngineEvent);
}

/// A sink that drops everything (for tests and benchmarks).
#[derive(Debug, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&mut self, _event: EngineEvent) {}
}

/// A sink that keeps everything (for tests).
#[derive(Debug, Default)]
pub struct VecSink(pub Vec<EngineEvent>);

impl EventSink for VecSink {
    fn emit(&mut self, event: EngineEvent) {
        self.0.push(event);
    }
}
