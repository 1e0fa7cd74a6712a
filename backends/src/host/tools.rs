//! The installed QEMU and libvirt, and what their versions bring for VFIO migration.
//!
//! Each is asked for its version as a process (`--version`) with a deadline, never
//! through a library: a broken install must be a finding, not a hang. Programs are
//! looked up in `$PATH` and the usual system directories, each under the host's root,
//! so a fixture tree can hold a stand-in `usr/bin/qemu-system-x86_64`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use engine::check::Row;
use engine::preflight::Release;

use super::tree::Tree;

/// How long `--version` may take. QEMU answers in milliseconds; a program that takes
/// seconds is not one to migrate with.
pub(crate) const VERSION_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a program's version could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// It could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program's path.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// It did not answer in time, and was killed.
    #[error("{program} --version did not answer within {} s", timeout.as_secs())]
    TimedOut {
        /// The program's path.
        program: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// Waiting for it failed.
    #[error("waiting for {program}: {source}")]
    Wait {
        /// The program's path.
        program: String,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// QEMU releases and the VFIO migration features they brought, oldest first.
///
/// - 8.1: VFIO migration no longer experimental (`enable-migration`), pre-copy and
///   `switchover-ack` (QEMU 8.1 changelog; qapi/migration.json `switchover-ack`
///   "Since: 8.1").
/// - 8.2: P2P device states, so a VM may have more than one VFIO device (vfio pull of
///   2023-09-11, "P2P support for VFIO migration").
/// - 9.1: the `migration-events` property and `VFIO_MIGRATION` event (qapi/vfio.json
///   "Since: 9.1", commit 5e1f8905ca), which this tool follows devices by; IOMMU dirty
///   tracking through the iommufd backend (commit 7c30710bd9, `query_dirty_bitmap`).
/// - 10.0: multifd device state transfer (`x-migration-multifd-transfer`).
const QEMU_FEATURES: &[(u32, u32, &str)] = &[
    (8, 1, "VFIO migration (8.1)"),
    (8, 2, "P2P for several devices (8.2)"),
    (9, 1, "migration-events (9.1)"),
    (9, 1, "IOMMU dirty tracking through iommufd (9.1)"),
    (10, 0, "multifd device state (10.0)"),
];

/// The oldest QEMU this tool migrates VFIO devices with: it follows each device through
/// `VFIO_MIGRATION` events (docs/vfio.md).
const QEMU_NEEDED: Release = Release { major: 9, minor: 1 };

/// libvirt releases and what they brought for VFIO migration.
///
/// - 8.6: migration of domains with VFIO devices that support it (OpenStack Nova's
///   mdev live-migration spec requires it).
/// - 10.0: `<driver name='vfio' model='mlx5_vfio_pci'/>` to choose a variant driver.
/// - 10.6: the `vfio_data_transferred` job statistic.
const LIBVIRT_FEATURES: &[(u32, u32, &str)] = &[
    (8, 6, "VFIO migration (8.6)"),
    (10, 0, "variant driver model in hostdev XML (10.0)"),
    (10, 6, "vfio_data_transferred job statistic (10.6)"),
];

const LIBVIRT_NEEDED: Release = Release { major: 8, minor: 6 };

/// The QEMU binaries to look for, this architecture's first, then RHEL's `qemu-kvm`.
fn qemu_programs() -> Vec<String> {
    vec![
        format!("qemu-system-{}", std::env::consts::ARCH),
        "qemu-kvm".to_string(),
    ]
}

/// Directories searched, under the root: `$PATH`, then where distributions put
/// daemons and QEMU (`/usr/sbin`, `/usr/libexec`).
fn search_dirs() -> Vec<String> {
    let mut dirs: Vec<String> = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(str::to_string)
        .collect();
    for extra in [
        "/usr/local/bin",
        "/usr/bin",
        "/usr/local/sbin",
        "/usr/sbin",
        "/usr/libexec",
    ] {
        if !dirs.iter().any(|dir| dir == extra) {
            dirs.push(extra.to_string());
        }
    }
    dirs
}

/// The first of `programs` found under the root, as an executable file.
fn find(tree: &Tree, programs: &[String]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let dirs = search_dirs();
    programs.iter().find_map(|program| {
        dirs.iter().find_map(|dir| {
            let path = tree.path(&format!("{dir}/{program}"));
            let executable = path
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0);
            executable.then_some(path)
        })
    })
}

/// Runs `program --version` and returns what it printed on stdout, within `timeout`.
pub(crate) fn version_output(program: &Path, timeout: Duration) -> Result<String, ProbeError> {
    let name = program.display().to_string();
    let mut child = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| ProbeError::Spawn {
            program: name.clone(),
            source,
        })?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() >= timeout => {
                // Best effort: the child may have exited between the two calls.
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::TimedOut {
                    program: name,
                    timeout,
                });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(source) => {
                return Err(ProbeError::Wait {
                    program: name,
                    source,
                })
            }
        }
    }
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        // A version is one line; the rest is not read.
        let _ = stdout.take(64 * 1024).read_to_end(&mut out);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The first `major.minor[.micro]` in `text` that follows `marker` (`QEMU emulator
/// version 10.0.2 (Debian ...)`, `libvirtd (libvirt) 11.3.0`, or a bare `11.3.0`).
pub(crate) fn version_in(text: &str, marker: &str) -> Option<(Release, String)> {
    let line = text.lines().next()?.trim();
    let after = match line.find(marker) {
        Some(at) => &line[at + marker.len()..],
        None => line,
    };
    let word = after
        .split_whitespace()
        .find(|word| Release::parse(word).is_some())?;
    Some((Release::parse(word)?, word.to_string()))
}

