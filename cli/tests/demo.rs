//! The README's main job, on the built-in simulated pair (the same demo falls back to it
//! where QEMU is not installed): it migrates, shows the devices, and says so on exit.

use assert_cmd::Command;
use serde_json::Value;

fn demo(args: &[&str]) -> (i32, Value) {
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
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
