//! The host probes of `vfio-migrate check`, against sysfs fixture trees modelled on
//! real hosts (tests/fixtures/hosts/README.md describes each) and against this
//! machine's own `/`.

use std::path::PathBuf;

use backends::host::{compare_across_hosts, device_rows, host_rows, DeviceHost, DirtyTracking, Host};
use engine::check::{Row, Status};

fn fixture(name: &str) -> Host {
    Host::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/hosts")
            .join(name),
    )
}

fn row<'a>(rows: &'a [Row], id: &str) -> &'a Row {
    rows.iter()
        .find(|row| row.id == id)
        .unwrap_or_else(|| panic!("no row {id} in {rows:#?}"))
}

fn device(host: &str, plan_id: &str, address: &str) -> (Vec<Row>, DeviceHost) {
    device_rows(&fixture(host), plan_id, address)
}

fn assert_status(row: &Row, status: Status, words: &[&str]) {
    assert_eq!(row.status, status, "{row:#?}");
    for word in words {
        assert!(row.finding.contains(word), "{:?} not in {row:#?}", word);
    }
    if status != Status::Pass {
        assert!(
            !row.hint.is_empty(),
            "a {} row needs a hint: {row:#?}",
            status.word()
        );
    }
}

// Devices of a plan.

#[test]
fn a_connectx_vf_on_mlx5_vfio_pci_passes_every_check_and_logs_its_own_dma() {
    let (rows, read) = device("intel-ssads", "nic0", "0000:3b:00.1");
    for row in &rows {
        assert_eq!(row.status, Status::Pass, "{row:#?}");
    }
    assert_status(
        row(&rows, "device.nic0.driver"),
        Status::Pass,
        &["mlx5_vfio_pci", "15b3:101e", "P2P yes"],
    );
    assert_status(
        row(&rows, "device.nic0.iommu_group"),
        Status::Pass,
        &["/dev/vfio/42", "/dev/vfio/devices/vfio0"],
    );
    assert_eq!(read.driver.as_deref(), Some("mlx5_vfio_pci"));
    assert_eq!(
        (read.vendor_id.as_deref(), read.device_id.as_deref()),
        (Some("15b3"), Some("101e"))
    );
    assert_eq!(read.iommu_group, Some(42));
    assert_eq!(read.iommu.as_deref(), Some("dmar1"));
    assert_eq!(read.dirty_tracking, DirtyTracking::DeviceDmaLogging);
    assert!(!read.predicts_non_convergence());
}

#[test]
fn a_short_pci_address_names_the_same_device_in_domain_zero() {
    let (_, read) = device("intel-ssads", "nic0", "3B:00.1");
    assert!(read.present);
    assert_eq!(read.address, "0000:3b:00.1");
}

#[test]
fn a_virtio_vf_is_tracked_by_the_iommu_on_intel_with_ssads_and_iommufd() {
    let (rows, read) = device("intel-ssads", "net0", "0000:3d:00.1");
    assert_status(
        row(&rows, "device.net0.driver"),
        Status::Pass,
        &["virtio_vfio_pci", "needs IOMMU dirty tracking"],
    );
    assert_status(
        row(&rows, "device.net0.dirty_tracking"),
        Status::Pass,
        &["dmar1", "SSADS (bit 45) set", "iommufd"],
    );
    assert_eq!(read.dirty_tracking, DirtyTracking::Iommu);
}

#[test]
fn a_virtio_vf_behind_intel_without_ssads_predicts_non_convergence() {
    let (rows, read) = device("intel-no-ssads", "net0", "0000:3d:00.1");
    assert_status(
        row(&rows, "device.net0.dirty_tracking"),
        Status::Warn,
        &[
            "SSADS (bit 45) clear",
            "every mapped page as dirty on every pass",
            "non-convergence",
        ],
    );
    assert_eq!(read.dirty_tracking, DirtyTracking::Neither);
    assert!(read.predicts_non_convergence());
    let json = serde_json::to_value(&read).expect("DeviceHost serialises");
    assert_eq!(json["dirty_tracking"], "neither");
    assert_eq!(json["migration"]["driver"], "virtio_vfio_pci");
    let back: DeviceHost = serde_json::from_value(json).expect("DeviceHost reads back from JSON");
    assert_eq!(
        back, read,
        "a DeviceHost read on a remote host compares like one read here"
    );
}

