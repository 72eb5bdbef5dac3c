//! The backends and their plumbing: the in-memory bus (with its durable log), NATS and
//! JetStream, RabbitMQ, Kafka, the subscription queue and the reply inbox they share, and [`connect`],
//! which builds the raw backend a [`Config`] names (no policy layer: see
//! [`crate::connect`]).

use std::sync::Arc;

use crate::bus::EventBus;
use crate::config::{Backend, Config};
#[cfg(not(all(feature = "nats", feature = "rabbitmq", feature = "kafka")))]
use crate::error::Error;
use crate::error::Result;

pub(crate) mod counters;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(any(feature = "nats", feature = "rabbitmq", feature = "kafka"))]
pub(crate) mod pumped;
pub(crate) mod queue;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
pub(crate) mod reply;

/// The backend `config.backend` names, built from `config` as it is (the policy fields are
/// not its business; the caller wraps the result). `config` is checked by the caller.
pub(crate) async fn connect(config: &Config) -> Result<Arc<dyn EventBus>> {
    match config.backend {
        Backend::Memory => Ok(Arc::new(memory::InMemoryBus::new(config.clone())?)),
        #[cfg(feature = "nats")]
        Backend::Nats => Ok(Arc::new(nats::NatsBus::connect(config.clone()).await?)),
        #[cfg(not(feature = "nats"))]
        Backend::Nats => Err(Error::Backend {
            message: format!(
                "backend \"nats\" (nats_url {}) needs busbar built with the \"nats\" feature; use backend \"memory\"",
                config.nats_url
            ),
            source: None,
        }),
        #[cfg(feature = "rabbitmq")]
        Backend::RabbitMq => Ok(Arc::new(rabbitmq::RabbitBus::connect(config.clone()).await?)),
        #[cfg(not(feature = "rabbitmq"))]
        Backend::RabbitMq => Err(Error::Backend {
            message: "backend \"rabbitmq\" needs busbar built with the \"rabbitmq\" feature; use backend \"memory\"".into(),
            source: None,
        }),
        #[cfg(feature = "kafka")]
        Backend::Kafka => Ok(Arc::new(kafka::KafkaBus::connect(config.clone()).await?)),
        #[cfg(not(feature = "kafka"))]
        Backend::Kafka => Err(Error::Backend {
            message: "backend \"kafka\" needs busbar built with the \"kafka\" feature; use backend \"memory\"".into(),
            source: None,
        }),
    }
}
