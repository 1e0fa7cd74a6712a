//! An encrypted migration stream on real QEMU: certificates made with openssl in the
//! pair's directory, the `vfio-migrate` binary carrying out a plan with `tls = true`,
//! and each QEMU's second (observer) monitor showing what the tool set while it ran and
//! that it took everything back afterwards. That TLS is really in the stream shows in
//! the failures: a destination whose certificate another CA signed fails the handshake.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use backends::qemu::tls::OBJECT_ID;
use backends::qmp::{QmpClient, QmpEndpoint};
use common::tls::{Ca, Role};
use common::{assert_guest_alive, pair, plan_for, status, ONE_AT_A_TIME};
use serde_json::{json, Value};

/// Sends one QMP command with arguments to a QEMU: its `return` value, or QEMU's error.
fn try_qmp(socket: &Path, command: &str, args: Option<Value>) -> Result<Value, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let endpoint = QmpEndpoint::Unix(socket.to_path_buf());
        let client = QmpClient::connect(&endpoint, "test", Duration::from_secs(5))
            .await
            .expect("connect to QEMU");
        client.execute_raw(command, args).await.map_err(|e| e.to_string())
    })
}

fn qmp(socket: &Path, command: &str, args: Option<Value>) -> Value {
    try_qmp(socket, command, args).unwrap_or_else(|e| panic!("{command}: {e}"))
}

/// One side's TLS as its observer monitor shows it.
#[derive(Debug, Clone, PartialEq)]
struct Tls {
    /// `tls-creds`, `tls-hostname`.
    creds: String,
    hostname: String,
    /// The tool's credentials object, when present: its `endpoint` and `verify-peer`.
    object: Option<(String, bool)>,
}

fn tls_of(side: &rig::QemuProcess) -> Tls {
    let socket = &side.observer_socket;
    let params = qmp(socket, "query-migrate-parameters", None);
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let objects = qmp(socket, "qom-list", Some(json!({"path": "/objects"})));
    let present = objects
        .as_array()
        .into_iter()
        .flatten()
        .any(|o| o["name"] == OBJECT_ID);
    // The tool may delete the object between the listing and these reads: then it is
    // read as gone.
    let path = format!("/objects/{OBJECT_ID}");
    let get = |property: &str| {
        try_qmp(
            socket,
            "qom-get",
            Some(json!({"path": path, "property": property})),
        )
    };
    let object = match (present, get("endpoint"), get("verify-peer")) {
        (true, Ok(endpoint), Ok(verify)) => Some((text(&endpoint), verify.as_bool().unwrap_or(false))),
        _ => None,
    };
    Tls {
        creds: text(&params["tls-creds"]),
        hostname: text(&params["tls-hostname"]),
        object,
    }
}

/// What a QEMU the tool never touched shows.
fn untouched() -> Tls {
    Tls {
        creds: String::new(),
        hostname: String::new(),
        object: None,
    }
}

/// What the tool sets on a side while it runs.
fn set(endpoint: &str, hostname: &str) -> Tls {
    Tls {
        creds: OBJECT_ID.to_string(),
        hostname: hostname.to_string(),
        object: Some((endpoint.to_string(), true)),
    }
}

/// Both sides' TLS while the tool ran: every distinct reading, in order.
#[derive(Debug, Default)]
struct Seen {
    source: Vec<Tls>,
    destination: Vec<Tls>,
}

/// A run of the binary, and what the observers saw while it ran.
struct Ran {
    code: i32,
    report: Value,
    seen: Seen,
    /// The progress lines and notes (`--output json` writes them to stderr).
    stderr: String,
}

