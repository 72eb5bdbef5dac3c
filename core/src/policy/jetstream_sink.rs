//! The audit log in a JetStream stream: each record is one message on a subject of a
//! stream (file storage), published in order and acknowledged by the server.
//!
//! [`AuditSink::append`] is called inside delivery, so it does not wait: records go
//! to a task that publishes them one by one and waits for each acknowledgement, then
//! publishes the head (`seq` and `hash` of that record) to a second stream,
//! `<stream>_HEAD` on `<subject>.head`, so records deleted from the end of the log
//! are seen ([`JetStreamAudit::verify`]) and a reopened sink refuses to continue a
//! log that does not reach its head.
//!
//! Fail closed: the policy bus waits ([`AuditSink::settled`]) until an operation's
//! records are acknowledged before it publishes or delivers, so the first record that
//! cannot be stored fails its operation, and every `append` after it fails too.

use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, stream::StorageType};
use tokio::sync::{mpsc, oneshot};

use super::audit::{AuditRecord, AuditSink, Settling};
use crate::error::{Error, Result};

enum Command {
    Record(String),
    Head(String),
    Flush(oneshot::Sender<()>),
}

fn backend(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Backend {
        message: format!("audit stream: {what}: {e}"),
        source: None,
    }
}

/// Writes audit records to a stream; build an [`super::AuditLog`] with
/// [`super::AuditLog::with_sink`] around it.
pub struct JetStreamSink {
    tx: mpsc::UnboundedSender<Command>,
    failed: Arc<Mutex<Option<String>>>,
}

/// Flushes and reads back the stream a [`JetStreamSink`] writes to.
#[derive(Clone)]
pub struct JetStreamAudit {
    tx: mpsc::UnboundedSender<Command>,
    failed: Arc<Mutex<Option<String>>>,
    stream: jetstream::stream::Stream,
    heads: jetstream::stream::Stream,
    head_subject: String,
}