#[test]
fn a_qat_vf_without_iommu_dirty_tracking_predicts_non_convergence_too() {
    let (rows, read) = device("intel-no-ssads", "qat0", "0000:76:00.1");
    assert_status(row(&rows, "device.qat0.driver"), Status::Pass, &["qat_vfio_pci"]);
    assert!(read.predicts_non_convergence(), "{rows:#?}");
}

#[test]
fn a_virtio_vf_is_tracked_by_an_amd_iommu_with_hdsup() {
    let (rows, read) = device("amd-hdsup", "net0", "0000:c2:00.1");
    assert_status(
        row(&rows, "device.net0.dirty_tracking"),
        Status::Pass,
        &["ivhd0", "HDSup (bit 52) set"],
    );
    assert_eq!(read.dirty_tracking, DirtyTracking::Iommu);
}

#[test]
fn a_virtio_vf_behind_an_amd_iommu_without_hdsup_predicts_non_convergence() {
    let (rows, read) = device("amd-no-hdsup", "net0", "0000:c2:00.1");
    assert_status(
        row(&rows, "device.net0.dirty_tracking"),
        Status::Warn,
        &["HDSup (bit 52) clear", "every mapped page as dirty"],
    );
    assert!(read.predicts_non_convergence());
}

#[test]
fn a_pds_vf_logs_its_own_dma_whatever_the_iommu() {
    let (rows, read) = device("amd-hdsup", "dsc0", "0000:c1:00.1");
    assert_status(
        row(&rows, "device.dsc0.driver"),
        Status::Pass,
        &["pds_vfio_pci", "pre-copy no"],
    );
    assert_eq!(read.dirty_tracking, DirtyTracking::DeviceDmaLogging);
}

#[test]
fn a_hisilicon_vf_behind_an_smmuv3_has_dirty_tracking_unknown() {
    let (rows, read) = device("arm-smmuv3", "zip0", "0000:75:00.1");
    assert_status(
        row(&rows, "device.zip0.driver"),
        Status::Pass,
        &["hisi_acc_vfio_pci", "P2P no"],
    );
    assert_status(
        row(&rows, "device.zip0.dirty_tracking"),
        Status::Warn,
        &["unknown", "smmu3.0x0000000140000000"],
    );
    assert_eq!(read.dirty_tracking, DirtyTracking::Unknown);
    assert!(!read.predicts_non_convergence());
}

#[test]
fn a_device_on_plain_vfio_pci_fails_with_a_hint_to_bind_its_variant_driver() {
    let (rows, _) = device("intel-ssads", "nic1", "0000:5e:00.0");
    let driver = row(&rows, "device.nic1.driver");
    assert_status(driver, Status::Fail, &["vfio-pci", "cannot migrate"]);
    assert!(
        driver.hint.contains("variant driver") && driver.hint.contains("modules.alias"),
        "{driver:#?}"
    );
}

#[test]
fn an_unbound_device_fails_the_driver_check() {
    let (rows, read) = device("intel-ssads", "nic2", "0000:5e:00.1");
    assert_status(
        row(&rows, "device.nic2.driver"),
        Status::Fail,
        &["bound to no driver"],
    );
    assert_status(
        row(&rows, "device.nic2.iommu_group"),
        Status::Fail,
        &["group 61", "/dev/vfio/61"],
    );
    assert_eq!(read.driver, None);
}

