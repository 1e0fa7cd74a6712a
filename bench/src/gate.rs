//! The floor for the gate: a minimal client that drives an idle migration with
//! `pause-before-switchover` and answers `pre-switchover` with `migrate-continue` on
//! raw lines, a blocking socket and no JSON parsing beyond finding the event. Whatever
//! the tool spends between the same two QEMU timestamps beyond this is its own.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use rig::QemuPair;

const CONTINUE: &[u8] = b"{\"execute\":\"migrate-continue\",\"arguments\":{\"state\":\"pre-switchover\"}}\n";

/// One monitor on raw lines.
struct Raw {
    lines: BufReader<UnixStream>,
    out: UnixStream,
}

impl Raw {
    fn connect(socket: &Path) -> Result<Raw, String> {
        let out = UnixStream::connect(socket).map_err(|e| format!("{}: {e}", socket.display()))?;
        out.set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| e.to_string())?;
        let lines = BufReader::new(out.try_clone().map_err(|e| e.to_string())?);
        let mut raw = Raw { lines, out };
        raw.line()?; // the greeting
        raw.command("{\"execute\":\"qmp_capabilities\"}")?;
        Ok(raw)
    }

    fn line(&mut self) -> Result<String, String> {
        let mut line = String::new();
        match self.lines.read_line(&mut line) {
            Ok(0) => Err("monitor closed".into()),
            Ok(_) => Ok(line),
            Err(e) => Err(e.to_string()),
        }
    }

    fn send(&mut self, line: &[u8]) -> Result<(), String> {
        self.out.write_all(line).map_err(|e| e.to_string())
    }

    /// Sends a command and reads up to its reply (events in between are skipped).
    fn command(&mut self, json: &str) -> Result<(), String> {
        self.send(format!("{json}\n").as_bytes())?;
        loop {
            let line = self.line()?;
            if line.contains("\"return\"") {
                return Ok(());
            }
            if line.contains("\"error\"") {
                return Err(format!("{json}: {}", line.trim()));
            }
        }
    }
}

/// Migrates the pair's idle guest, answering `pre-switchover` at once.
pub fn migrate(pair: &QemuPair) -> Result<(), String> {
    let uri = format!("tcp:127.0.0.1:{}", pair.migration_port);
    let mut dst = Raw::connect(&pair.destination.qmp_socket)?;
    dst.command(&format!(
        "{{\"execute\":\"migrate-incoming\",\"arguments\":{{\"uri\":\"{uri}\"}}}}"
    ))?;
    let mut src = Raw::connect(&pair.source.qmp_socket)?;
    src.command(
        "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{\"capability\":\"events\",\"state\":true},{\"capability\":\"pause-before-switchover\",\"state\":true}]}}",
    )?;
    src.command(&format!(
        "{{\"execute\":\"migrate\",\"arguments\":{{\"uri\":\"{uri}\"}}}}"
    ))?;
    loop {
        let line = src.line()?;
        if !line.contains("\"MIGRATION\"") {
            continue;
        }
        if line.contains("\"pre-switchover\"") {
            src.send(CONTINUE)?;
        } else if line.contains("\"completed\"") {
            break;
        } else if line.contains("\"failed\"") || line.contains("\"cancelled\"") {
            return Err(format!("migration ended: {}", line.trim()));
        }
    }
    dst.command("{\"execute\":\"cont\"}")
}

/// The tool's gate over the floor's, alternating: `runs` idle migrations each, both
/// measured from the source's `pre-switchover` to its `device` (QEMU's timestamps).
pub fn compare(bin: &Path, runs: usize) {
    use crate::observe::Observer;
    println!("== gate: pre-switchover to device on QEMU's timestamps, {runs} idle migrations each, tool vs raw client");
    let (mut tool, mut floor, mut issued) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let p = crate::pair(64, 0);
        let observer = Observer::start(&p).unwrap_or_else(|e| crate::die(&e));
        let r = crate::child::run(bin, p.dir(), &crate::plan(&p, "", "[\"abort\"]"));
        let t = observer.finish(Duration::from_millis(500));
        match t.gate_ms() {
            Some(ms) => tool.push(ms),
            None => eprintln!(
                "bench: a tool run showed no gate (rc {}): {}",
                r.code,
                r.report["error"].as_str().unwrap_or("-")
            ),
        }
        if let Some(us) = r.report["switchover_latency_us"].as_u64() {
            issued.push(us as f64 / 1000.0);
        }
        drop(p);
        let p = crate::pair(64, 0);
        let observer = Observer::start(&p).unwrap_or_else(|e| crate::die(&e));
        let done = migrate(&p);
        let t = observer.finish(Duration::from_millis(500));
        match (done, t.gate_ms()) {
            (Ok(()), Some(ms)) => floor.push(ms),
            (Err(e), _) => eprintln!("bench: the raw client failed: {e}"),
            (Ok(()), None) => eprintln!("bench: a raw run showed no gate"),
        }
    }
    let t = crate::spread("tool", &tool);
    let f = crate::spread("raw client (floor)", &floor);
    crate::spread("tool's own event-to-issue (switchover_latency_us)", &issued);
    println!(
        "tool / floor at p50: {:.2} (target ≤ 1.3): {}",
        t / f,
        if t <= 1.3 * f { "holds" } else { "does NOT hold" }
    );
}
