//! Classification, masking, field encryption, restricted subjects and the audit log
//! (docs/design.md §6), for every backend at once: [`PolicyBus`] wraps any
//! `Arc<dyn EventBus>` and is itself an [`EventBus`].
//!
//! - Publishing: the message's classes are its `classification` attribute plus the
//!   classes of the field rules for its subject. With encryption on, classified fields
//!   are encrypted (AES-256-GCM, key id in `keyid`) before the message leaves the process.
//! - Subscribing as a [`Principal`]: a pattern that overlaps a restricted subject needs a
//!   role the restriction names, else `forbidden`. Each delivered message is decrypted,
//!   then every classified field the principal's roles do not grant is masked (`redact`,
//!   `hash`, `partial`, `drop`). A classified payload that cannot be masked (not JSON, or
//!   classified with no field rule saying where) is withheld and counted: fail closed.
//!   A subscription can ask only for messages of some classes or with some header values.
//! - Header rules classify user headers like fields; restrictions cover requests and the
//!   dead letters of a restricted subject; reply inboxes are no subscription's; a reply
//!   is encrypted and masked under the subject it answers; a publisher's `keyid` never
//!   turns encryption off (see docs/design.md §6 for all of it and the stated limits).
//! - Every publish, delivery, mask, withhold, denial and crypto failure goes to the
//!   [`AuditLog`] when there is one. A record that cannot be written fails the publish,
//!   or turns that delivery into an error item on the subscription: fail closed.
//! - A delivered message no longer carries `keyid` once something in it was decrypted,
//!   so forwarding it publishes (and encrypts) it anew.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use busbar::policy::{Action, Policy, PolicyBus, Principal};
//! let policy = Policy::new()
//!     .class("pii")
//!     .field("/ssn", "pii", Action::Partial(4))
//!     .grant("billing", ["pii"]);
//! let bus = PolicyBus::builder(busbar::connect(busbar::Config::default()).await?)
//!     .policy(policy)
//!     .build()?;
//! let mut billing = bus.subscribe_as(&Principal::new("billing-svc", ["billing"]), "claims.>").await?;
//! let mut other = bus.subscribe_as(&Principal::new("web", ["web"]), "claims.>").await?;
//! use busbar::EventBus;
//! bus.publish("claims.new", r#"{"ssn":"123-45-6789"}"#.into()).await?;
//! assert_eq!(billing.next().await.unwrap()?.data(), r#"{"ssn":"123-45-6789"}"#);
//! assert_eq!(other.next().await.unwrap()?.data(), r#"{"ssn":"*******6789"}"#);
//! # Ok::<(), busbar::Error>(()) }).unwrap();
//! ```

pub mod audit;
pub mod crypto;
#[cfg(feature = "nats")]
mod jetstream_sink;
mod mask;
mod model;
mod scan;

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

pub use audit::{
    anchor_file, head_path, read_range, verify_file, verify_text, verify_text_with_head, AuditAction,
    AuditEntry, AuditLog, AuditRecord, AuditSink, Problem, ProblemKind, Settling, VerifyReport,
};
pub use crypto::KeyRing;
#[cfg(feature = "nats")]
pub use jetstream_sink::{JetStreamAudit, JetStreamSink};
pub use model::{Action, FieldRule, HeaderRule, Policy, Principal, Restriction, DEFAULT_REDACTION};

use crate::bus::{
    BusStats, ConnectionEvent, EventBus, Subscription, SubscriptionControl, SubscriptionHandle,
    SubscriptionStats,
};
use crate::config::{Backend, Config};
use crate::durable::{ConsumerConfig, DurableSubscription, PublishAck, StreamConfig, StreamInfo};
use crate::envelope::{Message, MessageBuilder};
use crate::error::{Error, Result};
use mask::{Engine, Filter, Outcome};
use model::{ClassBits, Compiled};

