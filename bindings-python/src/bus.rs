//! `busbar.Bus`: the EventBus calls as awaitables.

use std::sync::Arc;

use busbar::EventBus;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{self, PublishKw};
use crate::durable;
use crate::error::to_py;
use crate::message::Message;
use crate::runtime::{self, Ready};
use crate::subscription::Subscription;

/// A connected bus. Use it as `async with await busbar.connect() as bus:` to close it.
#[pyclass(frozen, module = "busbar", name = "Bus")]
pub struct Bus {
    bus: Arc<dyn EventBus>,
    /// The same bus as its policy layer, when the configuration asked for one.
    policy: Option<Arc<busbar::policy::PolicyBus>>,
}

impl Bus {
    pub(crate) fn new(connected: busbar::Connected) -> Self {
        Bus {
            bus: connected.bus,
            policy: connected.policy,
        }
    }

    /// The policy layer, or `invalid_argument` naming `call` and how to get one.
    fn policy(&self, call: &str) -> PyResult<Arc<busbar::policy::PolicyBus>> {
        self.policy.clone().ok_or_else(|| {
            to_py(busbar::Error::InvalidArgument(format!(
                "{call} needs the policy layer: connect with policy=, key_ring=, encryption=, audit_log=, principal= or roles="
            )))
        })
    }
}

/// A principal from its name and roles (one str or a list of them).
fn principal(
    name: &Bound<'_, PyAny>,
    roles: Option<&Bound<'_, PyAny>>,
    call: &str,
) -> PyResult<busbar::policy::Principal> {
    let name = args::text(name, &format!("{call}: principal"))?;
    let roles = match args::given(roles) {
        Some(r) => args::texts(r, &format!("{call}: roles"))?,
        None => Vec::new(),
    };
    Ok(busbar::policy::Principal::new(name, roles))
}

/// What `publish_batch` ends with: the count, or the error that stopped it, raised with
/// `.published` set (made on the event loop's thread, where the exception object exists).
struct Published {
    published: usize,
    error: Option<busbar::Error>,
}

impl<'py> IntoPyObject<'py> for Published {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.error {
            None => Ok(self.published.into_pyobject(py)?.into_any()),
            Some(e) => {
                let err = crate::error::to_py(e);
                err.value(py).setattr("published", self.published)?;
                Err(err)
            }
        }
    }
}

