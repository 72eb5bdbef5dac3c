//! The connection of a [`NatsBus`](super::NatsBus) and what runs on it: publishing,
//! the pump of each subscription into busbar's own bounded queue, requests through the
//! bus's one inbox subscription, and flushes as round trips through the server.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::backend::counters::Counters;
use crate::backend::queue::{BeforeDrain, Command, Item, Payload, Pushed, QueueSender, TryQueue};
use crate::backend::reply::{self, Inbox};
use crate::bounds::MAX_HEADER_BLOCK;
use crate::bus::ConnectionEvent;
use crate::config::{Backpressure, Config, Overflow};
use crate::envelope::codec::{check_size, Dedupe};
use crate::envelope::{codec, Message, Replier};
use crate::error::{Error, Result};
use crate::subject::{validate_pattern, validate_queue_group};
use crate::subscription::Subscription;

impl From<async_nats::Event> for ConnectionEvent {
    fn from(event: async_nats::Event) -> Self {
        use async_nats::Event as E;
        match event {
            E::Connected => ConnectionEvent::Connected,
            E::Disconnected => ConnectionEvent::Disconnected,
            E::LameDuckMode => ConnectionEvent::LameDuckMode,
            E::Draining => ConnectionEvent::Draining,
            E::Closed => ConnectionEvent::Closed,
            E::SlowConsumer(_) => ConnectionEvent::SlowConsumer,
            E::ServerError(e) => ConnectionEvent::ServerError(e.to_string()),
            E::ClientError(e) => ConnectionEvent::ClientError(e.to_string()),
        }
    }
}

/// Messages a `block`-mode NATS subscription holds while its queue is full (see [`Held`]):
/// the burst async-nats' own per-subscription buffer absorbed by default, now counted.
const HOLD_MESSAGES: usize = 64 * 1024;

/// Messages async-nats may hold for one subscription before its pump takes them. The pump
/// takes each at once (and misses, counted, what its subscription cannot keep), so this
/// only absorbs scheduling hiccups; async-nats drops past it without telling which
/// subscription lost what, so it is large (slots cost memory only while used).
pub(super) const CLIENT_BUFFER: usize = 1 << 20;

pub(super) struct Inner {
    pub(super) client: async_nats::Client,
    /// JetStream on the same connection, for durable streams.
    pub(super) js: async_nats::jetstream::Context,
    pub(super) config: Config,
    pub(super) source: Arc<str>,
    /// The smaller of the configured `max_payload` and the server's less the header block
    /// budget (see [`payload_limit`]).
    pub(super) max_payload: usize,
    /// Replies to this bus's requests (and its flush markers) arrive under it.
    pub(super) inbox: Inbox<async_nats::Message>,
    pub(super) replier: Arc<dyn Replier>,
    pub(super) events: broadcast::Sender<ConnectionEvent>,
    /// Times the connection was lost, counted by the event callback.
    pub(super) disconnects: Arc<AtomicU64>,
    /// Set when the client gave up reconnecting (`max_reconnects`): every call fails.
    pub(super) gave_up: Arc<AtomicBool>,
    pub(super) closed: AtomicBool,
    pub(super) counters: Counters,
}

pub(super) fn backend(message: String, source: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Backend {
        message: format!("{message}: {source}"),
        source: Some(Box::new(source)),
    }
}

/// The largest payload sent to a server whose `max_payload` is `server_max`: the
/// configured limit, or the server's less [`MAX_HEADER_BLOCK`] (the server counts the
/// header block too) when that is smaller (docs/design.md §4).
pub(super) fn payload_limit(configured: usize, server_max: usize) -> usize {
    configured.min(server_max.saturating_sub(MAX_HEADER_BLOCK).max(1))
}

