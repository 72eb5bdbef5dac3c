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
//!
//! `bus.rs` holds [`PolicyBus`] and its builder, `enforce.rs` what it does to each
//! publish and delivery, `model.rs` the policy, `mask.rs` and `scan.rs` the masking of
//! payloads, `crypto.rs` the key ring, `audit.rs` the audit log.

pub mod audit;
mod bus;
pub mod crypto;
mod enforce;
#[cfg(feature = "nats")]
mod jetstream_sink;
mod mask;
mod model;
mod scan;

use std::sync::Arc;

pub use audit::{
    anchor_file, head_path, read_range, verify_file, verify_text, verify_text_with_head, AuditAction,
    AuditEntry, AuditLog, AuditRecord, AuditSink, Problem, ProblemKind, Settling, VerifyReport,
};
pub use bus::{PolicyBus, PolicyBusBuilder, PolicyStats, SubscribeOptions};
pub use crypto::KeyRing;
#[cfg(feature = "nats")]
pub use jetstream_sink::{JetStreamAudit, JetStreamSink};
pub use model::{Action, FieldRule, HeaderRule, Policy, Principal, Restriction, DEFAULT_REDACTION};

use crate::bus::EventBus;
use crate::config::Config;
use crate::error::Result;

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
    config.check()?;
    let inner = crate::backend::connect(&config).await?;
    from_config(inner, &config)
}