/// Counters of a [`PolicyBus`] since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyStats {
    /// Messages published through it.
    pub published: u64,
    /// Of those, messages whose fields or payload were encrypted.
    pub encrypted: u64,
    /// Messages delivered to policy subscriptions (masked or not).
    pub delivered: u64,
    /// Of those, deliveries in which at least one field was masked.
    pub masked: u64,
    /// Classified messages not delivered because they could not be masked.
    pub withheld: u64,
    /// Subscriptions refused with `forbidden`.
    pub denied: u64,
    /// Messages that failed to decrypt (delivered as a `crypto` error).
    pub crypto_errors: u64,
    /// Messages skipped because a subscription's class or header filter did not match.
    pub filtered: u64,
    /// Reply-inbox messages a wildcard subscription matched and did not receive: a reply
    /// goes to its requester only (docs/design.md §6).
    pub inbox_skipped: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    encrypted: AtomicU64,
    delivered: AtomicU64,
    masked: AtomicU64,
    withheld: AtomicU64,
    denied: AtomicU64,
    crypto_errors: AtomicU64,
    filtered: AtomicU64,
    inbox_skipped: AtomicU64,
}

struct Shared {
    engine: Engine,
    audit: Option<Arc<AuditLog>>,
    counters: Counters,
    /// Dead-letter prefixes in use (the default and those of durable subscriptions made
    /// here): restrictions cover `<prefix>.<restricted subject>` too.
    dlq_prefixes: std::sync::RwLock<Vec<String>>,
}

/// What a policy subscription asks for besides its pattern.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscribeOptions {
    /// Subscribe as a member of this queue group.
    pub queue_group: Option<String>,
    /// Receive only messages carrying at least one of these classes (empty: any message).
    pub classes: Vec<String>,
    /// Receive only messages whose user headers have all of these values.
    pub headers: Vec<(String, String)>,
}

impl SubscribeOptions {
    /// No filter, no queue group.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the queue group.
    pub fn queue_group(mut self, group: &str) -> Self {
        self.queue_group = Some(group.to_owned());
        self
    }
    /// Adds a class to receive.
    pub fn class(mut self, class: &str) -> Self {
        self.classes.push(class.to_owned());
        self
    }
    /// Adds a header value a message must carry.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Builds a [`PolicyBus`].
pub struct PolicyBusBuilder {
    inner: Arc<dyn EventBus>,
    policy: Policy,
    ring: Option<KeyRing>,
    encryption: bool,
    audit: Option<Arc<AuditLog>>,
    principal: Principal,
}

impl PolicyBusBuilder {
    /// The policy (default: empty).
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
    /// The key ring, for `hash` rules and encryption.
    pub fn key_ring(mut self, ring: KeyRing) -> Self {
        self.ring = Some(ring);
        self
    }
    /// Encrypts classified fields before publishing (needs a key ring).
    pub fn encryption(mut self, on: bool) -> Self {
        self.encryption = on;
        self
    }
    /// Where audit records go.
    pub fn audit_log(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }
    /// Who plain `subscribe`, `queue_subscribe` and `request` act as (default:
    /// [`Principal::anonymous`], which is granted nothing).
    pub fn principal(mut self, principal: Principal) -> Self {
        self.principal = principal;
        self
    }
    /// Checks the policy against the key ring and builds the bus.
    pub fn build(self) -> Result<PolicyBus> {
        let policy = Compiled::new(&self.policy)?;
        if self.ring.is_none() {
            if self.encryption {
                return Err(Error::InvalidArgument(
                    "encryption needs a key ring (key_ring / BUSBAR_KEY_RING)".into(),
                ));
            }
            if policy.has_hash {
                return Err(Error::InvalidArgument(
                    "the policy has hash rules, which need a key ring (key_ring / BUSBAR_KEY_RING)".into(),
                ));
            }
        }
        Ok(PolicyBus {
            inner: self.inner,
            principal: self.principal,
            shared: Arc::new(Shared {
                engine: Engine {
                    policy,
                    ring: self.ring,
                    encrypt: self.encryption,
                },
                audit: self.audit,
                counters: Counters::default(),
                dlq_prefixes: std::sync::RwLock::new(vec![crate::durable::DEFAULT_DLQ_PREFIX.to_owned()]),
            }),
        })
    }
}

/// An [`EventBus`] that applies a [`Policy`] around another bus (docs/design.md §6).
pub struct PolicyBus {
    inner: Arc<dyn EventBus>,
    principal: Principal,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PolicyBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyBus")
            .field("backend", &self.inner.backend())
            .field("principal", &self.principal)
            .field("encryption", &self.shared.engine.encrypt)
            .field("stats", &self.policy_stats())
            .finish_non_exhaustive()
    }
}

impl PolicyBus {
    /// Starts building a policy bus around `inner`.
    pub fn builder(inner: Arc<dyn EventBus>) -> PolicyBusBuilder {
        PolicyBusBuilder {
            inner,
            policy: Policy::default(),
            ring: None,
            encryption: false,
            audit: None,
            principal: Principal::anonymous(),
        }
    }

