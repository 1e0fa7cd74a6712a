//! Which accelerator and CPU model boot the guest on this host.
//!
//! Machines of this project's kind differ underneath: on some (AMD under KVM-PVM),
//! `-cpu host` aborts QEMU at start ("failed to set MSR 0x10a", then an assertion in
//! `kvm_buf_set_msrs`), where `-cpu host,-arch-capabilities` works; on others plain
//! `-cpu host` works. So the first pair of a process probes: it boots the guest with each
//! candidate in turn until one prints READY, falls back to TCG, and says which it uses.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::error::RigError;
use crate::process::{Launch, QemuProcess};
use crate::GuestParams;

/// The accelerator a caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Accel {
    /// KVM when `/dev/kvm` can be opened and a CPU model boots the guest, else TCG.
    Auto,
    /// KVM only (the CPU model is still probed).
    Kvm,
    /// TCG (software emulation) only, with `-cpu qemu64`; nothing is probed.
    Tcg,
}

/// The accelerator and CPU model a pair runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelInfo {
    /// `kvm` or `tcg`.
    pub kind: String,
    /// The `-cpu` argument, e.g. `host,-arch-capabilities`.
    pub cpu: String,
    /// Whether the KVM dirty ring is on (`-accel kvm,dirty-ring-size=4096`); never under TCG.
    pub dirty_ring: bool,
}

impl AccelInfo {
    fn kvm(cpu: &str, dirty_ring: bool) -> AccelInfo {
        AccelInfo {
            kind: "kvm".into(),
            cpu: cpu.into(),
            dirty_ring,
        }
    }

    fn tcg() -> AccelInfo {
        AccelInfo {
            kind: "tcg".into(),
            cpu: "qemu64".into(),
            dirty_ring: false,
        }
    }

    /// The QEMU arguments for it: `-accel ... -cpu ...`.
    pub fn args(&self) -> Vec<String> {
        let accel = match (self.kind.as_str(), self.dirty_ring) {
            ("kvm", true) => "kvm,dirty-ring-size=4096".to_string(),
            (kind, _) => kind.to_string(),
        };
        vec!["-accel".into(), accel, "-cpu".into(), self.cpu.clone()]
    }
}

/// KVM CPU models, best first: `host` exposes the most, the others survive hosts whose
/// MSRs QEMU cannot set.
const KVM_CPUS: [&str; 3] = ["host", "host,-arch-capabilities", "qemu64"];

/// How long a candidate gets to print READY (boot takes ~0.3 s under KVM-PVM).
const PROBE_TIMEOUT: Duration = Duration::from_secs(8);

/// What a probe answers for.
type ProbeKey = (Accel, bool, PathBuf);

/// Probe results per (choice, dirty ring, QEMU binary). The lock is held while probing,
/// so that tests starting pairs in parallel probe once and the others wait for the answer.
static PROBED: Mutex<Vec<(ProbeKey, AccelInfo)>> = Mutex::new(Vec::new());

fn kvm_usable() -> bool {
    OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

fn candidates(accel: Accel, dirty_ring: bool) -> Vec<AccelInfo> {
    let kvm = KVM_CPUS.iter().map(|cpu| AccelInfo::kvm(cpu, dirty_ring));
    match accel {
        Accel::Tcg => vec![AccelInfo::tcg()],
        Accel::Kvm => kvm.collect(),
        Accel::Auto if kvm_usable() => kvm.chain([AccelInfo::tcg()]).collect(),
        Accel::Auto => vec![AccelInfo::tcg()],
    }
}

/// The first candidate that boots the guest, probed once per process and choice.
pub(crate) fn choose(accel: Accel, dirty_ring: bool, qemu: &Path, dir: &Path) -> Result<AccelInfo, RigError> {
    if accel == Accel::Tcg {
        return Ok(AccelInfo::tcg());
    }
    let key = (accel, dirty_ring, qemu.to_path_buf());
    let mut probed = PROBED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, info)) = probed.iter().find(|(k, _)| *k == key) {
        return Ok(info.clone());
    }
    let mut tried = Vec::new();
    for candidate in candidates(accel, dirty_ring) {
        match probe(&candidate, qemu, dir) {
            Ok(()) => {
                let ring = if candidate.dirty_ring { "on" } else { "off" };
                eprintln!(
                    "rig: accel {}, cpu {}, dirty ring {ring}",
                    candidate.kind, candidate.cpu
                );
                probed.push((key, candidate.clone()));
                return Ok(candidate);
            }
            Err(e) => tried.push(format!("[{} -cpu {}: {e}]", candidate.kind, candidate.cpu)),
        }
    }
    Err(RigError::NoAccelerator {
        tried: tried.join(" "),
    })
}

/// Boots a small idle guest with `candidate` and waits for READY.
fn probe(candidate: &AccelInfo, qemu: &Path, dir: &Path) -> Result<(), RigError> {
    let mut process = QemuProcess::start(&Launch {
        qemu,
        dir,
        side: "probe",
        accel: candidate,
        mem_mb: 64,
        guest: GuestParams {
            wss_mb: 16,
            rate_mb: 0,
        },
        incoming: false,
        extra: &[],
    })?;
    let ready = process.wait_for_line("READY", PROBE_TIMEOUT);
    process.kill();
    ready.map(drop)
}
