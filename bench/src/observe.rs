//! Watches a migration through the pair's observer monitors and keeps QEMU's own
//! timestamps, so that every strategy (the tool, a bare client, a peer's policy) is
//! measured the same way and by no clock of its own.
//!
//! The observer turns on the `events` migration capability on both sides before the
//! migration starts: without it QEMU sends no `MIGRATION` events. It is a notification
//! only; it changes nothing in how the migration runs.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use backends::qmp::{QmpClient, QmpEndpoint, QmpEvent};
use rig::QemuPair;
use serde_json::{json, Value};
use tokio::sync::{broadcast, oneshot};

/// Which QEMU sent an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// One event as QEMU stamped it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub side: Side,
    pub name: String,
    /// `data.status` of a `MIGRATION` event.
    pub status: Option<String>,
    /// QEMU's timestamp.
    pub at: SystemTime,
}

/// The events of one migration, in arrival order per side, and what the source said of
/// it afterwards.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub events: Vec<Seen>,
    /// `ram.downtime-bytes` of the source's `query-migrate` once it is over: the RAM
    /// sent while the guest was paused, which sets most of the pause.
    pub downtime_bytes: Option<u64>,
}

/// Where a pause went, on QEMU's timestamps, in milliseconds. A step the run did not
/// take (`pre-switchover` without `pause-before-switchover`) is `None`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PauseParts {
    /// The source's `STOP` to its `pre-switchover`.
    pub to_gate: Option<f64>,
    /// `pre-switchover` to `device`: the client's answer.
    pub gate: Option<f64>,
    /// From `device` (or `STOP`) to the source's `completed`: the last RAM and devices.
    pub to_source_done: Option<f64>,
    /// The source's `completed` to the destination's (negative when the destination
    /// stamped it first).
    pub to_destination_done: Option<f64>,
    /// The destination's `completed` to its `RESUME`: the client's `cont`.
    pub to_resume: Option<f64>,
}

impl Timeline {
    fn first(&self, side: Side, name: &str, status: Option<&str>) -> Option<SystemTime> {
        self.events
            .iter()
            .find(|s| s.side == side && s.name == name && (status.is_none() || s.status.as_deref() == status))
            .map(|s| s.at)
    }

    /// When the destination's guest resumed.
    fn resumed(&self) -> Option<SystemTime> {
        self.first(Side::Destination, "RESUME", None)
    }

    /// The guest's pause: the source's last `STOP` before the destination's `RESUME`.
    pub fn pause_ms(&self) -> Option<f64> {
        let resumed = self.resumed()?;
        ms_between(self.stopped()?, resumed)
    }

    /// The source's last `STOP` before the destination's `RESUME`.
    fn stopped(&self) -> Option<SystemTime> {
        let resumed = self.resumed()?;
        self.events
            .iter()
            .filter(|s| s.side == Side::Source && s.name == "STOP" && s.at <= resumed)
            .map(|s| s.at)
            .max()
    }

    /// The pause cut at the events QEMU stamps while the guest is stopped.
    pub fn pause_parts(&self) -> Option<PauseParts> {
        let stopped = self.stopped()?;
        let resumed = self.resumed()?;
        let migration = |side, status| {
            self.first(side, "MIGRATION", Some(status))
                .filter(|t| *t >= stopped)
        };
        let gate = migration(Side::Source, "pre-switchover");
        let device = migration(Side::Source, "device");
        let source_done = migration(Side::Source, "completed");
        let destination_done = migration(Side::Destination, "completed");
        let signed = |from: Option<SystemTime>, to: Option<SystemTime>| {
            let (from, to) = (from?, to?);
            Some(match to.duration_since(from) {
                Ok(d) => d.as_secs_f64() * 1000.0,
                Err(e) => -e.duration().as_secs_f64() * 1000.0,
            })
        };
        Some(PauseParts {
            to_gate: signed(Some(stopped), gate),
            gate: signed(gate, device),
            to_source_done: signed(device.or(Some(stopped)), source_done),
            to_destination_done: signed(source_done, destination_done),
            to_resume: signed(destination_done, Some(resumed)),
        })
    }

    /// From the source's `setup` to the destination's `RESUME`: the whole migration as
    /// the guest lives it.
    pub fn total_ms(&self) -> Option<f64> {
        let setup = self.first(Side::Source, "MIGRATION", Some("setup"))?;
        ms_between(setup, self.resumed()?)
    }

