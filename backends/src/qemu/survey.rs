//! What `vfio-migrate check` reads from a monitor beyond a run's facts: machine type,
//! supported capabilities, current parameters, guest IOMMUs, VFIO device properties and
//! the QEMU process's resident memory. Queries only: nothing here changes QEMU.

use engine::driver::{DeviceSurvey, DriverError, Side, SideSurvey};
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
        }
    }
}

/// Resident memory of `pid` when it is a QEMU (not a proxy or another program in
/// front of the monitor), from `/proc/PID/smaps_rollup`.
fn qemu_resident_bytes(pid: u32) -> Option<u64> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    if !comm.trim().starts_with("qemu") {
        return None;
    }
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    resident_from_rollup(&rollup)
}

/// The `Rss:` line of `smaps_rollup`, in bytes.
fn resident_from_rollup(rollup: &str) -> Option<u64> {
    let line = rollup.lines().find(|l| l.starts_with("Rss:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_rss_line_in_kib() {
        let rollup = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:              269056 kB\nPss:  1 kB\n";
        assert_eq!(resident_from_rollup(rollup), Some(269056 * 1024));
        assert_eq!(resident_from_rollup("Pss: 1 kB\n"), None);
    }
}
