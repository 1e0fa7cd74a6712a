//! The README's main job, on the built-in simulated pair (the same demo falls back to it
//! where QEMU is not installed): it migrates, shows the devices, and says so on exit.
//! And `--libvirt`, which never falls back: through two private libvirt daemons where
//! libvirt can run, exit 3 with the reason where it cannot.

mod common;

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

/// `demo --libvirt`: the guest as a domain under two private libvirt daemons on this
/// machine, migrated through libvirt. Where libvirt cannot run (not installed, not root)
/// the demo exits 3 saying so, and the test says it is skipped, except under
/// `CI_REQUIRE_LIBVIRT=1`.
#[test]
fn the_libvirt_demo_migrates_the_domain_and_the_guest_runs_on_the_destination_daemon() {
    // The device model's wrapper, which the demo finds beside its own binary.
    common::model_wrapper();
    let cwd = tempfile::tempdir().expect("temporary directory");
    let out = Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .current_dir(cwd.path())
        .args(["--output", "json", "demo", "--libvirt"])
        .timeout(std::time::Duration::from_secs(180))
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    let msg = report["msg"].as_str().unwrap_or_default();
    if out.status.code() == Some(3) && msg.contains("libvirt is not usable here") {
        assert!(
            std::env::var("CI_REQUIRE_LIBVIRT").as_deref() != Ok("1"),
            "{msg}; CI_REQUIRE_LIBVIRT=1 forbids skipping"
        );
        eprintln!("skipped: {msg}");
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{stderr}");
    assert_eq!(report["result"], "migrated");
    assert_eq!(report["running_on"], "destination");
    assert_eq!(
        report["capabilities"]["switchover_hold"], false,
        "through libvirt, which answers pre-switchover itself"
    );
    // The two modelled devices, behind libvirt's monitor, each through stop-copy.
    let devices = report["devices"].as_array().expect("devices");
    assert_eq!(devices.len(), 2, "{report:#}");
    for device in devices {
        let states = device["timeline"].to_string();
        assert!(states.contains("stop-copy"), "{device:#}");
    }
    assert!(report["gate_opened_ms"].is_u64(), "{report:#}");
    assert!(stderr.contains("behind libvirt's monitor"), "{stderr}");
    // The guest's serial output on the destination daemon, after the migration.
    assert!(
        stderr.contains("guest alive on the destination daemon") && stderr.contains(", 0 memory errors"),
        "{stderr}"
    );
    assert!(cwd.path().join("vfio-migrate-demo-report.html").is_file());
}

/// Without root, private libvirt daemons cannot run: `--libvirt` exits 3 and says why
/// instead of falling back to QMP or the simulated pair. (As root, the demo runs as
/// `nobody` through `setpriv`.)
#[test]
fn the_libvirt_demo_without_root_exits_3_and_says_why() {
    use std::os::unix::fs::MetadataExt;
    let bin = assert_cmd::cargo::cargo_bin("vfio-migrate");
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    let mut cmd = match root {
        true => {
            let mut cmd = std::process::Command::new("setpriv");
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bin);
            cmd
        }
        false => std::process::Command::new(&bin),
    };
    let out = match cmd
        .current_dir("/")
        .args(["--output", "json", "demo", "--libvirt", "--scenario", "abort"])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: cannot run setpriv: {e}");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if root && matches!(out.status.code(), Some(126 | 127)) {
        eprintln!("skipped: nobody cannot run {}: {stderr}", bin.display());
        return;
    }
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON answer");
    assert_eq!(out.status.code(), Some(3), "{report:#}\n{stderr}");
    assert_eq!(report["rc"], 3);
    assert_eq!(report["changed"], false);
    let msg = report["msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains("demo --libvirt cannot run: libvirt is not usable here"),
        "{msg}"
    );
}

#[test]
fn libvirt_and_the_simulated_pair_exclude_each_other() {
    Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["demo", "--libvirt", "--sim"])
        .assert()
        .code(2);
}
