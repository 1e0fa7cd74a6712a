//! A QMP (QEMU Machine Protocol) client.
//!
//! Uses `qapi-qmp`'s command, return and event types, but does its own framing and
//! dispatch: lines are length-limited, every message is decoded as plain JSON
//! first, and events the crate cannot decode (newer QEMUs, new enum values) are
//! still delivered, raw. A reply nobody waits for is ignored, never fatal.
//!
//! ```no_run
//! # async fn demo() -> Result<(), backends::qmp::QmpError> {
//! use std::time::Duration;
//! use backends::qmp::{QmpClient, QmpEndpoint};
//!
//! let endpoint = QmpEndpoint::Unix("/run/vm/src.qmp".into());
//! let client = QmpClient::connect(&endpoint, "source", Duration::from_secs(5)).await?;
//! let status = client.execute(qapi_qmp::query_status {}).await?;
//! println!("{} is {:?}", client.peer(), status.status);
//! # Ok(())
//! # }
//! ```

mod client;
mod connection;
mod endpoint;
mod envelope;
mod error;
mod event;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod greeting;

pub use client::{QmpClient, DEFAULT_COMMAND_TIMEOUT};
pub use endpoint::{QmpEndpoint, QmpPeer};
pub use error::{Noise, QmpError};
pub use event::QmpEvent;
pub use greeting::{Greeting, QemuVersion};

/// The longest line accepted from a monitor (4 MiB). A longer one is a protocol
/// error that closes the connection; the client never buffers more than this.
///
/// The largest reply QEMU 10 gives is `query-qmp-schema` (about 230 KiB); what this
/// tool reads is a few KiB. A line is held up to four times while it is read, split and
/// decoded, so this bound keeps a hostile monitor's cost to the process near 16 MiB.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;
