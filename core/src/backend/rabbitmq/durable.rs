//! Durable streams on RabbitMQ: not yet mapped (quorum queues and streams are the plan,
//! docs/design.md §7), so every durable call is refused with `unsupported`, naming
//! the feature and the backend, rather than behaving differently from the contract.

use crate::durable::{ConsumerConfig, DurableSubscription, PublishAck, StreamConfig, StreamInfo};
use crate::envelope::Message;
use crate::error::{Error, Result};

fn unsupported<T>(feature: &str) -> Result<T> {
    Err(Error::Unsupported {
        feature: feature.to_owned(),
        backend: "rabbitmq",
    })
}

pub(crate) fn declare_stream(config: StreamConfig) -> Result<StreamInfo> {
    config.checked(0)?;
    unsupported("durable streams (declare_stream)")
}

pub(crate) fn stream_info(_name: &str) -> Result<StreamInfo> {
    unsupported("durable streams (stream_info)")
}

pub(crate) fn publish_durable(_message: &Message) -> Result<PublishAck> {
    unsupported("durable streams (publish_durable)")
}

pub(crate) fn durable_subscribe(config: ConsumerConfig) -> Result<DurableSubscription> {
    config.check()?;
    unsupported("durable streams (durable_subscribe)")
}
