//! Services (docs/design.md §5): `bus.startService(options)` starts a member of a named,
//! versioned service; `service.endpointJobs(name, subject)` adds an endpoint whose requests
//! come out as jobs (core's `Service::endpoint_jobs`), answered from JavaScript with
//! `job.reply(data)` or `job.fail(message, code)`. Counting, error replies and leaving the
//! group after failures stay in core; `busbar.js`'s `addEndpoint` is the handler loop.

use std::collections::HashMap;
use std::sync::Arc;

use napi::bindgen_prelude::*;

use crate::args::payload;
use crate::error::to_js;
use crate::message::Message;
use crate::runtime::run;

/// What `startService()` starts: a member of the service `name` at `version`.
#[napi(object)]
#[derive(Default)]
pub(crate) struct ServiceOptions {
    /// Letters, digits, `-` and `_`; shared by every member.
    pub name: String,
    /// The service's version (SemVer, e.g. `'1.0.0'`).
    pub version: String,
    /// A line for people, shown by discovery.
    pub description: Option<String>,
    /// Free key/value pairs shown by discovery.
    pub metadata: Option<HashMap<String, String>>,
    /// The queue group the endpoints subscribe in (default `'q'`).
    pub queue_group: Option<String>,
    /// Failures in a row after which this member leaves the group for `restMs` (0: never).
    pub max_failures: Option<u32>,
    /// How long a member that left rests before it comes back, in milliseconds (default 5000).
    pub rest_ms: Option<f64>,
}

impl ServiceOptions {
    pub(crate) fn config(self) -> busbar::Result<busbar::service::ServiceConfig> {
        let mut config = busbar::service::ServiceConfig::new(self.name, self.version);
        if let Some(description) = self.description {
            config = config.description(description);
        }
        if let Some(metadata) = self.metadata {
            config.metadata = metadata.into_iter().collect();
        }
        if let Some(group) = self.queue_group {
            config.queue_group = group;
        }
        let rest = match self.rest_ms {
            Some(ms) => busbar::bounds::millis("options.restMs", ms)?,
            None => config.rest,
        };
        let failures = self.max_failures.unwrap_or(config.max_failures);
        Ok(config.leave_after(failures, rest))
    }
}

/// A running member of a service: it answers discovery (`$SRV.PING`, `INFO`, `STATS`).
#[napi]
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

#[napi]
impl Service {
    /// This member's id (unique per member of the service).
    #[napi(getter, catch_unwind)]
    pub fn id(&self) -> String {
        self.inner.id().to_owned()
    }

    /// Adds endpoint `name` on `subject` (a queue subscription in the service's group) and
    /// resolves with its requests as jobs once it is subscribed. `addEndpoint(name,
    /// subject, handler)` runs a handler over them.
    #[napi(catch_unwind, ts_return_type = "Promise<ServiceJobs>")]
    pub fn endpoint_jobs<'env>(
        &self,
        env: &'env Env,
        name: String,
        subject: String,
    ) -> Result<Unknown<'env>> {
        let service = self.inner.clone();
        run(
            env,
            async move { service.endpoint_jobs(&name, &subject).await },
            |_, jobs| {
                Ok(ServiceJobs {
                    inner: Arc::new(tokio::sync::Mutex::new(jobs)),
                })
            },
        )
    }

    /// Stops answering: discovery and every endpoint (their jobs end).
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn stop<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let service = self.inner.clone();
        run(
            env,
            async move {
                service.stop().await;
                Ok(())
            },
            |_, ()| Ok(()),
        )
    }
}

/// The requests of one endpoint, in arrival order.
#[napi]
pub struct ServiceJobs {
    inner: Arc<tokio::sync::Mutex<busbar::service::Jobs>>,
}

#[napi]
impl ServiceJobs {
    /// The next request to answer; `null` once the service has stopped or the bus closed.
    #[napi(catch_unwind, ts_return_type = "Promise<ServiceJob | null>")]
    pub fn next<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let jobs = self.inner.clone();
        run(
            env,
            async move { Ok(jobs.lock().await.next().await) },
            |_, job| Ok(job.map(ServiceJob::from)),
        )
    }
}

/// One request to an endpoint, answered once: `reply(data)` or `fail(message, code)`.
/// Left unanswered, the requester gets an error reply once it is garbage collected.
#[napi]
pub struct ServiceJob {
    inner: busbar::service::JobCell,
}

impl From<busbar::service::Job> for ServiceJob {
    fn from(job: busbar::service::Job) -> Self {
        ServiceJob { inner: job.into() }
    }
}

#[napi]
impl ServiceJob {
    /// The request.
    #[napi(getter, catch_unwind)]
    pub fn request(&self) -> Message {
        Message::from(self.inner.request().clone())
    }

    /// Answers with `data` (what `publish` accepts).
    #[napi(catch_unwind, ts_args_type = "data?: Payload")]
    pub fn reply(&self, env: &Env, data: Option<Unknown>) -> Result<()> {
        let data = payload(env, data)?.data;
        self.inner.reply(data).map_err(|e| to_js(env, &e))
    }

    /// Answers with an error reply (headers `Nats-Service-Error` = `message` and
    /// `Nats-Service-Error-Code` = `code` when it is a whole number from 100 to 999, else
    /// 500); the endpoint counts the failure.
    #[napi(catch_unwind)]
    pub fn fail(&self, env: &Env, message: String, code: Option<i64>) -> Result<()> {
        self.inner.fail(message, code).map_err(|e| to_js(env, &e))
    }
}
