//! `Bus`: publish, subscribe, request, flush, close over an `Arc<dyn busbar::EventBus>`.

use std::collections::HashMap;
use std::sync::Arc;

use busbar::EventBus;
use napi::bindgen_prelude::*;

use crate::args::{options_arg, payload, refuse_renamed, string_arg, type_error, typed};
use crate::message::{Message, PublishOptions};
use crate::runtime::run;
use crate::subscription::{callback_batch, Callback, Notice, Subscription, MAX_BATCH};

/// A connection to the bus, from `connect()`. Close it with `close()`; a bus that is
/// collected without being closed releases its resources then.
#[napi]
pub struct Bus {
    pub(crate) inner: Arc<dyn EventBus>,
    /// The same bus as its policy layer, when the configuration asked for one.
    policy: Option<Arc<busbar::policy::PolicyBus>>,
}

/// Options of `subscribeAs()`.
#[napi(object)]
pub(crate) struct SubscribeAsOptions {
    /// Roles of the principal (granted classes by the policy).
    pub roles: Option<Vec<String>>,
    /// Subscribe as one member of this queue group.
    pub queue_group: Option<String>,
    /// Receive only messages carrying one of these classes.
    pub classes: Option<Vec<String>>,
    /// Receive only messages whose user headers have all of these values.
    pub headers: Option<HashMap<String, String>>,
}

/// The checked messages of `publishBatch(items)`: subject, payload and options of each,
/// converted before any is published. A wrong type is a `TypeError` naming the item.
fn publish_items(
    env: &Env,
    items: Unknown,
) -> Result<Vec<(String, busbar::Payload, busbar::PublishOptions)>> {
    if !items.is_array()? {
        let got = crate::args::describe(items.get_type()?);
        return Err(type_error(env, format!("items must be an array, not {got}")));
    }
    // SAFETY: `items` is a live array handle of the current call.
    let array = unsafe { Array::from_napi_value(env.raw(), items.raw()) }?;
    let mut batch = Vec::with_capacity(array.len() as usize);
    for i in 0..array.len() {
        let item: Unknown = array
            .get(i)?
            .ok_or_else(|| type_error(env, format!("items[{i}] is missing")))?;
        if item.get_type()? != ValueType::Object || item.is_array()? {
            let got = crate::args::describe(item.get_type()?);
            return Err(type_error(
                env,
                format!("items[{i}] must be an object {{ subject, data?, options? }}, not {got}"),
            ));
        }
        // SAFETY: `item` is a live object handle of the current call.
        let object = unsafe { Object::from_napi_value(env.raw(), item.raw()) }?;
        let subject = string_arg(
            env,
            &format!("items[{i}].subject"),
            object.get_named_property("subject")?,
        )?;
        let data: Unknown = object.get_named_property("data")?;
        let options: Unknown = object.get_named_property("options")?;
        batch.push((
            subject,
            payload(env, Some(data))?,
            PublishOptions::from_js(env, Some(options))?,
        ));
    }
    Ok(batch)
}

/// Options of `discover()`.
#[napi(object)]
#[derive(Default)]
pub(crate) struct DiscoverOptions {
    /// Only the services of this name.
    pub name: Option<String>,
    /// How long to gather answers, in milliseconds (default 1000).
    pub wait_ms: Option<f64>,
}

/// Options of `requestAs()`.
#[napi(object)]
#[derive(Default)]
pub(crate) struct RequestAsOptions {
    /// Roles of the principal (granted classes by the policy).
    pub roles: Option<Vec<String>>,
    /// How long to wait for the reply, in milliseconds (default 5 s).
    pub timeout_ms: Option<f64>,
    /// User headers of the request.
    pub headers: Option<HashMap<String, String>>,
    /// CloudEvents `id` of the request, which the reply echoes as its `correlationId`.
    pub id: Option<String>,
    /// W3C `traceparent` of the request (`busbar/otel`'s `instrument()` sets it).
    pub traceparent: Option<String>,
    /// W3C `tracestate` of the request.
    pub tracestate: Option<String>,
}

