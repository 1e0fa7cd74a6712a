//! How good `check`'s prediction is: for each workload, `check` then the migration on the
//! same pair, predicted against actual (verdict, total time, pause).

use std::path::Path;

use rig::QemuPair;
use serde_json::Value;
use standins::devmodel::{Proxy, ProxyConfig, Role};
use standins::vfio::ModelDevice;

use crate::{child, median, pair};

const MIB: u64 = 1 << 20;
const LINK: &str =
    "max_bandwidth = \"128MiB/s\"\ndowntime = \"300ms\"\nmax_downtime = \"2s\"\ndeadline = \"120s\"";

/// One workload of the accuracy table.
struct Workload {
    name: &'static str,
    wss_mb: u32,
    rate_mb: u32,
    policy: &'static str,
    /// A modelled VFIO device's stop-copy state, MiB.
    device_mib: Option<u64>,
}

const WORKLOADS: &[Workload] = &[
    Workload {
        name: "idle (64 MiB working set)",
        wss_mb: 64,
        rate_mb: 0,
        policy: "escalation = [\"abort\"]",
        device_mib: None,
    },
    Workload {
        name: "256 MiB @ 50 MiB/s",
        wss_mb: 256,
        rate_mb: 50,
        policy: "escalation = [\"abort\"]",
        device_mib: None,
    },
    Workload {
        name: "256 MiB @ 200 MiB/s, throttle then abort",
        wss_mb: 256,
        rate_mb: 200,
        policy: "escalation = [\"throttle\", \"abort\"]\nthrottle = \"dirty-limit\"",
        device_mib: None,
    },
    Workload {
        name: "256 MiB @ 200 MiB/s, abort",
        wss_mb: 256,
        rate_mb: 200,
        policy: "escalation = [\"abort\"]",
        device_mib: None,
    },
    Workload {
        name: "idle + device with 512 MiB state (2 s ceiling)",
        wss_mb: 64,
        rate_mb: 0,
        policy: "escalation = [\"force-downtime\", \"abort\"]",
        device_mib: Some(512),
    },
];

