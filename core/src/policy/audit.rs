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
    /// The writer repaired the log on opening (a damaged last line cut off).
    Recover,
}

/// Waits until records written so far are stored (see [`AuditLog::settled`]).
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
fn open_private(path: &Path, append: bool) -> std::io::Result<File> {
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

/// Appends JSON lines to a file; each record is one `write` of a whole line. The head
/// goes to a second file, rewritten in place after each record.
pub struct FileSink {
    log: File,
    head: File,
}

impl AuditSink for FileSink {
    fn append(&mut self, line: &str) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        self.log.write_all(&buf).map_err(|e| Error::Backend {
            message: format!("writing the audit log: {e}"),
            source: Some(Box::new(e)),
        })
    }

    fn head(&mut self, head: &str) -> Result<()> {
        // The head only grows (its seq does), so rewriting it from the start leaves no
        // stale bytes: one positioned write per record.
        #[cfg(unix)]
        let written = std::os::unix::fs::FileExt::write_all_at(&self.head, head.as_bytes(), 0);
        #[cfg(not(unix))]
        let written = {
            use std::io::{Seek, SeekFrom};
            self.head
                .seek(SeekFrom::Start(0))
                .and_then(|_| self.head.write_all(head.as_bytes()))
        };
        written.map_err(|e| io_error("writing the audit log's head".into(), e))
    }
}