/// Counters of the policy layer.
#[napi(object, object_from_js = false)]
pub struct PolicyStats {
    /// Messages published through it.
    pub published: f64,
    /// Of those, messages whose fields or payload were encrypted.
    pub encrypted: f64,
    /// Messages delivered to policy subscriptions.
    pub delivered: f64,
    /// Of those, deliveries in which a field was masked.
    pub masked: f64,
    /// Classified messages not delivered because they could not be masked.
    pub withheld: f64,
    /// Subscriptions refused with `forbidden`.
    pub denied: f64,
    /// Messages that failed to decrypt.
    pub crypto_errors: f64,
    /// Messages skipped by a class or header filter.
    pub filtered: f64,
    /// Reply-inbox messages a wildcard subscription matched and did not receive.
    pub inbox_skipped: f64,
}

/// What `verifyAudit()` found.
#[napi(object, object_from_js = false)]
pub struct AuditReport {
    /// Whether the log is intact.
    pub ok: bool,
    /// Records read.
    pub records: f64,
    /// One text per problem found.
    pub problems: Vec<String>,
}

/// Options of `request()`.
#[napi(object)]
#[derive(Default)]
pub(crate) struct RequestOptions {
    /// How long to wait for the reply, in milliseconds (default: core's `DEFAULT_REQUEST_TIMEOUT`,
    /// 5 s). `timeout` without `Ms` is refused with a `TypeError` (docs/design.md §9).
    pub timeout_ms: Option<f64>,
    /// User headers of the request.
    pub headers: Option<HashMap<String, String>>,
    /// CloudEvents `id` of the request, which the reply echoes as its `correlationId`
    /// (generated when absent).
    pub id: Option<String>,
    /// W3C `traceparent` of the request (`busbar/otel`'s `instrument()` sets it).
    pub traceparent: Option<String>,
    /// W3C `tracestate` of the request.
    pub tracestate: Option<String>,
}

/// What `request` and `requestAs` send besides the payload: the timeout (a bad value is
/// core's `invalid_argument`, rejected with the call's Promise) and the message options.
fn request_parts(
    timeout_ms: Option<f64>,
    headers: Option<HashMap<String, String>>,
    id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
) -> (busbar::Result<std::time::Duration>, busbar::PublishOptions) {
    // NaN, negative, infinite or huge: the core's `invalid_argument`, as a rejection.
    let timeout = timeout_ms.map_or(Ok(busbar::publish::DEFAULT_REQUEST_TIMEOUT), |ms| {
        busbar::bounds::millis("options.timeoutMs", ms)
    });
    let options = PublishOptions {
        headers,
        id,
        traceparent,
        tracestate,
        ..Default::default()
    };
    (timeout, options.into())
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

/// A bus's health now (see `Bus.health()`).
#[napi(object)]
pub struct Health {
    /// `"connected"`, `"disconnected"` or `"closed"`.
    pub state: String,
    /// Whether the bus can carry traffic now (connected): what `/readyz` answers.
    pub ready: bool,
    /// The last error the connection reported, if any.
    pub last_error: Option<String>,
    /// Requests (and flushes) waiting for their reply now.
    pub pending_requests: f64,
    /// Live subscriptions.
    pub subscriptions: f64,
    /// Of those, subscriptions that missed messages since they last caught up.
    pub lagging_subscriptions: f64,
    /// Request circuits open or half-open now (0 when the breaker is off).
    pub open_circuits: f64,
    /// The subjects of the first 100 of them, in order.
    pub open_circuit_subjects: Vec<String>,
}

impl Bus {
    pub(crate) fn new(connected: busbar::Connected) -> Self {
        Bus {
            inner: connected.bus,
            policy: connected.policy,
        }
    }

    /// The policy layer, or `invalid_argument` naming `call` and how to get one.
    pub(crate) fn policy(&self, call: &str) -> busbar::Result<Arc<busbar::policy::PolicyBus>> {
        self.policy.clone().ok_or_else(|| {
            busbar::Error::InvalidArgument(format!(
                "{call} needs the policy layer: connect with policy, keyRing, encryption, auditLog, principal or roles"
            ))
        })
    }

    /// `subscribe`, or `queueSubscribe` when `group` is given.
    fn subscription<'env>(
        &self,
        env: &'env Env,
        pattern: Unknown,
        group: Option<Unknown>,
        callback: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let pattern = string_arg(env, "pattern", pattern)?;
        let group = group.map(|g| string_arg(env, "group", g)).transpose()?;
        let callback = callback_arg(env, callback)?;
        let batch = callback_batch_size(env, options, callback.is_some())?;
        let bus = self.inner.clone();
        run(
            env,
            async move {
                match group {
                    Some(group) => bus.queue_subscribe(&pattern, &group).await,
                    None => bus.subscribe(&pattern).await,
                }
            },
            move |_, sub| Subscription::start(sub, callback, batch),
        )
    }
}

