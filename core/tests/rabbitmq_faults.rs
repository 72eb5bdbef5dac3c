//! Faults of the RabbitMQ backend against a private node that the test kills (SIGKILL)
//! and restarts on the same store and port: calls during the outage fail with `backend`
//! within `publish_timeout_ms` (none hangs), the loss is reported as connection events
//! and counted in `disconnects`; after a restart a new connection works, and the same bus
//! reconnects by itself, attaching everything before it reports `Connected`; every
//! durable publish the broker acknowledged survives the kill.
#![cfg(feature = "rabbitmq")]

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, ConnectionEvent, EventBus};

#[path = "support/durable_faults.rs"]
mod durable_faults;
#[path = "support/rabbitmq_node.rs"]
mod rabbitmq_node;
use rabbitmq_node::RabbitNode;

async fn bus_on(node: &RabbitNode) -> Arc<dyn EventBus> {
    let config = Config::default()
        .with_backend(Backend::RabbitMq)
        .with_amqp_url(node.url())
        .with_publish_timeout(Duration::from_secs(2));
    busbar::connect(config).await.unwrap()
}

/// A kill in the middle of publishes: calls fail with `backend` and none hangs, the loss is
/// an event and a count, and after a restart on the same store a new connection works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_kill_fails_calls_at_once_and_is_reported() {
    kill_and_restart(false).await;
}

/// The same bus resumes by itself after the restart (busbar's own reconnection loop: a new
/// connection, then every subscription and the request inbox attach to it, then
/// `Connected`): same subscription, same request inbox, nothing lost after `Connected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_bus_resumes_after_a_broker_restart() {
    kill_and_restart(true).await;
}

async fn kill_and_restart(resume: bool) {
    let mut node = tokio::task::spawn_blocking(RabbitNode::start).await.unwrap();
    let bus = bus_on(&node).await;
    let mut events = bus
        .connection_events()
        .expect("RabbitMQ reports connection events");
    let mut sub = bus.subscribe("fault.>").await.unwrap();
    let responder = bus.subscribe("fault.svc").await.unwrap();
    let served = tokio::spawn(busbar::serve(responder, |m| async move { m.data().clone() }));
    bus.publish("fault.before", "1".into()).await.unwrap();
    bus.flush().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.subject(), "fault.before");

    // Kill the broker mid-stream of publishes: each call fails or succeeds, none hangs.
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut sent, mut failed) = (0u32, 0u32);
            while !stop.load(Relaxed) {
                let call = bus.publish("fault.during", sent.to_string().into());
                match tokio::time::timeout(Duration::from_secs(5), call).await {
                    Ok(Ok(())) => sent += 1,
                    Ok(Err(e)) => {
                        assert_eq!(e.code(), "backend", "{e}");
                        failed += 1;
                    }
                    Err(_) => panic!("a publish hung through the outage"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (sent, failed)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    tokio::task::block_in_place(|| node.kill());
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Relaxed);
    let (sent, failed) = publishing.await.unwrap();
    assert!(
        failed > 0,
        "no publish failed while the broker was down ({sent} sent)"
    );
    eprintln!("{sent} publishes taken, {failed} failed with backend during the outage");
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        bus.request("fault.svc", "x".into(), Duration::from_secs(2)),
    )
    .await
    .expect("a request during the outage ends by its timeout")
    .unwrap_err();
    assert!(matches!(e.code(), "backend" | "timeout"), "{e}");
    let mut lost = false;
    while let Ok(event) = events.try_recv() {
        lost |= event == ConnectionEvent::Disconnected;
    }
    assert!(lost, "no Disconnected event after the kill");
    assert!(bus.stats().disconnects >= 1, "{:?}", bus.stats());

    // Restart on the same store and port.
    tokio::task::block_in_place(|| node.restart());
    let fresh = bus_on(&node).await;
    let mut probe = fresh.subscribe("probe.x").await.unwrap();
    fresh.publish("probe.x", "p".into()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), probe.next()).await;
    assert!(
        matches!(got, Ok(Some(Ok(_)))),
        "a new bus works after the restart: {got:?}"
    );
    fresh.close().await.unwrap();
    if !resume {
        let _ = bus.close().await;
        served.abort();
        return;
    }
    // busbar reconnects the first bus; its subscription and inbox attach again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Connected event after the restart"
        );
        match tokio::time::timeout(Duration::from_secs(1), events.recv()).await {
            Ok(Ok(ConnectionEvent::Connected)) => break,
            _ => continue,
        }
    }
    // `Connected` comes once every consumer is attached to the new connection (the
    // subscription, the responder's queue, the reply queue): the first publish and the
    // first request after it are delivered. What was in flight at the kill is gone
    // (at-most-once): only `fault.during` messages may come before.
    bus.publish("fault.after", "2".into()).await.unwrap();
    let resumed = loop {
        match tokio::time::timeout(Duration::from_secs(5), sub.next()).await {
            Ok(Some(Ok(m))) if m.subject() == "fault.after" => break m,
            Ok(Some(Ok(m))) if m.subject() == "fault.during" => continue,
            other => panic!("the first publish after Connected was not delivered: {other:?}"),
        }
    };
    assert_eq!(&resumed.data()[..], b"2");
    let reply = bus
        .request("fault.svc", "again".into(), Duration::from_secs(5))
        .await
        .expect("the first request after Connected is answered");
    assert_eq!(&reply.data()[..], b"again");
    bus.close().await.unwrap();
    let _ = served.await;
    drop(node);
}

