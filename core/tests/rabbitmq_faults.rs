//! Faults of the RabbitMQ backend against a private node that the test kills (SIGKILL)
//! and restarts on the same store and port: calls during the outage fail with `backend`
//! within `publish_timeout_ms` (none hangs), the loss is reported as connection events
//! and counted in `disconnects`; after a restart a new connection works, and (the ignored
//! test, see its note) the same bus reconnects by itself.
#![cfg(feature = "rabbitmq")]

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, ConnectionEvent, EventBus};

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

/// The same bus resumes by itself after the restart (lapin's recovery): same subscription,
/// same request inbox. Ignored in the default run: with lapin 4.12.3 the recovery sometimes
/// never completes when the broker dies in the middle of a publish (seen in about one run in
/// three on a loaded machine: the publish stalls until `publish_timeout_ms` and no
/// reconnection follows). Run with `cargo test --test rabbitmq_faults -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "lapin's recovery sometimes stalls after a kill mid-publish; run with --ignored"]
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
    // lapin reconnects the first bus and replays its topology.
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
    // Delivery resumes on the same subscription; what was in flight is gone (at-most-once).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resumed = loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the subscription did not resume"
        );
        let _ = bus.publish("fault.after", "2".into()).await;
        match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            Ok(Some(Ok(m))) if m.subject() == "fault.after" => break m,
            Ok(None) => panic!("the subscription ended with the connection"),
            _ => continue,
        }
    };
    assert_eq!(&resumed.data()[..], b"2");
    let reply = bus
        .request("fault.svc", "again".into(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(&reply.data()[..], b"again");
    bus.close().await.unwrap();
    let _ = served.await;
    drop(node);
}
