//! Request/reply: one exclusive reply queue per bus, bound to the bus's exchange under
//! `_INBOX.<token>.*`, so a reply is an ordinary publish to the request's `reply_to`
//! subject (a plain AMQP responder publishes to the exchange with the `reply-to`
//! property as routing key). Correlation id = request id, checked as on NATS; a request
//! is published `mandatory` under publisher confirms, and one that no queue takes comes
//! back (basic.return) as `no_responders`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use tokio::sync::watch;

use super::connection::{backend, Attachment, Inner, Session};
use super::{envelope, subjects};
use crate::backend::reply;
use crate::envelope::codec::check_size;
use crate::envelope::Message;
use crate::error::{Error, Result};

/// Header of the message a flush sends to its own inbox (skipped by busbar subscribers).
const FLUSH_MARKER: &str = "busbar-flush";

/// Declares and consumes the bus's reply queue, now and on every new session.
pub(super) async fn listen(bus: &Arc<Inner>) -> Result<()> {
    let seen = bus.generation.subscribe();
    let queue = format!("{}.inbox.{}", bus.config.amqp_exchange, reply::token());
    let session = bus.session();
    let what = || "setting up this bus's reply queue".to_owned();
    let attached = async {
        attach(bus, &session, &queue)
            .await
            .map_err(|e| backend(what(), e))
    };
    let consumer = bus.bounded(what, attached).await?;
    let attachment = bus.attachments.enter(&session);
    tokio::spawn(route_replies(
        consumer,
        seen,
        queue,
        attachment,
        Arc::downgrade(bus),
    ));
    Ok(())
}

/// The reply queue `queue` on `session`: exclusive, bound under the inbox prefix, consumed
/// without acks.
async fn attach(bus: &Inner, session: &Session, queue: &str) -> lapin::Result<lapin::Consumer> {
    let channel = session.connection.create_channel().await?;
    let inbox = format!("{}*", bus.inbox_prefix);
    let queue = bus.bound_queue(&channel, queue, true, &inbox).await?;
    channel
        .basic_consume(
            queue,
            "busbar.replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Text of header `name` of `d`, if it is text.
fn header<'a>(d: &'a Delivery, name: &str) -> Option<&'a str> {
    match d.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

pub(super) fn is_flush_marker(d: &Delivery) -> bool {
    d.data.is_empty()
        && d.properties
            .headers()
            .as_ref()
            .is_some_and(|h| h.inner().len() == 1 && h.contains_key(FLUSH_MARKER))
}

/// What identifies `d` as the answer to one waiting request: its correlation id (the
/// CloudEvents header, else the AMQP property a plain responder sets), or a flush marker's
/// nonce.
fn reply_key(d: &Delivery) -> Option<&str> {
    if is_flush_marker(d) {
        return header(d, FLUSH_MARKER);
    }
    header(d, "cloudEvents:correlationid")
        .or_else(|| header(d, "cloudEvents_correlationid"))
        .or_else(|| d.properties.correlation_id().as_ref().map(|c| c.as_str()))
}

async fn route_replies(
    mut consumer: lapin::Consumer,
    mut seen: watch::Receiver<u64>,
    queue: String,
    attachment: Attachment,
    bus: Weak<Inner>,
) {
    loop {
        let reply = match consumer.next().await {
            Some(Ok(reply)) => Some(reply),
            // The connection was lost (or the bus closed): the reply queue comes back on
            // the next session; requests waiting meanwhile end by their timeout.
            Some(Err(_)) | None => loop {
                let Some(session) = Inner::await_session(&bus, &mut seen, Duration::from_millis(250)).await
                else {
                    return;
                };
                let Some(inner) = bus.upgrade() else { return };
                if let Ok(fresh) = attach(&inner, &session, &queue).await {
                    attachment.attached(&session);
                    consumer = fresh;
                    break None;
                }
            },
        };
        let Some(reply) = reply else { continue };
        let Some(bus) = bus.upgrade() else { break };
        let subject = reply.routing_key.as_str().to_owned();
        let key = reply_key(&reply).map(str::to_owned);
        let answer = bus.inbox.answer(&subject, key.as_deref(), reply);
        bus.counters.record_answer(answer);
    }
}

pub(super) async fn request(bus: &Arc<Inner>, msg: Message, timeout: Duration) -> Result<Message> {
    bus.check_open()?;
    reply::check_timeout(&msg, timeout)?;
    let deadline = reply::deadline(timeout);
    let mut waiting = bus.inbox.wait("", reply::expected_correlation(&msg));
    let request = reply::stamp_request(&msg, waiting.subject(), timeout)?;
    check_size(&request, bus.config.max_payload)?;
    let key = subjects::routing_key(request.subject())?;
    let props = envelope::properties(&request, false)?;
    let what = || format!("requesting {:?}", msg.subject());
    let send = async {
        let confirm = bus
            .session()
            .confirmed
            .basic_publish(
                bus.exchange.clone(),
                key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                request.data(),
                props,
            )
            .await
            .map_err(|e| backend(what(), e))?;
        match confirm.await.map_err(|e| backend(what(), e))? {
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Err(Error::NoResponders {
                subject: msg.subject().to_owned(),
            }),
            Confirmation::Nack(None) => Err(Error::Backend {
                message: format!("{}: the broker refused the request (nack)", what()),
                source: None,
            }),
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        }
    };
    tokio::time::timeout_at(deadline, send)
        .await
        .map_err(|_| reply::timed_out(&msg, timeout))??;
    bus.counters.published.fetch_add(1, Relaxed);
    let mut reply = waiting.reply(msg.subject(), deadline, timeout).await?;
    let data = std::mem::take(&mut reply.data);
    bus.receive(&reply, data)
}

/// A round trip through the broker: a marker published on the publishing channel after
/// everything sent before comes back to this bus's reply queue. Bounded by
/// `publish_timeout_ms`.
pub(super) async fn round_trip(bus: &Arc<Inner>) -> Result<()> {
    bus.check_open()?;
    let nonce = reply::token();
    let mut waiting = bus.inbox.wait("sync", &nonce);
    let mut headers = FieldTable::default();
    headers.insert(
        FLUSH_MARKER.into(),
        AMQPValue::LongString(nonce.as_bytes().to_vec().into()),
    );
    let timeout = bus.config.publish_timeout();
    let deadline = reply::deadline(timeout);
    let subject = waiting.subject().to_owned();
    let trip = async {
        bus.session()
            .publisher
            .basic_publish(
                bus.exchange.clone(),
                subject.as_str().into(),
                BasicPublishOptions::default(),
                &[],
                BasicProperties::default().with_headers(headers),
            )
            .await
            .map_err(|e| backend("sending a flush marker".into(), e))?
            .await
            .map_err(|e| backend("sending a flush marker".into(), e))?;
        waiting.reply("flush", deadline, timeout).await.map(drop)
    };
    match tokio::time::timeout_at(deadline, trip).await {
        Ok(Err(Error::Timeout { .. })) | Err(_) => Err(Error::Backend {
            message: format!(
                "RabbitMQ did not answer a flush within publish_timeout_ms ({} ms); it may be hung or unreachable",
                timeout.as_millis()
            ),
            source: None,
        }),
        Ok(done) => done,
    }
}
