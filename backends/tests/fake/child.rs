//! Runs a test case in a child process (this test binary again, filtered to one entry
//! test) and measures it from outside: its exit, its wall time, and its peak resident
//! memory as the kernel counts it (`wait4`'s `ru_maxrss`). Tests in one binary share a
//! process, so a peak measured in-process would count other tests' buffers too.
//! `ru_maxrss` also counts the image the child was spawned from (this test process,
//! a few MiB), so the figure is an upper bound on the case's own peak.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable that tells the entry test which case to run.
pub const CASE: &str = "VFIO_MIGRATE_TEST_CASE";

/// How a child run went.
#[derive(Debug)]
pub struct Measured {
    /// Whether it exited with status 0.
    pub passed: bool,
    /// Its peak resident set size, in KiB.
    pub peak_rss_kib: u64,
    /// How long it ran.
    pub elapsed: Duration,
    /// What it printed (stdout and stderr).
    pub output: String,
}

/// Runs `entry` (an `#[ignore]`d test of this binary) in a child with [`CASE`] set to
/// `case`, and waits for it.
// The child is reaped by `wait`, with wait4 for its resource usage, not by `Child::wait`.
#[allow(clippy::zombie_processes)]
pub fn run(entry: &str, case: &str) -> Measured {
    let exe = std::env::current_exe().expect("this test binary");
    let log = tempfile::NamedTempFile::new().expect("a log file");
    let out = log.reopen().expect("log for stdout");
    let err = log.reopen().expect("log for stderr");
    let started = Instant::now();
    let child = Command::new(exe)
        .args(["--exact", entry, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CASE, case)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("start the child");
    let (passed, peak_rss_kib) = wait(child.id());
    let elapsed = started.elapsed();
    let mut output = String::new();
    File::open(log.path())
        .and_then(|mut f| f.read_to_string(&mut output))
        .expect("read the child's output");
    Measured {
        passed,
        peak_rss_kib,
        elapsed,
        output,
    }
}

/// Reaps the child; whether it exited 0, and its peak RSS in KiB.
fn wait(pid: u32) -> (bool, u64) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    let mut status: libc::c_int = 0;
    // SAFETY: both pointers are to live, writable locals of the types wait4 expects; the
    // child is ours and nothing else reaps it (std's `Child` does not on drop).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let passed = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    // Linux reports ru_maxrss in KiB.
    (passed, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}
