//! `vfio-migrate run`: several VMs evacuated in one run against real QEMU pairs, with a
//! shared bandwidth budget sampled from QEMU itself while they migrate.

mod common;

use common::hooks::{Answer, Receiver};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backends::qmp::{QmpClient, QmpEndpoint};
use common::{assert_guest_alive, plan_for, status, ONE_AT_A_TIME};
use rig::{Accel, GuestParams, PairOptions, QemuPair};
use serde_json::Value;

const MIB: u64 = 1024 * 1024;
const KEY: &str = "a-key-for-the-evacuation-tests";
const KEY_VAR: &str = "VFIO_MIGRATE_TEST_EVACUATION_KEY";

/// A small pair: 256 MiB guest with `wss_mb` rewritten at `rate_mb` MiB/s.
fn small_pair(wss_mb: u32, rate_mb: u32) -> QemuPair {
    QemuPair::start(&PairOptions {
        mem_mb: 256,
        guest: GuestParams { wss_mb, rate_mb },
        accel: Accel::Auto,
        dirty_ring: true,
        ..PairOptions::default()
    })
    .expect("start a QEMU pair")
}

/// Writes the plan of `pair` for VM `name` into `dir`.
fn write_plan(dir: &Path, name: &str, pair: &QemuPair, limits: &str, policy: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let plan = plan_for(pair, limits, policy).replace("name = \"test\"", &format!("name = \"{name}\""));
    std::fs::write(&path, plan).expect("write plan");
    path
}

/// Runs `vfio-migrate run` with `args` then the plans; returns the exit code and the
/// JSON report.
fn evacuate(dir: &Path, args: &[&str], plans: &[PathBuf]) -> (i32, Value) {
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .env(KEY_VAR, KEY)
        .args(["--output", "json", "run"])
        .args(args)
        .args(plans)
        .timeout(Duration::from_secs(240))
        .output()
        .expect("run vfio-migrate");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON report ({e}); stderr:\n{stderr}"));
    eprintln!("summary: {:#}\nstderr:\n{stderr}", report["summary"]);
    (out.status.code().unwrap_or(-1), report)
}

/// The entry of VM `name` in an evacuation report.
fn vm<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["vms"]
        .as_array()
        .and_then(|vms| vms.iter().find(|v| v["vm"] == name))
        .unwrap_or_else(|| panic!("no VM {name} in {report:#}"))
}

/// What the sampler saw of one source at one instant.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at: Duration,
    /// Sending under its cap (`setup` or `active`) at both status reads around the
    /// parameter read.
    capped: bool,
    max_bandwidth: u64,
    completed: bool,
}

/// Reads every source's migration status and `max-bandwidth` on its observer monitor
/// until stopped. Each round reads all statuses, then all parameters, then all statuses
/// again, and counts a source as sending only when both status reads say so: a cap
/// read in a round is then never older than a start nor newer than an end it is summed
/// with.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<Seen>>>,
}

impl Sampler {
    fn start(observers: Vec<PathBuf>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut clients = Vec::new();
                for socket in &observers {
                    let endpoint = QmpEndpoint::Unix(socket.clone());
                    let client = QmpClient::connect(&endpoint, "sampler", Duration::from_secs(5))
                        .await
                        .expect("observer monitor");
                    clients.push(client);
                }
                let t0 = Instant::now();
                let mut rounds = Vec::new();
                while !flag.load(Ordering::Relaxed) {
                    let mut before = Vec::new();
                    for c in &clients {
                        before.push(migration_status(c).await);
                    }
                    let mut caps = Vec::new();
                    for c in &clients {
                        let params = c
                            .execute_raw("query-migrate-parameters", None)
                            .await
                            .expect("parameters");
                        caps.push(params["max-bandwidth"].as_u64().unwrap_or(0));
                    }
                    let mut round = Vec::new();
                    for (i, c) in clients.iter().enumerate() {
                        let after = migration_status(c).await;
                        let sending = |s: &str| s == "setup" || s == "active";
                        round.push(Seen {
                            at: t0.elapsed(),
                            capped: sending(&before[i]) && sending(&after),
                            max_bandwidth: caps[i],
                            completed: after == "completed",
                        });
                    }
                    rounds.push(round);
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                rounds
            })
        });
        Sampler { stop, thread }
    }

    fn finish(self) -> Vec<Vec<Seen>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler")
    }
}

async fn migration_status(client: &QmpClient) -> String {
    let info = client
        .execute_raw("query-migrate", None)
        .await
        .expect("query-migrate");
    info["status"].as_str().unwrap_or("none").to_string()
}

