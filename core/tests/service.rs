//! Services with discovery (docs/design.md §5): the NATS services protocol on both
//! backends, load shared by the members of a queue group, a failing member taking itself
//! out, and, on a real server, discovery both ways with async-nats' own service API.

use std::sync::Arc;
use std::time::Duration;

use busbar::service::{discover, Service, ServiceConfig, ServiceError, Verb};
use busbar::{Config, EventBus};

const WAIT: Duration = Duration::from_secs(5);
const GATHER: Duration = Duration::from_millis(500);

/// Doubles a number; a negative one is an error reply.
async fn double(m: busbar::Message) -> Result<bytes::Bytes, ServiceError> {
    let n: i64 = std::str::from_utf8(m.data()).unwrap().parse().unwrap();
    if n < 0 {
        return Err(ServiceError::new("negative"));
    }
    Ok((2 * n).to_string().into())
}

async fn calc(bus: &Arc<dyn EventBus>) -> Service {
    let service = Service::start(
        bus.clone(),
        ServiceConfig::new("calc", "1.2.3").description("doubles"),
    )
    .await
    .unwrap();
    service.endpoint("double", "calc.double", double).await.unwrap();
    service
}

fn by_id<'a>(answers: &'a [serde_json::Value], id: &str) -> &'a serde_json::Value {
    answers
        .iter()
        .find(|a| a["id"] == id)
        .expect("the member answered")
}

