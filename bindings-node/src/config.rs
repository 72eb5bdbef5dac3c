//! `connect()` options: each key, camelCase in JavaScript, goes to core's
//! `Config::set_value` in snake_case over the configuration read from the `BUSBAR_*`
//! environment variables (core's one intake rule for typed values).

use busbar::ConfigValue;
use napi::bindgen_prelude::*;

use crate::args::{describe, string_arg, type_error};

/// The settings of `connect()` (docs/design.md §8); unset keys come from `BUSBAR_*` variables,
/// then the defaults. Numbers and booleans may also be given as strings.
#[napi(object)]
pub struct ConnectOptions {
    /// `"memory"` (default), `"nats"`, `"rabbitmq"` or `"kafka"`.
    #[napi(ts_type = "'memory' | 'nats' | 'rabbitmq' | 'kafka'")]
    pub backend: Option<String>,
    /// Server of the NATS backend, e.g. `nats://127.0.0.1:4222`, or a comma-separated list.
    pub nats_url: Option<String>,
    /// Broker of the RabbitMQ backend, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub amqp_url: Option<String>,
    /// Topic exchange of the RabbitMQ backend (default `busbar`).
    pub amqp_exchange: Option<String>,
    /// Largest payload accepted, in bytes (default: core's, docs/design.md §4).
    #[napi(ts_type = "number | string")]
    pub max_payload: Option<u32>,
    /// Messages buffered per subscription (default: core's, docs/design.md §4).
    #[napi(ts_type = "number | string")]
    pub subscription_capacity: Option<u32>,
    /// Bytes (payloads and user headers) buffered per subscription (default: core's).
    #[napi(ts_type = "number | string")]
    pub subscription_max_bytes: Option<f64>,
    /// `"block"` (default: the publisher waits) or `"lag"` (the slow subscriber misses messages).
    #[napi(ts_type = "'block' | 'lag'")]
    pub backpressure: Option<String>,
    /// CloudEvents `source` of the events this bus publishes.
    pub source: Option<String>,
    /// NATS user (with `natsPassword`).
    pub nats_user: Option<String>,
    /// NATS password (with `natsUser`).
    pub nats_password: Option<String>,
    /// NATS token.
    pub nats_token: Option<String>,
    /// Path of a NATS `.creds` file.
    pub nats_credentials: Option<String>,
    /// PEM file of root certificates to trust.
    pub nats_tls_ca: Option<String>,
    /// Client certificate (PEM, with `natsTlsKey`).
    pub nats_tls_cert: Option<String>,
    /// Client key (PEM, with `natsTlsCert`).
    pub nats_tls_key: Option<String>,
    /// RabbitMQ user (with `amqpPassword`), when `amqpUrl` carries none.
    pub amqp_user: Option<String>,
    /// RabbitMQ password (with `amqpUser`).
    pub amqp_password: Option<String>,
    /// PEM file of root certificates to trust for `amqps://`.
    pub amqp_tls_ca: Option<String>,
    /// Client certificate for RabbitMQ (PEM, with `amqpTlsKey`).
    pub amqp_tls_cert: Option<String>,
    /// Client key for RabbitMQ (PKCS#8 PEM, with `amqpTlsCert`).
    pub amqp_tls_key: Option<String>,
    /// Refuse an `amqpUrl` that is not `amqps://`.
    #[napi(ts_type = "boolean | string")]
    pub amqp_require_tls: Option<bool>,
    /// Bootstrap brokers of the Kafka backend, `host:port` separated by commas
    /// (default `127.0.0.1:9092`).
    pub kafka_brokers: Option<String>,
    /// The topic every subject of a Kafka bus is a record on (default `busbar`).
    pub kafka_topic: Option<String>,
    /// Partitions of `kafkaTopic` when the bus creates it (default 8).
    #[napi(ts_type = "number | string")]
    pub kafka_partitions: Option<u32>,
    /// `"publisher"` (default: one publisher's messages keep their order) or `"subject"`
    /// (one subject's do, and a queue group spreads over subjects).
    #[napi(ts_type = "'publisher' | 'subject'")]
    pub kafka_partition_by: Option<String>,
    /// `"plaintext"` (default), `"ssl"`, `"sasl_plaintext"` or `"sasl_ssl"`.
    pub kafka_security_protocol: Option<String>,
    /// `"PLAIN"`, `"SCRAM-SHA-256"` or `"SCRAM-SHA-512"`.
    pub kafka_sasl_mechanism: Option<String>,
    /// SASL user of the Kafka backend (with `kafkaPassword`).
    pub kafka_user: Option<String>,
    /// SASL password of the Kafka backend (never printed).
    pub kafka_password: Option<String>,
    /// PEM file of root certificates to trust for Kafka over TLS.
    pub kafka_tls_ca: Option<String>,
    /// Days a durable stream keeps messages when `declareStream` sets no `maxAgeMs`
    /// (0 = forever).
    #[napi(ts_type = "number | string")]
    pub retention_days: Option<u32>,
    /// Longest wait of a publish or `flush` on a hung NATS server, in milliseconds
    /// (default: core's, docs/design.md §8); then it rejects with code `backend`.
    #[napi(ts_type = "number | string")]
    pub publish_timeout_ms: Option<u32>,
    /// Longest wait of one attempt to connect, in milliseconds (default 5000).
    #[napi(ts_type = "number | string")]
    pub connect_timeout_ms: Option<u32>,
    /// More rounds over the NATS server list the first connect makes before failing (default 0).
    #[napi(ts_type = "number | string")]
    pub connect_retries: Option<u32>,
    /// NATS reconnect backoff: the first attempt at once, then this many milliseconds
    /// doubling per attempt (default 2), less up to a fifth at random.
    #[napi(ts_type = "number | string")]
    pub reconnect_delay_ms: Option<u32>,
    /// Longest wait between two NATS reconnect attempts, in milliseconds (default 4000).
    #[napi(ts_type = "number | string")]
    pub reconnect_max_delay_ms: Option<u32>,
    /// NATS reconnect attempts before giving up (default 0: no limit); then calls reject
    /// with code `backend`.
    #[napi(ts_type = "number | string")]
    pub max_reconnects: Option<u32>,
    /// How often the NATS client pings its server, in milliseconds (default 60000); two
    /// unanswered pings and it reconnects, to another server of the list.
    #[napi(ts_type = "number | string")]
    pub ping_interval_ms: Option<u32>,
    /// Publishes the NATS connection holds while it cannot write (default 2048).
    #[napi(ts_type = "number | string")]
    pub publish_buffer: Option<u32>,
    /// When that buffer is full: `"wait"` (default; up to `publishTimeoutMs`) or `"fail"`
    /// (reject with code `backend` at once).
    #[napi(ts_type = "'wait' | 'fail'")]
    pub publish_buffer_full: Option<String>,
    /// Consecutive failed requests to one subject that open its circuit breaker (default 0: none);
    /// then requests to it reject with code `circuit_open` until a probe succeeds.
    #[napi(ts_type = "number | string")]
    pub breaker_failures: Option<u32>,
    /// The window those failures must fall in, in milliseconds (default 30000).
    #[napi(ts_type = "number | string")]
    pub breaker_window_ms: Option<u32>,
    /// How long an open breaker rejects requests before one probe, in milliseconds (default 5000).
    #[napi(ts_type = "number | string")]
    pub breaker_cooldown_ms: Option<u32>,
    /// Subject patterns separated by spaces (`'svc.orders.* svc.billing.>'`): the subjects a
    /// pattern matches share one circuit, named by the pattern (default none).
    pub breaker_patterns: Option<String>,
    /// Most messages per second this bus publishes (fractions allowed; default none).
    #[napi(ts_type = "number | string")]
    pub publish_rate: Option<f64>,
    /// Limits per subject pattern, `pattern=rate` separated by spaces: `'orders.>=50 metrics.*=1000'`.
    pub publish_rate_limits: Option<String>,
    /// Messages a publish limit lets through at once (default 0: one second's worth).
    #[napi(ts_type = "number | string")]
    pub publish_burst: Option<u32>,
    /// `"wait"` (default) for room under a publish limit, or `"fail"`: reject with code `rate_limited`.
    #[napi(ts_type = "'wait' | 'fail'")]
    pub rate_limit_mode: Option<String>,
    /// Most messages per second each subscription yields (default none); the rest waits in its buffer.
    #[napi(ts_type = "number | string")]
    pub delivery_rate: Option<f64>,
    /// More attempts of a request that timed out, found no responders or hit `backend`, within
    /// its one timeout (default 0; idempotent requests only).
    #[napi(ts_type = "number | string")]
    pub request_retries: Option<u32>,
    /// Wait before the first retry, doubling per retry, in milliseconds (default 100).
    #[napi(ts_type = "number | string")]
    pub retry_delay_ms: Option<u32>,
    /// Longest wait between two attempts of a request, in milliseconds (default 2000).
    #[napi(ts_type = "number | string")]
    pub retry_max_delay_ms: Option<u32>,
    /// Refuse a connection without TLS.
    #[napi(ts_type = "boolean | string")]
    pub nats_require_tls: Option<bool>,
    /// Path of a policy JSON file: classes, field rules, restricted subjects, grants.
    pub policy: Option<String>,
    /// Path of a key ring JSON file (hash and encryption keys).
    pub key_ring: Option<String>,
    /// Encrypt classified fields before they leave the process (needs `keyRing`).
    #[napi(ts_type = "boolean | string")]
    pub encryption: Option<bool>,
    /// Path of the hash-chained JSON-lines audit log.
    pub audit_log: Option<String>,
    /// Name this bus subscribes and requests as under the policy (default `anonymous`).
    pub principal: Option<String>,
    /// Comma-separated roles of `principal`, e.g. `"clinician,billing"`.
    pub roles: Option<String>,
    /// `ip:port` where the bus serves `/metrics`, `/healthz` and `/readyz`
    /// (e.g. `"127.0.0.1:9464"`).
    pub metrics_addr: Option<String>,
}

