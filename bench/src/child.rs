//! Runs the `vfio-migrate` binary on a plan and measures it with `wait4`.

#![allow(unsafe_code)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "hwm.rs"]
mod hwm;

/// One measured run.
pub struct Measured {
    pub code: i32,
    pub report: Value,
    pub wall: Duration,
    pub cpu: Duration,
    /// `ru_maxrss` from `wait4`: KiB on Linux, the largest of the child and of the
    /// descendants it waited for (the guardian, which the run reaps).
    pub max_rss_kib: i64,
    /// The run's own peak, `VmHWM` from `/proc/PID/status`, read until it exits.
    #[allow(dead_code)] // the streams benchmark prints only `ru_maxrss`
    pub hwm_kib: Option<u64>,
    /// The guardian's peak, read the same way.
    #[allow(dead_code)] // the streams benchmark prints only `ru_maxrss`
    pub guardian_hwm_kib: Option<u64>,
    /// The run's largest `RssAnon` seen: its own heap and stacks, without the shared
    /// libraries' pages that `VmHWM` counts.
    #[allow(dead_code)] // the streams benchmark prints only `ru_maxrss`
    pub anon_kib: Option<u64>,
    /// The guardian's, read the same way.
    #[allow(dead_code)] // the streams benchmark prints only `ru_maxrss`
    pub guardian_anon_kib: Option<u64>,
    /// The most threads the run had at once.
    #[allow(dead_code)] // the streams benchmark prints only `ru_maxrss`
    pub threads: Option<u64>,
}

pub fn run(bin: &Path, dir: &Path, plan: &str) -> Measured {
    let path = dir.join("plan.toml");
    if let Err(e) = std::fs::write(&path, plan) {
        eprintln!("bench: cannot write plan: {e}");
        std::process::exit(1);
    }
    run_args(bin, dir, &[path.as_os_str()])
}

/// Runs the binary with `--output json --quiet` and then `args`, with its state under
/// `dir`.
pub fn run_args(bin: &Path, dir: &Path, args: &[&std::ffi::OsStr]) -> Measured {
    let started = Instant::now();
    let child = Command::new(bin)
        // Locks and journals stay with the pair, not in the machine's state directory.
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .args(["--output", "json", "--quiet"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bench: cannot start {}: {e}", bin.display());
            std::process::exit(1);
        }
    };
    let peaks = hwm::watch(child.id());
    let mut stdout = String::new();
    if let Some(mut out) = child.stdout.take() {
        use std::io::Read;
        let _ = out.read_to_string(&mut stdout);
    }
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value for this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped (std's Child never waited on it);
    // `status` and `usage` are valid, writable out-pointers for the call's duration.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    let peaks = peaks.join().unwrap_or_default();
    let code = if rc == pid && libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Measured {
        code,
        report: serde_json::from_str(&stdout).unwrap_or(Value::Null),
        wall,
        cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        max_rss_kib: usage.ru_maxrss,
        hwm_kib: peaks.run,
        guardian_hwm_kib: peaks.guardian,
        anon_kib: peaks.run_anon,
        guardian_anon_kib: peaks.guardian_anon,
        threads: peaks.threads,
    }
}

/// Runs `check` on a plan and returns its JSON answer (`Null` when there is none).
pub fn check(bin: &Path, dir: &Path, plan: &str) -> Value {
    let path = dir.join("check-plan.toml");
    if let Err(e) = std::fs::write(&path, plan) {
        eprintln!("bench: cannot write plan: {e}");
        std::process::exit(1);
    }
    let out = Command::new(bin)
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .args(["--output", "json", "check"])
        .arg(&path)
        .stderr(Stdio::inherit())
        .output();
    match out {
        Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        Err(e) => {
            eprintln!("bench: cannot start {}: {e}", bin.display());
            std::process::exit(1);
        }
    }
}