#[pymethods]
impl Bus {
    /// Publishes `data` (bytes, str, or a JSON-serialisable object) to `subject`, with
    /// optional attributes and headers (core's `PublishOptions`).
    #[pyo3(signature = (subject, data = None, *, headers = None, id = None, event_type = None, content_type = None, correlation_id = None, classification = None, traceparent = None, tracestate = None))]
    #[allow(clippy::too_many_arguments)]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
        event_type: Option<&Bound<'py, PyAny>>,
        content_type: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        classification: Option<&Bound<'py, PyAny>>,
        traceparent: Option<&Bound<'py, PyAny>>,
        tracestate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let subject = args::text(subject, "publish(): subject")?.to_owned();
        let options = PublishKw {
            headers,
            id,
            event_type,
            content_type,
            correlation_id,
            classification,
            traceparent,
            tracestate,
        }
        .options("publish()")?;
        let payload = args::payload(data)?;
        let bus = self.bus.clone();
        runtime::run(
            py,
            async move { bus.publish_with(&subject, payload, options).await },
        )
    }

    /// Publishes `items` in order in one call (one crossing into the native module for a
    /// burst), each as `publish` would, and returns how many were published. Each item is
    /// `(subject, data)` or `(subject, data, options)`, `options` a dict of `publish`'s
    /// keywords; every item is checked before any is sent, so a bad one publishes nothing.
    /// The first publish that fails stops the batch and is raised, with `.published`: how
    /// many went before it (`items[published]` failed; the rest were not tried). Awaitable.
    fn publish_batch<'py>(&self, py: Python<'py>, items: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let batch = args::publish_items(items)?;
        let bus = self.bus.clone();
        runtime::run(py, async move {
            let (published, result) = busbar::publish_batch(bus.as_ref(), batch).await;
            Ok(Published {
                published,
                error: result.err(),
            })
        })
    }

    /// Receives every message whose subject matches `pattern`: iterate the subscription
    /// with `async for`, or give `cb` (nats-py's habit), called with each message (it may
    /// be async). Awaitable.
    #[pyo3(signature = (pattern, *, cb = None))]
    fn subscribe<'py>(
        &self,
        py: Python<'py>,
        pattern: &Bound<'py, PyAny>,
        cb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pattern = args::text(pattern, "subscribe(): pattern")?.to_owned();
        let cb = callback(cb, "subscribe()")?;
        let bus = self.bus.clone();
        let pending = runtime::run(
            py,
            async move { bus.subscribe(&pattern).await.map(Subscription::new) },
        )?;
        with_callback(pending, cb)
    }

    /// Receives matching messages as one member of `group`; `cb` as for `subscribe`. Awaitable.
    #[pyo3(signature = (pattern, group, *, cb = None))]
    fn queue_subscribe<'py>(
        &self,
        py: Python<'py>,
        pattern: &Bound<'py, PyAny>,
        group: &Bound<'py, PyAny>,
        cb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pattern = args::text(pattern, "queue_subscribe(): pattern")?.to_owned();
        let group = args::text(group, "queue_subscribe(): group")?.to_owned();
        let cb = callback(cb, "queue_subscribe()")?;
        let bus = self.bus.clone();
        let pending = runtime::run(py, async move {
            bus.queue_subscribe(&pattern, &group).await.map(Subscription::new)
        })?;
        with_callback(pending, cb)
    }

    /// Ends the bus gracefully (nats-py's `drain()`): what was published reaches the bus,
    /// then it closes; subscriptions end after what they hold. Awaitable.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bus = self.bus.clone();
        runtime::run(py, async move { bus.drain().await })
    }

    /// Sends a request and returns the reply `Message`; raises `NoResponders` at once when
    /// nothing listens, `Timeout` after `timeout` seconds (`None`: core's default). `id` is
    /// the request's id, which the reply echoes as its `correlation_id`. Awaitable.
    #[pyo3(signature = (subject, data = None, *, timeout = None, headers = None, id = None))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // NaN, negative, infinite or huge: core's `invalid_argument`, raised by the
        // awaitable, as JavaScript rejects its Promise (docs/design.md §9).
        let timeout = timeout.map_or(Ok(busbar::publish::DEFAULT_REQUEST_TIMEOUT), |t| {
            busbar::bounds::seconds("timeout", t)
        });
        let options = PublishKw {
            headers,
            id,
            ..PublishKw::default()
        }
        .options("request()")?;
        let payload = args::payload(data)?;
        let subject = args::text(subject, "request(): subject")?.to_owned();
        let bus = self.bus.clone();
        runtime::run(py, async move {
            bus.request_with(&subject, payload, options, timeout?)
                .await
                .map(Message::from)
        })
    }

    /// Declares a durable stream over subject patterns (idempotent); returns its
    /// `StreamInfo`. Durations in seconds. Awaitable.
    #[pyo3(signature = (name, subjects, *, max_age = None, max_bytes = None, max_messages = None, duplicate_window = None))]
    #[allow(clippy::too_many_arguments)]
    fn declare_stream<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        subjects: &Bound<'py, PyAny>,
        max_age: Option<&Bound<'py, PyAny>>,
        max_bytes: Option<&Bound<'py, PyAny>>,
        max_messages: Option<&Bound<'py, PyAny>>,
        duplicate_window: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limits = durable::StreamLimits {
            max_age,
            max_bytes,
            max_messages,
            duplicate_window,
        };
        durable::declare_stream(py, &self.bus, name, subjects, limits)
    }

    /// What a durable stream holds now, as a `StreamInfo`. Awaitable.
    fn stream_info<'py>(&self, py: Python<'py>, name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        durable::stream_info(py, &self.bus, name)
    }

    /// Every durable stream, sorted by name, as a list of `StreamInfo`. Awaitable.
    fn list_streams<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        durable::list_streams(py, &self.bus)
    }

    /// Deletes a durable stream with its messages and consumers. Awaitable.
    fn delete_stream<'py>(&self, py: Python<'py>, name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        durable::delete_stream(py, &self.bus, name)
    }

    /// The durable consumers of a stream, sorted by name, as a list of `ConsumerInfo`.
    /// Awaitable.
    fn list_consumers<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        durable::list_consumers(py, &self.bus, stream)
    }

    /// Where a durable consumer stands now, as a `ConsumerInfo`. Awaitable.
    fn consumer_info<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        durable::consumer_info(py, &self.bus, stream, name)
    }

    /// Deletes a durable consumer of a stream. Awaitable.
    fn delete_consumer<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        durable::delete_consumer(py, &self.bus, stream, name)
    }

    /// Stores a message in the durable stream that captures `subject` and returns the
    /// `PublishAck`; a repeated `id` inside the dedupe window is stored once. Takes the
    /// keywords of `publish`. Awaitable.
    #[pyo3(signature = (subject, data = None, *, headers = None, id = None, event_type = None, content_type = None, correlation_id = None, classification = None, traceparent = None, tracestate = None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_durable<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
        event_type: Option<&Bound<'py, PyAny>>,
        content_type: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        classification: Option<&Bound<'py, PyAny>>,
        traceparent: Option<&Bound<'py, PyAny>>,
        tracestate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kw = PublishKw {
            headers,
            id,
            event_type,
            content_type,
            correlation_id,
            classification,
            traceparent,
            tracestate,
        };
        durable::publish_durable(py, &self.bus, subject, data, kw)
    }

    /// Opens durable consumer `name` on `stream`: a `DurableSubscription`. Awaitable.
    #[pyo3(signature = (stream, name, *, filter = None, start = None, ack_wait = None, max_deliver = None, backoff = None, dlq_prefix = None, rate_limit = None, max_ack_pending = None))]
    #[allow(clippy::too_many_arguments)]
    fn durable_subscribe<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
        filter: Option<&Bound<'py, PyAny>>,
        start: Option<&Bound<'py, PyAny>>,
        ack_wait: Option<&Bound<'py, PyAny>>,
        max_deliver: Option<&Bound<'py, PyAny>>,
        backoff: Option<&Bound<'py, PyAny>>,
        dlq_prefix: Option<&Bound<'py, PyAny>>,
        rate_limit: Option<&Bound<'py, PyAny>>,
        max_ack_pending: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = durable::ConsumerKw {
            filter,
            start,
            ack_wait,
            max_deliver,
            backoff,
            dlq_prefix,
            rate_limit,
            max_ack_pending,
        };
        durable::durable_subscribe(py, &self.bus, stream, name, options)
    }

    /// `durable_subscribe` as `principal` with `roles` under the policy: a `filter`
    /// overlapping a subject no role may read is `forbidden`; each message is masked for
    /// the principal, and one it may not see is withheld (acked, counted). Awaitable.
    #[pyo3(signature = (principal, stream, name, *, roles = None, filter = None, start = None, ack_wait = None, max_deliver = None, backoff = None, dlq_prefix = None, rate_limit = None, max_ack_pending = None))]
    #[allow(clippy::too_many_arguments)]
    fn durable_subscribe_as<'py>(
        &self,
        py: Python<'py>,
        principal: &Bound<'py, PyAny>,
        stream: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
        roles: Option<&Bound<'py, PyAny>>,
        filter: Option<&Bound<'py, PyAny>>,
        start: Option<&Bound<'py, PyAny>>,
        ack_wait: Option<&Bound<'py, PyAny>>,
        max_deliver: Option<&Bound<'py, PyAny>>,
        backoff: Option<&Bound<'py, PyAny>>,
        dlq_prefix: Option<&Bound<'py, PyAny>>,
        rate_limit: Option<&Bound<'py, PyAny>>,
        max_ack_pending: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        const CALL: &str = "durable_subscribe_as()";
        let who = self::principal(principal, roles, CALL)?;
        let policy = self.policy(CALL)?;
        let options = durable::ConsumerKw {
            filter,
            start,
            ack_wait,
            max_deliver,
            backoff,
            dlq_prefix,
            rate_limit,
            max_ack_pending,
        };
        durable::durable_subscribe_as(py, policy, who, stream, name, options)
    }

    /// Returns once everything published before has reached the bus (on NATS: the server).
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bus = self.bus.clone();
        runtime::run(py, async move { bus.flush().await })
    }

    /// Closes the bus: subscriptions end after what they hold; later calls raise `Closed`.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bus = self.bus.clone();
        runtime::run(py, async move { bus.close().await })
    }

    /// Subscribes to `pattern` as `principal` with `roles` under the policy: `forbidden`
    /// where no role may read; only messages carrying one of `classes` (if given) and all
    /// of `headers` (if given) are delivered, each masked for the principal. Awaitable.
    #[pyo3(signature = (principal, pattern, *, roles = None, queue_group = None, classes = None, headers = None))]
    #[allow(clippy::too_many_arguments)]
    fn subscribe_as<'py>(
        &self,
        py: Python<'py>,
        principal: &Bound<'py, PyAny>,
        pattern: &Bound<'py, PyAny>,
        roles: Option<&Bound<'py, PyAny>>,
        queue_group: Option<&Bound<'py, PyAny>>,
        classes: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        const CALL: &str = "subscribe_as()";
        let who = self::principal(principal, roles, CALL)?;
        let pattern = args::text(pattern, &format!("{CALL}: pattern"))?.to_owned();
        let mut options = busbar::policy::SubscribeOptions::new();
        if let Some(group) = args::given(queue_group) {
            options = options.queue_group(args::text(group, &format!("{CALL}: queue_group"))?);
        }
        if let Some(classes) = args::given(classes) {
            for class in args::texts(classes, &format!("{CALL}: classes"))? {
                options = options.class(&class);
            }
        }
        for (name, value) in args::headers(headers, &format!("{CALL}: headers"))?.unwrap_or_default() {
            options = options.header(&name, &value);
        }
        let policy = self.policy(CALL)?;
        runtime::run(py, async move {
            policy
                .subscribe_with(&who, &pattern, options)
                .await
                .map(Subscription::new)
        })
    }

    /// `request` as `principal` with `roles`: the reply is masked for the principal, and
    /// `forbidden` where no role may read the subject. Awaitable.
    #[pyo3(signature = (principal, subject, data = None, *, roles = None, timeout = None, headers = None, id = None))]
    #[allow(clippy::too_many_arguments)]
    fn request_as<'py>(
        &self,
        py: Python<'py>,
        principal: &Bound<'py, PyAny>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        roles: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        const CALL: &str = "request_as()";
        let who = self::principal(principal, roles, CALL)?;
        let timeout = timeout.map_or(Ok(busbar::publish::DEFAULT_REQUEST_TIMEOUT), |t| {
            busbar::bounds::seconds("timeout", t)
        });
        let options = PublishKw {
            headers,
            id,
            ..PublishKw::default()
        }
        .options(CALL)?;
        let subject = args::text(subject, &format!("{CALL}: subject"))?.to_owned();
        let payload = args::payload(data)?;
        let policy = self.policy(CALL)?;
        runtime::run(py, async move {
            let request = options.build(policy.message(&subject), payload)?;
            policy
                .request_as(&who, request, timeout?)
                .await
                .map(Message::from)
        })
    }

    /// Counters of the policy layer: published, encrypted, delivered, masked, withheld,
    /// denied, crypto_errors, filtered, inbox_skipped.
    fn policy_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.policy("policy_stats()")?.policy_stats();
        let dict = PyDict::new(py);
        dict.set_item("published", s.published)?;
        dict.set_item("encrypted", s.encrypted)?;
        dict.set_item("delivered", s.delivered)?;
        dict.set_item("masked", s.masked)?;
        dict.set_item("withheld", s.withheld)?;
        dict.set_item("denied", s.denied)?;
        dict.set_item("crypto_errors", s.crypto_errors)?;
        dict.set_item("filtered", s.filtered)?;
        dict.set_item("inbox_skipped", s.inbox_skipped)?;
        Ok(dict)
    }

    /// Verifies the bus's audit log (its hash chain and head): a dict with `ok`,
    /// `records` and `problems` (one text per problem found). `invalid_argument` without
    /// an audit log.
    fn verify_audit<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let policy = self.policy("verify_audit()")?;
        let log = policy.audit_log().ok_or_else(|| {
            to_py(busbar::Error::InvalidArgument(
                "verify_audit() needs an audit log: connect with audit_log=".into(),
            ))
        })?;
        let report = log.verify().map_err(to_py)?;
        let dict = PyDict::new(py);
        dict.set_item("ok", report.is_ok())?;
        dict.set_item("records", report.records)?;
        let problems: Vec<String> = report
            .problems
            .iter()
            .map(|p| format!("line {}: {}", p.line, p.detail))
            .collect();
        dict.set_item("problems", problems)?;
        Ok(dict)
    }

    /// The changes of the bus's connection from now on, as an async iterator of
    /// `ConnectionEvent`s (`kind`: `"disconnected"`, `"connected"`, `"slow_consumer"`,
    /// `"lame_duck"`, `"server_error"`, ...; `detail`). It ends when the bus is gone; on a
    /// bus without a connection (the in-memory bus) at once.
    fn connection_events(&self) -> ConnectionEvents {
        ConnectionEvents {
            events: Arc::new(tokio::sync::Mutex::new(self.bus.connection_events())),
        }
    }

    /// `"memory"`, `"nats"`, `"rabbitmq"` or `"kafka"`.
    #[getter]
    fn backend(&self) -> String {
        self.bus.backend().to_string()
    }

    /// Starts a member of the service `name` at `version` on this bus: it answers discovery
    /// (`$SRV.PING`, `INFO`, `STATS`) from now on. `max_failures` failures in a row take it
    /// out of the group for `rest` seconds (0: never). Add endpoints with
    /// `service.add_endpoint(name, subject, handler)`. Awaitable.
    #[pyo3(signature = (name, version, *, description = None, metadata = None, queue_group = None, max_failures = None, rest = None))]
    #[allow(clippy::too_many_arguments)]
    fn start_service<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        version: &Bound<'py, PyAny>,
        description: Option<&Bound<'py, PyAny>>,
        metadata: Option<&Bound<'py, PyAny>>,
        queue_group: Option<&Bound<'py, PyAny>>,
        max_failures: Option<&Bound<'py, PyAny>>,
        rest: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let config = crate::service::config(
            name,
            version,
            description,
            metadata,
            queue_group,
            max_failures,
            rest,
        )?;
        let bus = self.bus.clone();
        runtime::run(py, async move {
            busbar::service::Service::start(bus, config)
                .await
                .map(crate::service::Service::from)
        })
    }

    /// Asks every service (or those named `name`) for `verb` (`"PING"`, `"INFO"` or
    /// `"STATS"`) and returns the answers that arrive within `wait` seconds (default 1),
    /// as dicts in the NATS services protocol's JSON: busbar services in any language and
    /// any other NATS service alike. Awaitable.
    #[pyo3(signature = (verb = None, *, name = None, wait = None))]
    fn discover<'py>(
        &self,
        py: Python<'py>,
        verb: Option<&Bound<'py, PyAny>>,
        name: Option<&Bound<'py, PyAny>>,
        wait: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        const CALL: &str = "discover()";
        let verb = args::given(verb)
            .map(|v| Ok::<_, PyErr>(args::text(v, &format!("{CALL}: verb"))?.to_owned()))
            .transpose()?;
        let name = args::given(name)
            .map(|n| Ok::<_, PyErr>(args::text(n, &format!("{CALL}: name"))?.to_owned()))
            .transpose()?;
        let wait = args::duration(wait, &format!("{CALL}: wait"))?
            .unwrap_or(busbar::service::DEFAULT_DISCOVERY_WAIT);
        let bus = self.bus.clone();
        runtime::run(py, async move {
            let verb = busbar::service::Verb::parse_or_default(verb.as_deref())?;
            let found = busbar::service::discover(&*bus, verb, name.as_deref(), wait).await?;
            let items: Vec<String> = found.iter().map(ToString::to_string).collect();
            Ok(args::JsonText(format!("[{}]", items.join(","))))
        })
    }

    /// Whether the bus is connected now (`health()["ready"]`; nats-py's `is_connected`).
    #[getter]
    fn is_connected(&self) -> bool {
        self.bus.health().ready()
    }

    /// Whether the bus has been closed (by `close()` or `drain()`; nats-py's `is_closed`).
    #[getter]
    fn is_closed(&self) -> bool {
        self.bus.health().state == busbar::ConnectionState::Closed
    }

    /// Counters of this bus: published, delivered, missed, late_replies, rejected_replies,
    /// undecodable, disconnects, subscriptions.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.bus.stats();
        let dict = PyDict::new(py);
        dict.set_item("published", s.published)?;
        dict.set_item("delivered", s.delivered)?;
        dict.set_item("missed", s.missed)?;
        dict.set_item("late_replies", s.late_replies)?;
        dict.set_item("rejected_replies", s.rejected_replies)?;
        dict.set_item("undecodable", s.undecodable)?;
        dict.set_item("disconnects", s.disconnects)?;
        dict.set_item("subscriptions", s.subscriptions)?;
        Ok(dict)
    }

    /// This bus's metrics as OpenMetrics text, the format Prometheus scrapes
    /// (docs/guide/observability.md lists the series).
    fn metrics(&self, py: Python<'_>) -> String {
        py.detach(|| self.bus.metrics())
    }

    /// The bus's health now: state ("connected", "disconnected", "closed"), ready,
    /// last_error (or None), pending_requests, subscriptions, lagging_subscriptions,
    /// open_circuits, open_circuit_subjects (a list, at most 100).
    fn health<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let h = self.bus.health();
        let dict = PyDict::new(py);
        dict.set_item("state", h.state.to_string())?;
        dict.set_item("ready", h.ready())?;
        dict.set_item("last_error", h.last_error)?;
        dict.set_item("pending_requests", h.pending_requests)?;
        dict.set_item("subscriptions", h.subscriptions)?;
        dict.set_item("lagging_subscriptions", h.lagging_subscriptions)?;
        dict.set_item("open_circuits", h.open_circuits)?;
        dict.set_item("open_circuit_subjects", h.open_circuit_subjects)?;
        Ok(dict)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Ready::value(slf.py(), slf.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.close(py)
    }

    fn __repr__(&self) -> String {
        format!("<busbar.Bus backend={}>", self.bus.backend())
    }
}

