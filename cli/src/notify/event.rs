//! What a webhook says: the kinds of event, the body every request carries, and which
//! of the engine's events become one.
//!
//! Every body is one JSON object with the same keys:
//!
//! ```json
//! {"event": "phase", "vm": "db-01", "run": "9f1c…", "seq": 3,
//!  "time": "2026-05-04T09:12:31.207Z", "data": {"phase": "configure"}}
//! ```
//!
//! `seq` counts a run's events from 1 (`run_started`) in the order they happened, so a
//! receiver sees a gap where one was dropped; `run` tells two runs of one VM apart.
//! `data` is the engine's own event as `--output ndjson` prints it, without its `event`
//! key; the `result` carries the report's summary rather than the whole report.

use std::time::SystemTime;

use engine::phase::Phase;
use engine::{EngineEvent, Report};
use plans::Plan;
use serde::{Serialize, Serializer};
use serde_json::{json, Map, Value};

/// The kinds of event the webhooks carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A run began: which VM goes where, with which devices and limits.
    RunStarted,
    /// A phase began (all but the switchover, which has its own kind).
    Phase,
    /// The policy acted: a throttle, a raised downtime limit, an abort.
    Action,
    /// A VFIO device changed state on the source.
    Device,
    /// The guest is paused for the switchover: QEMU stopped it at `pre-switchover`.
    Switchover,
    /// The run ended: the report's summary. The only kind never dropped.
    Result,
}

impl Kind {
    /// Every kind, in the order a run sends them first.
    pub const ALL: [Kind; 6] = [
        Kind::RunStarted,
        Kind::Phase,
        Kind::Action,
        Kind::Device,
        Kind::Switchover,
        Kind::Result,
    ];

    /// The kind's name, as the body's `event` and the `X-Vfio-Migrate-Event` header
    /// carry it.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RunStarted => "run_started",
            Kind::Phase => "phase",
            Kind::Action => "action",
            Kind::Device => "device",
            Kind::Switchover => "switchover",
            Kind::Result => "result",
        }
    }

    /// Whether it tells of progress, which may be left out when the queue is full;
    /// the result is not.
    pub fn is_progress(self) -> bool {
        self != Kind::Result
    }
}

/// One event as queued for delivery; the delivery task makes its body.
#[derive(Debug, Serialize)]
pub(crate) struct Event {
    pub(crate) event: Kind,
    pub(crate) vm: String,
    pub(crate) run: String,
    pub(crate) seq: u64,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) time: SystemTime,
    pub(crate) data: Value,
    /// When it was queued: a result is tried until `retry_for` after this.
    #[serde(skip)]
    pub(crate) queued: std::time::Instant,
}

impl Event {
    /// The request body: the exact bytes that are signed and sent.
    pub(crate) fn body(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

fn rfc3339<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*time))
}

/// The webhook an engine event becomes, if any: its kind and data. Progress readings,
/// pass boundaries, facts and notes stay on the terminal and in the report.
pub fn of_engine(event: &EngineEvent) -> Option<(Kind, Value)> {
    let kind = match event {
        EngineEvent::Phase {
            phase: Phase::Switchover,
        } => Kind::Switchover,
        EngineEvent::Phase { .. } => Kind::Phase,
        EngineEvent::Action(_) => Kind::Action,
        EngineEvent::Device { .. } => Kind::Device,
        _ => return None,
    };
    let mut data = serde_json::to_value(event).ok()?;
    if let Value::Object(map) = &mut data {
        map.remove("event");
    }
    Some((kind, data))
}

/// What `run_started` says: the sides (any password masked, as messages show them),
/// the devices, and the limits the run keeps.
pub fn run_started(plan: &Plan) -> Value {
    json!({
        "source": plan.source.to_string(),
        "destination": plan.destination.endpoint.to_string(),
        "devices": plan.devices.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        "limits": plan.limits,
        "version": env!("CARGO_PKG_VERSION"),
    })
}

/// The report's keys a `result` carries: what happened and what it cost, without the
/// samples and histories that make a report long.
const RESULT_KEYS: [&str; 15] = [
    "result",
    "running_on",
    "changed",
    "failed",
    "rc",
    "msg",
    "error",
    "reason",
    "phase",
    "paused_ms",
    "downtime_ms",
    "total_ms",
    "transferred_bytes",
    "passes",
    "actions",
];

/// What `result` says: the report's summary, and each device's last state.
pub fn result(report: &Report) -> Value {
    let Ok(Value::Object(mut full)) = serde_json::to_value(report) else {
        return json!({ "result": report.result, "rc": report.rc, "msg": report.msg });
    };
    let mut data: Map<String, Value> = RESULT_KEYS
        .iter()
        .filter_map(|key| full.remove(*key).map(|v| (key.to_string(), v)))
        .collect();
    let devices: Vec<Value> = report
        .devices
        .iter()
        .map(|d| json!({ "id": d.id, "state": d.state }))
        .collect();
    data.insert("devices".into(), Value::Array(devices));
    Value::Object(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switchover_phase_has_its_own_kind_and_progress_readings_are_not_sent() {
        let (kind, data) = of_engine(&EngineEvent::Phase {
            phase: Phase::Converge,
        })
        .expect("a phase is sent");
        assert_eq!((kind, data), (Kind::Phase, json!({"phase": "converge"})));
        let (kind, data) = of_engine(&EngineEvent::Phase {
            phase: Phase::Switchover,
        })
        .expect("the switchover is sent");
        assert_eq!((kind, data), (Kind::Switchover, json!({"phase": "switchover"})));
        let note = EngineEvent::Note { message: "x".into() };
        assert!(of_engine(&note).is_none());
    }

    #[test]
    fn a_device_transition_carries_the_engines_own_fields() {
        let event = EngineEvent::Device {
            id: "gpu0".into(),
            state: "stop-copy".into(),
            at_ms: 2804,
        };
        let (kind, data) = of_engine(&event).expect("a device transition is sent");
        assert_eq!(kind, Kind::Device);
        assert_eq!(data, json!({"id": "gpu0", "state": "stop-copy", "at_ms": 2804}));
    }

    #[test]
    fn a_body_has_every_key_and_a_utc_time() {
        let event = Event {
            event: Kind::Phase,
            vm: "db-01".into(),
            run: "ab".into(),
            seq: 3,
            time: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123),
            data: json!({"phase": "configure"}),
            queued: std::time::Instant::now(),
        };
        let body: Value = serde_json::from_slice(&event.body().expect("a body")).expect("JSON");
        assert_eq!(
            body,
            json!({"event": "phase", "vm": "db-01", "run": "ab", "seq": 3,
                   "time": "2023-11-14T22:13:20.123Z", "data": {"phase": "configure"}})
        );
    }

    #[test]
    fn every_kind_is_named_as_it_serializes() {
        for kind in Kind::ALL {
            assert_eq!(serde_json::to_value(kind).ok(), Some(json!(kind.name())));
        }
    }
}
