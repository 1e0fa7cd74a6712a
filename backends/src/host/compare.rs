//! The same device on both hosts: what must match for a vGPU to migrate.
//!
//! NVIDIA migrates a vGPU only between hosts that run the same vGPU manager version
//! ("fails if the vGPU driver version differs", RHEL's guide to migrating NVIDIA vGPUs)
//! and the same board: not between H100, H200 and H800, nor between 80 GB PCIe and
//! 94 GB NVL boards (NVIDIA AI Enterprise, live migration). The vGPU type must match
//! too, as the destination's mdev (or VF) must be of the type the state was saved from.

use engine::check::Row;

use super::device::DeviceHost;

/// Compares one device as read on the source (`source`) and on the destination
/// (`destination`). `None` when neither is a vGPU-class device; otherwise a row
/// `device.<plan_id>.vgpu_match`: `fail` on any mismatch, with both values shown.
pub fn compare_across_hosts(source: &DeviceHost, destination: &DeviceHost) -> Option<Row> {
    let id = format!("device.{}.vgpu_match", source.plan_id);
    let (a, b) = match (&source.vgpu, &destination.vgpu) {
        (None, None) => return None,
        (Some(a), Some(b)) => (a, b),
        (a, _) => {
            let (is, isnt) = if a.is_some() {
                ("source", "destination")
            } else {
                ("destination", "source")
            };
            return Some(Row::fail(
                id,
                format!(
                    "the device is a vGPU on the {is} and not on the {isnt} (source driver {}, destination driver {})",
                    source.driver.as_deref().unwrap_or("none"),
                    destination.driver.as_deref().unwrap_or("none")
                ),
                "give the VM the same kind of vGPU on both hosts (same vGPU type, same NVIDIA vGPU manager)",
            ));
        }
    };
    let fields = [
        ("vGPU driver version", &a.driver_version, &b.driver_version),
        ("board", &a.board, &b.board),
        ("vGPU type", &a.vgpu_type, &b.vgpu_type),
    ];
    let mut differ = Vec::new();
    let mut unknown = Vec::new();
    for (what, on_source, on_destination) in fields {
        match (on_source, on_destination) {
            (Some(x), Some(y)) if x == y => {}
            (Some(x), Some(y)) => differ.push(format!("{what} {x} on the source, {y} on the destination")),
            (x, y) => unknown.push(format!(
                "{what} {} on the source, {} on the destination",
                x.as_deref().unwrap_or("unreadable"),
                y.as_deref().unwrap_or("unreadable")
            )),
        }
    }
    if !differ.is_empty() {
        return Some(Row::fail(
            id,
            differ.join("; "),
            "NVIDIA migrates a vGPU only between the same vGPU manager version, board and vGPU type: install the same driver on both hosts and pick a destination with the same board",
        ));
    }
    if !unknown.is_empty() {
        return Some(Row::warn(
            id,
            format!("cannot compare: {}", unknown.join("; ")),
            "load the NVIDIA vGPU manager on both hosts so its version (/sys/module/nvidia/version) can be read",
        ));
    }
    Some(Row::pass(
        id,
        format!(
            "same vGPU driver {}, board {} and type {} on both hosts",
            a.driver_version.as_deref().unwrap_or_default(),
            a.board.as_deref().unwrap_or_default(),
            a.vgpu_type.as_deref().unwrap_or_default()
        ),
    ))
}