impl JetStreamSink {
    /// Opens (or creates) stream `stream` holding `subject` and its head stream
    /// `<stream>_HEAD` holding `<subject>.head`, and returns the sink, a handle to flush
    /// and read it, and the last record already in it (so the chain continues: pass its
    /// `seq` and `hash` to [`super::AuditLog::with_sink`]). Refuses (`decode`) a stream
    /// whose last record is not its head (records deleted from the end) or that has
    /// records but no head.
    pub async fn open(
        client: async_nats::Client,
        stream: &str,
        subject: &str,
    ) -> Result<(JetStreamSink, JetStreamAudit, Option<AuditRecord>)> {
        crate::subject::validate_subject(subject)?;
        let js = jetstream::new(client);
        let handle = js
            .get_or_create_stream(jetstream::stream::Config {
                name: stream.to_owned(),
                subjects: vec![subject.to_owned()],
                storage: StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(&format!("creating stream {stream:?}"), e))?;
        let head_subject = format!("{subject}.head");
        let heads = js
            .get_or_create_stream(jetstream::stream::Config {
                name: format!("{stream}_HEAD"),
                subjects: vec![head_subject.clone()],
                storage: StorageType::File,
                max_messages_per_subject: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| backend(&format!("creating stream {stream:?}_HEAD"), e))?;
        let last: Option<AuditRecord> = last_of(&handle, subject, "the last audit record").await?;
        let head: Option<super::audit::Head> = last_of(&heads, &head_subject, "the audit head").await?;
        match (&head, &last) {
            (None, None) => {}
            (Some(h), Some(l)) if h.seq == l.seq && h.hash == l.hash => {}
            // A crash between a record and its head leaves one record past the head.
            (Some(h), Some(l)) if l.seq == h.seq + 1 => {}
            (None, Some(l)) => {
                return Err(Error::Decode(format!(
                    "audit stream {stream:?} holds records up to seq {} but no head: records deleted from its end could not be seen",
                    l.seq
                )))
            }
            (Some(h), _) => {
                return Err(Error::Decode(format!(
                    "audit stream {stream:?} ends at seq {}, but its head says seq {} was written last: records were deleted from the end",
                    last.as_ref().map_or(0, |l| l.seq),
                    h.seq
                )))
            }
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        let failed = Arc::new(Mutex::new(None));
        let task_failed = failed.clone();
        let subject = subject.to_owned();
        let task_head_subject = head_subject.clone();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                let (to, line) = match cmd {
                    Command::Record(line) => (subject.clone(), line),
                    Command::Head(line) => (task_head_subject.clone(), line),
                    Command::Flush(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                if task_failed.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
                    continue; // nothing after a lost record is stored: the chain would lie
                }
                let sent = match js.publish(to, line.into()).await {
                    Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = sent {
                    *task_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            }
        });
        Ok((
            JetStreamSink {
                tx: tx.clone(),
                failed: failed.clone(),
            },
            JetStreamAudit {
                tx,
                failed,
                stream: handle,
                heads,
                head_subject,
            },
            last,
        ))
    }
}

/// The payload of the last message on `subject` in `stream`, parsed.
async fn last_of<T: serde::de::DeserializeOwned>(
    stream: &jetstream::stream::Stream,
    subject: &str,
    what: &str,
) -> Result<Option<T>> {
    match stream.get_last_raw_message_by_subject(subject).await {
        Ok(m) => serde_json::from_slice(&m.payload)
            .map(Some)
            .map_err(|e| Error::Decode(format!("{what} in the audit stream: {e}"))),
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(backend(&format!("reading {what}"), e)),
    }
}

/// Resolves once the task has handled every command sent before, then reports a failure.
fn settle(tx: &mpsc::UnboundedSender<Command>, failed: Arc<Mutex<Option<String>>>) -> Settling {
    let (done, wait) = oneshot::channel();
    let sent = tx.send(Command::Flush(done));
    Box::pin(async move {
        sent.map_err(|_| Error::Closed("audit stream"))?;
        wait.await.map_err(|_| Error::Closed("audit stream"))?;
        check(&failed)
    })
}

fn check(failed: &Mutex<Option<String>>) -> Result<()> {
    match &*failed.lock().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(backend("publishing a record failed", e)),
        None => Ok(()),
    }
}

impl AuditSink for JetStreamSink {
    fn append(&mut self, line: &str) -> Result<()> {
        check(&self.failed)?;
        self.tx
            .send(Command::Record(line.to_owned()))
            .map_err(|_| Error::Closed("audit stream"))
    }

    fn head(&mut self, head: &str) -> Result<()> {
        self.tx
            .send(Command::Head(head.to_owned()))
            .map_err(|_| Error::Closed("audit stream"))
    }

    fn settled(&mut self) -> Option<Settling> {
        Some(settle(&self.tx, self.failed.clone()))
    }
}

impl JetStreamAudit {
    /// Waits until every record appended so far is acknowledged by the server.
    pub async fn flush(&self) -> Result<()> {
        settle(&self.tx, self.failed.clone()).await
    }

    /// The head kept in the head stream (`seq` and `hash` of the last record stored).
    pub async fn head(&self) -> Result<Option<(u64, String)>> {
        let head: Option<super::audit::Head> =
            last_of(&self.heads, &self.head_subject, "the audit head").await?;
        Ok(head.map(|h| (h.seq, h.hash)))
    }

    /// Verifies the records in the stream against their chain and against the head
    /// stream, so records deleted anywhere, the end included, are reported.
    pub async fn verify(&self, ring: Option<&super::crypto::KeyRing>) -> Result<super::audit::VerifyReport> {
        let text = self.read_all().await?;
        let head = self.head().await?;
        Ok(super::audit::verify_text_with_head(&text, ring, head))
    }

    /// Every record in the stream, one JSON text per line (for [`super::audit::verify_text`]).
    pub async fn read_all(&self) -> Result<String> {
        let mut stream = self.stream.clone();
        let state = stream
            .info()
            .await
            .map_err(|e| backend("stream info", e))?
            .state
            .clone();
        let mut text = String::new();
        if state.messages == 0 {
            return Ok(text);
        }
        for seq in state.first_sequence..=state.last_sequence {
            match stream.get_raw_message(seq).await {
                Ok(m) => {
                    text.push_str(&String::from_utf8_lossy(&m.payload));
                    text.push('\n');
                }
                // A deleted message leaves a gap; verify reports what is missing.
                Err(e) if e.kind() == jetstream::stream::RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(backend(&format!("reading record {seq}"), e)),
            }
        }
        Ok(text)
    }

    /// Removes the stream message with sequence `seq` (for tests of tamper detection and
    /// for retention tools; the chain shows the gap).
    pub async fn delete(&self, seq: u64) -> Result<bool> {
        self.stream
            .delete_message(seq)
            .await
            .map_err(|e| backend(&format!("deleting record {seq}"), e))
    }
}
