//! busbar: one event-bus client with NATS-style subjects, request/reply, and an
//! embedded in-memory bus, behind one object-safe [`EventBus`] trait.
//!
//! The semantic contract lives in docs/design.md; every language binding runs this crate.
//! Read the contract first: [`bus`] (the trait), [`subscription`], [`envelope`] (the
//! message), [`subject`], [`config`], [`error`]; then [`connect()`], which builds a backend
//! and wraps it in the [`policy`] layer when asked, and [`durable`] streams. The backends
//! and their plumbing live in `backend/` ([`memory`], `nats`, `rabbitmq`).
#![deny(missing_docs)]

// The contract.
pub mod bus;
pub mod config;
pub mod envelope;
pub mod error;
pub mod subject;
pub mod subscription;

// The factory, durable streams and the policy layer.
mod connect;
pub mod durable;
pub mod policy;

// The machinery: backends, limits, helpers.
mod backend;
pub mod bounds;
mod json_pointer;
pub mod throttle;

pub use backend::memory;
#[cfg(feature = "nats")]
pub use backend::nats;
#[cfg(feature = "rabbitmq")]
pub use backend::rabbitmq;
pub use bus::{BusStats, ConnectionEvent, EventBus};
pub use bytes::Bytes;
pub use config::{Backend, Backpressure, Config};
pub use connect::{connect, connect_from_env};
pub use durable::{
    Backoff, ConsumerConfig, DurableMessage, DurableSubscription, PublishAck, StartAt, StreamConfig,
    StreamInfo,
};
pub use envelope::{Headers, Message, MessageBuilder};
pub use error::{Error, Result};
pub use memory::InMemoryBus;
pub use subject::{matches as subject_matches, validate_pattern, validate_subject};
pub use subscription::{
    serve, MessageStream, Subscription, SubscriptionControl, SubscriptionHandle, SubscriptionStats,
};

/// The Rust tour in README.md, compiled and run as a doc test so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeTour;
