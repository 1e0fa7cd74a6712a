//! What makes a request trustworthy and unique: the HMAC-SHA256 signature over its
//! exact body, and a random delivery id.
//!
//! The key comes from the environment and lives only here: its `Debug` shows nothing of
//! it, and nothing prints it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The key requests are signed with, ready to sign.
#[derive(Clone)]
pub(crate) struct Key {
    mac: HmacSha256,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// HMAC takes keys of any length; the error is kept for the type's sake.
#[derive(Debug)]
pub(crate) struct Refused;

impl Key {
    /// A key from the variable's bytes.
    pub(crate) fn new(bytes: &[u8]) -> Result<Key, Refused> {
        let mac = <HmacSha256 as KeyInit>::new_from_slice(bytes).map_err(|_| Refused)?;
        Ok(Key { mac })
    }

    /// The `X-Vfio-Migrate-Signature` value for `body`: `sha256=` and the HMAC's hex.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(body);
        format!("sha256={}", hex(&mac.finalize().into_bytes()))
    }
}

/// A fresh 128-bit id in hex, for a delivery or a run: from the system's random source,
/// or, should that fail, from the time, the process and a counter, which are unique
/// too if not unpredictable.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let unique = (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(1, Ordering::Relaxed);
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..].copy_from_slice(&unique.to_be_bytes());
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        let key = Key::new(b"Jefe").expect("a key");
        assert_eq!(
            key.sign(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_key_never_shows_in_debug_output() {
        let key = Key::new(b"hunter2").expect("a key");
        assert_eq!(format!("{key:?}"), "Key(..)");
    }

    #[test]
    fn ids_are_128_bits_of_hex_and_differ() {
        let a = random_id();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_id());
    }
}