#[napi]
impl Bus {
    /// `"memory"`, `"nats"`, `"rabbitmq"` or `"kafka"`.
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

    /// Publishes `items` in order in one call (one crossing into the native module for a
    /// burst), each as `publish` would, and resolves with how many were published. Every
    /// item is checked before any is sent: a bad one publishes nothing. The first publish
    /// that fails stops the batch: the Promise rejects with its error, whose `published`
    /// says how many went before it (`items[published]` failed; the rest were not tried).
    #[napi(
        catch_unwind,
        ts_args_type = "items: Array<PublishItem>",
        ts_return_type = "Promise<number>"
    )]
    pub fn publish_batch<'env>(&self, env: &'env Env, items: Unknown) -> Result<Unknown<'env>> {
        let batch = publish_items(env, items)?;
        let bus = self.inner.clone();
        run(
            env,
            async move { Ok(busbar::publish_batch(bus.as_ref(), batch).await) },
            |env, (published, result)| match result {
                Ok(()) => Ok(published as u32),
                Err(e) => Err(crate::error::to_js_published(env, &e, published)),
            },
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
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        self.subscription(env, pattern, None, callback, options)
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
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        self.subscription(env, pattern, Some(group), callback, options)
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
        refuse_renamed(env, options.as_ref(), &[("timeout", "timeoutMs")])?;
        let o: RequestOptions = options_arg(env, options)?.unwrap_or_default();
        let (timeout, options) = request_parts(o.timeout_ms, o.headers, o.id, o.traceparent, o.tracestate);
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.request_with(&subject, payload, options, timeout?).await },
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

    /// Subscribes to `pattern` as `principal` under the policy: rejects with `forbidden`
    /// where no role may read; only messages carrying one of `options.classes` and all of
    /// `options.headers` are delivered, each masked for the principal.
    #[napi(
        catch_unwind,
        ts_args_type = "principal: string, pattern: string, options?: SubscribeAsOptions",
        ts_return_type = "Promise<Subscription>"
    )]
    pub fn subscribe_as<'env>(
        &self,
        env: &'env Env,
        principal: Unknown,
        pattern: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let name = string_arg(env, "principal", principal)?;
        let pattern = string_arg(env, "pattern", pattern)?;
        let o: Option<SubscribeAsOptions> = options_arg(env, options)?;
        let mut opts = busbar::policy::SubscribeOptions::new();
        let mut roles = Vec::new();
        if let Some(o) = o {
            roles = o.roles.unwrap_or_default();
            if let Some(group) = &o.queue_group {
                opts = opts.queue_group(group);
            }
            for class in o.classes.unwrap_or_default() {
                opts = opts.class(&class);
            }
            for (k, v) in o.headers.unwrap_or_default() {
                opts = opts.header(&k, &v);
            }
        }
        let who = busbar::policy::Principal::new(&name, roles);
        let policy = self.policy("subscribeAs()");
        run(
            env,
            async move { policy?.subscribe_with(&who, &pattern, opts).await },
            move |_, sub| Subscription::start(sub, None, MAX_BATCH),
        )
    }

    /// `request` as `principal`: the reply is masked for the principal; rejects with
    /// `forbidden` where no role may read the subject.
    #[napi(
        catch_unwind,
        ts_args_type = "principal: string, subject: string, data?: Payload, options?: RequestAsOptions",
        ts_return_type = "Promise<Message>"
    )]
    pub fn request_as<'env>(
        &self,
        env: &'env Env,
        principal: Unknown,
        subject: Unknown,
        data: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let name = string_arg(env, "principal", principal)?;
        let subject = string_arg(env, "subject", subject)?;
        let payload = payload(env, data)?;
        refuse_renamed(env, options.as_ref(), &[("timeout", "timeoutMs")])?;
        let o: RequestAsOptions = options_arg(env, options)?.unwrap_or_default();
        let (timeout, options) = request_parts(o.timeout_ms, o.headers, o.id, o.traceparent, o.tracestate);
        let who = busbar::policy::Principal::new(&name, o.roles.unwrap_or_default());
        let policy = self.policy("requestAs()");
        run(
            env,
            async move {
                let policy = policy?;
                let request = options.build(policy.message(&subject), payload)?;
                policy.request_as(&who, request, timeout?).await
            },
            |_, reply| Ok(Message::from(reply)),
        )
    }

    /// Counters of the policy layer; throws `invalid_argument` without one.
    #[napi(catch_unwind)]
    pub fn policy_stats(&self, env: &Env) -> Result<PolicyStats> {
        let s = self
            .policy("policyStats()")
            .map_err(|e| crate::error::to_js(env, &e))?
            .policy_stats();
        Ok(PolicyStats {
            published: s.published as f64,
            encrypted: s.encrypted as f64,
            delivered: s.delivered as f64,
            masked: s.masked as f64,
            withheld: s.withheld as f64,
            denied: s.denied as f64,
            crypto_errors: s.crypto_errors as f64,
            filtered: s.filtered as f64,
            inbox_skipped: s.inbox_skipped as f64,
        })
    }

    /// Verifies the bus's audit log (hash chain and head); throws `invalid_argument`
    /// without one.
    #[napi(catch_unwind)]
    pub fn verify_audit(&self, env: &Env) -> Result<AuditReport> {
        let report = self
            .policy("verifyAudit()")
            .and_then(|p| {
                p.audit_log()
                    .ok_or_else(|| {
                        busbar::Error::InvalidArgument(
                            "verifyAudit() needs an audit log: connect with auditLog".into(),
                        )
                    })?
                    .verify()
            })
            .map_err(|e| crate::error::to_js(env, &e))?;
        Ok(AuditReport {
            ok: report.is_ok(),
            records: report.records as f64,
            problems: report
                .problems
                .iter()
                .map(|p| format!("line {}: {}", p.line, p.detail))
                .collect(),
        })
    }

    /// Ends the bus gracefully (as nats.js's `drain()`): what was published reaches the bus,
    /// then it closes; subscriptions end after what they hold.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn drain<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let bus = self.inner.clone();
        run(env, async move { bus.drain().await }, |_, ()| Ok(()))
    }

    /// The changes of the bus's connection from now on: iterate with `for await`
    /// (`kind`: `'disconnected'`, `'connected'`, `'slow_consumer'`, `'lame_duck'`,
    /// `'server_error'`, ...). It ends when the bus is gone; on a bus without a connection
    /// (the in-memory bus) at once. `status()` yields the same as nats.js's shape.
    #[napi(catch_unwind)]
    pub fn connection_events(&self) -> ConnectionEvents {
        ConnectionEvents {
            events: Arc::new(tokio::sync::Mutex::new(self.inner.connection_events())),
        }
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

    /// This bus's metrics as OpenMetrics text, the format Prometheus scrapes
    /// (docs/guide/observability.md lists the series).
    #[napi(catch_unwind)]
    pub fn metrics(&self) -> String {
        self.inner.metrics()
    }

    /// Asks every service (or those named `options.name`) for `verb` (`'PING'` by default,
    /// `'INFO'` or `'STATS'`) and resolves with the answers that arrive within
    /// `options.waitMs` (default 1000), objects in the NATS services protocol's JSON: busbar
    /// services in any language and any other NATS service alike.
    #[napi(
        catch_unwind,
        ts_args_type = "verb?: 'PING' | 'INFO' | 'STATS', options?: DiscoverOptions",
        ts_return_type = "Promise<Array<Record<string, any>>>"
    )]
    pub fn discover<'env>(
        &self,
        env: &'env Env,
        verb: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let verb = match verb {
            Some(v) if !matches!(v.get_type()?, ValueType::Undefined | ValueType::Null) => {
                Some(string_arg(env, "verb", v)?)
            }
            _ => None,
        };
        let o: DiscoverOptions = options_arg(env, options)?.unwrap_or_default();
        let wait = o
            .wait_ms
            .map_or(Ok(busbar::service::DEFAULT_DISCOVERY_WAIT), |ms| {
                busbar::bounds::millis("options.waitMs", ms)
            });
        let bus = self.inner.clone();
        run(
            env,
            async move {
                let verb = busbar::service::Verb::parse_or_default(verb.as_deref())?;
                busbar::service::discover(&*bus, verb, o.name.as_deref(), wait?).await
            },
            |_, found| Ok(found),
        )
    }

    /// Starts a member of the service `options.name` at `options.version` on this bus: it
    /// answers discovery (`$SRV.PING`, `INFO`, `STATS`) from now on. Add endpoints with
    /// `service.addEndpoint(name, subject, handler)`.
    #[napi(
        catch_unwind,
        ts_args_type = "options: ServiceOptions",
        ts_return_type = "Promise<Service>"
    )]
    pub fn start_service<'env>(&self, env: &'env Env, options: Option<Unknown>) -> Result<Unknown<'env>> {
        let options: crate::service::ServiceOptions = options_arg(env, options)?.unwrap_or_default();
        let config = options.config();
        let bus = self.inner.clone();
        run(
            env,
            async move { busbar::service::Service::start(bus, config?).await },
            |_, service| Ok(crate::service::Service::from(service)),
        )
    }

    /// The bus's health now: connection state, last error, pending requests, lagging
    /// subscriptions, open request circuits.
    #[napi(catch_unwind)]
    pub fn health(&self) -> Health {
        let h = self.inner.health();
        Health {
            state: h.state.to_string(),
            ready: h.ready(),
            last_error: h.last_error,
            pending_requests: h.pending_requests as f64,
            subscriptions: h.subscriptions as f64,
            lagging_subscriptions: h.lagging_subscriptions as f64,
            open_circuits: h.open_circuits as f64,
            open_circuit_subjects: h.open_circuit_subjects,
        }
    }
}

