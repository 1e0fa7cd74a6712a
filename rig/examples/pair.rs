//! Starts a pair and keeps it until stdin closes (or Enter), printing where its sockets,
//! logs and migration port are: for trying migrations by hand with a QMP client.
//!
//! `cargo run -p vfio-migrate-rig --example pair -- [wss_mb] [rate_mb]`

use std::io::BufRead;

use rig::{GuestParams, PairOptions, QemuPair};

fn arg(n: usize, default: u32) -> Result<u32, String> {
    match std::env::args().nth(n) {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e| format!("argument {n} ({s:?}): {e}")),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guest = GuestParams {
        wss_mb: arg(1, 256)?,
        rate_mb: arg(2, 50)?,
    };
    let pair = QemuPair::start(&PairOptions {
        guest,
        ..PairOptions::default()
    })?;
    println!("accel {:?}", pair.accel);
    println!(
        "source      qmp {} serial {}",
        pair.source.qmp_socket.display(),
        pair.source.serial_log.display()
    );
    println!(
        "destination qmp {} serial {}",
        pair.destination.qmp_socket.display(),
        pair.destination.serial_log.display()
    );
    println!("migration   tcp:127.0.0.1:{}", pair.migration_port);
    println!("press Enter (or close stdin) to kill both QEMUs");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}