/// Runs every workload `runs` times and prints predicted against actual.
pub fn accuracy(bin: &Path, runs: usize) {
    println!("== check's prediction against the migration that follows it ({runs} runs each)");
    println!("| workload | predicted | actual | predicted total | actual total (median) | predicted pause | actual pause |");
    println!("|---|---|---|---|---|---|---|");
    let only = std::env::var("BENCH_ONLY").ok();
    for w in WORKLOADS
        .iter()
        .filter(|w| only.as_deref().is_none_or(|o| w.name.contains(o)))
    {
        let mut rows = Vec::new();
        for _ in 0..runs {
            rows.push(one(bin, w));
        }
        let verdicts: Vec<&str> = rows.iter().map(|r| r.predicted.as_str()).collect();
        let actuals: Vec<&str> = rows.iter().map(|r| r.actual.as_str()).collect();
        println!(
            "| {} | {} | {} | {:.1} s | {:.1} s | {} | {} |",
            w.name,
            verdicts.join(", "),
            actuals.join(", "),
            median(rows.iter().map(|r| r.predicted_ms).collect()) / 1000.0,
            median(rows.iter().map(|r| r.actual_ms).collect()) / 1000.0,
            rows.iter()
                .map(|r| r.predicted_pause.clone())
                .collect::<Vec<_>>()
                .join(", "),
            rows.iter()
                .map(|r| r.actual_pause.clone())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
}

struct Outcome {
    predicted: String,
    actual: String,
    predicted_ms: f64,
    actual_ms: f64,
    predicted_pause: String,
    actual_pause: String,
}

fn one(bin: &Path, w: &Workload) -> Outcome {
    let p = pair(w.wss_mb, w.rate_mb);
    let modelled = w.device_mib.map(|mib| Modelled::start(&p, mib));
    let (src, dst) = match &modelled {
        Some(m) => (m.source.clone(), m.destination.clone()),
        None => (p.source.qmp_socket.clone(), p.destination.qmp_socket.clone()),
    };
    let devices = match w.device_mib {
        Some(mib) => format!("[[devices]]\nid = \"gpu0\"\nprecopy = true\nstate_size = \"{mib}MiB\"\n"),
        None => String::new(),
    };
    let plan = format!(
        "[vm]\nname = \"bench\"\n[source]\nqmp = \"unix:{}\"\n[destination]\nqmp = \"unix:{}\"\nlisten = \"tcp:127.0.0.1:{}\"\n{devices}[limits]\n{LINK}\n[convergence]\nstall_passes = 2\n[policy]\n{}\n",
        src.display(),
        dst.display(),
        p.migration_port,
        w.policy
    );
    let checked = child::check(bin, p.dir(), &plan);
    let run = child::run(bin, p.dir(), &plan);
    eprintln!(
        "bench: {}: {}; predicted {}; run: rc {}, passes {}, {}",
        w.name,
        checked["rows"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["id"] == "predict.inputs"))
            .and_then(|r| r["finding"].as_str())
            .unwrap_or("no inputs"),
        checked["msg"].as_str().unwrap_or("-"),
        run.code,
        run.report["passes"],
        run.report["msg"].as_str().unwrap_or("-")
    );
    let prediction = &checked["prediction"];
    let forecast = &prediction["forecast"];
    let predicted = match forecast["kind"].as_str() {
        Some("converges_after") => format!("converges after {}", forecast["step"].as_str().unwrap_or("?")),
        Some(kind) => kind.replace('_', " "),
        None => format!("none ({})", checked["msg"].as_str().unwrap_or("no answer")),
    };
    Outcome {
        predicted,
        actual: actual(&run.report),
        predicted_ms: prediction["total_ms"].as_f64().unwrap_or(f64::NAN),
        actual_ms: run.report["total_ms"].as_f64().unwrap_or(f64::NAN),
        predicted_pause: ms(&prediction["downtime_ms"]),
        actual_pause: ms(&run.report["downtime_ms"]),
    }
}

/// What the run did, in the prediction's words.
fn actual(report: &Value) -> String {
    let steps: Vec<String> = report["actions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["step"].as_str().or(a["kind"].as_str()).map(str::to_string))
        .collect();
    match (report["result"].as_str(), steps.last()) {
        (Some("migrated"), None) => "converges".into(),
        (Some("migrated"), Some(step)) => format!("converges after {step}"),
        (Some(result), _) => format!("{result} (cannot meet limits)"),
        (None, _) => "no report".into(),
    }
}

fn ms(v: &Value) -> String {
    v.as_u64().map_or("-".into(), |ms| format!("{ms} ms"))
}

/// The device-model proxies in front of the pair, for the device workload.
struct Modelled {
    source: std::path::PathBuf,
    destination: std::path::PathBuf,
    _proxies: (Proxy, Proxy),
    _runtime: tokio::runtime::Runtime,
}

impl Modelled {
    fn start(p: &QemuPair, state_mib: u64) -> Modelled {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap_or_else(|e| crate::die(&format!("runtime: {e}")));
        let source = p.dir().join("source-proxy.qmp");
        let destination = p.dir().join("destination-proxy.qmp");
        let device = ModelDevice {
            precopy: true,
            state_size: state_mib * MIB,
            ..ModelDevice::new("gpu0")
        };
        let start = |upstream: &Path, listen: &Path, role| {
            runtime
                .block_on(Proxy::start(ProxyConfig {
                    upstream: upstream.to_path_buf(),
                    listen: listen.to_path_buf(),
                    role,
                    devices: vec![device.clone()],
                    link_bytes_per_sec: 128 * MIB,
                }))
                .unwrap_or_else(|e| crate::die(&format!("device model: {e}")))
        };
        let src = start(&p.source.qmp_socket, &source, Role::Source);
        let dst = start(&p.destination.qmp_socket, &destination, Role::Destination);
        Modelled {
            source,
            destination,
            _proxies: (src, dst),
            _runtime: runtime,
        }
    }
}
