//! The Ansible contract: with `--output json` every command prints exactly one JSON
//! object on stdout, and that object always has `changed` (bool), `failed` (bool), `msg`
//! (string) and `rc` (the exit code), whatever went wrong: a refused command line, an
//! invalid plan, hosts that do not answer. Logs go to stderr. No QEMU is needed: plans
//! here point at monitor sockets that do not exist (the not-ready shapes); the ready and
//! migrated shapes against a real QEMU pair are in `check_qemu.rs`, `migrate_qemu.rs` and
//! `ansible_qemu.rs`.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

const GOOD: &str = r#"[vm]
name = "nowhere"
[source]
qmp = "unix:/nonexistent/vfio-migrate-test/src.qmp"
[destination]
qmp = "unix:/nonexistent/vfio-migrate-test/dst.qmp"
listen = "tcp:127.0.0.1:49999"
"#;

const BAD: &str = r#"[vm]
name = 7
[source]
qmp = "unix:/nonexistent/vfio-migrate-test/src.qmp"
"#;

struct Answer {
    code: i32,
    json: Value,
    stderr: String,
}

/// Runs the binary with `args` (`{good}` and `{bad}` stand for the two plans' paths) and
/// checks the contract; returns what it printed.
fn answer(dir: &Path, args: &[&str]) -> Answer {
    let good = dir.join("good.toml");
    let bad = dir.join("bad.toml");
    std::fs::write(&good, GOOD).expect("write the good plan");
    std::fs::write(&bad, BAD).expect("write the bad plan");
    let args: Vec<String> = args
        .iter()
        .map(|a| {
            a.replace("{good}", &good.to_string_lossy())
                .replace("{bad}", &bad.to_string_lossy())
        })
        .collect();
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .args(&args)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run vfio-migrate");
    let code = out.status.code().unwrap_or(-1);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = one_object(&stdout)
        .unwrap_or_else(|why| panic!("{args:?}: {why}\nstdout:\n{stdout}\nstderr:\n{stderr}"));
    for key in ["changed", "failed"] {
        assert!(
            json[key].is_boolean(),
            "{args:?}: `{key}` is not a bool: {json:#}"
        );
    }
    assert!(
        json["msg"].is_string(),
        "{args:?}: `msg` is not a string: {json:#}"
    );
    assert!(
        !json["msg"].as_str().unwrap_or_default().is_empty(),
        "{args:?}: `msg` is empty"
    );
    assert_eq!(
        json["rc"].as_i64(),
        Some(i64::from(code)),
        "{args:?}: `rc` is not the exit code: {json:#}"
    );
    assert_eq!(
        json["failed"],
        code != 0,
        "{args:?}: `failed` disagrees with the exit code"
    );
    Answer { code, json, stderr }
}

