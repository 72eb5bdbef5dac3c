//! One configuration shape for every language (docs/design.md §8), built in code or read
//! from `BUSBAR_*` environment variables. Every binding funnels its options through
//! [`Config::set`], so a key means the same thing everywhere.

use std::fmt;
use std::str::FromStr;

use crate::bounds;
use crate::error::{Error, Result};
pub use crate::rate::Rate;

/// Which backend [`crate::connect`] builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The embedded in-memory bus: no server, deterministic.
    #[default]
    Memory,
    /// A NATS server (with JetStream for durable streams).
    Nats,
    /// A RabbitMQ broker over AMQP 0-9-1 (a topic exchange per bus).
    RabbitMq,
    /// A Kafka-protocol broker (Apache Kafka, Redpanda, tansu): a topic per bus.
    Kafka,
}

/// How a Kafka bus spreads its records over the partitions of its topic (docs/design.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PartitionBy {
    /// Every record of one bus goes to one partition (picked at random when it connects):
    /// each subscriber gets one publisher's messages in the order they were published,
    /// as on NATS; a queue group spreads over publishers.
    #[default]
    Publisher,
    /// The record key (the subject) picks the partition: one subject's messages keep
    /// their order, messages on different subjects may be read in another order, and a
    /// queue group spreads over subjects.
    Subject,
}

impl FromStr for PartitionBy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose(
            "kafka_partition_by",
            s,
            &[
                ("publisher", PartitionBy::Publisher),
                ("subject", PartitionBy::Subject),
            ],
        )
    }
}

/// What a publisher does when a subscription's buffer is full (docs/design.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// The publisher waits until the subscriber makes room: nothing is lost.
    #[default]
    Block,
    /// The message is not queued for that subscriber; it is marked lagging, the
    /// loss is counted, and its stream yields [`Error::Lagged`] with the count.
    Lag,
}