#[test]
fn an_nvgrace_gpu_fails_as_its_driver_cannot_migrate() {
    let (rows, _) = device("arm-smmuv3", "gpu0", "0009:01:00.0");
    let driver = row(&rows, "device.gpu0.driver");
    assert_status(driver, Status::Fail, &["nvgrace_gpu_vfio_pci", "cannot migrate"]);
    assert!(driver.hint.contains("cold"), "{driver:#?}");
}

#[test]
fn a_driver_the_tool_does_not_know_is_a_warning_not_a_guess() {
    let (rows, _) = device("intel-ssads", "acc0", "0000:61:00.0");
    assert_status(
        row(&rows, "device.acc0.driver"),
        Status::Warn,
        &["acme_vfio_pci", "unknown"],
    );
}

#[test]
fn a_group_shared_with_a_host_driver_has_no_vfio_node_and_the_failure_names_the_other_device() {
    let (rows, _) = device("intel-ssads", "nic3", "0000:60:00.0");
    assert_status(
        row(&rows, "device.nic3.iommu_group"),
        Status::Fail,
        &["group 62", "/dev/vfio/62", "0000:60:00.1 (ixgbe)"],
    );
}

#[test]
fn on_a_host_without_vfio_a_vf_on_its_host_driver_fails_and_so_does_dev_vfio() {
    let (rows, read) = device("no-vfio", "nic0", "0000:3b:00.1");
    assert_status(
        row(&rows, "device.nic0.driver"),
        Status::Fail,
        &["mlx5_core", "host driver"],
    );
    assert_status(
        row(&rows, "device.nic0.dev_vfio"),
        Status::Fail,
        &["no /dev/vfio"],
    );
    assert_status(
        row(&rows, "device.nic0.dev_iommu"),
        Status::Warn,
        &["no /dev/iommu"],
    );
    assert_status(
        row(&rows, "device.nic0.iommu_group"),
        Status::Fail,
        &["/dev/vfio/42"],
    );
    // mlx5_core is no VFIO driver: nothing logs the device's DMA for QEMU, and the
    // IOMMU's tracking needs the missing iommufd.
    assert_eq!(read.dirty_tracking, DirtyTracking::Neither);
}

#[test]
fn a_device_without_an_iommu_group_fails_the_group_check() {
    let (rows, read) = device("no-iommu", "nic0", "0000:3b:00.1");
    let group = row(&rows, "device.nic0.iommu_group");
    assert_status(group, Status::Fail, &["no IOMMU group"]);
    assert!(group.hint.contains("intel_iommu=on"), "{group:#?}");
    assert_eq!(read.iommu_group, None);
    assert_status(
        row(&rows, "device.nic0.dirty_tracking"),
        Status::Warn,
        &["no IOMMU is registered"],
    );
}

#[test]
fn a_device_missing_from_the_host_fails_presence_and_nothing_else_is_checked() {
    let (rows, read) = device("intel-ssads", "gpu9", "0000:99:00.0");
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_status(&rows[0], Status::Fail, &["no device 0000:99:00.0"]);
    assert_eq!(rows[0].id, "device.gpu9.present");
    assert!(!read.present);
    assert!(!read.predicts_non_convergence());
}

#[test]
fn an_address_that_is_no_pci_address_fails_presence_without_reading_outside_sysfs() {
    for bad in ["../../../../etc", "0000:3b:00.1/../../..", "eth0"] {
        let (rows, read) = device("intel-ssads", "nic0", bad);
        assert_eq!(rows.len(), 1, "{rows:#?}");
        assert_status(&rows[0], Status::Fail, &["neither a PCI address"]);
        assert!(!read.present);
    }
}

// vGPUs.