    /// The wrapped bus (publishing there bypasses the policy).
    pub fn inner(&self) -> &Arc<dyn EventBus> {
        &self.inner
    }

    /// The audit log, if there is one.
    pub fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.shared.audit.as_ref()
    }

    /// Counters of the policy layer.
    pub fn policy_stats(&self) -> PolicyStats {
        let c = &self.shared.counters;
        PolicyStats {
            published: c.published.load(Relaxed),
            encrypted: c.encrypted.load(Relaxed),
            delivered: c.delivered.load(Relaxed),
            masked: c.masked.load(Relaxed),
            withheld: c.withheld.load(Relaxed),
            denied: c.denied.load(Relaxed),
            crypto_errors: c.crypto_errors.load(Relaxed),
            filtered: c.filtered.load(Relaxed),
            inbox_skipped: c.inbox_skipped.load(Relaxed),
        }
    }

    /// Subscribes to `pattern` as `principal`; `forbidden` when the pattern overlaps a
    /// restricted subject and no role of the principal is allowed there.
    pub async fn subscribe_as(&self, principal: &Principal, pattern: &str) -> Result<Subscription> {
        self.subscribe_with(principal, pattern, SubscribeOptions::default())
            .await
    }

    /// [`PolicyBus::subscribe_as`] as a member of a queue group.
    pub async fn queue_subscribe_as(
        &self,
        principal: &Principal,
        pattern: &str,
        group: &str,
    ) -> Result<Subscription> {
        self.subscribe_with(principal, pattern, SubscribeOptions::default().queue_group(group))
            .await
    }

    /// Subscribes as `principal` with filters on classes and header values.
    pub async fn subscribe_with(
        &self,
        principal: &Principal,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription> {
        crate::subject::validate_pattern(pattern)?;
        self.check_subscribe(principal, pattern)?;
        let policy = &self.shared.engine.policy;
        let filter = Filter {
            classes: policy.bits_of(&options.classes)?,
            headers: options.headers,
        };
        let inner = match &options.queue_group {
            Some(group) => self.inner.queue_subscribe(pattern, group).await?,
            None => self.inner.subscribe(pattern).await?,
        };
        let handle = inner.handle();
        let stream = PolicyStream {
            inner,
            shared: self.shared.clone(),
            principal: principal.clone(),
            grants: policy.grants_of(&principal.roles),
            filter,
            pending: None,
        };
        Ok(Subscription::new(
            Box::pin(stream),
            Arc::new(Control(handle)),
            pattern,
            options.queue_group,
        ))
    }

    /// [`EventBus::durable_subscribe`] as `principal`: a `filter` overlapping a restricted
    /// subject (or its dead letters) without a granted role fails with `forbidden`; every
    /// message is masked as a plain delivery is, and one on a restricted subject the
    /// principal may not read (a dead letter counts as on its original subject), one on a
    /// reply inbox, or one the policy withholds, is withheld (recorded, and acked so it is
    /// not redelivered). A dead letter this subscription writes is the message as the
    /// stream stored it, never the principal's view.
    pub async fn durable_subscribe_as(
        &self,
        principal: &Principal,
        config: ConsumerConfig,
    ) -> Result<DurableSubscription> {
        {
            let mut prefixes = self
                .shared
                .dlq_prefixes
                .write()
                .unwrap_or_else(|p| p.into_inner());
            if !prefixes.contains(&config.dlq_prefix) {
                prefixes.push(config.dlq_prefix.clone());
            }
        }
        if let Some(filter) = &config.filter {
            crate::subject::validate_pattern(filter)?;
            self.check_subscribe(principal, filter)?;
        }
        let subscription = self.inner.durable_subscribe(config).await?;
        let shared = self.shared.clone();
        let after = self.shared.clone();
        let principal = principal.clone();
        let grants = shared.engine.policy.grants_of(&principal.roles);
        let everything = Filter::default();
        Ok(subscription.map_messages_then(
            move |message| shared.on_delivery(&principal, grants, &everything, message, None),
            move || after.settled(),
        ))
    }

    /// `forbidden` (recorded in the audit log) when `principal` may not subscribe to
    /// `pattern`: it names a reply inbox, or overlaps a restricted subject or the
    /// dead-letter subjects derived from one.
    fn check_subscribe(&self, principal: &Principal, pattern: &str) -> Result<()> {
        let policy = &self.shared.engine.policy;
        let denied = if model::is_inbox(pattern) {
            Some(format!(
                "{pattern:?} names reply inboxes ({}.>), whose replies belong to the requests waiting on them",
                model::INBOX_PREFIX
            ))
        } else {
            let prefixes = self.shared.dlq_prefixes.read().unwrap_or_else(|p| p.into_inner());
            policy
                .check_subscribe(pattern, &principal.roles, &prefixes)
                .err()
                .map(|(restricted, roles)| {
                    format!(
                        "{pattern:?} overlaps restricted subject {restricted:?}, which needs one of the roles [{}]",
                        roles.join(", ")
                    )
                })
        };
        let Some(detail) = denied else {
            return Ok(());
        };
        self.shared.counters.denied.fetch_add(1, Relaxed);
        let message = format!(
            "principal {:?} (roles [{}]) may not subscribe or request there: {detail}",
            principal.name,
            principal.roles.join(", ")
        );
        self.shared.audit(|| AuditEntry {
            action: AuditAction::Deny,
            subject: pattern.to_owned(),
            message_id: None,
            principal: principal.name.clone(),
            classes: Vec::new(),
            fields: Vec::new(),
            detail: Some(detail),
        })?;
        Err(Error::Forbidden(message))
    }

    /// [`EventBus::request_message`] as `principal`. A request on a subject the principal
    /// may not subscribe to is `forbidden`; the request is encrypted under its subject's
    /// rules, and the reply is seen through the rules and restrictions of the subject it
    /// answers (not of the inbox it arrives on); a reply the policy withholds from the
    /// principal fails with `forbidden`.
    pub async fn request_as(
        &self,
        principal: &Principal,
        message: Message,
        timeout: Duration,
    ) -> Result<Message> {
        self.check_subscribe(principal, message.subject())?;
        let subject = message.subject().to_owned();
        let message = self.shared.protect(message, &subject)?;
        self.shared.settled_now().await?;
        let reply = self.inner.request_message(message, timeout).await?;
        let grants = self.shared.engine.policy.grants_of(&principal.roles);
        let delivered =
            self.shared
                .on_delivery(principal, grants, &Filter::default(), &reply, Some(&subject));
        self.shared.settled_now().await?;
        match delivered? {
            Some(reply) => Ok(reply),
            None => Err(Error::Forbidden(format!(
                "the reply to {subject} is classified and cannot be masked for principal {:?}",
                principal.name
            ))),
        }
    }
}