/// A message's NATS headers as async-nats takes them. With the feature
/// `nats-encoded-headers` (the vendored async-nats, vendor/async-nats/README.md; every
/// package of this workspace turns it on), the header block in wire form, handed over as
/// it is: no `HeaderMap` per message. Without it (busbar-sdk built against crates.io's
/// async-nats), a `HeaderMap` with the same headers.
#[cfg(feature = "nats-encoded-headers")]
pub(super) type Headers = async_nats::header::EncodedHeaders;
#[cfg(not(feature = "nats-encoded-headers"))]
pub(super) type Headers = HeaderMap;

/// The NATS headers of `msg` (CloudEvents binary mode, [`codec::header_block`]'s), with
/// `Nats-Msg-Id` as `dedupe` says.
pub(super) fn header_block(msg: &Message, dedupe: Dedupe) -> Result<Headers> {
    #[cfg(feature = "nats-encoded-headers")]
    {
        Headers::new(codec::header_block(msg, dedupe))
            .map_err(|e| Error::InvalidArgument(format!("message {}: {e}", msg.id())))
    }
    #[cfg(not(feature = "nats-encoded-headers"))]
    {
        header_map(|put| codec::encode_nats_headers_into(msg, dedupe, put))
    }
}

/// Publishes on core NATS, with a reply subject when `reply` is set.
async fn send(
    client: &async_nats::Client,
    subject: async_nats::Subject,
    reply: Option<async_nats::Subject>,
    headers: Headers,
    payload: Bytes,
) -> std::result::Result<(), async_nats::PublishError> {
    #[cfg(feature = "nats-encoded-headers")]
    match reply {
        Some(reply) => {
            client
                .publish_with_reply_and_encoded_headers(subject, reply, headers, payload)
                .await
        }
        None => {
            client
                .publish_with_encoded_headers(subject, headers, payload)
                .await
        }
    }
    #[cfg(not(feature = "nats-encoded-headers"))]
    match reply {
        Some(reply) => {
            client
                .publish_with_reply_and_headers(subject, reply, headers, payload)
                .await
        }
        None => client.publish_with_headers(subject, headers, payload).await,
    }
}

/// Publishes to JetStream; the returned future waits for the stream's acknowledgement.
pub(super) async fn send_durable(
    js: &async_nats::jetstream::Context,
    subject: String,
    headers: Headers,
    payload: Bytes,
) -> std::result::Result<
    async_nats::jetstream::context::PublishAckFuture,
    async_nats::jetstream::context::PublishError,
> {
    #[cfg(feature = "nats-encoded-headers")]
    return js.publish_with_encoded_headers(subject, headers, payload).await;
    #[cfg(not(feature = "nats-encoded-headers"))]
    return js.publish_with_headers(subject, headers, payload).await;
}

/// The NATS headers of `msg` (CloudEvents binary mode, `Nats-Msg-Id` included) as an
/// async-nats `HeaderMap`, for a caller of async-nats' own API. Attribute names are
/// static, so only values are copied.
pub fn nats_headers(msg: &Message) -> Result<HeaderMap> {
    header_map(|put| codec::encode_headers_into(msg, put))
}

