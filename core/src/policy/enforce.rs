//! What a [`PolicyBus`](super::PolicyBus) does to each message: [`Shared::protect`] on
//! publish (encrypt, audit), [`Shared::on_delivery`] on receive (restrictions, masking,
//! filters, audit), the stream that applies it to a subscription, and replies sent back
//! through it.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;

use super::audit::{AuditAction, AuditEntry, AuditLog, Settling};
use super::mask::{Engine, Filter, Outcome};
use super::model::{self, ClassBits, Principal};
use crate::envelope::Message;
use crate::error::Result;
use crate::subscription::{Subscription, SubscriptionControl, SubscriptionHandle, SubscriptionStats};

#[derive(Default)]
pub(super) struct Counters {
    pub(super) published: AtomicU64,
    pub(super) encrypted: AtomicU64,
    pub(super) delivered: AtomicU64,
    pub(super) masked: AtomicU64,
    pub(super) withheld: AtomicU64,
    pub(super) denied: AtomicU64,
    pub(super) crypto_errors: AtomicU64,
    pub(super) filtered: AtomicU64,
    pub(super) inbox_skipped: AtomicU64,
}

pub(super) struct Shared {
    pub(super) engine: Engine,
    pub(super) audit: Option<Arc<AuditLog>>,
    pub(super) counters: Counters,
    /// Dead-letter prefixes in use (the default and those of durable subscriptions made
    /// here): restrictions cover `<prefix>.<restricted subject>` too.
    pub(super) dlq_prefixes: std::sync::RwLock<Vec<String>>,
}

impl Shared {
    /// Records what `entry` builds, when there is a log (nothing is built otherwise).
    pub(super) fn audit(&self, entry: impl FnOnce() -> AuditEntry) -> Result<()> {
        match &self.audit {
            Some(log) => log.record(entry()).inspect_err(|e| {
                tracing::error!(
                    code = e.code(),
                    "audit: a record could not be written; the call fails closed"
                );
            }),
            None => Ok(()),
        }
    }

    pub(super) fn names(&self, classes: ClassBits) -> Vec<String> {
        self.engine.policy.names(classes)
    }

    /// Waits until the audit records written so far are stored, for a sink that stores
    /// them asynchronously (`None`: nothing to wait for).
    pub(super) fn settled(&self) -> Option<Settling> {
        self.audit.as_ref().and_then(|log| log.settled())
    }

    pub(super) async fn settled_now(&self) -> Result<()> {
        match self.settled() {
            Some(wait) => wait.await,
            None => Ok(()),
        }
    }

    /// Encrypts what the policy classifies (when on) under `subject` (the message's own,
    /// or the subject a reply answers) and records the publish.
    pub(super) fn protect(&self, message: Message, subject: &str) -> Result<Message> {
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
    pub(super) fn on_delivery(
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
                tracing::warn!(
                    principal = name,
                    message_id = message.id(),
                    "policy: message withheld (restricted subject)"
                );
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
                tracing::warn!(
                    principal = name,
                    message_id = message.id(),
                    "policy: message withheld (cannot be masked)"
                );
                self.audit(entry(AuditAction::Withhold, classes, Vec::new(), Some(reason)))?;
                Ok(None)
            }
            Outcome::Filtered => {
                self.counters.filtered.fetch_add(1, Relaxed);
                Ok(None)
            }
            Outcome::Failed { classes, error } => {
                self.counters.crypto_errors.fetch_add(1, Relaxed);
                tracing::error!(
                    principal = name,
                    message_id = message.id(),
                    "policy: message failed to decrypt"
                );
                let detail = Some(error.to_string());
                self.audit(entry(AuditAction::CryptoError, classes, Vec::new(), detail))?;
                Err(error)
            }
        }
    }

    /// A request's reply goes through the policy too (encrypted under the request's
    /// subject, audited), not around it.
    pub(super) fn answer_through_policy(self: &Arc<Self>, message: Message) -> Message {
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
pub(super) struct PolicyStream {
    pub(super) inner: Subscription,
    pub(super) shared: Arc<Shared>,
    pub(super) principal: Principal,
    pub(super) grants: ClassBits,
    pub(super) filter: Filter,
    /// A delivery waiting for its audit records to be stored.
    pub(super) pending: Option<(Message, Settling)>,
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

pub(super) struct Control(pub(super) SubscriptionHandle);

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
