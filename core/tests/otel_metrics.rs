//! OpenTelemetry metrics (feature `otel-metrics`): `busbar::otel::metrics::observe` gives
//! the SDK's in-memory exporter the same series, labels and values as `bus.metrics()`,
//! on a private nats-server, and observes nothing once the bus is gone.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use busbar::EventBus;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

#[path = "support/nats_server.rs"]
mod nats_server;

/// A data point: instrument name, sorted attributes, value.
type Point = (String, Vec<(String, String)>, i64);

/// Each data point of the last export.
fn points(exporter: &InMemoryMetricExporter) -> Vec<Point> {
    let exports: Vec<ResourceMetrics> = exporter.get_finished_metrics().unwrap();
    let Some(last) = exports.last() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for scope in last.scope_metrics() {
        for metric in scope.metrics() {
            let name = metric.name().to_owned();
            let attrs = |it: &mut dyn Iterator<Item = &opentelemetry::KeyValue>| {
                let mut v: Vec<_> = it.map(|kv| (kv.key.to_string(), kv.value.to_string())).collect();
                v.sort();
                v
            };
            match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    for p in sum.data_points() {
                        out.push((name.clone(), attrs(&mut p.attributes()), p.value() as i64));
                    }
                }
                AggregatedMetrics::I64(MetricData::Gauge(gauge)) => {
                    for p in gauge.data_points() {
                        out.push((name.clone(), attrs(&mut p.attributes()), p.value()));
                    }
                }
                other => panic!("{name}: unexpected aggregation {other:?}"),
            }
        }
    }
    out
}

fn value(points: &[Point], name: &str, attrs: &[(&str, &str)]) -> Option<i64> {
    let mut want: Vec<(String, String)> = attrs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    want.sort();
    points
        .iter()
        .find(|(n, a, _)| n == name && *a == want)
        .map(|p| p.2)
}

/// Names of the counter and gauge families of OpenMetrics `text`.
fn families(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .filter(|(_, kind)| *kind == "counter" || *kind == "gauge")
        .map(|(name, _)| name.to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_of_metrics_reach_an_opentelemetry_exporter() {
    let server = nats_server::NatsServer::start_async().await;
    let bus: Arc<dyn EventBus> = busbar::connect(server.config()).await.unwrap();
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();

    // Observed before any subscription: the per-pattern families are registered all the same.
    let observed = busbar::otel::metrics::observe(&bus, &provider.meter("busbar"));
    for name in [
        "busbar_published",
        "busbar_subscription_delivered",
        "busbar_requests",
    ] {
        assert!(observed.counters.contains(&name), "{name} not among {observed:?}");
    }
    for name in ["busbar_subscriptions", "busbar_connected", "busbar_info"] {
        assert!(observed.gauges.contains(&name), "{name} not among {observed:?}");
    }

    let mut sub = bus.subscribe("orders.>").await.unwrap();
    for i in 0..3 {
        bus.publish(&format!("orders.eu.{i}"), "{}".into()).await.unwrap();
    }
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    let timed_out = bus
        .request("nobody.home", "?".into(), Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        matches!(timed_out.code(), "no_responders" | "timeout"),
        "{timed_out}"
    );

    let text = bus.metrics();
    provider.force_flush().unwrap();
    let got = points(&exporter);

    // Every counter and gauge family of metrics() is an instrument, with the same name.
    let exported: BTreeSet<String> = got.iter().map(|p| p.0.clone()).collect();
    let missing: Vec<_> = families(&text).difference(&exported).cloned().collect();
    assert!(missing.is_empty(), "in metrics() but not exported: {missing:?}");

    assert_eq!(
        value(&got, "busbar_published", &[]),
        Some(4),
        "3 publishes and the request"
    );
    assert_eq!(value(&got, "busbar_subscriptions", &[]), Some(1));
    assert_eq!(value(&got, "busbar_connected", &[]), Some(1));
    assert_eq!(
        value(
            &got,
            "busbar_subscription_delivered",
            &[("pattern", "orders.>"), ("queue_group", "")]
        ),
        Some(3),
        "{got:?}"
    );
    assert_eq!(value(&got, "busbar_requests", &[("outcome", "ok")]), Some(0));
    let failed: i64 = ["timeout", "no_responders"]
        .iter()
        .filter_map(|o| value(&got, "busbar_requests", &[("outcome", o)]))
        .sum();
    assert_eq!(failed, 1);
    assert!(
        text.contains("busbar_subscription_delivered_total{pattern=\"orders.>\",queue_group=\"\"} 3"),
        "{text}"
    );

    // A bus that is gone is observed no more: the meter kept no reference to it.
    drop(sub);
    bus.close().await.unwrap();
    drop(bus);
    exporter.reset();
    // A counter of the application's, so that the export below is known to have happened.
    let control = provider.meter("app").u64_counter("app_events").build();
    control.add(2, &[]);
    provider.force_flush().unwrap();
    let after = points(&exporter);
    assert_eq!(value(&after, "app_events", &[]), Some(2), "{after:?}");
    assert_eq!(value(&after, "busbar_published", &[]), None, "{after:?}");
    provider.shutdown().unwrap();
}
