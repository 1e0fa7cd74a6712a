//! The engine's sink with webhooks: every event goes on to the sink it wraps, and the
//! ones receivers want are queued as well.

use engine::{EngineEvent, EventSink};
use plans::Plan;

use super::event::{self, Kind};
use super::NotifyHandle;

/// Wraps a run's sink (the renderer, the journal) and queues the webhook-worthy events:
/// phases, the switchover, policy actions, device transitions.
pub struct NotifySink<'a> {
    inner: &'a mut dyn EventSink,
    handle: NotifyHandle,
    vm: String,
}

impl<'a> NotifySink<'a> {
    /// Announces `plan`'s run (`run_started`) and wraps `inner` for it.
    pub fn new(inner: &'a mut dyn EventSink, handle: NotifyHandle, plan: &Plan) -> Self {
        handle.send(&plan.vm.name, Kind::RunStarted, event::run_started(plan));
        NotifySink {
            inner,
            handle,
            vm: plan.vm.name.clone(),
        }
    }
}

impl EventSink for NotifySink<'_> {
    fn emit(&mut self, event: EngineEvent) {
        let webhook = event::of_engine(&event);
        // The run's own duties first: the journal and the display.
        self.inner.emit(event);
        if let Some((kind, data)) = webhook {
            self.handle.send(&self.vm, kind, data);
        }
    }
}
