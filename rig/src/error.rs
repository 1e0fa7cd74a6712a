//! What can go wrong starting the rig.

use std::path::PathBuf;

/// A rig failure, naming the side and what was being done.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// The options ask for something the guest cannot do.
    #[error("rig: invalid options: {0}")]
    Options(String),
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
    #[error("rig: cannot start the {side} QEMU ({command}): {source}")]
    Spawn {
        /// `source`, `destination` or `probe`.
        side: String,
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited, or it or the guest did not get ready in time.
    #[error("rig: {side} QEMU: {detail} (serial log {log}; command: {command})")]
    NotReady {
        /// `source`, `destination` or `probe`.
        side: String,
        /// What did not happen, and how QEMU ended if it did.
        detail: String,
        /// The serial log, for the guest's side of the story.
        log: PathBuf,
        /// The command line.
        command: String,
    },
    /// No accelerator and CPU model booted the guest.
    #[error("rig: no accelerator and CPU model booted the guest; tried: {tried}")]
    NoAccelerator {
        /// Each candidate with its failure.
        tried: String,
    },
    /// libvirt cannot run here at all (not installed, or not root): a test may say it is
    /// skipped, unless `CI_REQUIRE_LIBVIRT=1` says that it must run.
    #[error("rig: libvirt is not usable here: {why}")]
    LibvirtUnavailable {
        /// What is missing.
        why: String,
    },
    /// A libvirt daemon did not start or answer, or its domain did not boot.
    #[error("rig: {side} libvirtd: {detail}\n{diagnostics}")]
    Libvirt {
        /// `source` or `destination`.
        side: String,
        /// What did not happen.
        detail: String,
        /// The tails of the daemon's own log, its stderr and the domain's QEMU log.
        diagnostics: String,
    },
    /// A `virsh` command failed.
    #[error("rig: `{command}` failed ({status}): {stderr}")]
    Virsh {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// What it said.
        stderr: String,
    },
}

/// Wraps an I/O error with what was being done.
pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RigError {
    let what = what.into();
    move |source| RigError::Io { what, source }
}
