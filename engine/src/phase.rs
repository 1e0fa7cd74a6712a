//! The phases of a run, in order, and how long each took.
//!
//! ```text
//! connect → preflight → configure → listen → migrate → converge → switchover → verify
//!                                                  ↘ (policy abort / failure) → recover
//! ```

use std::time::Duration;

use tokio::time::Instant;

use serde::Serialize;

/// One phase of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Connecting to both monitors.
    Connect,
    /// Reading facts and checking both sides are ready.
    Preflight,
    /// Setting capabilities and parameters.
    Configure,
    /// Making the destination listen.
    Listen,
    /// Sending `migrate`.
    Migrate,
    /// Watching passes, asking the policy.
    Converge,
    /// The VM is stopped; finishing the handover.
    Switchover,
    /// Confirming where the VM runs; starting the destination.
    Verify,
    /// Cancelling and making sure the source runs.
    Recover,
}

impl Phase {
    /// The phase's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Preflight => "preflight",
            Phase::Configure => "configure",
            Phase::Listen => "listen",
            Phase::Migrate => "migrate",
            Phase::Converge => "converge",
            Phase::Switchover => "switchover",
            Phase::Verify => "verify",
            Phase::Recover => "recover",
        }
    }
}

/// How long a phase took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
    /// The phase.
    pub phase: Phase,
    /// Its duration, ms (fractional, for sub-millisecond phases).
    pub ms: f64,
}

/// Records phase timings as the run moves through them.
#[derive(Debug)]
pub struct PhaseClock {
    current: Phase,
    started: Instant,
    done: Vec<PhaseTiming>,
}

impl PhaseClock {
    /// Starts in `first`.
    pub fn new(first: Phase) -> Self {
        PhaseClock {
            current: first,
            started: Instant::now(),
            done: Vec::new(),
        }
    }

    /// The phase the run is in.
    pub fn current(&self) -> Phase {
        self.current
    }

    /// Ends the current phase and starts `next`; returns how long the ended one took.
    pub fn enter(&mut self, next: Phase) -> Duration {
        let took = self.started.elapsed();
        self.done.push(PhaseTiming {
            phase: self.current,
            ms: took.as_secs_f64() * 1000.0,
        });
        self.current = next;
        self.started = Instant::now();
        took
    }

    /// Ends the current phase and returns every timing.
    pub fn finish(mut self) -> (Phase, Vec<PhaseTiming>) {
        let last = self.current;
        self.done.push(PhaseTiming {
            phase: last,
            ms: self.started.elapsed().as_secs_f64() * 1000.0,
        });
        (last, self.done)
    }
}