fn observers(pairs: &[&QemuPair]) -> Vec<PathBuf> {
    pairs.iter().map(|p| p.source.observer_socket.clone()).collect()
}

#[test]
fn a_three_vms_share_the_budget_two_at_a_time_and_all_arrive_intact() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let pairs = [small_pair(64, 16), small_pair(64, 16), small_pair(64, 16)];
    let limits = "downtime = \"300ms\"";
    let policy = "escalation = [\"abort\"]";
    let plans: Vec<PathBuf> = ["vm-a", "vm-b", "vm-c"]
        .iter()
        .zip(&pairs)
        .map(|(name, pair)| write_plan(dir.path(), name, pair, limits, policy))
        .collect();
    let budget = 96 * MIB;
    let sampler = Sampler::start(observers(&[&pairs[0], &pairs[1], &pairs[2]]));
    let (code, report) = evacuate(
        dir.path(),
        &["--parallel", "2", "--bandwidth-budget", "96MiB/s"],
        &plans,
    );
    let rounds = sampler.finish();

    assert_eq!(code, 0, "{:#}", report["msg"]);
    assert_eq!(report["changed"], true);
    assert_eq!(report["summary"]["migrated"], 3);
    for (name, pair) in ["vm-a", "vm-b", "vm-c"].iter().zip(&pairs) {
        assert_eq!(vm(&report, name)["result"], "migrated");
        assert_eq!(vm(&report, name)["running_on"], "destination");
        assert_eq!(status(&pair.destination.qmp_socket), "running");
        assert_guest_alive(&pair.destination);
    }

    // The caps in force never add up to more than the budget, and no more than two
    // migrations sent at once.
    let mut busiest = 0;
    let mut most = 0;
    for round in &rounds {
        let sum: u64 = round.iter().filter(|s| s.capped).map(|s| s.max_bandwidth).sum();
        let sending = round.iter().filter(|s| s.capped).count();
        assert!(
            sum <= budget,
            "caps add up to {} MiB/s at {:?}: {round:?}",
            sum / MIB,
            round[0].at
        );
        busiest = busiest.max(sending);
        most = most.max(sum);
    }
    eprintln!(
        "{} rounds sampled; at most {busiest} sending, caps at most {} MiB/s",
        rounds.len(),
        most / MIB
    );
    assert_eq!(busiest, 2, "two migrations ran side by side");
    assert!(most > 48 * MIB, "a migration alone got more than half the budget");

    // The third starts only once one of the first two has completed.
    let first_sending = |i: usize| rounds.iter().find(|r| r[i].capped).map(|r| r[i].at);
    let completed = |i: usize| rounds.iter().find(|r| r[i].completed).map(|r| r[i].at);
    let c_started = first_sending(2).expect("vm-c was seen sending");
    let first_done = [completed(0), completed(1)]
        .into_iter()
        .flatten()
        .min()
        .expect("vm-a or vm-b was seen completed");
    assert!(
        c_started >= first_done,
        "vm-c started sending at {c_started:?}, before the first completed at {first_done:?}"
    );
    // The report says the same in its own times.
    let ms = |name: &str, key: &str| vm(&report, name)[key].as_u64().expect(key);
    let first_end = ms("vm-a", "ended_ms").min(ms("vm-b", "ended_ms"));
    assert!(ms("vm-c", "started_ms") >= first_end, "{report:#}");
}

#[test]
fn b_a_vm_that_cannot_converge_stays_on_its_source_and_the_others_migrate() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let stuck = small_pair(128, 200);
    let quiet = [small_pair(64, 8), small_pair(64, 8)];
    let policy = "escalation = [\"abort\"]";
    let plans = vec![
        write_plan(dir.path(), "vm-stuck", &stuck, "downtime = \"100ms\"", policy),
        write_plan(dir.path(), "vm-b", &quiet[0], "downtime = \"300ms\"", policy),
        write_plan(dir.path(), "vm-c", &quiet[1], "downtime = \"300ms\"", policy),
    ];
    let (code, report) = evacuate(
        dir.path(),
        &["--parallel", "2", "--bandwidth-budget", "128MiB/s"],
        &plans,
    );
    assert_eq!(code, 1, "the worst of the VMs' codes: {:#}", report["msg"]);
    assert_eq!(report["failed"], true);
    assert_eq!(report["changed"], true, "some VMs moved");
    assert_eq!(report["summary"]["migrated"], 2);
    assert_eq!(report["summary"]["aborted"], 1);
    assert_eq!(vm(&report, "vm-stuck")["result"], "aborted");
    assert_eq!(vm(&report, "vm-stuck")["running_on"], "source");
    assert_eq!(status(&stuck.source.qmp_socket), "running");
    assert_guest_alive(&stuck.source);
    for (name, pair) in ["vm-b", "vm-c"].iter().zip(&quiet) {
        assert_eq!(vm(&report, name)["result"], "migrated");
        assert_guest_alive(&pair.destination);
    }
}

