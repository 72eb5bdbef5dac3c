//! The circuit breaker, rate limits and request retries (docs/design.md §4, §5), the same
//! tests on the in-memory bus and on a private nats-server. No assertion is timed: what
//! would hang fails through a generous outer deadline, and durations are only printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Config, ConnectionEvent, EventBus};
use tokio::sync::broadcast;

#[path = "support/events.rs"]
mod events;

/// Far longer than any call here should take: only a hang reaches it.
const HANG: Duration = Duration::from_secs(30);
const WAIT: Duration = Duration::from_secs(5);

fn config(settings: &[(&str, &str)]) -> Config {
    let mut config = Config::default();
    for (key, value) in settings {
        config.set(key, value).unwrap();
    }
    config
}

async fn within<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

async fn event(events: &mut broadcast::Receiver<ConnectionEvent>, wanted: ConnectionEvent) {
    events::wait_for(events, HANG, |e| *e == wanted).await
}

/// Answers requests on `subject` with "ok", or with an error reply (the NATS services
/// header) when `error` is set.
async fn responder(bus: &Arc<dyn EventBus>, subject: &str, error: bool) -> tokio::task::JoinHandle<()> {
    let mut sub = bus.subscribe(subject).await.unwrap();
    bus.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(m)) = sub.next().await {
            let mut reply = m.reply_builder().unwrap().data("ok");
            if error {
                reply = reply
                    .header("Nats-Service-Error", "boom")
                    .header("Nats-Service-Error-Code", "500");
            }
            let _ = m.respond_message(reply.build().unwrap()).await;
        }
    })
}

