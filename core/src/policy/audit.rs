//! The audit log: one record per publish, delivery, mask, withhold, denial and crypto
//! failure; never a protected value, only subjects, ids, principals, classes and the
//! JSON Pointers of fields.
//!
//! Each record carries `prev`, the `hash` of the record before it (64 zeros for the
//! first), and its own `hash`: HMAC-SHA-256 under the key ring's audit subkey (plain
//! SHA-256 when the log has no key) of the record's JSON with `hash` set to `""`. With a
//! key, nobody without it can rewrite the chain after changing a record. [`verify_file`]
//! finds edited, removed, inserted and reordered records and names the line.
//!
//! Records cut from the end leave a valid chain, so the writer also keeps the head
//! (`seq` and `hash` of the last record) apart from the log, rewritten after every
//! record: the file `<log>.head` ([`head_path`]) for a file log, a second stream for
//! a JetStream log. [`verify_file`] reports a log that does not reach its head
//! (records cut from the end, the file emptied) or has records but no head, and
//! [`AuditLog::open`] refuses to continue such a log. What this cannot see: the log
//! and its head rolled back together to an earlier consistent state, or both deleted;
//! keep the head where the log's writer-side attacker cannot rewrite it.
//!
//! Text a publisher chooses (subjects, ids, sources, class names, field names) is
//! escaped before it is written: control, format and line-separator characters become
//! `\u{…}` text, and a value longer than 512 characters is cut with `…`, so a record
//! reads the same in any viewer.
//!
//! `record.rs` holds the records and the chain hash, `log.rs` the writer, `verify.rs` the
//! verifier and reader.

mod log;
mod record;
mod verify;

pub use log::{AuditLog, FileSink};
pub(crate) use record::Head;
pub use record::{head_path, AuditAction, AuditEntry, AuditRecord, AuditSink, Settling, GENESIS};
pub use verify::{
    anchor_file, read_range, verify_file, verify_text, verify_text_with_head, Problem, ProblemKind,
    VerifyReport,
};
