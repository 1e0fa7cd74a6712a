//! # vfio-migrate backends
//!
//! Adapters the engine drives. Backends report facts and carry out requests; they never
//! decide.
//!
//! - [`qmp`]: a QMP client that owns its framing (length-limited lines, events it does
//!   not know delivered raw) and uses `qapi-qmp`'s types.
//! - [`qemu`]: the engine's driver over two QEMU monitors.
//! - [`open`]: the one place that picks the driver a plan names.
//!
//! Only real adapters belong here. The stand-ins for hardware this project's machines
//! lack (the simulated pair, the VFIO device model) are the test bench's, in the
//! `vfio-migrate-standins` crate.

mod open;
pub mod qemu;
pub mod qmp;

pub use open::open;