#[test]
fn c_fail_fast_starts_nothing_after_a_vm_that_did_not_migrate() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let stuck = small_pair(128, 200);
    let stuck_plan = write_plan(
        dir.path(),
        "vm-stuck",
        &stuck,
        "downtime = \"100ms\"",
        "escalation = [\"abort\"]",
    );
    // Plans whose monitors do not exist: had they been started, they would be "not
    // ready" (exit 3), not "not started".
    let never: Vec<PathBuf> = ["vm-x", "vm-y"]
        .iter()
        .map(|name| {
            let path = dir.path().join(format!("{name}.toml"));
            let text = format!(
                "[vm]\nname = \"{name}\"\n[source]\nqmp = \"unix:{d}/{name}-src.qmp\"\n[destination]\nqmp = \"unix:{d}/{name}-dst.qmp\"\nlisten = \"tcp:127.0.0.1:1\"\n",
                d = dir.path().display()
            );
            std::fs::write(&path, text).expect("write plan");
            path
        })
        .collect();
    let mut plans = vec![stuck_plan];
    plans.extend(never);
    let (code, report) = evacuate(dir.path(), &["--fail-fast"], &plans);
    assert_eq!(code, 1, "{:#}", report["msg"]);
    assert_eq!(report["summary"]["aborted"], 1);
    assert_eq!(report["summary"]["not_started"], 2);
    for name in ["vm-x", "vm-y"] {
        let entry = vm(&report, name);
        assert_eq!(entry["result"], "not_started");
        assert_eq!(entry["running_on"], "source");
        let msg = entry["msg"].as_str().unwrap_or_default();
        assert!(msg.contains("--fail-fast after vm-stuck"), "{msg}");
    }
    assert_guest_alive(&stuck.source);
}

#[test]
fn d_sigint_during_an_evacuation_leaves_every_vm_on_its_source() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let pairs = [small_pair(128, 200), small_pair(128, 200), small_pair(128, 200)];
    let plans: Vec<PathBuf> = ["vm-a", "vm-b", "vm-c"]
        .iter()
        .zip(&pairs)
        .map(|(name, pair)| {
            let path = write_plan(
                dir.path(),
                name,
                pair,
                "deadline = \"120s\"",
                "escalation = [\"abort\"]",
            );
            let text = std::fs::read_to_string(&path).expect("plan");
            std::fs::write(&path, text.replace("stall_passes = 2", "stall_passes = 100")).expect("plan");
            path
        })
        .collect();
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("vfio-migrate"))
        .env("VFIO_MIGRATE_STATE_DIR", dir.path().join("state"))
        .args([
            "--output",
            "json",
            "run",
            "--parallel",
            "2",
            "--bandwidth-budget",
            "128MiB/s",
        ])
        .args(&plans)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start vfio-migrate");
    // Both first migrations are under way.
    for pair in &pairs[..2] {
        common::wait_for(
            &pair.source.observer_socket,
            "query-migrate",
            Duration::from_secs(30),
            |m| m["status"] == "active",
        );
    }
    let killed = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    let report: Value = serde_json::from_slice(&out.stdout).expect("a report after the interrupt");
    eprintln!("summary: {:#}", report["summary"]);
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(report["rc"], 130);
    assert_eq!(report["summary"]["aborted"], 2);
    assert_eq!(report["summary"]["not_started"], 1);
    for pair in &pairs {
        assert_eq!(status(&pair.source.qmp_socket), "running");
        assert_guest_alive(&pair.source);
    }
}

