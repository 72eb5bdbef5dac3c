//! Services (docs/design.md §5): `bus.start_service(name, version, ...)` starts a member of
//! a named, versioned service; `service.add_endpoint(name, subject, handler)` adds an
//! endpoint whose requests come out as jobs (core's `Service::endpoint_jobs`), which the
//! package's `_with_endpoint` task hands to the handler and answers. Counting, error
//! replies and leaving the group after failures stay in core.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyInt};

use crate::args;
use crate::error::to_py;
use crate::message::Message;
use crate::runtime;

/// A running member of a service: it answers discovery (`$SRV.PING`, `INFO`, `STATS`).
#[pyclass(frozen, module = "busbar", name = "Service")]
pub struct Service {
    inner: Arc<busbar::service::Service>,
}

impl From<busbar::service::Service> for Service {
    fn from(service: busbar::service::Service) -> Self {
        Service {
            inner: Arc::new(service),
        }
    }
}

/// The keywords of `start_service` as core's `ServiceConfig`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn config(
    name: &Bound<'_, PyAny>,
    version: &Bound<'_, PyAny>,
    description: Option<&Bound<'_, PyAny>>,
    metadata: Option<&Bound<'_, PyAny>>,
    queue_group: Option<&Bound<'_, PyAny>>,
    max_failures: Option<&Bound<'_, PyAny>>,
    rest: Option<&Bound<'_, PyAny>>,
) -> PyResult<busbar::service::ServiceConfig> {
    const CALL: &str = "start_service()";
    let text = |v: &Bound<'_, PyAny>, what: &str| {
        Ok::<_, PyErr>(args::text(v, &format!("{CALL}: {what}"))?.to_owned())
    };
    let mut config = busbar::service::ServiceConfig::new(text(name, "name")?, text(version, "version")?);
    if let Some(d) = args::given(description) {
        config = config.description(text(d, "description")?);
    }
    if let Some(m) = args::headers(metadata, &format!("{CALL}: metadata"))? {
        config.metadata = m;
    }
    if let Some(g) = args::given(queue_group) {
        config.queue_group = text(g, "queue_group")?;
    }
    let failures = args::count::<u32>(max_failures, &format!("{CALL}: max_failures"))?;
    let rest = args::duration(rest, &format!("{CALL}: rest"))?;
    let (failures, rest) = (
        failures.unwrap_or(config.max_failures),
        rest.unwrap_or(config.rest),
    );
    Ok(config.leave_after(failures, rest))
}

#[pymethods]
impl Service {
    /// This member's id (unique per member of the service).
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }

    /// Adds endpoint `name` on `subject` (a queue subscription in the service's group) and
    /// answers its requests with `handler(request)` (it may be async): its value is the
    /// reply, as data for `publish`; a handler that raises answers with an error reply
    /// (headers `Nats-Service-Error` = the exception's text, `Nats-Service-Error-Code` = its
    /// `code` attribute when that is an int from 100 to 999, else 500), counted by the
    /// endpoint. Awaitable: returns once the endpoint is subscribed.
    fn add_endpoint<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        subject: &Bound<'py, PyAny>,
        handler: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        const CALL: &str = "add_endpoint()";
        if !handler.is_callable() {
            return Err(args::type_error(&format!("{CALL}: handler"), "callable", handler));
        }
        let jobs = self.endpoint_jobs(py, name, subject)?;
        py.import("busbar")?
            .getattr("_with_endpoint")?
            .call1((jobs, handler))
    }

    /// Adds endpoint `name` on `subject` and returns its requests as jobs, for a handler
    /// loop of one's own (`add_endpoint` runs one). Awaitable.
    fn endpoint_jobs<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        subject: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let name = args::text(name, "endpoint_jobs(): name")?.to_owned();
        let subject = args::text(subject, "endpoint_jobs(): subject")?.to_owned();
        let service = self.inner.clone();
        runtime::run(py, async move {
            let jobs = service.endpoint_jobs(&name, &subject).await?;
            Ok(ServiceJobs {
                inner: Arc::new(tokio::sync::Mutex::new(jobs)),
            })
        })
    }

    /// Stops answering: discovery and every endpoint (their jobs end). Awaitable.
    fn stop<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let service = self.inner.clone();
        runtime::run(py, async move {
            service.stop().await;
            Ok(())
        })
    }

    fn __repr__(&self) -> String {
        format!("<busbar.Service id={:?}>", self.inner.id())
    }
}

/// The requests of one endpoint, in arrival order.
#[pyclass(frozen, module = "busbar", name = "ServiceJobs")]
pub struct ServiceJobs {
    inner: Arc<tokio::sync::Mutex<busbar::service::Jobs>>,
}

#[pymethods]
impl ServiceJobs {
    /// The next request to answer; `None` once the service has stopped or the bus
    /// closed. Awaitable.
    fn next<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let jobs = self.inner.clone();
        runtime::run(py, async move {
            Ok(jobs.lock().await.next().await.map(ServiceJob::from))
        })
    }
}

/// One request to an endpoint, answered once: `reply(data)` or `fail(message, code)`.
/// Left unanswered, the requester gets an error reply once it is garbage collected.
#[pyclass(frozen, module = "busbar", name = "ServiceJob")]
pub struct ServiceJob {
    inner: busbar::service::JobCell,
}

impl From<busbar::service::Job> for ServiceJob {
    fn from(job: busbar::service::Job) -> Self {
        ServiceJob { inner: job.into() }
    }
}

#[pymethods]
impl ServiceJob {
    /// The request.
    #[getter]
    fn request(&self) -> Message {
        Message::from(self.inner.request().clone())
    }

    /// Answers with `data` (what `publish` accepts).
    #[pyo3(signature = (data = None))]
    fn reply(&self, data: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let data = args::payload(data)?.data;
        self.inner.reply(data).map_err(to_py)
    }

    /// Answers with an error reply (headers `Nats-Service-Error` = `message` and
    /// `Nats-Service-Error-Code` = `code` when it is an int from 100 to 999, else 500); the
    /// endpoint counts the failure.
    #[pyo3(signature = (message, code = None))]
    fn fail(&self, message: &Bound<'_, PyAny>, code: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let message = args::text(message, "fail(): message")?.to_owned();
        let code = match args::given(code) {
            None => None,
            Some(c) if c.is_instance_of::<PyInt>() && !c.is_instance_of::<PyBool>() => {
                Some(c.extract::<i64>().unwrap_or(i64::MAX))
            }
            Some(c) => return Err(args::type_error("fail(): code", "an int", c)),
        };
        self.inner.fail(message, code).map_err(to_py)
    }
}