/// A `HeaderMap` of the headers `encode` puts; a user header name async-nats refuses is
/// `invalid_argument`.
fn header_map(encode: impl FnOnce(&mut dyn FnMut(codec::HeaderName<'_>, &str))) -> Result<HeaderMap> {
    let mut fields = Vec::with_capacity(16);
    let mut refused = None;
    encode(&mut |name, value| {
        let name = match name {
            codec::HeaderName::Attribute(s) => async_nats::HeaderName::from_static(s),
            codec::HeaderName::User(s) => match s.parse() {
                Ok(name) => name,
                Err(_) => {
                    refused.get_or_insert_with(|| s.to_owned());
                    return;
                }
            },
        };
        fields.push((name, async_nats::HeaderValue::from(value)));
    });
    match refused {
        Some(name) => Err(Error::InvalidArgument(format!(
            "header name {} is not valid on NATS",
            crate::error::quote(&name)
        ))),
        None => Ok(fields.into_iter().collect()),
    }
}

/// Hands each reply to the request waiting for it if it carries that request's correlation
/// id (a flush marker: its nonce); counts the rest as rejected or late. The server's
/// no-responders status and a reply whose header block cannot be read carry no id: they
/// are believed on the request's own unguessable subject only, and can only fail it.
pub(super) async fn route_replies(mut replies: async_nats::Subscriber, bus: Weak<Inner>) {
    while let Some(reply) = replies.next().await {
        let Some(bus) = bus.upgrade() else { break };
        let subject = reply.subject.clone();
        let answer = if is_no_responders(&reply) || malformed(&reply).is_some() {
            bus.inbox.answer_unchecked(subject.as_str(), reply)
        } else {
            let key = reply_key(&reply).map(str::to_owned);
            bus.inbox.answer(subject.as_str(), key.as_deref(), reply)
        };
        bus.counters.record_answer(answer);
    }
}

/// The first value of header `name` (any case) of `m`.
fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    let headers = m.headers.as_ref()?;
    headers
        .iter()
        .find(|(n, _)| AsRef::<str>::as_ref(*n).eq_ignore_ascii_case(name))
        .and_then(|(_, values)| values.first())
        .map(|v| v.as_str())
}

/// What identifies `m` as the answer to one waiting request: its correlation id, or for a
/// flush marker its nonce.
fn reply_key(m: &async_nats::Message) -> Option<&str> {
    if is_flush_marker(m) {
        header(m, FLUSH_MARKER)
    } else {
        header(m, "ce-correlationid")
    }
}

/// Whether `m` is the server's no-responders status (503, no payload).
fn is_no_responders(m: &async_nats::Message) -> bool {
    m.status == Some(StatusCode::NO_RESPONDERS) && m.payload.is_empty()
}

/// Why the header block of `m` could not be read, when it could not. async-nats (patched,
/// see vendor/async-nats/README.md) then delivers the message without headers, with the
/// reason in `description` and no `status`, which a well-formed block never gives.
fn malformed(m: &async_nats::Message) -> Option<&str> {
    match (&m.status, &m.description) {
        (None, Some(problem)) => Some(problem),
        _ => None,
    }
}

impl Inner {
    pub(super) fn check_open(&self) -> Result<()> {
        if self.closed.load(Acquire) {
            return Err(Error::Closed("bus"));
        }
        if self.gave_up.load(Acquire) {
            return Err(Error::Backend {
                message: format!(
                    "the NATS connection gave up after max_reconnects ({}) attempts to reconnect; close this bus and connect again",
                    self.config.max_reconnects
                ),
                source: None,
            });
        }
        Ok(())
    }

    pub(super) async fn publish(&self, msg: &Message) -> Result<()> {
        self.check_open()?;
        check_size(msg, self.max_payload)?;
        let what = || format!("publishing to {:?}", msg.subject());
        // What a try hands over, built for each try (a second one is rare): a try that
        // cannot complete drops what it was given. `Subject`s, which async-nats takes as
        // they are, not `String`s it would copy.
        let step = || -> Result<_> {
            let headers = header_block(msg, Dedupe::Without)?;
            let subject = async_nats::Subject::from(msg.subject());
            let reply = msg.reply_to().map(async_nats::Subject::from);
            Ok(send(&self.client, subject, reply, headers, msg.data().clone()))
        };
        // Most publishes find room in the connection's buffer: one synchronous try, whose
        // future lives on this stack. The waiting path's future is a few KB; boxed only
        // when taken, it stays out of this future, which `EventBus::publish` allocates
        // for every message (3.6 KB before, past the allocator's small-block cache).
        // (Statements of their own: a temporary lives to the end of its statement, through
        // an `.await` in it, and so takes room in this future.)
        let first = self.try_now(step()?);
        let sent = match first {
            Some(sent) => sent,
            None if self.config.publish_buffer_full == Overflow::Fail => return Err(self.buffer_full(what())),
            None => {
                let waiting = self.waiting(what, step()?);
                waiting.await?
            }
        };
        sent.map_err(|e| match e.kind() {
            async_nats::client::PublishErrorKind::MaxPayloadExceeded => self.too_large(msg),
            _ => backend(what(), e),
        })?;
        self.counters.published.fetch_add(1, Relaxed);
        Ok(())
    }

    /// `payload_too_large` for `msg` refused by async-nats' own check: the server now in use
    /// (after a reconnect) has a smaller `max_payload` than the one seen at connect.
    pub(super) fn too_large(&self, msg: &Message) -> Error {
        let server_max = self.client.server_info().max_payload;
        Error::PayloadTooLarge {
            size: msg.data().len(),
            max: payload_limit(self.max_payload, server_max),
        }
    }

    /// A round trip through the server: when it returns, the server has processed everything
    /// this connection sent before, and messages it routed to this connection's subscriptions
    /// before that are in their buffers. (async-nats' `flush` only empties the socket buffer.)
    /// Bounded by `publish_timeout_ms` as a whole.
    pub(super) async fn round_trip(&self) -> Result<()> {
        self.check_open()?;
        let nonce = reply::token();
        let mut waiting = self.inbox.wait("sync", &nonce);
        let mut marker = HeaderMap::new();
        marker.insert(FLUSH_MARKER, nonce.as_str());
        let timeout = self.config.publish_timeout();
        let deadline = reply::deadline(timeout);
        let trip = async {
            self.client
                .publish_with_headers(waiting.subject().to_owned(), marker, bytes::Bytes::new())
                .await
                .map_err(|e| backend("sending a flush marker".into(), e))?;
            self.client
                .flush()
                .await
                .map_err(|e| backend("flushing to the NATS server".into(), e))?;
            waiting.reply("flush", deadline, timeout).await.map(drop)
        };
        match self.bounded(|| "flushing".to_owned(), trip).await {
            Ok(Err(Error::Timeout { .. })) | Err(_) => Err(Error::Backend {
                message: format!(
                    "the NATS server did not answer a flush within publish_timeout_ms ({} ms); it may be hung or unreachable",
                    timeout.as_millis()
                ),
                source: None,
            }),
            Ok(done) => done,
        }
    }

    /// Polls `step` (handing something to the connection) once, now: `None` if it could
    /// not complete without waiting. Under `publish_buffer_full = fail` the poll is outside
    /// tokio's cooperative budget, so only a full buffer can refuse it; under `wait`, a
    /// spent budget sends the caller to [`Inner::bounded`], which yields.
    fn try_now<T>(&self, step: impl std::future::Future<Output = T>) -> Option<T> {
        if self.config.publish_buffer_full == Overflow::Wait {
            step.now_or_never()
        } else {
            tokio::task::unconstrained(step).now_or_never()
        }
    }

    /// [`Inner::bounded`], boxed by a plain function: a future built inside an `async fn`
    /// takes room in that function's own future even when it is boxed there.
    fn waiting<'a, T: 'a>(
        &'a self,
        what: impl FnOnce() -> String + Send + 'a,
        step: impl std::future::Future<Output = T> + Send + 'a,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + Send + 'a>> {
        Box::pin(self.bounded(what, step))
    }

    /// `backend` for a publish refused under `publish_buffer_full = fail`.
    fn buffer_full(&self, what: String) -> Error {
        Error::Backend {
            message: format!(
                "{what}: the publish buffer (publish_buffer = {}) is full and publish_buffer_full is fail; the NATS connection is {}",
                self.config.publish_buffer,
                self.client.connection_state()
            ),
            source: None,
        }
    }

    /// Runs `step` (handing something to the connection) for at most `publish_timeout_ms`:
    /// a hung or unreachable server fails the call with `backend` instead of stalling it.
    pub(super) async fn bounded<T>(
        &self,
        what: impl FnOnce() -> String,
        step: impl std::future::Future<Output = T>,
    ) -> Result<T> {
        let mut step = std::pin::pin!(step);
        // Most steps are done at their first poll (a publish into a buffer with room):
        // those need no timer. The step is polled again with this task's waker below.
        if let Some(done) = step.as_mut().now_or_never() {
            return Ok(done);
        }
        let timeout = self.config.publish_timeout();
        tokio::time::timeout(timeout, step).await.map_err(|_| Error::Backend {
            message: format!(
                "{}: the NATS connection took nothing within publish_timeout_ms ({} ms); the server may be hung or unreachable (the connection is {})",
                what(),
                timeout.as_millis(),
                self.client.connection_state()
            ),
            source: None,
        })
    }

    /// Turns what NATS delivered into a message that can be answered.
    /// Anything undecodable is counted in `undecodable`.
    pub(super) fn receive(&self, m: async_nats::Message) -> Result<Message> {
        let received = self.decode(m);
        if received.is_err() {
            self.counters.undecodable.fetch_add(1, Relaxed);
        }
        received
    }

    pub(super) fn decode(&self, m: async_nats::Message) -> Result<Message> {
        if let Some(problem) = malformed(&m) {
            return Err(Error::Decode(format!(
                "message on {:?}: {problem}",
                m.subject.as_str()
            )));
        }
        let (subject, reply) = (m.subject.as_str(), m.reply.as_deref());
        // As received (the vendored async-nats, which `nats-encoded-headers` stands for):
        // the headers read off the block in wire order, without the `HeaderMap`, whose
        // building and freeing were most of a delivery's cost.
        #[cfg(feature = "nats-encoded-headers")]
        let received = m.headers.as_ref().and_then(|h| h.received());
        #[cfg(not(feature = "nats-encoded-headers"))]
        let received: Option<std::iter::Empty<(&str, std::borrow::Cow<'_, str>)>> = None;
        let pairs: smallvec::SmallVec<[(&str, std::borrow::Cow<'_, str>); 16]> = match received {
            Some(received) => received.collect(),
            None => m
                .headers
                .iter()
                .flat_map(|h| {
                    h.iter().flat_map(|(name, values)| {
                        let name: &str = name.as_ref();
                        values.iter().map(move |v| (name, v.as_str().into()))
                    })
                })
                .collect(),
        };
        let pairs = pairs.iter().map(|(name, value)| (*name, value.as_ref()));
        let msg = codec::decode(subject, reply, pairs, m.payload)?;
        Ok(if msg.reply_to().is_some() {
            msg.with_replier(self.replier.clone())
        } else {
            msg
        })
    }

    pub(super) async fn subscribe(
        self: &Arc<Self>,
        pattern: &str,
        group: Option<&str>,
    ) -> Result<Subscription> {
        self.check_open()?;
        validate_pattern(pattern)?;
        if let Some(g) = group {
            validate_queue_group(g)?;
        }
        // Subscribing is a command through the publish buffer too: bounded as a publish.
        let subscribing = async {
            match group {
                Some(g) => {
                    self.client
                        .queue_subscribe(pattern.to_owned(), g.to_owned())
                        .await
                }
                None => self.client.subscribe(pattern.to_owned()).await,
            }
        };
        let subscriber = self
            .bounded(|| format!("subscribing to {pattern:?}"), subscribing)
            .await?
            .map_err(|e| backend(format!("subscribing to {pattern:?}"), e))?;
        let (queue, command_rx, mut pending) = crate::backend::pumped::subscription(
            &self.config,
            &self.counters,
            pattern,
            group,
            RoundTrip(Arc::downgrade(self)),
        );
        let bus = Arc::downgrade(self);
        pending
            .stream
            .decode_with(Arc::new(move |raw| match bus.upgrade() {
                Some(bus) => bus.receive(raw),
                None => Err(Error::Closed("bus")),
            }));
        tokio::spawn(pump(subscriber, queue, command_rx, Arc::downgrade(self)));
        Ok(pending.finish())
    }

    pub(super) async fn request(&self, msg: Message, timeout: Duration) -> Result<Message> {
        self.check_open()?;
        reply::check_timeout(&msg, timeout)?;
        // The timeout bounds the whole call: sending into a full connection included.
        let deadline = reply::deadline(timeout);
        let mut waiting = self.inbox.wait("", reply::expected_correlation(&msg));
        let request = reply::stamp_request(&msg, waiting.subject(), timeout)?;
        tokio::time::timeout_at(deadline, self.publish(&request))
            .await
            .map_err(|_| reply::timed_out(&msg, timeout))??;
        let reply = waiting.reply(msg.subject(), deadline, timeout).await?;
        if is_no_responders(&reply) {
            return Err(Error::NoResponders {
                subject: msg.subject().to_owned(),
            });
        }
        self.receive(reply)
    }
}

/// Header of the message a flush sends to its own inbox. busbar subscriptions skip such
/// messages (a `>` subscription would otherwise see them), so a flush is invisible to
/// busbar subscribers as it is on the in-memory bus; plain NATS clients see it among the
/// `_INBOX.>` traffic.
const FLUSH_MARKER: &str = "Busbar-Flush";

/// Whether `m` is a busbar client's flush marker: on an inbox subject, no payload, and no
/// header but the marker, so skipping it hides nothing (a message that merely carries the
/// header is delivered as any other).
fn is_flush_marker(m: &async_nats::Message) -> bool {
    m.subject.starts_with("_INBOX.")
        && m.payload.is_empty()
        && m.status.is_none()
        && m.headers
            .as_ref()
            .is_some_and(|h| h.len() == 1 && h.get_all(FLUSH_MARKER).count() == 1)
}

/// Messages a `block`-mode subscription received while its queue was full, oldest first,
/// at most [`HOLD_MESSAGES`] (or `subscription_capacity`, if larger) and
/// `subscription_max_bytes` bytes. A publisher in another process cannot be made to wait,
/// so past these bounds messages are missed, counted, and reported at the gap as in `lag`
/// mode (docs/design.md §4).
#[derive(Default)]
struct Held {
    items: VecDeque<Item>,
    bytes: u64,
    /// Messages missed since the last held item, reported before the next one.
    gap: u64,
}

impl Held {
    fn push(&mut self, item: Item) {
        self.bytes += item.bytes();
        self.items.push_back(item);
    }

    fn has_room(&self, (capacity, max_bytes): (usize, u64), bytes: u64) -> bool {
        self.items.len() < capacity && (self.bytes == 0 || self.bytes + bytes <= max_bytes)
    }

    /// Moves held items into the queue while they fit; false when the subscription is gone.
    fn flush_into(&mut self, queue: &QueueSender, counters: &Counters) -> bool {
        while let Some(item) = self.items.pop_front() {
            let bytes = item.bytes();
            match queue.try_queue(item) {
                TryQueue::Queued => {
                    self.bytes -= bytes;
                    counters.record(&Pushed::Queued);
                }
                TryQueue::Full(item) => {
                    self.items.push_front(item);
                    return true;
                }
                TryQueue::Closed => return false,
            }
        }
        // All held items are queued: a gap after the last is reported by the queue now.
        queue.report_gap(std::mem::take(&mut self.gap));
        true
    }
}

/// Moves one subscription's messages from async-nats into its busbar queue. It reads
/// async-nats' buffer as fast as messages arrive, so that buffer (where a drop could not
/// be told apart per subscription) stays short, and every message it cannot keep is
/// counted on the subscription and reported at the gap.
async fn pump(
    mut subscriber: async_nats::Subscriber,
    queue: QueueSender,
    mut commands: mpsc::Receiver<Command>,
    bus: Weak<Inner>,
) {
    let mut draining = false;
    let mut held = Held::default();
    let (capacity, max_bytes) = queue.bounds();
    let bounds = (capacity.max(HOLD_MESSAGES), max_bytes);
    loop {
        let head = held.items.front().map(Item::bytes);
        tokio::select! {
            biased;
            command = commands.recv(), if !draining => match command {
                Some(Command::Drain(done)) => {
                    // async-nats' own per-subscription drain drops the subscription before
                    // the server's last messages are read; unsubscribing closes the channel
                    // but keeps what it holds, which the loop then delivers.
                    draining = subscriber.unsubscribe().await.is_ok();
                    let _ = done.send(());
                    if !draining {
                        break;
                    }
                }
                Some(Command::Unsubscribe) | None => {
                    let _ = subscriber.unsubscribe().await;
                    break;
                }
            },
            room = queue.room(head.unwrap_or(0)), if head.is_some() => {
                let Some(bus) = bus.upgrade() else { break };
                if !room || !held.flush_into(&queue, &bus.counters) {
                    break;
                }
            }
            next = subscriber.next() => {
                let Some(raw) = next else {
                    // Drained (or the connection closed): what is held still goes out.
                    finish(&mut held, &queue, &bus).await;
                    break;
                };
                if is_flush_marker(&raw) {
                    continue;
                }
                let Some(bus) = bus.upgrade() else { break };
                if !take(raw, &mut held, bounds, &queue, &bus) {
                    break;
                }
            }
        }
    }
    if let Some(bus) = bus.upgrade() {
        bus.counters.subscriptions.fetch_sub(1, Relaxed);
    }
}

/// Queues, holds or misses one message; false when the subscription is gone.
fn take(
    raw: async_nats::Message,
    held: &mut Held,
    bounds: (usize, u64),
    queue: &QueueSender,
    bus: &Inner,
) -> bool {
    let counters = &bus.counters;
    let size = raw.length.max(raw.payload.len()) as u64;
    // A message that cannot be kept is missed before it is decoded, so a pump that falls
    // behind catches up at the cost of a counter.
    let missed = match queue.mode() {
        Backpressure::Lag => held.items.is_empty() && queue.is_full(size),
        Backpressure::Block => !held.items.is_empty() && !held.has_room(bounds, size),
    };
    if missed {
        counters.record(&Pushed::Missed);
        if held.items.is_empty() {
            queue.missed(1);
        } else {
            queue.missed_carried();
            held.gap += 1;
        }
        return true;
    }
    // Decoded by the subscriber as it takes the message (see `Inner::subscribe`).
    let payload = Payload::Nats(Box::new(raw));
    if !held.items.is_empty() {
        let gap = std::mem::take(&mut held.gap);
        held.push(QueueSender::item(payload, gap));
        return true;
    }
    let pushed = queue.try_push(payload);
    counters.record(&pushed);
    match pushed {
        Pushed::Full(item) => held.push(item),
        Pushed::Closed => return false,
        Pushed::Queued | Pushed::Missed => {}
    }
    true
}

/// Queues what is held, waiting for room, once no more messages come.
async fn finish(held: &mut Held, queue: &QueueSender, bus: &Weak<Inner>) {
    while let Some(item) = held.items.pop_front() {
        let pushed = queue.push_wait(item).await;
        if let Some(bus) = bus.upgrade() {
            bus.counters.record(&pushed);
        }
        if matches!(pushed, Pushed::Closed) {
            return;
        }
    }
    queue.report_gap(std::mem::take(&mut held.gap));
}

/// Before a drain, a round trip to the server: whatever it routed to the subscription
/// before then has been read into the subscription's buffer when it returns.
struct RoundTrip(Weak<Inner>);

#[async_trait::async_trait]
impl BeforeDrain for RoundTrip {
    async fn before_drain(&self) -> Result<()> {
        match self.0.upgrade() {
            Some(bus) => bus.round_trip().await,
            None => Ok(()),
        }
    }

    async fn wait_drained(&self, finished: oneshot::Receiver<()>) -> Result<()> {
        match self.0.upgrade() {
            // The unsubscribe goes through the publish buffer: bounded as a publish.
            Some(bus) => {
                bus.bounded(|| "draining a subscription".to_owned(), async {
                    let _ = finished.await;
                })
                .await
            }
            None => {
                let _ = finished.await;
                Ok(())
            }
        }
    }
}

pub(super) struct WeakReplier(pub(super) Weak<Inner>);

#[async_trait::async_trait]
impl Replier for WeakReplier {
    async fn send_reply(&self, reply: Message) -> Result<()> {
        let inner = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        inner.publish(&reply).await
    }
}