#[test]
fn e_shortest_first_starts_the_quiet_vm_before_the_busy_one_given_first() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let busy = small_pair(128, 24);
    let idle = small_pair(16, 0);
    let limits = "downtime = \"300ms\"";
    let policy = "escalation = [\"abort\"]";
    let plans = vec![
        write_plan(dir.path(), "vm-busy", &busy, limits, policy),
        write_plan(dir.path(), "vm-idle", &idle, limits, policy),
    ];
    let (code, report) = evacuate(dir.path(), &["--order", "shortest-first"], &plans);
    assert_eq!(code, 0, "{:#}", report["msg"]);
    let started = |name: &str| vm(&report, name)["started_ms"].as_u64().expect("started_ms");
    let ended = |name: &str| vm(&report, name)["ended_ms"].as_u64().expect("ended_ms");
    assert!(
        ended("vm-idle") <= started("vm-busy"),
        "the quiet VM went first: idle {}..{} ms, busy from {} ms",
        started("vm-idle"),
        ended("vm-idle"),
        started("vm-busy")
    );
    assert_eq!(vm(&report, "vm-busy")["result"], "migrated");
    // The report lists the VMs in the order the plans were given.
    assert_eq!(report["vms"][0]["vm"], "vm-busy");
}

#[test]
fn f_every_vm_tells_the_receiver_its_steps_in_order_and_the_run_counts_them() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let pairs = [small_pair(32, 8), small_pair(32, 8)];
    let limits = "downtime = \"300ms\"";
    let policy = "escalation = [\"abort\"]";
    let plans: Vec<PathBuf> = ["vm-a", "vm-b"]
        .iter()
        .zip(&pairs)
        .map(|(name, pair)| write_plan(dir.path(), name, pair, limits, policy))
        .collect();
    let receiver = Receiver::start(Answer::Status(204));
    let (code, report) = evacuate(
        dir.path(),
        &[
            "--notify",
            &receiver.url,
            "--notify-secret-env",
            KEY_VAR,
            "--parallel",
            "2",
            "--bandwidth-budget",
            "128MiB/s",
        ],
        &plans,
    );
    assert_eq!(code, 0, "{:#}", report["msg"]);
    let requests = receiver.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert!(
            request.signed_with(KEY.as_bytes()),
            "a valid signature on {}",
            request.event
        );
    }
    for name in ["vm-a", "vm-b"] {
        let bodies: Vec<Value> = requests
            .iter()
            .map(|r| r.json())
            .filter(|b| b["vm"] == name)
            .collect();
        let kinds: Vec<&str> = bodies.iter().filter_map(|b| b["event"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"run_started"), "{name}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"result"), "{name}: {kinds:?}");
        assert!(kinds.contains(&"switchover"), "{name}: {kinds:?}");
        let seqs: Vec<u64> = bodies.iter().filter_map(|b| b["seq"].as_u64()).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "{name}: in order, none left out: {seqs:?}"
        );
        assert_eq!(
            bodies.last().map(|b| b["data"]["result"].clone()),
            Some(Value::from("migrated"))
        );
    }
    assert_eq!(
        report["notify"]["sent"],
        requests.len() as u64,
        "{:#}",
        report["notify"]
    );
    assert_eq!(report["notify"]["failed"], 0);
    assert_eq!(report["notify"]["dropped"], 0);
}

#[test]
fn g_on_a_terminal_each_vm_has_a_line_and_a_total_line_follows_them() {
    let _one = ONE_AT_A_TIME.lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let pairs = [small_pair(32, 8), small_pair(32, 8)];
    let plans: Vec<PathBuf> = ["vm-a", "vm-b"]
        .iter()
        .zip(&pairs)
        .map(|(name, pair)| {
            write_plan(
                dir.path(),
                name,
                pair,
                "downtime = \"300ms\"",
                "escalation = [\"abort\"]",
            )
        })
        .collect();
    // `script` gives the run a terminal, as a person's shell would.
    let command = format!(
        "{} run --parallel 2 {} {}",
        assert_cmd::cargo::cargo_bin("vfio-migrate").display(),
        plans[0].display(),
        plans[1].display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("VFIO_MIGRATE_STATE_DIR", dir.path().join("state"))
        .env("COLUMNS", "160")
        .output()
        .expect("run script(1)");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    // Each VM's bar carries its name and phase; the bars redraw ten times a second, so
    // a phase as short as an idle guest's `converge` may never be drawn, but the last
    // state is (the summary below pads its names, the bar does not).
    for name in ["vm-a", "vm-b"] {
        assert!(
            screen.contains(&format!("{name} migrated")),
            "a line for {name}:\n{screen}"
        );
    }
    assert!(screen.contains("total"), "a total line:\n{screen}");
    assert!(
        screen.contains("running"),
        "the total line counts the running:\n{screen}"
    );
    assert!(
        screen.contains("2 VMs: 2 migrated"),
        "the report follows:\n{screen}"
    );
}
