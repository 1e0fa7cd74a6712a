//! SIGINT and SIGTERM become a request to cancel, not an exit: the engine then cancels
//! the migration and makes sure the source runs before the process ends. A second
//! signal does not skip that.

use tokio::sync::watch;

/// A receiver that turns `true` on the first SIGINT or SIGTERM.
pub fn watch_interrupts() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        loop {
            let terminated = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                r = tokio::signal::ctrl_c() => if r.is_err() { return; },
                _ = terminated => {}
            }
            eprintln!("vfio-migrate: interrupted: cancelling the migration and making sure the source runs");
            let _ = tx.send(true);
        }
    });
    rx
}
