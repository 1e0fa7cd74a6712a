//! What the proxy models: the devices, the side it stands on, and where it listens.

use std::collections::HashSet;
use std::path::PathBuf;

use super::DevModelError;
use crate::vfio::ModelDevice;

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
