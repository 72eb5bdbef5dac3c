//! The writer: [`AuditLog`] chains each record to the one before and hands it to its
//! [`AuditSink`] ([`FileSink`] for a JSON-lines file with its head beside it).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::super::crypto::KeyRing;
use super::record::{
    chain_hash, head_json, head_path, io_error, open_private, AuditAction, AuditEntry, AuditRecord,
    AuditSink, Settling, GENESIS,
};
use super::verify::{
    last_line_of, previous_is, read_head, verify_with_key, Problem, ProblemKind, VerifyReport,
};
use crate::error::{Error, Result};

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