impl Shared {
    /// Records what `entry` builds, when there is a log (nothing is built otherwise).
    fn audit(&self, entry: impl FnOnce() -> AuditEntry) -> Result<()> {
        match &self.audit {
            Some(log) => log.record(entry()),
            None => Ok(()),
        }
    }

    fn names(&self, classes: ClassBits) -> Vec<String> {
        self.engine.policy.names(classes)
    }

    /// Waits until the audit records written so far are stored, for a sink that stores
    /// them asynchronously (`None`: nothing to wait for).
    fn settled(&self) -> Option<Settling> {
        self.audit.as_ref().and_then(|log| log.settled())
    }

    async fn settled_now(&self) -> Result<()> {
        match self.settled() {
            Some(wait) => wait.await,
            None => Ok(()),
        }
    }

    /// Encrypts what the policy classifies (when on) under `subject` (the message's own,
    /// or the subject a reply answers) and records the publish.
    fn protect(&self, message: Message, subject: &str) -> Result<Message> {
        let protected = self.engine.protect(message, subject)?;
        let m = &protected.message;
        self.audit(|| AuditEntry {
            action: AuditAction::Publish,
            subject: m.subject().to_owned(),
            message_id: Some(m.id().to_owned()),
            principal: m.source().to_owned(),
            classes: self.names(protected.classes),
            fields: protected.encrypted.clone(),
            detail: m.keyid().map(|k| format!("encrypted with key {k}")),
        })?;
        self.counters.published.fetch_add(1, Relaxed);
        if !protected.encrypted.is_empty() {
            self.counters.encrypted.fetch_add(1, Relaxed);
        }
        Ok(protected.message)
    }