#[test]
fn an_nvidia_vf_with_a_vgpu_type_reports_driver_version_board_and_type() {
    let (rows, read) = device("nvidia-a", "gpu0", "0000:41:00.4");
    assert_status(
        row(&rows, "device.gpu0.driver"),
        Status::Pass,
        &["nvidia", "10de:26b9"],
    );
    assert_status(
        row(&rows, "device.gpu0.vgpu"),
        Status::Pass,
        &[
            "550.90.05",
            "10de:26b9 subsystem 10de:1851",
            "557 (NVIDIA L40S-24Q)",
        ],
    );
    assert_eq!(read.dirty_tracking, DirtyTracking::VendorDriver);
    let vgpu = read.vgpu.expect("a vGPU");
    assert_eq!(vgpu.driver_version.as_deref(), Some("550.90.05"));
}

#[test]
fn a_mediated_vgpu_is_found_by_its_uuid_with_its_parent_board_and_mdev_type() {
    let (rows, read) = device("nvidia-a", "vgpu0", "2d3a3f00-633f-48d3-96f0-17466845e672");
    for row in &rows {
        assert_eq!(row.status, Status::Pass, "{row:#?}");
    }
    assert!(read.mdev);
    assert_eq!(read.driver.as_deref(), Some("nvidia-vgpu-vfio"));
    assert_eq!(read.iommu_group, Some(90));
    let vgpu = read.vgpu.expect("a vGPU");
    assert_eq!(vgpu.board.as_deref(), Some("10de:20f1 subsystem 10de:145f"));
    assert_eq!(vgpu.vgpu_type.as_deref(), Some("nvidia-558 (GRID A100-4C)"));
}

#[test]
fn a_vgpu_on_hosts_with_different_driver_versions_fails_showing_both() {
    let (_, source) = device("nvidia-a", "gpu0", "0000:41:00.4");
    let (_, destination) = device("nvidia-b", "gpu0", "0000:41:00.4");
    let row = compare_across_hosts(&source, &destination).expect("a vGPU is compared");
    assert_eq!(row.id, "device.gpu0.vgpu_match");
    assert_status(
        &row,
        Status::Fail,
        &["550.90.05 on the source", "550.127.06 on the destination"],
    );
    assert!(!row.finding.contains("board"), "the boards match: {row:#?}");
}

#[test]
fn a_vgpu_on_two_identical_hosts_matches() {
    let (_, source) = device("nvidia-a", "gpu0", "0000:41:00.4");
    let row = compare_across_hosts(&source, &source.clone()).expect("a vGPU is compared");
    assert_status(&row, Status::Pass, &["550.90.05", "557 (NVIDIA L40S-24Q)"]);
}

#[test]
fn a_vgpu_on_one_host_and_a_vf_on_the_other_fails() {
    let (_, source) = device("nvidia-a", "gpu0", "0000:41:00.4");
    let (_, destination) = device("intel-ssads", "gpu0", "0000:3b:00.1");
    let row = compare_across_hosts(&source, &destination).expect("a vGPU is compared");
    assert_status(
        &row,
        Status::Fail,
        &["vGPU on the source and not on the destination"],
    );
}

#[test]
fn devices_that_are_no_vgpus_are_not_compared() {
    let (_, source) = device("intel-ssads", "nic0", "0000:3b:00.1");
    assert_eq!(compare_across_hosts(&source, &source.clone()), None);
}

// Whole hosts (check --host).