/// `cb=` checked before the call starts (a wrong `cb` must not leave a subscription
/// being made that nobody awaits): `None` for none, a TypeError unless callable.
fn callback<'a, 'py>(
    cb: Option<&'a Bound<'py, PyAny>>,
    what: &str,
) -> PyResult<Option<&'a Bound<'py, PyAny>>> {
    match cb.filter(|cb| !cb.is_none()) {
        Some(cb) if !cb.is_callable() => Err(args::type_error(&format!("{what}: cb"), "callable", cb)),
        cb => Ok(cb),
    }
}

/// `pending` (the awaitable of a subscription), or with `cb` (checked by [`callback`]) the
/// coroutine of the package's `_with_callback`, which starts a task handing each message
/// to `cb` (nats-py's habit).
fn with_callback<'py>(
    pending: Bound<'py, PyAny>,
    cb: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let Some(cb) = cb else {
        return Ok(pending);
    };
    let py = pending.py();
    py.import("busbar")?
        .getattr("_with_callback")?
        .call1((pending, cb))
}

/// One change of a bus's connection (core's `ConnectionEvent`).
#[pyclass(frozen, module = "busbar", name = "ConnectionEvent")]
pub struct ConnectionEvent {
    /// `"connected"`, `"disconnected"`, `"lame_duck"`, `"draining"`, `"closed"`,
    /// `"slow_consumer"`, `"server_error"`, `"client_error"`, `"circuit_open"`, `"circuit_half_open"` or `"circuit_closed"`.
    #[pyo3(get)]
    kind: String,
    /// The server's or client's message of an error event, else `None`.
    #[pyo3(get)]
    detail: Option<String>,
}