impl durable_faults::Broker for RabbitNode {
    fn kill(&mut self) {
        RabbitNode::kill(self);
    }
    fn restart(&mut self) {
        RabbitNode::restart(self);
    }
}

/// Durable publishes under publisher confirms while the node is killed and restarted on
/// its store: every publish that returned an acknowledgement is delivered (the journal is
/// a RabbitMQ stream on disk), retried publishes are deduplicated, and the consumer's bus
/// reconnects and resumes the journal where it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_durable_publishes_survive_a_broker_kill() {
    let mut node = tokio::task::spawn_blocking(RabbitNode::start).await.unwrap();
    // The journal (a RabbitMQ stream) exists before the kill, and the node has saved its
    // stream coordinator's registration (`RabbitNode::restart_cleanly` says why).
    let first = bus_on(&node).await;
    durable_faults::declare_stream(&first).await;
    first.close().await.unwrap();
    let node = tokio::task::spawn_blocking(move || {
        node.restart_cleanly();
        node
    })
    .await
    .unwrap();
    let (publisher, consumer) = (bus_on(&node).await, bus_on(&node).await);
    let node = durable_faults::acked_messages_survive_a_kill(node, publisher, consumer, 300, 1).await;
    drop(node);
}

/// TLS beyond the URL, against a private node that requires a client certificate:
/// `amqp_tls_ca` trusts the node's own CA, `amqp_tls_cert`/`amqp_tls_key` present the
/// client's certificate, and `amqp_require_tls` holds; without the CA or without the client
/// certificate the connection is refused with `backend`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let node = tokio::task::spawn_blocking(RabbitNode::start_tls).await.unwrap();
    let file = |f: &str| node.dir().join(f).display().to_string();
    let url = format!("amqps://guest:guest@localhost:{}/%2f", node.tls_port());
    let config = |keys: &[&str]| {
        let mut c = Config::default()
            .with_backend(Backend::RabbitMq)
            .with_amqp_url(url.clone())
            .with_publish_timeout(Duration::from_secs(5));
        c.set("amqp_require_tls", "true").unwrap();
        for key in keys {
            let path = match *key {
                "amqp_tls_ca" => file("ca.pem"),
                "amqp_tls_cert" => file("client.pem"),
                _ => file("client.key"),
            };
            c.set(key, &path).unwrap();
        }
        c
    };
    let bus = busbar::connect(config(&["amqp_tls_ca", "amqp_tls_cert", "amqp_tls_key"]))
        .await
        .unwrap();
    let mut sub = bus.subscribe("tls.x").await.unwrap();
    bus.publish("tls.x", "sealed".into()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&got.data()[..], b"sealed");
    bus.close().await.unwrap();
    for keys in [&["amqp_tls_cert", "amqp_tls_key"][..], &["amqp_tls_ca"][..]] {
        let e = busbar::connect(config(keys))
            .await
            .err()
            .expect("a refused connection");
        assert_eq!(e.code(), "backend", "{keys:?}: {e}");
    }
    drop(node);
}