    /// From the source's `pre-switchover` to its `device`: how long the guest waited
    /// for whoever answers `pre-switchover`.
    pub fn gate_ms(&self) -> Option<f64> {
        let held = self.first(Side::Source, "MIGRATION", Some("pre-switchover"))?;
        let went_on = self.first(Side::Source, "MIGRATION", Some("device"))?;
        ms_between(held, went_on)
    }
}

fn ms_between(from: SystemTime, to: SystemTime) -> Option<f64> {
    to.duration_since(from).ok().map(|d| d.as_secs_f64() * 1000.0)
}

/// A running observer; [`Observer::finish`] returns what it saw.
pub struct Observer {
    stop: Option<oneshot::Sender<Duration>>,
    thread: Option<JoinHandle<Timeline>>,
}

impl Observer {
    /// Connects to both observer monitors and returns once both listen. It runs on a
    /// thread of its own so that it never waits for whatever it measures.
    pub fn start(pair: &QemuPair) -> Result<Observer, String> {
        let source = pair.source.observer_socket.clone();
        let destination = pair.destination.observer_socket.clone();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("observer runtime: {e}")));
                    return Timeline::default();
                }
            };
            rt.block_on(watch(
                QmpEndpoint::Unix(source),
                QmpEndpoint::Unix(destination),
                ready_tx,
                stop_rx,
            ))
        });
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Observer {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the observer stopped before it connected".into()),
        }
    }

    /// Stops watching once the destination's `RESUME` has come, or after `settle` (a
    /// migration that did not finish has none).
    pub fn finish(mut self, settle: Duration) -> Timeline {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(settle);
        }
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }
}

async fn watch(
    source: QmpEndpoint,
    destination: QmpEndpoint,
    ready: std_mpsc::Sender<Result<(), String>>,
    mut stop: oneshot::Receiver<Duration>,
) -> Timeline {
    let connected = async {
        let t = Duration::from_secs(5);
        let src = QmpClient::connect(&source, "source observer", t)
            .await
            .map_err(|e| e.to_string())?;
        let dst = QmpClient::connect(&destination, "destination observer", t)
            .await
            .map_err(|e| e.to_string())?;
        for client in [&src, &dst] {
            client
                .execute_raw(
                    "migrate-set-capabilities",
                    Some(json!({"capabilities": [{"capability": "events", "state": true}]})),
                )
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<_, String>((src, dst))
    };
    let (src, dst) = match connected.await {
        Ok(clients) => clients,
        Err(e) => {
            let _ = ready.send(Err(e));
            return Timeline::default();
        }
    };
    let (mut src_events, mut dst_events) = (src.subscribe(), dst.subscribe());
    let _ = ready.send(Ok(()));
    let mut seen = Vec::new();
    let mut until: Option<Instant> = None;
    // A monitor that closed (its QEMU gone) answers `Closed` at once, forever: stop asking.
    let (mut src_open, mut dst_open) = (true, true);
    loop {
        if let Some(until) = until {
            let resumed = seen
                .iter()
                .any(|s: &Seen| s.side == Side::Destination && s.name == "RESUME");
            if resumed || Instant::now() >= until {
                break;
            }
        }
        let nap = until.map_or(Duration::from_secs(3600), |u| {
            u.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            settle = &mut stop, if until.is_none() => {
                until = Some(Instant::now() + settle.unwrap_or_default());
            }
            event = src_events.recv(), if src_open => src_open = keep(&mut seen, Side::Source, event),
            event = dst_events.recv(), if dst_open => dst_open = keep(&mut seen, Side::Destination, event),
            _ = tokio::time::sleep(nap) => {}
        }
    }
    let downtime_bytes = if src_open {
        let stats = src.execute_raw("query-migrate", None).await.ok();
        stats.and_then(|s| s["ram"]["downtime-bytes"].as_u64())
    } else {
        None
    };
    Timeline {
        events: seen,
        downtime_bytes,
    }
}

/// Records an event; `false` once the monitor has closed.
fn keep(seen: &mut Vec<Seen>, side: Side, event: Result<QmpEvent, broadcast::error::RecvError>) -> bool {
    match event {
        Ok(event) => {
            seen.push(Seen {
                side,
                status: event
                    .data
                    .get("status")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                name: event.name,
                at: event.timestamp,
            });
            true
        }
        Err(broadcast::error::RecvError::Lagged(_)) => true,
        Err(broadcast::error::RecvError::Closed) => false,
    }
}
