//! Durable streams (docs/design.md §4): at-least-once delivery with ack, nak, term and
//! in-progress, exponential backoff, dead-lettering after `max_deliver` attempts,
//! deduplication by message id, and replay from a sequence or a time.
//!
//! The policy (when to back off, when and how to dead-letter, how fast to replay) lives
//! here, once; each backend only stores messages and tracks deliveries: JetStream on
//! NATS ([`crate::nats`]), an in-memory log on [`crate::InMemoryBus`]. `config.rs` holds the
//! settings and their defaults, `message.rs` what a subscriber settles.
//!
//! Delivery is at-least-once: a handler may see a message again (after a crash, a
//! timeout or a lost ack), so handlers must be idempotent.
//!
//! `attempt` counts deliveries to the client. On NATS a subscription pulls up to 64
//! messages ahead of its handler, so after a crash those pulled messages count one
//! attempt even if the handler never saw them; their `ack_wait` clock starts when pulled.

mod config;
mod control;
mod message;
pub mod options;

pub use crate::envelope::{DLQ_ATTEMPTS, DLQ_CONSUMER, DLQ_REASON, DLQ_SEQUENCE, DLQ_STREAM, DLQ_SUBJECT};
pub(crate) use config::validate_name;
pub(crate) use config::{
    count_pending, dead_letter_stream, lost_consumer, no_stream, no_such_consumer, no_such_stream,
};
pub use config::{
    Backoff, ConsumerConfig, ConsumerInfo, PublishAck, StartAt, StreamConfig, StreamInfo, DEFAULT_ACK_WAIT,
    DEFAULT_DLQ_PREFIX, DEFAULT_DUPLICATE_WINDOW, DEFAULT_MAX_ACK_PENDING, DEFAULT_MAX_DELIVER,
    LOST_CONSUMER_NOTICE,
};
pub use control::{DurableHandle, DurableStats};
pub(crate) use message::{Delivery, DurablePublish, Settle};
pub use message::{DurableMessage, DurableSubscription};
pub use options::{ConsumerOptions, StreamOptions};