/// Settings of a bus. Build with [`Config::default`] and the `with_*` methods,
/// from key/value pairs with [`Config::set`], or from the environment.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// `backend` / `BUSBAR_BACKEND`: `memory` (default), `nats`, `rabbitmq` or `kafka`.
    pub backend: Backend,
    /// `nats_url` / `BUSBAR_NATS_URL`: where the NATS backend connects (one URL, or several
    /// separated by commas). A user and password or a token inside it are never printed:
    /// `Debug` and error messages show it through [`redact_url`].
    pub nats_url: String,
    /// `amqp_url` / `BUSBAR_AMQP_URL`: where the RabbitMQ backend connects
    /// (`amqp://user:password@host:port/vhost`, `amqps://` for TLS). The password is never
    /// printed: `Debug` and error messages show it through [`redact_url`].
    pub amqp_url: String,
    /// `amqp_exchange` / `BUSBAR_AMQP_EXCHANGE`: the topic exchange the RabbitMQ backend
    /// publishes to and binds subscriptions on (default `busbar`); buses on one exchange
    /// see each other's messages, as clients of one NATS server do.
    pub amqp_exchange: String,
    /// `max_payload` / `BUSBAR_MAX_PAYLOAD`: largest payload accepted, in bytes.
    pub max_payload: usize,
    /// `subscription_capacity` / `BUSBAR_SUBSCRIPTION_CAPACITY`: messages buffered per subscription.
    pub subscription_capacity: usize,
    /// `subscription_max_bytes` / `BUSBAR_SUBSCRIPTION_MAX_BYTES`: bytes (payloads and
    /// user headers) buffered per subscription; one larger message fits an empty buffer.
    pub subscription_max_bytes: usize,
    /// `backpressure` / `BUSBAR_BACKPRESSURE`: `block` (default) or `lag`.
    pub backpressure: Backpressure,
    /// `source` / `BUSBAR_SOURCE`: CloudEvents `source` of the events this bus publishes.
    pub source: String,
    /// `nats_user` / `BUSBAR_NATS_USER`: user name (with `nats_password`).
    pub nats_user: Option<String>,
    /// `nats_password` / `BUSBAR_NATS_PASSWORD`: password (with `nats_user`).
    pub nats_password: Option<String>,
    /// `nats_token` / `BUSBAR_NATS_TOKEN`: authentication token.
    pub nats_token: Option<String>,
    /// `nats_credentials` / `BUSBAR_NATS_CREDENTIALS`: path of a `.creds` file (JWT + NKey).
    pub nats_credentials: Option<String>,
    /// `nats_tls_ca` / `BUSBAR_NATS_TLS_CA`: PEM file of root certificates to trust.
    pub nats_tls_ca: Option<String>,
    /// `nats_tls_cert` / `BUSBAR_NATS_TLS_CERT`: client certificate (PEM, with `nats_tls_key`).
    pub nats_tls_cert: Option<String>,
    /// `nats_tls_key` / `BUSBAR_NATS_TLS_KEY`: client key (PEM, with `nats_tls_cert`).
    pub nats_tls_key: Option<String>,
    /// `nats_require_tls` / `BUSBAR_NATS_REQUIRE_TLS`: refuse a connection without TLS.
    pub nats_require_tls: bool,
    /// `amqp_user` / `BUSBAR_AMQP_USER`: RabbitMQ user name (with `amqp_password`), when
    /// `amqp_url` carries none.
    pub amqp_user: Option<String>,
    /// `amqp_password` / `BUSBAR_AMQP_PASSWORD`: RabbitMQ password (with `amqp_user`).
    pub amqp_password: Option<String>,
    /// `amqp_tls_ca` / `BUSBAR_AMQP_TLS_CA`: PEM file of root certificates to trust for
    /// `amqps://` (besides the system's).
    pub amqp_tls_ca: Option<String>,
    /// `amqp_tls_cert` / `BUSBAR_AMQP_TLS_CERT`: client certificate (PEM, with `amqp_tls_key`).
    pub amqp_tls_cert: Option<String>,
    /// `amqp_tls_key` / `BUSBAR_AMQP_TLS_KEY`: client key (PKCS#8 PEM, with `amqp_tls_cert`).
    pub amqp_tls_key: Option<String>,
    /// `amqp_require_tls` / `BUSBAR_AMQP_REQUIRE_TLS`: refuse an `amqp_url` without TLS
    /// (`amqp://` rather than `amqps://`).
    pub amqp_require_tls: bool,
    /// `kafka_brokers` / `BUSBAR_KAFKA_BROKERS`: the Kafka backend's bootstrap brokers,
    /// `host:port` separated by commas (default `127.0.0.1:9092`).
    pub kafka_brokers: String,
    /// `kafka_topic` / `BUSBAR_KAFKA_TOPIC`: the topic every subject of a Kafka bus is a
    /// record on (default `busbar`); buses on one topic see each other's messages.
    pub kafka_topic: String,
    /// `kafka_partitions` / `BUSBAR_KAFKA_PARTITIONS`: partitions of `kafka_topic` when the
    /// bus creates it (default 8): a queue group spreads over at most that many members.
    pub kafka_partitions: u32,
    /// `kafka_partition_by` / `BUSBAR_KAFKA_PARTITION_BY`: `publisher` (default: one
    /// publisher's messages keep their order, as on NATS) or `subject` (one subject's
    /// messages keep theirs, and a queue group spreads over subjects).
    pub kafka_partition_by: PartitionBy,
    /// `kafka_security_protocol` / `BUSBAR_KAFKA_SECURITY_PROTOCOL`: `plaintext` (default),
    /// `ssl`, `sasl_plaintext` or `sasl_ssl` (TLS needs busbar built with `kafka-tls`).
    pub kafka_security_protocol: String,
    /// `kafka_sasl_mechanism` / `BUSBAR_KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512` (SCRAM needs `kafka-tls`), with `kafka_user` and `kafka_password`.
    pub kafka_sasl_mechanism: Option<String>,
    /// `kafka_user` / `BUSBAR_KAFKA_USER`: SASL user name.
    pub kafka_user: Option<String>,
    /// `kafka_password` / `BUSBAR_KAFKA_PASSWORD`: SASL password (never printed).
    pub kafka_password: Option<String>,
    /// `kafka_tls_ca` / `BUSBAR_KAFKA_TLS_CA`: PEM file of root certificates to trust.
    pub kafka_tls_ca: Option<String>,
    /// `publish_timeout_ms` / `BUSBAR_PUBLISH_TIMEOUT_MS`: longest wait of a publish (and of
    /// `flush`) for the connection to take the message, and of a durable publish for the
    /// stream's acknowledgement, in milliseconds (default 5000). Past it the call fails with
    /// `backend` (a hung or unreachable NATS server) instead of waiting on.
    pub publish_timeout_ms: u64,
    /// `connect_timeout_ms` / `BUSBAR_CONNECT_TIMEOUT_MS`: longest wait of one attempt to
    /// connect to a NATS server (TCP, TLS, handshake), in milliseconds (default 5000).
    pub connect_timeout_ms: u64,
    /// `connect_retries` / `BUSBAR_CONNECT_RETRIES`: how many more times the first connect
    /// goes over the server list before failing with `backend` (default 0), waiting the
    /// reconnect backoff between rounds; a refused authentication is not retried.
    pub connect_retries: u32,
    /// `reconnect_delay_ms` / `BUSBAR_RECONNECT_DELAY_MS`: the backoff of reconnecting
    /// (and of `connect_retries`), in milliseconds: the first attempt goes at once, then
    /// this delay doubling per attempt up to `reconnect_max_delay_ms`, less up to a fifth
    /// at random (default 2).
    pub reconnect_delay_ms: u64,
    /// `reconnect_max_delay_ms` / `BUSBAR_RECONNECT_MAX_DELAY_MS`: the longest wait between
    /// two attempts to reconnect, in milliseconds (default 4000).
    pub reconnect_max_delay_ms: u64,
    /// `max_reconnects` / `BUSBAR_MAX_RECONNECTS`: attempts to reconnect after a lost
    /// connection before the bus gives up and every call fails with `backend`
    /// (default 0: no limit).
    pub max_reconnects: u32,
    /// `ping_interval_ms` / `BUSBAR_PING_INTERVAL_MS`: how often the NATS client pings its
    /// server, in milliseconds (default 60000); after two unanswered pings it takes the
    /// server for dead and reconnects (to another server of the list), so a hung server
    /// is left within about three intervals.
    pub ping_interval_ms: u64,
    /// `publish_buffer` / `BUSBAR_PUBLISH_BUFFER`: how many publishes (and other commands)
    /// the NATS connection holds while it cannot write, disconnected included (default 2048).
    pub publish_buffer: usize,
    /// `publish_buffer_full` / `BUSBAR_PUBLISH_BUFFER_FULL`: what a publish does when that
    /// buffer is full: `wait` (default; up to `publish_timeout_ms`, then `backend`) or
    /// `fail` (`backend` at once). Never silent.
    pub publish_buffer_full: Overflow,
    /// `breaker_failures` / `BUSBAR_BREAKER_FAILURES`: consecutive failed requests to one
    /// subject (timeout, no responders, `backend`, an error reply) within
    /// `breaker_window_ms` that open its circuit breaker (default 0: no breaker).
    pub breaker_failures: u32,
    /// `breaker_window_ms` / `BUSBAR_BREAKER_WINDOW_MS`: the window those failures must
    /// fall in, counted from the first of them, in milliseconds (default 30000).
    pub breaker_window_ms: u64,
    /// `breaker_cooldown_ms` / `BUSBAR_BREAKER_COOLDOWN_MS`: how long an open breaker
    /// fails requests at once before it lets one probe through, in milliseconds (default 5000).
    pub breaker_cooldown_ms: u64,
    /// `breaker_patterns` / `BUSBAR_BREAKER_PATTERNS`: subject patterns separated by
    /// spaces (`"svc.orders.* svc.billing.>"`); the subjects a pattern matches share one
    /// circuit, named by the pattern (the first that matches). A subject no pattern
    /// matches has its own (default: none, every subject its own).
    pub breaker_patterns: Vec<String>,
    /// `publish_rate` / `BUSBAR_PUBLISH_RATE`: most messages per second this bus
    /// publishes (a token bucket; fractions allowed; default none).
    pub publish_rate: Option<Rate>,
    /// `publish_rate_limits` / `BUSBAR_PUBLISH_RATE_LIMITS`: limits per subject pattern,
    /// `pattern=rate` separated by spaces (`"orders.>=50 metrics.*=1000"`); each pattern
    /// has one bucket shared by the subjects it matches.
    pub publish_rate_limits: Vec<(String, Rate)>,
    /// `publish_burst` / `BUSBAR_PUBLISH_BURST`: how many messages a publish limit lets
    /// through at once after a quiet spell (default 0: one second's worth, at least 1).
    pub publish_burst: u32,
    /// `rate_limit_mode` / `BUSBAR_RATE_LIMIT_MODE`: `wait` (default: the publish waits
    /// for room) or `fail` (it fails at once with `rate_limited`).
    pub rate_limit_mode: Overflow,
    /// `delivery_rate` / `BUSBAR_DELIVERY_RATE`: most messages per second each
    /// subscription of this bus yields (default none); the rest wait in its buffer, under
    /// its back-pressure rule.
    pub delivery_rate: Option<Rate>,
    /// `request_retries` / `BUSBAR_REQUEST_RETRIES`: more attempts of a request that timed
    /// out, found no responders or hit `backend`, within its one timeout (default 0). For
    /// idempotent requests only.
    pub request_retries: u32,
    /// `retry_delay_ms` / `BUSBAR_RETRY_DELAY_MS`: wait before the first retry, doubling
    /// per retry up to `retry_max_delay_ms`, less up to a fifth at random (default 100).
    pub retry_delay_ms: u64,
    /// `retry_max_delay_ms` / `BUSBAR_RETRY_MAX_DELAY_MS`: the longest wait between two
    /// attempts of a request (default 2000).
    pub retry_max_delay_ms: u64,
    /// `retention_days` / `BUSBAR_RETENTION_DAYS`: default maximum age of messages in
    /// durable streams, in days; 0 (default) keeps them until a size limit applies.
    pub retention_days: u32,
    /// `encryption` / `BUSBAR_ENCRYPTION`: encrypt classified fields before publishing
    /// (needs `key_ring`; see [`crate::policy`]).
    pub encryption: bool,
    /// `policy` / `BUSBAR_POLICY`: path of a policy JSON file (see [`crate::policy::Policy::from_json`]).
    pub policy: Option<String>,
    /// `key_ring` / `BUSBAR_KEY_RING`: path of a key ring JSON file (see [`crate::policy::KeyRing::from_json`]).
    pub key_ring: Option<String>,
    /// `audit_log` / `BUSBAR_AUDIT_LOG`: path of the JSON-lines audit log.
    pub audit_log: Option<String>,
    /// `principal` / `BUSBAR_PRINCIPAL`: the name this bus subscribes and requests as under
    /// a policy (default `anonymous`); every language gets principal-bound subscriptions
    /// by configuration.
    pub principal: Option<String>,
    /// `roles` / `BUSBAR_ROLES`: comma-separated roles of `principal`.
    pub roles: Vec<String>,
    /// `metrics_addr` / `BUSBAR_METRICS_ADDR`: an `ip:port` (say `127.0.0.1:9464`) where
    /// the bus serves `/metrics`, `/healthz` and `/readyz` over HTTP until it is closed or
    /// dropped (docs/guide/observability.md). Unset: no server.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("backend", &self.backend)
            .field("nats_url", &redact_url(&self.nats_url))
            .field("amqp_url", &redact_url(&self.amqp_url))
            .field("amqp_exchange", &self.amqp_exchange)
            .field("max_payload", &self.max_payload)
            .field("subscription_capacity", &self.subscription_capacity)
            .field("subscription_max_bytes", &self.subscription_max_bytes)
            .field("backpressure", &self.backpressure)
            .field("source", &self.source)
            .field("nats_user", &self.nats_user)
            .field("nats_password", &secret(&self.nats_password))
            .field("nats_token", &secret(&self.nats_token))
            .field("nats_credentials", &self.nats_credentials)
            .field("nats_tls_ca", &self.nats_tls_ca)
            .field("nats_tls_cert", &self.nats_tls_cert)
            .field("nats_tls_key", &self.nats_tls_key)
            .field("nats_require_tls", &self.nats_require_tls)
            .field("amqp_user", &self.amqp_user)
            .field("amqp_password", &secret(&self.amqp_password))
            .field("amqp_tls_ca", &self.amqp_tls_ca)
            .field("amqp_tls_cert", &self.amqp_tls_cert)
            .field("amqp_tls_key", &self.amqp_tls_key)
            .field("amqp_require_tls", &self.amqp_require_tls)
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_topic", &self.kafka_topic)
            .field("kafka_partitions", &self.kafka_partitions)
            .field("kafka_partition_by", &self.kafka_partition_by)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_user", &self.kafka_user)
            .field("kafka_password", &secret(&self.kafka_password))
            .field("kafka_tls_ca", &self.kafka_tls_ca)
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("connect_retries", &self.connect_retries)
            .field("reconnect_delay_ms", &self.reconnect_delay_ms)
            .field("reconnect_max_delay_ms", &self.reconnect_max_delay_ms)
            .field("max_reconnects", &self.max_reconnects)
            .field("ping_interval_ms", &self.ping_interval_ms)
            .field("publish_buffer", &self.publish_buffer)
            .field("publish_buffer_full", &self.publish_buffer_full)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_window_ms", &self.breaker_window_ms)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .field("breaker_patterns", &self.breaker_patterns)
            .field("publish_rate", &self.publish_rate)
            .field("publish_rate_limits", &self.publish_rate_limits)
            .field("publish_burst", &self.publish_burst)
            .field("rate_limit_mode", &self.rate_limit_mode)
            .field("delivery_rate", &self.delivery_rate)
            .field("request_retries", &self.request_retries)
            .field("retry_delay_ms", &self.retry_delay_ms)
            .field("retry_max_delay_ms", &self.retry_max_delay_ms)
            .field("retention_days", &self.retention_days)
            .field("encryption", &self.encryption)
            .field("policy", &self.policy)
            .field("key_ring", &self.key_ring)
            .field("audit_log", &self.audit_log)
            .field("principal", &self.principal)
            .field("roles", &self.roles)
            .field("metrics_addr", &self.metrics_addr)
            .finish()
    }
}

