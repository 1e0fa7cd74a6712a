//! What the outside world may ask of a run while it goes on: to stop (the operator's
//! interrupt), and, when several migrations share one link, to keep its stream within a
//! share of a bandwidth budget that changes as the others start and finish.
//!
//! The share is a pair of watch channels: the budget's holder says what the share is,
//! the run says what it has put into force. The holder waits for the second before it
//! hands bandwidth to another migration, so the shares in force never add up to more
//! than the budget.

use tokio::sync::watch;

/// A run's controls.
#[derive(Debug)]
pub struct Controls {
    /// Becomes `true` when the operator interrupts: cancel, the VM stays on the source.
    pub interrupt: watch::Receiver<bool>,
    /// The run's share of a bandwidth budget; `None` keeps the plan's own cap.
    pub bandwidth: Option<BandwidthShare>,
}

impl From<watch::Receiver<bool>> for Controls {
    fn from(interrupt: watch::Receiver<bool>) -> Self {
        Controls {
            interrupt,
            bandwidth: None,
        }
    }
}

/// The run's end of a bandwidth share.
#[derive(Debug)]
pub struct BandwidthShare {
    wanted: watch::Receiver<u64>,
    in_force: watch::Sender<u64>,
}

/// The budget holder's end of a bandwidth share.
#[derive(Debug)]
pub struct ShareHandle {
    wanted: watch::Sender<u64>,
    in_force: watch::Receiver<u64>,
}

/// A share put in force, as the run's notes say it (`words.rs`).
pub(crate) struct ShareInForce(pub(crate) u64);

/// A share of `initial` bytes/s: the holder's end and the run's.
pub fn share(initial: u64) -> (ShareHandle, BandwidthShare) {
    let (wanted_tx, wanted_rx) = watch::channel(initial);
    let (in_force_tx, in_force_rx) = watch::channel(0);
    (
        ShareHandle {
            wanted: wanted_tx,
            in_force: in_force_rx,
        },
        BandwidthShare {
            wanted: wanted_rx,
            in_force: in_force_tx,
        },
    )
}

impl BandwidthShare {
    /// The share asked for now, bytes/s; marks it seen.
    pub(crate) fn take(&mut self) -> u64 {
        *self.wanted.borrow_and_update()
    }

    /// Whether the share changed since it was last taken.
    pub(crate) fn is_changed(&self) -> bool {
        self.wanted.has_changed().unwrap_or(false)
    }

    /// Waits until the share changes; never returns once the holder is gone.
    pub(crate) async fn changed(&mut self) {
        if self.wanted.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Says that the migration's cap is now `bytes_per_sec` (0: no migration runs).
    pub(crate) fn put_in_force(&self, bytes_per_sec: u64) {
        self.in_force.send_replace(bytes_per_sec);
    }
}

impl Drop for BandwidthShare {
    /// A run that is over sends nothing: its share is free.
    fn drop(&mut self) {
        self.in_force.send_replace(0);
    }
}

impl ShareHandle {
    /// Asks the run to keep within `bytes_per_sec` from now on.
    pub fn set(&self, bytes_per_sec: u64) {
        self.wanted.send_replace(bytes_per_sec);
    }

    /// The share asked for.
    pub fn wanted(&self) -> u64 {
        *self.wanted.borrow()
    }

    /// The cap the run has put into force (0: its migration has not started, or is over).
    pub fn in_force(&self) -> u64 {
        *self.in_force.borrow()
    }

    /// Waits until what is in force is at most what is asked for (or nothing is), or
    /// `patience` passed; says whether it got there.
    pub async fn settled(&mut self, patience: std::time::Duration) -> bool {
        let wanted = self.wanted();
        tokio::time::timeout(patience, self.in_force.wait_for(|now| *now <= wanted))
            .await
            .is_ok_and(|r| r.is_ok())
            || self.in_force() <= wanted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_holder_learns_what_the_run_put_in_force() {
        let (mut holder, mut run) = share(100);
        assert_eq!(run.take(), 100);
        run.put_in_force(100);
        holder.set(40);
        assert!(run.is_changed());
        assert!(
            !holder.settled(Duration::from_millis(20)).await,
            "100 in force is more than the 40 asked for"
        );
        assert_eq!(run.take(), 40);
        run.put_in_force(40);
        assert!(holder.settled(Duration::from_millis(20)).await);
    }

    #[tokio::test]
    async fn a_run_that_ended_frees_its_share() {
        let (mut holder, run) = share(100);
        run.put_in_force(100);
        holder.set(10);
        drop(run);
        assert!(holder.settled(Duration::from_millis(20)).await);
        assert_eq!(holder.in_force(), 0);
    }
}
