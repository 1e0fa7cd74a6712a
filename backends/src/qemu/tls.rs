//! TLS for the migration stream, over QMP.
//!
//! Each side gets a `tls-creds-x509` object read from its certificate directory, the
//! destination's for the `server` endpoint and the source's for the `client` one, both
//! with `verify-peer` so that each checks the other's certificate against its own
//! `ca-cert.pem`; then the migration parameter `tls-creds` names it on both sides, and
//! `tls-hostname` on the source is set to the plan's name or emptied (so QEMU checks the
//! URI's host, not a name some earlier user left). QEMU loads the files when the object
//! is added, so missing or unreadable certificates fail here, before anything migrates.
//! The destination goes first: it must hold its credentials before it listens (QEMU
//! decides on TLS for each incoming connection from `tls-creds` when it accepts it).
//!
//! What is changed and added is remembered as it happens ([`SavedTls`], journaled with
//! the rest of the driver's saved settings), so that [`restore`] can put the parameters
//! back as they were and delete the objects even after a configure that failed half-way,
//! or from another process after this one died. Deleting a credentials object is safe
//! once the stream is over, and even during one: QEMU's TLS session holds its own
//! reference to the credentials, and `object-del` only unlinks the object. But not while
//! the destination still listens: QEMU keeps listening after a failed handshake, and
//! without credentials it would take the next connection in the clear.

use engine::driver::{DriverError, Side, TlsSetup};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::QmpDriver;

/// The id of the credentials object the tool adds on each side.
pub const OBJECT_ID: &str = "vfio-migrate-tls";

/// What TLS configuration changed on each side, to put back.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SavedTls {
    #[serde(default)]
    source: SideTls,
    #[serde(default)]
    destination: SideTls,
}

/// What was changed on one side.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SideTls {
    /// The credentials object the tool added, by id.
    #[serde(default)]
    object: Option<String>,
    /// `tls-creds` as found, once the tool is about to change it.
    #[serde(default)]
    creds: Option<String>,
    /// `tls-hostname` as found, once the tool is about to change it (the source only).
    #[serde(default)]
    hostname: Option<String>,
}

impl SideTls {
    fn is_empty(&self) -> bool {
        self.object.is_none() && self.creds.is_none() && self.hostname.is_none()
    }
}

impl SavedTls {
    /// Nothing to put back.
    pub(super) fn is_empty(&self) -> bool {
        self.source.is_empty() && self.destination.is_empty()
    }

    fn side(&mut self, side: Side) -> &mut SideTls {
        match side {
            Side::Source => &mut self.source,
            Side::Destination => &mut self.destination,
        }
    }
}

