//! Metrics, health and the `metrics_addr` endpoint (docs/guide/observability.md): the
//! series after a known workload, label bounds, the endpoint's answers, a real Prometheus
//! scraping it, and `/readyz` following a NATS server that goes away and comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use busbar::{Config, ConnectionState, ConsumerConfig, EventBus, StreamConfig};

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;
#[path = "support/prometheus.rs"]
mod prometheus;
use prometheus::{free_port, http_get, Prometheus};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Connects with `config` serving its endpoint on a free loopback port, and returns the
/// bus and that port. A port found free can be taken by another process or test before the
/// bus binds it (stop 27's CI run lost that race once), so a bind that fails with "Address
/// already in use" is retried on a fresh port, a bounded number of times; any other error
/// fails the test.
async fn connect_serving(config: Config) -> (Arc<dyn EventBus>, u16) {
    for _ in 0..20 {
        let port = free_port();
        match busbar::connect(config.clone().with_metrics_addr(addr(port))).await {
            Ok(bus) => return (bus, port),
            Err(e) if e.code() == "backend" && e.to_string().contains("Address already in use") => {}
            Err(e) => panic!("connect serving 127.0.0.1:{port}: {e}"),
        }
    }
    panic!("20 free ports in a row were taken before the bus could bind them");
}

/// The value of the sample line `series` (name and labels exactly as exposed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A known workload: 5 messages to `orders.*` (queue group `workers`), 3 to `audit.>`,
/// one request answered, one with no responders.
async fn workload(bus: &Arc<dyn EventBus>) {
    let mut orders = bus.queue_subscribe("orders.*", "workers").await.unwrap();
    let mut audit = bus.subscribe("audit.>").await.unwrap();
    let responder = bus.subscribe("svc.echo").await.unwrap();
    tokio::spawn(busbar::serve(responder, |m| async move { m.data().clone() }));
    for i in 0..5 {
        bus.publish(&format!("orders.{i}"), "o".into()).await.unwrap();
    }
    for i in 0..3 {
        bus.publish(&format!("audit.eu.{i}"), "a".into()).await.unwrap();
    }
    for _ in 0..5 {
        orders.next().await.unwrap().unwrap();
    }
    for _ in 0..3 {
        audit.next().await.unwrap().unwrap();
    }
    bus.flush().await.unwrap();
    let reply = bus.request("svc.echo", "hi".into(), Duration::from_secs(5)).await;
    assert_eq!(reply.unwrap().data(), "hi");
    let none = bus
        .request("svc.nobody", "hi".into(), Duration::from_secs(5))
        .await;
    assert_eq!(none.unwrap_err().code(), "no_responders");
    // Kept alive past the scrape: the live gauges count them.
    std::mem::forget(orders);
    std::mem::forget(audit);
}

