//! The stream-efficiency keys of `[migration]`: multifd channels and their compression,
//! XBZRLE, zero-page detection, and which channel carries VFIO device state. Each is off
//! (or QEMU's) unless the plan writes it. Checks across keys (compression without
//! channels, XBZRLE with multifd, ...) are in `validate`.

use crate::diagnostic::Diagnostic;
use crate::model::{DeviceStateTransfer, MultifdCompression, ZeroPageDetection};
use crate::reader::{Mistakes, TableReader};
use crate::units::Bytes;

/// The stream keys, as `[migration]` lists them.
pub(super) const KEYS: [&str; 6] = [
    "multifd_channels",
    "multifd_compression",
    "multifd_compression_level",
    "xbzrle_cache",
    "zero_page_detection",
    "device_state_transfer",
];

/// QEMU's smallest XBZRLE cache: one target page.
const XBZRLE_MIN_CACHE: u64 = 4096;

/// The stream keys as read; a key left out is `None` (or the default compression).
pub(super) struct Stream {
    pub(super) multifd_channels: Option<u8>,
    pub(super) multifd_compression: MultifdCompression,
    pub(super) multifd_compression_level: Option<u8>,
    pub(super) xbzrle_cache: Option<Bytes>,
    pub(super) zero_page_detection: Option<ZeroPageDetection>,
    pub(super) device_state_transfer: Option<DeviceStateTransfer>,
}

pub(super) fn read_stream(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Stream {
    // QEMU takes 1 to 255 channels and levels up to 20 (zstd); the level's range for
    // the chosen method is checked across keys.
    let channels = r.integer(m, "multifd_channels", 1..=255);
    let compression = r.choice(m, "multifd_compression", MultifdCompression::WORDS);
    let level = r.integer(m, "multifd_compression_level", 0..=20);
    let xbzrle_cache = xbzrle_cache(r, m);
    let zero_pages = r.choice(m, "zero_page_detection", ZeroPageDetection::WORDS);
    let device_state = r.choice(m, "device_state_transfer", DeviceStateTransfer::WORDS);
    Stream {
        multifd_channels: channels.map(|c| c.value as u8),
        multifd_compression: compression.map_or(crate::defaults::migration::MULTIFD_COMPRESSION, |c| c.value),
        multifd_compression_level: level.map(|l| l.value as u8),
        xbzrle_cache,
        zero_page_detection: zero_pages.map(|z| z.value),
        device_state_transfer: device_state.map(|d| d.value),
    }
}

/// The XBZRLE cache: a power of two no smaller than a page, as QEMU requires ("expects a
/// power of two no less than the target page size").
fn xbzrle_cache(r: &TableReader<'_, '_>, m: &mut Mistakes) -> Option<Bytes> {
    let at = r.bytes(m, "xbzrle_cache", "256MiB")?;
    let size = at.value.0;
    if size < XBZRLE_MIN_CACHE || !size.is_power_of_two() {
        m.push(
            Diagnostic::new(
                r.key_path("xbzrle_cache"),
                at.span,
                format!("{} is not a power of two of at least 4KiB", at.value),
            )
            .hint("QEMU takes a power of two no smaller than a page, e.g. `xbzrle_cache = \"256MiB\"`"),
        );
        return None;
    }
    Some(at.value)
}
