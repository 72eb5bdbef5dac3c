//! `Subscription`: messages in batches. The async-iterator protocol (`for await`) runs in
//! `busbar.js` over `nextBatch()`, so a message waiting in a batch costs no native call;
//! with a callback, a task on napi's runtime hands each batch to JavaScript in one
//! threadsafe call, with a few batches in flight at most (so a slow callback slows delivery
//! instead of piling messages up).
//!
//! Notices travel in order with the messages under core's rule (`busbar::Batches`): a lag
//! notice (code `lagged`, with `missed`) or a message that could not be decoded (code
//! `decode`) ends a batch and is the next read. `nextBatch()` rejects with it; a callback
//! gets it alone, as a [`Notice`] batch, in its place. `busbar.js` decides what JavaScript
//! sees (README).

use std::sync::{Arc, Mutex as StdMutex};

use busbar::throttle::{Decision, Report, Throttle};
use busbar::{Batches, Error};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use tokio::sync::{Mutex, Semaphore};

use crate::args::batch_size;
use crate::error::to_js;
use crate::message::Message;
use crate::runtime::run;

/// Most messages handed to JavaScript in one batch.
pub(crate) const MAX_BATCH: usize = 1024;

/// Batches of a callback subscription that may wait for JavaScript at once.
const IN_FLIGHT: usize = 4;

/// The threadsafe function that receives batches of a callback subscription.
pub(crate) type Callback =
    ThreadsafeFunction<Vec<busbar::Result<busbar::Message>>, (), Vec<Either<Message, Notice>>, Status, false>;

/// A notice in a callback batch, where a message would be: `busbar.js` turns it into an
/// `Error` with `code` (`lagged` or `decode`) and, for a lag notice, `missed`.
#[napi(object)]
pub(crate) struct Notice {
    /// The error code.
    pub code: String,
    /// What happened, for a person.
    pub message: String,
    /// For a lag notice: how many messages were missed at this gap.
    pub missed: Option<f64>,
}

impl From<busbar::Error> for Notice {
    fn from(err: busbar::Error) -> Self {
        let missed = match &err {
            Error::Lagged { missed, .. } => Some(*missed as f64),
            _ => None,
        };
        Notice {
            code: err.code().to_owned(),
            message: err.to_string(),
            missed,
        }
    }
}

/// A callback batch as JavaScript values.
pub(crate) fn callback_batch(batch: Vec<busbar::Result<busbar::Message>>) -> Vec<Either<Message, Notice>> {
    batch
        .into_iter()
        .map(|item| match item {
            Ok(m) => Either::A(Message::from(m)),
            Err(e) => Either::B(Notice::from(e)),
        })
        .collect()
}

/// Messages matching a pattern. Iterate it with `for await (const msg of sub)` (leaving the
/// loop early unsubscribes), or give `subscribe` a callback. An iterated subscription that
/// is collected unsubscribes; a callback subscription lives until `unsubscribe()`,
/// `drain()` or the bus's `close()`.
#[napi]
pub struct Subscription {
    /// `None` for a callback subscription, whose task owns the stream.
    stream: Option<Arc<Mutex<Batches<busbar::Subscription>>>>,
    handle: busbar::SubscriptionHandle,
    pattern: String,
    queue_group: Option<String>,
}

/// Counters of one subscription.
#[napi(object)]
pub struct SubscriptionStats {
    /// Messages queued to this subscription.
    pub delivered: f64,
    /// Messages it missed because its buffer was full (each gap is also told by a lag
    /// notice, at the gap).
    pub missed: f64,
    /// Messages waiting in its buffer now.
    pub pending: f64,
    /// Bytes (payloads and user headers) waiting in its buffer now.
    pub pending_bytes: f64,
    /// Messages that arrived but could not be decoded (skipped, with a warning or `onError`).
    pub undecodable: f64,
    /// Whether it has missed a message since it last caught up.
    pub lagging: bool,
}

impl Subscription {
    /// Wraps `sub`; with a callback, starts the task that feeds it.
    /// `batch`: the most messages a callback gets in one call (`batchSize`).
    pub(crate) fn start(sub: busbar::Subscription, callback: Option<Callback>, batch: usize) -> Result<Self> {
        let handle = sub.handle();
        let pattern = sub.pattern().to_owned();
        let queue_group = sub.queue_group().map(str::to_owned);
        let stream = match callback {
            None => Some(Arc::new(Mutex::new(Batches::new(sub)))),
            Some(callback) => {
                spawn(deliver(sub, callback, batch));
                None
            }
        };
        Ok(Subscription {
            stream,
            handle,
            pattern,
            queue_group,
        })
    }
}

