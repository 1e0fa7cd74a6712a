//! Two real libvirt daemons side by side and a domain running the rig's guest, for tests
//! of migrations that libvirt drives (`virsh migrate --live --p2p ...`).
//!
//! See [`LibvirtDaemon`] for how two root daemons share one machine, and
//! [`LibvirtPair::domain_xml`] for the domain.

mod daemon;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use daemon::LibvirtDaemon;

use crate::accel::{self, AccelInfo};
use crate::error::{io_error, RigError};
use crate::pair::GUEST_OVERHEAD_MB;
use crate::{Accel, GuestParams, GUEST_ELF, MAX_WSS_MB};

/// Where each daemon finds the guest image (inside its own tree).
const GUEST_IMAGE: &str = "/var/lib/libvirt/images/rig-guest.elf";

/// The firmware, as for the direct pair: SeaBIOS takes ~3 s to boot under KVM-PVM,
/// qboot ~0.2 s.
const FIRMWARE: &str = "/usr/share/qemu/qboot.rom";

/// How to start a [`LibvirtPair`]. The default: 1 GiB of RAM, an idle 64 MiB working set,
/// [`Accel::Auto`], the dirty ring on (where KVM is used), `qemu-system-x86_64` from `PATH`
/// as the emulator, no emulator environment, domain `rig-guest`.
#[derive(Debug, Clone)]
pub struct LibvirtPairOptions {
    /// Guest RAM in MiB (default 1024); raised to the working set plus 32 MiB if smaller.
    pub mem_mb: u32,
    /// The workload.
    pub guest: GuestParams,
    /// Accelerator choice, probed with [`Self::qemu`] as for [`crate::QemuPair`].
    pub accel: Accel,
    /// Turn on the KVM dirty ring; ignored under TCG.
    pub dirty_ring: bool,
    /// The QEMU binary: probed, and the domain's `<emulator>` unless [`Self::emulator`]
    /// names another.
    pub qemu: PathBuf,
    /// The domain's `<emulator>` when it is not [`Self::qemu`] itself: e.g. a wrapper
    /// that ends up running it (libvirt probes its capabilities too, by running it).
    pub emulator: Option<PathBuf>,
    /// Environment variables for the emulator, as libvirt's `<qemu:env>` (libvirt gives
    /// the emulator a fixed environment of its own, and these). Any makes libvirt mark the
    /// domain tainted (`custom-argv`); libvirt passes them on to the destination with the
    /// domain's definition.
    pub emulator_env: Vec<(String, String)>,
    /// The domain's name.
    pub domain: String,
    /// A directory with `ca-cert.pem`, `server-cert.pem`, `server-key.pem`,
    /// `client-cert.pem` and `client-key.pem`, given to both daemons as their
    /// `migrate_tls_x509_cert_dir`, for encrypted migrations (`VIR_MIGRATE_TLS`).
    pub migrate_tls_dir: Option<PathBuf>,
}

impl Default for LibvirtPairOptions {
    fn default() -> Self {
        LibvirtPairOptions {
            mem_mb: 1024,
            guest: GuestParams {
                wss_mb: 64,
                rate_mb: 0,
            },
            accel: Accel::Auto,
            dirty_ring: true,
            qemu: PathBuf::from("qemu-system-x86_64"),
            emulator: None,
            emulator_env: Vec::new(),
            migrate_tls_dir: None,
            domain: "rig-guest".into(),
        }
    }
}

/// Two private libvirt daemons, and a persistent domain defined and running the guest on
/// the source. Dropping it stops both daemons, which kills the domain's QEMUs wherever
/// they are, and removes their trees.
#[derive(Debug)]
pub struct LibvirtPair {
    /// The daemon the domain starts on.
    pub source: LibvirtDaemon,
    /// A daemon with no domain, to migrate to.
    pub destination: LibvirtDaemon,
    /// The accelerator and CPU model the domain runs with.
    pub accel: AccelInfo,
    domain: String,
    xml: String,
    booted_in: Duration,
    /// Holds the accelerator probe's files.
    _dir: tempfile::TempDir,
}