fn features(table: &'static [(u32, u32, &'static str)], release: Release) -> Vec<&'static str> {
    table
        .iter()
        .filter(|(major, minor, _)| {
            release
                >= Release {
                    major: *major,
                    minor: *minor,
                }
        })
        .map(|(_, _, feature)| *feature)
        .collect()
}

/// The release and version `program --version` prints after `marker`, and how the
/// program is shown; a `warn` row when it does not run or prints none.
fn installed(id: &str, tree: &Tree, program: &Path, marker: &str) -> Result<(Release, String, String), Row> {
    let shown = shown(tree, program);
    let hint = format!("check that `{shown} --version` runs");
    let output = version_output(program, VERSION_TIMEOUT)
        .map_err(|error| Row::warn(id, format!("{shown}: {error}"), hint.clone()))?;
    let first = output.lines().next().unwrap_or("").to_string();
    let (release, version) = version_in(&output, marker)
        .ok_or_else(|| Row::warn(id, format!("{shown} printed no version: {first:?}"), hint.clone()))?;
    Ok((release, version, shown))
}

/// `host.qemu`: the installed QEMU and its VFIO migration features.
pub(crate) fn qemu_row(tree: &Tree) -> Row {
    const ID: &str = "host.qemu";
    let programs = qemu_programs();
    let Some(program) = find(tree, &programs) else {
        return Row::fail(
            ID,
            format!(
                "no QEMU installed (looked for {} in $PATH, /usr/sbin, /usr/libexec)",
                programs.join(", ")
            ),
            "install QEMU 9.1 or newer (Debian: qemu-system-x86; RHEL: qemu-kvm)",
        );
    };
    let (release, version, shown) = match installed(ID, tree, &program, "version") {
        Ok(found) => found,
        Err(row) => return row,
    };
    let brought = features(QEMU_FEATURES, release);
    let with = if brought.is_empty() {
        "no VFIO migration support (experimental before 8.1)".to_string()
    } else {
        brought.join(", ")
    };
    if release < QEMU_NEEDED {
        return Row::fail(
            ID,
            format!("QEMU {version} ({shown}): {with}; this tool needs {QEMU_NEEDED} to follow devices (migration-events)"),
            format!("upgrade QEMU to {QEMU_NEEDED} or newer"),
        );
    }
    Row::pass(ID, format!("QEMU {version} ({shown}): {with}"))
}

/// `host.libvirt`: the installed libvirt, when there is one. The QMP backend does not
/// need it, so its absence passes.
pub(crate) fn libvirt_row(tree: &Tree) -> Row {
    const ID: &str = "host.libvirt";
    let programs = [
        "libvirtd".to_string(),
        "virtqemud".to_string(),
        "virsh".to_string(),
    ];
    let Some(program) = find(tree, &programs) else {
        return Row::pass(
            ID,
            "libvirt not installed (no libvirtd, virtqemud or virsh); the QMP backend does not need it",
        );
    };
    let (release, version, shown) = match installed(ID, tree, &program, ")") {
        Ok(found) => found,
        Err(row) => return row,
    };
    let brought = features(LIBVIRT_FEATURES, release);
    if release < LIBVIRT_NEEDED {
        return Row::warn(
            ID,
            format!("libvirt {version} ({shown}): older than {LIBVIRT_NEEDED}, it refuses to migrate domains with VFIO devices"),
            format!("upgrade libvirt to {LIBVIRT_NEEDED} or newer, or drive QEMU over QMP"),
        );
    }
    Row::pass(ID, format!("libvirt {version} ({shown}): {}", brought.join(", ")))
}

/// A program's path as the host sees it (`/usr/bin/qemu-system-x86_64`), not as the
/// fixture tree stores it.
fn shown(tree: &Tree, program: &Path) -> String {
    match program.strip_prefix(tree.root()) {
        Ok(inside) => format!("/{}", inside.display()),
        Err(_) => program.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_what_qemu_and_libvirt_print() {
        let qemu =
            "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright (c) 2003-2025";
        assert_eq!(
            version_in(qemu, "version"),
            Some((Release { major: 10, minor: 0 }, "10.0.2".into()))
        );
        assert_eq!(
            version_in("libvirtd (libvirt) 11.3.0\n", ")"),
            Some((Release { major: 11, minor: 3 }, "11.3.0".into()))
        );
        assert_eq!(
            version_in("11.3.0\n", ")"),
            Some((Release { major: 11, minor: 3 }, "11.3.0".into()))
        );
        assert_eq!(version_in("no version here", "version"), None);
        assert_eq!(version_in("", "version"), None);
    }

    #[test]
    fn each_release_brings_the_features_of_every_release_before_it() {
        assert!(features(QEMU_FEATURES, Release { major: 8, minor: 0 }).is_empty());
        assert_eq!(features(QEMU_FEATURES, Release { major: 9, minor: 0 }).len(), 2);
        assert_eq!(features(QEMU_FEATURES, Release { major: 10, minor: 1 }).len(), 5);
    }

    #[test]
    fn a_program_that_does_not_answer_is_killed_at_the_deadline() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = dir.path().join("hangs");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 30\n").expect("write the script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let started = Instant::now();
        let result = version_output(&script, Duration::from_millis(200));
        assert!(matches!(result, Err(ProbeError::TimedOut { .. })), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
