//! The README's main job, on the built-in simulated pair (the same demo falls back to it
//! where QEMU is not installed): it migrates, shows the devices, and says so on exit.

use assert_cmd::Command;
use serde_json::Value;

fn demo(args: &[&str]) -> (i32, Value) {
    // The demo draws its page into the current directory: not the source tree's.
    let cwd = tempfile::tempdir().expect("temporary directory");
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .current_dir(cwd.path())
        .args(["--output", "json", "demo", "--sim"])
        .args(args)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run");
    let report = serde_json::from_slice(&out.stdout).expect("one JSON report");
    (out.status.code().unwrap_or(-1), report)
}

#[test]
fn the_simulated_demo_migrates_with_both_devices_followed() {
    let (code, report) = demo(&[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(report["running_on"], "destination");
    let ids: Vec<&str> = report["devices"]
        .as_array()
        .expect("devices")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(ids, vec!["gpu0", "nic0"]);
    assert!(report["gate_opened_ms"].is_u64());
}

#[test]
fn the_simulated_abort_scenario_keeps_the_vm_on_the_source() {
    let (code, report) = demo(&["--scenario", "abort", "--no-devices"]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(report["running_on"], "source");
    assert!(report["error"]
        .as_str()
        .unwrap_or_default()
        .contains("not converging"));
}

#[test]
fn the_demo_draws_its_report_beside_the_kept_plan_and_prints_where() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let keep = dir.path().join("kept");
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .current_dir(dir.path())
        .args(["demo", "--sim", "--scenario", "force", "--keep"])
        .arg(&keep)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0));
    let page = keep.join("demo-report.html");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("report drawn: {}", page.display())),
        "{stderr}"
    );
    let html = std::fs::read_to_string(&page).expect("the page");
    assert!(html.contains("demo-force"));
    assert!(html.contains(r#"data-action="raise-downtime""#));
    assert!(keep.join("demo-plan.toml").is_file());
}

#[test]
fn without_a_kept_directory_the_demo_draws_into_the_current_one() {
    let dir = tempfile::tempdir().expect("temporary directory");
    Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .current_dir(dir.path())
        .args(["--quiet", "demo", "--sim", "--no-devices"])
        .timeout(std::time::Duration::from_secs(60))
        .assert()
        .code(0);
    assert!(dir.path().join("vfio-migrate-demo-report.html").is_file());
}
