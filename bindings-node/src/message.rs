//! `Message` (a received event) and the publish options of JavaScript, converted to core's.

use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::*;

use crate::args::{options_arg, payload};
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

    /// The payload decoded as UTF-8, as nats.js's `msg.string()` (the same as `text()`).
    #[napi(js_name = "string", catch_unwind)]
    pub fn string_(&self) -> String {
        self.text()
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

    /// `classification`, e.g. `"phi,pii"`.
    #[napi(getter, catch_unwind)]
    pub fn classification(&self) -> Option<&str> {
        self.event().classification()
    }

    /// `keyid`: the key that sealed protected fields; `null` when nothing is sealed.
    #[napi(getter, catch_unwind)]
    pub fn keyid(&self) -> Option<&str> {
        self.event().keyid()
    }

    /// W3C `traceparent`.
    #[napi(getter, catch_unwind)]
    pub fn traceparent(&self) -> Option<&str> {
        self.event().traceparent()
    }

    /// W3C `tracestate`.
    #[napi(getter, catch_unwind)]
    pub fn tracestate(&self) -> Option<&str> {
        self.event().tracestate()
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
        let payload = payload(env, data)?;
        let options = PublishOptions::from_js(env, options)?;
        let request = self.event().clone();
        let reply = options.reply(&request, payload);
        crate::runtime::run(
            env,
            async move { request.respond_message(reply?).await },
            |_, ()| Ok(()),
        )
    }
}

/// Attributes and headers a published message may carry (core's `PublishOptions`).
#[napi(object)]
#[derive(Default)]
pub(crate) struct PublishOptions {
    /// User headers (names are printable ASCII; `ce-*` and `content-type` are reserved).
    pub headers: Option<HashMap<String, String>>,
    /// CloudEvents `id` (generated when absent; keep it when retrying).
    pub id: Option<String>,
    /// CloudEvents `type`.
    #[napi(js_name = "type")]
    pub event_type: Option<String>,
    /// CloudEvents `datacontenttype` (replaces the one core gives JSON-serialised data).
    pub content_type: Option<String>,
    /// `correlationid`.
    pub correlation_id: Option<String>,
    /// `classification`, e.g. `"phi,pii"`, read by the policy layer.
    pub classification: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
}

impl PublishOptions {
    pub(crate) fn from_js(env: &Env, options: Option<Unknown>) -> Result<busbar::PublishOptions> {
        Ok(options_arg::<Self>(env, options)?.unwrap_or_default().into())
    }
}

impl From<PublishOptions> for busbar::PublishOptions {
    fn from(o: PublishOptions) -> Self {
        let mut out = busbar::PublishOptions::new();
        out.headers = o.headers.map(|h| h.into_iter().collect());
        out.id = o.id;
        out.event_type = o.event_type;
        out.content_type = o.content_type;
        out.correlation_id = o.correlation_id;
        out.classification = o.classification;
        out.traceparent = o.traceparent;
        out.tracestate = o.tracestate;
        out
    }
}
