//! What can go wrong starting the rig.

use std::path::PathBuf;

/// A rig failure, naming the side and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// The temporary directory or a file in it could not be made.
    #[error("rig: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU could not be started.
    #[error("rig: cannot start {side} QEMU ({command}): {source}")]
    Spawn {
        /// `source` or `destination`.
        side: String,
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited or did not get ready in time.
    #[error("rig: {side} QEMU: {detail} (serial log {log})")]
    NotReady {
        /// `source` or `destination`.
        side: String,
        /// What did not happen.
        detail: String,
        /// The serial log, for the guest's side of the story.
        log: PathBuf,
    },
    /// No accelerator and CPU model booted the guest.
    #[error("rig: the guest booted with no accelerator tried: {tried}")]
    NoAccelerator {
        /// What was tried, with each failure.
        tried: String,
    },
}
