//! One run per VM: an exclusive lock on a file per monitor, taken before anything is
//! contacted. The kernel releases it when the holder dies, however it dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Locks held for one VM; released on drop (or when the process dies).
#[derive(Debug)]
pub struct VmLock {
    _files: Vec<File>,
}

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum Held {
    /// Another process holds it.
    #[error("another vfio-migrate run (pid {pid}) holds {path}: it drives the same VM's monitors")]
    ByOther {
        /// The holder's pid, as it wrote it (`?` when unreadable).
        pid: String,
        /// The lock file.
        path: PathBuf,
    },
    /// The lock file could not be used.
    #[error("cannot use the lock file {path}: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl VmLock {
    /// Takes every key's lock at once, or none: refuses at once when another process
    /// holds one.
    pub fn acquire(dir: &Path, keys: &[String]) -> Result<VmLock, Held> {
        Self::acquire_within(dir, keys, Duration::ZERO)
    }

    /// As [`VmLock::acquire`], retrying for up to `patience` (the guardian waits for the
    /// run it watches to let go).
    pub fn acquire_within(dir: &Path, keys: &[String], patience: Duration) -> Result<VmLock, Held> {
        let locks = super::subdir(dir, "locks").map_err(|source| Held::Io {
            path: dir.join("locks"),
            source,
        })?;
        let deadline = Instant::now() + patience;
        let mut files = Vec::new();
        for key in keys {
            let path = locks.join(format!("{key}.lock"));
            files.push(lock_one(&path, deadline)?);
        }
        Ok(VmLock { _files: files })
    }
}

fn lock_one(path: &Path, deadline: Instant) -> Result<File, Held> {
    let io = |source| Held::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(Held::ByOther {
                    pid: if pid.is_empty() {
                        "?".into()
                    } else {
                        pid.to_string()
                    },
                    path: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
    }
    file.set_len(0).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    writeln!(file, "{}", std::process::id()).map_err(io)?;
    file.flush().map_err(io)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_and_gets_it_once_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = vec!["src".to_string(), "dst".to_string()];
        let first = VmLock::acquire(dir.path(), &keys).expect("first lock");
        // A second open file description of the same file is a second holder, as
        // another process would be.
        match VmLock::acquire(dir.path(), &keys[1..]) {
            Err(Held::ByOther { pid, .. }) => assert_eq!(pid, std::process::id().to_string()),
            other => panic!("expected the lock to be held, got {other:?}"),
        }
        drop(first);
        VmLock::acquire(dir.path(), &keys).expect("free again");
    }
}
