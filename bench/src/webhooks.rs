//! What webhooks cost the switchover: the same idle migration run with a receiver that
//! accepts every connection and never answers (`--notify` to it), and with none,
//! taking turns, N runs each (11 by default). Measured on QEMU's own timestamps, as
//! the gate benchmark measures the tool: `pre-switchover` to `device` (the gate), and
//! the guest's pause (the source's STOP to the destination's RESUME).

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use crate::observe::Observer;

/// A receiver on loopback that takes every request and never answers.
fn hanging_receiver() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| crate::die(&format!("bind: {e}")));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // Each connection is read and held open, so every request waits for its
            // timeout.
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut sink = [0u8; 4096];
                while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
    });
    format!("http://127.0.0.1:{port}/hook")
}

/// One idle migration, with webhooks to `url` when given: (gate ms, pause ms, rc).
/// The plan's `[notify]` bounds what the run waits for at its end (each request 2 s,
/// tries for 2 s), which the migration itself never waits for.
fn one(bin: &Path, url: Option<&str>) -> (Option<f64>, Option<f64>, i32) {
    let p = crate::pair(64, 0);
    let mut plan = crate::plan(&p, "", "[\"abort\"]");
    if let Some(url) = url {
        plan.push_str(&format!(
            "[notify]\nurls = [\"{url}\"]\ntimeout = \"2s\"\nretry_for = \"2s\"\n"
        ));
    }
    let observer = Observer::start(&p).unwrap_or_else(|e| crate::die(&e));
    let r = crate::child::run(bin, p.dir(), &plan);
    let t = observer.finish(Duration::from_millis(500));
    (t.gate_ms(), t.pause_ms(), r.code)
}

pub fn compare(bin: &Path, runs: usize) {
    println!("== webhooks: gate and pause on QEMU's timestamps, {runs} idle migrations each, with a receiver that never answers and with none");
    let url = hanging_receiver();
    let (mut gate_none, mut gate_hang, mut pause_none, mut pause_hang) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let order = if i % 2 == 0 { [false, true] } else { [true, false] };
        for with in order {
            let (gate, pause, rc) = one(bin, with.then_some(url.as_str()));
            if rc != 0 {
                eprintln!("bench: a run exited {rc}");
            }
            let (gates, pauses) = match with {
                true => (&mut gate_hang, &mut pause_hang),
                false => (&mut gate_none, &mut pause_none),
            };
            gates.extend(gate);
            pauses.extend(pause);
        }
    }
    crate::spread("gate, no webhooks", &gate_none);
    crate::spread("gate, receiver that never answers", &gate_hang);
    crate::spread("pause, no webhooks", &pause_none);
    crate::spread("pause, receiver that never answers", &pause_hang);
}
