//! No orchestrator: `migrate` with QEMU's defaults (300 ms downtime limit, no throttle),
//! only the link capped like everyone else's. Whoever starts it waits.

use std::time::Duration;

use serde_json::Value;

use super::policy::{Act, Policy};

/// Plain `migrate`.
pub struct NoOrchestrator;

impl Policy for NoOrchestrator {
    fn wait(&self) -> Duration {
        Duration::from_millis(200)
    }

    fn on_poll(&mut self, _elapsed: Duration, _stats: &Value) -> Vec<Act> {
        Vec::new()
    }
}

/// Plain `migrate` with the guest held at `pre-switchover` and let go at once: what
/// holding costs the pause by itself (QEMU's extra stop, the event's way out and the
/// command's way back), with none of the tool's work.
pub struct HeldAtSwitchover;

impl Policy for HeldAtSwitchover {
    fn capabilities(&self) -> Vec<&'static str> {
        vec!["events", "pause-before-switchover"]
    }

    fn wait(&self) -> Duration {
        NoOrchestrator.wait()
    }

    fn on_poll(&mut self, _elapsed: Duration, _stats: &Value) -> Vec<Act> {
        Vec::new()
    }
}