/// Runs the binary on `plan`, reading both sides' TLS through the observers every
/// 20 ms while it runs.
fn run_watching(pair: &rig::QemuPair, plan: &str) -> Ran {
    let dir = pair.dir();
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let mut tool = Command::new(assert_cmd::cargo::cargo_bin("vfio-migrate"))
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .args(["--output", "json"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vfio-migrate");
    let mut seen = Seen::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    while tool.try_wait().expect("poll the tool").is_none() {
        assert!(Instant::now() < deadline, "the tool did not finish in 120 s");
        for (side, readings) in [
            (&pair.source, &mut seen.source),
            (&pair.destination, &mut seen.destination),
        ] {
            let now = tls_of(side);
            if readings.last() != Some(&now) {
                readings.push(now);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = tool.wait_with_output().expect("the tool's output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON report ({e}); stderr:\n{stderr}"));
    eprintln!("report: {report:#}\nseen: {seen:#?}\nstderr:\n{stderr}");
    Ran {
        code: out.status.code().unwrap_or(-1),
        report,
        seen,
        stderr,
    }
}

/// A plan for the pair with a `[migration]` table; a 64 MiB working set at 32 MiB/s
/// takes about two seconds, long enough to watch.
fn tls_plan(pair: &rig::QemuPair, migration: &str) -> String {
    let plan = plan_for(pair, "max_bandwidth = \"32MiB/s\"", "escalation = [\"abort\"]");
    format!("{plan}[migration]\n{migration}\n")
}

/// Nothing the tool added is left, and both parameters are as it found them.
fn assert_nothing_left(pair: &rig::QemuPair) {
    assert_eq!(tls_of(&pair.source), untouched(), "source");
    assert_eq!(tls_of(&pair.destination), untouched(), "destination");
}

/// After a failed handshake the destination still listens (QEMU has no command that
/// stops it): the source is as the tool found it, the destination keeps its
/// credentials, and a stranger's connection in the clear is not loaded as a stream.
fn assert_the_destination_listens_over_tls_only(pair: &rig::QemuPair) {
    assert_eq!(tls_of(&pair.source), untouched(), "source");
    assert_eq!(tls_of(&pair.destination), set("server", ""), "destination");
    let incoming = |pair: &rig::QemuPair| {
        let migrate = qmp(&pair.destination.observer_socket, "query-migrate", None);
        migrate["status"].as_str().unwrap_or("none").to_string()
    };
    assert_eq!(incoming(pair), "setup", "still listening");
    let mut stranger =
        std::net::TcpStream::connect(("127.0.0.1", pair.migration_port)).expect("the port is open");
    // The start of a migration stream in the clear: QEMU's magic and version.
    stranger.write_all(b"QEVM\0\0\0\x03").expect("send");
    drop(stranger);
    let loaded = wait_until(Duration::from_secs(1), || incoming(pair) != "setup");
    assert!(!loaded, "the destination took a plain stream: {}", incoming(pair));
}

fn toml_path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_guest_migrates_over_tls_and_the_tool_takes_its_credentials_back() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let pki = pair.dir().join("pki");
    let ca = Ca::new(pki.join("ca"), "vfio-migrate-test-ca");
    // One directory with all five files serves both sides, as `tls_dir`.
    let both = pki.join("both");
    ca.issue(&both, Role::Server, "IP:127.0.0.1");
    ca.issue(&both, Role::Client, "DNS:source.test");
    assert_nothing_left(&pair);
    // A name some earlier user left on the source: not the one to check this time.
    let stale = json!({"tls-hostname": "stale.example"});
    qmp(
        &pair.source.observer_socket,
        "migrate-set-parameters",
        Some(stale),
    );

    let plan = tls_plan(&pair, &format!("tls = true\ntls_dir = \"{}\"", toml_path(&both)));
    let Ran {
        code, report, seen, ..
    } = run_watching(&pair, &plan);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["result"], "migrated");
    assert_eq!(report["running_on"], "destination");

    // While it ran: the destination a server, the source a client checking the URI's
    // host (tls-hostname emptied), both verifying their peer.
    assert!(
        seen.destination.contains(&set("server", "")),
        "destination: {:?}",
        seen.destination
    );
    assert!(
        seen.source.contains(&set("client", "")),
        "source: {:?}",
        seen.source
    );
    // Afterwards nothing is left on either side, the source's name is back, and the
    // destination runs the guest.
    let found = Tls {
        hostname: "stale.example".into(),
        ..untouched()
    };
    assert_eq!(tls_of(&pair.source), found, "source");
    assert_eq!(tls_of(&pair.destination), untouched(), "destination");
    assert_eq!(status(&pair.destination.observer_socket), "running");
    assert_eq!(status(&pair.source.observer_socket), "postmigrate");
    assert_guest_alive(&pair.destination);
}

#[test]
fn tls_hostname_is_the_name_the_destinations_certificate_is_checked_against() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let pki = pair.dir().join("pki");
    let ca = Ca::new(pki.join("ca"), "vfio-migrate-test-ca");
    // The destination's certificate names a host, not the URI's 127.0.0.1; each side
    // has a directory of its own.
    let (source, destination) = (pki.join("source"), pki.join("destination"));
    ca.issue(&destination, Role::Server, "DNS:destination.migration.test");
    ca.issue(&source, Role::Client, "DNS:source.migration.test");
    let plan = tls_plan(
        &pair,
        &format!(
            "tls = true\ntls_dir_source = \"{}\"\ntls_dir_destination = \"{}\"\ntls_hostname = \"destination.migration.test\"",
            toml_path(&source),
            toml_path(&destination)
        ),
    );
    let Ran {
        code, report, seen, ..
    } = run_watching(&pair, &plan);
    assert_eq!(code, 0, "{report:#}");
    assert!(
        seen.source.contains(&set("client", "destination.migration.test")),
        "source: {:?}",
        seen.source
    );
    assert_nothing_left(&pair);
    assert_eq!(status(&pair.destination.observer_socket), "running");
    assert_guest_alive(&pair.destination);
}

#[test]
fn a_destination_certificate_from_another_ca_fails_the_handshake_and_the_vm_stays() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let pki = pair.dir().join("pki");
    let ours = Ca::new(pki.join("ca"), "vfio-migrate-test-ca");
    let theirs = Ca::new(pki.join("other-ca"), "another-ca");
    let (source, destination) = (pki.join("source"), pki.join("destination"));
    ours.issue(&source, Role::Client, "DNS:source.test");
    theirs.issue(&destination, Role::Server, "IP:127.0.0.1");
    let plan = tls_plan(
        &pair,
        &format!(
            "tls = true\ntls_dir_source = \"{}\"\ntls_dir_destination = \"{}\"",
            toml_path(&source),
            toml_path(&destination)
        ),
    );
    // The handshake fails at once: too soon to watch the credentials come and go.
    let Ran {
        code, report, stderr, ..
    } = run_watching(&pair, &plan);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["result"], "failed");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["changed"], false);
    assert_eq!(report["reason"]["kind"], "migration_failed", "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("certificate"), "the report says why: {error}");
    assert_the_destination_listens_over_tls_only(&pair);
    assert!(
        stderr.contains("still listening for a migration, so its TLS credentials"),
        "the run says why they stay: {stderr}"
    );
    assert_eq!(status(&pair.source.observer_socket), "running");
    assert_ne!(status(&pair.destination.observer_socket), "running");
    assert_guest_alive(&pair.source);
}

