//! What a modelled `vfio-pci` device is: the properties QEMU would be started with.

use super::Fault;

/// One modelled `vfio-pci` device, as if QEMU had been started with
/// `-device vfio-pci,id=ID,host=...,enable-migration=on,migration-events=...`. The
/// simulated pair and the device model take the same description.
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

    /// Whether a state change reaches the monitor as `VFIO_MIGRATION`
    /// (`vfio_migration_send_event`), given the live `migration-events` property: only
    /// when it is on and the device is not faulted to stay silent.
    pub fn reports(&self, migration_events: bool) -> bool {
        migration_events && self.fault != Fault::EventsMissing
    }
}
