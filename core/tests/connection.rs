//! Connection control on NATS (docs/design.md §8, issue 18 #4): a server list that fails
//! over, the connect timeout, retries of the first connect, the publish buffer kept while
//! disconnected and what a full one does, and a bounded number of reconnects. Each test
//! starts its own nats-server(s) and stops them by PID; no assertion is timed: a call that
//! would hang fails the test through a generous outer deadline instead.
#![cfg(feature = "nats")]

use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, ConnectionEvent, EventBus, Subscription};
use tokio::sync::broadcast;

#[path = "support/nats_server.rs"]
mod nats_server;
use nats_server::NatsServer;

#[path = "support/events.rs"]
mod events;

/// Far longer than any call here should take: only a hang reaches it.
const HANG: Duration = Duration::from_secs(30);

async fn start() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start).await.unwrap()
}

fn config(url: &str, settings: &[(&str, &str)]) -> Config {
    let mut config = Config::default().with_backend(Backend::Nats).with_nats_url(url);
    for (key, value) in settings {
        config.set(key, value).unwrap();
    }
    config
}

async fn connect(url: &str, settings: &[(&str, &str)]) -> busbar::Result<Arc<dyn EventBus>> {
    tokio::time::timeout(HANG, busbar::connect(config(url, settings)))
        .await
        .expect("connect hung")
}

/// Fast reconnects, so the tests do not wait out the default backoff.
const QUICK: &[(&str, &str)] = &[("reconnect_delay_ms", "20"), ("reconnect_max_delay_ms", "200")];

/// Waits for `wanted` among `events`, failing the test after [`HANG`].
async fn event(events: &mut broadcast::Receiver<ConnectionEvent>, wanted: impl Fn(&ConnectionEvent) -> bool) {
    events::wait_for(events, HANG, wanted).await
}

/// The next message of `sub` within `limit`, or `None`.
async fn next_within(sub: &mut Subscription, limit: Duration) -> Option<busbar::Message> {
    match tokio::time::timeout(limit, sub.next()).await {
        Ok(Some(Ok(m))) => Some(m),
        Ok(other) => panic!("subscription: {:?}", other.map(|r| r.map(|_| ()))),
        Err(_) => None,
    }
}

