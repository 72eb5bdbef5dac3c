//! Buses on the shared RabbitMQ broker (`BUSBAR_TEST_AMQP_URL`, default the local
//! `guest` account), each test on a topic exchange of its own: the exchange is
//! auto-deleted once its last bus disconnects, so overlapping runs never see each other
//! and leave nothing behind. A file includes it with
//! `#[path = "support/rabbitmq.rs"] mod rabbitmq;`.
#![allow(dead_code)]

use std::sync::Arc;

use busbar::{Backend, Config, EventBus};
use lapin::options::*;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};

/// The broker the tests use.
pub(crate) fn url() -> String {
    std::env::var("BUSBAR_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A fresh exchange name for one test.
pub(crate) fn exchange() -> String {
    format!("busbar.test.{}", uuid::Uuid::new_v4().simple())
}

/// `config` pointed at the test broker on exchange `exchange`.
pub(crate) fn config(config: Config, exchange: &str) -> Config {
    config
        .with_backend(Backend::RabbitMq)
        .with_amqp_url(url())
        .with_amqp_exchange(exchange)
}

/// A RabbitMQ bus with `config` on an exchange of its own.
pub(crate) async fn bus(config: Config) -> Arc<dyn EventBus> {
    connect(config, &exchange()).await
}

/// A RabbitMQ bus with `config` on `exchange` (shared by the buses of one test).
pub(crate) async fn connect(config: Config, exchange: &str) -> Arc<dyn EventBus> {
    busbar::connect(self::config(config, exchange))
        .await
        .unwrap_or_else(|e| panic!("connecting to RabbitMQ at {}: {e}", url()))
}

/// Deletes the durable journal of exchange `.0` (a RabbitMQ stream, which outlives its
/// buses) when dropped, from a thread of its own: the test's runtime may be ending.
pub(crate) struct Journal(pub(crate) String);

impl Drop for Journal {
    fn drop(&mut self) {
        let queue = format!("{}.journal", self.0);
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let conn = connection().await;
                let channel = conn.create_channel().await.unwrap();
                // Absent when the test used no durable call: the channel closes, nothing more.
                let _ = channel
                    .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await;
                let _ = conn.close(200, "cleaned up".into()).await;
            });
        })
        .join();
    }
}

// A plain AMQP client (lapin, no busbar): what interop tests, the wire recorder of the
// policy tests and the benchmark use.

/// A plain AMQP connection to the test broker.
pub(crate) async fn connection() -> Connection {
    Connection::connect(&url(), ConnectionProperties::default())
        .await
        .expect("plain AMQP connection")
}

/// A plain AMQP client on the test broker, and a channel in confirm mode.
pub(crate) async fn plain() -> (Connection, Channel) {
    let conn = connection().await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    (conn, channel)
}

/// Declares topic exchange `exchange` as busbar does (durable, auto-deleted).
pub(crate) async fn declare_exchange(channel: &Channel, exchange: &str) {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
}

/// An exclusive queue of the plain client bound to `exchange` under `key`.
pub(crate) async fn bound_queue(channel: &Channel, exchange: &str, key: &str) -> ShortString {
    let q = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            q.name().clone(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    q.name().clone()
}

/// A no-ack consumer of the plain client on `queue`.
pub(crate) async fn consume(channel: &Channel, queue: ShortString) -> lapin::Consumer {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let tag = format!("plain.{}", uuid::Uuid::new_v4().simple());
    channel
        .basic_consume(queue, tag.as_str().into(), options, FieldTable::default())
        .await
        .unwrap()
}

/// Publishes `data` as a plain client (mandatory) and waits for the broker's confirm.
pub(crate) async fn send(
    channel: &Channel,
    exchange: &str,
    key: &str,
    data: &[u8],
    props: BasicProperties,
) -> Confirmation {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    channel
        .basic_publish(exchange.into(), key.into(), options, data, props)
        .await
        .unwrap()
        .await
        .unwrap()
}
