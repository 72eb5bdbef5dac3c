//! Request/reply. A request is a record on the bus's topic with a `reply-to` header
//! naming an inbox subject `_INBOX.<bus token>.<request token>`; the reply is an ordinary
//! publish to that subject, so it is a record on the same topic too, which the bus's
//! reply reader (a fan-out reader of the topic started by the bus's first request) hands
//! to the waiting request. Correlation id = request id, checked as on every backend.
//!
//! Kafka cannot tell whether anyone reads a subject: a request nobody answers fails with
//! `timeout` after its timeout, never `no_responders` (docs/design.md §5).

use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::message::{Message as _, OwnedMessage};
use tokio::sync::watch;

use super::connection::{backend, closed, Inner, KafkaConsumer};
use super::envelope;
use crate::backend::reply;
use crate::envelope::Message;
use crate::error::Result;

/// Starts the bus's reply reader, once: from markers written to the topic, before the
/// first request is published.
async fn listen(bus: &Arc<Inner>) -> Result<()> {
    let mut started = bus.replies.lock().await;
    if *started {
        return Ok(());
    }
    let consumer = bus.consumer(None)?;
    let marks = bus.mark().await?;
    super::pubsub::assign(bus, &consumer, &marks)
        .map_err(|e| backend("starting this bus's reply reader".into(), e))?;
    tokio::spawn(route_replies(
        consumer,
        bus.closing.subscribe(),
        Arc::downgrade(bus),
    ));
    *started = true;
    Ok(())
}

async fn route_replies(consumer: Arc<KafkaConsumer>, mut closing: watch::Receiver<bool>, bus: Weak<Inner>) {
    loop {
        let received = tokio::select! {
            _ = closed(&mut closing) => break,
            received = consumer.recv() => received,
        };
        let m = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!("kafka: reading replies: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(bus) = bus.upgrade() else { break };
        let Some(subject) = envelope::subject(m.headers(), m.key()) else {
            continue;
        };
        if !bus.inbox.owns(subject) || envelope::is_marker(&m) {
            continue;
        }
        let subject = subject.to_owned();
        let key = envelope::header(m.headers(), "ce_correlationid").map(str::to_owned);
        let answer = bus.inbox.answer(&subject, key.as_deref(), m.detach());
        bus.counters.record_answer(answer);
    }
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}

pub(super) async fn request(bus: &Arc<Inner>, msg: Message, timeout: Duration) -> Result<Message> {
    bus.check_open()?;
    reply::check_timeout(&msg, timeout)?;
    let deadline = reply::deadline(timeout);
    tokio::time::timeout_at(deadline, listen(bus))
        .await
        .map_err(|_| reply::timed_out(&msg, timeout))??;
    let mut waiting = bus.inbox.wait("", reply::expected_correlation(&msg));
    let request = reply::stamp_request(&msg, waiting.subject(), timeout)?;
    tokio::time::timeout_at(deadline, bus.publish(&request))
        .await
        .map_err(|_| reply::timed_out(&msg, timeout))??;
    let reply: OwnedMessage = waiting.reply(msg.subject(), deadline, timeout).await?;
    let subject = waiting.subject().to_owned();
    bus.receive(&subject, &reply)
}
