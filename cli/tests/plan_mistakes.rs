//! Every kind of plan mistake is reported with exit code 2, the file, the line and
//! column of the offending key or value, the key's dotted path, and a hint. These run the
//! real binary's `validate` (which contacts no host).

use assert_cmd::Command;

/// A valid plan; each case below breaks one thing in it.
const BASE: &str = r#"[vm]
name = "db-01"

[source]
qmp = "unix:/run/src.qmp"

[destination]
qmp = "unix:/run/dst.qmp"
listen = "tcp:127.0.0.1:49152"
"#;

struct Outcome {
    code: i32,
    stderr: String,
}

fn validate(text: &str) -> Outcome {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, text).expect("write plan");
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .arg("validate")
        .arg(&path)
        .output()
        .expect("run");
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).replace(&*path.display().to_string(), "plan.toml"),
    }
}

/// Asserts exit 2 and an error line `plan.toml:LINE:COL: KEY: ...` containing `message`.
fn assert_mistake(text: &str, line: usize, key: &str, message: &str) {
    let out = validate(text);
    assert_eq!(out.code, 2, "exit code; stderr:\n{}", out.stderr);
    let wanted = format!("plan.toml:{line}:");
    let found = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error: ") && l.contains(&wanted) && l.contains(&format!(" {key}: ")));
    let Some(found) = found else {
        panic!("no error at line {line} for key {key}; stderr:\n{}", out.stderr);
    };
    assert!(found.contains(message), "{found:?} should mention {message:?}");
    assert!(
        out.stderr.contains("= hint:") || key.is_empty(),
        "a hint is shown:\n{}",
        out.stderr
    );
}

fn with(extra: &str) -> String {
    format!("{BASE}\n{extra}")
}

