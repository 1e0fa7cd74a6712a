//! What `vfio-migrate check` reads from a monitor beyond a run's facts: machine type,
//! supported capabilities, current parameters, guest IOMMUs, VFIO device properties and
//! the QEMU process's resident memory. Queries only: nothing here changes QEMU.

use engine::driver::{DeviceSurvey, DriverError, OnOffAuto, Side, SideSurvey};
use serde_json::{json, Value};

use super::QmpDriver;

/// QOM types of guest-visible IOMMUs that QEMU can give an x86 or Arm guest.
const VIOMMU_TYPES: &[&str] = &[
    "intel-iommu",
    "amd-iommu",
    "AMDVI-PCI",
    "virtio-iommu-pci",
    "virtio-iommu-device",
    "arm-smmuv3",
];

/// Where QEMU puts devices: with an id, and without one.
const DEVICE_CONTAINERS: &[&str] = &["/machine/peripheral", "/machine/peripheral-anon"];

impl QmpDriver {
    /// Reads one side for `check`. Properties a QEMU does not have are left `None`.
    pub(super) async fn survey_side(&self, side: Side) -> Result<SideSurvey, DriverError> {
        let machine = self
            .raw(
                side,
                "qom-get",
                Some(json!({"path": "/machine", "property": "type"})),
            )
            .await
            .ok()
            .and_then(|v| v.as_str().map(|t| t.trim_end_matches("-machine").to_string()));
        let caps = self.raw(side, "query-migrate-capabilities", None).await?;
        let capabilities = caps
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.get("capability").and_then(Value::as_str).map(str::to_string))
            .collect();
        let params = self.raw(side, "query-migrate-parameters", None).await?;
        let migrate = self.raw(side, "query-migrate", None).await?;
        let blocked_reasons = migrate
            .get("blocked-reasons")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_string))
            .collect();
        let mut viommu = Vec::new();
        let mut devices = Vec::new();
        for container in DEVICE_CONTAINERS {
            for (name, type_name) in self.children(side, container).await {
                if VIOMMU_TYPES.contains(&type_name.as_str()) {
                    viommu.push(type_name);
                } else if type_name.starts_with("vfio") && *container == "/machine/peripheral" {
                    devices.push(self.device(side, &name, type_name).await);
                }
            }
        }
        let resident_bytes = self
            .client(side, "survey")?
            .peer_pid()
            .and_then(qemu_resident_bytes);
        Ok(SideSurvey {
            machine,
            capabilities,
            max_bandwidth: params.get("max-bandwidth").and_then(Value::as_u64),
            downtime_limit_ms: params.get("downtime-limit").and_then(Value::as_u64),
            viommu,
            blocked_reasons,
            devices,
            resident_bytes,
        })
    }

    /// `(name, type)` of each child under a QOM container; none when the container does
    /// not exist (a machine with no anonymous devices).
    async fn children(&self, side: Side, path: &str) -> Vec<(String, String)> {
        let Ok(list) = self.raw(side, "qom-list", Some(json!({"path": path}))).await else {
            return Vec::new();
        };
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let name = entry.get("name")?.as_str()?;
                let kind = entry.get("type")?.as_str()?;
                let type_name = kind.strip_prefix("child<")?.strip_suffix('>')?;
                Some((name.to_string(), type_name.to_string()))
            })
            .collect()
    }

    async fn device(&self, side: Side, id: &str, type_name: String) -> DeviceSurvey {
        let path = format!("/machine/peripheral/{id}");
        let property = |name: &'static str| {
            let path = path.clone();
            async move {
                self.raw(side, "qom-get", Some(json!({"path": path, "property": name})))
                    .await
                    .ok()
            }
        };
        DeviceSurvey {
            id: id.to_string(),
            type_name,
            host: property("host")
                .await
                .and_then(|v| v.as_str().map(str::to_string)),
            enable_migration: property("enable-migration")
                .await
                .and_then(|v| v.as_str().map(str::to_string)),
            migration_events: property("migration-events").await.and_then(|v| v.as_bool()),
            multifd_transfer: property(super::stream::MULTIFD_TRANSFER)
                .await
                .and_then(|v| v.as_str().and_then(OnOffAuto::parse)),
        }
    }
}

/// Resident memory of the guest's RAM in process `pid`, when it is a QEMU (not a proxy
/// or another program in front of the monitor): the `Rss` of its largest mapping in
/// `/proc/PID/smaps`, which is the guest RAM block. Pages the guest never touched are
/// not resident, and they cost a scan, not the link.
fn qemu_resident_bytes(pid: u32) -> Option<u64> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.trim().starts_with("qemu") {
        return None;
    }
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    largest_mapping_resident(&smaps)
}

/// The `Rss` of the mapping with the largest `Size` in an `smaps` text, in bytes.
fn largest_mapping_resident(smaps: &str) -> Option<u64> {
    let kib = |line: &str| -> Option<u64> { line.split_whitespace().nth(1)?.parse().ok() };
    let mut best: Option<(u64, u64)> = None;
    let mut size = None;
    for line in smaps.lines() {
        if line.starts_with("Size:") {
            size = kib(line);
        } else if line.starts_with("Rss:") {
            if let (Some(size), Some(rss)) = (size.take(), kib(line)) {
                if best.is_none_or(|(s, _)| size > s) {
                    best = Some((size, rss));
                }
            }
        }
    }
    best.and_then(|(_, rss)| rss.checked_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_ram_is_the_largest_mapping_and_only_its_resident_pages_count() {
        let smaps = "\
7f00-7f10 rw-p 00000000 00:00 0
Size:              65536 kB
Rss:               65536 kB
7e00-7f00 rw-p 00000000 00:00 0
Size:            1048576 kB
Rss:              269056 kB
Pss:              269056 kB
";
        assert_eq!(largest_mapping_resident(smaps), Some(269056 * 1024));
        assert_eq!(largest_mapping_resident("Pss: 1 kB\n"), None);
    }
}
