//! What the proxy models: the devices, their faults, the side it stands on, and where it listens.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use super::DevModelError;

/// One modelled `vfio-pci` device, as if QEMU had been started with
/// `-device vfio-pci,id=ID,host=...,enable-migration=on,migration-events=...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDevice {
    /// The device's `id` (its QOM path is `/machine/peripheral/ID`).
    pub id: String,
    /// Whether the device advertises `VFIO_MIGRATION_PRE_COPY`: such a device moves to
    /// `pre-copy` at migration setup and sends part of its state while the VM runs.
    pub precopy: bool,
    /// Whether the device advertises `VFIO_MIGRATION_P2P`: it passes through
    /// `running-p2p` / `pre-copy-p2p` whenever the VM stops or starts.
    pub p2p: bool,
    /// The device's state size in bytes (what `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` would
    /// report); it is what `vfio.transferred` ends at and what makes stop-copy take time.
    pub state_size: u64,
    /// The initial value of the device's `migration-events` property.
    pub migration_events: bool,
    /// Whether `qom-set` may change `migration-events` after realize. Real QEMU refuses
    /// (it is a static qdev property); `false` mirrors that.
    pub allow_runtime_migration_events: bool,
    /// The `host` property (PCI address of the physical function); `0000:00:00.0` if unset.
    pub host: Option<String>,
    /// The misbehaviour this device exhibits, if any.
    pub fault: Fault,
}

impl Default for ModelDevice {
    fn default() -> ModelDevice {
        ModelDevice {
            id: String::new(),
            precopy: false,
            p2p: false,
            state_size: 0,
            migration_events: true,
            allow_runtime_migration_events: false,
            host: None,
            fault: Fault::None,
        }
    }
}

impl ModelDevice {
    /// A well-behaved stop-copy-only device with `migration-events=on` and no state.
    pub fn new(id: impl Into<String>) -> ModelDevice {
        ModelDevice {
            id: id.into(),
            ..ModelDevice::default()
        }
    }

    /// The device's canonical QOM path.
    pub fn qom_path(&self) -> String {
        format!("/machine/peripheral/{}", self.id)
    }

    /// The `host` property as QOM reports it.
    pub fn host(&self) -> &str {
        self.host.as_deref().unwrap_or("0000:00:00.0")
    }
}

/// A way a modelled device misbehaves during a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Behaves as a healthy device does.
    #[default]
    None,
    /// A pre-copy device that never leaves `running` after migration setup (no `pre-copy`).
    NeverSaving,
    /// A pre-copy device that reaches `pre-copy` only this long after setup.
    SlowToSaving(Duration),
    /// The device fails this long into pre-copy (from setup for a stop-copy-only device):
    /// the migration fails as QEMU reports a failed save (`failed`, with an `error-desc`).
    ErrorInPrecopy {
        /// Time from entering pre-copy to the failure.
        after: Duration,
    },
    /// Draining the device in stop-copy takes this much longer than its size implies,
    /// adding to the guest's pause.
    SlowStopCopy(Duration),
    /// The device disappears (`DEVICE_DELETED`) this long after migration setup.
    UnplugDuringMigration {
        /// Time from migration setup to the removal.
        after: Duration,
    },
    /// The device never emits `VFIO_MIGRATION`, even with `migration-events=on`.
    EventsMissing,
}

/// Which side of the migration the proxied QEMU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The QEMU that runs `migrate`: devices save their state.
    Source,
    /// The QEMU started with `-incoming`: devices load (`resuming`) and start.
    Destination,
}

/// How to start a [`super::Proxy`].
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The real QEMU's QMP unix socket.
    pub upstream: PathBuf,
    /// The unix socket the proxy serves (created; an existing socket file is replaced).
    pub listen: PathBuf,
    /// The side of the migration the proxied QEMU is on.
    pub role: Role,
    /// The modelled devices (unique, non-empty ids).
    pub devices: Vec<ModelDevice>,
    /// The migration link's speed for device state, in bytes per second (e.g. 128 MiB/s):
    /// it turns state sizes into stop-copy time and pre-copy progress. Must be non-zero.
    pub link_bytes_per_sec: u64,
}

impl ProxyConfig {
    /// Checks what the proxy relies on: a non-zero link speed and unique, non-empty,
    /// slash-free device ids.
    pub(crate) fn validate(&self) -> Result<(), DevModelError> {
        if self.link_bytes_per_sec == 0 {
            return Err(DevModelError::Config(
                "link_bytes_per_sec must be non-zero".into(),
            ));
        }
        let mut seen = HashSet::new();
        for device in &self.devices {
            if device.id.is_empty() || device.id.contains('/') {
                return Err(DevModelError::Config(format!(
                    "invalid device id {:?}",
                    device.id
                )));
            }
            if !seen.insert(device.id.as_str()) {
                return Err(DevModelError::Config(format!(
                    "duplicate device id {:?}",
                    device.id
                )));
            }
        }
        Ok(())
    }
}