impl LibvirtPair {
    /// Starts both daemons, defines the domain on the source, starts it and returns once
    /// the guest printed READY there.
    ///
    /// [`RigError::LibvirtUnavailable`] means libvirt cannot run here at all (a test may
    /// skip). The daemons die if the thread that started the pair exits (parent-death
    /// signal), so use and drop the pair on that thread.
    pub fn start(opts: &LibvirtPairOptions) -> Result<LibvirtPair, RigError> {
        if opts.guest.wss_mb > MAX_WSS_MB {
            return Err(RigError::Options(format!(
                "wss_mb={} is more than the guest supports ({MAX_WSS_MB})",
                opts.guest.wss_mb
            )));
        }
        if opts.domain.is_empty() || !opts.domain.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(RigError::Options(format!(
                "domain name {:?}: use letters, digits and '-'",
                opts.domain
            )));
        }
        daemon::check_available()?;
        let emulator = match &opts.emulator {
            Some(emulator) => which(emulator)
                .ok_or_else(|| RigError::Options(format!("emulator {} not found", emulator.display())))?,
            None => which(&opts.qemu)
                .ok_or_else(|| RigError::Options(format!("QEMU binary {} not found", opts.qemu.display())))?,
        };
        // Both daemons start while the accelerator is probed.
        let source = LibvirtDaemon::spawn("source", opts.migrate_tls_dir.as_deref())?;
        let destination = LibvirtDaemon::spawn("destination", opts.migrate_tls_dir.as_deref())?;
        let dir = tempfile::Builder::new()
            .prefix("vfio-migrate-rig-")
            .tempdir()
            .map_err(io_error("create a temporary directory"))?;
        let accel = accel::choose(opts.accel, opts.dirty_ring, &opts.qemu, dir.path())?;
        let source = source.wait_until_ready()?;
        let destination = destination.wait_until_ready()?;

        let mem_mb = opts.mem_mb.max(opts.guest.wss_mb + GUEST_OVERHEAD_MB);
        let xml = domain_xml(
            &opts.domain,
            mem_mb,
            opts.guest,
            &accel,
            &emulator,
            &opts.emulator_env,
        )?;
        for daemon in [&source, &destination] {
            let image = daemon.host_path(GUEST_IMAGE);
            std::fs::write(&image, GUEST_ELF).map_err(io_error(format!("write {}", image.display())))?;
        }
        // virsh reads the file, outside the daemon's namespace.
        let xml_file = source.tree().join(format!("{}.xml", opts.domain));
        std::fs::write(&xml_file, &xml).map_err(io_error(format!("write {}", xml_file.display())))?;

        let t = Instant::now();
        source.virsh(&["define", &xml_file.to_string_lossy()])?;
        source.virsh(&["start", &opts.domain])?;
        // Filling the largest (2 GiB) working set takes ~2 s under KVM-PVM: 20 s is ample.
        source.wait_for_line(&opts.domain, "READY", Duration::from_secs(20))?;
        let booted_in = t.elapsed();
        Ok(LibvirtPair {
            source,
            destination,
            accel,
            domain: opts.domain.clone(),
            xml,
            booted_in,
            _dir: dir,
        })
    }

    /// Whether private libvirt daemons can run here (libvirt and its QEMU driver
    /// installed, root), before anything is started: [`RigError::LibvirtUnavailable`]
    /// says why not.
    pub fn available() -> Result<(), RigError> {
        daemon::check_available()
    }

    /// [`Self::start`] for a test: `None` (and "skipped" on stderr) where libvirt cannot
    /// run here, except under `CI_REQUIRE_LIBVIRT=1` (set by CI, which installs libvirt),
    /// where that panics; any other failure panics with the daemons' logs.
    pub fn start_or_skip(opts: &LibvirtPairOptions) -> Option<LibvirtPair> {
        match LibvirtPair::start(opts) {
            Ok(pair) => Some(pair),
            Err(RigError::LibvirtUnavailable { why }) => {
                assert!(
                    std::env::var("CI_REQUIRE_LIBVIRT").as_deref() != Ok("1"),
                    "{why}; CI_REQUIRE_LIBVIRT=1 forbids skipping"
                );
                eprintln!("skipped: {why}");
                None
            }
            Err(e) => panic!("start a libvirt pair: {e}"),
        }
    }

    /// The domain's name (the same on both daemons).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain XML the source was given.
    ///
    /// Its shape, and why:
    /// - `type='kvm'` or `'qemu'` (TCG) and the `<cpu>` element map the probed
    ///   [`AccelInfo`]: `-cpu host[,-feature]` is `host-passthrough` with disabled
    ///   features, a named model is `custom` with `<model fallback='forbid'>`;
    /// - `<kvm><dirty-ring state='on' size='4096'/>` is the direct pair's
    ///   `-accel kvm,dirty-ring-size=4096`;
    /// - machine `pc`, one vCPU, `<loader type='rom'>` (QEMU's `-bios`) with qboot, and
    ///   `<kernel>`/`<cmdline>` for the multiboot guest and its workload, as the direct
    ///   pair boots it;
    /// - the serial port writes to `/var/log/libvirt/qemu/<domain>.serial`, a path that
    ///   each daemon's namespace maps to its own tree, so the source's and the
    ///   destination's output land in different files from the same XML;
    /// - no USB controller, no memory balloon, no disk, network or graphics: nothing the
    ///   guest does not use, nothing to migrate but RAM, CPU and the serial port;
    /// - with [`LibvirtPairOptions::emulator_env`], a `<qemu:commandline>` of `<qemu:env>`
    ///   elements (libvirt's QEMU namespace) that sets them.
    pub fn domain_xml(&self) -> &str {
        &self.xml
    }

    /// How long the domain took from `virsh start` to READY.
    pub fn booted_in(&self) -> Duration {
        self.booted_in
    }

    /// The source's serial log (the guest's output before it migrated).
    pub fn source_serial_log(&self) -> PathBuf {
        self.source.serial_log(&self.domain)
    }

    /// The destination's serial log (the guest's output after it migrated).
    pub fn destination_serial_log(&self) -> PathBuf {
        self.destination.serial_log(&self.domain)
    }

    /// Both daemons' diagnostics, for a failing test to print.
    pub fn diagnostics(&self) -> String {
        format!(
            "=== source\n{}\n=== destination\n{}",
            self.source.diagnostics(),
            self.destination.diagnostics()
        )
    }
}

