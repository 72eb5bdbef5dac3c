//! The key ring: AES-256-GCM for classified fields, keyed HMAC-SHA-256 for `hash`
//! masks and for the audit chain.
//!
//! Each ring key is 32 random bytes (a master key). It is never used directly: every use
//! gets its own subkey, `HMAC-SHA-256(master, "busbar/v1/" + purpose)` with purpose
//! `aead`, `hash` or `audit`, so the cipher key, the hashing key and the audit key
//! differ even when they come from one master. Any language can derive them with its
//! standard library.
//!
//! Nonces: 96 random bits per encryption, from the thread's CSPRNG (`rand`, ChaCha12
//! seeded by the OS). Publishers in many processes share a key, and a counter scheme would
//! need state shared between them and kept across restarts; random nonces need none.
//! The price is the birthday bound: NIST SP 800-38D allows 2^32 encryptions per key with
//! random 96-bit nonces, so rotate the active key well before that many protected
//! fields (the ring keeps old keys to read old messages).

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Prefix of an encrypted value: `busbar:aead:v1:` + base64(nonce ‖ ciphertext ‖ tag).
pub const CIPHERTEXT_PREFIX: &str = "busbar:aead:v1:";

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// One master key with the subkeys derived from it.
struct RingKey {
    cipher: Aes256Gcm,
    hash: HmacSha256,
    audit: [u8; 32],
}

/// Keys by id, one of them active (it encrypts), one of them hashing.
/// Old keys stay in the ring so that messages encrypted with them remain readable.
pub struct KeyRing {
    keys: BTreeMap<String, RingKey>,
    active: String,
    hash_key: String,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .field("hash_key", &self.hash_key)
            .finish_non_exhaustive()
    }
}

/// `HMAC-SHA-256(master, "busbar/v1/" + purpose)`.
pub(crate) fn derive(master: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(b"busbar/v1/");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RingFile {
    active: String,
    #[serde(default)]
    hash_key: Option<String>,
    keys: BTreeMap<String, String>,
}

impl KeyRing {
    /// A ring holding `key` (32 bytes) under `id`, active and hashing.
    pub fn new(id: &str, key: &[u8]) -> Result<Self> {
        let mut keys = BTreeMap::new();
        keys.insert(id.to_owned(), ring_key(id, key)?);
        check_id(id)?;
        Ok(KeyRing {
            keys,
            active: id.to_owned(),
            hash_key: id.to_owned(),
        })
    }

    /// Adds (or replaces) a key; the active and hashing keys stay as they are.
    pub fn with_key(mut self, id: &str, key: &[u8]) -> Result<Self> {
        check_id(id)?;
        self.keys.insert(id.to_owned(), ring_key(id, key)?);
        Ok(self)
    }

    /// Makes `id` the key new messages are encrypted with (rotation).
    pub fn with_active(mut self, id: &str) -> Result<Self> {
        self.need(id)?;
        self.active = id.to_owned();
        Ok(self)
    }

    /// Makes `id` the key `hash` masks (and the audit chain) are keyed from. Pin it: if it
    /// changed with each rotation, equal values would stop hashing equal.
    pub fn with_hash_key(mut self, id: &str) -> Result<Self> {
        self.need(id)?;
        self.hash_key = id.to_owned();
        Ok(self)
    }

    /// Reads a ring from JSON: `{"active": "k2", "hash_key": "k1", "keys": {"k1": "<base64 of
    /// 32 bytes>", "k2": "..."}}`; `hash_key` defaults to `active`.
    pub fn from_json(text: &str) -> Result<Self> {
        // serde's messages can quote the text they stumbled on, which here is key
        // material: say where and what kind of problem, never the text.
        let file: RingFile = serde_json::from_str(text).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => "is not valid JSON",
                _ => "is not of the form {\"active\": id, \"hash_key\": id, \"keys\": {id: base64}}",
            };
            Error::InvalidArgument(format!(
                "key ring {what} (line {}, column {}); its text is not shown, as it holds keys",
                e.line(),
                e.column()
            ))
        })?;
        let mut keys = BTreeMap::new();
        for (id, b64) in &file.keys {
            check_id(id)?;
            let bytes = B64.decode(b64.trim()).map_err(|_| {
                Error::InvalidArgument(format!(
                    "key {id:?} of the key ring is not base64 of 32 bytes (its text is not shown)"
                ))
            })?;
            keys.insert(id.clone(), ring_key(id, &bytes)?);
        }
        let hash_key = file.hash_key.unwrap_or_else(|| file.active.clone());
        let ring = KeyRing {
            keys,
            active: file.active,
            hash_key,
        };
        ring.need(&ring.active)?;
        ring.need(&ring.hash_key)?;
        Ok(ring)
    }

    /// [`KeyRing::from_json`] of a file.
    pub fn from_file(path: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::InvalidArgument(format!("cannot read key ring {path:?}: {e}")))?;
        Self::from_json(&text)
    }

    /// The id of the key that encrypts.
    pub fn active(&self) -> &str {
        &self.active
    }

    /// The ids of the keys in the ring.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn need(&self, id: &str) -> Result<&RingKey> {
        self.keys.get(id).ok_or_else(|| {
            Error::Crypto(format!(
                "key {id:?} is not in the key ring (it holds {})",
                self.keys.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// HMAC-SHA-256 of `input` under the hashing subkey, lowercase hex.
    pub fn hash_hex(&self, input: &[u8]) -> String {
        let mut mac = self.keys[&self.hash_key].hash.clone();
        mac.update(input);
        hex(&mac.finalize().into_bytes())
    }

    /// The audit-chain subkey (derived from the hashing key, which does not rotate).
    pub(crate) fn audit_key(&self) -> [u8; 32] {
        self.keys[&self.hash_key].audit
    }

    /// Encrypts `plain` with the active key; `aad` is bound to it (message id and path).
    pub(crate) fn seal(&self, plain: &[u8], aad: &[u8]) -> Result<String> {
        let key = &self.keys[&self.active];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plain, aad })
            .map_err(|_| Error::Crypto("AES-256-GCM encryption failed".into()))?;
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        let mut out = String::with_capacity(CIPHERTEXT_PREFIX.len() + raw.len() * 4 / 3 + 4);
        out.push_str(CIPHERTEXT_PREFIX);
        B64.encode_string(&raw, &mut out);
        Ok(out)
    }

    /// Decrypts a value made by [`KeyRing::seal`] with key `keyid`; `what` names it in errors.
    pub(crate) fn open(&self, keyid: &str, sealed: &str, aad: &[u8], what: &str) -> Result<Vec<u8>> {
        let key = self.need(keyid)?;
        let b64 = sealed.strip_prefix(CIPHERTEXT_PREFIX).ok_or_else(|| {
            Error::Crypto(format!(
                "{what} is not a busbar ciphertext ({CIPHERTEXT_PREFIX}...)"
            ))
        })?;
        let raw = B64
            .decode(b64)
            .map_err(|_| Error::Crypto(format!("{what}: ciphertext is not base64")))?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(Error::Crypto(format!("{what}: ciphertext is truncated")));
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        key.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
            .map_err(|_| {
                Error::Crypto(format!(
                    "{what} does not decrypt with key {keyid:?}: wrong key, or the data was altered"
                ))
            })
    }
}

fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_graphic() && c != ',') {
        return Err(Error::InvalidArgument(format!(
            "key id {id:?} must be non-empty printable ASCII without spaces or commas"
        )));
    }
    Ok(())
}

