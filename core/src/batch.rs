//! Reading a subscription in batches under the one lag rule of docs/design.md §4 and §7: a
//! notice (a lag notice, `lagged` with the number missed, or an undecodable message,
//! `decode`) is never inside a batch and never skipped. A batch holds the messages before
//! the notice; the notice is the next read's result, at the exact gap; the read after it
//! goes on with the messages after the gap.
//!
//! Bindings hand messages to their language a batch at a time (Node's `nextBatch()`, a
//! callback's batches, Python's buffer of ready messages), so crossing into the language
//! costs one call per batch, not per message; this is where they get those batches.

use std::future::poll_fn;
use std::task::{Context, Poll};

use futures_core::Stream;
use futures_util::StreamExt;

use crate::error::{Error, Result};

/// A stream of messages and notices (a [`crate::Subscription`], a
/// [`crate::DurableSubscription`]) read in batches.
#[derive(Debug)]
pub struct Batches<S> {
    stream: S,
    /// The notice that ended the previous batch, for the next read.
    held: Option<Error>,
    /// The stream has ended (after what was read and held).
    ended: bool,
}

impl<S, T> Batches<S>
where
    S: Stream<Item = Result<T>> + Unpin,
{
    /// Reads `stream` in batches.
    pub fn new(stream: S) -> Self {
        Batches {
            stream,
            held: None,
            ended: false,
        }
    }

    /// The stream read.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The next batch: at least one message and at most `max` (0 counts as 1), waiting
    /// only for the first; or the notice at the gap as an `Err` (the stream goes on); or
    /// `None` once the stream has ended.
    pub async fn next_batch(&mut self, max: usize) -> Option<Result<Vec<T>>> {
        poll_fn(|cx| self.poll_next_batch(cx, max)).await
    }

    /// [`Batches::next_batch`] as a poll: `Pending` only when nothing at all is ready.
    pub fn poll_next_batch(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Result<Vec<T>>>> {
        if let Some(notice) = self.held.take() {
            return Poll::Ready(Some(Err(notice)));
        }
        if self.ended {
            return Poll::Ready(None);
        }
        let first = match self.stream.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                self.ended = true;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(notice))) => return Poll::Ready(Some(Err(notice))),
            Poll::Ready(Some(Ok(first))) => first,
        };
        let mut batch = Vec::with_capacity(max.clamp(1, 64));
        batch.push(first);
        while batch.len() < max {
            match self.stream.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(m))) => batch.push(m),
                Poll::Ready(Some(Err(notice))) => {
                    self.held = Some(notice);
                    break;
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        Poll::Ready(Some(Ok(batch)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backpressure, Config, EventBus, InMemoryBus};

    fn lagged(missed: u64) -> Error {
        Error::Lagged {
            pattern: "p".into(),
            missed,
        }
    }

    #[tokio::test]
    async fn a_notice_ends_a_batch_and_is_the_next_read() {
        let items: Vec<Result<u32>> = vec![
            Ok(1),
            Ok(2),
            Err(lagged(3)),
            Ok(6),
            Err(Error::Decode("x".into())),
            Ok(7),
        ];
        let mut b = Batches::new(futures_util::stream::iter(items));
        assert_eq!(b.next_batch(10).await.unwrap().unwrap(), vec![1, 2]);
        let notice = b.next_batch(10).await.unwrap().unwrap_err();
        assert!(matches!(notice, Error::Lagged { missed: 3, .. }), "{notice}");
        assert_eq!(b.next_batch(10).await.unwrap().unwrap(), vec![6]);
        assert_eq!(b.next_batch(10).await.unwrap().unwrap_err().code(), "decode");
        assert_eq!(b.next_batch(10).await.unwrap().unwrap(), vec![7]);
        assert!(b.next_batch(10).await.is_none());
        assert!(b.next_batch(10).await.is_none(), "an ended stream stays ended");
    }

    #[tokio::test]
    async fn a_batch_holds_at_most_max_and_a_leading_notice_comes_at_once() {
        let items: Vec<Result<u32>> = vec![Err(lagged(1)), Ok(1), Ok(2), Ok(3)];
        let mut b = Batches::new(futures_util::stream::iter(items));
        assert_eq!(b.next_batch(2).await.unwrap().unwrap_err().code(), "lagged");
        assert_eq!(b.next_batch(2).await.unwrap().unwrap(), vec![1, 2]);
        assert_eq!(b.next_batch(0).await.unwrap().unwrap(), vec![3]);
        assert!(b.next_batch(2).await.is_none());
    }

    #[tokio::test]
    async fn received_plus_missed_is_what_was_published() {
        let config = Config::default()
            .with_backpressure(Backpressure::Lag)
            .with_subscription_capacity(8);
        let bus = InMemoryBus::new(config).unwrap();
        let sub = bus.subscribe("lag.>").await.unwrap();
        for i in 0..100u32 {
            bus.publish("lag.x", i.to_string().into()).await.unwrap();
        }
        bus.close().await.unwrap();
        let mut b = Batches::new(sub);
        let (mut received, mut missed, mut notices) = (0u64, 0u64, 0);
        while let Some(read) = b.next_batch(5).await {
            match read {
                Ok(batch) => {
                    assert!(!batch.is_empty() && batch.len() <= 5);
                    received += batch.len() as u64;
                }
                Err(Error::Lagged { missed: n, .. }) => {
                    missed += n;
                    notices += 1;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
        assert!(notices >= 1, "a full buffer in lag mode is reported");
        assert_eq!(received + missed, 100);
        assert_eq!(missed, b.get_ref().stats().missed);
    }
}