pub async fn members_are_discovered_share_load_and_count(bus: Arc<dyn EventBus>) {
    let (a, b) = (calc(&bus).await, calc(&bus).await);
    bus.flush().await.unwrap();
    let pings = discover(bus.as_ref(), Verb::Ping, None, GATHER).await.unwrap();
    assert_eq!(pings.len(), 2, "{pings:?}");
    for id in [a.id(), b.id()] {
        let ping = by_id(&pings, id);
        assert_eq!(ping["type"], "io.nats.micro.v1.ping_response");
        assert_eq!(
            (ping["name"].as_str(), ping["version"].as_str()),
            (Some("calc"), Some("1.2.3"))
        );
    }
    assert_eq!(
        discover(bus.as_ref(), Verb::Ping, Some("calc"), GATHER)
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(discover(bus.as_ref(), Verb::Ping, Some("other"), GATHER)
        .await
        .unwrap()
        .is_empty());
    let info = discover(bus.as_ref(), Verb::Info, Some("calc"), GATHER)
        .await
        .unwrap();
    let info = by_id(&info, a.id());
    assert_eq!(info["type"], "io.nats.micro.v1.info_response");
    assert_eq!(info["description"], "doubles");
    assert_eq!(info["endpoints"][0]["subject"], "calc.double");
    assert_eq!(info["endpoints"][0]["queue_group"], "q");

    const N: u64 = 40;
    for n in 0..N {
        let reply = bus
            .request("calc.double", n.to_string().into(), WAIT)
            .await
            .unwrap();
        assert_eq!(reply.data(), (2 * n).to_string().as_str());
    }
    let reply = bus.request("calc.double", "-1".into(), WAIT).await.unwrap();
    assert_eq!(reply.header("Nats-Service-Error"), Some("negative"));
    assert_eq!(reply.header("Nats-Service-Error-Code"), Some("500"));

    let stats = discover(bus.as_ref(), Verb::Stats, Some("calc"), GATHER)
        .await
        .unwrap();
    let counts: Vec<(u64, u64)> = [a.id(), b.id()]
        .iter()
        .map(|id| {
            let e = &by_id(&stats, id)["endpoints"][0];
            (
                e["num_requests"].as_u64().unwrap(),
                e["num_errors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counts.iter().map(|c| c.0).sum::<u64>(), N + 1, "{counts:?}");
    assert_eq!(counts.iter().map(|c| c.1).sum::<u64>(), 1, "{counts:?}");
    assert!(
        counts.iter().all(|c| c.0 > 0),
        "both members took requests: {counts:?}"
    );
    let failed = [a.id(), b.id()]
        .into_iter()
        .map(|id| &by_id(&stats, id)["endpoints"][0])
        .find(|e| e["num_errors"] == 1)
        .unwrap();
    assert_eq!(failed["last_error"], "500:negative");

    a.stop().await;
    b.stop().await;
}

pub async fn a_failing_member_takes_itself_out(bus: Arc<dyn EventBus>) {
    let failing = Service::start(
        bus.clone(),
        ServiceConfig::new("flaky", "1.0.0").leave_after(3, Duration::from_secs(600)),
    )
    .await
    .unwrap();
    failing
        .endpoint("work", "flaky.work", |_| async {
            Err(ServiceError::new("broken"))
        })
        .await
        .unwrap();
    let healthy = Service::start(bus.clone(), ServiceConfig::new("flaky", "1.0.0"))
        .await
        .unwrap();
    healthy
        .endpoint("work", "flaky.work", |_| async {
            Ok(bytes::Bytes::from_static(b"done"))
        })
        .await
        .unwrap();
    bus.flush().await.unwrap();
    let mut errors = 0;
    let mut last = Vec::new();
    for _ in 0..60 {
        let reply = bus.request("flaky.work", "x".into(), WAIT).await.unwrap();
        let failed = reply.header("Nats-Service-Error").is_some();
        errors += usize::from(failed);
        last.push(failed);
    }
    assert_eq!(errors, 3, "the failing member left after 3 failures");
    assert!(
        !last[last.len() - 10..].iter().any(|&f| f),
        "the healthy member took the rest"
    );
}

pub async fn bad_service_settings_are_refused(bus: Arc<dyn EventBus>) {
    for (name, version) in [
        ("", "1.0.0"),
        ("a b", "1.0.0"),
        ("a.b", "1.0.0"),
        ("ok", ""),
        ("ok", "1 0"),
    ] {
        let err = Service::start(bus.clone(), ServiceConfig::new(name, version))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{name:?} {version:?}: {err}");
    }
    let service = Service::start(bus.clone(), ServiceConfig::new("ok", "1.0.0"))
        .await
        .unwrap();
    let err = service.endpoint("e", "a..b", double).await.unwrap_err();
    assert_eq!(err.code(), "invalid_subject", "{err}");
}

/// An endpoint whose handler lives elsewhere (a binding's event loop): its requests come
/// out as jobs; a reply, a failure and a job dropped unanswered each reach the requester,
/// and the endpoint counts them as a Rust handler's.
pub async fn jobs_answer_from_another_loop(bus: Arc<dyn EventBus>) {
    let service = Service::start(bus.clone(), ServiceConfig::new("jobs", "0.1.0"))
        .await
        .unwrap();
    let mut jobs = service.endpoint_jobs("echo", "jobs.echo").await.unwrap();
    let worker = tokio::spawn(async move {
        while let Some(job) = jobs.next().await {
            match job.request().data().as_ref() {
                b"fail" => job.fail(ServiceError {
                    code: 418,
                    message: "asked to fail".into(),
                }),
                b"drop" => drop(job),
                data => {
                    let reply = data.to_vec();
                    job.reply(reply.into());
                }
            }
        }
    });
    bus.flush().await.unwrap();
    let reply = bus.request("jobs.echo", "hello".into(), WAIT).await.unwrap();
    assert_eq!(reply.data(), "hello");
    let failed = bus.request("jobs.echo", "fail".into(), WAIT).await.unwrap();
    assert_eq!(
        (
            failed.header(busbar::service::SERVICE_ERROR),
            failed.header(busbar::service::SERVICE_ERROR_CODE)
        ),
        (Some("asked to fail"), Some("418"))
    );
    let dropped = bus.request("jobs.echo", "drop".into(), WAIT).await.unwrap();
    assert_eq!(
        dropped.header(busbar::service::SERVICE_ERROR),
        Some("the handler ended without answering")
    );
    let stats = discover(bus.as_ref(), Verb::Stats, Some("jobs"), GATHER)
        .await
        .unwrap();
    let endpoint = &stats[0]["endpoints"][0];
    assert_eq!(
        (endpoint["num_requests"].as_u64(), endpoint["num_errors"].as_u64()),
        (Some(3), Some(2)),
        "{stats:?}"
    );
    // Stopping the service ends the jobs.
    service.stop().await;
    tokio::time::timeout(WAIT, worker)
        .await
        .expect("the jobs end when the service stops")
        .unwrap();
}

macro_rules! service_suite {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use super::*;
            service_suite!(@tests $factory; members_are_discovered_share_load_and_count,
                a_failing_member_takes_itself_out, bad_service_settings_are_refused,
                jobs_answer_from_another_loop);
        }
    };
    (@tests $factory:path; $($name:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (bus, _keep) = $factory().await;
            super::$name(bus).await;
        }
    )*};
}

async fn memory_bus() -> (Arc<dyn EventBus>, ()) {
    (busbar::connect(Config::default()).await.unwrap(), ())
}

service_suite!(memory, memory_bus);

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;
#[cfg(feature = "nats")]
#[path = "support/round_trip.rs"]
mod round_trip;

#[cfg(feature = "nats")]
async fn nats_bus() -> (Arc<dyn EventBus>, nats_server::NatsServer) {
    let server = nats_server::NatsServer::start_async().await;
    let config = server.config();
    (busbar::connect(config).await.unwrap(), server)
}

#[cfg(feature = "nats")]
service_suite!(nats, nats_bus);

/// A busbar service read by a plain async-nats client into async-nats' own service types,
/// and an async-nats service found by busbar's `discover`.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_works_both_ways_with_async_nats_services() {
    use async_nats::service::ServiceExt;
    use futures_util::StreamExt;

    let (bus, server) = nats_bus().await;
    let busbar_service = calc(&bus).await;
    bus.flush().await.unwrap();
    bus.request("calc.double", "21".into(), WAIT).await.unwrap();

    let client = async_nats::connect(server.url()).await.unwrap();
    let ask = |subject: &'static str| {
        let client = client.clone();
        async move { client.request(subject, "".into()).await.unwrap().payload }
    };
    let ping: async_nats::service::PingResponse =
        serde_json::from_slice(&ask("$SRV.PING.calc").await).unwrap();
    assert_eq!(
        (ping.name.as_str(), ping.id.as_str()),
        ("calc", busbar_service.id())
    );
    let info: async_nats::service::Info = serde_json::from_slice(&ask("$SRV.INFO.calc").await).unwrap();
    assert_eq!(
        (info.version.as_str(), info.endpoints[0].subject.as_str()),
        ("1.2.3", "calc.double")
    );
    let stats: async_nats::service::Stats = serde_json::from_slice(&ask("$SRV.STATS.calc").await).unwrap();
    assert_eq!(stats.endpoints[0].requests, 1);

    // The other way: an async-nats service, discovered and called by busbar.
    let theirs = client
        .service_builder()
        .description("adds one")
        .start("adder", "0.1.0")
        .await
        .unwrap();
    let mut endpoint = theirs.endpoint("adder.one").await.unwrap();
    tokio::spawn(async move {
        while let Some(request) = endpoint.next().await {
            let n: i64 = std::str::from_utf8(&request.message.payload)
                .unwrap()
                .parse()
                .unwrap();
            request.respond(Ok((n + 1).to_string().into())).await.unwrap();
        }
    });
    round_trip::round_trip(&client).await;
    let found = discover(bus.as_ref(), Verb::Info, Some("adder"), GATHER)
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["endpoints"][0]["subject"], "adder.one");
    let all = discover(bus.as_ref(), Verb::Ping, None, GATHER).await.unwrap();
    assert_eq!(all.len(), 2, "busbar's and async-nats' services: {all:?}");
    // Calling it is another matter: its replies do not echo `ce-correlationid`, which a
    // busbar request requires of every reply (docs/design.md §5), so busbar drops them as
    // foreign and counts them.
    let err = bus
        .request("adder.one", "41".into(), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    assert_eq!(bus.stats().rejected_replies, 1);
}