    /// What a subscriber gets: `Ok(Some)` to deliver, `Ok(None)` to skip, `Err` for a
    /// crypto failure (or an audit log that cannot be written: fail closed). `answers`
    /// is the request's subject when `message` is its reply (`None` for a subscription,
    /// which never receives reply-inbox messages).
    fn on_delivery(
        self: &Arc<Self>,
        principal: &Principal,
        grants: ClassBits,
        filter: &Filter,
        message: &Message,
        answers: Option<&str>,
    ) -> Result<Option<Message>> {
        let name = principal.name.as_str();
        let entry = |action, classes, fields, detail| {
            move || AuditEntry {
                action,
                subject: message.subject().to_owned(),
                message_id: Some(message.id().to_owned()),
                principal: name.to_owned(),
                classes: self.names(classes),
                fields,
                detail,
            }
        };
        if answers.is_none() && model::is_inbox(message.subject()) {
            self.counters.inbox_skipped.fetch_add(1, Relaxed);
            return Ok(None);
        }
        let policy = &self.engine.policy;
        if !policy.restricted.is_empty() {
            let origin = message.header(crate::durable::DLQ_SUBJECT);
            let restricted = [Some(message.subject()), origin, answers]
                .into_iter()
                .flatten()
                .find_map(|s| policy.restricted_for(s, &principal.roles).map(|r| (s, r)));
            if let Some((subject, (pattern, _))) = restricted {
                self.counters.withheld.fetch_add(1, Relaxed);
                let detail = format!(
                    "{subject:?} is restricted ({pattern:?}) and the principal holds no role allowed there"
                );
                self.audit(entry(AuditAction::Withhold, 0, Vec::new(), Some(detail)))?;
                return Ok(None);
            }
        }
        let subject = answers.unwrap_or(message.subject());
        match self.engine.deliver(grants, filter, message, subject) {
            Outcome::Deliver {
                message: delivered,
                classes,
                masked,
                masked_classes,
            } => {
                if !masked.is_empty() {
                    self.counters.masked.fetch_add(1, Relaxed);
                    self.audit(entry(AuditAction::Mask, masked_classes, masked, None))?;
                }
                self.audit(entry(AuditAction::Deliver, classes, Vec::new(), None))?;
                self.counters.delivered.fetch_add(1, Relaxed);
                Ok(Some(self.answer_through_policy(delivered)))
            }
            Outcome::Withhold { classes, reason } => {
                self.counters.withheld.fetch_add(1, Relaxed);
                self.audit(entry(AuditAction::Withhold, classes, Vec::new(), Some(reason)))?;
                Ok(None)
            }
            Outcome::Filtered => {
                self.counters.filtered.fetch_add(1, Relaxed);
                Ok(None)
            }
            Outcome::Failed { classes, error } => {
                self.counters.crypto_errors.fetch_add(1, Relaxed);
                let detail = Some(error.to_string());
                self.audit(entry(AuditAction::CryptoError, classes, Vec::new(), detail))?;
                Err(error)
            }
        }
    }

    /// A request's reply goes through the policy too (encrypted under the request's
    /// subject, audited), not around it.
    fn answer_through_policy(self: &Arc<Self>, message: Message) -> Message {
        match (message.reply_to(), message.replier()) {
            (Some(_), Some(inner)) => {
                let answers = message.subject().to_owned();
                message.with_replier(Arc::new(PolicyReplier {
                    shared: self.clone(),
                    inner,
                    answers,
                }))
            }
            _ => message,
        }
    }
}

/// Sends replies through [`Shared::protect`] under the subject of the request they answer.
struct PolicyReplier {
    shared: Arc<Shared>,
    inner: Arc<dyn crate::envelope::Replier>,
    answers: String,
}

#[async_trait::async_trait]
impl crate::envelope::Replier for PolicyReplier {
    async fn send_reply(&self, reply: Message) -> Result<()> {
        let reply = self.shared.protect(reply, &self.answers)?;
        self.shared.settled_now().await?;
        self.inner.send_reply(reply).await
    }
}

/// A subscription's messages passed through the policy for one principal.
struct PolicyStream {
    inner: Subscription,
    shared: Arc<Shared>,
    principal: Principal,
    grants: ClassBits,
    filter: Filter,
    /// A delivery waiting for its audit records to be stored.
    pending: Option<(Message, Settling)>,
}

