//! Hostile monitors through the real binary: whatever a monitor does, `vfio-migrate
//! --output json` prints one valid JSON report, exits with the documented code, names
//! the side, and stays under 64 MiB of resident memory (measured by the kernel, with
//! `wait4`). The full set of hostile cases runs against the driver in
//! `backends/tests/hostile_monitors.rs`; these two show the binary's end of it.

#![allow(unsafe_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": "fake"}, "capabilities": ["oob"]}}"#;
const BUDGET_KIB: u64 = 64 * 1024;
/// The binary's own bound on connecting to a monitor and on each command.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A fake monitor at `dir/name` whose peer side runs `script` on the first connection.
fn fake(
    dir: &Path,
    name: &str,
    script: impl FnOnce(BufReader<UnixStream>, UnixStream) + Send + 'static,
) -> PathBuf {
    let path = dir.join(name);
    let listener = UnixListener::bind(&path).expect("bind");
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            let reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            script(reader, stream);
        }
    });
    path
}

/// Holds the connection without a word until the client leaves.
fn silent(mut reader: BufReader<UnixStream>, _out: UnixStream) {
    let mut sink = Vec::new();
    let _ = reader.read_to_end(&mut sink);
}

/// Greets, then answers every command with an error.
fn refuses_everything(reader: BufReader<UnixStream>, mut out: UnixStream) {
    if writeln!(out, "{GREETING}").is_err() {
        return;
    }
    for line in reader.lines() {
        let Ok(line) = line else { return };
        let command: Value = serde_json::from_str(&line).unwrap_or_default();
        let desc = format!("{} is not allowed here", command["execute"]);
        let reply = json!({"id": command["id"], "error": {"class": "GenericError", "desc": desc}});
        if writeln!(out, "{reply}").is_err() {
            return;
        }
    }
}

/// Greets and accepts `qmp_capabilities`, answering anything else with `{}`.
fn greets(reader: BufReader<UnixStream>, mut out: UnixStream) {
    if writeln!(out, "{GREETING}").is_err() {
        return;
    }
    for line in reader.lines() {
        let Ok(line) = line else { return };
        let command: Value = serde_json::from_str(&line).unwrap_or_default();
        if writeln!(out, "{}", json!({"return": {}, "id": command["id"]})).is_err() {
            return;
        }
    }
}

/// How the binary ended.
struct Run {
    code: i32,
    report: Value,
    peak_rss_kib: u64,
    /// This test process's own peak when it started the binary: `ru_maxrss` counts the
    /// image a child was spawned from too, so the binary's figure is at least this.
    spawned_from_kib: u64,
    elapsed: Duration,
}

impl Run {
    /// The binary stayed under the budget.
    fn assert_small(&self) {
        assert!(
            self.peak_rss_kib < BUDGET_KIB,
            "peak RSS {} KiB, over {BUDGET_KIB} KiB (spawned from a test process at {} KiB)",
            self.peak_rss_kib,
            self.spawned_from_kib
        );
    }
}

/// This process's peak resident memory so far (`VmHWM`), in KiB.
fn own_peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|kib| kib.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `vfio-migrate --output json` on a plan for these two monitors.
// The child is reaped by `wait`, with wait4 for its resource usage, not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run(dir: &Path, source: &Path, destination: &Path) -> Run {
    let plan = dir.join("plan.toml");
    let text = format!(
        "[vm]\nname = \"vm\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\n[migration]\nuri = \"tcp:127.0.0.1:1\"\n",
        source.display(),
        destination.display()
    );
    std::fs::write(&plan, text).expect("write the plan");
    let stdout = dir.join("stdout");
    let stderr = dir.join("stderr");
    let started = Instant::now();
    let spawned_from_kib = own_peak_rss_kib();
    let child = Command::new(env!("CARGO_BIN_EXE_vfio-migrate"))
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .args(["--output", "json"])
        .arg(&plan)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("start vfio-migrate");
    let (code, peak_rss_kib) = wait(child.id());
    let elapsed = started.elapsed();
    let out = std::fs::read(&stdout).expect("read stdout");
    let err = String::from_utf8_lossy(&std::fs::read(&stderr).unwrap_or_default()).into_owned();
    let report: Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON report ({e}):\n{}\nstderr:\n{err}",
            String::from_utf8_lossy(&out)
        )
    });
    println!(
        "exit {code}, peak RSS {peak_rss_kib} KiB (test process {spawned_from_kib} KiB), {elapsed:?}\n{report:#}"
    );
    Run {
        code,
        report,
        peak_rss_kib,
        spawned_from_kib,
        elapsed,
    }
}

