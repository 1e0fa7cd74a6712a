//! # vfio-migrate stand-ins
//!
//! **A test bench, not part of the product.** It holds stand-ins for VFIO hardware,
//! which this project's machines do not have, and, for fast tests, for QEMU itself. The
//! product's `migrate` path never uses this crate; only tests and the `demo` command
//! (which says when it uses a stand-in) depend on it.
//!
//! - [`sim`]: a simulated hypervisor pair, a second [`engine::Driver`] that needs no
//!   QEMU; with tokio's paused clock a minute-long migration runs in milliseconds.
//! - [`devmodel`]: a QMP proxy over a real QEMU that adds modelled VFIO devices (QOM
//!   entries, `VFIO_MIGRATION` events in QEMU's order, faults).
//! - [`vfio`]: what both share: the modelled device, its faults, and the one VFIO
//!   migration state machine (QEMU 10's `hw/vfio/migration.c` transitions).
//!
//! Real adapters (the QMP client, the QEMU driver) live in `backends`; the stand-ins
//! build on them, never the other way round.

pub mod devmodel;
pub mod sim;
pub mod vfio;
