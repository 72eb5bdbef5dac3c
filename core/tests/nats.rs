//! What only the NATS backend shows: the wire format seen by a plain NATS client,
//! plain clients talking to busbar, and the connection's life (dead server, restart).
#![cfg(feature = "nats")]

use std::time::Duration;

use busbar::{Backend, Config, ConnectionEvent, EventBus};
use futures_util::StreamExt;

#[path = "support/nats_server.rs"]
mod nats_server;
#[cfg(feature = "nats")]
#[path = "support/round_trip.rs"]
mod round_trip;
use nats_server::NatsServer;

const WAIT: Duration = Duration::from_secs(5);

async fn start() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start).await.unwrap()
}

async fn bus(server: &NatsServer) -> std::sync::Arc<dyn EventBus> {
    let config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(server.url());
    busbar::connect(config).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_nats_client_reads_cloudevents_headers() {
    let server = start().await;
    let bus = bus(&server).await;
    let plain = async_nats::connect(server.url()).await.unwrap();
    let mut raw = plain.subscribe("orders.>").await.unwrap();
    // async-nats' flush is no round trip: wait for the server to echo a probe through the
    // subscription, so it is registered before busbar publishes on another connection.
    plain.publish("orders.probe", "".into()).await.unwrap();
    let probe = tokio::time::timeout(WAIT, raw.next()).await.unwrap().unwrap();
    assert_eq!(probe.subject.as_str(), "orders.probe");
    let sent = bus
        .message("orders.eu.created")
        .data(&b"{\"qty\":2}"[..])
        .content_type("application/json")
        .correlation_id("c-9")
        .header("tenant", "acme")
        .build()
        .unwrap();
    bus.publish_message(sent.clone()).await.unwrap();
    bus.flush().await.unwrap();
    let got = tokio::time::timeout(WAIT, raw.next()).await.unwrap().unwrap();
    assert_eq!(
        got.payload,
        sent.data().clone(),
        "the body is the payload, unchanged"
    );
    let headers = got
        .headers
        .expect("binary content mode puts attributes in headers");
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(header("ce-id").as_deref(), Some(sent.id()));
    assert_eq!(
        header("Nats-Msg-Id"),
        None,
        "only a durable publish carries JetStream's dedupe id"
    );
    assert_eq!(header("ce-subject"), None, "the NATS subject is the subject");
    assert_eq!(header("ce-source").as_deref(), Some("busbar"));
    assert_eq!(header("ce-type").as_deref(), Some("busbar.event"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("ce-correlationid").as_deref(), Some("c-9"));
    assert_eq!(header("tenant").as_deref(), Some("acme"));
    assert!(header("ce-time").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busbar_reads_plain_messages_and_answers_plain_requests() {
    let server = start().await;
    let bus = bus(&server).await;
    let plain = async_nats::connect(server.url()).await.unwrap();

    let mut sub = bus.subscribe("sensors.*").await.unwrap();
    bus.flush().await.unwrap();
    plain.publish("sensors.t1", "21.5".into()).await.unwrap();
    plain.flush().await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((m.subject(), &m.data()[..]), ("sensors.t1", &b"21.5"[..]));
    assert_eq!(m.source(), "nats", "a plain message gets generated attributes");
    assert_eq!(m.id().len(), 36);

    let responder = bus.subscribe("svc.upper").await.unwrap();
    tokio::spawn(busbar::serve(responder, |req| async move {
        String::from_utf8_lossy(req.data()).to_uppercase().into()
    }));
    bus.flush().await.unwrap();
    let reply = plain.request("svc.upper", "shout".into()).await.unwrap();
    assert_eq!(&reply.payload[..], b"SHOUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_is_a_clear_backend_error() {
    let mut server = start().await;
    let url = server.url();
    server.kill();
    let config = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(url.clone());
    let err = busbar::connect(config).await.err().expect("nothing listens");
    assert_eq!(err.code(), "backend");
    assert!(err.to_string().contains(&url), "names the URL: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_a_restart_and_says_so() {
    let mut server = start().await;
    let bus = bus(&server).await;
    let mut events = bus.connection_events().expect("NATS reports its connection");
    let mut sub = bus.subscribe("heartbeat").await.unwrap();
    // The server comes back from this task once restarted; the handle keeps it alive.
    let restarted = tokio::task::spawn_blocking(move || {
        server.kill();
        std::thread::sleep(Duration::from_millis(300));
        server.restart();
        server
    });
    // The initial `Connected` may still be on its way: wait for the loss, then the return.
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for wanted in [ConnectionEvent::Disconnected, ConnectionEvent::Connected] {
        while seen.last() != Some(&wanted) {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Ok(e)) => seen.push(e),
                other => panic!("no {wanted} before the deadline: saw {seen:?}, then {other:?}"),
            }
        }
    }
    // The subscription was re-established: a publish after the reconnect arrives.
    bus.publish("heartbeat", "after restart".into()).await.unwrap();
    bus.flush().await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.data(), "after restart");
    assert!(bus.stats().disconnects >= 1, "the loss is counted too");
    drop(restarted.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_config_reach_the_server() {
    let server =
        tokio::task::spawn_blocking(|| NatsServer::start_with(&["--user", "svc", "--pass", "s3cret"]))
            .await
            .unwrap();
    let base = Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(server.url());

    let mut good = base.clone();
    good.set("nats_user", "svc").unwrap();
    good.set("nats_password", "s3cret").unwrap();
    let bus = busbar::connect(good).await.expect("right credentials connect");
    let mut sub = bus.subscribe("auth.ok").await.unwrap();
    bus.publish("auth.ok", "in".into()).await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.data(), "in");

    let mut bad = base.clone();
    bad.set("nats_user", "svc").unwrap();
    bad.set("nats_password", "wrong").unwrap();
    let err = busbar::connect(bad)
        .await
        .err()
        .expect("wrong password is refused");
    assert_eq!(err.code(), "backend");
    assert!(
        !err.to_string().contains("wrong"),
        "the password is not echoed: {err}"
    );

    let err = busbar::connect(base)
        .await
        .err()
        .expect("no credentials is refused");
    assert_eq!(err.code(), "backend", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_stored_message_is_reported_once_and_the_consumer_goes_on() {
    let server = start().await;
    let bus = bus(&server).await;
    bus.declare_stream(busbar::StreamConfig::new("MIXED", ["mixed.>"]))
        .await
        .unwrap();
    // A foreign producer stores a message whose CloudEvents time is not RFC 3339.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-time", "yesterday");
    js.publish_with_headers("mixed.bad", headers, "x".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let good = bus.message("mixed.good").data("ok").build().unwrap();
    bus.publish_durable(good).await.unwrap();

    let config = busbar::ConsumerConfig::new("MIXED", "reader").ack_wait(Duration::from_millis(300));
    let mut sub = bus.durable_subscribe(config).await.unwrap();
    let err = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "decode");
    assert!(err.to_string().contains("yesterday"), "{err}");
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.data(), "ok");
    m.ack().await.unwrap();
    // Terminated, not redelivered after ack_wait.
    let quiet = tokio::time::timeout(Duration::from_millis(900), sub.next()).await;
    assert!(quiet.is_err(), "{quiet:?}");
}

/// A process that publishes (a reply, say) and exits right after `close()` has delivered
/// what it published: close flushes before it drains. Before, async-nats's drain only queued
/// its command, and the runtime ending with the process dropped the unwritten publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_published_before_close_reaches_the_server_when_the_process_ends() {
    const SENT: usize = 2_000;
    let server = start().await;
    let plain = async_nats::connect(server.url()).await.unwrap();
    let mut raw = plain.subscribe("exit.>").await.unwrap();
    round_trip::round_trip(&plain).await;
    let url = server.url();
    // The "process": its own runtime, shut down the moment close returns.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = Config::default().with_backend(Backend::Nats).with_nats_url(url);
            let bus = busbar::connect(config).await.unwrap();
            for _ in 0..SENT {
                bus.publish("exit.last", vec![b'x'; 512].into()).await.unwrap();
            }
            bus.close().await.unwrap();
        });
        runtime.shutdown_background();
    })
    .join()
    .unwrap();
    let mut got = 0;
    while got < SENT {
        match tokio::time::timeout(Duration::from_secs(2), raw.next()).await {
            Ok(Some(_)) => got += 1,
            _ => break,
        }
    }
    assert_eq!(got, SENT, "every publish made before close() reached the server");
}