/// Publisher-chosen text as written to the log: control, format and separator
/// characters escaped, at most 512 characters.
fn escape_text(s: &str) -> String {
    const MAX: usize = 512;
    let risky = |c: char| {
        c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
    };
    if s.chars().count() <= MAX && !s.chars().any(risky) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len().min(MAX * 4));
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if risky(c) {
            use std::fmt::Write;
            let _ = write!(out, "\\u{{{:04x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
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
    /// Opens (or creates, mode 0600) a JSON-lines log at `path`, continuing its chain,
    /// with its head in [`head_path`]. With a key ring the chain is keyed (see the module
    /// docs); verify with the same ring.
    ///
    /// Refuses (`decode`) a log whose last record is not the head (records cut from the
    /// end) or that has records but no head. A damaged last line (a write cut short) is
    /// cut off when the head shows it was never a complete record, and a `recover`
    /// record says so.
    pub fn open(path: impl AsRef<Path>, ring: Option<&KeyRing>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let existing = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(format!("reading audit log {}", path.display()), e)),
        };
        let hpath = head_path(&path);
        let head = read_head(&hpath)?;
        let refuse = |why: String| {
            Err(Error::Decode(format!(
                "audit log {} {why}; verify it (verify_file) before writing more",
                path.display()
            )))
        };
        // The last line, and where the log would end without it.
        let (line_start, text_end) = last_line_of(&existing);
        let last_line = &existing[line_start..text_end];
        let parse = |bytes: &[u8]| serde_json::from_slice::<AuditRecord>(bytes).ok();
        let mut cut = None;
        let last = if last_line.is_empty() {
            None
        } else {
            match parse(last_line) {
                Some(rec) => Some((rec.seq, rec.hash)),
                None => {
                    // A damaged last line: cut it only if the head shows the record
                    // before it was the last one written (the damaged one never completed).
                    let (prev_start, prev_end) = last_line_of(&existing[..line_start]);
                    let prev = parse(&existing[prev_start..prev_end]).map(|r| (r.seq, r.hash));
                    let agrees = match (&head, &prev) {
                        (Some(h), Some((seq, hash))) => h.seq == *seq && h.hash == *hash,
                        (None, None) => prev_end == 0,
                        _ => false,
                    };
                    if !agrees {
                        return refuse("ends with a damaged record that is not a write cut short".into());
                    }
                    cut = Some((line_start as u64, existing.len() - line_start));
                    prev
                }
            }
        };
        match (&head, &last) {
            (None, None) => {}
            (None, Some((seq, _))) => {
                return refuse(format!(
                    "holds {seq} records but has no head file {} (records cut from its end could not be seen); if it verifies, anchor it with anchor_file",
                    hpath.display()
                ))
            }
            (Some(h), None) => {
                return refuse(format!(
                    "is empty but its head says {} records were written: they were removed",
                    h.seq
                ))
            }
            (Some(h), Some((seq, hash))) => {
                let at_head = *seq == h.seq && *hash == h.hash;
                // A crash between a record and its head leaves one record past the head.
                let one_past = *seq == h.seq + 1 && previous_is(&existing, line_start, h);
                if !(at_head || one_past) {
                    return refuse(format!(
                        "ends at seq {seq}, but its head says the last record written is seq {}: records were cut from the end or changed",
                        h.seq
                    ));
                }
            }
        }
        if let Some((len, _)) = cut {
            let file = open_private(&path, false)
                .map_err(|e| io_error(format!("opening audit log {}", path.display()), e))?;
            file.set_len(len)
                .map_err(|e| io_error(format!("repairing audit log {}", path.display()), e))?;
        }
        let (seq, head_hash) = last.unwrap_or_else(|| (0, GENESIS.to_owned()));
        let log_file = open_private(&path, true)
            .map_err(|e| io_error(format!("opening audit log {}", path.display()), e))?;
        let head_file = open_private(&hpath, false)
            .map_err(|e| io_error(format!("opening audit head {}", hpath.display()), e))?;
        let log = AuditLog {
            path: Some(path),
            key: ring.map(KeyRing::audit_key),
            state: Mutex::new(State {
                seq,
                head: head_hash,
                sink: Box::new(FileSink {
                    log: log_file,
                    head: head_file,
                }),
            }),
        };
        if let Some((at, bytes)) = cut {
            log.record(AuditEntry {
                action: AuditAction::Recover,
                subject: String::new(),
                message_id: None,
                principal: "busbar".into(),
                classes: Vec::new(),
                fields: Vec::new(),
                detail: Some(format!(
                    "cut a damaged last line of {bytes} bytes at byte {at} (a write cut short)"
                )),
            })?;
        } else if seq > 0 {
            // Bring the head up to the last record (after a crash between the two).
            let mut s = log.state.lock().unwrap_or_else(|p| p.into_inner());
            let head = head_json(s.seq, &s.head);
            s.sink.head(&head)?;
        }
        Ok(log)
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
        rec.subject = escape_text(&rec.subject);
        rec.message_id = rec.message_id.as_deref().map(escape_text);
        rec.principal = escape_text(&rec.principal);
        for c in rec.classes.iter_mut().chain(rec.fields.iter_mut()) {
            *c = escape_text(c);
        }
        rec.detail = rec.detail.as_deref().map(escape_text);
        rec.hash = chain_hash(self.key.as_ref(), &rec);
        let line = serde_json::to_string(&rec).map_err(|e| Error::Decode(e.to_string()))?;
        s.sink.append(&line)?;
        s.seq = rec.seq;
        s.head = rec.hash;
        let head = head_json(s.seq, &s.head);
        s.sink.head(&head)
    }

    /// For a log whose sink stores records asynchronously (JetStream): a future that
    /// resolves once every record written so far is stored, and fails from the first
    /// one that could not be. `None` for a file log, which writes synchronously.
    pub fn settled(&self) -> Option<Settling> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sink
            .settled()
    }

    /// Verifies the file against the chain and against the head this writer holds, so
    /// records cut from the end are found too.
    pub fn verify(&self) -> Result<VerifyReport> {
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("this audit log has no file to verify".into()))?;
        let mut report = verify_with_key(path, self.key.as_ref())?;
        if !report.is_ok() {
            return Ok(report);
        }
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
    /// The log has records but no head to check its end against.
    Unanchored,
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
    let head = read_head(&head_path(path))?;
    let mut report = verify_lines(&text, key);
    check_head(&mut report, &text, key, head.as_ref(), "head file");
    Ok(report)
}

