//! The records of the audit log and what writer and verifier share: [`AuditRecord`], the
//! [`AuditEntry`] a caller gives, the [`AuditSink`] a record goes to, the head, and the
//! chain hash.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::crypto::{hex, HmacSha256};
use crate::error::{Error, Result};

/// `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A message was published (its classified fields encrypted when encryption is on).
    Publish,
    /// A message was delivered to a principal.
    Deliver,
    /// Fields were masked for a principal (`fields` names them).
    Mask,
    /// A classified message that could not be masked was not delivered.
    Withhold,
    /// A subscription was refused (`forbidden`).
    Deny,
    /// A message could not be decrypted (`crypto`).
    CryptoError,
    /// The writer repaired the log on opening (a damaged last line cut off).
    Recover,
    /// A durable stream or consumer was deleted (`detail` names it and who asked).
    Delete,
}

/// Waits until records written so far are stored (see [`AuditLog::settled`](super::AuditLog::settled)).
pub type Settling = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 1, 2, 3, … in the order written.
    pub seq: u64,
    /// When it was written, RFC 3339 UTC.
    pub time: String,
    /// What happened.
    pub action: AuditAction,
    /// The message's subject (for a denial, the pattern asked for).
    pub subject: String,
    /// The message's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Who published (the event's `source`) or who received.
    pub principal: String,
    /// Classes involved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    /// JSON Pointers of the fields masked or encrypted (never their values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Why (withhold, deny, crypto error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `hash` of the record before.
    pub prev: String,
    /// This record's hash (see the module docs).
    pub hash: String,
}

/// What a caller records; the log adds `seq`, `time`, `prev` and `hash`.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// What happened.
    pub action: AuditAction,
    /// Subject (or pattern).
    pub subject: String,
    /// Message id, if any.
    pub message_id: Option<String>,
    /// Principal.
    pub principal: String,
    /// Classes involved.
    pub classes: Vec<String>,
    /// Pointers of fields.
    pub fields: Vec<String>,
    /// Why.
    pub detail: Option<String>,
}

/// Where records go: one JSON text per call, in order.
pub trait AuditSink: Send {
    /// Appends one record (a JSON text without a line break).
    fn append(&mut self, line: &str) -> Result<()>;
    /// Stores the head after the record just appended (a JSON text `{"seq":…,"hash":…}`),
    /// apart from the log. The default keeps none.
    fn head(&mut self, head: &str) -> Result<()> {
        let _ = head;
        Ok(())
    }
    /// For a sink that stores records asynchronously: a future that resolves once every
    /// record appended so far is stored, or fails if one could not be. `None` (the
    /// default): `append` stores synchronously.
    fn settled(&mut self) -> Option<Settling> {
        None
    }
}

/// The head of a log: `seq` and `hash` of its last record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Head {
    pub(crate) seq: u64,
    pub(crate) hash: String,
}

/// Where a file log keeps its head: `<log>.head`.
pub fn head_path(log: impl AsRef<Path>) -> PathBuf {
    let mut p = log.as_ref().as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

/// Creates (mode 0600 on Unix) or opens a log file.
pub(super) fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true);
    if append {
        options.append(true);
    } else {
        options.read(true).write(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

pub(super) fn io_error(what: String, e: std::io::Error) -> Error {
    Error::Backend {
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

pub(super) fn chain_hash(key: Option<&[u8; 32]>, rec: &AuditRecord) -> String {
    let mut unhashed = rec.clone();
    unhashed.hash = String::new();
    let text = serde_json::to_vec(&unhashed).unwrap_or_default();
    match key {
        Some(k) => {
            let mut mac = <HmacSha256 as Mac>::new_from_slice(k).expect("any key length");
            mac.update(&text);
            hex(&mac.finalize().into_bytes())
        }
        None => hex(&Sha256::digest(&text)),
    }
}

pub(crate) fn head_json(seq: u64, hash: &str) -> String {
    serde_json::to_string(&Head {
        seq,
        hash: hash.to_owned(),
    })
    .unwrap_or_default()
}