/// Default `max_payload`: 1 MiB less [`crate::bounds::MAX_HEADER_BLOCK`] (1,040,384 bytes),
/// so that a payload of this size and its headers fit a NATS server's default 1 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024 - crate::bounds::MAX_HEADER_BLOCK;
/// Default `subscription_capacity`.
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 4096;
/// Default `publish_timeout_ms`: 5 s.
pub const DEFAULT_PUBLISH_TIMEOUT_MS: u64 = 5_000;
/// Default `connect_timeout_ms`: 5 s.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Default `reconnect_delay_ms`: 2 ms, doubling per attempt (async-nats' own schedule).
pub const DEFAULT_RECONNECT_DELAY_MS: u64 = 2;
/// Default `reconnect_max_delay_ms`: 4 s.
pub const DEFAULT_RECONNECT_MAX_DELAY_MS: u64 = 4_000;
/// Default `ping_interval_ms`: 60 s (async-nats' own).
pub const DEFAULT_PING_INTERVAL_MS: u64 = 60_000;
/// Default `publish_buffer`: 2048 commands.
pub const DEFAULT_PUBLISH_BUFFER: usize = 2048;
/// Default `breaker_window_ms`: 30 s.
pub const DEFAULT_BREAKER_WINDOW_MS: u64 = 30_000;
/// Default `breaker_cooldown_ms`: 5 s.
pub const DEFAULT_BREAKER_COOLDOWN_MS: u64 = 5_000;
/// Default `retry_delay_ms`: 100 ms.
pub const DEFAULT_RETRY_DELAY_MS: u64 = 100;
/// Default `retry_max_delay_ms`: 2 s.
pub const DEFAULT_RETRY_MAX_DELAY_MS: u64 = 2_000;
/// Default `subscription_max_bytes`: 64 MiB.
pub const DEFAULT_SUBSCRIPTION_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default `nats_url`.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Default `amqp_url`: the local broker's default vhost as `guest`.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default `amqp_exchange`.
pub const DEFAULT_AMQP_EXCHANGE: &str = "busbar";
/// Default `kafka_brokers`.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";
/// Default `kafka_topic`.
pub const DEFAULT_KAFKA_TOPIC: &str = "busbar";
/// Default `kafka_partitions`.
pub const DEFAULT_KAFKA_PARTITIONS: u32 = 8;
/// Most `kafka_partitions` a bus creates its topic with.
pub const MAX_KAFKA_PARTITIONS: u64 = 1024;

/// The keys [`Config::set`] accepts; the environment variable is `BUSBAR_` + the key in capitals.
pub const KEYS: &[&str] = &[
    "backend",
    "nats_url",
    "amqp_url",
    "amqp_exchange",
    "max_payload",
    "subscription_capacity",
    "subscription_max_bytes",
    "backpressure",
    "source",
    "nats_user",
    "nats_password",
    "nats_token",
    "nats_credentials",
    "nats_tls_ca",
    "nats_tls_cert",
    "nats_tls_key",
    "nats_require_tls",
    "amqp_user",
    "amqp_password",
    "amqp_tls_ca",
    "amqp_tls_cert",
    "amqp_tls_key",
    "amqp_require_tls",
    "kafka_brokers",
    "kafka_topic",
    "kafka_partitions",
    "kafka_partition_by",
    "kafka_security_protocol",
    "kafka_sasl_mechanism",
    "kafka_user",
    "kafka_password",
    "kafka_tls_ca",
    "publish_timeout_ms",
    "connect_timeout_ms",
    "connect_retries",
    "reconnect_delay_ms",
    "reconnect_max_delay_ms",
    "max_reconnects",
    "ping_interval_ms",
    "publish_buffer",
    "publish_buffer_full",
    "breaker_failures",
    "breaker_window_ms",
    "breaker_cooldown_ms",
    "breaker_patterns",
    "publish_rate",
    "publish_rate_limits",
    "publish_burst",
    "rate_limit_mode",
    "delivery_rate",
    "request_retries",
    "retry_delay_ms",
    "retry_max_delay_ms",
    "retention_days",
    "encryption",
    "policy",
    "key_ring",
    "audit_log",
    "principal",
    "roles",
    "metrics_addr",
];

/// The keys of [`KEYS`] whose value is a number or a flag; every other key takes text.
pub const NUMBER_OR_FLAG_KEYS: &[&str] = &[
    "max_payload",
    "subscription_capacity",
    "subscription_max_bytes",
    "nats_require_tls",
    "amqp_require_tls",
    "kafka_partitions",
    "publish_timeout_ms",
    "connect_timeout_ms",
    "connect_retries",
    "reconnect_delay_ms",
    "reconnect_max_delay_ms",
    "max_reconnects",
    "ping_interval_ms",
    "publish_buffer",
    "breaker_failures",
    "breaker_window_ms",
    "breaker_cooldown_ms",
    "publish_rate",
    "publish_burst",
    "delivery_rate",
    "request_retries",
    "retry_delay_ms",
    "retry_max_delay_ms",
    "retention_days",
    "encryption",
];

/// Whether `key` is one of [`KEYS`] whose value is text (`backend`, `nats_url`, …). A
/// binding whose language has types refuses a number or boolean given for one with its
/// type error (Python and JavaScript `TypeError`) rather than passing its string form on
/// (`backend=5`), so the same mistake fails the same way in every language.
pub fn is_text_key(key: &str) -> bool {
    KEYS.contains(&key) && !NUMBER_OR_FLAG_KEYS.contains(&key)
}

