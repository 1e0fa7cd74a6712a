//! Human-readable quantities used in plans: durations (`300ms`), sizes (`512MiB`) and
//! rates (`128MiB/s`).
//!
//! Sizes and rates accept binary (KiB, MiB, GiB, TiB) and decimal (kB, MB, GB, TB) units,
//! plain bytes (`B`) and bits for rates (`Mbit/s`, `Gbit/s`), because operators copy
//! numbers from both QEMU (MiB/s) and network gear (Gbit/s). The value printed back is
//! always in binary units, so a report never rounds a limit the plan set.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Serialize, Serializer};

/// Why a quantity did not parse; the message is shown after the key and position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UnitError(pub String);

/// A duration written like `300ms`, `2s`, `1m 30s`.
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim()).map_err(|e| UnitError(format!("invalid duration {text:?}: {e}")))
}

/// A number of bytes, e.g. guest memory or a device's stop-copy state size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, JsonSchema)]
#[schemars(with = "String")]
pub struct Bytes(pub u64);

/// A data rate in bytes per second, e.g. a bandwidth cap or a vCPU dirty limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, JsonSchema)]
#[schemars(with = "String")]
pub struct Rate(pub u64);

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

/// Multiplier in bytes for a unit, or `None` when the unit is unknown. `bits` selects bit
/// units (for rates only).
fn unit_factor(unit: &str, allow_bits: bool) -> Option<f64> {
    let bytes = match unit {
        "" | "B" => 1.0,
        "KiB" | "K" | "k" => KIB as f64,
        "MiB" | "M" => MIB as f64,
        "GiB" | "G" => GIB as f64,
        "TiB" | "T" => TIB as f64,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ if allow_bits => match unit {
            "bit" | "bps" => 1.0 / 8.0,
            "kbit" | "Kbit" | "kbps" => 1e3 / 8.0,
            "Mbit" | "Mbps" => 1e6 / 8.0,
            "Gbit" | "Gbps" => 1e9 / 8.0,
            "Tbit" | "Tbps" => 1e12 / 8.0,
            _ => return None,
        },
        _ => return None,
    };
    Some(bytes)
}

/// Splits `"12.5 MiB"` into `(12.5, "MiB")`.
fn split_number(text: &str) -> Option<(f64, &str)> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(end);
    let num: String = num.chars().filter(|c| *c != '_').collect();
    let value: f64 = num.parse().ok()?;
    Some((value, unit.trim()))
}

fn to_u64(value: f64) -> Option<u64> {
    (value.is_finite() && value >= 0.0 && value < u64::MAX as f64).then_some(value.round() as u64)
}

impl Bytes {
    /// Parses `512MiB`, `1.5GiB`, `4096` (bytes), `2GB`.
    pub fn parse(text: &str) -> Result<Bytes, UnitError> {
        let bad = || {
            UnitError(format!(
                "invalid size {text:?}: expected a number and a unit such as \"512MiB\" or \"2GiB\""
            ))
        };
        let (value, unit) = split_number(text).ok_or_else(bad)?;
        let factor = unit_factor(unit, false).ok_or_else(bad)?;
        to_u64(value * factor).map(Bytes).ok_or_else(bad)
    }

    /// The size in MiB, for display.
    pub fn mib(self) -> f64 {
        self.0 as f64 / MIB as f64
    }
}

impl Rate {
    /// Parses `128MiB/s`, `10Gbit/s`, `1GiB/s`; the `/s` is required so a rate cannot be
    /// mistaken for a size.
    pub fn parse(text: &str) -> Result<Rate, UnitError> {
        let bad = || {
            UnitError(format!(
                "invalid rate {text:?}: expected a number and a unit per second such as \"128MiB/s\" or \"10Gbit/s\""
            ))
        };
        let trimmed = text.trim();
        let per_second = trimmed
            .strip_suffix("/s")
            .or_else(|| trimmed.strip_suffix("ps").map(|_| trimmed))
            .ok_or_else(bad)?;
        let (value, unit) = split_number(per_second).ok_or_else(bad)?;
        let factor = unit_factor(unit, true).ok_or_else(bad)?;
        to_u64(value * factor).map(Rate).ok_or_else(bad)
    }

    /// Bytes per second.
    pub fn bytes_per_sec(self) -> u64 {
        self.0
    }

    /// The rate in MiB/s, the unit QEMU's dirty-rate commands use.
    pub fn mib_per_sec(self) -> f64 {
        self.0 as f64 / MIB as f64
    }
}

/// Formats a byte count in the largest binary unit that keeps it ≥ 1.
pub fn format_bytes(bytes: u64) -> String {
    let (value, unit) = match bytes {
        b if b >= TIB => (b as f64 / TIB as f64, "TiB"),
        b if b >= GIB => (b as f64 / GIB as f64, "GiB"),
        b if b >= MIB => (b as f64 / MIB as f64, "MiB"),
        b if b >= KIB => (b as f64 / KIB as f64, "KiB"),
        b => return format!("{b}B"),
    };
    let text = format!("{value:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s", format_bytes(self.0))
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Serializes a duration the way plans write it (`300ms`), for reports and plan echoes.
pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(Bytes::parse("512MiB"), Ok(Bytes(512 * MIB)));
        assert_eq!(Bytes::parse("1.5GiB"), Ok(Bytes(3 * GIB / 2)));
        assert_eq!(Bytes::parse("2GB"), Ok(Bytes(2_000_000_000)));
        assert_eq!(Bytes::parse("4096"), Ok(Bytes(4096)));
        assert_eq!(Bytes::parse("1_024 KiB"), Ok(Bytes(MIB)));
    }

    #[test]
    fn sizes_reject_unknown_units_and_garbage() {
        assert!(Bytes::parse("12 parsecs").is_err());
        assert!(Bytes::parse("MiB").is_err());
        assert!(Bytes::parse("").is_err());
        assert!(Bytes::parse("-5MiB").is_err());
    }

    #[test]
    fn rates_need_a_per_second_suffix() {
        assert_eq!(Rate::parse("128MiB/s"), Ok(Rate(128 * MIB)));
        assert_eq!(Rate::parse("10Gbit/s"), Ok(Rate(1_250_000_000)));
        assert_eq!(Rate::parse("800Mbps"), Ok(Rate(100_000_000)));
        assert!(Rate::parse("128MiB").is_err());
    }

    #[test]
    fn durations_use_humantime_units() {
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("300").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn display_round_trips_through_parse() {
        for text in ["512MiB", "1.5GiB", "4KiB", "100B"] {
            let b = Bytes::parse(text).expect("valid");
            assert_eq!(Bytes::parse(&b.to_string()), Ok(b), "{text}");
        }
        let r = Rate::parse("128MiB/s").expect("valid");
        assert_eq!(r.to_string(), "128MiB/s");
    }
}
