//! `Message` (a received event) and the conversion of JavaScript payloads and options
//! into core messages.

use std::collections::HashMap;
use std::sync::Arc;

use busbar::MessageBuilder;
use napi::bindgen_prelude::*;

use crate::args::{options_arg, Payload};
use crate::error::to_js;

/// A received event (CloudEvents 1.0 attributes, user headers, payload). Requests can be
/// answered with `respond`; a delivery of a durable subscription is settled with `ack`,
/// `nak`, `term` (see `src/durable.rs`).
#[napi]
pub struct Message {
    pub(crate) inner: Received,
}

/// What a `Message` holds: a plain event, or a durable delivery (shared with the futures
/// that settle it).
pub(crate) enum Received {
    Plain(busbar::Message),
    Durable(Arc<busbar::DurableMessage>),
}

impl Message {
    /// The event itself, whichever way it was received.
    fn event(&self) -> &busbar::Message {
        match &self.inner {
            Received::Plain(m) => m,
            Received::Durable(d) => d.message(),
        }
    }
}

impl From<busbar::Message> for Message {
    fn from(inner: busbar::Message) -> Self {
        Message {
            inner: Received::Plain(inner),
        }
    }
}

impl From<busbar::DurableMessage> for Message {
    fn from(inner: busbar::DurableMessage) -> Self {
        Message {
            inner: Received::Durable(Arc::new(inner)),
        }
    }
}

#[napi]
impl Message {
    /// The subject it was published to.
    #[napi(getter, catch_unwind)]
    pub fn subject(&self) -> &str {
        self.event().subject()
    }

    /// The payload (a copy).
    #[napi(getter, catch_unwind)]
    pub fn data(&self) -> Buffer {
        Buffer::from(self.event().data().as_ref())
    }

    /// The payload decoded as UTF-8 (invalid sequences become U+FFFD).
    #[napi(catch_unwind)]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.event().data()).into_owned()
    }

    /// The payload parsed as JSON; throws an `Error` with code `decode` when it is not JSON.
    #[napi(catch_unwind, ts_return_type = "any")]
    pub fn json(&self, env: &Env) -> Result<serde_json::Value> {
        serde_json::from_slice(self.event().data()).map_err(|e| {
            to_js(
                env,
                &busbar::Error::Decode(format!("payload of {} is not JSON: {e}", self.event().id())),
            )
        })
    }

    /// The user headers.
    #[napi(getter, catch_unwind)]
    pub fn headers(&self) -> HashMap<String, String> {
        self.event()
            .headers()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// CloudEvents `id`: unique per event.
    #[napi(getter, catch_unwind)]
    pub fn id(&self) -> &str {
        self.event().id()
    }

    /// `correlationid`: on a reply, the `id` of its request.
    #[napi(getter, catch_unwind)]
    pub fn correlation_id(&self) -> Option<&str> {
        self.event().correlation_id()
    }

    /// Where a reply goes, for requests.
    #[napi(getter, catch_unwind)]
    pub fn reply_to(&self) -> Option<&str> {
        self.event().reply_to()
    }

    /// CloudEvents `source`.
    #[napi(getter, catch_unwind)]
    pub fn source(&self) -> &str {
        self.event().source()
    }

    /// CloudEvents `type`.
    #[napi(getter, js_name = "type", catch_unwind)]
    pub fn event_type(&self) -> &str {
        self.event().event_type()
    }

    /// CloudEvents `datacontenttype`.
    #[napi(getter, catch_unwind)]
    pub fn content_type(&self) -> Option<&str> {
        self.event().content_type()
    }

    /// CloudEvents `time`, in milliseconds since the Unix epoch.
    #[napi(getter, catch_unwind)]
    pub fn time(&self) -> f64 {
        self.event()
            .time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    }

    /// Answers this request; the reply echoes its correlation id. Rejects with
    /// `invalid_argument` when the message is not a request.
    #[napi(
        catch_unwind,
        ts_args_type = "data?: Payload, options?: PublishOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn respond<'env>(
        &self,
        env: &'env Env,
        data: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let payload = Payload::from_js(env, data)?;
        let options = PublishOptions::from_js(env, options)?;
        let request = self.event().clone();
        let reply = request
            .reply_builder()
            .and_then(|builder| options.apply(payload.apply(builder)).build());
        crate::runtime::run(
            env,
            async move { request.respond_message(reply?).await },
            |_, ()| Ok(()),
        )
    }
}

/// Attributes and headers a published message may carry.
#[napi(object)]
#[derive(Default)]
pub struct PublishOptions {
    /// User headers (names are printable ASCII; `ce-*` and `content-type` are reserved).
    pub headers: Option<HashMap<String, String>>,
    /// CloudEvents `id` (generated when absent; keep it when retrying).
    pub id: Option<String>,
    /// CloudEvents `type`.
    #[napi(js_name = "type")]
    pub event_type: Option<String>,
    /// CloudEvents `datacontenttype` (`application/json` for JSON-serialised data).
    pub content_type: Option<String>,
    /// `correlationid`.
    pub correlation_id: Option<String>,
}

impl PublishOptions {
    pub(crate) fn from_js(env: &Env, options: Option<Unknown>) -> Result<Self> {
        Ok(options_arg(env, options)?.unwrap_or_default())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.headers.is_none()
            && self.id.is_none()
            && self.event_type.is_none()
            && self.content_type.is_none()
            && self.correlation_id.is_none()
    }

    pub(crate) fn apply(self, mut builder: MessageBuilder) -> MessageBuilder {
        if let Some(headers) = self.headers {
            builder = builder.headers(headers);
        }
        if let Some(id) = self.id {
            builder = builder.id(id);
        }
        if let Some(t) = self.event_type {
            builder = builder.event_type(t);
        }
        if let Some(ct) = self.content_type {
            builder = builder.content_type(ct);
        }
        if let Some(c) = self.correlation_id {
            builder = builder.correlation_id(c);
        }
        builder
    }
}
