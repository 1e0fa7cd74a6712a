//! What the tool keeps on the machine it runs on between runs: a lock per VM, so two runs
//! never drive the same monitors, and a journal per VM, so that whoever comes after a run
//! that died (the guardian, `recover`, the next run) knows what it changed.
//!
//! Everything lives under one directory: `--state-dir`, else `$VFIO_MIGRATE_STATE_DIR`,
//! else `/var/lib/vfio-migrate` for root and `$XDG_STATE_HOME/vfio-migrate` (or
//! `~/.local/state/vfio-migrate`) for others. It is created with mode 0700; its files
//! are 0600.

mod journal;
mod lock;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use plans::Plan;

pub use journal::{Journal, JournalRecord, JournalSink};
pub use lock::{Held, VmLock};

/// The state directory the command line, the environment and the user name.
pub fn state_dir(flag: Option<&Path>) -> PathBuf {
    if let Some(dir) = flag {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os("VFIO_MIGRATE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if effective_uid_is_root() {
        return PathBuf::from("/var/lib/vfio-migrate");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("vfio-migrate")
}

/// Whether this process runs as root, read from `/proc` (no `unsafe` for `geteuid`).
fn effective_uid_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Creates `dir/sub` (mode 0700) and returns it.
pub(crate) fn subdir(dir: &Path, sub: &str) -> std::io::Result<PathBuf> {
    let path = dir.join(sub);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    Ok(path)
}

/// The names a plan's VM is known by on its hosts: one per monitor. Two plans that
/// share a monitor share a lock.
pub fn vm_keys(plan: &Plan) -> Vec<String> {
    vec![
        file_key(&plan.source.to_string()),
        file_key(&plan.destination.endpoint.to_string()),
    ]
}

/// The key of the VM's journal: its source monitor, where the VM lives before it moves.
pub fn journal_key(plan: &Plan) -> String {
    file_key(&plan.source.to_string())
}

/// A file name for an endpoint: readable where it can be, unique through a stable hash.
fn file_key(endpoint: &str) -> String {
    let readable: String = endpoint
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let tail: String = readable
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{tail}-{:016x}", fnv1a(endpoint.as_bytes()))
}

/// FNV-1a, 64 bits: stable across builds and versions, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_distinct_and_safe_as_file_names() {
        let a = file_key("unix:/run/vm/a.qmp");
        assert_eq!(a, file_key("unix:/run/vm/a.qmp"));
        assert_ne!(a, file_key("unix:/run/vm/b.qmp"));
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{a}"
        );
        assert!(a.starts_with("unix__run_vm_a_qmp-"), "{a}");
    }
}