/// The `batchSize` option of a callback subscription: the most messages handed to the
/// callback's JavaScript in one native call (default and most: [`MAX_BATCH`]). A number
/// that is not a whole count from 1 to `MAX_BATCH` is `invalid_argument`; another type, or
/// `batchSize` without a callback (iteration picks its own with `nextBatch(max)`), a
/// `TypeError`.
fn callback_batch_size(env: &Env, options: Option<Unknown>, callback: bool) -> Result<usize> {
    let Some(options) = options else {
        return Ok(MAX_BATCH);
    };
    match options.get_type()? {
        ValueType::Undefined | ValueType::Null => return Ok(MAX_BATCH),
        ValueType::Object if !options.is_array()? => {}
        other => {
            let got = crate::args::describe(other);
            return Err(type_error(env, format!("options must be an object, not {got}")));
        }
    }
    // SAFETY: `options` is a live object handle of the current call.
    let object = unsafe { Object::from_napi_value(env.raw(), options.raw()) }?;
    let size: Unknown = object.get_named_property("batchSize")?;
    match size.get_type()? {
        ValueType::Undefined => Ok(MAX_BATCH),
        ValueType::Number if callback => {
            let n: f64 = typed(env, "options.batchSize", size)?;
            let n = busbar::bounds::whole("options.batchSize", n, MAX_BATCH as u64)
                .and_then(|n| match n {
                    0 => Err(busbar::Error::InvalidArgument(
                        "options.batchSize must be at least 1".into(),
                    )),
                    n => Ok(n as usize),
                })
                .map_err(|e| crate::error::to_js(env, &e))?;
            Ok(n)
        }
        ValueType::Number => Err(type_error(
            env,
            "options.batchSize applies to a callback subscription: an iterated one reads with nextBatch(max)"
                .into(),
        )),
        other => {
            let got = crate::args::describe(other);
            Err(type_error(
                env,
                format!("options.batchSize must be a number, not {got}"),
            ))
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

/// One change of a bus's connection.
#[napi(object, object_from_js = false)]
pub(crate) struct ConnectionEvent {
    /// `'connected'`, `'disconnected'`, `'lame_duck'`, `'draining'`, `'closed'`,
    /// `'slow_consumer'`, `'server_error'`, `'client_error'`, `'circuit_open'`, `'circuit_half_open'` or `'circuit_closed'`.
    pub kind: String,
    /// The server's or client's message of an error event.
    pub detail: Option<String>,
}

/// The connection events of a bus, from `bus.connectionEvents()`: an async iterator.
#[napi]
pub struct ConnectionEvents {
    events: Arc<tokio::sync::Mutex<Option<tokio::sync::broadcast::Receiver<busbar::ConnectionEvent>>>>,
}

#[napi]
impl ConnectionEvents {
    /// The next event; `null` once the bus is gone.
    #[napi(catch_unwind, ts_return_type = "Promise<ConnectionEvent | null>")]
    pub fn next_event<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let events = self.events.clone();
        run(
            env,
            async move {
                let mut guard = events.lock().await;
                let next = match guard.as_mut() {
                    Some(rx) => busbar::next_connection_event(rx).await,
                    None => None,
                };
                if next.is_none() {
                    guard.take();
                }
                Ok(next.map(|e| ConnectionEvent {
                    kind: e.kind().to_owned(),
                    detail: e.detail().map(str::to_owned),
                }))
            },
            |_, event| Ok(event),
        )
    }
}
