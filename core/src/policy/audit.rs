//! The audit log: one record per publish, delivery, mask, withhold, denial and crypto
//! failure; never a protected value, only subjects, ids, principals, classes and the
//! JSON Pointers of fields.
//!
//! Each record carries `prev`, the `hash` of the record before it (64 zeros for the
//! first), and its own `hash`: HMAC-SHA-256 under the key ring's audit subkey (plain
//! SHA-256 when the log has no key) of the record's JSON with `hash` set to `""`. With a
//! key, nobody without it can rewrite the chain after changing a record. [`verify_file`]
//! finds edited, removed, inserted and reordered records and names the line;
//! records cut from the end are only visible against a head kept elsewhere
//! ([`AuditLog::verify`] compares with the head the writer holds).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use hmac::Mac;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::crypto::{hex, HmacSha256, KeyRing};
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
}

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
}

/// Appends JSON lines to a file; each record is one `write` of a whole line.
pub struct FileSink(File);

impl AuditSink for FileSink {
    fn append(&mut self, line: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.0.write_all(&buf).map_err(|e| Error::Backend {
            message: format!("writing the audit log: {e}"),
            source: Some(Box::new(e)),
        })
    }
}

struct State {
    seq: u64,
    head: String,
    sink: Box<dyn AuditSink>,
}

/// An append-only, hash-chained audit log.
pub struct AuditLog {
    path: Option<PathBuf>,
    key: Option<[u8; 32]>,
    state: Mutex<State>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("keyed", &self.key.is_some())
            .field("head", &self.head())
            .finish()
    }
}

fn io_error(what: String, e: std::io::Error) -> Error {
    Error::Backend {
        message: format!("{what}: {e}"),
        source: Some(Box::new(e)),
    }
}

impl AuditLog {
    /// Opens (or creates) a JSON-lines log at `path`, continuing its chain. With a key
    /// ring the chain is keyed (see the module docs); verify with the same ring.
    pub fn open(path: impl AsRef<Path>, ring: Option<&KeyRing>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let existing = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error(format!("reading audit log {}", path.display()), e)),
        };
        let (seq, head) = match existing.lines().rev().find(|l| !l.trim().is_empty()) {
            None => (0, GENESIS.to_owned()),
            Some(last) => {
                let rec: AuditRecord = serde_json::from_str(last).map_err(|e| {
                    Error::Decode(format!(
                        "audit log {} ends with a damaged record ({e}); verify it before writing more",
                        path.display()
                    ))
                })?;
                (rec.seq, rec.hash)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(format!("opening audit log {}", path.display()), e))?;
        Ok(AuditLog {
            path: Some(path),
            key: ring.map(KeyRing::audit_key),
            state: Mutex::new(State {
                seq,
                head,
                sink: Box::new(FileSink(file)),
            }),
        })
    }

    /// A log writing to another sink (e.g. a JetStream stream), continuing after
    /// `last` (the sink's last record, as `seq` and `hash`) or starting a new chain.
    pub fn with_sink(sink: Box<dyn AuditSink>, ring: Option<&KeyRing>, last: Option<(u64, String)>) -> Self {
        let (seq, head) = last.unwrap_or_else(|| (0, GENESIS.to_owned()));
        AuditLog {
            path: None,
            key: ring.map(KeyRing::audit_key),
            state: Mutex::new(State { seq, head, sink }),
        }
    }

    /// The file, for a file log.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Sequence number and hash of the last record written (0 and [`GENESIS`] when none).
    pub fn head(&self) -> (u64, String) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (s.seq, s.head.clone())
    }

    /// Appends one record.
    pub fn record(&self, entry: AuditEntry) -> Result<()> {
        let time = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into());
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut rec = AuditRecord {
            seq: s.seq + 1,
            time,
            action: entry.action,
            subject: entry.subject,
            message_id: entry.message_id,
            principal: entry.principal,
            classes: entry.classes,
            fields: entry.fields,
            detail: entry.detail,
            prev: s.head.clone(),
            hash: String::new(),
        };
        rec.hash = chain_hash(self.key.as_ref(), &rec);
        let line = serde_json::to_string(&rec).map_err(|e| Error::Decode(e.to_string()))?;
        s.sink.append(&line)?;
        s.seq = rec.seq;
        s.head = rec.hash;
        Ok(())
    }

    /// Verifies the file against the chain and against the head this writer holds, so
    /// records cut from the end are found too.
    pub fn verify(&self) -> Result<VerifyReport> {
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("this audit log has no file to verify".into()))?;
        let mut report = verify_with_key(path, self.key.as_ref())?;
        let (seq, head) = self.head();
        let file_head = report.head.clone();
        if seq > 0 && file_head.as_ref().map(|(s, h)| (*s, h.as_str())) != Some((seq, head.as_str())) {
            let last = file_head.map_or(0, |(s, _)| s);
            if last < seq {
                report.problems.push(Problem {
                    line: report.lines + 1,
                    seq: Some(last + 1),
                    kind: ProblemKind::Removed,
                    detail: format!(
                        "the log ends at seq {last}, but {seq} records were written: seq {}..={seq} were removed from the end",
                        last + 1
                    ),
                });
            } else {
                report.problems.push(Problem {
                    line: report.lines,
                    seq: Some(last),
                    kind: ProblemKind::Edited,
                    detail: format!(
                        "the last record (seq {last}) is not the one this writer wrote last (seq {seq})"
                    ),
                });
            }
        }
        Ok(report)
    }
}

