//! [`PolicyBus`]: an [`EventBus`] that applies a [`Policy`] around another bus, its
//! builder, its counters and the options of a policy subscription.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::audit::{AuditAction, AuditEntry, AuditLog};
use super::crypto::KeyRing;
use super::enforce::{Control, Counters, PolicyStream, Shared};
use super::mask::{Engine, Filter};
use super::model::{self, Compiled, Policy, Principal};
use crate::bus::{BusStats, ConnectionEvent, EventBus};
use crate::config::Backend;
use crate::durable::{
    ConsumerConfig, ConsumerInfo, DurableSubscription, PublishAck, StreamConfig, StreamInfo,
};
use crate::envelope::{Message, MessageBuilder};
use crate::error::{Error, Result};
use crate::metrics::{Health, Scrape};
use crate::subscription::Subscription;

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

    /// [`EventBus::delete_stream`] as `principal`: who may read everything a stream holds
    /// may delete it, so each of its subject patterns is checked as a subscription would
    /// be (`forbidden`, recorded, when one overlaps a restricted subject without a granted
    /// role). The deletion is recorded in the audit log with the principal.
    pub async fn delete_stream_as(&self, principal: &Principal, name: &str) -> Result<()> {
        let info = self.inner.stream_info(name).await?;
        for subject in &info.subjects {
            self.check_subscribe(principal, subject)?;
        }
        self.inner.delete_stream(name).await?;
        self.record_delete(principal, info.subjects.join(" "), format!("stream {name:?}"))
            .await
    }

    /// [`EventBus::delete_consumer`] as `principal`: allowed to whoever may read what the
    /// consumer reads (its filter, or every subject of its stream), recorded as
    /// [`PolicyBus::delete_stream_as`] is.
    pub async fn delete_consumer_as(&self, principal: &Principal, stream: &str, name: &str) -> Result<()> {
        let consumer = self.inner.consumer_info(stream, name).await?;
        let patterns = match consumer.filter {
            Some(filter) => vec![filter],
            None => self.inner.stream_info(stream).await?.subjects,
        };
        for pattern in &patterns {
            self.check_subscribe(principal, pattern)?;
        }
        self.inner.delete_consumer(stream, name).await?;
        let what = format!("consumer {name:?} of stream {stream:?}");
        self.record_delete(principal, patterns.join(" "), what).await
    }

    async fn record_delete(&self, principal: &Principal, subject: String, what: String) -> Result<()> {
        self.shared.audit(|| AuditEntry {
            action: AuditAction::Delete,
            subject,
            message_id: None,
            principal: principal.name.clone(),
            classes: Vec::new(),
            fields: Vec::new(),
            detail: Some(format!("deleted {what}")),
        })?;
        self.shared.settled_now().await
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
        tracing::warn!(principal = %principal.name, pattern, "policy: subscribe or request denied (forbidden)");
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

    /// Names, subject patterns and counts are not protected (docs/design.md §6): passed on.
    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.inner.list_streams().await
    }

    /// As the bus's principal (see [`PolicyBus::delete_stream_as`]).
    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.delete_stream_as(&self.principal, name).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.inner.list_consumers(stream).await
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo> {
        self.inner.consumer_info(stream, name).await
    }

    /// As the bus's principal (see [`PolicyBus::delete_consumer_as`]).
    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        self.delete_consumer_as(&self.principal, stream, name).await
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

    fn health(&self) -> Health {
        self.inner.health()
    }

    /// The inner bus's series, then the policy layer's counters.
    fn collect_metrics(&self, scrape: &mut Scrape) {
        self.inner.collect_metrics(scrape);
        let s = self.policy_stats();
        let policy = [
            (
                "busbar_policy_published",
                "Messages published through the policy layer.",
                s.published,
            ),
            (
                "busbar_policy_encrypted",
                "Of those, messages whose fields or payload were encrypted.",
                s.encrypted,
            ),
            (
                "busbar_policy_delivered",
                "Messages delivered to policy subscriptions (masked or not).",
                s.delivered,
            ),
            (
                "busbar_policy_masked",
                "Deliveries in which at least one field was masked.",
                s.masked,
            ),
            (
                "busbar_policy_withheld",
                "Classified messages withheld because they could not be masked.",
                s.withheld,
            ),
            (
                "busbar_policy_denied",
                "Subscriptions and requests refused with forbidden.",
                s.denied,
            ),
            (
                "busbar_policy_crypto_errors",
                "Messages that failed to decrypt (delivered as a crypto error).",
                s.crypto_errors,
            ),
            (
                "busbar_policy_filtered",
                "Messages skipped by a subscription's class or header filter.",
                s.filtered,
            ),
            (
                "busbar_policy_inbox_skipped",
                "Reply-inbox messages a wildcard subscription did not receive.",
                s.inbox_skipped,
            ),
        ];
        for (name, help, value) in policy {
            scrape.counter(name, help, value);
        }
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn connection_events(&self) -> Option<tokio::sync::broadcast::Receiver<ConnectionEvent>> {
        self.inner.connection_events()
    }
}
