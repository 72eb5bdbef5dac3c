//! busbar: one event-bus client with NATS-style subjects, request/reply, and an
//! embedded in-memory bus, behind one object-safe [`EventBus`] trait.
//!
//! The semantic contract lives in docs/design.md; every language binding runs this crate.
#![deny(missing_docs)]

pub mod bounds;
pub mod bus;
pub mod config;
pub mod durable;
pub mod envelope;
pub mod error;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
pub mod policy;
mod queue;
mod reply;
pub mod subject;
pub mod throttle;

pub use bus::{
    connect, connect_from_env, serve, BusStats, ConnectionEvent, EventBus, MessageStream, Subscription,
    SubscriptionControl, SubscriptionHandle, SubscriptionStats,
};
pub use bytes::Bytes;
pub use config::{Backend, Backpressure, Config};
pub use durable::{
    Backoff, ConsumerConfig, DurableMessage, DurableSubscription, PublishAck, StartAt, StreamConfig,
    StreamInfo,
};
pub use envelope::{Headers, Message, MessageBuilder};
pub use error::{Error, Result};
pub use memory::InMemoryBus;
pub use subject::{matches as subject_matches, validate_pattern, validate_subject};

/// The Rust blocks of the docs, compiled and run as doc tests so they stay true:
/// the Rust tour (core/README.md), the front page's example and the guide's pages.
/// `scripts/check-snippets.py` fails when a Markdown file with Rust blocks is missing here.
#[cfg(doctest)]
mod doc_snippets {
    #[doc = include_str!("../README.md")]
    struct RustTour;
    #[doc = include_str!("../../README.md")]
    struct FrontPage;
    #[doc = include_str!("../../docs/guide/subjects.md")]
    struct GuideSubjects;
    #[doc = include_str!("../../docs/guide/delivery.md")]
    struct GuideDelivery;
    #[doc = include_str!("../../docs/guide/request-reply.md")]
    struct GuideRequestReply;
    #[doc = include_str!("../../docs/guide/durable-streams.md")]
    struct GuideDurableStreams;
    #[doc = include_str!("../../docs/guide/policy.md")]
    struct GuidePolicy;
    #[doc = include_str!("../../docs/guide/configuration.md")]
    struct GuideConfiguration;
}
