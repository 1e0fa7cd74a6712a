//! The stream's efficiency settings over QMP: the multifd and compression parameters on
//! both sides, XBZRLE's cache and zero-page detection on the source, and the channel each
//! VFIO device's state takes (`x-migration-multifd-transfer`, which QEMU 10.0 lets a
//! realized vfio-pci device change).
//!
//! The capabilities themselves (`multifd`, `xbzrle`) go with the others in `configure`.
//! Parameters are kept as QEMU wrote them, raw JSON, so that a value newer than the
//! `qapi` crate's schema (a compression method it does not know) is put back as found.
//! Each change is recorded before it is made, so that [`restore`] undoes a configure
//! that failed half-way, or one made by a process that died.

use engine::driver::{DeviceTransferSetup, DriverError, Side, StreamSetup};
use plans::{DeviceStateTransfer, MultifdCompression, ZeroPageDetection};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::QmpDriver;

/// The vfio-pci property that chooses the channel for a device's state.
pub const MULTIFD_TRANSFER: &str = "x-migration-multifd-transfer";

/// What the stream's configuration changed, to put back.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SavedStream {
    /// The source's parameters as found, by QEMU's names.
    #[serde(default)]
    source: Map<String, Value>,
    /// The destination's parameters as found.
    #[serde(default)]
    destination: Map<String, Value>,
    /// Device properties as found.
    #[serde(default)]
    devices: Vec<SavedProperty>,
}

/// One device property as found on one side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SavedProperty {
    /// `true` on the destination.
    destination: bool,
    qom_path: String,
    value: String,
}

impl SavedStream {
    /// Nothing to put back.
    pub(super) fn is_empty(&self) -> bool {
        self.source.is_empty() && self.destination.is_empty() && self.devices.is_empty()
    }
}

fn side_of(destination: bool) -> Side {
    match destination {
        true => Side::Destination,
        false => Side::Source,
    }
}

fn compression_word(c: MultifdCompression) -> &'static str {
    match c {
        MultifdCompression::None => "none",
        MultifdCompression::Zlib => "zlib",
        MultifdCompression::Zstd => "zstd",
    }
}

fn zero_pages_word(z: ZeroPageDetection) -> &'static str {
    match z {
        ZeroPageDetection::None => "none",
        ZeroPageDetection::Legacy => "legacy",
        ZeroPageDetection::Multifd => "multifd",
    }
}

/// The parameters to set on each side: (source, destination). Both sides must agree on
/// the channels and the compression; the level, the cache and zero pages matter only
/// where pages are sent.
fn parameters(stream: &StreamSetup) -> (Map<String, Value>, Map<String, Value>) {
    let mut source = Map::new();
    let mut destination = Map::new();
    if let Some(channels) = stream.multifd_channels {
        source.insert("multifd-channels".into(), channels.into());
        destination.insert("multifd-channels".into(), channels.into());
    }
    if let Some(compression) = stream.multifd_compression {
        let word = compression_word(compression);
        source.insert("multifd-compression".into(), word.into());
        destination.insert("multifd-compression".into(), word.into());
        let level_key = match compression {
            MultifdCompression::None => None,
            MultifdCompression::Zlib => Some("multifd-zlib-level"),
            MultifdCompression::Zstd => Some("multifd-zstd-level"),
        };
        if let (Some(key), Some(level)) = (level_key, stream.multifd_compression_level) {
            source.insert(key.into(), level.into());
        }
    }
    if let Some(bytes) = stream.xbzrle_cache_bytes {
        source.insert("xbzrle-cache-size".into(), bytes.into());
    }
    if let Some(zero_pages) = stream.zero_page_detection {
        source.insert("zero-page-detection".into(), zero_pages_word(zero_pages).into());
    }
    (source, destination)
}

/// Sets the stream's parameters on both sides (the destination first: it must agree
/// before it listens) and the devices' channel, recording what was there before.
pub(super) async fn configure(driver: &mut QmpDriver, stream: &StreamSetup) -> Result<(), DriverError> {
    let (source, destination) = parameters(stream);
    for (side, set) in [(Side::Destination, destination), (Side::Source, source)] {
        if set.is_empty() {
            continue;
        }
        let found = driver.raw(side, "query-migrate-parameters", None).await?;
        let was: Map<String, Value> = set
            .keys()
            .filter_map(|key| Some((key.clone(), found.get(key)?.clone())))
            .collect();
        match side {
            Side::Source => driver.saved.stream.source = was,
            Side::Destination => driver.saved.stream.destination = was,
        }
        driver
            .raw(side, "migrate-set-parameters", Some(Value::Object(set)))
            .await?;
    }
    if let Some(devices) = &stream.device_state_transfer {
        set_devices(driver, devices).await?;
    }
    Ok(())
}

