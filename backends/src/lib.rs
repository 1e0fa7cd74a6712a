//! # vfio-migrate backends
//!
//! Adapters the engine drives. Backends report facts and carry out requests; they never
//! decide.
//!
//! - [`qmp`]: a QMP client that owns its framing (length-limited lines, events it does
//!   not know delivered raw) and uses `qapi-qmp`'s types.
//! - [`qemu`]: the engine's driver over two QEMU monitors.
//! - [`open`]: the one place that picks the driver a plan names.
//! - [`host`]: host probes for `vfio-migrate check`, read from sysfs and `/dev` under a
//!   root directory:
//!   - [`host::Host::new`]`(root: PathBuf) -> Host`;
//!   - [`host::host_rows`]`(&Host) -> Vec<Row>`: is this host ready to send or receive
//!     VFIO migrations at all (`check --host`);
//!   - [`host::device_rows`]`(&Host, plan_id: &str, address: &str) -> (Vec<Row>, DeviceHost)`:
//!     one device of a plan on this host, and what was read about it;
//!   - [`host::compare_across_hosts`]`(&DeviceHost, &DeviceHost) -> Option<Row>`: a
//!     vGPU's driver version, board and type on both hosts.
//!
//! Only real adapters belong here. The stand-ins for hardware this project's machines
//! lack (the simulated pair, the VFIO device model) are the test bench's, in the
//! `vfio-migrate-standins` crate.

pub mod host;
pub mod libvirt;
mod open;
pub mod qemu;
pub mod qmp;

pub use open::open;
