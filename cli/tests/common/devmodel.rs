//! A QEMU pair with modelled VFIO devices: a device-model proxy in front of each QEMU
//! (`standins::devmodel`), so that the migration is real and only the devices are
//! modelled.

use std::path::PathBuf;

use rig::QemuPair;
use standins::devmodel::{Proxy, ProxyConfig, Role};
use standins::vfio::{Fault, ModelDevice};

pub const MIB: u64 = 1024 * 1024;
/// The link the modelled devices' state is timed against.
pub const LINK: u64 = 128 * MIB;

/// A pair with a device-model proxy in front of each QEMU. The proxies run on their own
/// runtime, which must outlive the test's use of them.
pub struct Modelled {
    pub pair: QemuPair,
    /// The source proxy's monitor socket, for the plan.
    pub source: PathBuf,
    /// The destination proxy's monitor socket, for the plan.
    pub destination: PathBuf,
    _proxies: (Proxy, Proxy),
    _runtime: tokio::runtime::Runtime,
}

/// A modelled device of `state_mib` MiB of state.
pub fn device(id: &str, precopy: bool, state_mib: u64, fault: Fault) -> ModelDevice {
    ModelDevice {
        precopy,
        state_size: state_mib * MIB,
        fault,
        ..ModelDevice::new(id)
    }
}

/// A pair (see [`super::pair`]) with `devices` modelled on both sides.
pub fn modelled(wss_mb: u32, rate_mb: u32, devices: Vec<ModelDevice>) -> Modelled {
    let pair = super::pair(wss_mb, rate_mb);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let source = pair.dir().join("source-proxy.qmp");
    let destination = pair.dir().join("destination-proxy.qmp");
    let start = |upstream: PathBuf, listen: PathBuf, role: Role| {
        runtime
            .block_on(Proxy::start(ProxyConfig {
                upstream,
                listen,
                role,
                devices: devices.clone(),
                link_bytes_per_sec: LINK,
            }))
            .expect("start the device-model proxy")
    };
    let src = start(pair.source.qmp_socket.clone(), source.clone(), Role::Source);
    let dst = start(
        pair.destination.qmp_socket.clone(),
        destination.clone(),
        Role::Destination,
    );
    Modelled {
        pair,
        source,
        destination,
        _proxies: (src, dst),
        _runtime: runtime,
    }
}
