//! Services with discovery, the NATS way (docs/design.md §5): a named, versioned service
//! answers `$SRV.PING`, `$SRV.INFO` and `$SRV.STATS` (each also `.<name>` and
//! `.<name>.<id>`) with the JSON of the NATS services protocol (micro v1), so async-nats'
//! and nats.js' service clients and the `nats micro` tooling see a busbar service, and
//! [`discover`] sees theirs. Endpoints are queue subscriptions (group `q` by default), so
//! the members of a service share the load; a member whose handler fails
//! `max_failures` times in a row takes itself out of the group for `rest`, then comes back.
//! It runs over any [`EventBus`], the in-memory one included.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::bus::EventBus;
use crate::envelope::Message;
use crate::error::{Error, Result};
use crate::subject::validate_pattern;

/// The header of an error reply (NATS services protocol): its text.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// The header of an error reply: its numeric code.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// What a service is: its name and version, and how its endpoints behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServiceConfig {
    /// Letters, digits, `-` and `_` (the protocol's rule); shared by every member.
    pub name: String,
    /// The service's version (SemVer, e.g. `1.0.0`).
    pub version: String,
    /// A line for people.
    pub description: String,
    /// Free key/value pairs shown by discovery.
    pub metadata: BTreeMap<String, String>,
    /// The queue group of its endpoints (default `q`, the protocol's).
    pub queue_group: String,
    /// Consecutive handler failures after which a member leaves the queue group for
    /// `rest` (default 0: it never leaves).
    pub max_failures: u32,
    /// How long a member that failed `max_failures` times stays out (default 5 s).
    pub rest: Duration,
}

impl ServiceConfig {
    /// A service `name` at `version`, with the defaults.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        ServiceConfig {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            metadata: BTreeMap::new(),
            queue_group: "q".to_owned(),
            max_failures: 0,
            rest: Duration::from_secs(5),
        }
    }

    /// Sets `description`.
    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    /// Sets `max_failures` and `rest`: the responder side of the breaker.
    pub fn leave_after(mut self, failures: u32, rest: Duration) -> Self {
        self.max_failures = failures;
        self.rest = rest;
        self
    }

    fn check(&self) -> Result<()> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 256
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(Error::InvalidArgument(format!(
                "service name {} must be 1 to 256 letters, digits, '-' or '_'",
                crate::error::quote(&self.name)
            )));
        }
        if self.version.is_empty() || self.version.len() > 256 || self.version.contains(char::is_whitespace) {
            return Err(Error::InvalidArgument(format!(
                "service version {} must be a SemVer version such as 1.0.0",
                crate::error::quote(&self.version)
            )));
        }
        crate::subject::validate_queue_group(&self.queue_group)?;
        crate::bounds::duration("service rest", self.rest).map(drop)
    }
}

/// The failure of a request, as a handler reports it: the requester gets an error reply
/// (headers `Nats-Service-Error`/`-Code`), and the endpoint counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    /// A status code, HTTP-like (`500` by default).
    pub code: u16,
    /// What went wrong, for the requester.
    pub message: String,
}

impl ServiceError {
    /// An error reply with code 500.
    pub fn new(message: impl Into<String>) -> Self {
        ServiceError {
            code: 500,
            message: message.into(),
        }
    }
}

#[derive(Default)]
struct Counts {
    requests: u64,
    errors: u64,
    processing: Duration,
    last_error: String,
}

struct Endpoint {
    name: String,
    subject: String,
    counts: Mutex<Counts>,
}

struct Shared {
    config: ServiceConfig,
    id: String,
    started: String,
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
}

/// A running service; [`Service::stop`] (or dropping it) ends its subscriptions.
pub struct Service {
    bus: Arc<dyn EventBus>,
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.shared.config.name)
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// How long [`discover`] gathers answers when a binding's caller names no wait.
pub const DEFAULT_DISCOVERY_WAIT: Duration = Duration::from_secs(1);

const UNANSWERED: &str = "the handler ended without answering";

/// One request to an endpoint made with [`Service::endpoint_jobs`], to be answered once:
/// [`Job::reply`] or [`Job::fail`]. Dropped unanswered, it is an error reply.
#[derive(Debug)]
pub struct Job {
    request: Message,
    answer: Option<tokio::sync::oneshot::Sender<std::result::Result<Bytes, ServiceError>>>,
}

impl Job {
    /// The request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    /// Answers with `data`.
    pub fn reply(mut self, data: Bytes) {
        self.settle(Ok(data));
    }