/// A hung node (its VM frozen with SIGSTOP: connections are accepted and bytes taken,
/// nothing is answered) bounds every call: each fails with `backend` (a request with
/// `backend` or `timeout`) within `publish_timeout_ms` (2 s here) or, for a connect,
/// `connect_timeout_ms`, never hangs. Found by a CI run that sat in a fault test until its
/// 90 minutes ran out; these are the calls that waited on the broker without a bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_bounds_every_call() {
    use busbar::{ConsumerConfig, StreamConfig};
    let node = tokio::task::spawn_blocking(RabbitNode::start).await.unwrap();
    let bus = bus_on(&node).await;
    let mut sub = bus.subscribe("hung.x").await.unwrap();
    bus.publish("hung.x", "before".into()).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("delivered before the freeze")
        .unwrap()
        .unwrap();
    assert_eq!(&got.data()[..], b"before");
    // A durable message taken before the freeze, settled during it.
    durable_faults::declare_stream(&bus).await;
    let mut durable_sub = bus
        .durable_subscribe(ConsumerConfig::new("FAULT", "hung"))
        .await
        .unwrap();
    durable_faults::publish_until_acked(&bus, "fault.hung", "d-1").await;
    let taken = tokio::time::timeout(Duration::from_secs(10), durable_sub.next())
        .await
        .expect("a durable delivery before the freeze")
        .unwrap()
        .unwrap();

    node.pause();
    // Each call, with how long it may take: its bound plus a margin for a loaded machine.
    let limit = Duration::from_secs(8);
    macro_rules! bounded {
        ($what:literal, $call:expr, $codes:pat) => {{
            let started = std::time::Instant::now();
            let outcome = tokio::time::timeout(limit, $call)
                .await
                .unwrap_or_else(|_| panic!("{} hung on a frozen broker", $what));
            let e = outcome
                .err()
                .unwrap_or_else(|| panic!("{} succeeded on a frozen broker", $what));
            assert!(matches!(e.code(), $codes), "{}: {e}", $what);
            eprintln!("{}: {} after {:?}: {e}", $what, e.code(), started.elapsed());
        }};
    }
    // A plain publish is written to the socket, whose kernel buffer takes it: it may
    // return, as on NATS (the flush below is what fails); it never hangs.
    let publish = tokio::time::timeout(limit, bus.publish("hung.x", "during".into()))
        .await
        .expect("publish hung on a frozen broker");
    assert!(
        publish.as_ref().map_or_else(|e| e.code() == "backend", |()| true),
        "{publish:?}"
    );
    bounded!("flush", bus.flush(), "backend");
    bounded!("subscribe", bus.subscribe("hung.y"), "backend");
    bounded!(
        "queue_subscribe",
        bus.queue_subscribe("hung.y", "workers"),
        "backend"
    );
    bounded!(
        "request",
        bus.request("hung.svc", "q".into(), Duration::from_secs(2)),
        "backend" | "timeout"
    );
    bounded!(
        "declare_stream",
        bus.declare_stream(StreamConfig::new("HUNG", ["hung.s.>"])),
        "backend"
    );
    bounded!("stream_info", bus.stream_info("HUNG"), "backend");
    let durable = bus.message("hung.s.1").data("d").build().unwrap();
    bounded!("publish_durable", bus.publish_durable(durable), "backend");
    bounded!(
        "durable_subscribe",
        bus.durable_subscribe(ConsumerConfig::new("HUNG", "worker")),
        "backend"
    );
    bounded!("list_streams", bus.list_streams(), "backend");
    bounded!("ack", taken.ack(), "backend");
    bounded!("drain", sub.drain(), "backend");
    let mut config = Config::default()
        .with_backend(Backend::RabbitMq)
        .with_amqp_url(node.url());
    config.connect_timeout_ms = 2000;
    bounded!("connect", busbar::connect(config), "backend");
    bounded!("close", bus.close(), "backend");
    // Closed all the same: later calls fail with `closed` at once.
    let e = bus.publish("hung.x", "after".into()).await.unwrap_err();
    assert_eq!(e.code(), "closed", "{e}");
    node.resume();
    drop(node);
}
