//! `vfio-migrate`: live-migrate QEMU/KVM VMs that own VFIO devices, driven by a plan.

use std::ffi::OsString;

use clap::Parser;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    // `try_parse_from` rather than `parse`: a refused command line must still answer in
    // JSON when JSON was asked for, and clap's own exit would print only text.
    let code = match vfio_migrate::args::Cli::try_parse_from(&args) {
        Ok(cli) => vfio_migrate::run(cli),
        Err(error) => vfio_migrate::exit::clap_error(&error, &args),
    };
    std::process::exit(code);
}