fn chain_hash(key: Option<&[u8; 32]>, rec: &AuditRecord) -> String {
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

/// What [`verify_file`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records read (non-blank lines).
    pub records: usize,
    /// Lines in the file.
    pub lines: usize,
    /// `seq` and `hash` of the last record, if any.
    pub head: Option<(u64, String)>,
    /// Every problem, in file order; empty when the log is intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Kinds of tampering [`verify_file`] tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A record's content no longer matches its hash (or its hash was recomputed).
    Edited,
    /// Records are missing (a gap in `seq` where the chain breaks).
    Removed,
    /// A record that does not belong to the chain sits between two that link.
    Inserted,
    /// Records are out of chain order.
    Reordered,
}

/// One problem of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the file.
    pub line: usize,
    /// The record's `seq`, when the line could be read.
    pub seq: Option<u64>,
    /// What kind of tampering.
    pub kind: ProblemKind,
    /// For a person.
    pub detail: String,
}

/// Verifies a JSON-lines audit log; pass the key ring the writer used (or `None` for
/// an unkeyed log).
pub fn verify_file(path: impl AsRef<Path>, ring: Option<&KeyRing>) -> Result<VerifyReport> {
    verify_with_key(path.as_ref(), ring.map(KeyRing::audit_key).as_ref())
}

struct Line {
    line: usize,
    rec: Option<AuditRecord>,
    valid: bool,
}

fn verify_with_key(path: &Path, key: Option<&[u8; 32]>) -> Result<VerifyReport> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| io_error(format!("reading audit log {}", path.display()), e))?;
    Ok(verify_lines(&text, key))
}

/// [`verify_file`] of records held elsewhere (one JSON text per line), e.g. read back
/// from a JetStream stream.
pub fn verify_text(text: &str, ring: Option<&KeyRing>) -> VerifyReport {
    verify_lines(text, ring.map(KeyRing::audit_key).as_ref())
}