    /// Answers with an error reply (and counts the failure).
    pub fn fail(mut self, error: ServiceError) {
        self.settle(Err(error));
    }

    fn settle(&mut self, outcome: std::result::Result<Bytes, ServiceError>) {
        if let Some(answer) = self.answer.take() {
            let _ = answer.send(outcome);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.settle(Err(ServiceError::new(UNANSWERED)));
    }
}

/// A [`Job`] held where only shared references reach it (a binding's object): answered
/// once through `&self`; a second answer is `invalid_argument`.
#[derive(Debug)]
pub struct JobCell {
    request: Message,
    job: Mutex<Option<Job>>,
}

impl From<Job> for JobCell {
    fn from(job: Job) -> Self {
        JobCell {
            request: job.request().clone(),
            job: Mutex::new(Some(job)),
        }
    }
}

impl JobCell {
    /// The request.
    pub fn request(&self) -> &Message {
        &self.request
    }

    fn take(&self) -> Result<Job> {
        self.job
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "the request on {:?} has been answered already",
                    self.request.subject()
                ))
            })
    }

    /// Answers with `data`.
    pub fn reply(&self, data: Bytes) -> Result<()> {
        self.take()?.reply(data);
        Ok(())
    }

    /// Answers with an error reply: `message`, and `code` when it is a whole number from
    /// 100 to 999 (HTTP-like), else 500 (a handler's error may carry any code, or none).
    pub fn fail(&self, message: String, code: Option<i64>) -> Result<()> {
        let code = code
            .filter(|c| (100..=999).contains(c))
            .and_then(|c| u16::try_from(c).ok())
            .unwrap_or(500);
        self.take()?.fail(ServiceError { code, message });
        Ok(())
    }
}

/// The requests of an endpoint made with [`Service::endpoint_jobs`], in arrival order.
#[derive(Debug)]
pub struct Jobs {
    taken: tokio::sync::mpsc::Receiver<Job>,
}

impl Jobs {
    /// The next request; `None` once the service has stopped or the bus closed.
    pub async fn next(&mut self) -> Option<Job> {
        self.taken.recv().await
    }
}

/// The three discovery requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verb {
    /// `$SRV.PING`: name, id, version. The verb when none is named.
    #[default]
    Ping,
    /// `$SRV.INFO`: also the description and endpoints.
    Info,
    /// `$SRV.STATS`: also each endpoint's counts.
    Stats,
}

impl Verb {
    /// The verb named `text` (`PING`, `INFO` or `STATS`, any case): how every binding
    /// reads its argument.
    pub fn parse(text: &str) -> Result<Verb> {
        match text.to_ascii_uppercase().as_str() {
            "PING" => Ok(Verb::Ping),
            "INFO" => Ok(Verb::Info),
            "STATS" => Ok(Verb::Stats),
            _ => Err(Error::InvalidArgument(format!(
                "discovery verb must be PING, INFO or STATS, not {}",
                crate::error::quote(text)
            ))),
        }
    }

    /// The verb named `text`, or [`Verb::Ping`] when none is named (a NULL, `None` or
    /// `undefined` argument).
    pub fn parse_or_default(text: Option<&str>) -> Result<Verb> {
        text.map_or(Ok(Verb::default()), Verb::parse)
    }

    fn as_str(self) -> &'static str {
        match self {
            Verb::Ping => "PING",
            Verb::Info => "INFO",
            Verb::Stats => "STATS",
        }
    }
}

impl Shared {
    fn answer(&self, verb: Verb) -> Value {
        let c = &self.config;
        let mut body = json!({
            "name": c.name,
            "id": self.id,
            "version": c.version,
            "metadata": c.metadata,
        });
        let endpoints = self.endpoints.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let extra = match verb {
            Verb::Ping => json!({"type": "io.nats.micro.v1.ping_response"}),
            Verb::Info => json!({
                "type": "io.nats.micro.v1.info_response",
                "description": c.description,
                "endpoints": endpoints.iter().map(|e| json!({
                    "name": e.name, "subject": e.subject, "queue_group": c.queue_group, "metadata": {},
                })).collect::<Vec<_>>(),
            }),
            Verb::Stats => json!({
                "type": "io.nats.micro.v1.stats_response",
                "started": self.started,
                "endpoints": endpoints.iter().map(|e| {
                    let n = e.counts.lock().unwrap_or_else(|p| p.into_inner());
                    let total = u64::try_from(n.processing.as_nanos()).unwrap_or(u64::MAX);
                    json!({
                        "name": e.name, "subject": e.subject, "queue_group": c.queue_group,
                        "num_requests": n.requests, "num_errors": n.errors,
                        "last_error": n.last_error,
                        "processing_time": total,
                        "average_processing_time": total.checked_div(n.requests).unwrap_or(0),
                    })
                }).collect::<Vec<_>>(),
            }),
        };
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        body
    }
}