/// stdout is exactly one JSON object (and a newline), nothing before or after it.
fn one_object(stdout: &str) -> Result<Value, String> {
    let values: Vec<Value> = serde_json::Deserializer::from_str(stdout)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .map_err(|e| format!("stdout is not JSON: {e}"))?;
    match values.as_slice() {
        [value @ Value::Object(_)] => Ok(value.clone()),
        [] => Err("stdout is empty".into()),
        more => Err(format!("stdout holds {} values, not one object", more.len())),
    }
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

#[test]
fn validate_answers_with_the_four_keys_for_a_good_and_a_bad_plan() {
    let dir = dir();
    let good = answer(dir.path(), &["--output", "json", "validate", "{good}"]);
    assert_eq!(good.code, 0);
    assert_eq!(good.json["changed"], false);
    let bad = answer(dir.path(), &["--output", "json", "validate", "{bad}"]);
    assert_eq!(bad.code, 2);
    assert_eq!(bad.json["changed"], false);
}

#[test]
fn a_run_answers_with_the_four_keys_when_the_plan_is_bad_or_the_hosts_do_not_answer() {
    let dir = dir();
    for form in [
        &["--output", "json", "{good}"][..],
        &["--output", "json", "migrate", "{good}"],
    ] {
        let unreachable = answer(dir.path(), form);
        assert_eq!(unreachable.code, 3, "{:#}", unreachable.json);
        assert_eq!(unreachable.json["changed"], false);
        assert_eq!(unreachable.json["running_on"], "unknown");
    }
    let bad = answer(dir.path(), &["--output", "json", "{bad}"]);
    assert_eq!(bad.code, 2);
    assert_eq!(bad.json["result"], "invalid");
}

#[test]
fn an_evacuation_answers_with_the_four_keys_and_each_vm_inside() {
    let dir = dir();
    let unreachable = answer(
        dir.path(),
        &[
            "--output",
            "json",
            "run",
            "--bandwidth-budget",
            "100MiB/s",
            "{good}",
        ],
    );
    assert_eq!(
        unreachable.code, 3,
        "the worst of the VMs': {:#}",
        unreachable.json
    );
    assert_eq!(
        unreachable.json["summary"]["failed"], 1,
        "not ready: nothing was changed"
    );
    assert_eq!(unreachable.json["vms"][0]["running_on"], "unknown");
    assert_eq!(unreachable.json["vms"][0]["rc"], 3);
    assert!(unreachable.json["vms"][0]["plan_file"].is_string());
    // One bad plan among good ones: nothing is started.
    let bad = answer(dir.path(), &["--output", "json", "run", "{good}", "{bad}"]);
    assert_eq!(bad.code, 2);
    assert_eq!(bad.json["result"], "invalid");
    let starved = answer(
        dir.path(),
        &[
            "--output",
            "json",
            "run",
            "--parallel",
            "4",
            "--bandwidth-budget",
            "2MiB/s",
            "{good}",
        ],
    );
    assert_eq!(starved.code, 2, "{:#}", starved.json);
    assert!(starved.json["msg"]
        .as_str()
        .unwrap_or_default()
        .contains("at least 1 MiB/s"));
}

#[test]
fn check_answers_with_the_four_keys_when_the_monitors_are_missing_or_the_plan_is_bad() {
    let dir = dir();
    let not_ready = answer(dir.path(), &["--output", "json", "check", "{good}"]);
    assert_eq!(not_ready.code, 3);
    assert_eq!(not_ready.json["changed"], false);
    assert_eq!(not_ready.json["verdict"], "not_ready");
    assert!(not_ready.json["rows"].is_array());
    let bad = answer(dir.path(), &["--output", "json", "check", "{bad}"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn recover_answers_with_the_four_keys_when_it_cannot_reach_the_hosts_or_the_plan_is_bad() {
    let dir = dir();
    let unreachable = answer(dir.path(), &["--output", "json", "recover", "{good}"]);
    assert_eq!(unreachable.code, 4);
    assert_eq!(unreachable.json["changed"], false);
    let bad = answer(dir.path(), &["--output", "json", "recover", "{bad}"]);
    assert_eq!(bad.code, 2);
}

#[test]
fn a_refused_command_line_answers_in_json_when_json_was_asked_for_in_any_spelling() {
    let dir = dir();
    let refused: [&[&str]; 8] = [
        &["--output", "json", "--frobnicate", "{good}"],
        &["-o", "json", "check"],
        &["--output=json", "validate", "{good}", "{bad}"],
        &["-ojson", "recover"],
        &["-qo", "json", "--frobnicate"],
        &["check", "{good}", "--output", "json", "--no-such-flag"],
        &["--output", "json", "demo", "--scenario", "no-such-scenario"],
        &["--output", "ndjson", "completions", "no-such-shell"],
    ];
    for args in refused {
        let usage = answer(dir.path(), args);
        assert_eq!(usage.code, 2, "{args:?}");
        assert_eq!(usage.json["changed"], false);
        assert!(
            usage.stderr.contains("error:"),
            "{args:?}: clap's own words go to stderr: {}",
            usage.stderr
        );
    }
    let missing = answer(dir.path(), &["-o", "json", "check"]);
    assert_eq!(
        missing.json["msg"],
        "the following required arguments were not provided: <PLAN>"
    );
    let unknown = answer(dir.path(), &["--output", "json", "--frobnicate"]);
    assert_eq!(unknown.json["msg"], "unexpected argument '--frobnicate' found");
}

#[test]
fn no_plan_at_all_answers_in_json() {
    let dir = dir();
    let none = answer(dir.path(), &["--output", "json"]);
    assert_eq!(none.code, 2);
    assert!(none.json["msg"]
        .as_str()
        .unwrap_or_default()
        .starts_with("no plan given"));
}

#[test]
fn a_refused_command_line_without_json_stays_clap_text_on_stderr() {
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["--frobnicate"])
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run vfio-migrate");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unexpected argument '--frobnicate'"));
    // `-o` with a value that is not JSON is not a request for JSON.
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["-o", "yaml", "validate", "x.toml"])
        .timeout(Duration::from_secs(30))
        .output()
        .expect("run vfio-migrate");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[test]
fn help_and_version_stay_text_on_stdout_and_exit_0_even_with_json_output() {
    for (args, want) in [
        (&["--output", "json", "--help"][..], "Usage: vfio-migrate"),
        (&["-o", "json", "check", "--help"], "Usage: vfio-migrate check"),
        (&["--output=json", "--version"], "vfio-migrate "),
    ] {
        let out = assert_cmd::Command::cargo_bin("vfio-migrate")
            .expect("binary")
            .args(args)
            .timeout(Duration::from_secs(30))
            .output()
            .expect("run vfio-migrate");
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains(want), "{args:?}: {stdout}");
        assert!(
            serde_json::from_str::<Value>(&stdout).is_err(),
            "{args:?}: help is not JSON"
        );
    }
}

#[test]
fn ndjson_ends_with_a_report_that_has_the_four_keys() {
    let dir = dir();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, GOOD).expect("write the plan");
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .env("VFIO_MIGRATE_STATE_DIR", dir.path().join("state"))
        .args(["--output", "ndjson"])
        .arg(&good)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run vfio-migrate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let report = lines.last().expect("at least the report");
    assert_eq!(report["event"], "report");
    assert_eq!(report["rc"].as_i64(), out.status.code().map(i64::from));
    assert_eq!(report["failed"], true);
    assert_eq!(report["changed"], false);
    assert!(report["msg"].is_string());
}
