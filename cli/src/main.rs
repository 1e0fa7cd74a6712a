//! `vfio-migrate`: live-migrate QEMU/KVM VMs that own VFIO devices, driven by a plan.

use clap::Parser;

fn main() {
    let cli = vfio_migrate::args::Cli::parse();
    std::process::exit(vfio_migrate::run(cli));
}