/// The domain XML; see [`LibvirtPair::domain_xml`].
fn domain_xml(
    name: &str,
    mem_mb: u32,
    guest: GuestParams,
    accel: &AccelInfo,
    emulator: &Path,
    env: &[(String, String)],
) -> Result<String, RigError> {
    let (domain_type, cpu) = match accel.kind.as_str() {
        "kvm" => ("kvm", cpu_xml(&accel.cpu)?),
        "tcg" => ("qemu", cpu_xml(&accel.cpu)?),
        other => {
            return Err(RigError::Options(format!(
                "accelerator {other:?} has no libvirt domain type"
            )))
        }
    };
    let dirty_ring = if accel.kind == "kvm" && accel.dirty_ring {
        "\n    <kvm><dirty-ring state='on' size='4096'/></kvm>"
    } else {
        ""
    };
    let serial = daemon::serial_path(name);
    let (namespace, commandline) = if env.is_empty() {
        (String::new(), String::new())
    } else {
        let mut vars = String::new();
        for (var, value) in env {
            if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(RigError::Options(format!(
                    "emulator environment variable {var:?}: use letters, digits and '_'"
                )));
            }
            vars.push_str(&format!(
                "\n    <qemu:env name='{var}' value='{}'/>",
                xml_escape(value)
            ));
        }
        (
            " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'".to_string(),
            format!("\n  <qemu:commandline>{vars}\n  </qemu:commandline>"),
        )
    };
    Ok(format!(
        r#"<domain type='{domain_type}'{namespace}>
  <name>{name}</name>
  <memory unit='MiB'>{mem_mb}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <loader type='rom'>{FIRMWARE}</loader>
    <kernel>{GUEST_IMAGE}</kernel>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features>
    <acpi/>{dirty_ring}
  </features>
  {cpu}
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='{serial}' append='on'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>{commandline}
</domain>
"#,
        cmdline = xml_escape(&guest.cmdline()),
        emulator = xml_escape(&emulator.to_string_lossy()),
    ))
}

