//! The verifier and reader: [`verify_file`] and its kin walk a log's chain and check it
//! against its head, naming each [`Problem`]; [`read_range`] reads records back.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::super::crypto::KeyRing;
use super::record::{chain_hash, head_json, head_path, io_error, open_private, AuditRecord, Head, GENESIS};
use crate::error::{Error, Result};

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

pub(super) fn verify_with_key(path: &Path, key: Option<&[u8; 32]>) -> Result<VerifyReport> {
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

pub(super) fn read_head(path: &Path) -> Result<Option<Head>> {
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
pub(super) fn last_line_of(bytes: &[u8]) -> (usize, usize) {
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
pub(super) fn previous_is(log: &[u8], line_start: usize, head: &Head) -> bool {
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