/// A typed value for one key of [`Config::set_value`], as a binding's language holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ConfigValue<'a> {
    /// Text: any key (a number or flag key parses it, as from its variable).
    Text(&'a str),
    /// A whole number (Python `int`, a JSON integer).
    Int(i128),
    /// A number that may have a fraction (a JavaScript number, a JSON number): a whole
    /// one counts as [`ConfigValue::Int`], any other is refused by the key's parser.
    Float(f64),
    /// A flag.
    Bool(bool),
}

impl ConfigValue<'_> {
    /// What kind of value this is, for messages: `"a string"`, `"a number"`, `"a boolean"`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigValue::Text(_) => "a string",
            ConfigValue::Int(_) | ConfigValue::Float(_) => "a number",
            ConfigValue::Bool(_) => "a boolean",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Memory,
            nats_url: DEFAULT_NATS_URL.to_owned(),
            amqp_url: DEFAULT_AMQP_URL.to_owned(),
            amqp_exchange: DEFAULT_AMQP_EXCHANGE.to_owned(),
            max_payload: DEFAULT_MAX_PAYLOAD,
            subscription_capacity: DEFAULT_SUBSCRIPTION_CAPACITY,
            subscription_max_bytes: DEFAULT_SUBSCRIPTION_MAX_BYTES,
            backpressure: Backpressure::Block,
            source: crate::envelope::DEFAULT_SOURCE.to_owned(),
            nats_user: None,
            nats_password: None,
            nats_token: None,
            nats_credentials: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            nats_require_tls: false,
            amqp_user: None,
            amqp_password: None,
            amqp_tls_ca: None,
            amqp_tls_cert: None,
            amqp_tls_key: None,
            amqp_require_tls: false,
            kafka_brokers: DEFAULT_KAFKA_BROKERS.to_owned(),
            kafka_topic: DEFAULT_KAFKA_TOPIC.to_owned(),
            kafka_partitions: DEFAULT_KAFKA_PARTITIONS,
            kafka_partition_by: PartitionBy::Publisher,
            kafka_security_protocol: "plaintext".to_owned(),
            kafka_sasl_mechanism: None,
            kafka_user: None,
            kafka_password: None,
            kafka_tls_ca: None,
            publish_timeout_ms: DEFAULT_PUBLISH_TIMEOUT_MS,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            connect_retries: 0,
            reconnect_delay_ms: DEFAULT_RECONNECT_DELAY_MS,
            reconnect_max_delay_ms: DEFAULT_RECONNECT_MAX_DELAY_MS,
            max_reconnects: 0,
            ping_interval_ms: DEFAULT_PING_INTERVAL_MS,
            publish_buffer: DEFAULT_PUBLISH_BUFFER,
            publish_buffer_full: Overflow::Wait,
            breaker_failures: 0,
            breaker_window_ms: DEFAULT_BREAKER_WINDOW_MS,
            breaker_cooldown_ms: DEFAULT_BREAKER_COOLDOWN_MS,
            publish_rate: None,
            publish_rate_limits: Vec::new(),
            breaker_patterns: Vec::new(),
            publish_burst: 0,
            rate_limit_mode: Overflow::Wait,
            delivery_rate: None,
            request_retries: 0,
            retry_delay_ms: DEFAULT_RETRY_DELAY_MS,
            retry_max_delay_ms: DEFAULT_RETRY_MAX_DELAY_MS,
            retention_days: 0,
            encryption: false,
            policy: None,
            key_ring: None,
            audit_log: None,
            principal: None,
            roles: Vec::new(),
            metrics_addr: None,
        }
    }
}

impl Config {
    /// Defaults overlaid with every `BUSBAR_*` variable of the process environment.
    /// An unknown `BUSBAR_*` variable is an error, so a typo does not go unnoticed.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(
            std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Like [`Config::from_env`], from the given variables (those without the `BUSBAR_` prefix are ignored).
    pub fn from_vars<K: AsRef<str>, V: AsRef<str>>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self> {
        let mut config = Config::default();
        for (name, value) in vars {
            let Some(key) = name.as_ref().strip_prefix("BUSBAR_") else {
                continue;
            };
            let key = key.to_ascii_lowercase();
            if !KEYS.contains(&key.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "unknown environment variable {}; busbar reads {}",
                    name.as_ref(),
                    KEYS.iter()
                        .map(|k| format!("BUSBAR_{}", k.to_ascii_uppercase()))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            config.set(&key, value.as_ref())?;
        }
        Ok(config)
    }

    /// Picks the backend and its server from one URL, the shorthand of nats-py's and
    /// nats.js's `connect(url)`: `nats://`, `tls://` or `ws(s)://` is the NATS backend with
    /// `nats_url`, `amqp://` or `amqps://` the RabbitMQ backend with `amqp_url`. Any other
    /// scheme is `invalid_argument` naming the ones accepted.
    pub fn set_url(&mut self, url: &str) -> Result<()> {
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("nats" | "tls" | "ws" | "wss") => {
                self.set("backend", "nats")?;
                self.set("nats_url", url)
            }
            Some("amqp" | "amqps") => {
                self.set("backend", "rabbitmq")?;
                self.set("amqp_url", url)
            }
            Some("kafka") => {
                self.set("backend", "kafka")?;
                self.set("kafka_brokers", &url["kafka://".len()..])
            }
            // The URL itself is not quoted: it may hold a password.
            other => Err(Error::InvalidArgument(format!(
                "a connect URL starts with nats:// (NATS), amqp:// (RabbitMQ) or kafka:// (Kafka), not {}",
                other.map_or_else(
                    || "a URL without a scheme".to_owned(),
                    |s| crate::error::quote(&format!("{s}://"))
                )
            ))),
        }
    }

