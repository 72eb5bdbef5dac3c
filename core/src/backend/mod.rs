//! Backends that live beside the in-memory bus and NATS.

#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