impl Stream for PolicyStream {
    type Item = Result<Message>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((_, wait)) = &mut this.pending {
                let settled = std::task::ready!(wait.as_mut().poll(cx));
                let (message, _) = this.pending.take().expect("pending just polled");
                return Poll::Ready(Some(settled.map(|()| message)));
            }
            let message = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(Some(Ok(m))) => m,
            };
            match this
                .shared
                .on_delivery(&this.principal, this.grants, &this.filter, &message, None)
            {
                Ok(Some(m)) => match this.shared.settled() {
                    None => return Poll::Ready(Some(Ok(m))),
                    Some(wait) => this.pending = Some((m, wait)),
                },
                Ok(None) => continue,
                Err(e) => return Poll::Ready(Some(Err(e))),
            }
        }
    }
}

struct Control(SubscriptionHandle);

#[async_trait::async_trait]
impl SubscriptionControl for Control {
    async fn unsubscribe(&self) -> Result<()> {
        self.0.unsubscribe().await
    }
    async fn drain(&self) -> Result<()> {
        self.0.drain().await
    }
    fn stats(&self) -> SubscriptionStats {
        self.0.stats()
    }
}

#[async_trait::async_trait]
impl EventBus for PolicyBus {
    async fn publish_message(&self, message: Message) -> Result<()> {
        let subject = message.subject().to_owned();
        let message = self.shared.protect(message, &subject)?;
        self.shared.settled_now().await?;
        self.inner.publish_message(message).await
    }

    /// Subscribes as the bus's principal (see [`PolicyBusBuilder::principal`]).
    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.subscribe_as(&self.principal, pattern).await
    }

    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription> {
        self.queue_subscribe_as(&self.principal, pattern, group).await
    }

    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message> {
        self.request_as(&self.principal, message, timeout).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.declare_stream(config).await
    }

    async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        self.inner.stream_info(name).await
    }

    /// Encrypts what the policy classifies (when on) and records the publish, as `publish`.
    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        let subject = message.subject().to_owned();
        let message = self.shared.protect(message, &subject)?;
        self.shared.settled_now().await?;
        self.inner.publish_durable(message).await
    }

    /// Reads as the bus's principal (see [`PolicyBus::durable_subscribe_as`]).
    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription> {
        self.durable_subscribe_as(&self.principal, config).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    fn message(&self, subject: &str) -> MessageBuilder {
        self.inner.message(subject)
    }

    fn stats(&self) -> BusStats {
        self.inner.stats()
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn connection_events(&self) -> Option<tokio::sync::broadcast::Receiver<ConnectionEvent>> {
        self.inner.connection_events()
    }
}

/// Whether `config` asks for the policy layer (a policy, a key ring, encryption or an
/// audit log).
pub fn configured(config: &Config) -> bool {
    config.encryption
        || config.policy.is_some()
        || config.key_ring.is_some()
        || config.audit_log.is_some()
        || config.principal.is_some()
        || !config.roles.is_empty()
}

/// Wraps `inner` in the policy layer that `config` describes: the policy file
/// (`policy`), the key ring file (`key_ring`), `encryption`, and the audit log file
/// (`audit_log`, keyed with the ring when there is one), acting as `principal` with `roles`.
pub fn from_config(inner: Arc<dyn EventBus>, config: &Config) -> Result<PolicyBus> {
    let policy = match &config.policy {
        Some(path) => Policy::from_file(path)?,
        None => Policy::default(),
    };
    let ring = config.key_ring.as_deref().map(KeyRing::from_file).transpose()?;
    let audit = match &config.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path, ring.as_ref())?)),
        None => None,
    };
    let mut builder = PolicyBus::builder(inner)
        .policy(policy)
        .encryption(config.encryption);
    if let Some(ring) = ring {
        builder = builder.key_ring(ring);
    }
    if let Some(audit) = audit {
        builder = builder.audit_log(audit);
    }
    if config.principal.is_some() || !config.roles.is_empty() {
        let name = config.principal.as_deref().unwrap_or("anonymous");
        builder = builder.principal(Principal::new(name, config.roles.iter().map(String::as_str)));
    }
    builder.build()
}

/// Connects the backend of `config` and wraps it in its policy layer; use this (rather
/// than [`crate::connect`]) for [`PolicyBus::subscribe_as`].
pub async fn connect(config: Config) -> Result<PolicyBus> {
    let mut plain = config.clone();
    plain.encryption = false;
    plain.policy = None;
    plain.key_ring = None;
    plain.audit_log = None;
    plain.principal = None;
    plain.roles = Vec::new();
    let inner = crate::connect(plain).await?;
    from_config(inner, &config)
}