#[pymethods]
impl ConnectionEvent {
    fn __repr__(&self) -> String {
        match &self.detail {
            Some(d) => format!("<busbar.ConnectionEvent {} {d:?}>", self.kind),
            None => format!("<busbar.ConnectionEvent {}>", self.kind),
        }
    }
}

/// `async for event in bus.connection_events()`: the bus's connection events.
#[pyclass(frozen, module = "busbar", name = "ConnectionEvents")]
pub struct ConnectionEvents {
    events: Arc<tokio::sync::Mutex<Option<tokio::sync::broadcast::Receiver<busbar::ConnectionEvent>>>>,
}

#[pymethods]
impl ConnectionEvents {
    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next event; `StopAsyncIteration` once the bus is gone (at once in memory).
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let events = self.events.clone();
        runtime::spawn(py, async move {
            let mut guard = events.lock().await;
            let next = match guard.as_mut() {
                Some(rx) => busbar::next_connection_event(rx).await,
                None => None,
            };
            match next {
                Some(event) => Ok(ConnectionEvent {
                    kind: event.kind().to_owned(),
                    detail: event.detail().map(str::to_owned),
                }),
                None => {
                    guard.take();
                    Err(pyo3::exceptions::PyStopAsyncIteration::new_err(()))
                }
            }
        })
    }
}