/// Publishes to `subject` until a publish fails (each bounded by [`HANG`]): how many were
/// accepted, and the failure.
async fn publish_until_refused(bus: &Arc<dyn EventBus>, subject: &str) -> (usize, busbar::Error) {
    let mut accepted = 0;
    loop {
        match tokio::time::timeout(HANG, bus.publish(subject, "x".into()))
            .await
            .expect("publish hung")
        {
            Ok(()) => accepted += 1,
            Err(e) => return (accepted, e),
        }
        assert!(accepted < 10_000, "the buffer took {accepted} publishes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_list_connects_past_a_dead_server_and_fails_over() {
    let (a, b) = tokio::join!(start(), start());
    let mut servers = [a, b];
    // A dead address in the list is skipped at connect.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("nats://{}", listener.local_addr().unwrap())
    };
    let list = format!("{dead}, {},{}", servers[0].url(), servers[1].url());
    let bus = connect(&list, QUICK).await.unwrap();
    let mut events = bus.connection_events().unwrap();
    let mut sub = bus.subscribe("fo.>").await.unwrap();
    bus.flush().await.unwrap();

    // The two servers are not clustered: a probe published on one reaches the bus only
    // if the bus is connected to that one.
    let probe = connect(&servers[0].url(), &[]).await.unwrap();
    probe.publish("fo.probe", "?".into()).await.unwrap();
    probe.flush().await.unwrap();
    let on = if next_within(&mut sub, Duration::from_secs(2)).await.is_some() {
        0
    } else {
        1
    };
    probe.close().await.unwrap();
    let other = 1 - on;
    eprintln!("the bus connected to server {on} of the list; killing it");

    servers[on].kill();
    event(&mut events, |e| *e == ConnectionEvent::Disconnected).await;
    event(&mut events, |e| *e == ConnectionEvent::Connected).await;
    // The subscription resumed on the other server: a message published there arrives.
    let there = connect(&servers[other].url(), &[]).await.unwrap();
    let got = tokio::time::timeout(HANG, async {
        loop {
            there.publish("fo.after", "moved".into()).await.unwrap();
            there.flush().await.unwrap();
            if let Some(m) = next_within(&mut sub, Duration::from_millis(500)).await {
                return m;
            }
        }
    })
    .await
    .expect("the subscription did not resume on the other server");
    assert_eq!(got.subject(), "fo.after");
    assert_eq!(got.data(), "moved");
    assert_eq!(bus.stats().disconnects, 1);
    bus.close().await.unwrap();
    there.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_server_list_is_refused_by_name() {
    for bad in [
        "nats://127.0.0.1:4222,,nats://127.0.0.1:4223",
        "nats://svc:hunter2@127.0.0.1:99999",
    ] {
        let err = connect(bad, &[]).await.err().expect("a bad list is refused");
        assert_eq!(err.code(), "invalid_argument", "{bad}: {err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
    for (key, value) in [
        ("connect_timeout_ms", "0"),
        ("publish_buffer", "0"),
        ("publish_buffer_full", "drop"),
        ("max_reconnects", "-1"),
        ("reconnect_delay_ms", "1.5"),
    ] {
        let err = Config::default().set(key, value).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{key}={value}");
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_timeout_bounds_a_server_that_never_answers() {
    // A socket that accepts connections (the kernel's backlog) but never says INFO.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", silent.local_addr().unwrap());
    let err = connect(&url, &[("connect_timeout_ms", "300")])
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "backend", "{err}");
    eprintln!("silent server: {err}");
    // With retries, every round is bounded too, and the error says how many there were.
    let err = connect(
        &url,
        &[
            ("connect_timeout_ms", "200"),
            ("connect_retries", "2"),
            ("reconnect_delay_ms", "10"),
        ],
    )
    .await
    .err()
    .unwrap();
    assert_eq!(err.code(), "backend", "{err}");
    assert!(err.to_string().contains("3 rounds"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_retries_wait_for_a_server_that_starts_late() {
    let mut server = start().await;
    let url = server.url();
    server.kill();
    let err = connect(&url, &[])
        .await
        .err()
        .expect("no server, no retries: refused");
    assert_eq!(err.code(), "backend", "{err}");

    let retrying = tokio::spawn({
        let url = url.clone();
        async move {
            connect(
                &url,
                &[
                    ("connect_retries", "1000"),
                    ("reconnect_delay_ms", "20"),
                    ("reconnect_max_delay_ms", "100"),
                ],
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!retrying.is_finished(), "connect returned while no server ran");
    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    let bus = retrying
        .await
        .unwrap()
        .expect("connected once the server started");
    let mut sub = bus.subscribe("late.>").await.unwrap();
    bus.publish("late.hello", "hi".into()).await.unwrap();
    assert_eq!(next_within(&mut sub, HANG).await.unwrap().data(), "hi");
    bus.close().await.unwrap();
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_wait_in_the_buffer_while_disconnected_and_a_full_buffer_is_never_silent() {
    let mut server = start().await;
    let url = server.url();
    let mut waiting = QUICK.to_vec();
    waiting.extend([("publish_buffer", "64"), ("publish_timeout_ms", "300")]);
    let bus = connect(&url, &waiting).await.unwrap();
    let mut failing = QUICK.to_vec();
    failing.extend([
        ("publish_buffer", "16"),
        ("publish_buffer_full", "fail"),
        ("publish_timeout_ms", "60000"),
    ]);
    let fail_bus = connect(&url, &failing).await.unwrap();
    let mut sub = bus.subscribe("buf.>").await.unwrap();
    bus.flush().await.unwrap();
    let mut events = bus.connection_events().unwrap();
    let mut fail_events = fail_bus.connection_events().unwrap();

    server.kill();
    event(&mut events, |e| *e == ConnectionEvent::Disconnected).await;
    event(&mut fail_events, |e| *e == ConnectionEvent::Disconnected).await;
    // Kept in the buffer while disconnected: each publish returns at once.
    for i in 0..10 {
        tokio::time::timeout(HANG, bus.publish(&format!("buf.{i}"), "kept".into()))
            .await
            .expect("a publish into a buffer with room hung")
            .unwrap();
    }
    // `wait`: once the buffer is full a publish waits publish_timeout_ms, then `backend`.
    let (filled, err) = publish_until_refused(&bus, "buf.fill").await;
    let sent = 10 + filled;
    assert_eq!(err.code(), "backend", "{err}");
    assert!(err.to_string().contains("publish_timeout_ms"), "{err}");
    assert!(err.to_string().contains("disconnected"), "{err}");
    eprintln!("wait: publish {sent} failed: {err}");
    // `fail`: a full buffer fails the publish at once (publish_timeout_ms is a minute, so
    // waiting would run into HANG).
    let (fail_sent, err) = publish_until_refused(&fail_bus, "lost.x").await;
    assert_eq!(err.code(), "backend", "{err}");
    assert!(err.to_string().contains("publish_buffer_full is fail"), "{err}");
    eprintln!("fail: publish {fail_sent} failed: {err}");
    // flush and a subscription's drain end too, with `backend`.
    let err = tokio::time::timeout(HANG, bus.flush())
        .await
        .expect("flush hung")
        .unwrap_err();
    assert_eq!(err.code(), "backend", "{err}");
    let extra = bus.subscribe("other").await;
    assert!(
        extra.is_err(),
        "subscribing into a full buffer while disconnected fails"
    );

    let server = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .unwrap();
    event(&mut events, |e| *e == ConnectionEvent::Connected).await;
    // What was buffered goes out after the reconnect, in order, after the subscription
    // was renewed.
    for i in 0..10 {
        let m = next_within(&mut sub, HANG)
            .await
            .expect("a buffered publish was lost");
        assert_eq!(m.subject(), format!("buf.{i}"));
    }
    let mut fills = 0;
    while let Some(m) = next_within(&mut sub, Duration::from_secs(1)).await {
        assert_eq!(m.subject(), "buf.fill");
        fills += 1;
    }
    eprintln!("after the reconnect: 10 kept + {fills} more of the {sent} accepted publishes arrived");
    assert_eq!(10 + fills, sent, "every accepted publish was delivered");
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_reconnects_the_bus_gives_up_and_calls_fail() {
    let mut server = start().await;
    let bus = connect(
        &server.url(),
        &[
            ("max_reconnects", "3"),
            ("reconnect_delay_ms", "10"),
            ("reconnect_max_delay_ms", "50"),
        ],
    )
    .await
    .unwrap();
    let mut events = bus.connection_events().unwrap();
    server.kill();
    event(
        &mut events,
        |e| matches!(e, ConnectionEvent::ClientError(m) if m.contains("max reconnects")),
    )
    .await;
    let err = tokio::time::timeout(HANG, bus.publish("gone", "x".into()))
        .await
        .expect("publish hung")
        .unwrap_err();
    assert_eq!(err.code(), "backend", "{err}");
    let err = tokio::time::timeout(HANG, bus.flush())
        .await
        .expect("flush hung")
        .unwrap_err();
    assert_eq!(err.code(), "backend", "{err}");
    let closed = tokio::time::timeout(HANG, bus.close()).await.expect("close hung");
    eprintln!("close after giving up: {closed:?}");
}
