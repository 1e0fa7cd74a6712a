//! What a peer's algorithm is, reduced to what it asks of QEMU: the capabilities and
//! parameters it sets before `migrate`, how often it looks, and what it does with what
//! it sees. The policies are pure; [`super::session`] carries them out.

use std::time::Duration;

use serde_json::Value;

/// A request a policy makes while the migration runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Act {
    /// `migrate-set-parameters {"downtime-limit": ms}`.
    Downtime(u64),
    /// `stop`: suspend the guest and let the migration finish with it paused.
    Suspend,
}

/// One peer's algorithm.
pub trait Policy {
    /// Migration capabilities it turns on (the rest stay at QEMU's defaults). With
    /// `pause-before-switchover` among them, the session answers each `pre-switchover`
    /// with `migrate-continue` at once.
    fn capabilities(&self) -> Vec<&'static str> {
        Vec::new()
    }

    /// `migrate-set-parameters` members it sets before `migrate` (besides the shared
    /// `max-bandwidth`).
    fn parameters(&self) -> serde_json::Map<String, Value> {
        serde_json::Map::new()
    }

    /// How long it waits before it looks again.
    fn wait(&self) -> Duration;

    /// What it does after reading `query-migrate` (`stats`) at `elapsed` since `migrate`.
    fn on_poll(&mut self, elapsed: Duration, stats: &Value) -> Vec<Act>;
}
