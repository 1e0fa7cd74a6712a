//! SIGINT, SIGTERM and SIGHUP become a request to cancel, not an exit: the engine then
//! cancels the migration and makes sure the source runs before the process ends. A
//! closed terminal (SIGHUP, an SSH session dropped) is treated like SIGTERM. A second
//! signal does not skip the cleanup; it is told to wait.

use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::watch;

/// A receiver that turns `true` on the first SIGINT, SIGTERM or SIGHUP.
pub fn watch_interrupts() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = signal(SignalKind::terminate()).ok();
        let mut hup = signal(SignalKind::hangup()).ok();
        let mut first = true;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return; },
                _ = next(&mut term) => {}
                _ = next(&mut hup) => {}
            }
            match first {
                true => eprintln!(
                    "vfio-migrate: interrupted: cancelling the migration and making sure the source runs"
                ),
                false => eprintln!("vfio-migrate: cleaning up, please wait (the source is being made safe)"),
            }
            first = false;
            let _ = tx.send(true);
        }
    });
    rx
}

/// The next delivery of a signal this process could register; never, when it could not.
async fn next(signal: &mut Option<Signal>) {
    match signal.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}
