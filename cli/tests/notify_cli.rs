//! Webhooks on the command line, without QEMU: a key whose variable is missing stops the
//! run before it contacts anything, a key is never printed, and a run that ends before
//! the migration (hosts not ready) still tells the receiver how it ended.

mod common;

use std::path::Path;
use std::time::Duration;

use common::hooks::{Answer, Receiver};
use serde_json::Value;

/// A plan whose monitors do not exist: the run ends at connect, not ready.
const NOWHERE: &str = r#"[vm]
name = "nowhere"
[source]
qmp = "unix:/nonexistent/vfio-migrate-test/src.qmp"
[destination]
qmp = "unix:/nonexistent/vfio-migrate-test/dst.qmp"
listen = "tcp:127.0.0.1:49999"
"#;

const KEY: &str = "never-print-this-key";

struct Answered {
    code: i32,
    json: Value,
    stdout: String,
    stderr: String,
}

/// Runs the binary with `args` (`{plan}` stands for the plan's path), `env` set.
fn answer(dir: &Path, plan: &str, args: &[&str], env: &[(&str, &str)]) -> Answered {
    let path = dir.join("plan.toml");
    std::fs::write(&path, plan).expect("write plan");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.replace("{plan}", &path.to_string_lossy()))
        .collect();
    let mut command = assert_cmd::Command::cargo_bin("vfio-migrate").expect("binary");
    command
        .env("VFIO_MIGRATE_STATE_DIR", dir.join("state"))
        .env_remove("HOOK_KEY")
        .args(&args)
        .timeout(Duration::from_secs(60));
    for (name, value) in env {
        command.env(name, value);
    }
    let out = command.output().expect("run vfio-migrate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Answered {
        code: out.status.code().unwrap_or(-1),
        json,
        stdout,
        stderr,
    }
}

#[test]
fn an_unset_key_variable_stops_the_run_before_anything_is_contacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start(Answer::Status(204));
    let a = answer(
        dir.path(),
        NOWHERE,
        &[
            "-o",
            "json",
            "--notify",
            &receiver.url,
            "--notify-secret-env",
            "HOOK_KEY",
            "{plan}",
        ],
        &[],
    );
    assert_eq!(a.code, 3, "{}\n{}", a.stdout, a.stderr);
    assert_eq!(a.json["rc"], 3);
    assert_eq!(a.json["changed"], false);
    assert_eq!(a.json["failed"], true);
    let msg = a.json["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("HOOK_KEY is not set"), "{msg}");
    assert!(!msg.contains("nonexistent"), "no monitor was contacted: {msg}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(receiver.requests().is_empty(), "nothing was sent");
    let empty = answer(
        dir.path(),
        NOWHERE,
        &[
            "--notify",
            &receiver.url,
            "--notify-secret-env",
            "HOOK_KEY",
            "{plan}",
        ],
        &[("HOOK_KEY", "")],
    );
    assert_eq!(empty.code, 3);
    assert!(empty.stderr.contains("HOOK_KEY is empty"), "{}", empty.stderr);
}

#[test]
fn a_key_given_where_its_variables_name_belongs_is_refused_and_never_printed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = answer(
        dir.path(),
        NOWHERE,
        &[
            "-o",
            "json",
            "--notify",
            "http://127.0.0.1:9/hook",
            "--notify-secret-env",
            KEY,
            "{plan}",
        ],
        &[],
    );
    assert_eq!(a.code, 2, "{}\n{}", a.stdout, a.stderr);
    assert_eq!(a.json["rc"], 2);
    assert!(
        !a.stdout.contains(KEY) && !a.stderr.contains(KEY),
        "{}\n{}",
        a.stdout,
        a.stderr
    );
    let in_plan =
        format!("{NOWHERE}[notify]\nurls = [\"http://127.0.0.1:9/hook\"]\nsecret_env = \"{KEY}\"\n");
    let a = answer(dir.path(), &in_plan, &["validate", "{plan}"], &[]);
    assert_eq!(a.code, 2);
    assert!(
        !a.stdout.contains(KEY) && !a.stderr.contains(KEY),
        "{}\n{}",
        a.stdout,
        a.stderr
    );
}

#[test]
fn a_key_variable_without_webhooks_is_a_usage_mistake() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = answer(
        dir.path(),
        NOWHERE,
        &["-o", "json", "--notify-secret-env", "HOOK_KEY", "{plan}"],
        &[],
    );
    assert_eq!(a.code, 2, "{}\n{}", a.stdout, a.stderr);
    assert!(
        a.json["msg"].as_str().unwrap_or_default().contains("no webhooks"),
        "{}",
        a.json
    );
}

#[test]
fn a_url_that_is_not_http_is_refused_on_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = answer(
        dir.path(),
        NOWHERE,
        &["-o", "json", "--notify", "ftp://hooks.example/", "{plan}"],
        &[],
    );
    assert_eq!(a.code, 2);
    assert!(
        a.json["msg"]
            .as_str()
            .unwrap_or_default()
            .contains("is not an http:// or https:// URL"),
        "{}",
        a.json
    );
}

#[test]
fn validate_echoes_the_key_variables_name_and_never_its_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan =
        format!("{NOWHERE}[notify]\nurls = [\"https://hooks.example/vfio\"]\nsecret_env = \"HOOK_KEY\"\n");
    let a = answer(
        dir.path(),
        &plan,
        &["-o", "json", "validate", "{plan}"],
        &[("HOOK_KEY", KEY)],
    );
    assert_eq!(a.code, 0, "{}", a.stderr);
    assert_eq!(a.json["plan"]["notify"]["secret_env"], "HOOK_KEY");
    assert_eq!(a.json["plan"]["notify"]["retry_for"], "30s");
    assert!(!a.stdout.contains(KEY));
}

#[test]
fn a_run_that_ends_before_the_migration_still_tells_the_receiver_how() {
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start(Answer::Status(204));
    let a = answer(
        dir.path(),
        NOWHERE,
        &[
            "-o",
            "json",
            "--notify",
            &receiver.url,
            "--notify-secret-env",
            "HOOK_KEY",
            "{plan}",
        ],
        &[("HOOK_KEY", KEY)],
    );
    assert_eq!(a.code, 3, "{}", a.stderr);
    assert_eq!(
        a.json["notify"],
        serde_json::json!({"sent": 3, "failed": 0, "dropped": 0})
    );
    let got = receiver.requests();
    let events: Vec<&str> = got.iter().map(|r| r.event.as_str()).collect();
    assert_eq!(events, ["run_started", "phase", "result"]);
    assert!(got.iter().all(|r| r.signed_with(KEY.as_bytes())));
    assert_eq!(got[2].json()["data"]["rc"], 3);
    assert!(!a.stdout.contains(KEY) && !a.stderr.contains(KEY));
}
