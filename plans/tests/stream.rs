//! The stream's efficiency choices in a plan: multifd channels and their compression,
//! XBZRLE, zero-page detection and the VFIO device-state channel. Each is off unless the
//! plan writes it; keys that would have no effect, and combinations QEMU refuses, are
//! mistakes at the key that makes them.

use plans::{DeviceStateTransfer, MultifdCompression, Plan, PlanErrors, ZeroPageDetection};

mod common;
use common::BASE;

fn load(migration: &str, rest: &str) -> Result<Plan, PlanErrors> {
    plans::load("plan.toml", &format!("{BASE}\n[migration]\n{migration}\n{rest}"))
}

fn valid(migration: &str) -> Plan {
    load(migration, "").unwrap_or_else(|e| panic!("{e}"))
}

const DEVICE: &str = "[[devices]]\nid = \"gpu0\"\n";

/// Each mistake as (line, key, message).
fn mistakes_with(migration: &str, rest: &str) -> Vec<(usize, String, String)> {
    match load(migration, rest) {
        Ok(_) => panic!("accepted:\n{migration}\n{rest}"),
        Err(e) => e
            .located()
            .into_iter()
            .map(|d| (d.line.unwrap_or(0), d.diagnostic.key, d.diagnostic.message))
            .collect(),
    }
}

fn mistakes(migration: &str) -> Vec<(usize, String, String)> {
    mistakes_with(migration, "")
}

/// The line of `[migration]`'s first key in these plans.
const FIRST: usize = 12;

#[test]
fn a_plan_that_writes_nothing_gets_one_plain_stream_and_qemus_own_settings() {
    let m = valid("").migration;
    assert_eq!(m.multifd_channels, None);
    assert_eq!(m.multifd_compression, MultifdCompression::None);
    assert_eq!(m.multifd_compression_level, None);
    assert_eq!(m.xbzrle_cache, None);
    assert_eq!(m.zero_page_detection, None);
    assert_eq!(m.device_state_transfer, None);
}

#[test]
fn multifd_with_zstd_at_a_level_reads_as_written() {
    let m = valid("multifd_channels = 4\nmultifd_compression = \"zstd\"\nmultifd_compression_level = 3")
        .migration;
    assert_eq!(m.multifd_channels, Some(4));
    assert_eq!(m.multifd_compression, MultifdCompression::Zstd);
    assert_eq!(m.multifd_compression_level, Some(3));
}

#[test]
fn xbzrle_takes_a_cache_that_is_a_power_of_two() {
    let m = valid("xbzrle_cache = \"256MiB\"\nzero_page_detection = \"none\"").migration;
    assert_eq!(m.xbzrle_cache.map(|b| b.0), Some(256 << 20));
    assert_eq!(m.zero_page_detection, Some(ZeroPageDetection::None));
    let found = mistakes("xbzrle_cache = \"100MB\"");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "migration.xbzrle_cache");
    assert!(found[0].2.contains("not a power of two"), "{found:?}");
    assert_eq!(mistakes("xbzrle_cache = \"2KiB\"")[0].1, "migration.xbzrle_cache");
}

#[test]
fn channels_are_one_to_255() {
    for bad in ["0", "256", "-1"] {
        let found = mistakes(&format!("multifd_channels = {bad}"));
        assert_eq!(found[0].1, "migration.multifd_channels", "{bad}: {found:?}");
    }
    assert_eq!(
        valid("multifd_channels = 255").migration.multifd_channels,
        Some(255)
    );
}

#[test]
fn compression_without_channels_has_no_effect_and_is_refused() {
    let found = mistakes("multifd_compression = \"zstd\"\nmultifd_compression_level = 3");
    assert_eq!(
        found,
        [
            (
                FIRST,
                "migration.multifd_compression".to_string(),
                "has no effect: the stream has no multifd channels".to_string()
            ),
            (
                FIRST + 1,
                "migration.multifd_compression_level".to_string(),
                "has no effect: the stream has no multifd channels".to_string()
            ),
        ]
    );
}

#[test]
fn a_level_needs_a_compression_and_fits_its_range() {
    let found = mistakes("multifd_channels = 2\nmultifd_compression_level = 3");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "migration.multifd_compression_level");
    assert!(found[0].2.contains("\"none\""), "{found:?}");
    let found =
        mistakes("multifd_channels = 2\nmultifd_compression = \"zlib\"\nmultifd_compression_level = 10");
    assert_eq!(found[0].2, "10 is out of range for zlib");
    assert_eq!(
        valid("multifd_channels = 2\nmultifd_compression = \"zstd\"\nmultifd_compression_level = 20")
            .migration
            .multifd_compression_level,
        Some(20)
    );
}

#[test]
fn xbzrle_and_multifd_are_refused_together_as_qemu_refuses_them() {
    let found = mistakes("multifd_channels = 4\nxbzrle_cache = \"64MiB\"");
    assert_eq!(
        found,
        [(
            FIRST + 1,
            "migration.xbzrle_cache".to_string(),
            "XBZRLE cannot be combined with multifd channels".to_string()
        )]
    );
}

#[test]
fn postcopy_and_multifd_are_refused_together() {
    let found = mistakes("multifd_channels = 4\npostcopy = true");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        (found[0].0, found[0].1.as_str()),
        (FIRST + 1, "migration.postcopy")
    );
}

#[test]
fn multifd_needs_a_destination_the_tool_makes_listen() {
    let text = "[vm]\nname = \"x\"\n[source]\nqmp = \"unix:/run/s.qmp\"\n[destination]\nqmp = \"unix:/run/d.qmp\"\n[migration]\nuri = \"tcp:127.0.0.1:4444\"\nmultifd_channels = 4\n";
    let e = plans::load("plan.toml", text).expect_err("refused");
    let found: Vec<_> = e.located().into_iter().map(|d| d.diagnostic.key).collect();
    assert_eq!(found, ["migration.multifd_channels"]);
}

#[test]
fn device_state_over_multifd_needs_devices_and_uncompressed_channels() {
    let plan = load(
        "multifd_channels = 4\ndevice_state_transfer = \"multifd\"",
        DEVICE,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        plan.migration.device_state_transfer,
        Some(DeviceStateTransfer::Multifd)
    );
    let found = mistakes("multifd_channels = 4\ndevice_state_transfer = \"multifd\"");
    assert_eq!(found[0].2, "has no effect: the plan lists no VFIO devices");
    let found = mistakes_with("device_state_transfer = \"multifd\"", DEVICE);
    assert_eq!(found[0].2, "\"multifd\" needs multifd channels");
    let found = mistakes_with(
        "multifd_channels = 4\nmultifd_compression = \"zstd\"\ndevice_state_transfer = \"multifd\"",
        DEVICE,
    );
    assert_eq!(found[0].2, "\"multifd\" needs uncompressed multifd channels");
    // Keeping it on the main channel needs nothing else.
    assert!(load("device_state_transfer = \"main\"", DEVICE).is_ok());
}

#[test]
fn an_unknown_method_lists_the_ones_there_are() {
    let e = load("multifd_channels = 2\nmultifd_compression = \"lz4\"", "").expect_err("refused");
    let d = &e.diagnostics[0];
    assert_eq!(d.key, "migration.multifd_compression");
    assert!(
        d.hint.as_deref().unwrap_or_default().contains("\"zstd\""),
        "{d:?}"
    );
}