#[test]
fn the_base_plan_is_valid() {
    let out = validate(BASE);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn unknown_key_is_named_with_a_did_you_mean() {
    let text = with("[limits]\ndowntme = \"300ms\"\n");
    assert_mistake(&text, 12, "limits.downtme", "unknown key `downtme`");
    assert!(validate(&text).stderr.contains("did you mean `downtime`?"));
}

#[test]
fn unknown_table_is_rejected() {
    assert_mistake(
        &with("[limit]\ndowntime = \"1s\"\n"),
        11,
        "limit",
        "unknown key `limit`",
    );
}

#[test]
fn wrong_type_names_what_was_expected() {
    assert_mistake(
        &with("[convergence]\nstall_passes = \"two\"\n"),
        12,
        "convergence.stall_passes",
        "expected an integer, found a string",
    );
}

#[test]
fn duration_without_unit_is_rejected() {
    assert_mistake(
        &with("[limits]\ndowntime = \"300\"\n"),
        12,
        "limits.downtime",
        "invalid duration",
    );
}

#[test]
fn duration_given_as_a_number_is_rejected() {
    assert_mistake(
        &with("[limits]\ndeadline = 600\n"),
        12,
        "limits.deadline",
        "expected a duration as a string with a unit",
    );
}

#[test]
fn zero_duration_is_rejected() {
    assert_mistake(
        &with("[limits]\ndeadline = \"0s\"\n"),
        12,
        "limits.deadline",
        "must be greater than zero",
    );
}

#[test]
fn zero_rate_is_rejected() {
    assert_mistake(
        &with("[limits]\nmax_bandwidth = \"0MiB/s\"\n"),
        12,
        "limits.max_bandwidth",
        "must be greater than zero",
    );
}

#[test]
fn rate_without_per_second_is_rejected() {
    assert_mistake(
        &with("[limits]\nmax_bandwidth = \"128MiB\"\n"),
        12,
        "limits.max_bandwidth",
        "invalid rate",
    );
}

#[test]
fn negative_integer_is_out_of_range() {
    assert_mistake(
        &with("[convergence]\nstall_passes = -1\n"),
        12,
        "convergence.stall_passes",
        "out of range",
    );
}

#[test]
fn zero_stall_passes_is_out_of_range() {
    assert_mistake(
        &with("[convergence]\nstall_passes = 0\n"),
        12,
        "convergence.stall_passes",
        "out of range",
    );
}

#[test]
fn missing_source_is_reported_at_the_document() {
    let text = BASE.replace("[source]\nqmp = \"unix:/run/src.qmp\"\n", "");
    assert_mistake(&text, 1, "source", "missing required key `source`");
}

#[test]
fn missing_qmp_address_is_reported_at_its_table() {
    let text = BASE.replace("qmp = \"unix:/run/dst.qmp\"\n", "");
    assert_mistake(&text, 7, "destination.qmp", "missing required key `qmp`");
}

#[test]
fn postcopy_with_vfio_devices_is_refused() {
    let text = with("[migration]\npostcopy = true\n\n[[devices]]\nid = \"hostdev0\"\n");
    assert_mistake(
        &text,
        12,
        "migration.postcopy",
        "post-copy is not supported with VFIO devices",
    );
}

#[test]
fn remote_qmp_over_tcp_is_refused() {
    let text = BASE.replace("unix:/run/dst.qmp", "tcp:192.0.2.10:4444");
    assert_mistake(
        &text,
        8,
        "destination.qmp",
        "QMP over TCP to 192.0.2.10 is refused",
    );
}

#[test]
fn malformed_qmp_address_is_rejected() {
    let text = BASE.replace("unix:/run/src.qmp", "/run/src.qmp");
    assert_mistake(&text, 5, "source.qmp", "is not a QMP address");
}

#[test]
fn unsupported_migration_uri_is_rejected() {
    let text = BASE.replace("tcp:127.0.0.1:49152", "exec:cat > /tmp/x");
    assert_mistake(&text, 9, "destination.listen", "not a migration URI");
}

#[test]
fn max_downtime_below_downtime_is_rejected() {
    let text = with("[limits]\ndowntime = \"2s\"\nmax_downtime = \"1s\"\n");
    assert_mistake(&text, 13, "limits.max_downtime", "is smaller than `downtime`");
}

#[test]
fn downtime_above_qemus_maximum_is_rejected() {
    let text = with("[limits]\ndowntime = \"1h\"\nmax_downtime = \"1h\"\n");
    assert_mistake(
        &text,
        12,
        "limits.downtime",
        "above QEMU's largest downtime limit",
    );
}

#[test]
fn unknown_escalation_step_is_rejected() {
    assert_mistake(
        &with("[policy]\nescalation = [\"pray\"]\n"),
        12,
        "policy.escalation[0]",
        "unknown step",
    );
}

#[test]
fn step_after_abort_is_rejected() {
    let text = with("[policy]\nescalation = [\"abort\", \"throttle\"]\n");
    assert_mistake(&text, 12, "policy.escalation[1]", "comes after \"abort\"");
}

#[test]
fn empty_escalation_is_rejected() {
    assert_mistake(
        &with("[policy]\nescalation = []\n"),
        12,
        "policy.escalation",
        "at least one step",
    );
}

#[test]
fn unknown_throttle_method_lists_the_choices() {
    let text = with("[policy]\nthrottle = \"brakes\"\n");
    assert_mistake(&text, 12, "policy.throttle", "unknown value \"brakes\"");
    assert!(validate(&text)
        .stderr
        .contains("\"auto-converge\", \"dirty-limit\""));
}

#[test]
fn stop_guest_with_vfio_devices_is_refused() {
    let text = with("[policy]\nforce = \"stop-guest\"\n\n[[devices]]\nid = \"gpu0\"\n");
    assert_mistake(&text, 12, "policy.force", "cannot be used with VFIO devices");
}

#[test]
fn duplicate_device_is_rejected() {
    let text = with("[[devices]]\nid = \"gpu0\"\n\n[[devices]]\nid = \"gpu0\"\n");
    assert_mistake(&text, 15, "devices[1].id", "listed twice");
}

#[test]
fn bad_pci_address_is_rejected() {
    let text = with("[[devices]]\nid = \"gpu0\"\nhost = \"3b:00.1\"\n");
    assert_mistake(&text, 13, "devices[0].host", "is not a PCI address");
}

#[test]
fn bad_device_state_size_is_rejected() {
    let text = with("[[devices]]\nid = \"gpu0\"\nstate_size = \"lots\"\n");
    assert_mistake(&text, 13, "devices[0].state_size", "invalid size");
}

#[test]
fn same_socket_on_both_sides_is_rejected() {
    let text = BASE.replace("unix:/run/dst.qmp", "unix:/run/src.qmp");
    assert_mistake(&text, 8, "destination.qmp", "same QMP socket");
}

#[test]
fn missing_migration_uri_is_rejected() {
    let text = BASE.replace("listen = \"tcp:127.0.0.1:49152\"\n", "");
    assert_mistake(&text, 7, "migration.uri", "no migration URI");
}

#[test]
fn toml_syntax_error_points_at_the_line() {
    let out = validate(&with("[limits\ndowntime = \"1s\"\n"));
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("plan.toml:11:"), "{}", out.stderr);
    assert!(out.stderr.contains("TOML syntax"), "{}", out.stderr);
}

#[test]
fn every_mistake_is_reported_at_once() {
    let text =
        with("[limits]\ndowntime = \"soon\"\ndeadline = \"0s\"\n\n[policy]\nthrotle = \"dirty-limit\"\n");
    let out = validate(&text);
    assert_eq!(out.code, 2);
    assert_eq!(out.stderr.matches("error: ").count(), 3, "{}", out.stderr);
    assert!(out.stderr.contains("3 mistakes in plan.toml"), "{}", out.stderr);
}

#[test]
fn missing_plan_file_is_a_usage_error() {
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["validate", "/nonexistent/plan.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read plan /nonexistent/plan.toml"));
}

#[test]
fn json_output_carries_every_mistake_with_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("plan.toml");
    std::fs::write(&path, with("[limits]\ndowntime = \"soon\"\n")).expect("write");
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["--output", "json", "validate"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert_eq!(v["failed"], true);
    assert_eq!(v["rc"], 2);
    assert_eq!(v["errors"][0]["line"], 12);
    assert_eq!(v["errors"][0]["column"], 12);
    assert_eq!(v["errors"][0]["key"], "limits.downtime");
}