/// Reaps the child; its exit code (-1 when killed by a signal) and peak RSS in KiB.
fn wait(pid: u32) -> (i32, u64) {
    let pid = libc::pid_t::try_from(pid).expect("a pid");
    let mut status: libc::c_int = 0;
    // SAFETY: both pointers are to live, writable locals of the types wait4 expects; the
    // child is ours and nothing else reaps it (std's `Child` does not on drop).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
    let code = match libc::WIFEXITED(status) {
        true => libc::WEXITSTATUS(status),
        false => -1,
    };
    // Linux reports ru_maxrss in KiB.
    (code, u64::try_from(usage.ru_maxrss).unwrap_or(0))
}

/// The one problem of a not-ready report, checked to be a driver error on `side`.
fn driver_problem<'a>(run: &'a Run, side: &str) -> &'a Value {
    assert_eq!(run.code, 3, "not ready");
    assert_eq!(run.report["rc"], 3);
    assert_eq!(run.report["changed"], false);
    assert_eq!(run.report["reason"]["kind"], "not_ready");
    let problems = run.report["reason"]["problems"].as_array().expect("problems");
    assert_eq!(problems.len(), 1, "{problems:?}");
    let problem = &problems[0];
    assert_eq!(problem["kind"], "driver");
    assert_eq!(problem["error"]["side"], side);
    problem
}

#[test]
fn a_destination_that_never_greets_is_named_in_one_json_report_with_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fake(dir.path(), "src.qmp", greets);
    let destination = fake(dir.path(), "dst.qmp", silent);
    let run = run(dir.path(), &source, &destination);
    let problem = driver_problem(&run, "destination");
    assert_eq!(problem["error"]["disconnected"], false);
    let expected = format!(
        "destination (unix:{}): no greeting within 10s: another client may hold this monitor (QEMU serves one QMP client at a time), or QEMU is not answering",
        destination.display()
    );
    assert_eq!(run.report["error"], expected);
    assert!(
        run.elapsed >= DEFAULT_TIMEOUT,
        "waited for the greeting: {:?}",
        run.elapsed
    );
    assert!(
        run.elapsed < DEFAULT_TIMEOUT + Duration::from_secs(5),
        "within the timeout: {:?}",
        run.elapsed
    );
    run.assert_small();
}

#[test]
fn a_source_that_refuses_every_command_is_named_in_one_json_report_with_exit_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = fake(dir.path(), "src.qmp", refuses_everything);
    let destination = dir.path().join("never-reached.qmp");
    let run = run(dir.path(), &source, &destination);
    driver_problem(&run, "source");
    let expected = format!(
        "source (unix:{}): qmp_capabilities: GenericError: \"qmp_capabilities\" is not allowed here",
        source.display()
    );
    assert_eq!(run.report["error"], expected);
    assert!(run.elapsed < DEFAULT_TIMEOUT, "{:?}", run.elapsed);
    run.assert_small();
}

#[test]
fn a_monitor_that_cannot_be_reached_says_why_in_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("no-such.qmp");
    let run = run(dir.path(), &source, &dir.path().join("no-such-either.qmp"));
    let problem = driver_problem(&run, "source");
    assert_eq!(problem["error"]["disconnected"], true);
    assert_eq!(
        run.report["error"],
        format!(
            "source (unix:{}): cannot connect: no such socket",
            source.display()
        )
    );
    run.assert_small();
}