impl Service {
    /// Registers the service on `bus`: it answers discovery from now on.
    pub async fn start(bus: Arc<dyn EventBus>, config: ServiceConfig) -> Result<Service> {
        config.check()?;
        let started = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| Error::InvalidArgument(format!("the clock: {e}")))?;
        let shared = Arc::new(Shared {
            id: uuid::Uuid::new_v4().simple().to_string(),
            started,
            endpoints: Mutex::new(Vec::new()),
            config,
        });
        let service = Service {
            bus: bus.clone(),
            shared: shared.clone(),
            tasks: Mutex::new(Vec::new()),
        };
        for verb in [Verb::Ping, Verb::Info, Verb::Stats] {
            let v = verb.as_str();
            let (name, id) = (&shared.config.name, &shared.id);
            for subject in [
                format!("$SRV.{v}"),
                format!("$SRV.{v}.{name}"),
                format!("$SRV.{v}.{name}.{id}"),
            ] {
                let mut sub = bus.subscribe(&subject).await?;
                let shared = shared.clone();
                service.spawn(async move {
                    while let Some(item) = sub.next().await {
                        let Ok(request) = item else { continue };
                        if request.reply_to().is_some() {
                            let _ = request.respond(shared.answer(verb).to_string()).await;
                        }
                    }
                });
            }
        }
        Ok(service)
    }

    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tokio::spawn(task));
    }

    /// This member's id (unique per member of the service).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Adds endpoint `name` on `subject` (a queue subscription in the service's group) and
    /// answers its requests with `handler`: `Ok(bytes)` is the reply, `Err` an error reply.
    /// Returns once it is subscribed.
    pub async fn endpoint<F, Fut>(&self, name: &str, subject: &str, mut handler: F) -> Result<()>
    where
        F: FnMut(Message) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<Bytes, ServiceError>> + Send + 'static,
    {
        validate_pattern(subject)?;
        let endpoint = Arc::new(Endpoint {
            name: name.to_owned(),
            subject: subject.to_owned(),
            counts: Mutex::new(Counts::default()),
        });
        let group = self.shared.config.queue_group.clone();
        let mut sub = self.bus.queue_subscribe(subject, &group).await?;
        self.shared
            .endpoints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(endpoint.clone());
        let (bus, config) = (self.bus.clone(), self.shared.config.clone());
        self.spawn(async move {
            loop {
                let (mut failures, mut leaving) = (0, false);
                while let Some(item) = sub.next().await {
                    let Ok(request) = item else { continue };
                    let started = Instant::now();
                    let outcome = handler(request.clone()).await;
                    {
                        let mut n = endpoint.counts.lock().unwrap_or_else(|p| p.into_inner());
                        n.requests += 1;
                        n.processing += started.elapsed();
                        match &outcome {
                            Ok(_) => failures = 0,
                            Err(e) => {
                                n.errors += 1;
                                n.last_error = format!("{}:{}", e.code, e.message);
                                failures += 1;
                            }
                        }
                    }
                    if !leaving && config.max_failures > 0 && failures >= config.max_failures {
                        // Failing repeatedly: out of the group before this reply goes out,
                        // so the other members take the next requests; what was already
                        // routed here is still answered as the stream yields it.
                        leaving = true;
                        let _ = sub.handle().drain().await;
                    }
                    if let Some(reply) = reply_for(&request, outcome) {
                        let _ = request.respond_message(reply).await;
                    }
                }
                if !leaving {
                    return; // The subscription ended (the bus closed).
                }
                drop(sub);
                tokio::time::sleep(config.rest).await;
                sub = match bus.queue_subscribe(&endpoint.subject, &config.queue_group).await {
                    Ok(sub) => sub,
                    Err(_) => return,
                };
            }
        });
        Ok(())
    }

    /// Adds endpoint `name` on `subject` as [`Service::endpoint`] does, and hands each of
    /// its requests out as a [`Job`] through the returned [`Jobs`] instead of calling a Rust
    /// handler: how a language binding runs an endpoint whose handler lives in its own event
    /// loop. The counting, the error replies and leaving the group after failures stay
    /// here; a job dropped unanswered is an error reply (`500`, "the handler ended without
    /// answering"), and once the [`Jobs`] are dropped every request gets one.
    pub async fn endpoint_jobs(&self, name: &str, subject: &str) -> Result<Jobs> {
        // One job waits to be taken at a time: the endpoint's subscription buffers the rest.
        let (jobs, taken) = tokio::sync::mpsc::channel::<Job>(1);
        self.endpoint(name, subject, move |request| {
            let jobs = jobs.clone();
            async move {
                let (answer, answered) = tokio::sync::oneshot::channel();
                let job = Job {
                    request,
                    answer: Some(answer),
                };
                if jobs.send(job).await.is_err() {
                    return Err(ServiceError::new("the endpoint's handler is gone"));
                }
                answered
                    .await
                    .unwrap_or_else(|_| Err(ServiceError::new(UNANSWERED)))
            }
        })
        .await?;
        Ok(Jobs { taken })
    }

    /// Stops answering: discovery and every endpoint.
    pub async fn stop(&self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain(..) {
            task.abort();
        }
    }
}