#[tokio::test]
async fn metrics_count_a_known_workload_by_pattern_never_by_subject() {
    let bus = busbar::connect(Config::default()).await.unwrap();
    workload(&bus).await;
    let text = bus.metrics();
    let orders = "{pattern=\"orders.*\",queue_group=\"workers\"}";
    assert_eq!(
        sample(&text, &format!("busbar_subscription_delivered_total{orders}")),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("busbar_subscription_active{orders}")),
        Some(1.0)
    );
    let audit = "{pattern=\"audit.>\",queue_group=\"\"}";
    assert_eq!(
        sample(&text, &format!("busbar_subscription_delivered_total{audit}")),
        Some(3.0)
    );
    assert_eq!(sample(&text, "busbar_requests_total{outcome=\"ok\"}"), Some(1.0));
    assert_eq!(
        sample(&text, "busbar_requests_total{outcome=\"no_responders\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "busbar_request_duration_seconds_count"),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "busbar_connected"), Some(1.0));
    assert_eq!(
        sample(&text, "busbar_info{backend=\"memory\",version=\"0.1.0\"}"),
        Some(1.0)
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
    // No concrete subject ever becomes a label.
    assert!(!text.contains("orders.3") && !text.contains("audit.eu"), "{text}");
}

#[tokio::test]
async fn health_reports_state_subscriptions_and_close() {
    let bus = busbar::connect(Config::default()).await.unwrap();
    let _sub = bus.subscribe("a.>").await.unwrap();
    let health = bus.health();
    assert_eq!(health.state, ConnectionState::Connected);
    assert!(health.ready());
    assert_eq!(health.subscriptions, 1);
    assert_eq!(health.pending_requests, 0);
    bus.close().await.unwrap();
    let health = bus.health();
    assert_eq!(health.state, ConnectionState::Closed);
    assert!(!health.ready());
    assert_eq!(sample(&bus.metrics(), "busbar_connected"), Some(0.0));
}

#[tokio::test]
async fn durable_settlements_are_counted_by_stream_and_consumer() {
    let bus = busbar::connect(Config::default()).await.unwrap();
    bus.declare_stream(StreamConfig::new("ORDERS", ["orders.>"]))
        .await
        .unwrap();
    for data in ["a", "b", "c"] {
        let m = bus.message("orders.new").data(data).build().unwrap();
        bus.publish_durable(m).await.unwrap();
    }
    let config = ConsumerConfig::new("ORDERS", "billing").ack_wait(Duration::from_secs(30));
    let mut sub = bus.durable_subscribe(config).await.unwrap();
    // a: ack; b: nak, then ack on its second attempt; c: term (dead-lettered).
    for _ in 0..4 {
        let m = sub.next().await.unwrap().unwrap();
        match (&m.data()[..], m.attempt()) {
            (b"b", 1) => m.nak(Some(Duration::from_millis(1))).await.unwrap(),
            (b"c", _) => m.term("bad order").await.unwrap(),
            _ => m.ack().await.unwrap(),
        }
    }
    let text = bus.metrics();
    let labels = "{stream=\"ORDERS\",consumer=\"billing\"}";
    for (name, value) in [
        ("acks", 2.0),
        ("naks", 1.0),
        ("terms", 1.0),
        ("dead_letters", 1.0),
        ("redeliveries", 1.0),
    ] {
        let series = format!("busbar_durable_{name}_total{labels}");
        assert_eq!(sample(&text, &series), Some(value), "{series}\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_serves_metrics_and_health_until_the_bus_is_closed() {
    let (bus, port) = connect_serving(Config::default()).await;
    bus.publish("x.y", "1".into()).await.unwrap();
    let (status, body) = tokio::task::spawn_blocking(move || http_get(port, "/metrics").unwrap())
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(sample(&body, "busbar_published_total"), Some(1.0), "{body}");
    for path in ["/healthz", "/readyz"] {
        let (status, body) = tokio::task::spawn_blocking(move || http_get(port, path).unwrap())
            .await
            .unwrap();
        assert_eq!(status, 200, "{path}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["state"], "connected");
        assert_eq!(json["ready"], true);
    }
    let (status, _) = tokio::task::spawn_blocking(move || http_get(port, "/nothing").unwrap())
        .await
        .unwrap();
    assert_eq!(status, 404);

    // Closed: the server stops and the address is free for the next bus.
    bus.close().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let next = loop {
        match busbar::connect(Config::default().with_metrics_addr(addr(port))).await {
            Ok(next) => break next,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e.code(), "backend", "{e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the endpoint of a closed bus still holds its address: {e}"),
        }
    };
    next.close().await.unwrap();
}

#[tokio::test]
async fn a_taken_or_malformed_metrics_addr_fails_connect() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let err = busbar::connect(Config::default().with_metrics_addr(addr(port)))
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "backend");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    for bad in ["9464", "localhost:9464", "127.0.0.1:99999", ""] {
        let err = Config::from_vars([("BUSBAR_METRICS_ADDR", bad)]).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{bad:?}");
    }
}

/// Debian's Prometheus scrapes the endpoint and its query API shows the workload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_endpoint() {
    let (bus, port) = connect_serving(Config::default()).await;
    workload(&bus).await;
    tokio::task::spawn_blocking(move || {
        let prometheus = Prometheus::start(port);
        prometheus.wait_for("up{job=\"busbar\"}", 1.0);
        // 8 events, 2 requests and 1 reply.
        prometheus.wait_for("busbar_published_total", 11.0);
        let orders = "{pattern=\"orders.*\",queue_group=\"workers\"}";
        prometheus.wait_for(&format!("busbar_subscription_delivered_total{orders}"), 5.0);
        prometheus.wait_for(&format!("busbar_subscription_active{orders}"), 1.0);
        prometheus.wait_for("busbar_requests_total{outcome=\"no_responders\"}", 1.0);
        prometheus.wait_for("busbar_request_duration_seconds_count", 2.0);
        prometheus.wait_for("busbar_connected", 1.0);
        prometheus.wait_for("busbar_info{backend=\"memory\"}", 1.0);
    })
    .await
    .unwrap();
    bus.close().await.unwrap();
}

#[cfg(feature = "nats")]
mod nats {
    use super::*;
    use crate::nats_server::NatsServer;
    use busbar::Backend;

    async fn ready(port: u16) -> u16 {
        tokio::task::spawn_blocking(move || http_get(port, "/readyz").map(|r| r.0).unwrap_or(0))
            .await
            .unwrap()
    }

    /// Waits (bounded) until `/readyz` answers `status`.
    async fn until_ready_is(port: u16, status: u16) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while ready(port).await != status {
            assert!(
                tokio::time::Instant::now() < deadline,
                "/readyz never answered {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readyz_follows_the_nats_connection() {
        let mut server = tokio::task::spawn_blocking(NatsServer::start).await.unwrap();
        let config = Config::default()
            .with_backend(Backend::Nats)
            .with_nats_url(server.url());
        let (bus, port) = connect_serving(config).await;
        let mut sub = bus.subscribe("wire.>").await.unwrap();
        bus.publish("wire.a", "12345".into()).await.unwrap();
        sub.next().await.unwrap().unwrap();
        until_ready_is(port, 200).await;
        let text = bus.metrics();
        assert!(
            sample(&text, "busbar_wire_sent_messages_total").unwrap() >= 1.0,
            "{text}"
        );
        assert!(sample(&text, "busbar_wire_received_bytes_total").unwrap() >= 5.0);
        assert_eq!(
            sample(&text, "busbar_info{backend=\"nats\",version=\"0.1.0\"}"),
            Some(1.0)
        );

        server.kill();
        until_ready_is(port, 503).await;
        assert_eq!(bus.health().state, ConnectionState::Disconnected);
        server.restart();
        until_ready_is(port, 200).await;
        assert_eq!(sample(&bus.metrics(), "busbar_reconnects_total"), Some(1.0));
        assert!(sample(&bus.metrics(), "busbar_disconnects_total").unwrap() >= 1.0);
        bus.close().await.unwrap();
    }
}