fn verify_lines(text: &str, key: Option<&[u8; 32]>) -> VerifyReport {
    let lines: Vec<Line> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let rec = serde_json::from_str::<AuditRecord>(l).ok();
            let valid = rec.as_ref().is_some_and(|r| chain_hash(key, r) == r.hash);
            Line {
                line: i + 1,
                rec,
                valid,
            }
        })
        .collect();
    let mut by_hash = std::collections::HashMap::new();
    let mut first_of_seq = std::collections::HashMap::new();
    for (i, l) in lines.iter().enumerate() {
        if let (Some(r), true) = (&l.rec, l.valid) {
            by_hash.entry(r.hash.clone()).or_insert(i);
            first_of_seq.entry(r.seq).or_insert(i);
        }
    }
    let mut problems = Vec::new();
    let mut problem = |l: &Line, kind, detail: String| {
        problems.push(Problem {
            line: l.line,
            seq: l.rec.as_ref().map(|r| r.seq),
            kind,
            detail,
        })
    };
    let mut last_good: Option<usize> = None;
    let mut prev_stated: Option<&str> = None;
    for (i, l) in lines.iter().enumerate() {
        let (expected_prev, expected_seq) = match last_good.and_then(|j| lines[j].rec.as_ref()) {
            Some(r) => (r.hash.as_str(), r.seq + 1),
            None => (GENESIS, 1),
        };
        let Some(rec) = l.rec.as_ref().filter(|_| l.valid) else {
            let next_links_past = lines
                .get(i + 1)
                .and_then(|n| n.rec.as_ref())
                .is_some_and(|n| n.prev == expected_prev);
            let what = if l.rec.is_none() {
                "is not a well-formed audit record"
            } else {
                "does not match its hash"
            };
            if next_links_past {
                problem(
                    l,
                    ProblemKind::Inserted,
                    format!(
                        "line {} {what}, and the records around it link to each other: it was inserted",
                        l.line
                    ),
                );
            } else {
                problem(
                    l,
                    ProblemKind::Edited,
                    format!("line {} {what}: it was edited", l.line),
                );
            }
            prev_stated = l.rec.as_ref().map(|r| r.hash.as_str());
            continue;
        };
        if let Some(&j) = first_of_seq.get(&rec.seq) {
            if j != i && lines[j].rec.as_ref().is_some_and(|r| r.hash == rec.hash) {
                problem(
                    l,
                    ProblemKind::Inserted,
                    format!(
                        "line {} is a copy of line {} (seq {})",
                        l.line, lines[j].line, rec.seq
                    ),
                );
                prev_stated = Some(&rec.hash);
                continue;
            }
        }
        let last_seq = expected_seq - 1;
        if rec.prev != expected_prev && Some(rec.prev.as_str()) != prev_stated {
            match by_hash.get(&rec.prev) {
                Some(&j) if j > i => problem(
                    l,
                    ProblemKind::Reordered,
                    format!(
                        "line {} (seq {}) follows seq {} at line {}, which comes after it",
                        l.line,
                        rec.seq,
                        lines[j].rec.as_ref().map_or(0, |r| r.seq),
                        lines[j].line
                    ),
                ),
                Some(_) if rec.seq < last_seq => problem(
                    l,
                    ProblemKind::Reordered,
                    format!("line {} (seq {}) comes after seq {last_seq}", l.line, rec.seq),
                ),
                Some(_) => {} // its predecessor is earlier: a reordering reported at another line
                None if rec.seq > expected_seq => problem(
                    l,
                    ProblemKind::Removed,
                    format!(
                        "seq {expected_seq}..={} are missing before line {} (the chain breaks there)",
                        rec.seq - 1,
                        l.line
                    ),
                ),
                None if rec.seq == last_seq && last_seq > 0 => {
                    let other = &lines[last_good.unwrap_or(0)];
                    problem(
                        other,
                        ProblemKind::Inserted,
                        format!(
                            "lines {} and {} both claim seq {}; line {} does not belong to the chain",
                            other.line, l.line, rec.seq, other.line
                        ),
                    )
                }
                None => {
                    let other = last_good.map_or(l, |j| &lines[j]);
                    problem(
                        other,
                        ProblemKind::Edited,
                        format!(
                            "line {} no longer links to line {}: line {} was changed and its hash recomputed",
                            l.line, other.line, other.line
                        ),
                    )
                }
            }
        } else if rec.seq != expected_seq && rec.prev == expected_prev {
            problem(
                l,
                ProblemKind::Edited,
                format!("line {} has seq {} where {expected_seq} belongs", l.line, rec.seq),
            );
        }
        last_good = Some(i);
        prev_stated = Some(&rec.hash);
    }
    let head = last_good
        .and_then(|j| lines[j].rec.as_ref())
        .map(|r| (r.seq, r.hash.clone()));
    VerifyReport {
        records: lines.len(),
        lines: text.lines().count(),
        head,
        problems,
    }
}

/// The records of a JSON-lines audit log written at or after `from` and before `to`
/// (either bound may be open), in file order. A line that cannot be read is an error
/// naming it.
pub fn read_range(
    path: impl AsRef<Path>,
    from: Option<SystemTime>,
    to: Option<SystemTime>,
) -> Result<Vec<AuditRecord>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| io_error(format!("reading audit log {}", path.display()), e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let rec: AuditRecord = serde_json::from_str(line)
            .map_err(|e| Error::Decode(format!("audit log {} line {}: {e}", path.display(), i + 1)))?;
        let at: SystemTime = OffsetDateTime::parse(&rec.time, &Rfc3339)
            .map_err(|e| {
                Error::Decode(format!(
                    "audit log {} line {}: time {:?}: {e}",
                    path.display(),
                    i + 1,
                    rec.time
                ))
            })?
            .into();
        if from.is_none_or(|f| at >= f) && to.is_none_or(|t| at < t) {
            out.push(rec);
        }
    }
    Ok(out)
}
