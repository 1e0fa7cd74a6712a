//! `check --host` and `check --side` on the sysfs fixture trees (see
//! `backends/tests/fixtures/hosts/README.md`): the host's own rows, no monitor needed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../backends/tests/fixtures/hosts")
        .join(name)
}

fn check(args: &[&str]) -> (i32, Value) {
    let out = assert_cmd::Command::cargo_bin("vfio-migrate")
        .expect("binary")
        .args(["--output", "json", "check"])
        .args(args)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run vfio-migrate check");
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is one JSON object ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), answer)
}

fn status<'a>(answer: &'a Value, id: &str) -> &'a str {
    answer["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == id))
        .and_then(|r| r["status"].as_str())
        .unwrap_or_else(|| panic!("no row {id} in {answer:#}"))
}

/// A plan whose one device is at `address` on the source; its monitors do not exist.
fn plan(dir: &Path, address: &str, escalation: &str) -> PathBuf {
    let path = dir.join("plan.toml");
    let text = format!(
        "[vm]\nname = \"v\"\n[source]\nqmp = \"unix:{0}/src.qmp\"\n[destination]\nqmp = \"unix:{0}/dst.qmp\"\nlisten = \"tcp:127.0.0.1:4444\"\n[[devices]]\nid = \"nic0\"\nhost = \"{address}\"\nstate_size = \"8MiB\"\n[policy]\nescalation = {escalation}\n",
        dir.display()
    );
    std::fs::write(&path, text).expect("write plan");
    path
}

#[test]
fn a_host_with_a_migration_capable_driver_and_iommu_dirty_tracking_is_ready() {
    let root = fixture("intel-ssads");
    let (code, answer) = check(&["--host", "--sysfs-root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 0, "{answer:#}");
    assert_eq!(answer["changed"], false);
    assert_eq!(status(&answer, "host.iommu.dirty_tracking"), "pass");
    assert_eq!(status(&answer, "host.device.0000:3b:00.1.driver"), "pass");
}

#[test]
fn a_host_without_dev_vfio_is_not_ready() {
    let root = fixture("no-vfio");
    let (code, answer) = check(&["--host", "--sysfs-root", root.to_str().expect("utf-8 path")]);
    assert_eq!(code, 3);
    assert_eq!(answer["failed"], true);
    assert_eq!(status(&answer, "host.dev.vfio"), "fail");
}

#[test]
fn check_side_source_fails_a_plan_device_bound_to_plain_vfio_pci_without_any_monitor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path(), "0000:5e:00.0", "[\"abort\"]");
    let root = fixture("intel-ssads");
    let (code, answer) = check(&[
        "--side",
        "source",
        "--sysfs-root",
        root.to_str().expect("utf-8"),
        plan.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 3, "{answer:#}");
    assert_eq!(status(&answer, "device.nic0.source.driver"), "fail");
    assert_eq!(answer["host_devices"][0]["side"], "source");
    assert_eq!(answer["host_devices"][0]["device"]["address"], "0000:5e:00.0");
}

#[test]
fn check_side_destination_says_when_it_cannot_know_the_device_address_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan(dir.path(), "0000:3b:00.1", "[\"abort\"]");
    let root = fixture("intel-ssads");
    let (code, answer) = check(&[
        "--side",
        "destination",
        "--sysfs-root",
        root.to_str().expect("utf-8"),
        plan.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{answer:#}");
    assert_eq!(status(&answer, "device.nic0.destination_host"), "warn");
}

#[test]
fn a_device_without_any_dirty_tracking_fails_a_plan_that_cannot_force_the_downtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fixture("amd-no-hdsup");
    let root = root.to_str().expect("utf-8");
    let aborting = plan(dir.path(), "0000:c2:00.1", "[\"abort\"]");
    let (code, answer) = check(&[
        "--side",
        "source",
        "--sysfs-root",
        root,
        aborting.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 3, "{answer:#}");
    assert_eq!(status(&answer, "device.nic0.source.converges"), "fail");
    let forcing = plan(dir.path(), "0000:c2:00.1", "[\"force-downtime\", \"abort\"]");
    let (_, answer) = check(&[
        "--side",
        "source",
        "--sysfs-root",
        root,
        forcing.to_str().expect("utf-8"),
    ]);
    assert_eq!(status(&answer, "device.nic0.source.converges"), "warn");
}

/// A plan whose devices (`id`, source address, precopy) are on the source.
fn plan_with(dir: &Path, devices: &[(&str, &str, bool)]) -> PathBuf {
    let path = dir.join("devices-plan.toml");
    let mut text = format!(
        "[vm]\nname = \"v\"\n[source]\nqmp = \"unix:{0}/src.qmp\"\n[destination]\nqmp = \"unix:{0}/dst.qmp\"\nlisten = \"tcp:127.0.0.1:4444\"\n",
        dir.display()
    );
    for (id, address, precopy) in devices {
        text.push_str(&format!(
            "[[devices]]\nid = \"{id}\"\nhost = \"{address}\"\nprecopy = {precopy}\nstate_size = \"8MiB\"\n"
        ));
    }
    std::fs::write(&path, text).expect("write plan");
    path
}

#[test]
fn several_devices_fail_when_one_of_them_has_no_p2p_and_the_row_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = plan_with(
        dir.path(),
        &[("nic0", "0000:3b:00.1", false), ("nic1", "0000:5e:00.0", false)],
    );
    let root = fixture("intel-ssads");
    let (code, answer) = check(&[
        "--side",
        "source",
        "--sysfs-root",
        root.to_str().expect("utf-8"),
        plan.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 3);
    let row = answer["rows"]
        .as_array()
        .and_then(|r| r.iter().find(|r| r["id"] == "devices.source.p2p"))
        .expect("p2p row");
    assert_eq!(row["status"], "fail");
    assert!(
        row["finding"]
            .as_str()
            .is_some_and(|f| f.contains("nic1 without P2P")),
        "{row}"
    );
}

#[test]
fn a_plan_declaring_precopy_for_a_driver_without_it_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = fixture("amd-hdsup");
    let root = root.to_str().expect("utf-8");
    let declared = plan_with(dir.path(), &[("accel0", "0000:c1:00.1", true)]);
    let (code, answer) = check(&[
        "--side",
        "source",
        "--sysfs-root",
        root,
        declared.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 3, "{answer:#}");
    assert_eq!(status(&answer, "device.accel0.source.precopy"), "fail");
    let honest = plan_with(dir.path(), &[("accel0", "0000:c1:00.1", false)]);
    let (code, answer) = check(&[
        "--side",
        "source",
        "--sysfs-root",
        root,
        honest.to_str().expect("utf-8"),
    ]);
    assert_eq!(status(&answer, "device.accel0.source.precopy"), "pass");
    assert_eq!(code, 0, "{answer:#}");
}