/// A string parameter as `query-migrate-parameters` shows it; QEMU omits an empty one in
/// some versions.
fn parameter(reply: &Value, name: &str) -> String {
    reply
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Adds the credentials and sets the parameters, the destination first. Each change is
/// recorded in `driver.saved.tls` before it is made.
pub(super) async fn configure(driver: &mut QmpDriver, tls: &TlsSetup) -> Result<(), DriverError> {
    let sides = [
        (Side::Destination, &tls.destination_dir, "server", None),
        (
            Side::Source,
            &tls.source_dir,
            "client",
            Some(tls.hostname.clone().unwrap_or_default()),
        ),
    ];
    for (side, dir, endpoint, hostname) in sides {
        let found = driver.raw(side, "query-migrate-parameters", None).await?;
        let object = json!({
            "qom-type": "tls-creds-x509",
            "id": OBJECT_ID,
            "dir": dir,
            "endpoint": endpoint,
            "verify-peer": true,
        });
        driver.raw(side, "object-add", Some(object)).await?;
        driver.saved.tls.side(side).object = Some(OBJECT_ID.to_string());

        let mut set = Map::new();
        set.insert("tls-creds".into(), OBJECT_ID.into());
        driver.saved.tls.side(side).creds = Some(parameter(&found, "tls-creds"));
        if let Some(hostname) = hostname {
            set.insert("tls-hostname".into(), hostname.into());
            driver.saved.tls.side(side).hostname = Some(parameter(&found, "tls-hostname"));
        }
        driver
            .raw(side, "migrate-set-parameters", Some(Value::Object(set)))
            .await?;
    }
    Ok(())
}

/// Whether the destination still listens for a migration: its incoming migration is in
/// `setup`, no stream having been accepted; then the peer, for messages. QEMU keeps
/// listening after a failed TLS handshake, and offers no command that stops it.
async fn still_listening(driver: &QmpDriver) -> Option<String> {
    let reply = driver.raw(Side::Destination, "query-migrate", None).await.ok()?;
    if reply.get("status").and_then(Value::as_str) != Some("setup") {
        return None;
    }
    let client = driver.client(Side::Destination, "query-migrate").ok()?;
    Some(client.peer().to_string())
}

/// Puts `tls-creds` and `tls-hostname` back as they were and deletes the objects the
/// tool added, on both sides: the parameters first, so that QEMU never names a deleted
/// object. Carries on past a refusal; the error lists every one. An object that is
/// already gone counts as deleted. Once called, nothing is left to restore.
///
/// One exception: a destination that still listens keeps its credentials. Without them
/// it would accept the next connection in the clear, from anyone who reaches the port;
/// the error says so, and that only quitting that QEMU closes the port.
pub(super) async fn restore(driver: &mut QmpDriver) -> Result<(), DriverError> {
    let saved = std::mem::take(&mut driver.saved.tls);
    let mut refused = Vec::new();
    for (side, was) in [
        (Side::Source, saved.source),
        (Side::Destination, saved.destination),
    ] {
        if side == Side::Destination && was.object.is_some() {
            if let Some(peer) = still_listening(driver).await {
                refused.push(DriverError {
                    side,
                    request: "restore".to_string(),
                    message: format!(
                        "{peer}: still listening for a migration, so its TLS credentials ({OBJECT_ID}) stay: without them it would accept a stream in the clear; quit that QEMU to close the port"
                    ),
                    disconnected: false,
                });
                continue;
            }
        }
        let mut set = Map::new();
        if let Some(creds) = was.creds {
            set.insert("tls-creds".into(), creds.into());
        }
        if let Some(hostname) = was.hostname {
            set.insert("tls-hostname".into(), hostname.into());
        }
        if !set.is_empty() {
            if let Err(e) = driver
                .raw(side, "migrate-set-parameters", Some(Value::Object(set)))
                .await
            {
                refused.push(e);
            }
        }
        if let Some(id) = was.object {
            match driver.raw(side, "object-del", Some(json!({ "id": id }))).await {
                Err(e) if !e.disconnected && e.message.ends_with(&format!("'{id}' not found")) => {}
                Err(e) => refused.push(e),
                Ok(_) => {}
            }
        }
    }
    let Some(first) = refused.first() else {
        return Ok(());
    };
    Err(DriverError {
        side: first.side,
        request: "restore".to_string(),
        message: refused
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        disconnected: refused.iter().any(|e| e.disconnected),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_changed_survives_the_journal() {
        let mut saved = SavedTls::default();
        saved.side(Side::Destination).object = Some(OBJECT_ID.into());
        saved.side(Side::Destination).creds = Some(String::new());
        saved.side(Side::Source).object = Some(OBJECT_ID.into());
        saved.side(Side::Source).hostname = Some("old.example".into());
        let kept = serde_json::to_value(&saved).expect("serializes");
        let back: SavedTls = serde_json::from_value(kept).expect("reads back");
        assert_eq!(back, saved);
        assert!(!back.is_empty());
    }

    #[test]
    fn a_journal_without_tls_reads_as_nothing_to_remove() {
        let back: SavedTls = serde_json::from_value(json!({})).expect("reads");
        assert!(back.is_empty());
    }

    #[test]
    fn an_empty_parameter_reads_as_empty_whether_shown_or_omitted() {
        let reply = json!({"tls-creds": "", "downtime-limit": 300});
        assert_eq!(parameter(&reply, "tls-creds"), "");
        assert_eq!(parameter(&reply, "tls-hostname"), "");
        assert_eq!(parameter(&json!({"tls-creds": "tls0"}), "tls-creds"), "tls0");
    }
}