#[test]
fn a_source_certificate_from_another_ca_is_refused_by_the_destination() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let pki = pair.dir().join("pki");
    let ours = Ca::new(pki.join("ca"), "vfio-migrate-test-ca");
    let theirs = Ca::new(pki.join("other-ca"), "another-ca");
    let (source, destination) = (pki.join("source"), pki.join("destination"));
    // The source trusts the destination (its ca-cert.pem holds ours as well as the CA
    // of its own certificate, which QEMU checks when loading it), but presents a
    // certificate the destination's CA did not sign.
    theirs.issue(&source, Role::Client, "DNS:source.test");
    let bundle = [theirs.dir.join("ca-cert.pem"), ours.dir.join("ca-cert.pem")]
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("a CA certificate"))
        .collect::<String>();
    std::fs::write(source.join("ca-cert.pem"), bundle).expect("trust both");
    ours.issue(&destination, Role::Server, "IP:127.0.0.1");
    let plan = tls_plan(
        &pair,
        &format!(
            "tls = true\ntls_dir_source = \"{}\"\ntls_dir_destination = \"{}\"",
            toml_path(&source),
            toml_path(&destination)
        ),
    );
    let Ran {
        code, report, stderr, ..
    } = run_watching(&pair, &plan);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["result"], "failed");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["reason"]["kind"], "migration_failed", "{report:#}");
    // QEMU's source only sees the connection drop; the destination's log has the why.
    let log = std::fs::read_to_string(pair.dir().join("destination.stderr")).unwrap_or_default();
    assert!(log.contains("Verify failed"), "destination: {log}");
    assert_the_destination_listens_over_tls_only(&pair);
    assert!(
        stderr.contains("still listening for a migration, so its TLS credentials"),
        "the run says why they stay: {stderr}"
    );
    assert_eq!(status(&pair.source.observer_socket), "running");
    assert_ne!(status(&pair.destination.observer_socket), "running");
    assert_guest_alive(&pair.source);
}

