//! The stream's efficiency choices, across keys.
//!
//! Each choice is off unless the plan writes it, and a key that would have no effect is
//! refused rather than ignored, as with the `tls_*` keys: a plan that asks for zstd
//! without multifd channels gets no compression, and should hear so before it runs.
//! The combinations QEMU 10.0 refuses are refused here too, with QEMU's own words, so
//! that they fail before anything changes on either host.

use crate::diagnostic::Diagnostic;
use crate::model::{DeviceStateTransfer, MultifdCompression, Plan};
use crate::parse::Spans;
use crate::reader::Mistakes;

pub(super) fn check(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let s = &plan.migration;
    let mut refuse = |key: &str, message: String, hint: &str| {
        let key = format!("migration.{key}");
        m.push(Diagnostic::new(key.clone(), spans.of(&key), message).hint(hint));
    };
    let multifd = s.multifd_channels.is_some();
    if !multifd {
        for key in ["multifd_compression", "multifd_compression_level"] {
            if spans.written(&format!("migration.{key}")) {
                refuse(
                    key,
                    "has no effect: the stream has no multifd channels".into(),
                    "add `multifd_channels = 4` to [migration] to send over parallel channels, or remove the key",
                );
            }
        }
    }
    if multifd && spans.written("migration.multifd_compression_level") {
        match s.multifd_compression.levels() {
            None => refuse(
                "multifd_compression_level",
                "has no effect: `multifd_compression` is \"none\"".into(),
                "set `multifd_compression = \"zstd\"` (or \"zlib\"), or remove the key",
            ),
            Some(levels) => {
                let level = s.multifd_compression_level.unwrap_or_default();
                if !levels.contains(&level) {
                    refuse(
                        "multifd_compression_level",
                        format!(
                            "{level} is out of range for {}",
                            compression_name(s.multifd_compression)
                        ),
                        &format!(
                            "QEMU takes {} levels from {} to {}",
                            compression_name(s.multifd_compression),
                            levels.start(),
                            levels.end()
                        ),
                    );
                }
            }
        }
    }
    if multifd && s.xbzrle_cache.is_some() {
        refuse(
            "xbzrle_cache",
            "XBZRLE cannot be combined with multifd channels".into(),
            "QEMU refuses it (\"Multifd is not compatible with xbzrle\"): multifd sends pages whole; keep one of `xbzrle_cache` and `multifd_channels`",
        );
    }
    if multifd && s.postcopy {
        refuse(
            "postcopy",
            "post-copy cannot be combined with multifd channels".into(),
            "QEMU 10.0 refuses it (\"Postcopy is not yet compatible with multifd\"); remove `postcopy` or `multifd_channels`",
        );
    }
    // libvirt sets the channels on both sides before it makes the destination listen.
    if multifd && plan.destination.listen.is_none() && !plan.is_libvirt() {
        refuse(
            "multifd_channels",
            "multifd needs the destination set up before it listens".into(),
            "both sides must agree on the channels before the destination listens: start it with `-incoming defer` and set `listen` in [destination], so the tool sets them first",
        );
    }
    check_device_state(plan, spans, m);
}

/// `device_state_transfer`: meaningful only with devices; `multifd` needs channels that
/// do not compress (QEMU's `multifd_device_state_supported`).
fn check_device_state(plan: &Plan, spans: &Spans, m: &mut Mistakes) {
    let s = &plan.migration;
    let Some(transfer) = s.device_state_transfer else {
        return;
    };
    let key = "migration.device_state_transfer";
    let mut refuse = |message: &str, hint: &str| {
        m.push(Diagnostic::new(key, spans.of(key), message).hint(hint));
    };
    if plan.devices.is_empty() {
        refuse(
            "has no effect: the plan lists no VFIO devices",
            "list the devices in [[devices]], or remove the key",
        );
        return;
    }
    if transfer != DeviceStateTransfer::Multifd {
        return;
    }
    if s.multifd_channels.is_none() {
        refuse(
            "\"multifd\" needs multifd channels",
            "add `multifd_channels = 4` to [migration]: the devices' state goes over those channels",
        );
    } else if s.multifd_compression != MultifdCompression::None {
        refuse(
            "\"multifd\" needs uncompressed multifd channels",
            "QEMU sends device state over multifd only with `multifd_compression = \"none\"`; remove the compression or use \"main\"",
        );
    }
}

fn compression_name(c: MultifdCompression) -> &'static str {
    match c {
        MultifdCompression::None => "none",
        MultifdCompression::Zlib => "zlib",
        MultifdCompression::Zstd => "zstd",
    }
}
