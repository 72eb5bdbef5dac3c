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
    /// `"memory"` (default), `"nats"` or `"rabbitmq"`.
    #[napi(ts_type = "'memory' | 'nats' | 'rabbitmq'")]
    pub backend: Option<String>,
    /// Server of the NATS backend, e.g. `nats://127.0.0.1:4222`.
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
    /// Days a durable stream keeps messages when `declareStream` sets no `maxAgeMs`
    /// (0 = forever).
    #[napi(ts_type = "number | string")]
    pub retention_days: Option<u32>,
    /// Longest wait of a publish or `flush` on a hung NATS server, in milliseconds
    /// (default: core's, docs/design.md §8); then it rejects with code `backend`.
    #[napi(ts_type = "number | string")]
    pub publish_timeout_ms: Option<u32>,
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
}

/// One option as JavaScript gave it, for core's `Config::set_value`.
enum Given {
    Text(String),
    Number(f64),
    Flag(bool),
}

/// The configuration for `options`. A wrong JavaScript type throws a `TypeError` now; a
/// value or key the core refuses is returned as its error, for the Promise to reject with.
pub(crate) fn from_options(env: &Env, options: Option<Unknown>) -> Result<busbar::Result<busbar::Config>> {
    let mut settings = Vec::new();
    if let Some(options) = options {
        match options.get_type()? {
            ValueType::Undefined | ValueType::Null => {}
            ValueType::Object => {
                // SAFETY: `options` is a live object handle of the current call.
                let object = unsafe { Object::from_napi_value(env.raw(), options.raw()) }?;
                for key in Object::keys(&object)? {
                    let value: Unknown = object.get_named_property(&key)?;
                    if let Some(given) = setting(env, &key, value)? {
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
    Ok(busbar::Config::from_env().and_then(|mut config| {
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