/// The reply to `request` for what its handler returned (none if it wants none).
fn reply_for(request: &Message, outcome: std::result::Result<Bytes, ServiceError>) -> Option<Message> {
    let builder = request.reply_builder().ok()?;
    match outcome {
        Ok(data) => builder.data(data).build().ok(),
        Err(e) => builder
            .header(SERVICE_ERROR, e.message)
            .header(SERVICE_ERROR_CODE, e.code.to_string())
            .build()
            .ok(),
    }
}

/// Asks every service (or those named `name`) on `bus` for `verb` and gathers the answers
/// that arrive within `wait`, as JSON: busbar services and any other NATS service alike.
pub async fn discover(
    bus: &dyn EventBus,
    verb: Verb,
    name: Option<&str>,
    wait: Duration,
) -> Result<Vec<Value>> {
    let subject = match name {
        Some(name) => format!("$SRV.{}.{name}", verb.as_str()),
        None => format!("$SRV.{}", verb.as_str()),
    };
    crate::subject::validate_subject(&subject)?;
    let inbox = format!("_INBOX.{}", uuid::Uuid::new_v4().simple());
    let mut answers = bus.subscribe(&inbox).await?;
    bus.publish_message(bus.message(&subject).reply_to(inbox).build()?)
        .await?;
    let deadline = tokio::time::Instant::now() + crate::bounds::duration("discovery wait", wait)?;
    let mut found = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout_at(deadline, answers.next()).await {
        if let Ok(answer) = item {
            if let Ok(value) = serde_json::from_slice::<Value>(answer.data()) {
                found.push(value);
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_cell_answers_once_with_a_code_from_100_to_999_else_500() {
        let cell = |subject: &str| {
            let (answer, answered) = tokio::sync::oneshot::channel();
            let request = Message::builder(subject).data("x").build().unwrap();
            let job = Job {
                request,
                answer: Some(answer),
            };
            (JobCell::from(job), answered)
        };
        for (code, sent) in [
            (Some(418), 418),
            (None, 500),
            (Some(70_000), 500),
            (Some(99), 500),
            (Some(-1), 500),
        ] {
            let (job, mut answered) = cell("svc.x");
            assert_eq!(job.request().subject(), "svc.x");
            job.fail("no".into(), code).unwrap();
            let err = job.reply("late".into()).unwrap_err();
            assert_eq!(err.code(), "invalid_argument");
            assert!(err.to_string().contains("answered already"), "{err}");
            assert_eq!(
                answered.try_recv().unwrap(),
                Err(ServiceError {
                    code: sent,
                    message: "no".into()
                }),
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_verb_is_read_in_any_case_and_ping_when_none_is_named() {
        assert_eq!(Verb::parse("info").unwrap(), Verb::Info);
        assert_eq!(Verb::parse("STATS").unwrap(), Verb::Stats);
        assert_eq!(Verb::parse_or_default(None).unwrap(), Verb::Ping);
        assert_eq!(Verb::parse_or_default(Some("Ping")).unwrap(), Verb::Ping);
        let err = Verb::parse_or_default(Some("PONG")).unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(err.to_string().contains("PONG"), "{err}");
    }
}
