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
pub mod batch;
pub mod bus;
pub mod config;
pub mod envelope;
pub mod error;
pub mod json_text;
pub mod logging;
pub mod metrics;
#[cfg(feature = "otel")]
pub mod otel;
#[cfg(feature = "otel")]
mod otel_context;
pub mod publish;
pub mod subject;
pub mod subscription;

// The factory, durable streams and the policy layer.
mod connect;
pub mod durable;
pub mod policy;
pub mod resilience;
pub mod service;

// The machinery: backends, limits, helpers.
mod backend;
mod backoff;
pub mod bounds;
#[cfg(feature = "metrics-endpoint")]
pub mod endpoint;
mod json_pointer;
pub mod rate;
pub mod throttle;

#[cfg(feature = "kafka")]
pub use backend::kafka;
pub use backend::memory;
#[cfg(feature = "nats")]
pub use backend::nats;
#[cfg(feature = "rabbitmq")]
pub use backend::rabbitmq;
pub use batch::Batches;
pub use bus::{collect_common, next_connection_event, publish_batch, BusStats, ConnectionEvent, EventBus};
pub use bytes::Bytes;
pub use config::{Backend, Backpressure, Config, ConfigValue, Overflow, PartitionBy};
pub use connect::{connect, connect_from_env, connect_parts, Connected};
pub use durable::{
    Backoff, ConsumerConfig, ConsumerInfo, ConsumerOptions, DurableHandle, DurableMessage, DurableStats,
    DurableSubscription, PublishAck, StartAt, StreamConfig, StreamInfo, StreamOptions,
};
pub use envelope::{Headers, Message, MessageBuilder};
pub use error::{Error, Result};
pub use logging::{set_log_sink, LogLevel, LogSink};
pub use memory::InMemoryBus;
pub use metrics::{ConnectionState, Health, Scrape};
pub use publish::{Payload, PublishOptions};
pub use subject::{matches as subject_matches, validate_pattern, validate_subject};
pub use subscription::{
    serve, MessageStream, Subscription, SubscriptionControl, SubscriptionHandle, SubscriptionStats,
};

/// busbar's version (`major.minor.patch`): the same in every language (`busbar.__version__`,
/// `require('busbar-sdk').version`, `busbar_version()` in C), as the crate was built.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

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
    #[doc = include_str!("../../docs/guide/observability.md")]
    struct GuideObservability;
}
