//! OpenTelemetry metrics (cargo feature `otel-metrics`; docs/guide/observability.md): the
//! counters and gauges of `bus.metrics()` as observable instruments on a `Meter` the
//! application gives, so that its OpenTelemetry SDK exports them with the exporter it
//! chose (OTLP to a collector, say).
//!
//! ```ignore
//! let provider = SdkMeterProvider::builder()
//!     .with_periodic_exporter(opentelemetry_otlp::MetricExporter::builder().with_tonic().build()?)
//!     .build();
//! busbar::otel::metrics::observe(&bus, &provider.meter("busbar"));
//! ```
//!
//! Nothing is added to the publish path: as for a Prometheus scrape, each instrument's
//! callback reads the counters the bus keeps anyway, when the SDK collects. Names, help
//! texts, labels (as attributes) and their bounds are those of `metrics()`: one list of
//! series, in core's collectors, serves both. The request-duration histogram is the one
//! series `metrics()` has and OpenTelemetry does not get (an observable histogram does not
//! exist in its API); `busbar_requests` counts the outcomes.

use std::sync::{Arc, Weak};

use opentelemetry::metrics::{AsyncInstrument, Meter};
use opentelemetry::KeyValue;

use crate::bus::EventBus;
use crate::metrics::{Labels, Scrape};

/// The instruments [`observe`] registered, by the family names of `metrics()`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Observed {
    /// Counters, named as in `metrics()` without the `_total` that OpenMetrics adds.
    pub counters: Vec<&'static str>,
    /// Gauges.
    pub gauges: Vec<&'static str>,
}

/// Registers on `meter` one observable instrument per counter and gauge family `bus`
/// reports: what its backend and its layers (policy, resilience) count, labelled families
/// included before they have a label set. Each instrument observes the bus while it lives;
/// once the bus is dropped they observe nothing (the meter keeps no bus alive). Call it
/// once per bus and meter: a second call registers the same names again.
pub fn observe(bus: &Arc<dyn EventBus>, meter: &Meter) -> Observed {
    let mut scrape = Scrape::new();
    bus.collect_metrics(&mut scrape);
    let mut observed = Observed::default();
    for (name, help, counter, _) in scrape.families() {
        let bus = Arc::downgrade(bus);
        if counter {
            meter
                .u64_observable_counter(name)
                .with_description(help)
                .with_callback(move |o| report(&bus, name, |v, a| o.observe(v.max(0) as u64, a)))
                .build();
            observed.counters.push(name);
        } else {
            meter
                .i64_observable_gauge(name)
                .with_description(help)
                .with_callback(move |o: &dyn AsyncInstrument<i64>| report(&bus, name, |v, a| o.observe(v, a)))
                .build();
            observed.gauges.push(name);
        }
    }
    observed
}

/// Observes family `name` of `bus` now, one measurement per label set.
fn report(bus: &Weak<dyn EventBus>, name: &str, mut observe: impl FnMut(i64, &[KeyValue])) {
    let Some(bus) = bus.upgrade() else {
        return;
    };
    let mut scrape = Scrape::new();
    bus.collect_metrics(&mut scrape);
    for (_, _, _, samples) in scrape.families().filter(|(n, ..)| *n == name) {
        for (labels, value) in samples {
            observe(*value, &attributes(labels));
        }
    }
}

fn attributes(labels: &Labels) -> Vec<KeyValue> {
    labels
        .iter()
        .map(|(key, value)| KeyValue::new(*key, value.clone()))
        .collect()
}