    /// Sets one key (see [`KEYS`]) from its text form; the error names the key and value.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "backend" => self.backend = parse(key, value)?,
            "nats_url" => {
                if value.trim().is_empty() {
                    return Err(Error::InvalidArgument("nats_url must not be empty".into()));
                }
                self.nats_url = value.to_owned();
            }
            "amqp_url" => {
                if value.trim().is_empty() {
                    return Err(Error::InvalidArgument("amqp_url must not be empty".into()));
                }
                self.amqp_url = value.to_owned();
            }
            "amqp_exchange" => {
                // An AMQP short string of name characters; `amq.` names are the broker's.
                let ok = !value.is_empty()
                    && value.len() <= 127
                    && !value.starts_with("amq.")
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
                if !ok {
                    return Err(Error::InvalidArgument(format!(
                        "amqp_exchange must be 1 to 127 letters, digits, '-', '_', '.' or ':' and not start with \"amq.\", not {}",
                        crate::error::quote(value)
                    )));
                }
                self.amqp_exchange = value.to_owned();
            }
            "max_payload" => self.max_payload = positive(key, value)?,
            "subscription_capacity" => {
                self.subscription_capacity = positive(key, value)?;
                bounds::at_most(key, self.subscription_capacity, bounds::MAX_SUBSCRIPTION_CAPACITY)?;
            }
            "subscription_max_bytes" => self.subscription_max_bytes = positive(key, value)?,
            "backpressure" => self.backpressure = parse(key, value)?,
            "source" => {
                if value.is_empty() || value.contains(['\r', '\n', '\0']) {
                    return Err(Error::InvalidArgument(format!(
                        "source {} must be non-empty and hold no line break",
                        crate::error::quote(value)
                    )));
                }
                self.source = value.to_owned();
            }
            "nats_user" => self.nats_user = non_empty(key, value)?,
            "nats_password" => self.nats_password = non_empty(key, value)?,
            "nats_token" => self.nats_token = non_empty(key, value)?,
            "nats_credentials" => self.nats_credentials = non_empty(key, value)?,
            "nats_tls_ca" => self.nats_tls_ca = non_empty(key, value)?,
            "nats_tls_cert" => self.nats_tls_cert = non_empty(key, value)?,
            "nats_tls_key" => self.nats_tls_key = non_empty(key, value)?,
            "nats_require_tls" => self.nats_require_tls = boolean(key, value)?,
            "amqp_user" => self.amqp_user = non_empty(key, value)?,
            "amqp_password" => self.amqp_password = non_empty(key, value)?,
            "amqp_tls_ca" => self.amqp_tls_ca = non_empty(key, value)?,
            "amqp_tls_cert" => self.amqp_tls_cert = non_empty(key, value)?,
            "amqp_tls_key" => self.amqp_tls_key = non_empty(key, value)?,
            "amqp_require_tls" => self.amqp_require_tls = boolean(key, value)?,
            "kafka_brokers" => {
                // host:port[,host:port...]: librdkafka would only log a malformed entry.
                let ok = !value.trim().is_empty()
                    && value.split(',').all(|b| {
                        b.trim()
                            .rsplit_once(':')
                            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
                    });
                if !ok {
                    return Err(Error::InvalidArgument(format!(
                        "kafka_brokers must be host:port entries separated by commas, not {}",
                        crate::error::quote(value)
                    )));
                }
                self.kafka_brokers = value.trim().to_owned();
            }
            "kafka_topic" => {
                // Kafka's topic names; 200 leaves room under its 249 bytes for the group
                // ids busbar derives from it.
                let ok = !value.is_empty()
                    && value.len() <= 200
                    && value != "."
                    && value != ".."
                    && !value.starts_with("__")
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok {
                    return Err(Error::InvalidArgument(format!(
                        "kafka_topic must be 1 to 200 letters, digits, '-', '_' or '.' and not start with \"__\", not {}",
                        crate::error::quote(value)
                    )));
                }
                self.kafka_topic = value.to_owned();
            }
            "kafka_partitions" => self.kafka_partitions = whole(key, value, 1, MAX_KAFKA_PARTITIONS)? as u32,
            "kafka_partition_by" => self.kafka_partition_by = parse(key, value)?,
            "kafka_security_protocol" => {
                self.kafka_security_protocol = choose(
                    key,
                    value,
                    &[
                        ("plaintext", "plaintext"),
                        ("ssl", "ssl"),
                        ("sasl_plaintext", "sasl_plaintext"),
                        ("sasl_ssl", "sasl_ssl"),
                    ],
                )?
                .to_owned()
            }
            "kafka_sasl_mechanism" => {
                self.kafka_sasl_mechanism = Some(
                    choose(
                        key,
                        value,
                        &[
                            ("plain", "PLAIN"),
                            ("scram-sha-256", "SCRAM-SHA-256"),
                            ("scram-sha-512", "SCRAM-SHA-512"),
                        ],
                    )?
                    .to_owned(),
                )
            }
            "kafka_user" => self.kafka_user = non_empty(key, value)?,
            "kafka_password" => self.kafka_password = non_empty(key, value)?,
            "kafka_tls_ca" => self.kafka_tls_ca = non_empty(key, value)?,
            "publish_timeout_ms" => {
                self.publish_timeout_ms = match value.trim().parse::<u64>() {
                    Ok(ms) if (1..=MAX_PUBLISH_TIMEOUT_MS).contains(&ms) => ms,
                    _ => {
                        return Err(Error::InvalidArgument(format!(
                            "publish_timeout_ms must be a whole number of milliseconds from 1 to {MAX_PUBLISH_TIMEOUT_MS}, not {value:?}"
                        )))
                    }
                }
            }
            "connect_timeout_ms" => self.connect_timeout_ms = whole(key, value, 1, MAX_PUBLISH_TIMEOUT_MS)?,
            "connect_retries" => self.connect_retries = whole(key, value, 0, MAX_RETRIES)? as u32,
            "reconnect_delay_ms" => self.reconnect_delay_ms = whole(key, value, 0, MAX_PUBLISH_TIMEOUT_MS)?,
            "reconnect_max_delay_ms" => {
                self.reconnect_max_delay_ms = whole(key, value, 0, MAX_PUBLISH_TIMEOUT_MS)?
            }
            "max_reconnects" => self.max_reconnects = whole(key, value, 0, MAX_RETRIES)? as u32,
            "ping_interval_ms" => self.ping_interval_ms = whole(key, value, 1, MAX_PUBLISH_TIMEOUT_MS)?,
            "publish_buffer" => {
                self.publish_buffer = whole(key, value, 1, bounds::MAX_SUBSCRIPTION_CAPACITY as u64)? as usize
            }
            "publish_buffer_full" => self.publish_buffer_full = parse(key, value)?,
            "breaker_failures" => self.breaker_failures = whole(key, value, 0, MAX_RETRIES)? as u32,
            "breaker_window_ms" => self.breaker_window_ms = whole(key, value, 1, MAX_PUBLISH_TIMEOUT_MS)?,
            "breaker_cooldown_ms" => self.breaker_cooldown_ms = whole(key, value, 1, MAX_PUBLISH_TIMEOUT_MS)?,
            "breaker_patterns" => self.breaker_patterns = breaker_patterns(key, value)?,
            "publish_rate" => self.publish_rate = Rate::parse_optional(key, value)?,
            "publish_rate_limits" => self.publish_rate_limits = Rate::parse_limits(key, value)?,
            "publish_burst" => self.publish_burst = whole(key, value, 0, MAX_RETRIES)? as u32,
            "rate_limit_mode" => self.rate_limit_mode = parse(key, value)?,
            "delivery_rate" => self.delivery_rate = Rate::parse_optional(key, value)?,
            "request_retries" => self.request_retries = whole(key, value, 0, MAX_REQUEST_RETRIES)? as u32,
            "retry_delay_ms" => self.retry_delay_ms = whole(key, value, 0, MAX_PUBLISH_TIMEOUT_MS)?,
            "retry_max_delay_ms" => self.retry_max_delay_ms = whole(key, value, 0, MAX_PUBLISH_TIMEOUT_MS)?,
            "retention_days" => {
                self.retention_days = value.trim().parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "retention_days must be a whole number of days (0 = no limit), not {}",
                        crate::error::quote(value)
                    ))
                })?;
                bounds::at_most(key, self.retention_days, bounds::MAX_RETENTION_DAYS)?;
            }
            "encryption" => self.encryption = boolean(key, value)?,
            "policy" => self.policy = non_empty(key, value)?,
            "key_ring" => self.key_ring = non_empty(key, value)?,
            "audit_log" => self.audit_log = non_empty(key, value)?,
            "principal" => self.principal = non_empty(key, value)?,
            "roles" => {
                self.roles = value
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "metrics_addr" => {
                let addr = value.trim().parse().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "metrics_addr must be an ip:port such as 127.0.0.1:9464, not {}",
                        crate::error::quote(value)
                    ))
                })?;
                self.metrics_addr = Some(addr);
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown config key {}; known keys: {}",
                    crate::error::quote(other),
                    KEYS.join(", ")
                )))
            }
        }
        Ok(())
    }

    /// Sets one key from a typed value: the one intake rule of every binding. A text key
    /// ([`is_text_key`]) takes only text (a number or flag for it is `invalid_argument`,
    /// which Python and JavaScript raise as their `TypeError` first); a number or flag
    /// key takes its type or its text form; a number with a fraction is refused by the
    /// key's parser, as its text would be.
    pub fn set_value(&mut self, key: &str, value: ConfigValue<'_>) -> Result<()> {
        if is_text_key(key) && !matches!(value, ConfigValue::Text(_)) {
            return Err(Error::InvalidArgument(format!(
                "config key {key} must be a string, not {}",
                value.kind()
            )));
        }
        match value {
            ConfigValue::Text(text) => self.set(key, text),
            ConfigValue::Bool(flag) => self.set(key, if flag { "true" } else { "false" }),
            ConfigValue::Int(n) => self.set(key, &n.to_string()),
            // Below 2^53 every whole f64 is exact, so it reads as the integer it is.
            ConfigValue::Float(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                self.set(key, &(n as i64).to_string())
            }
            ConfigValue::Float(n) => self.set(key, &n.to_string()),
        }
    }

    /// Sets every key of `json`, a JSON object (`{"backend": "nats", "max_payload": 2048}`):
    /// strings, numbers and booleans through [`Config::set_value`]; anything else, or text
    /// that is not a JSON object, is `invalid_argument`.
    pub fn set_json(&mut self, json: &str) -> Result<()> {
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| Error::InvalidArgument(format!("config is not valid JSON: {e}")))?;
        let serde_json::Value::Object(entries) = value else {
            return Err(Error::InvalidArgument(format!(
                "config must be a JSON object of keys, not {}",
                crate::error::quote(json)
            )));
        };
        for (key, value) in &entries {
            let value = match value {
                serde_json::Value::String(s) => ConfigValue::Text(s),
                serde_json::Value::Bool(b) => ConfigValue::Bool(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => ConfigValue::Int(i.into()),
                    None => match n.as_u64() {
                        Some(u) => ConfigValue::Int(u.into()),
                        None => ConfigValue::Float(n.as_f64().unwrap_or(f64::NAN)),
                    },
                },
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "config key {} must be a string, number or boolean, not {other}",
                        crate::error::quote(key)
                    )))
                }
            };
            self.set_value(key, value)?;
        }
        Ok(())
    }

    /// [`Config::from_env`] overlaid with the keys of `json` ([`Config::set_json`]).
    pub fn from_json(json: &str) -> Result<Self> {
        let mut config = Config::from_env()?;
        config.set_json(json)?;
        Ok(config)
    }

    /// Sets `backend`.
    pub fn with_backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }
    /// Sets `nats_url`.
    pub fn with_nats_url(mut self, url: impl Into<String>) -> Self {
        self.nats_url = url.into();
        self
    }
    /// Sets `amqp_url`.
    pub fn with_amqp_url(mut self, url: impl Into<String>) -> Self {
        self.amqp_url = url.into();
        self
    }
    /// Sets `amqp_exchange`.
    pub fn with_amqp_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.amqp_exchange = exchange.into();
        self
    }
    /// Sets `max_payload` in bytes.
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }
    /// Sets `subscription_capacity`.
    pub fn with_subscription_capacity(mut self, messages: usize) -> Self {
        self.subscription_capacity = messages;
        self
    }
    /// Sets `subscription_max_bytes`.
    pub fn with_subscription_max_bytes(mut self, bytes: usize) -> Self {
        self.subscription_max_bytes = bytes;
        self
    }
    /// Sets `backpressure`.
    pub fn with_backpressure(mut self, mode: Backpressure) -> Self {
        self.backpressure = mode;
        self
    }
    /// Sets `publish_timeout_ms` from a duration (rounded up to whole milliseconds).
    pub fn with_publish_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.publish_timeout_ms = u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        self
    }
    /// `publish_timeout_ms` as a duration.
    pub fn publish_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.publish_timeout_ms)
    }
    /// Sets `retention_days`.
    pub fn with_retention_days(mut self, days: u32) -> Self {
        self.retention_days = days;
        self
    }
    /// Sets `source`.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// Sets `metrics_addr`: serve `/metrics`, `/healthz` and `/readyz` there.
    pub fn with_metrics_addr(mut self, addr: std::net::SocketAddr) -> Self {
        self.metrics_addr = Some(addr);
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.max_payload == 0 || self.subscription_capacity == 0 || self.subscription_max_bytes == 0 {
            return Err(Error::InvalidArgument(format!(
                "max_payload ({}), subscription_capacity ({}) and subscription_max_bytes ({}) must be at least 1",
                self.max_payload, self.subscription_capacity, self.subscription_max_bytes
            )));
        }
        bounds::at_most(
            "subscription_capacity",
            self.subscription_capacity,
            bounds::MAX_SUBSCRIPTION_CAPACITY,
        )?;
        bounds::at_most("retention_days", self.retention_days, bounds::MAX_RETENTION_DAYS)?;
        if !(1..=MAX_PUBLISH_TIMEOUT_MS).contains(&self.publish_timeout_ms) {
            return Err(Error::InvalidArgument(format!(
                "publish_timeout_ms ({}) must be from 1 to {MAX_PUBLISH_TIMEOUT_MS}",
                self.publish_timeout_ms
            )));
        }
        let checks: [(&str, u64, u64, u64); 15] = [
            (
                "ping_interval_ms",
                self.ping_interval_ms,
                1,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            (
                "connect_timeout_ms",
                self.connect_timeout_ms,
                1,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            ("connect_retries", self.connect_retries.into(), 0, MAX_RETRIES),
            (
                "reconnect_delay_ms",
                self.reconnect_delay_ms,
                0,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            (
                "reconnect_max_delay_ms",
                self.reconnect_max_delay_ms,
                0,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            ("max_reconnects", self.max_reconnects.into(), 0, MAX_RETRIES),
            (
                "publish_buffer",
                self.publish_buffer as u64,
                1,
                bounds::MAX_SUBSCRIPTION_CAPACITY as u64,
            ),
            ("breaker_failures", self.breaker_failures.into(), 0, MAX_RETRIES),
            (
                "breaker_window_ms",
                self.breaker_window_ms,
                1,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            (
                "breaker_cooldown_ms",
                self.breaker_cooldown_ms,
                1,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            ("publish_burst", self.publish_burst.into(), 0, MAX_RETRIES),
            (
                "request_retries",
                self.request_retries.into(),
                0,
                MAX_REQUEST_RETRIES,
            ),
            ("retry_delay_ms", self.retry_delay_ms, 0, MAX_PUBLISH_TIMEOUT_MS),
            (
                "retry_max_delay_ms",
                self.retry_max_delay_ms,
                0,
                MAX_PUBLISH_TIMEOUT_MS,
            ),
            (
                "publish_rate_limits",
                self.publish_rate_limits.len() as u64,
                0,
                MAX_RATE_LIMITS,
            ),
        ];
        for (key, value, min, max) in checks {
            whole(key, &value.to_string(), min, max)?;
        }
        if self.nats_user.is_some() != self.nats_password.is_some() {
            return Err(Error::InvalidArgument(
                "nats_user and nats_password go together: set both or neither".into(),
            ));
        }
        if self.nats_tls_cert.is_some() != self.nats_tls_key.is_some() {
            return Err(Error::InvalidArgument(
                "nats_tls_cert and nats_tls_key go together: set both or neither".into(),
            ));
        }
        if self.amqp_user.is_some() != self.amqp_password.is_some() {
            return Err(Error::InvalidArgument(
                "amqp_user and amqp_password go together: set both or neither".into(),
            ));
        }
        if self.amqp_tls_cert.is_some() != self.amqp_tls_key.is_some() {
            return Err(Error::InvalidArgument(
                "amqp_tls_cert and amqp_tls_key go together: set both or neither".into(),
            ));
        }
        Ok(())
    }
}

/// Largest `publish_timeout_ms` (and of every other millisecond option): one day.
pub const MAX_PUBLISH_TIMEOUT_MS: u64 = 86_400_000;

/// Largest `connect_retries`, `max_reconnects`, `breaker_failures` and `publish_burst`: 1,000,000.
pub const MAX_RETRIES: u64 = 1_000_000;

/// Largest `request_retries`: 100.
pub const MAX_REQUEST_RETRIES: u64 = 100;

/// Most patterns in `publish_rate_limits` and in `breaker_patterns`: 1,000 (each publish
/// or request checks them all).
pub const MAX_RATE_LIMITS: u64 = 1_000;

/// `breaker_patterns`: valid subject patterns separated by whitespace, at most
/// [`MAX_RATE_LIMITS`].
fn breaker_patterns(key: &str, value: &str) -> Result<Vec<String>> {
    let patterns: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
    if patterns.len() as u64 > MAX_RATE_LIMITS {
        return Err(Error::InvalidArgument(format!(
            "{key} holds {} patterns; at most {MAX_RATE_LIMITS}",
            patterns.len()
        )));
    }
    for pattern in &patterns {
        crate::subject::validate_pattern(pattern)
            .map_err(|e| Error::InvalidArgument(format!("{key}: {}", e.report())))?;
    }
    Ok(patterns)
}

/// What a publish does when it cannot go on at once (docs/design.md §8): the NATS
/// connection's publish buffer is full (`publish_buffer_full`), or a rate limit has no
/// room (`rate_limit_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Wait for room (a full buffer: up to `publish_timeout_ms`, then `backend`).
    #[default]
    Wait,
    /// Fail at once: `backend` for a full buffer, `rate_limited` for a rate limit.
    Fail,
}

impl FromStr for Overflow {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose(
            "publish_buffer_full and rate_limit_mode",
            s,
            &[("wait", Overflow::Wait), ("fail", Overflow::Fail)],
        )
    }
}

/// `url` (one NATS URL, or several separated by commas) with the password or token of
/// each `user:password@` or `token@` part replaced by `<redacted>`, for printing.
///
/// ```
/// assert_eq!(
///     busbar::config::redact_url("nats://svc:hunter2@a:4222,tls://t0ken@b"),
///     "nats://svc:<redacted>@a:4222,tls://<redacted>@b"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|part| match userinfo(part) {
            None => part.to_owned(),
            Some((start, at)) => {
                // The user name is shown only when it cannot hold part of a secret.
                let shown = match part[start..at].split_once(':') {
                    Some((user, _)) if !user.contains(['@', '/', '?', '#']) => {
                        format!("{user}:<redacted>")
                    }
                    _ => "<redacted>".to_owned(),
                };
                format!("{}{shown}{}", &part[..start], &part[at..])
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Where the userinfo (`user:password` or `token`) of one URL is: it starts at the first
/// index and ends at the second, the index of its last `@`. A NATS URL has no path, so
/// everything before the last `@` is taken as userinfo even when it holds `/`, `?` or `#`:
/// a password with those characters written unescaped (common in generated secrets)
/// would otherwise end the authority early and be printed, and sent, as an address.
fn userinfo(url: &str) -> Option<(usize, usize)> {
    let start = url.find("://").map_or(0, |i| i + 3);
    url[start..].rfind('@').map(|at| (start, start + at))
}

/// Credentials found inside `nats_url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UrlAuth {
    /// `nats://user:password@host`.
    UserPassword(String, String),
    /// `nats://token@host`.
    Token(String),
}

/// Splits the credentials out of `url` (one NATS URL or a comma-separated list): the URL
/// without them, and the `user:password@` or `token@` they carried (percent-decoded). So
/// the connection authenticates with them while no library ever holds, logs or prints the
/// secret as part of an address. Parts carrying different credentials are refused.
pub(crate) fn split_url_credentials(url: &str) -> Result<(String, Option<UrlAuth>)> {
    let mut found: Option<UrlAuth> = None;
    let mut parts = Vec::new();
    for part in url.split(',') {
        let Some((start, at)) = userinfo(part) else {
            parts.push(part.to_owned());
            continue;
        };
        let userinfo = &part[start..at];
        let auth = match userinfo.split_once(':') {
            Some((user, password)) => UrlAuth::UserPassword(percent_decode(user), percent_decode(password)),
            None => UrlAuth::Token(percent_decode(userinfo)),
        };
        if found.as_ref().is_some_and(|f| *f != auth) {
            return Err(Error::InvalidArgument(format!(
                "nats_url {} carries different credentials in different servers; give one set (or use nats_user/nats_password/nats_token)",
                redact_url(url)
            )));
        }
        found = Some(auth);
        parts.push(format!("{}{}", &part[..start], &part[at + 1..]));
    }
    Ok((parts.join(","), found))
}

/// `%XX` escapes of `s` decoded (invalid escapes and non-UTF-8 results kept as given).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_owned())
}

fn parse<T: FromStr<Err = Error>>(_key: &str, value: &str) -> Result<T> {
    value.parse()
}

fn non_empty(key: &str, value: &str) -> Result<Option<String>> {
    if value.is_empty() {
        return Err(Error::InvalidArgument(format!("{key} must not be empty")));
    }
    Ok(Some(value.to_owned()))
}

fn boolean(key: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(Error::InvalidArgument(format!(
            "{key} must be true or false, not {}",
            crate::error::quote(value)
        ))),
    }
}

/// A whole number from `min` to `max`; the error names the key, the range and the value.
fn whole(key: &str, value: &str, min: u64, max: u64) -> Result<u64> {
    match value.trim().parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(Error::InvalidArgument(format!(
            "{key} must be a whole number from {min} to {max}, not {}",
            crate::error::quote(value)
        ))),
    }
}

