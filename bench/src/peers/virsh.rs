//! `virsh migrate --timeout 30`: libvirt's defaults (no auto-converge, QEMU's downtime
//! limit), and once 30 s have passed virsh suspends the guest (`--timeout-suspend`, the
//! default action), so the rest of the migration is copied with the guest paused.

use std::time::Duration;

use serde_json::Value;

use super::policy::{Act, Policy};

/// virsh's `--timeout`.
pub struct VirshTimeout {
    timeout: Duration,
    suspended: bool,
}

impl VirshTimeout {
    /// `virsh migrate --timeout <secs>`.
    pub fn new(timeout: Duration) -> Self {
        VirshTimeout {
            timeout,
            suspended: false,
        }
    }
}

impl Policy for VirshTimeout {
    /// virsh watches the job on a half-second poll.
    fn wait(&self) -> Duration {
        Duration::from_millis(500)
    }

    fn on_poll(&mut self, elapsed: Duration, _stats: &Value) -> Vec<Act> {
        if elapsed >= self.timeout && !self.suspended {
            self.suspended = true;
            return vec![Act::Suspend];
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspends_once_after_the_timeout() {
        let mut v = VirshTimeout::new(Duration::from_secs(30));
        assert!(v.on_poll(Duration::from_secs(29), &Value::Null).is_empty());
        assert_eq!(
            v.on_poll(Duration::from_secs(30), &Value::Null),
            vec![Act::Suspend]
        );
        assert!(v.on_poll(Duration::from_secs(31), &Value::Null).is_empty());
    }
}
