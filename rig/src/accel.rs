//! Which accelerator and CPU model boot the guest on this host.
//!
//! Machines of this project's kind differ underneath: on some, `-cpu host` aborts QEMU
//! at start ("failed to set MSR 0x10a"), where `-cpu host,-arch-capabilities` works. So
//! the first pair of a process probes: it boots the guest with each candidate in turn
//! until one prints READY, falling back to TCG, and says which one it uses.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use crate::error::RigError;
use crate::process::QemuProcess;
use crate::GuestParams;

/// The accelerator a test asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when `/dev/kvm` works, else TCG.
    Auto,
    /// KVM only.
    Kvm,
    /// TCG (software emulation) only.
    Tcg,
}

/// The accelerator and CPU model a pair runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelInfo {
    /// `kvm` or `tcg`.
    pub kind: String,
    /// The `-cpu` argument.
    pub cpu: String,
    /// Whether the KVM dirty ring is on.
    pub dirty_ring: bool,
}

impl AccelInfo {
    /// The QEMU arguments for it.
    pub fn args(&self) -> Vec<String> {
        let accel = match (self.kind.as_str(), self.dirty_ring) {
            ("kvm", true) => "kvm,dirty-ring-size=4096".to_string(),
            (kind, _) => kind.to_string(),
        };
        vec!["-accel".into(), accel, "-cpu".into(), self.cpu.clone()]
    }
}

/// Probe results, per (accel choice, dirty ring): probing boots a guest, so it is done
/// once per process.
static PROBED: Mutex<Vec<((Accel, bool), AccelInfo)>> = Mutex::new(Vec::new());

fn candidates(accel: Accel, dirty_ring: bool) -> Vec<AccelInfo> {
    let kvm = |cpu: &str| AccelInfo {
        kind: "kvm".into(),
        cpu: cpu.into(),
        dirty_ring,
    };
    let tcg = AccelInfo {
        kind: "tcg".into(),
        cpu: "qemu64".into(),
        dirty_ring: false,
    };
    let kvm_usable = Path::new("/dev/kvm").exists();
    match accel {
        Accel::Tcg => vec![tcg],
        Accel::Kvm => vec![kvm("host"), kvm("host,-arch-capabilities"), kvm("qemu64")],
        Accel::Auto if kvm_usable => vec![kvm("host"), kvm("host,-arch-capabilities"), kvm("qemu64"), tcg],
        Accel::Auto => vec![tcg],
    }
}

/// The first candidate that boots the guest, probed once per process.
pub(crate) fn choose(accel: Accel, dirty_ring: bool, qemu: &Path, dir: &Path) -> Result<AccelInfo, RigError> {
    let key = (accel, dirty_ring);
    if let Ok(probed) = PROBED.lock() {
        if let Some((_, info)) = probed.iter().find(|(k, _)| *k == key) {
            return Ok(info.clone());
        }
    }
    let mut tried = Vec::new();
    for candidate in candidates(accel, dirty_ring) {
        let probe = GuestParams {
            wss_mb: 16,
            rate_mb: 0,
        };
        let started = QemuProcess::start_source(qemu, dir, "probe", &candidate, 128, probe);
        let result = started.and_then(|mut p| {
            let ready = p.wait_for_line("READY", Duration::from_secs(10));
            p.kill();
            ready
        });
        match result {
            Ok(_) => {
                eprintln!(
                    "rig: accel {}, cpu {}, dirty ring {}",
                    candidate.kind,
                    candidate.cpu,
                    if candidate.dirty_ring { "on" } else { "off" }
                );
                if let Ok(mut probed) = PROBED.lock() {
                    probed.push((key, candidate.clone()));
                }
                return Ok(candidate);
            }
            Err(e) => tried.push(format!("{} -cpu {}: {e}", candidate.kind, candidate.cpu)),
        }
    }
    Err(RigError::NoAccelerator {
        tried: tried.join("; "),
    })
}