#[test]
fn an_intel_host_with_ssads_and_variant_drivers_is_ready_apart_from_its_unmigratable_devices() {
    let rows = host_rows(&fixture("intel-ssads"));
    assert_status(row(&rows, "host.kvm"), Status::Pass, &["/dev/kvm"]);
    assert_status(row(&rows, "host.kvm.dirty_ring"), Status::Warn, &["not probed"]);
    assert_status(
        row(&rows, "host.iommu"),
        Status::Pass,
        &["dmar0", "dmar1", "Intel VT-d"],
    );
    assert_status(
        row(&rows, "host.iommu.dirty_tracking"),
        Status::Pass,
        &["SSADS (bit 45) set"],
    );
    for id in [
        "host.modules.vfio",
        "host.modules.vfio_pci",
        "host.modules.iommufd",
        "host.dev.vfio",
        "host.dev.iommu",
    ] {
        assert_status(row(&rows, id), Status::Pass, &[]);
    }
    assert_status(row(&rows, "host.devices"), Status::Pass, &["5 VFIO device(s)"]);
    assert_status(
        row(&rows, "host.device.0000:3b:00.1.driver"),
        Status::Pass,
        &["mlx5_vfio_pci", "device dirty logging yes"],
    );
    assert_status(
        row(&rows, "host.device.0000:3d:00.1.driver"),
        Status::Pass,
        &["virtio_vfio_pci"],
    );
    assert_status(
        row(&rows, "host.device.0000:5e:00.0.driver"),
        Status::Warn,
        &["vfio-pci cannot migrate"],
    );
    assert_status(
        row(&rows, "host.device.0000:61:00.0.driver"),
        Status::Warn,
        &["not known"],
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.id.contains("0000:5e:00.1") || r.id.contains("0000:3b:00.0")),
        "unbound devices and host drivers are no VFIO devices: {rows:#?}"
    );
    assert_status(
        row(&rows, "host.qemu"),
        Status::Pass,
        &[
            "QEMU 10.0.2",
            "/usr/libexec/qemu-kvm",
            "migration-events (9.1)",
            "multifd device state (10.0)",
        ],
    );
    assert_status(
        row(&rows, "host.libvirt"),
        Status::Pass,
        &["libvirt 11.3.0", "vfio_data_transferred"],
    );
    assert!(!rows.iter().any(|r| r.status == Status::Fail), "{rows:#?}");
}

#[test]
fn an_intel_host_without_ssads_warns_that_the_iommu_cannot_track_and_fails_an_old_qemu() {
    let rows = host_rows(&fixture("intel-no-ssads"));
    assert_status(
        row(&rows, "host.iommu.dirty_tracking"),
        Status::Warn,
        &["dmar0", "ecap 0x19e2ff0505e", "SSADS (bit 45) clear"],
    );
    let qemu = row(&rows, "host.qemu");
    assert_status(qemu, Status::Fail, &["QEMU 8.2.2", "needs 9.1"]);
    assert!(qemu.hint.contains("upgrade"), "{qemu:#?}");
    assert_status(
        row(&rows, "host.libvirt"),
        Status::Warn,
        &["libvirt 8.0.0", "older than 8.6"],
    );
}

#[test]
fn amd_hosts_say_whether_hdsup_is_set() {
    let with = host_rows(&fixture("amd-hdsup"));
    assert_status(
        row(&with, "host.iommu.dirty_tracking"),
        Status::Pass,
        &["ivhd0", "HDSup (bit 52) set"],
    );
    let without = host_rows(&fixture("amd-no-hdsup"));
    assert_status(
        row(&without, "host.iommu.dirty_tracking"),
        Status::Warn,
        &["HDSup (bit 52) clear"],
    );
}

#[test]
fn an_smmuv3_host_says_dirty_tracking_is_unknown() {
    let rows = host_rows(&fixture("arm-smmuv3"));
    assert_status(row(&rows, "host.iommu"), Status::Pass, &["ARM SMMUv3"]);
    assert_status(
        row(&rows, "host.iommu.dirty_tracking"),
        Status::Warn,
        &["unknown", "no sysfs file"],
    );
    assert_status(
        row(&rows, "host.device.0009:01:00.0.driver"),
        Status::Warn,
        &["nvgrace_gpu_vfio_pci cannot migrate"],
    );
}