/// Hands `sub`'s messages and notices to `callback` batch by batch until the subscription
/// ends; no notice stops it. Up to [`IN_FLIGHT`] batches wait for JavaScript at once:
/// while it handles one, the next are gathered, and once all slots are taken messages stay
/// in the subscription's bounded buffer, where the configured back-pressure applies.
async fn deliver(sub: busbar::Subscription, callback: Callback, max: usize) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut batches = Batches::new(sub);
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        // Core's rule: a notice ends a batch and comes alone, in its place.
        let batch = match batches.next_batch(max).await {
            None => break,
            Some(Ok(messages)) => messages.into_iter().map(Ok).collect(),
            Some(Err(notice)) => vec![Err(notice)],
        };
        let status =
            callback.call_with_return_value(batch, ThreadsafeFunctionCallMode::NonBlocking, |_, _| {
                drop(slot);
                Ok(())
            });
        if status != Status::Ok {
            break; // the environment is going away
        }
    }
}

#[napi]
impl Subscription {
    /// The pattern this subscription matches.
    #[napi(getter, catch_unwind)]
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The queue group, for queue subscriptions.
    #[napi(getter, catch_unwind)]
    pub fn queue_group(&self) -> Option<&str> {
        self.queue_group.as_deref()
    }

    /// The next messages: at least one, at most `max` (default 1024), waiting only for the
    /// first. Resolves with `null` once the subscription has ended. Rejects, in order with
    /// the messages, with a lag notice (code `lagged`, `missed`) where messages were
    /// missed and with code `decode` where one could not be decoded; the next call goes on.
    #[napi(
        catch_unwind,
        ts_args_type = "max?: number",
        ts_return_type = "Promise<Message[] | null>"
    )]
    pub fn next_batch<'env>(&self, env: &'env Env, max: Option<Unknown>) -> Result<Unknown<'env>> {
        let max = batch_size(env, max, MAX_BATCH as u32)?;
        let Some(stream) = self.stream.clone() else {
            let e = Error::InvalidArgument(format!(
                "the subscription on {:?} delivers to its callback; it cannot also be iterated",
                self.pattern
            ));
            return crate::runtime::settle::<()>(env, Err(to_js(env, &e)));
        };
        run(
            env,
            async move {
                let mut sub = stream.lock().await;
                sub.next_batch(max).await.transpose()
            },
            |_, batch| Ok(batch.map(|b| b.into_iter().map(Message::from).collect::<Vec<_>>())),
        )
    }

    /// Stops delivery at once; buffered messages are discarded and iteration ends.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn unsubscribe<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let handle = self.handle.clone();
        run(env, async move { handle.unsubscribe().await }, |_, ()| Ok(()))
    }

    /// Stops new deliveries; what is buffered is still delivered, then iteration ends.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn drain<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let handle = self.handle.clone();
        run(env, async move { handle.drain().await }, |_, ()| Ok(()))
    }

    /// Counters of this subscription.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> SubscriptionStats {
        let s = self.handle.stats();
        SubscriptionStats {
            delivered: s.delivered as f64,
            missed: s.missed as f64,
            pending: s.pending as f64,
            pending_bytes: s.pending_bytes as f64,
            undecodable: s.undecodable as f64,
            lagging: s.lagging,
        }
    }
}

// -- Notices nobody handles: the core's log throttle for `busbar.js` -------------------

/// What a warning stands for: `notices` notices since the previous warning, carrying
/// `total` (undecodable messages, or messages missed).
#[napi(object)]
pub struct NoticeReport {
    pub notices: f64,
    pub total: f64,
    /// Set when nothing is to be written now: call `flush()` after this many milliseconds.
    pub flush_after_ms: Option<f64>,
}

impl From<Report> for NoticeReport {
    fn from(r: Report) -> Self {
        NoticeReport {
            notices: r.notices as f64,
            total: r.total as f64,
            flush_after_ms: None,
        }
    }
}

/// Internal to the package (`busbar.js`): decides when a notice becomes a warning.
#[napi]
pub struct NoticeThrottle(StdMutex<Throttle>);

#[napi]
impl NoticeThrottle {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        NoticeThrottle(StdMutex::new(Throttle::new()))
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one notice carrying `amount`: a report to write now (`notices` > 0), or none
    /// (`notices` 0) with `flushAfterMs` when a flush is to be scheduled.
    #[napi(catch_unwind)]
    pub fn hit(&self, amount: f64) -> NoticeReport {
        let amount = if amount.is_finite() && amount > 0.0 {
            amount as u64
        } else {
            0
        };
        match self.throttle().hit(amount) {
            Decision::Record(report) => report.into(),
            Decision::FlushAfter(delay) => NoticeReport {
                notices: 0.0,
                total: 0.0,
                flush_after_ms: Some(delay.as_secs_f64() * 1000.0),
            },
            Decision::Held => NoticeReport {
                notices: 0.0,
                total: 0.0,
                flush_after_ms: None,
            },
        }
    }

    /// The report of what was held back since the previous warning, or `null`.
    #[napi(catch_unwind)]
    pub fn flush(&self) -> Option<NoticeReport> {
        self.throttle().flush().map(Into::into)
    }
}
