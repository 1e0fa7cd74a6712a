//! The greeting QEMU sends when a client connects: `{"QMP": {"version": ..., "capabilities": [...]}}`.

use std::fmt;

use serde_json::Value;

/// A QEMU version triple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QemuVersion {
    /// Major version (10 for QEMU 10.0.2).
    pub major: u32,
    /// Minor version (0 for QEMU 10.0.2).
    pub minor: u32,
    /// Micro version (2 for QEMU 10.0.2).
    pub micro: u32,
}

impl fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.micro)
    }
}

/// What the monitor announced about itself before negotiation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// QEMU's version.
    pub version: QemuVersion,
    /// The distribution's package string, e.g. `Debian 1:10.0.2+ds-2`; may be empty.
    pub package: String,
    /// Capabilities offered (e.g. `oob`); the client enables none of them.
    pub capabilities: Vec<String>,
}

impl Greeting {
    /// Reads the value of the `QMP` member of a greeting.
    pub(crate) fn from_value(qmp: &Value) -> Result<Greeting, String> {
        let version = qmp.get("version").ok_or("no `version`")?;
        let triple = version.get("qemu").ok_or("no `version.qemu`")?;
        let part = |name: &str| -> Result<u32, String> {
            triple
                .get(name)
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("`version.qemu.{name}` is not a small unsigned integer"))
        };
        let version_triple = QemuVersion {
            major: part("major")?,
            minor: part("minor")?,
            micro: part("micro")?,
        };
        let package = version
            .get("package")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let capabilities = match qmp.get("capabilities") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
            Some(_) => return Err("`capabilities` is not a list".to_owned()),
        };
        Ok(Greeting {
            version: version_triple,
            package,
            capabilities,
        })
    }
}