/// Sets the property on every device, on both sides: QEMU reads it on each side when the
/// migration sets up, and the destination refuses state packets it does not expect.
async fn set_devices(driver: &mut QmpDriver, devices: &DeviceTransferSetup) -> Result<(), DriverError> {
    let value = match devices.transfer {
        DeviceStateTransfer::Main => "off",
        DeviceStateTransfer::Multifd => "on",
    };
    for qom_path in &devices.qom_paths {
        for destination in [true, false] {
            let side = side_of(destination);
            let args = json!({"path": qom_path, "property": MULTIFD_TRANSFER});
            let found = driver.raw(side, "qom-get", Some(args)).await?;
            let found = found.as_str().unwrap_or("auto").to_string();
            driver.saved.stream.devices.push(SavedProperty {
                destination,
                qom_path: qom_path.clone(),
                value: found,
            });
            let args = json!({"path": qom_path, "property": MULTIFD_TRANSFER, "value": value});
            driver.raw(side, "qom-set", Some(args)).await?;
        }
    }
    Ok(())
}

/// Puts the parameters and properties back as they were, on both sides; carries on past
/// a refusal and returns every one. Once called, nothing is left to restore.
pub(super) async fn restore(driver: &mut QmpDriver) -> Vec<DriverError> {
    let saved = std::mem::take(&mut driver.saved.stream);
    let mut refused = Vec::new();
    for (side, was) in [
        (Side::Source, saved.source),
        (Side::Destination, saved.destination),
    ] {
        if was.is_empty() {
            continue;
        }
        if let Err(e) = driver
            .raw(side, "migrate-set-parameters", Some(Value::Object(was)))
            .await
        {
            refused.push(e);
        }
    }
    for property in saved.devices {
        let side = side_of(property.destination);
        let args = json!({"path": property.qom_path, "property": MULTIFD_TRANSFER, "value": property.value});
        if let Err(e) = driver.raw(side, "qom-set", Some(args)).await {
            refused.push(e);
        }
    }
    refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_get_the_channels_and_compression_and_only_the_source_the_rest() {
        let stream = StreamSetup {
            multifd_channels: Some(4),
            multifd_compression: Some(MultifdCompression::Zstd),
            multifd_compression_level: Some(3),
            zero_page_detection: Some(ZeroPageDetection::Legacy),
            ..StreamSetup::default()
        };
        let (source, destination) = parameters(&stream);
        assert_eq!(
            Value::Object(source),
            json!({"multifd-channels": 4, "multifd-compression": "zstd", "multifd-zstd-level": 3, "zero-page-detection": "legacy"})
        );
        assert_eq!(
            Value::Object(destination),
            json!({"multifd-channels": 4, "multifd-compression": "zstd"})
        );
    }

    #[test]
    fn a_stream_left_as_it_is_sets_no_parameter() {
        let (source, destination) = parameters(&StreamSetup::default());
        assert!(source.is_empty() && destination.is_empty());
        let xbzrle = StreamSetup {
            xbzrle_cache_bytes: Some(256 << 20),
            ..StreamSetup::default()
        };
        let (source, destination) = parameters(&xbzrle);
        assert_eq!(Value::Object(source), json!({"xbzrle-cache-size": 268435456u64}));
        assert!(destination.is_empty());
    }

    #[test]
    fn what_was_changed_survives_the_journal_even_a_value_the_schema_does_not_know() {
        let mut saved = SavedStream::default();
        saved.source.insert("multifd-compression".into(), "qatzip".into());
        saved.destination.insert("multifd-channels".into(), 2.into());
        saved.devices.push(SavedProperty {
            destination: true,
            qom_path: "/machine/peripheral/gpu0".into(),
            value: "auto".into(),
        });
        let kept = serde_json::to_value(&saved).expect("serializes");
        let back: SavedStream = serde_json::from_value(kept).expect("reads back");
        assert_eq!(back, saved);
        let old: SavedStream = serde_json::from_value(json!({})).expect("an old journal reads");
        assert!(old.is_empty());
    }
}