/// One option as JavaScript gave it, for core's `Config::set_value`.
enum Given {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// The configuration for `options`. A wrong JavaScript type throws a `TypeError` now; a
/// value or key the core refuses is returned as its error, for the Promise to reject with.
pub(crate) fn from_options(
    env: &Env,
    url: Option<String>,
    options: Option<Unknown>,
) -> Result<busbar::Result<busbar::Config>> {
    let mut settings = Vec::new();
    let mut misspelt: Option<String> = None;
    if let Some(options) = options {
        match options.get_type()? {
            ValueType::Undefined | ValueType::Null => {}
            ValueType::Object => {
                // SAFETY: `options` is a live object handle of the current call.
                let object = unsafe { Object::from_napi_value(env.raw(), options.raw()) }?;
                for key in Object::keys(&object)? {
                    let value: Unknown = object.get_named_property(&key)?;
                    if let Some(given) = setting(env, &key, value)? {
                        if key.contains('_') {
                            // A Python or environment spelling: refused as an unknown key,
                            // with the JavaScript one (docs/design.md §9).
                            misspelt.get_or_insert(key);
                            continue;
                        }
                        settings.push((snake_case(&key), given));
                    }
                }
            }
            other => {
                return Err(type_error(
                    env,
                    format!("options must be an object, not {}", describe(other)),
                ))
            }
        }
    }
    if let Some(key) = misspelt {
        return Ok(Err(busbar::Error::InvalidArgument(format!(
            "unknown option {key}: options are camelCase in JavaScript, write {}",
            camel_case(&key)
        ))));
    }
    Ok(busbar::Config::from_env().and_then(|mut config| {
        if let Some(url) = &url {
            config.set_url(url)?;
        }
        for (key, given) in &settings {
            let value = match given {
                Given::Text(s) => ConfigValue::Text(s),
                Given::Number(n) => ConfigValue::Float(*n),
                Given::Flag(b) => ConfigValue::Bool(*b),
            };
            config.set_value(key, value)?;
        }
        Ok(config)
    }))
}

/// One option; `None` for `undefined` (not set).
fn setting(env: &Env, key: &str, value: Unknown) -> Result<Option<Given>> {
    let kind = value.get_type()?;
    // A number or boolean for a text option is a `TypeError`, not silently its string form.
    if busbar::config::is_text_key(&snake_case(key))
        && !matches!(kind, ValueType::String | ValueType::Undefined)
    {
        return Err(type_error(
            env,
            format!("option {key} must be a string, not {}", describe(kind)),
        ));
    }
    // SAFETY (each arm): `value` is a live handle of the type just checked.
    Ok(match kind {
        ValueType::Undefined => None,
        ValueType::String => Some(Given::Text(string_arg(env, key, value)?)),
        ValueType::Boolean => Some(Given::Flag(unsafe {
            bool::from_napi_value(env.raw(), value.raw())
        }?)),
        ValueType::Number => Some(Given::Number(unsafe {
            f64::from_napi_value(env.raw(), value.raw())
        }?)),
        other => {
            return Err(type_error(
                env,
                format!(
                    "option {key} must be a string, number or boolean, not {}",
                    describe(other)
                ),
            ))
        }
    })
}

/// `nats_url` → `natsUrl`.
fn camel_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.push(c.to_ascii_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// `natsUrl` → `nats_url`.
fn snake_case(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