fn ring_key(id: &str, master: &[u8]) -> Result<RingKey> {
    if master.len() != 32 {
        return Err(Error::InvalidArgument(format!(
            "key {id:?} is {} bytes; ring keys are 32 random bytes",
            master.len()
        )));
    }
    let cipher = Aes256Gcm::new_from_slice(&derive(master, "aead"))
        .map_err(|_| Error::Crypto("AES-256-GCM key setup failed".into()))?;
    let hash = <HmacSha256 as Mac>::new_from_slice(&derive(master, "hash")).expect("any key length");
    Ok(RingKey {
        cipher,
        hash,
        audit: derive(master, "audit"),
    })
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new("k1", &[1; 32]).unwrap()
    }

    #[test]
    fn seal_open_round_trip_and_fresh_nonces() {
        let r = ring();
        let a = r.seal(b"\"123-45-6789\"", b"aad").unwrap();
        let b = r.seal(b"\"123-45-6789\"", b"aad").unwrap();
        assert_ne!(a, b, "a fresh nonce for each encryption");
        assert!(!a.contains("6789"));
        assert_eq!(r.open("k1", &a, b"aad", "x").unwrap(), b"\"123-45-6789\"");
        let err = r.open("k1", &a, b"other", "x").unwrap_err();
        assert_eq!(err.code(), "crypto");
        let err = r.open("k9", &a, b"aad", "x").unwrap_err();
        assert!(err.to_string().contains("k9"), "{err}");
        let mut bad = a.clone();
        bad.truncate(CIPHERTEXT_PREFIX.len() + 10);
        assert_eq!(r.open("k1", &bad, b"aad", "x").unwrap_err().code(), "crypto");
    }

    #[test]
    fn ring_json_and_bad_keys() {
        let k = B64.encode([7u8; 32]);
        let r = KeyRing::from_json(&format!(
            r#"{{"active":"b","hash_key":"a","keys":{{"a":"{k}","b":"{k}"}}}}"#
        ))
        .unwrap();
        assert_eq!(r.active(), "b");
        assert_eq!(r.ids().collect::<Vec<_>>(), ["a", "b"]);
        for bad in [
            r#"{"active":"x","keys":{}}"#.to_owned(),
            r#"{"active":"a","keys":{"a":"!!"}}"#.to_owned(),
            format!(r#"{{"active":"a","keys":{{"a":"{}"}}}}"#, B64.encode([1u8; 16])),
            format!(r#"{{"active":"a","extra":1,"keys":{{"a":"{k}"}}}}"#),
        ] {
            let err = KeyRing::from_json(&bad).unwrap_err();
            assert!(["invalid_argument", "crypto"].contains(&err.code()), "{err}");
        }
        assert!(!format!("{r:?}").contains(&k));
    }

    #[test]
    fn subkeys_are_hmac_of_purpose() {
        // The derivation other languages reproduce with their standard library.
        let master = [0u8; 32];
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&master).unwrap();
        mac.update(b"busbar/v1/hash");
        let want: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(derive(&master, "hash"), want);
        assert_ne!(derive(&master, "hash"), derive(&master, "aead"));
    }
}