#[test]
fn a_host_without_vfio_says_so_plainly_and_fails_dev_vfio() {
    let rows = host_rows(&fixture("no-vfio"));
    assert_status(row(&rows, "host.kvm"), Status::Pass, &[]);
    assert_status(row(&rows, "host.dev.vfio"), Status::Fail, &["no /dev/vfio"]);
    assert_status(row(&rows, "host.dev.iommu"), Status::Warn, &["no /dev/iommu"]);
    assert_status(row(&rows, "host.modules.vfio"), Status::Warn, &["not loaded"]);
    assert_status(row(&rows, "host.modules.vfio_pci"), Status::Warn, &["not loaded"]);
    assert_status(row(&rows, "host.modules.iommufd"), Status::Warn, &["not loaded"]);
    assert_status(
        row(&rows, "host.devices"),
        Status::Warn,
        &["no VFIO devices on this host"],
    );
    assert_status(row(&rows, "host.qemu"), Status::Fail, &["no QEMU installed"]);
    assert_status(row(&rows, "host.libvirt"), Status::Pass, &["not installed"]);
}

#[test]
fn a_host_without_kvm_or_iommu_fails_both() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let rows = host_rows(&Host::new(root.path().to_path_buf()));
    assert_status(row(&rows, "host.kvm"), Status::Fail, &["no /dev/kvm"]);
    assert_status(row(&rows, "host.kvm.dirty_ring"), Status::Warn, &["no /dev/kvm"]);
    assert_status(row(&rows, "host.iommu"), Status::Fail, &["no IOMMU"]);
    assert_status(
        row(&rows, "host.iommu.dirty_tracking"),
        Status::Warn,
        &["no IOMMU"],
    );
    assert_status(row(&rows, "host.dev.vfio"), Status::Fail, &["no /dev/vfio"]);
}

#[test]
fn dev_vfio_without_a_container_or_device_nodes_fails() {
    let root = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(root.path().join("dev/vfio")).expect("dev/vfio");
    let rows = host_rows(&Host::new(root.path().to_path_buf()));
    assert_status(
        row(&rows, "host.dev.vfio"),
        Status::Fail,
        &["neither the container"],
    );
}

#[test]
fn every_host_row_id_is_dotted_and_unique() {
    for name in [
        "intel-ssads",
        "intel-no-ssads",
        "amd-hdsup",
        "arm-smmuv3",
        "no-vfio",
        "nvidia-a",
    ] {
        let rows = host_rows(&fixture(name));
        let mut ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert!(ids.iter().all(|id| id.starts_with("host.")), "{ids:?}");
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!(before, ids.len(), "{name}: duplicate ids");
    }
}

#[test]
fn an_nvidia_host_lists_its_vgpus_and_not_its_physical_gpus() {
    let rows = host_rows(&fixture("nvidia-a"));
    assert_status(
        row(&rows, "host.devices"),
        Status::Pass,
        &[
            "2 VFIO device(s)",
            "0000:41:00.4 (nvidia)",
            "2d3a3f00-633f-48d3-96f0-17466845e672 (nvidia-vgpu-vfio)",
        ],
    );
    assert!(
        !rows
            .iter()
            .any(|r| r.id.contains("0000:41:00.0") || r.id.contains("0000:41:00.5")),
        "{rows:#?}"
    );
}

// This machine.

#[test]
fn this_machine_is_probed_without_panicking_and_says_plainly_it_has_no_vfio_devices() {
    // The project's machines have KVM but no VFIO hardware: whatever else they have,
    // the host check must say that in words.
    let rows = host_rows(&Host::new(PathBuf::from("/")));
    // What this machine looks like, for `cargo test -- --nocapture`.
    for row in &rows {
        eprintln!("{:<28} {:<4} {}", row.id, row.status.word(), row.finding);
    }
    assert_status(
        row(&rows, "host.devices"),
        Status::Warn,
        &["no VFIO devices on this host"],
    );
    if std::path::Path::new("/dev/kvm").exists() {
        let ring = row(&rows, "host.kvm.dirty_ring");
        assert!(
            !ring.finding.contains("not probed"),
            "the real / is probed: {ring:#?}"
        );
    }
    for row in &rows {
        assert!(!row.finding.is_empty(), "{row:#?}");
        assert!(row.status == Status::Pass || !row.hint.is_empty(), "{row:#?}");
    }
}