#[test]
fn certificates_qemu_cannot_load_stop_the_run_before_anything_migrates() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let pki = pair.dir().join("pki");
    let ours = Ca::new(pki.join("ca"), "vfio-migrate-test-ca");
    let theirs = Ca::new(pki.join("other-ca"), "another-ca");
    let (source, destination) = (pki.join("source"), pki.join("destination"));
    ours.issue(&source, Role::Client, "DNS:source.test");
    ours.issue(&destination, Role::Server, "IP:127.0.0.1");
    let empty = pki.join("empty");
    std::fs::create_dir_all(&empty).expect("an empty directory");
    // A client certificate its own ca-cert.pem did not sign: QEMU checks that too.
    let mismatched = pki.join("mismatched");
    theirs.issue(&mismatched, Role::Client, "DNS:source.test");
    std::fs::copy(ours.dir.join("ca-cert.pem"), mismatched.join("ca-cert.pem")).expect("copy");
    let plan = |source: &Path, destination: &Path| {
        let dirs = format!(
            "tls = true\ntls_dir_source = \"{}\"\ntls_dir_destination = \"{}\"",
            toml_path(source),
            toml_path(destination)
        );
        tls_plan(&pair, &dirs)
    };

    // The destination's credentials are added first: they fail before the source is
    // touched.
    let Ran { code, report, .. } = run_watching(&pair, &plan(&source, &empty));
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["running_on"], "source");
    assert_eq!(report["reason"]["kind"], "driver", "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("destination")
            && error.contains("object-add: GenericError: Unable to access credentials")
            && error.contains("ca-cert.pem"),
        "QEMU's words, with the side and the command: {error}"
    );
    assert_eq!(report["transferred_bytes"], 0);
    assert_nothing_left(&pair);

    // The source's fail once the destination's were added: those are removed again.
    let Ran {
        code, report, seen, ..
    } = run_watching(&pair, &plan(&mismatched, &destination));
    assert_eq!(code, 1, "{report:#}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("source") && error.contains("object-add") && error.contains("failed validation"),
        "{error}"
    );
    assert_eq!(report["transferred_bytes"], 0);
    eprintln!("destination while it ran: {:?}", seen.destination);
    assert_nothing_left(&pair);
    assert_eq!(status(&pair.source.observer_socket), "running");
    assert_guest_alive(&pair.source);
}

#[test]
fn a_run_killed_mid_stream_has_its_guardian_take_the_credentials_back() {
    let _one = ONE_AT_A_TIME.lock();
    let pair = pair(64, 0);
    let pki = pair.dir().join("pki");
    let ca = Ca::new(pki.join("ca"), "vfio-migrate-test-ca");
    let both = pki.join("both");
    ca.issue(&both, Role::Server, "IP:127.0.0.1");
    ca.issue(&both, Role::Client, "DNS:source.test");
    // 64 MiB at 8 MiB/s: still streaming when the tool is killed.
    let plan = plan_for(&pair, "max_bandwidth = \"8MiB/s\"", "escalation = [\"abort\"]");
    let plan = format!(
        "{plan}[migration]\ntls = true\ntls_dir = \"{}\"\n",
        toml_path(&both)
    );
    let path = pair.dir().join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let mut tool = Command::new(assert_cmd::cargo::cargo_bin("vfio-migrate"))
        .env("VFIO_MIGRATE_STATE_DIR", pair.dir().join("state"))
        .args(["--output", "json"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start vfio-migrate");
    let streaming = wait_until(Duration::from_secs(20), || {
        let migrate = qmp(&pair.source.observer_socket, "query-migrate", None);
        migrate["status"] == "active" && tls_of(&pair.source) == set("client", "")
    });
    assert!(streaming, "the source streams over TLS");
    std::thread::sleep(Duration::from_millis(300));
    tool.kill().expect("SIGKILL the tool");
    let _ = tool.wait();

    let repaired = wait_until(Duration::from_secs(15), || {
        tls_of(&pair.source) == untouched()
            && tls_of(&pair.destination) == untouched()
            && status(&pair.source.observer_socket) == "running"
    });
    let log = std::fs::read_to_string(pair.dir().join("state/guardian.log")).unwrap_or_default();
    eprintln!("guardian log:\n{log}");
    assert!(repaired, "repaired");
    assert!(log.contains("died; repairing"), "the guardian repaired");
    let migrate = qmp(&pair.source.observer_socket, "query-migrate", None);
    assert_eq!(migrate["status"], "cancelled", "{migrate}");
    assert_ne!(status(&pair.destination.observer_socket), "running");
    assert_guest_alive(&pair.source);
}

/// Polls `check` every 20 ms until it holds or `within` passed; whether it held.
fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