/// Verifies a log and, if it is intact, writes its head file: for a log written before
/// heads were kept, or one a person has checked. Returns what verify found.
pub fn anchor_file(path: impl AsRef<Path>, ring: Option<&KeyRing>) -> Result<VerifyReport> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| io_error(format!("reading audit log {}", path.display()), e))?;
    let report = verify_lines(&text, ring.map(KeyRing::audit_key).as_ref());
    if let (true, Some((seq, hash))) = (report.is_ok(), &report.head) {
        let hpath = head_path(path);
        let mut file = open_private(&hpath, false)
            .map_err(|e| io_error(format!("opening audit head {}", hpath.display()), e))?;
        let head = head_json(*seq, hash);
        file.set_len(0)
            .and_then(|_| file.write_all(head.as_bytes()))
            .map_err(|e| io_error(format!("writing audit head {}", hpath.display()), e))?;
    }
    Ok(report)
}

/// [`verify_file`] of records held elsewhere (one JSON text per line), e.g. read back
/// from a JetStream stream. Records cut from the end are not visible here; see
/// [`verify_text_with_head`].
pub fn verify_text(text: &str, ring: Option<&KeyRing>) -> VerifyReport {
    verify_lines(text, ring.map(KeyRing::audit_key).as_ref())
}

/// [`verify_text`], checked against the head kept apart from the records (`None`: no
/// head was found, which is a problem when there are records).
pub fn verify_text_with_head(
    text: &str,
    ring: Option<&KeyRing>,
    head: Option<(u64, String)>,
) -> VerifyReport {
    let key = ring.map(KeyRing::audit_key);
    let mut report = verify_lines(text, key.as_ref());
    let head = head.map(|(seq, hash)| Head { seq, hash });
    check_head(&mut report, text, key.as_ref(), head.as_ref(), "head");
    report
}

pub(crate) fn head_json(seq: u64, hash: &str) -> String {
    serde_json::to_string(&Head {
        seq,
        hash: hash.to_owned(),
    })
    .unwrap_or_default()
}

fn read_head(path: &Path) -> Result<Option<Head>> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Ok(None),
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Decode(format!("audit head {} is damaged: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(format!("reading audit head {}", path.display()), e)),
    }
}

/// Start and end of the last non-blank line of `bytes` (trailing blanks left out).
fn last_line_of(bytes: &[u8]) -> (usize, usize) {
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let start = bytes[..end]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (start, end)
}

/// Whether the complete line before `line_start` in `log` is the record `head` names.
fn previous_is(log: &[u8], line_start: usize, head: &Head) -> bool {
    let (start, end) = last_line_of(&log[..line_start]);
    serde_json::from_slice::<AuditRecord>(&log[start..end])
        .is_ok_and(|r| r.seq == head.seq && r.hash == head.hash)
}

/// Adds a problem when the records do not reach `head`: a record with the head's seq and
/// hash must be in the chain (a log may hold one record past it, written just before a
/// crash kept the head from following).
fn check_head(
    report: &mut VerifyReport,
    text: &str,
    key: Option<&[u8; 32]>,
    head: Option<&Head>,
    what: &str,
) {
    let last = report.head.clone();
    let Some(head) = head else {
        if let Some((seq, _)) = last {
            report.problems.push(Problem {
                line: report.lines,
                seq: Some(seq),
                kind: ProblemKind::Unanchored,
                detail: format!("the log holds records up to seq {seq} but has no {what}: records cut from its end cannot be ruled out"),
            });
        }
        return;
    };
    let reached = text
        .lines()
        .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
        .any(|r| r.seq == head.seq && r.hash == head.hash && chain_hash(key, &r) == r.hash);
    let last_seq = last.as_ref().map_or(0, |(s, _)| *s);
    if reached && last_seq <= head.seq + 1 {
        return;
    }
    if last_seq < head.seq {
        report.problems.push(Problem {
            line: report.lines + 1,
            seq: Some(last_seq + 1),
            kind: ProblemKind::Removed,
            detail: format!(
                "the log ends at seq {last_seq}, but its {what} says {} records were written: seq {}..={} were removed from the end",
                head.seq,
                last_seq + 1,
                head.seq
            ),
        });
    } else {
        report.problems.push(Problem {
            line: report.lines,
            seq: Some(last_seq),
            kind: ProblemKind::Edited,
            detail: format!(
                "the log's records do not include the last record its {what} names (seq {}): the end of the log was replaced",
                head.seq
            ),
        });
    }
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
