//! Request/reply plumbing shared by the backends (DESIGN.md §5): how a request is
//! stamped, and the table of requests waiting for their reply.

use std::collections::HashMap;
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
    let mut builder = msg.to_builder().reply_to(inbox);
    if msg.correlation_id().is_none() {
        builder = builder.correlation_id(msg.id());
    }
    builder.build()
}

/// Requests waiting for a reply, by inbox subject.
pub(crate) struct Waiters<T> {
    map: Mutex<HashMap<String, oneshot::Sender<T>>>,
}

impl<T> Default for Waiters<T> {
    fn default() -> Self {
        Waiters {
            map: Mutex::new(HashMap::new()),
        }
    }
}

/// Removes its waiter however the request ends (reply, error, timeout, cancellation).
pub(crate) struct Waiting<'a, T> {
    waiters: &'a Waiters<T>,
    inbox: String,
    /// Resolves with the reply; errs when the bus closes.
    pub(crate) reply: Option<oneshot::Receiver<T>>,
}

impl<T> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.waiters.lock().remove(&self.inbox);
    }
}

impl<T> Waiters<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<T>>> {
        self.map.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a request waiting on `inbox`.
    pub(crate) fn wait(&self, inbox: &str) -> Waiting<'_, T> {
        let (tx, rx) = oneshot::channel();
        self.lock().insert(inbox.to_owned(), tx);
        Waiting {
            waiters: self,
            inbox: inbox.to_owned(),
            reply: Some(rx),
        }
    }

    /// Hands `reply` to the request waiting on `inbox`; false when none waits (a late reply).
    pub(crate) fn answer(&self, inbox: &str, reply: T) -> bool {
        let waiter = self.lock().remove(inbox);
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

/// Waits for the reply of `waiting` up to `timeout`.
pub(crate) async fn await_reply<T>(
    waiting: &mut Waiting<'_, T>,
    subject: &str,
    timeout: Duration,
) -> Result<T> {
    let rx = waiting.reply.take().expect("a reply is awaited once");
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(_)) => Err(Error::Closed("bus")),
        Err(_) => Err(Error::Timeout {
            subject: subject.to_owned(),
            timeout,
        }),
    }
}
