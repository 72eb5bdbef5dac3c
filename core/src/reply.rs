//! Request/reply plumbing shared by the backends (docs/design.md §5): how a request is
//! stamped, and the table of requests waiting for their reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::envelope::Message;
use crate::error::{Error, Result};

/// `msg` as a request: `reply_to` is `inbox`, `correlationid` its `id` unless already set.
pub(crate) fn stamp_request(msg: &Message, inbox: &str, timeout: Duration) -> Result<Message> {
    if timeout.is_zero() {
        return Err(Error::InvalidArgument(format!(
            "request to {:?}: timeout must be above zero",
            msg.subject()
        )));
    }
    crate::bounds::duration("request timeout", timeout)?;
    let mut builder = msg.to_builder().reply_to(inbox);
    if msg.correlation_id().is_none() {
        builder = builder.correlation_id(msg.id());
    }
    builder.build()
}

/// A bus's reply inbox: the subject prefix its replies arrive under, and the requests
/// waiting on an inbox subject below it.
pub(crate) struct Inbox<T> {
    /// `_INBOX.<unique>.`
    prefix: String,
    next: AtomicU64,
    waiting: Mutex<HashMap<String, oneshot::Sender<T>>>,
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

    /// Waits up to `timeout` for the reply to the request sent to `to`.
    pub(crate) async fn reply(&mut self, to: &str, timeout: Duration) -> Result<T> {
        let rx = self.reply.take().expect("a reply is awaited once");
        match tokio::time::timeout(timeout, rx).await {
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
            next: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `subject` lies under this inbox.
    pub(crate) fn owns(&self, subject: &str) -> bool {
        subject.starts_with(self.prefix.as_str())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<T>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a request waiting on a fresh subject of this inbox (`<prefix><tag><n>`).
    pub(crate) fn wait(&self, tag: &str) -> Waiting<'_, T> {
        let subject = format!("{}{tag}{}", self.prefix, self.next.fetch_add(1, Relaxed));
        let (tx, rx) = oneshot::channel();
        self.lock().insert(subject.clone(), tx);
        Waiting {
            inbox: self,
            subject,
            reply: Some(rx),
        }
    }

    /// Hands `reply` to the request waiting on `subject`; false when none waits (a late reply).
    pub(crate) fn answer(&self, subject: &str, reply: T) -> bool {
        let waiter = self.lock().remove(subject);
        match waiter {
            Some(waiter) => waiter.send(reply).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting request with `closed`.
    pub(crate) fn close_all(&self) {
        self.lock().clear();
    }
}