fn positive(key: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::InvalidArgument(format!(
            "{key} must be a whole number above 0, not {}",
            crate::error::quote(value)
        ))),
    }
}

/// The choice of `choices` named `s` (any case, surrounding spaces ignored); else
/// `invalid_argument` listing them: `backend must be "memory", "nats" or "rabbitmq", not "x"`.
fn choose<T: Copy>(what: &str, s: &str, choices: &[(&str, T)]) -> Result<T> {
    let given = s.trim().to_ascii_lowercase();
    if let Some((_, choice)) = choices.iter().find(|(name, _)| *name == given) {
        return Ok(*choice);
    }
    let names: Vec<String> = choices.iter().map(|(name, _)| format!("{name:?}")).collect();
    let list = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.concat(),
    };
    Err(Error::InvalidArgument(format!(
        "{what} must be {list}, not {}",
        crate::error::quote(s)
    )))
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose(
            "backend",
            s,
            &[
                ("memory", Backend::Memory),
                ("nats", Backend::Nats),
                ("rabbitmq", Backend::RabbitMq),
                ("kafka", Backend::Kafka),
            ],
        )
    }
}

impl Backend {
    /// `"memory"`, `"nats"`, `"rabbitmq"` or `"kafka"`: the name configuration takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Nats => "nats",
            Backend::RabbitMq => "rabbitmq",
            Backend::Kafka => "kafka",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Backpressure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        choose(
            "backpressure",
            s,
            &[("block", Backpressure::Block), ("lag", Backpressure::Lag)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_patterns_are_valid_patterns_separated_by_spaces() {
        let mut c = Config::default();
        c.set("breaker_patterns", " svc.orders.*  svc.>\t").unwrap();
        assert_eq!(c.breaker_patterns, ["svc.orders.*", "svc.>"]);
        let err = c.set("breaker_patterns", "svc.ok svc..bad").unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(err.to_string().contains("breaker_patterns"), "{err}");
        let many = vec!["a.*"; 1001].join(" ");
        assert!(c
            .set("breaker_patterns", &many)
            .unwrap_err()
            .to_string()
            .contains("at most 1000"));
        c.set("breaker_patterns", "").unwrap();
        assert!(c.breaker_patterns.is_empty());
    }

    #[test]
    fn text_keys_are_the_known_keys_that_take_text() {
        assert!(NUMBER_OR_FLAG_KEYS.iter().all(|k| KEYS.contains(k)));
        assert!(is_text_key("backend") && is_text_key("nats_url") && is_text_key("roles"));
        assert!(!is_text_key("max_payload") && !is_text_key("encryption"));
        assert!(
            !is_text_key("bakend"),
            "an unknown key is the core's invalid_argument"
        );
    }

    #[test]
    fn one_url_picks_the_backend_and_never_echoes_a_password() {
        let mut c = Config::default();
        c.set_url("nats://127.0.0.1:4222").unwrap();
        assert_eq!(
            (c.backend, c.nats_url.as_str()),
            (Backend::Nats, "nats://127.0.0.1:4222")
        );
        c.set_url("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(c.backend, Backend::RabbitMq);
        let err = c.set_url("http://user:s3cret@host").unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(
            err.to_string().contains("http://") && !err.to_string().contains("s3cret"),
            "{err}"
        );
        assert!(c.set_url("127.0.0.1:4222").is_err());
    }

    #[test]
    fn typed_values_follow_one_intake_rule() {
        let mut c = Config::default();
        c.set_value("max_payload", ConfigValue::Int(2048)).unwrap();
        assert_eq!(c.max_payload, 2048);
        c.set_value("max_payload", ConfigValue::Float(4096.0)).unwrap();
        assert_eq!(c.max_payload, 4096);
        c.set_value("max_payload", ConfigValue::Text("1024")).unwrap();
        assert_eq!(c.max_payload, 1024);
        c.set_value("encryption", ConfigValue::Bool(true)).unwrap();
        assert!(c.encryption);
        c.set_value("backend", ConfigValue::Text("nats")).unwrap();
        assert_eq!(c.backend, Backend::Nats);
        let fraction = c.set_value("max_payload", ConfigValue::Float(1.5)).unwrap_err();
        assert_eq!(fraction.code(), "invalid_argument");
        assert!(fraction.to_string().contains("1.5"), "{fraction}");
        assert_eq!(c.max_payload, 1024, "a refused value keeps the previous one");
        let huge = c
            .set_value("max_payload", ConfigValue::Int(1 << 100))
            .unwrap_err();
        assert_eq!(huge.code(), "invalid_argument");
        for wrong in [
            ConfigValue::Int(5),
            ConfigValue::Bool(true),
            ConfigValue::Float(0.5),
        ] {
            let err = c.set_value("backend", wrong).unwrap_err();
            assert_eq!(err.code(), "invalid_argument");
            assert!(err.to_string().contains("backend must be a string"), "{err}");
        }
        assert!(c.set_value("max_payload", ConfigValue::Bool(true)).is_err());
        assert!(c.set_value("bakend", ConfigValue::Text("x")).is_err());
        assert!(c
            .set_value("retention_days", ConfigValue::Float(f64::NAN))
            .is_err());
    }

    #[test]
    fn json_configs_take_strings_numbers_and_flags() {
        let mut c = Config::default();
        c.set_json(r#"{"backend": "nats", "max_payload": 2048, "encryption": false, "retention_days": 7.0}"#)
            .unwrap();
        assert_eq!(
            (c.backend, c.max_payload, c.retention_days),
            (Backend::Nats, 2048, 7)
        );
        for bad in [
            "[1]",
            "{",
            r#"{"max_payload": [1]}"#,
            r#"{"max_payload": null}"#,
            r#"{"backend": 5}"#,
            r#"{"max_payload": 18446744073709551616}"#,
            r#"{"nope": "x"}"#,
        ] {
            let err = Config::default().set_json(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{bad}: {err}");
        }
        let long = format!("\"{}\"", "x".repeat(100_000));
        assert!(Config::default().set_json(&long).unwrap_err().to_string().len() < 300);
    }

    #[test]
    fn environment_overrides_defaults() {
        let c = Config::from_vars([
            ("BUSBAR_BACKEND", "nats"),
            ("BUSBAR_NATS_URL", "nats://127.0.0.1:4333"),
            ("BUSBAR_MAX_PAYLOAD", "2048"),
            ("BUSBAR_BACKPRESSURE", "lag"),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(c.backend, Backend::Nats);
        assert_eq!(c.nats_url, "nats://127.0.0.1:4333");
        assert_eq!(c.max_payload, 2048);
        assert_eq!(c.backpressure, Backpressure::Lag);
        assert_eq!(c.subscription_capacity, DEFAULT_SUBSCRIPTION_CAPACITY);
        assert_eq!(Config::from_vars::<&str, &str>([]).unwrap(), Config::default());
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let err = Config::from_vars([("BUSBAR_MAX_PAYLOAD", "1MB")]).unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(
            err.to_string().contains("max_payload") && err.to_string().contains("1MB"),
            "{err}"
        );
        let err = Config::from_vars([("BUSBAR_BAKEND", "nats")]).unwrap_err();
        assert!(err.to_string().contains("BUSBAR_BAKEND"), "{err}");
        let err = Config::default().set("backend", "redis").unwrap_err();
        assert!(
            err.to_string().contains("redis") && err.to_string().contains("\"kafka\""),
            "{err}"
        );
        assert!(Config::default().set("max_payload", "0").is_err());
        let err = Config::default().set("nats_require_tls", "maybe").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn connection_keys_take_their_ranges() {
        let c = Config::from_vars([
            ("BUSBAR_CONNECT_TIMEOUT_MS", "250"),
            ("BUSBAR_CONNECT_RETRIES", "3"),
            ("BUSBAR_RECONNECT_DELAY_MS", "0"),
            ("BUSBAR_RECONNECT_MAX_DELAY_MS", "1000"),
            ("BUSBAR_MAX_RECONNECTS", "10"),
            ("BUSBAR_PUBLISH_BUFFER", "16"),
            ("BUSBAR_PUBLISH_BUFFER_FULL", "fail"),
        ])
        .unwrap();
        assert_eq!(
            (c.connect_timeout_ms, c.connect_retries, c.reconnect_delay_ms),
            (250, 3, 0)
        );
        assert_eq!(
            (c.reconnect_max_delay_ms, c.max_reconnects, c.publish_buffer),
            (1000, 10, 16)
        );
        assert_eq!(c.publish_buffer_full, Overflow::Fail);
        c.check().unwrap();
        for (key, bad) in [
            ("connect_timeout_ms", "0"),
            ("connect_timeout_ms", "86400001"),
            ("connect_retries", "1000001"),
            ("max_reconnects", "-1"),
            ("reconnect_delay_ms", "0.5"),
            ("publish_buffer", "0"),
            ("publish_buffer", "16777217"),
            ("publish_buffer_full", "drop"),
        ] {
            let err = Config::default().set(key, bad).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{key}={bad}");
            assert!(err.to_string().contains(key), "{err}");
        }
        let direct = Config {
            publish_buffer: 0,
            ..Config::default()
        };
        assert_eq!(direct.check().unwrap_err().code(), "invalid_argument");
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c =
            Config::from_vars([("BUSBAR_NATS_USER", "svc"), ("BUSBAR_NATS_PASSWORD", "hunter2")]).unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("svc") && !shown.contains("hunter2"), "{shown}");
        let in_url = Config::from_vars([(
            "BUSBAR_NATS_URL",
            "nats://svc:hunter2@a:4222, nats://s3cr3t-token@b:4222/x?y=z@w,c:4222",
        )])
        .unwrap();
        let shown = format!("{in_url:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cr3t"), "{shown}");
        // Everything before a part's last `@` is its userinfo (a NATS URL has no path).
        assert!(
            shown.contains("svc:<redacted>@a:4222") && shown.contains("nats://<redacted>@w,"),
            "{shown}"
        );
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact_url("u:p@h"), "u:<redacted>@h");
    }

    #[test]
    fn credentials_are_split_out_of_the_url() {
        let split = |u: &str| split_url_credentials(u).unwrap();
        assert_eq!(
            split("nats://127.0.0.1:4222"),
            ("nats://127.0.0.1:4222".into(), None)
        );
        let (url, auth) = split("nats://svc:p%40ss@a:4222,tls://svc:p%40ss@b/x");
        assert_eq!(url, "nats://a:4222,tls://b/x");
        assert_eq!(auth, Some(UrlAuth::UserPassword("svc".into(), "p@ss".into())));
        assert_eq!(
            split("t0ken@a:1,b:2"),
            ("a:1,b:2".into(), Some(UrlAuth::Token("t0ken".into())))
        );
        let err = split_url_credentials("nats://a:hunter2@x,nats://b:other@y").unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let half = Config::from_vars([("BUSBAR_NATS_USER", "svc")]).unwrap();
        assert_eq!(half.check().unwrap_err().code(), "invalid_argument");
    }
}
