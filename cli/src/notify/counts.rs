//! What became of each delivery, counted as it happens from every thread that sends or
//! delivers, and summed into the report's [`NotifyCounts`] at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use engine::report::NotifyCounts;

/// One count per event and URL.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Queued for a URL.
    accepted: AtomicU64,
    sent: AtomicU64,
    failed: AtomicU64,
    /// Never tried: left out at a full queue (never accepted), or still queued when the
    /// progress grace ran out (accepted).
    dropped: AtomicU64,
    /// Of `dropped`, those that had been accepted.
    abandoned: AtomicU64,
}

impl Counts {
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }

    /// Left out before it was queued.
    pub(crate) fn left_out(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Queued, then given up before it was tried.
    pub(crate) fn abandoned(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.abandoned.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far. A delivery accepted but neither sent, failed nor abandoned was
    /// still under way when its task was stopped: it counts as failed.
    pub(crate) fn total(&self) -> NotifyCounts {
        let sent = self.sent.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let abandoned = self.abandoned.load(Ordering::Relaxed);
        let accepted = self.accepted.load(Ordering::Relaxed);
        let unfinished = accepted.saturating_sub(sent + failed + abandoned);
        NotifyCounts {
            sent,
            failed: failed + unfinished,
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_still_under_way_at_the_end_counts_as_failed() {
        let counts = Counts::default();
        for _ in 0..4 {
            counts.accepted();
        }
        counts.sent();
        counts.abandoned();
        counts.left_out();
        assert_eq!(
            counts.total(),
            NotifyCounts {
                sent: 1,
                failed: 2,
                dropped: 2
            }
        );
    }
}