pub async fn a_breaker_opens_fails_fast_probes_and_closes(bus: Arc<dyn EventBus>) {
    let mut events = bus.connection_events().expect("a breaker reports its changes");
    for _ in 0..3 {
        let err = within("a request", bus.request("svc.down", "?".into(), WAIT))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "no_responders", "{err}");
    }
    event(&mut events, ConnectionEvent::CircuitOpen("svc.down".into())).await;
    let err = within("a request", bus.request("svc.down", "?".into(), WAIT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "circuit_open", "{err}");
    assert!(
        err.to_string().contains("svc.down") && err.to_string().contains("probe"),
        "{err}"
    );
    // health() and the metrics name the open circuit.
    let health = bus.health();
    assert_eq!(
        (health.open_circuits, health.open_circuit_subjects.clone()),
        (1, vec!["svc.down".to_owned()])
    );
    assert!(
        health
            .to_json()
            .contains(r#""open_circuit_subjects":["svc.down"]"#),
        "{}",
        health.to_json()
    );
    assert!(
        bus.metrics().contains("\nbusbar_open_circuits 1\n"),
        "{}",
        bus.metrics()
    );
    // Another subject has its own circuit.
    let err = within("a request", bus.request("svc.other", "?".into(), WAIT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "no_responders", "{err}");

    // The responder comes back; after the cool-down one probe goes through and closes it.
    let _serving = responder(&bus, "svc.down", false).await;
    let started = Instant::now();
    let reply = within("the breaker closing", async {
        loop {
            match bus.request("svc.down", "?".into(), WAIT).await {
                Ok(reply) => return reply,
                Err(e) if e.code() == "circuit_open" => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await;
    assert_eq!(reply.data(), "ok");
    eprintln!(
        "{}: the breaker let a probe through after {:?}",
        bus.backend(),
        started.elapsed()
    );
    event(&mut events, ConnectionEvent::CircuitHalfOpen("svc.down".into())).await;
    event(&mut events, ConnectionEvent::CircuitClosed("svc.down".into())).await;
    assert_eq!(bus.health().open_circuits, 0);
    assert!(bus.metrics().contains("\nbusbar_open_circuits 0\n"));
    for _ in 0..5 {
        within("a request", bus.request("svc.down", "?".into(), WAIT))
            .await
            .unwrap();
    }
}

pub async fn an_error_reply_counts_as_a_failure(bus: Arc<dyn EventBus>) {
    let _serving = responder(&bus, "svc.failing", true).await;
    for _ in 0..3 {
        let reply = within("a request", bus.request("svc.failing", "?".into(), WAIT))
            .await
            .unwrap();
        assert_eq!(
            reply.header("Nats-Service-Error"),
            Some("boom"),
            "the caller still gets the reply"
        );
    }
    let err = within("a request", bus.request("svc.failing", "?".into(), WAIT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "circuit_open", "{err}");
    // A refused argument is not the responder's failure and goes through the breaker as it was.
    let err = within("a request", bus.request("svc..bad", "?".into(), WAIT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_subject", "{err}");
}

pub async fn retries_reach_a_responder_that_comes_late(bus: Arc<dyn EventBus>) {
    let late = {
        let bus = bus.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            // Dropping the handle detaches the responder: it goes on answering.
            drop(responder(&bus, "svc.late", false).await);
        })
    };
    let started = Instant::now();
    let reply = within("a retried request", bus.request("svc.late", "?".into(), WAIT))
        .await
        .unwrap();
    assert_eq!(reply.data(), "ok");
    eprintln!(
        "{}: the retried request was answered after {:?}",
        bus.backend(),
        started.elapsed()
    );
    late.await.unwrap();
    // Nobody ever answers: the retries end within the one timeout, with the last failure.
    let started = Instant::now();
    let err = within(
        "a retried request",
        bus.request("svc.nobody", "?".into(), Duration::from_millis(500)),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "no_responders", "{err}");
    eprintln!(
        "{}: retries to nobody ended after {:?}: {err}",
        bus.backend(),
        started.elapsed()
    );
}

pub async fn without_retries_a_request_fails_at_once(bus: Arc<dyn EventBus>) {
    let err = within("a request", bus.request("svc.nobody", "?".into(), WAIT))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "no_responders", "{err}");
}

pub async fn publish_limits_fail_with_rate_limited(bus: Arc<dyn EventBus>) {
    // publish_rate one per 100 s (nothing refills during the test) with a burst of 2.
    let mut sub = bus.subscribe(">").await.unwrap();
    bus.publish("a", "1".into()).await.unwrap();
    bus.publish("b", "2".into()).await.unwrap();
    let err = bus.publish("c", "3".into()).await.unwrap_err();
    assert_eq!(err.code(), "rate_limited", "{err}");
    assert!(
        err.to_string().contains("\"c\"") && err.to_string().contains("publish_rate"),
        "{err}"
    );
    // Durable publishes take the same tokens (refused before any stream is consulted).
    let err = bus
        .publish_durable(bus.message("d").data("4").build().unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "rate_limited", "{err}");
    bus.flush().await.unwrap();
    for expected in ["a", "b"] {
        let m = within("a delivery", sub.next()).await.unwrap().unwrap();
        assert_eq!(m.subject(), expected);
    }
    let quiet = tokio::time::timeout(Duration::from_millis(200), sub.next()).await;
    assert!(quiet.is_err(), "a refused publish was delivered: {quiet:?}");
}

pub async fn pattern_limits_share_a_bucket_and_spare_other_subjects(bus: Arc<dyn EventBus>) {
    // slow.> has one bucket of 1, refilled once per 100 s; other subjects have none.
    bus.publish("slow.a", "1".into()).await.unwrap();
    let err = bus.publish("slow.b", "2".into()).await.unwrap_err();
    assert_eq!(err.code(), "rate_limited", "{err}");
    assert!(err.to_string().contains("slow.>"), "{err}");
    for i in 0..50 {
        bus.publish(&format!("fast.{i}"), "x".into()).await.unwrap();
    }
}

pub async fn waiting_limits_slow_publishes_and_deliveries_without_loss(bus: Arc<dyn EventBus>) {
    // publish_rate 40/s, burst 1, wait; delivery_rate 40/s.
    let mut sub = bus.subscribe("paced.*").await.unwrap();
    let started = Instant::now();
    for i in 0..20 {
        within("a paced publish", bus.publish(&format!("paced.{i}"), "x".into()))
            .await
            .unwrap();
    }
    let published = started.elapsed();
    bus.flush().await.unwrap();
    for i in 0..20 {
        let m = within("a paced delivery", sub.next()).await.unwrap().unwrap();
        assert_eq!(m.subject(), format!("paced.{i}"));
    }
    eprintln!(
        "{}: 20 publishes at 40/s took {published:?}, 20 deliveries at 40/s ended after {:?}",
        bus.backend(),
        started.elapsed()
    );
    assert_eq!(sub.stats().missed, 0);
}

/// The layer a breaker, limit or retry adds changes nothing else: durable streams are
/// listed and deleted, and health and metrics are the backend's own.
async fn the_resilience_layer_passes_on_admin_health_and_metrics(bus: Arc<dyn EventBus>) {
    use busbar::StreamConfig;
    bus.declare_stream(StreamConfig::new("RESILIENT", ["resilient.>"]))
        .await
        .unwrap();
    let names: Vec<String> = bus
        .list_streams()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"RESILIENT".to_owned()), "{names:?}");
    assert!(bus.list_consumers("RESILIENT").await.unwrap().is_empty());
    bus.delete_stream("RESILIENT").await.unwrap();
    assert_eq!(
        bus.stream_info("RESILIENT").await.unwrap_err().code(),
        "invalid_argument"
    );
    let _sub = bus.subscribe("resilient.*").await.unwrap();
    assert_eq!(bus.health().subscriptions, 1);
    let metrics = bus.metrics();
    assert!(metrics.contains("busbar_subscriptions 1"), "{metrics}");
    bus.close().await.unwrap();
}

macro_rules! resilience_suite {
    ($backend:ident, $factory:path) => {
        mod $backend {
            use super::*;
            resilience_suite!(@test $factory, a_breaker_opens_fails_fast_probes_and_closes,
                [("breaker_failures", "3"), ("breaker_cooldown_ms", "3000")]);
            resilience_suite!(@test $factory, an_error_reply_counts_as_a_failure,
                [("breaker_failures", "3")]);
            resilience_suite!(@test $factory, retries_reach_a_responder_that_comes_late,
                [("request_retries", "100"), ("retry_delay_ms", "20"), ("retry_max_delay_ms", "100")]);
            resilience_suite!(@test $factory, without_retries_a_request_fails_at_once, []);
            resilience_suite!(@test $factory, publish_limits_fail_with_rate_limited,
                [("publish_rate", "0.01"), ("publish_burst", "2"), ("rate_limit_mode", "fail")]);
            resilience_suite!(@test $factory, pattern_limits_share_a_bucket_and_spare_other_subjects,
                [("publish_rate_limits", "slow.>=0.01"), ("rate_limit_mode", "fail")]);
            resilience_suite!(@test $factory, waiting_limits_slow_publishes_and_deliveries_without_loss,
                [("publish_rate", "40"), ("publish_burst", "1"), ("delivery_rate", "40")]);
            resilience_suite!(@test $factory, the_resilience_layer_passes_on_admin_health_and_metrics,
                [("breaker_failures", "3")]);
        }
    };
    (@test $factory:path, $name:ident, [$(($k:literal, $v:literal)),*]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (bus, _keep) = $factory(config(&[$(($k, $v)),*])).await;
            super::$name(bus).await;
        }
    };
}

async fn memory_bus(config: Config) -> (Arc<dyn EventBus>, ()) {
    (busbar::connect(config).await.expect("memory bus"), ())
}

resilience_suite!(memory, memory_bus);

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;

#[cfg(feature = "nats")]
async fn nats_bus(config: Config) -> (Arc<dyn EventBus>, nats_server::NatsServer) {
    let server = tokio::task::spawn_blocking(nats_server::NatsServer::start)
        .await
        .unwrap();
    let config = config
        .with_backend(busbar::Backend::Nats)
        .with_nats_url(server.url());
    (
        busbar::connect(config)
            .await
            .expect("connect to the test's nats-server"),
        server,
    )
}

#[cfg(feature = "nats")]
resilience_suite!(nats, nats_bus);

/// A bus with a policy and a breaker: calls made as a principal go through the breaker
/// and the rate limits too (the policy layer wraps the resilience layer, not the other
/// way round), so `request_as` to a dead subject opens its circuit like `request`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_as_a_principal_go_through_the_breaker() {
    let connected = busbar::connect_parts(config(&[
        ("principal", "svc"),
        ("breaker_failures", "2"),
        ("breaker_cooldown_ms", "60000"),
    ]))
    .await
    .unwrap();
    let policy = connected.policy.expect("a policy layer");
    let who = busbar::policy::Principal::new("svc", Vec::<String>::new());
    let ask = || async {
        let request = policy.message("svc.dead").data("?").build().unwrap();
        policy.request_as(&who, request, WAIT).await.unwrap_err()
    };
    for _ in 0..2 {
        assert_eq!(ask().await.code(), "no_responders");
    }
    let err = ask().await;
    assert_eq!(err.code(), "circuit_open", "{err}");
    // The bus the application holds reports it.
    assert_eq!(
        connected.bus.health().open_circuit_subjects,
        vec!["svc.dead".to_owned()]
    );
    connected.bus.close().await.unwrap();
}