/// The `<cpu>` element for a QEMU `-cpu` argument of the forms [`AccelInfo`] uses:
/// `host` or a model name, then `-feature`/`+feature` switches.
fn cpu_xml(cpu: &str) -> Result<String, RigError> {
    let mut parts = cpu.split(',');
    let model = parts.next().unwrap_or_default();
    let mut features = String::new();
    for part in parts {
        let (policy, name) = match part.split_at_checked(1) {
            Some(("-", name)) => ("disable", name),
            Some(("+", name)) => ("require", name),
            _ => {
                return Err(RigError::Options(format!(
                    "-cpu {cpu}: {part:?} has no libvirt <feature> form"
                )))
            }
        };
        features.push_str(&format!(
            "\n    <feature policy='{policy}' name='{}'/>",
            xml_escape(name)
        ));
    }
    Ok(match model {
        "host" => format!("<cpu mode='host-passthrough' check='none' migratable='on'>{features}\n  </cpu>"),
        "" => return Err(RigError::Options(format!("-cpu {cpu:?}: no model"))),
        model => format!(
            "<cpu mode='custom' match='exact' check='none'>\n    <model fallback='forbid'>{}</model>{features}\n  </cpu>",
            xml_escape(model)
        ),
    })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The binary `qemu` names: itself if it is a path, else the first match on `PATH`.
fn which(qemu: &Path) -> Option<PathBuf> {
    if qemu.components().count() > 1 {
        return qemu.is_file().then(|| qemu.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(qemu))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm(cpu: &str, dirty_ring: bool) -> AccelInfo {
        AccelInfo {
            kind: "kvm".into(),
            cpu: cpu.into(),
            dirty_ring,
        }
    }

    #[test]
    fn the_probed_cpu_maps_to_the_cpu_element() {
        assert_eq!(
            cpu_xml("host").ok().as_deref(),
            Some("<cpu mode='host-passthrough' check='none' migratable='on'>\n  </cpu>")
        );
        let xml = cpu_xml("host,-arch-capabilities").unwrap_or_else(|e| panic!("{e}"));
        assert!(xml.starts_with("<cpu mode='host-passthrough'"), "{xml}");
        assert!(
            xml.contains("<feature policy='disable' name='arch-capabilities'/>"),
            "{xml}"
        );
        let xml = cpu_xml("qemu64").unwrap_or_else(|e| panic!("{e}"));
        assert!(xml.contains("<model fallback='forbid'>qemu64</model>"), "{xml}");
        assert!(matches!(cpu_xml("host,migratable=on"), Err(RigError::Options(_))));
    }

    #[test]
    fn the_domain_has_the_dirty_ring_only_under_kvm_with_it_on() {
        let guest = GuestParams {
            wss_mb: 64,
            rate_mb: 20,
        };
        let emulator = Path::new("/usr/bin/qemu-system-x86_64");
        let with =
            domain_xml("g", 96, guest, &kvm("host", true), emulator, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(with.starts_with("<domain type='kvm'>"), "{with}");
        assert!(with.contains("<dirty-ring state='on' size='4096'/>"), "{with}");
        assert!(with.contains("<cmdline>wss_mb=64 rate_mb=20</cmdline>"), "{with}");
        assert!(with.contains("<memory unit='MiB'>96</memory>"), "{with}");
        let without =
            domain_xml("g", 96, guest, &kvm("host", false), emulator, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!without.contains("dirty-ring"), "{without}");
        let tcg = AccelInfo {
            kind: "tcg".into(),
            cpu: "qemu64".into(),
            dirty_ring: false,
        };
        let tcg = domain_xml("g", 96, guest, &tcg, emulator, &[]).unwrap_or_else(|e| panic!("{e}"));
        assert!(tcg.starts_with("<domain type='qemu'>"), "{tcg}");
        assert!(!tcg.contains("dirty-ring"), "{tcg}");
        assert!(
            !tcg.contains("qemu:"),
            "no QEMU namespace without an environment: {tcg}"
        );
    }

    #[test]
    fn an_emulator_environment_is_set_with_qemu_env() {
        let guest = GuestParams {
            wss_mb: 64,
            rate_mb: 0,
        };
        let env = [("MODEL".to_string(), r#"{"id":"a'b"}"#.to_string())];
        let xml = domain_xml("g", 96, guest, &kvm("host", true), Path::new("/x/qemu"), &env)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            xml.starts_with("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"),
            "{xml}"
        );
        assert!(xml.contains("<emulator>/x/qemu</emulator>"), "{xml}");
        assert!(
            xml.contains("<qemu:commandline>\n    <qemu:env name='MODEL' value='{&quot;id&quot;:&quot;a&apos;b&quot;}'/>\n  </qemu:commandline>\n</domain>"),
            "{xml}"
        );
        let bad = [("A=B".to_string(), String::new())];
        assert!(matches!(
            domain_xml("g", 96, guest, &kvm("host", true), Path::new("/x/qemu"), &bad),
            Err(RigError::Options(_))
        ));
    }
}
