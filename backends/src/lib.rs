//! # vfio-migrate backends
//!
//! Adapters the engine drives. Backends report facts and carry out requests; they never
//! decide.
//!
//! - [`qmp`]: a QMP client that owns its framing (length-limited lines, events it does
//!   not know delivered raw) and uses `qapi-qmp`'s types.
//! - [`qemu`]: the engine's driver over two QEMU monitors.
//! - [`open`]: the one place that picks the driver a plan names.

pub mod devmodel;
mod open;
pub mod qemu;
pub mod qmp;
pub mod sim;

pub use open::open;
