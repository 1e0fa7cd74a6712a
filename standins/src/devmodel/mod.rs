//! A VFIO device model layered over a real QEMU: a QMP proxy.
//!
//! This machine has QEMU and KVM but no VFIO hardware. The proxy sits between a QMP
//! client (the tool under test) and a real QEMU's monitor, passes every line through
//! verbatim, and adds what `vfio-pci` devices would add if QEMU had them:
//!
//! - **QOM**: the devices appear under `/machine/peripheral` as `child<vfio-pci>`, and
//!   `qom-list`/`qom-get`/`qom-set` on them answer as QEMU does (including its refusal
//!   to set `migration-events` after realize, unless a device allows it).
//! - **`VFIO_MIGRATION` events**, in step with QEMU's own `MIGRATION`, `STOP` and
//!   `RESUME` events and placed where QEMU emits them (device callbacks that run before
//!   `STOP` appear before it). The transitions are [`crate::vfio`]'s; `state.rs` decides
//!   when each happens from what QEMU says.
//! - **`query-migrate`** gains `vfio.transferred` on the source.
//! - **Stop-copy time**: with `pause-before-switchover`, the client's `migrate-continue`
//!   is answered at once but QEMU only gets it after the device state has drained at
//!   the configured link speed, so the modelled state really lengthens the guest pause.
//! - **`device_del`** of a modelled device, and **faults** ([`crate::vfio::Fault`]).
//!
//! A QEMU QMP socket serves one client at a time, so the proxy holds the one connection
//! to QEMU and multiplexes its clients over it (see `hub.rs`): commands go up with ids of
//! the proxy's own and replies come back with the client's id restored; QEMU's events go
//! to every client. The same connection carries the proxy's own commands (cancelling a
//! migration a device failed, releasing a held stop-copy, polling `query-migrate` when
//! the `events` capability is off). The greeting clients get offers no `oob`.
//!
//! Deviations from a plain byte-for-byte pipe, all forced by the sharing: forwarded
//! commands are re-serialised (with the proxy's id); replies are re-serialised (with the
//! client's id); client input that is not a JSON command is answered by the proxy with
//! QEMU's error; `qmp_capabilities` is answered by the proxy; file descriptors a client
//! sends (`SCM_RIGHTS`, e.g. libvirt's `getfd`) go to QEMU with that client's next
//! forwarded command; a line longer than
//! [`backends::qmp::MAX_LINE_BYTES`] closes the connection it came on. Events are forwarded
//! byte for byte unless the model rewrites them.
//!
//! Under libvirt, which owns its QEMUs' monitors, the proxy goes in as the domain's
//! `<emulator>`: see [`emulator`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), standins::devmodel::DevModelError> {
//! use standins::devmodel::{Proxy, ProxyConfig, Role};
//! use standins::vfio::ModelDevice;
//!
//! let proxy = Proxy::start(ProxyConfig {
//!     upstream: "/run/vm/src.qmp".into(),
//!     listen: "/run/vm/src-vfio.qmp".into(),
//!     role: Role::Source,
//!     devices: vec![ModelDevice { precopy: true, state_size: 64 << 20, ..ModelDevice::new("gpu0") }],
//!     link_bytes_per_sec: 128 << 20,
//! })
//! .await?;
//! // ... point the tool at /run/vm/src-vfio.qmp, migrate ...
//! for (device, state, at) in proxy.timeline() {
//!     println!("{device} {state} {at:?}");
//! }
//! # Ok(())
//! # }
//! ```

mod config;
pub mod emulator;
mod fdpass;
mod hub;
mod proxy;
mod qom;
mod rewrite;
mod state;

use std::io;
use std::path::PathBuf;

pub use config::{ProxyConfig, Role};
pub use proxy::Proxy;

/// Why a [`Proxy`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum DevModelError {
    /// The configuration is unusable (e.g. duplicate device ids, zero link speed).
    #[error("invalid device model configuration: {0}")]
    Config(String),
    /// The listening socket could not be created.
    #[error("cannot listen on {}: {source}", path.display())]
    Listen {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The real QEMU's monitor could not be reached or did not behave as QMP.
    #[error("upstream QMP monitor {}: {detail}", path.display())]
    Upstream {
        /// The monitor's socket path.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}
