//! One configuration shape for every language (docs/design.md §8), built in code or read
//! from `BUSBAR_*` environment variables. Every binding funnels its options through
//! [`Config::set`], so a key means the same thing everywhere.

use std::fmt;
use std::str::FromStr;

use crate::bounds;
use crate::error::{Error, Result};

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
    /// `backend` / `BUSBAR_BACKEND`: `memory` (default), `nats` or `rabbitmq`.
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
    /// `publish_timeout_ms` / `BUSBAR_PUBLISH_TIMEOUT_MS`: longest wait of a publish (and of
    /// `flush`) for the connection to take the message, and of a durable publish for the
    /// stream's acknowledgement, in milliseconds (default 5000). Past it the call fails with
    /// `backend` (a hung or unreachable NATS server) instead of waiting on.
    pub publish_timeout_ms: u64,
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
            .field("publish_timeout_ms", &self.publish_timeout_ms)
            .field("retention_days", &self.retention_days)
            .field("encryption", &self.encryption)
            .field("policy", &self.policy)
            .field("key_ring", &self.key_ring)
            .field("audit_log", &self.audit_log)
            .field("principal", &self.principal)
            .field("roles", &self.roles)
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
/// Default `subscription_max_bytes`: 64 MiB.
pub const DEFAULT_SUBSCRIPTION_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Default `nats_url`.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

/// Default `amqp_url`: the local broker's default vhost as `guest`.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Default `amqp_exchange`.
pub const DEFAULT_AMQP_EXCHANGE: &str = "busbar";

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
    "publish_timeout_ms",
    "retention_days",
    "encryption",
    "policy",
    "key_ring",
    "audit_log",
    "principal",
    "roles",
];

/// The keys of [`KEYS`] whose value is a number or a flag; every other key takes text.
pub const NUMBER_OR_FLAG_KEYS: &[&str] = &[
    "max_payload",
    "subscription_capacity",
    "subscription_max_bytes",
    "nats_require_tls",
    "publish_timeout_ms",
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
            publish_timeout_ms: DEFAULT_PUBLISH_TIMEOUT_MS,
            retention_days: 0,
            encryption: false,
            policy: None,
            key_ring: None,
            audit_log: None,
            principal: None,
            roles: Vec::new(),
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
        Ok(())
    }
}

/// Largest `publish_timeout_ms`: one day.
pub const MAX_PUBLISH_TIMEOUT_MS: u64 = 86_400_000;

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

fn positive(key: &str, value: &str) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::InvalidArgument(format!(
            "{key} must be a whole number above 0, not {}",
            crate::error::quote(value)
        ))),
    }
}

impl FromStr for Backend {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "memory" => Ok(Backend::Memory),
            "nats" => Ok(Backend::Nats),
            "rabbitmq" => Ok(Backend::RabbitMq),
            _ => Err(Error::InvalidArgument(format!(
                "backend must be \"memory\", \"nats\" or \"rabbitmq\", not {}",
                crate::error::quote(s)
            ))),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Memory => "memory",
            Backend::Nats => "nats",
            Backend::RabbitMq => "rabbitmq",
        })
    }
}

impl FromStr for Backpressure {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "block" => Ok(Backpressure::Block),
            "lag" => Ok(Backpressure::Lag),
            _ => Err(Error::InvalidArgument(format!(
                "backpressure must be \"block\" or \"lag\", not {}",
                crate::error::quote(s)
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let err = Config::default().set("backend", "kafka").unwrap_err();
        assert!(err.to_string().contains("kafka"), "{err}");
        assert!(Config::default().set("max_payload", "0").is_err());
        let err = Config::default().set("nats_require_tls", "maybe").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
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
