//! Request/reply plumbing shared by the backends (docs/design.md §5): how a request is
//! stamped, and the table of requests waiting for their reply.
//!
//! Every request waits on its own inbox subject, `<bus prefix><tag><random token>`: the
//! token is 128 random bits (a v4 UUID), so the subject cannot be guessed from earlier
//! ones. A message arriving there is taken as the reply only when it carries the
//! request's correlation id; anything else is refused and counted (`rejected_replies`).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::envelope::Message;
use crate::error::{Error, Result};

/// `msg` as a request: `reply_to` is `inbox`, `correlationid` its `id` unless already set.
pub(crate) fn stamp_request(msg: &Message, inbox: &str, timeout: Duration) -> Result<Message> {
    check_timeout(msg, timeout)?;
    let mut builder = msg.to_builder().reply_to(inbox);
    if msg.correlation_id().is_none() {
        builder = builder.correlation_id(msg.id());
    }
    builder.build()
}

/// Refuses a zero timeout for a request of `msg`.
pub(crate) fn check_timeout(msg: &Message, timeout: Duration) -> Result<()> {
    if timeout.is_zero() {
        return Err(Error::InvalidArgument(format!(
            "request to {:?}: timeout must be above zero",
            msg.subject()
        )));
    }
    crate::bounds::duration("request timeout", timeout)?;
    Ok(())
}

/// When a request with `timeout` made now must end (a timeout too large to add saturates).
pub(crate) fn deadline(timeout: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 86_400))
}

/// The `timeout` error of a request of `msg`.
pub(crate) fn timed_out(msg: &Message, timeout: Duration) -> Error {
    Error::Timeout {
        subject: msg.subject().to_owned(),
        timeout,
    }
}

/// The correlation id a reply to `msg` must carry (what [`stamp_request`] puts in it).
pub(crate) fn expected_correlation(msg: &Message) -> &str {
    msg.correlation_id().unwrap_or(msg.id())
}

/// A random token for an inbox subject: 32 hex digits (128 bits, 122 of them random).
pub(crate) fn token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What became of a message that arrived under a bus's inbox prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Handed to the request waiting on its subject.
    Taken,
    /// A request waits on its subject but the message does not carry its correlation id
    /// (forged, or a responder that does not echo it): dropped, the request keeps waiting.
    Refused,
    /// No request waits on its subject (timed out, or never was): dropped.
    Late,
}

struct Waiter<T> {
    /// The key the reply must carry: the request's correlation id (or a flush's nonce).
    expect: String,
    reply: oneshot::Sender<T>,
}

/// A bus's reply inbox: the subject prefix its replies arrive under, and the requests
/// waiting on an inbox subject below it.
pub(crate) struct Inbox<T> {
    /// `_INBOX.<unique>.`
    prefix: String,
    waiting: Mutex<HashMap<String, Waiter<T>>>,
}

/// Removes its waiter however the request ends (reply, error, timeout, cancellation).
pub(crate) struct Waiting<'a, T> {
    inbox: &'a Inbox<T>,
    subject: String,
    reply: Option<oneshot::Receiver<T>>,
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.inbox.lock().remove(&self.subject);
    }
}

impl<T> Waiting<'_, T> {
    /// The inbox subject the reply must be sent to.
    pub(crate) fn subject(&self) -> &str {
        &self.subject
    }

    /// Waits until `deadline` for the reply to the request sent to `to` with `timeout`.
    pub(crate) async fn reply(
        &mut self,
        to: &str,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<T> {
        let rx = self.reply.take().expect("a reply is awaited once");
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(Error::Closed("bus")),
            Err(_) => Err(Error::Timeout {
                subject: to.to_owned(),
                timeout,
            }),
        }
    }
}

impl<T> Inbox<T> {
    /// An inbox under `prefix`, which ends with `.`.
    pub(crate) fn new(prefix: String) -> Self {
        debug_assert!(prefix.ends_with('.'));
        Inbox {
            prefix,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `subject` lies under this inbox.
    pub(crate) fn owns(&self, subject: &str) -> bool {
        subject.starts_with(self.prefix.as_str())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Waiter<T>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a request waiting on a fresh, unguessable subject of this inbox
    /// (`<prefix><tag><random token>`) for a reply carrying `expect`.
    pub(crate) fn wait(&self, tag: &str, expect: &str) -> Waiting<'_, T> {
        let subject = format!("{}{tag}{}", self.prefix, token());
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            expect: expect.to_owned(),
            reply: tx,
        };
        self.lock().insert(subject.clone(), waiter);
        Waiting {
            inbox: self,
            subject,
            reply: Some(rx),
        }
    }

    /// Hands `reply` to the request waiting on `subject` if `key` (the reply's correlation
    /// id; `None` when it has none) is the one that request expects.
    pub(crate) fn answer(&self, subject: &str, key: Option<&str>, reply: T) -> Answer {
        let mut waiting = self.lock();
        match waiting.get(subject) {
            None => Answer::Late,
            Some(w) if key != Some(w.expect.as_str()) => Answer::Refused,
            Some(_) => {
                let waiter = waiting.remove(subject).expect("present");
                drop(waiting);
                match waiter.reply.send(reply) {
                    Ok(()) => Answer::Taken,
                    Err(_) => Answer::Late,
                }
            }
        }
    }

    /// Hands `reply` to the request waiting on `subject` whatever it carries: for what only
    /// the request's own unguessable subject can vouch for (the server's no-responders
    /// status, a reply whose header block cannot be read).
    pub(crate) fn answer_unchecked(&self, subject: &str, reply: T) -> Answer {
        let waiter = self.lock().remove(subject);
        match waiter.map(|w| w.reply.send(reply)) {
            Some(Ok(())) => Answer::Taken,
            _ => Answer::Late,
        }
    }

    /// Fails every waiting request with `closed`.
    /// Requests (and flushes) waiting for their reply now.
    pub(crate) fn pending(&self) -> u64 {
        self.lock().len() as u64
    }

    pub(crate) fn close_all(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_subjects_are_random_not_counted() {
        let inbox: Inbox<u8> = Inbox::new("_INBOX.bus.".into());
        let (a, b) = (inbox.wait("", "x"), inbox.wait("", "y"));
        for s in [a.subject(), b.subject()] {
            let token = s.strip_prefix("_INBOX.bus.").unwrap();
            assert_eq!(token.len(), 32, "{s}");
            assert!(token.bytes().all(|c| c.is_ascii_hexdigit()), "{s}");
        }
        assert_ne!(a.subject(), b.subject());
    }

    #[test]
    fn only_the_expected_correlation_id_is_taken() {
        let inbox: Inbox<u8> = Inbox::new("_INBOX.bus.".into());
        let mut waiting = inbox.wait("", "req-1");
        let subject = waiting.subject().to_owned();
        assert_eq!(inbox.answer(&subject, None, 1), Answer::Refused);
        assert_eq!(inbox.answer(&subject, Some("req-2"), 2), Answer::Refused);
        assert_eq!(inbox.answer("_INBOX.bus.other", Some("req-1"), 3), Answer::Late);
        assert_eq!(inbox.answer(&subject, Some("req-1"), 4), Answer::Taken);
        assert_eq!(inbox.answer(&subject, Some("req-1"), 5), Answer::Late);
        let rx = waiting.reply.take().unwrap();
        assert_eq!(rx.blocking_recv().unwrap(), 4);
    }
}
