//! Buses on the shared RabbitMQ broker (`BUSBAR_TEST_AMQP_URL`, default the local
//! `guest` account), each test on a topic exchange of its own: the exchange is
//! auto-deleted once its last bus disconnects, so overlapping runs never see each other
//! and leave nothing behind. A file includes it with
//! `#[path = "support/rabbitmq.rs"] mod rabbitmq;`.
#![allow(dead_code)]

use std::sync::Arc;

use busbar::{Backend, Config, EventBus};

/// The broker the tests use.
pub fn url() -> String {
    std::env::var("BUSBAR_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A fresh exchange name for one test.
pub fn exchange() -> String {
    format!("busbar.test.{}", uuid::Uuid::new_v4().simple())
}

/// `config` pointed at the test broker on exchange `exchange`.
pub fn config(config: Config, exchange: &str) -> Config {
    config
        .with_backend(Backend::RabbitMq)
        .with_amqp_url(url())
        .with_amqp_exchange(exchange)
}

/// A RabbitMQ bus with `config` on an exchange of its own.
pub async fn bus(config: Config) -> Arc<dyn EventBus> {
    connect(config, &exchange()).await
}

/// A RabbitMQ bus with `config` on `exchange` (shared by the buses of one test).
pub async fn connect(config: Config, exchange: &str) -> Arc<dyn EventBus> {
    busbar::connect(self::config(config, exchange))
        .await
        .unwrap_or_else(|e| panic!("connecting to RabbitMQ at {}: {e}", url()))
}
