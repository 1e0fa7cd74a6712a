//! Starts two private libvirt daemons with the guest running as a domain on the first, and
//! keeps them until stdin closes (or Enter), printing their URIs and the serial logs: for
//! trying libvirt migrations by hand (root only).
//!
//! `cargo run -p vfio-migrate-rig --example libvirt_pair -- [wss_mb] [rate_mb]`, then e.g.
//! `virsh -c <source> migrate --live --p2p --verbose rig-guest <destination>`.

use std::io::BufRead;

use rig::{GuestParams, LibvirtPair, LibvirtPairOptions};

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
    let pair = LibvirtPair::start(&LibvirtPairOptions {
        guest,
        ..LibvirtPairOptions::default()
    })?;
    println!("accel {:?}", pair.accel);
    println!("domain      {}", pair.domain());
    println!(
        "source      {} serial {}",
        pair.source.uri(),
        pair.source_serial_log().display()
    );
    println!(
        "destination {} serial {}",
        pair.destination.uri(),
        pair.destination_serial_log().display()
    );
    println!("press Enter (or close stdin) to stop both daemons and the domain");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(())
}
