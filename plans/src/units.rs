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

use crate::text::quoted;

/// The longest duration a plan takes (30 days). Durations become deadlines and timer
/// periods in the engine, where a value near `u64::MAX` seconds would overflow a clock;
/// no migration waits a month.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The largest size a plan takes (1024 TiB), and the largest rate per second. Device
/// states are summed and multiplied when predicting downtime; this keeps that arithmetic
/// far from overflowing and is above anything a host holds or a link carries.
pub const MAX_BYTES: u64 = 1024 * TIB;

/// Why a quantity did not parse; the message is shown after the key and position.
/// Values are quoted with [`quoted`]: escaped, bounded and without secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Not a duration at all; the reason says what is wrong.
    #[error("invalid duration {0}: {1}")]
    Duration(String, String),
    /// A duration longer than [`MAX_DURATION`] (or than any clock holds).
    #[error("duration {0} is too large: the most a plan takes is 30 days (\"30days\")")]
    DurationTooLarge(String),
    /// Not a size.
    #[error("invalid size {0}: expected a number and a unit such as \"512MiB\" or \"2GiB\"")]
    Size(String),
    /// A size above [`MAX_BYTES`].
    #[error("size {0} is too large: the most a plan takes is 1024TiB")]
    SizeTooLarge(String),
    /// Not a rate.
    #[error(
        "invalid rate {0}: expected a number and a unit per second such as \"128MiB/s\" or \"10Gbit/s\""
    )]
    Rate(String),
    /// A rate above [`MAX_BYTES`] per second.
    #[error("rate {0} is too large: the most a plan takes is 1024TiB/s")]
    RateTooLarge(String),
}

/// A duration written like `300ms`, `2s`, `1m 30s`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    use humantime::DurationError as E;
    let invalid = |why: String| UnitError::Duration(quoted(text), why);
    let too_large = || UnitError::DurationTooLarge(quoted(text));
    let d = match humantime::parse_duration(text.trim()) {
        Ok(d) => d,
        // humantime says "overflow" both for too large and for finer than a nanosecond;
        // a value that fits once its fractions are dropped was too fine.
        Err(E::NumberOverflow)
            if humantime::parse_duration(&whole_numbers(text.trim())).is_ok_and(|d| d <= MAX_DURATION) =>
        {
            return Err(invalid("it is finer than a nanosecond".into()))
        }
        Err(E::NumberOverflow) => return Err(too_large()),
        Err(E::Empty) => return Err(invalid("it is empty".into())),
        Err(E::UnknownUnit { unit, .. }) if unit.is_empty() => {
            return Err(invalid("it needs a unit, e.g. \"300ms\" or \"2s\"".into()))
        }
        Err(E::UnknownUnit { unit, .. }) => {
            return Err(invalid(format!(
                "unknown unit {}; units are ns, us, ms, s, m, h, d, w",
                quoted(&unit)
            )))
        }
        Err(_) => {
            return Err(invalid(
                "expected numbers with units, such as \"300ms\" or \"1m 30s\"".into(),
            ))
        }
    };
    if d > MAX_DURATION {
        return Err(too_large());
    }
    Ok(d)
}

/// `text` with the fractional part of every number dropped (`"0.5ns"` → `"0ns"`).
fn whole_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_fraction = false;
    for c in text.chars() {
        match c {
            '.' => in_fraction = true,
            c if c.is_ascii_digit() && in_fraction => {}
            c => {
                in_fraction = false;
                out.push(c);
            }
        }
    }
    out
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

/// What a parsed number and unit come to, in bytes.
enum Amount {
    Fits(u64),
    TooLarge,
}

fn amount(value: f64, factor: f64) -> Amount {
    let bytes = value * factor;
    if bytes.is_finite() && bytes >= 0.0 && bytes <= MAX_BYTES as f64 {
        Amount::Fits(bytes.round() as u64)
    } else {
        Amount::TooLarge
    }
}

impl Bytes {
    /// Parses `512MiB`, `1.5GiB`, `4096` (bytes), `2GB`.
    pub fn parse(text: &str) -> Result<Bytes, UnitError> {
        let bad = || UnitError::Size(quoted(text));
        let (value, unit) = split_number(text).ok_or_else(bad)?;
        let factor = unit_factor(unit, false).ok_or_else(bad)?;
        match amount(value, factor) {
            Amount::Fits(n) => Ok(Bytes(n)),
            Amount::TooLarge => Err(UnitError::SizeTooLarge(quoted(text))),
        }
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
        let bad = || UnitError::Rate(quoted(text));
        let trimmed = text.trim();
        let per_second = trimmed
            .strip_suffix("/s")
            .or_else(|| trimmed.strip_suffix("ps").map(|_| trimmed))
            .ok_or_else(bad)?;
        let (value, unit) = split_number(per_second).ok_or_else(bad)?;
        let factor = unit_factor(unit, true).ok_or_else(bad)?;
        match amount(value, factor) {
            Amount::Fits(n) => Ok(Rate(n)),
            Amount::TooLarge => Err(UnitError::RateTooLarge(quoted(text))),
        }
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
    fn a_duration_beyond_thirty_days_is_too_large_in_our_words() {
        let e = parse_duration("99999999999999999h").expect_err("refused");
        assert_eq!(
            e.to_string(),
            "duration \"99999999999999999h\" is too large: the most a plan takes is 30 days (\"30days\")"
        );
        assert_eq!(parse_duration("30days"), Ok(MAX_DURATION));
        assert!(matches!(
            parse_duration("31days"),
            Err(UnitError::DurationTooLarge(_))
        ));
        assert!(matches!(
            parse_duration("1y"),
            Err(UnitError::DurationTooLarge(_))
        ));
    }

    #[test]
    fn a_duration_finer_than_a_nanosecond_is_not_called_too_large() {
        let e = parse_duration("0.1ns").expect_err("refused");
        assert!(e.to_string().contains("finer than a nanosecond"), "{e}");
        let e = parse_duration("99999999999.5h").expect_err("refused");
        assert!(matches!(e, UnitError::DurationTooLarge(_)), "{e}");
    }

    #[test]
    fn a_duration_message_never_quotes_a_whole_unit_it_does_not_know() {
        let text = format!("1{}", "x".repeat(100_000));
        let e = parse_duration(&text).expect_err("refused");
        assert!(e.to_string().len() < 400, "{e}");
    }

    #[test]
    fn an_overflowing_size_or_rate_is_too_large_not_malformed() {
        let e = Bytes::parse("99999999999999999999999TiB").expect_err("refused");
        assert!(matches!(e, UnitError::SizeTooLarge(_)));
        assert!(e
            .to_string()
            .contains("is too large: the most a plan takes is 1024TiB"));
        assert_eq!(Bytes::parse("1024TiB"), Ok(Bytes(MAX_BYTES)));
        assert!(matches!(Bytes::parse("1025TiB"), Err(UnitError::SizeTooLarge(_))));
        let huge = format!("{}MiB", "9".repeat(400));
        assert!(matches!(Bytes::parse(&huge), Err(UnitError::SizeTooLarge(_))));
        assert!(matches!(
            Rate::parse("99999999Tbit/s"),
            Err(UnitError::RateTooLarge(_))
        ));
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
