//! The audit log in a JetStream stream: each record is one message on a subject of a
//! stream (file storage), published in order and acknowledged by the server.
//!
//! [`AuditSink::append`] is called inside delivery, so it does not wait: records go
//! to a task that publishes them one by one and waits for each acknowledgement. A
//! failure is reported by the next `append` (the policy bus then fails the operation:
//! fail closed) and by [`JetStreamAudit::flush`].

use std::sync::{Arc, Mutex};

use async_nats::jetstream::{self, stream::StorageType};
use tokio::sync::{mpsc, oneshot};

use super::audit::{AuditRecord, AuditSink};
use crate::error::{Error, Result};

enum Command {
    Record(String),
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
}

impl JetStreamSink {
    /// Opens (or creates) stream `stream` holding `subject`, and returns the sink, a
    /// handle to flush and read it, and the last record already in it (so the
    /// chain continues: pass its `seq` and `hash` to [`super::AuditLog::with_sink`]).
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
        let last = match handle.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Some(
                serde_json::from_slice::<AuditRecord>(&m.payload)
                    .map_err(|e| Error::Decode(format!("the last audit record in stream {stream:?}: {e}")))?,
            ),
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => None,
            Err(e) => return Err(backend("reading the last record", e)),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
        let failed = Arc::new(Mutex::new(None));
        let task_failed = failed.clone();
        let subject = subject.to_owned();
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                match cmd {
                    Command::Record(line) => {
                        let sent = match js.publish(subject.clone(), line.into()).await {
                            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        if let Err(e) = sent {
                            *task_failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        }
                    }
                    Command::Flush(done) => {
                        let _ = done.send(());
                    }
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
            },
            last,
        ))
    }
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
}

impl JetStreamAudit {
    /// Waits until every record appended so far is acknowledged by the server.
    pub async fn flush(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Command::Flush(done))
            .map_err(|_| Error::Closed("audit stream"))?;
        wait.await.map_err(|_| Error::Closed("audit stream"))?;
        check(&self.failed)
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
