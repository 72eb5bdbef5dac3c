//! `Bus`: publish, subscribe, request, flush, close over an `Arc<dyn busbar::EventBus>`.

use std::collections::HashMap;
use std::sync::Arc;

use busbar::EventBus;
use napi::bindgen_prelude::*;

use crate::args::{options_arg, payload, string_arg, type_error, typed};
use crate::message::{Message, PublishOptions};
use crate::runtime::run;
use crate::subscription::{callback_batch, Callback, Notice, Subscription};

/// A connection to the bus, from `connect()`. Close it with `close()`; a bus that is
/// collected without being closed releases its resources then.
#[napi]
pub struct Bus {
    pub(crate) inner: Arc<dyn EventBus>,
}

/// Options of `request()`.
#[napi(object)]
pub(crate) struct RequestOptions {
    /// How long to wait for the reply, in milliseconds (default: core's `DEFAULT_REQUEST_TIMEOUT`).
    pub timeout: Option<f64>,
    /// User headers of the request.
    pub headers: Option<HashMap<String, String>>,
    /// CloudEvents `id` of the request, which the reply echoes as its `correlationId`
    /// (generated when absent).
    pub id: Option<String>,
}

/// Counters of a bus since it was created.
#[napi(object)]
pub struct BusStats {
    /// Messages accepted by `publish` (requests and replies included).
    pub published: f64,
    /// Message copies queued to subscriptions.
    pub delivered: f64,
    /// Copies not queued because a subscription in `lag` mode was full.
    pub missed: f64,
    /// Replies that arrived after their request had timed out.
    pub late_replies: f64,
    /// Messages on a waiting request's inbox without its correlation id (dropped).
    pub rejected_replies: f64,
    /// Messages received that could not be decoded (reported as `decode` errors).
    pub undecodable: f64,
    /// Times the NATS connection was lost (messages in flight then may be lost).
    pub disconnects: f64,
    /// Live subscriptions.
    pub subscriptions: f64,
}

impl Bus {
    pub(crate) fn new(inner: Arc<dyn EventBus>) -> Self {
        Bus { inner }
    }

    /// `subscribe`, or `queueSubscribe` when `group` is given.
    fn subscription<'env>(
        &self,
        env: &'env Env,
        pattern: Unknown,
        group: Option<Unknown>,
        callback: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let pattern = string_arg(env, "pattern", pattern)?;
        let group = group.map(|g| string_arg(env, "group", g)).transpose()?;
        let callback = callback_arg(env, callback)?;
        let bus = self.inner.clone();
        run(
            env,
            async move {
                match group {
                    Some(group) => bus.queue_subscribe(&pattern, &group).await,
                    None => bus.subscribe(&pattern).await,
                }
            },
            move |_, sub| Subscription::start(sub, callback),
        )
    }
}

#[napi]
impl Bus {
    /// `"memory"`, `"nats"` or `"rabbitmq"`.
    #[napi(getter, catch_unwind)]
    pub fn backend(&self) -> String {
        self.inner.backend().to_string()
    }

    /// Publishes `data` (Buffer, Uint8Array, string, or a value serialised as JSON) to
    /// `subject`. Resolves once the bus has taken the message.
    #[napi(
        catch_unwind,
        ts_args_type = "subject: string, data?: Payload, options?: PublishOptions",
        ts_return_type = "Promise<void>"
    )]
    pub fn publish<'env>(
        &self,
        env: &'env Env,
        subject: Unknown,
        data: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let subject = string_arg(env, "subject", subject)?;
        let payload = payload(env, data)?;
        let options = PublishOptions::from_js(env, options)?;
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.publish_with(&subject, payload, options).await },
            |_, ()| Ok(()),
        )
    }

    /// Receives every message whose subject matches `pattern`: iterate the subscription
    /// with `for await`, or pass `callback` to have it called with each message.
    #[napi(
        catch_unwind,
        ts_args_type = "pattern: string, callback?: (msg: Message) => unknown, options?: SubscribeOptions",
        ts_return_type = "Promise<Subscription>"
    )]
    pub fn subscribe<'env>(
        &self,
        env: &'env Env,
        pattern: Unknown,
        callback: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        self.subscription(env, pattern, None, callback)
    }

    /// Like `subscribe`, as one member of the queue group `group`: each message goes to
    /// one member.
    #[napi(
        catch_unwind,
        ts_args_type = "pattern: string, group: string, callback?: (msg: Message) => unknown, options?: SubscribeOptions",
        ts_return_type = "Promise<Subscription>"
    )]
    pub fn queue_subscribe<'env>(
        &self,
        env: &'env Env,
        pattern: Unknown,
        group: Unknown,
        callback: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        self.subscription(env, pattern, Some(group), callback)
    }

    /// Sends a request and resolves with the one reply. Rejects with `no_responders` at
    /// once when nothing subscribes to `subject`, with `timeout` when no reply comes in time.
    #[napi(
        catch_unwind,
        ts_args_type = "subject: string, data?: Payload, options?: RequestOptions",
        ts_return_type = "Promise<Message>"
    )]
    pub fn request<'env>(
        &self,
        env: &'env Env,
        subject: Unknown,
        data: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let subject = string_arg(env, "subject", subject)?;
        let payload = payload(env, data)?;
        let options: Option<RequestOptions> = options_arg(env, options)?;
        let (timeout, headers, id) = options.map_or((None, None, None), |o| (o.timeout, o.headers, o.id));
        // NaN, negative, infinite or huge: the core's `invalid_argument`, as a rejection.
        let timeout = timeout.map_or(Ok(busbar::publish::DEFAULT_REQUEST_TIMEOUT), |ms| {
            busbar::bounds::millis("options.timeout", ms)
        });
        let bus = self.inner.clone();
        let options = PublishOptions {
            headers,
            id,
            ..Default::default()
        };
        run(
            env,
            async move {
                bus.request_with(&subject, payload, options.into(), timeout?)
                    .await
            },
            |_, reply| Ok(Message::from(reply)),
        )
    }

    /// Resolves once everything published before has reached the bus (on NATS: a round
    /// trip through the server).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let bus = self.inner.clone();
        run(env, async move { bus.flush().await }, |_, ()| Ok(()))
    }

    /// Closes the bus: subscriptions end after what they hold, pending requests reject with
    /// `closed`, and so does every later call.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let bus = self.inner.clone();
        run(env, async move { bus.close().await }, |_, ()| Ok(()))
    }

    /// Counters of this bus.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> BusStats {
        let s = self.inner.stats();
        BusStats {
            published: s.published as f64,
            delivered: s.delivered as f64,
            missed: s.missed as f64,
            late_replies: s.late_replies as f64,
            rejected_replies: s.rejected_replies as f64,
            undecodable: s.undecodable as f64,
            disconnects: s.disconnects as f64,
            subscriptions: s.subscriptions as f64,
        }
    }
}

/// The optional callback of `subscribe`, as a threadsafe function.
fn callback_arg(env: &Env, callback: Option<Unknown>) -> Result<Option<Callback>> {
    let Some(callback) = callback else {
        return Ok(None);
    };
    match callback.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        ValueType::Function => {
            let function: Function<Vec<Either<Message, Notice>>, ()> = typed(env, "callback", callback)?;
            Ok(Some(
                function
                    .build_threadsafe_function::<Vec<busbar::Result<busbar::Message>>>()
                    .callee_handled::<false>()
                    .build_callback(|ctx| Ok(callback_batch(ctx.value)))?,
            ))
        }
        other => Err(type_error(
            env,
            format!(
                "callback must be a function, not {}",
                crate::args::describe(other)
            ),
        )),
    }
}
