//! What an operator watches (docs/guide/observability.md): a bus's [`Health`], and its
//! metrics as Prometheus text exposition, built by a [`Scrape`] from counters the bus
//! keeps anyway. Nothing here runs on the publish path: a scrape reads the counters.
//!
//! Label values are bounded: subscriptions are labelled by pattern and queue group,
//! durable consumers by stream and consumer, never by a concrete subject; each family
//! keeps at most [`MAX_LABEL_SETS`] label sets, later ones are counted under `_other`.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::backend::queue::QueueState;
use crate::error::{Error, Result};

/// Most label sets one family keeps (distinct patterns with queue groups, distinct
/// stream/consumer pairs); past it, new ones are counted under the value `_other`.
pub const MAX_LABEL_SETS: usize = 256;

/// The label value that stands for every label set past [`MAX_LABEL_SETS`].
pub const OTHER: &str = "_other";

/// Longest label value kept, in bytes; a longer pattern is cut and ends with `~`.
const MAX_LABEL_VALUE: usize = 128;

/// Where a bus stands with its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected (the in-memory bus always is, until closed).
    Connected,
    /// Not connected now; the client is (re)connecting and buffers publishes meanwhile.
    Disconnected,
    /// Closed by `close()`: every call fails with `closed`.
    Closed,
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionState::Connected => "connected",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Closed => "closed",
        })
    }
}

/// A bus's health now (`bus.health()` in every language; `/readyz` answers
/// [`Health::ready`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Health {
    /// Connection state.
    pub state: ConnectionState,
    /// The last error the connection reported (server or client), if any.
    pub last_error: Option<String>,
    /// Requests (and flushes) waiting for their reply now.
    pub pending_requests: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Of those, subscriptions that have missed messages since they last caught up.
    pub lagging_subscriptions: u64,
    /// Request circuits open or half-open now (the resilience layer's breaker; 0 when
    /// it is off).
    pub open_circuits: u64,
    /// The subjects of the first 100 of them, in order.
    pub open_circuit_subjects: Vec<String>,
}

impl Health {
    /// A connected bus with nothing pending.
    pub fn connected() -> Self {
        Health {
            state: ConnectionState::Connected,
            last_error: None,
            pending_requests: 0,
            subscriptions: 0,
            lagging_subscriptions: 0,
            open_circuits: 0,
            open_circuit_subjects: Vec::new(),
        }
    }

    /// Whether the bus can carry traffic now: connected (what `/readyz` reports).
    pub fn ready(&self) -> bool {
        self.state == ConnectionState::Connected
    }

    /// As a JSON object (what `/healthz` and `/readyz` answer): `state`, `ready`,
    /// `last_error`, `pending_requests`, `subscriptions`, `lagging_subscriptions`,
    /// `open_circuits`, `open_circuit_subjects`.
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "state": self.state.to_string(),
            "ready": self.ready(),
            "last_error": self.last_error,
            "pending_requests": self.pending_requests,
            "subscriptions": self.subscriptions,
            "lagging_subscriptions": self.lagging_subscriptions,
            "open_circuits": self.open_circuits,
            "open_circuit_subjects": self.open_circuit_subjects,
        })
        .to_string()
    }

    /// Adds the health gauges to `scrape`.
    pub fn collect(&self, scrape: &mut Scrape) {
        scrape.gauge(
            "busbar_connected",
            "1 while the bus is connected to its server (the in-memory bus: until closed).",
            i64::from(self.ready()),
        );
        scrape.gauge(
            "busbar_pending_requests",
            "Requests waiting for their reply now.",
            to_i64(self.pending_requests),
        );
        scrape.gauge(
            "busbar_lagging_subscriptions",
            "Live subscriptions that missed messages since they last caught up.",
            to_i64(self.lagging_subscriptions),
        );
    }
}

pub(crate) type Labels = Vec<(&'static str, String)>;

/// One metric family of a scrape, with its samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, i64)>,
}

/// The families a scrape collected, encoded when the registry is.
#[derive(Debug, Default)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
        for family in self.0.iter().filter(|f| !f.samples.is_empty()) {
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, family.kind)?;
            if let [(labels, value)] = family.samples.as_slice() {
                if labels.is_empty() {
                    // Unlabelled: `name 3`, not `name{} 3`.
                    encode_sample(family.kind, *value, metric)?;
                    continue;
                }
            }
            for (labels, value) in &family.samples {
                encode_sample(family.kind, *value, metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

fn encode_sample(kind: MetricType, value: i64, encoder: MetricEncoder<'_>) -> fmt::Result {
    match kind {
        MetricType::Counter => ConstCounter::new(value as u64).encode(encoder),
        _ => ConstGauge::new(value).encode(encoder),
    }
}

/// The metrics of one bus being collected: [`crate::EventBus::collect_metrics`] adds
/// series to it, [`Scrape::encode`] writes them as OpenMetrics text (which Prometheus
/// scrapes, `Content-Type: application/openmetrics-text; version=1.0.0`).
pub struct Scrape {
    registry: Registry,
    families: Families,
}

impl Scrape {
    /// An empty scrape.
    pub fn new() -> Self {
        Scrape {
            registry: Registry::default(),
            families: Families::default(),
        }
    }

    /// Adds a counter (`name` without its `_total` suffix, which the encoding adds).
    pub fn counter(&mut self, name: &'static str, help: &'static str, value: u64) {
        self.labelled(name, help, MetricType::Counter, vec![(Vec::new(), to_i64(value))]);
    }

    /// Adds a gauge.
    pub fn gauge(&mut self, name: &'static str, help: &'static str, value: i64) {
        self.labelled(name, help, MetricType::Gauge, vec![(Vec::new(), value)]);
    }

    /// Adds `busbar_info{backend, version} 1`.
    pub fn info(&mut self, backend: &str, version: &str) {
        let labels = vec![
            ("backend", label_value(backend)),
            ("version", label_value(version)),
        ];
        self.labelled(
            "busbar_info",
            "The bus's backend and busbar's version.",
            MetricType::Gauge,
            vec![(labels, 1)],
        );
    }

    fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        samples: Vec<(Labels, i64)>,
    ) {
        // A family with no samples yet (no subscription, no durable consumer) is kept, so
        // that `families` lists every family the bus has, but not encoded.
        self.families.0.push(Family {
            name,
            help,
            kind,
            samples,
        });
    }

    /// Every counter and gauge family added, with its samples (none yet for a labelled
    /// family with no label set): name, help, whether it is a counter, and each sample's
    /// labels and value. The request-duration histogram is not among them.
    #[cfg(feature = "otel-metrics")]
    pub(crate) fn families(
        &self,
    ) -> impl Iterator<Item = (&'static str, &'static str, bool, &[(Labels, i64)])> + '_ {
        self.families.0.iter().map(|f| {
            (
                f.name,
                f.help,
                f.kind == MetricType::Counter,
                f.samples.as_slice(),
            )
        })
    }

    /// The OpenMetrics text of everything added.
    pub fn encode(mut self) -> String {
        self.registry.register_collector(Box::new(self.families));
        let mut text = String::new();
        // Writing to a String cannot fail, and every name here is well formed.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Scrape {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("families", &self.families.0.len())
            .finish()
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// `value` as a label value: control characters, quotes and backslashes become `_`
/// (a hostile pattern cannot forge a series), cut at [`MAX_LABEL_VALUE`] bytes.
pub(crate) fn label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len().min(MAX_LABEL_VALUE + 1));
    for c in value.chars() {
        if out.len() + c.len_utf8() > MAX_LABEL_VALUE {
            out.push('~');
            break;
        }
        out.push(if c.is_control() || c == '"' || c == '\\' {
            '_'
        } else {
            c
        });
    }
    out
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A subscription's label set: pattern and queue group (empty for none).
type SubKey = (String, String);

/// Counters a subscription leaves behind when it ends, kept under its label set so
/// that its family's counters never go down.
#[derive(Default, Clone, Copy)]
struct Totals {
    delivered: u64,
    missed: u64,
    undecodable: u64,
}

#[derive(Default)]
struct Tracked {
    live: Vec<(Arc<SubKey>, Arc<QueueState>)>,
    /// Every label set seen, with what its ended subscriptions counted.
    keys: HashMap<Arc<SubKey>, Totals>,
    /// `live.len()` after the last prune: the next one comes at twice that.
    pruned_at: usize,
}

impl Tracked {
    /// Folds subscriptions nothing else holds any more into their label set's totals.
    fn prune(&mut self) {
        let keys = &mut self.keys;
        self.live.retain(|(key, state)| {
            if Arc::strong_count(state) > 1 {
                return true;
            }
            let s = state.stats();
            let totals = keys.entry(key.clone()).or_default();
            totals.delivered += s.delivered;
            totals.missed += s.missed;
            totals.undecodable += s.undecodable;
            false
        });
        self.pruned_at = self.live.len();
    }

    fn key(&mut self, pattern: &str, group: Option<&str>) -> Arc<SubKey> {
        let key = (label_value(pattern), label_value(group.unwrap_or("")));
        if let Some((k, _)) = self.keys.get_key_value(&key) {
            return k.clone();
        }
        let key = if self.keys.len() < MAX_LABEL_SETS {
            key
        } else {
            (OTHER.to_owned(), OTHER.to_owned())
        };
        let key = Arc::new(key);
        self.keys.entry(key.clone()).or_default();
        key
    }
}

/// The durable-consumer counters of one stream and consumer.
#[derive(Default, Debug)]
pub(crate) struct DurableCounts {
    pub(crate) acks: AtomicU64,
    pub(crate) naks: AtomicU64,
    pub(crate) terms: AtomicU64,
    pub(crate) dead_letters: AtomicU64,
    pub(crate) redeliveries: AtomicU64,
}

/// Request outcomes, in the order of [`OUTCOMES`].
const OUTCOMES: [&str; 4] = ["ok", "timeout", "no_responders", "error"];

/// What a bus counts for its metrics besides [`crate::BusStats`]: subscriptions by
/// label set, request outcomes and latency, durable settlements, connection events.
pub(crate) struct Instruments {
    subs: Mutex<Tracked>,
    outcomes: [AtomicU64; 4],
    latency: Histogram,
    durable: Mutex<HashMap<SubKey, Arc<DurableCounts>>>,
    pub(crate) slow_consumers: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for Instruments {
    fn default() -> Self {
        Instruments {
            subs: Mutex::default(),
            outcomes: Default::default(),
            // 0.5 ms to 16 s, doubling.
            latency: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            durable: Mutex::default(),
            slow_consumers: AtomicU64::new(0),
            last_error: Mutex::default(),
        }
    }
}

impl Instruments {
    /// Follows a new subscription's queue for the per-pattern families.
    pub(crate) fn track(&self, pattern: &str, group: Option<&str>, state: &Arc<QueueState>) {
        let mut subs = lock(&self.subs);
        if subs.live.len() >= (2 * subs.pruned_at).max(64) {
            subs.prune();
        }
        let key = subs.key(pattern, group);
        subs.live.push((key, state.clone()));
    }

    /// Runs a request, then counts its outcome and observes its duration. A request
    /// dropped before it ends (a cancelled awaitable) is not counted.
    pub(crate) async fn request<T>(&self, request: impl Future<Output = Result<T>>) -> Result<T> {
        let started = Instant::now();
        let result = request.await;
        let i = match result.as_ref().map_err(Error::code) {
            Ok(_) => 0,
            Err("timeout") => 1,
            Err("no_responders") => 2,
            Err(_) => 3,
        };
        self.outcomes[i].fetch_add(1, Relaxed);
        self.latency.observe(started.elapsed().as_secs_f64());
        result
    }

    /// The counters of durable consumer `consumer` on `stream` (shared by its subscriptions).
    pub(crate) fn durable(&self, stream: &str, consumer: &str) -> Arc<DurableCounts> {
        let mut durable = lock(&self.durable);
        let mut key = (label_value(stream), label_value(consumer));
        if !durable.contains_key(&key) && durable.len() >= MAX_LABEL_SETS {
            key = (OTHER.to_owned(), OTHER.to_owned());
        }
        durable.entry(key).or_default().clone()
    }

    /// Remembers the last error the connection reported, for [`Health::last_error`].
    pub(crate) fn set_last_error(&self, error: String) {
        *lock(&self.last_error) = Some(error);
    }

    /// Live subscriptions and, of those, how many are lagging.
    fn lagging(&self) -> u64 {
        let subs = lock(&self.subs);
        subs.live
            .iter()
            .filter(|(_, s)| Arc::strong_count(s) > 1 && s.stats().lagging)
            .count() as u64
    }

    /// Fills in what [`Health`] takes from here.
    pub(crate) fn health(&self, health: &mut Health) {
        health.last_error = lock(&self.last_error).clone();
        health.lagging_subscriptions = self.lagging();
    }

    /// Adds this bus's families to `scrape`.
    pub(crate) fn collect(&self, scrape: &mut Scrape) {
        self.collect_subscriptions(scrape);
        let outcomes = OUTCOMES
            .iter()
            .zip(&self.outcomes)
            .map(|(outcome, n)| (vec![("outcome", (*outcome).to_owned())], to_i64(n.load(Relaxed))))
            .collect();
        scrape.labelled(
            "busbar_requests",
            "Requests by outcome: ok, timeout, no_responders, error.",
            MetricType::Counter,
            outcomes,
        );
        scrape.registry.register(
            "busbar_request_duration_seconds",
            "Time from request to reply (or failure), in seconds.",
            self.latency.clone(),
        );
        self.collect_durable(scrape);
        scrape.counter(
            "busbar_slow_consumer_events",
            "Times the server or client reported a slow consumer (messages dropped).",
            self.slow_consumers.load(Relaxed),
        );
    }

    fn collect_subscriptions(&self, scrape: &mut Scrape) {
        let mut subs = lock(&self.subs);
        subs.prune();
        // Per label set: delivered, missed, undecodable, pending, pending bytes, live, lagging.
        let mut sums: HashMap<Arc<SubKey>, [u64; 7]> = HashMap::new();
        for (key, totals) in &subs.keys {
            sums.insert(
                key.clone(),
                [totals.delivered, totals.missed, totals.undecodable, 0, 0, 0, 0],
            );
        }
        for (key, state) in &subs.live {
            let s = state.stats();
            let sum = sums.entry(key.clone()).or_default();
            sum[0] += s.delivered;
            sum[1] += s.missed;
            sum[2] += s.undecodable;
            sum[3] += s.pending;
            sum[4] += s.pending_bytes;
            sum[5] += 1;
            sum[6] += u64::from(s.lagging);
        }
        drop(subs);
        let mut sums: Vec<_> = sums.into_iter().collect();
        sums.sort_by(|a, b| a.0.cmp(&b.0));
        let column = |i: usize| -> Vec<(Labels, i64)> {
            sums.iter()
                .map(|(key, sum)| {
                    let labels = vec![("pattern", key.0.clone()), ("queue_group", key.1.clone())];
                    (labels, to_i64(sum[i]))
                })
                .collect()
        };
        use MetricType::{Counter, Gauge};
        let families: [(&'static str, &'static str, MetricType); 7] = [
            (
                "busbar_subscription_delivered",
                "Messages queued to subscriptions, by pattern and queue group.",
                Counter,
            ),
            (
                "busbar_subscription_missed",
                "Messages subscriptions missed because their buffer was full (lag).",
                Counter,
            ),
            (
                "busbar_subscription_undecodable",
                "Messages subscriptions received that could not be decoded.",
                Counter,
            ),
            (
                "busbar_subscription_pending_messages",
                "Messages waiting in subscriptions' buffers now.",
                Gauge,
            ),
            (
                "busbar_subscription_pending_bytes",
                "Bytes waiting in subscriptions' buffers now.",
                Gauge,
            ),
            ("busbar_subscription_active", "Live subscriptions.", Gauge),
            (
                "busbar_subscription_lagging",
                "Live subscriptions that missed messages since they last caught up.",
                Gauge,
            ),
        ];
        for (i, (name, help, kind)) in families.into_iter().enumerate() {
            scrape.labelled(name, help, kind, column(i));
        }
    }

    fn collect_durable(&self, scrape: &mut Scrape) {
        let mut durable: Vec<(SubKey, Arc<DurableCounts>)> = lock(&self.durable)
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        durable.sort_by(|a, b| a.0.cmp(&b.0));
        type Field = fn(&DurableCounts) -> &AtomicU64;
        let families: [(&'static str, &'static str, Field); 5] = [
            ("busbar_durable_acks", "Durable messages acknowledged.", |c| {
                &c.acks
            }),
            (
                "busbar_durable_naks",
                "Durable messages negatively acknowledged (redelivered later).",
                |c| &c.naks,
            ),
            (
                "busbar_durable_terms",
                "Durable messages terminated (dead-lettered by the handler).",
                |c| &c.terms,
            ),
            (
                "busbar_durable_dead_letters",
                "Durable messages stored under the dead-letter subject.",
                |c| &c.dead_letters,
            ),
            (
                "busbar_durable_redeliveries",
                "Durable deliveries past the first attempt.",
                |c| &c.redeliveries,
            ),
        ];
        for (name, help, field) in families {
            let samples = durable
                .iter()
                .map(|((stream, consumer), counts)| {
                    let labels = vec![("stream", stream.clone()), ("consumer", consumer.clone())];
                    (labels, to_i64(field(counts).load(Relaxed)))
                })
                .collect();
            scrape.labelled(name, help, MetricType::Counter, samples);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_pattern_cannot_forge_a_series() {
        let v = label_value("a\"} 1\nbusbar_x{y=\"\\");
        assert!(!v.contains('"') && !v.contains('\n') && !v.contains('\\'), "{v}");
        let long = label_value(&"x".repeat(5000));
        assert_eq!(long.len(), MAX_LABEL_VALUE + 1);
    }

    #[test]
    fn label_sets_are_bounded() {
        let instruments = Instruments::default();
        let mut states = Vec::new();
        for i in 0..MAX_LABEL_SETS + 50 {
            let state = Arc::new(QueueState::default());
            instruments.track(&format!("user.{i}.>"), None, &state);
            states.push(state);
        }
        let mut scrape = Scrape::new();
        instruments.collect(&mut scrape);
        let text = scrape.encode();
        let active = text
            .lines()
            .filter(|l| l.starts_with("busbar_subscription_active{"))
            .count();
        assert_eq!(active, MAX_LABEL_SETS + 1, "{text}");
        assert!(text.contains("busbar_subscription_active{pattern=\"_other\",queue_group=\"_other\"} 50"));
    }

    #[test]
    fn an_ended_subscription_keeps_its_counts() {
        let instruments = Instruments::default();
        let state = Arc::new(QueueState::default());
        instruments.track("orders.*", Some("workers"), &state);
        drop(state);
        let mut scrape = Scrape::new();
        instruments.collect(&mut scrape);
        let text = scrape.encode();
        assert!(text
            .contains("busbar_subscription_delivered_total{pattern=\"orders.*\",queue_group=\"workers\"} 0"));
        assert!(
            text.contains("busbar_subscription_active{pattern=\"orders.*\",queue_group=\"workers\"} 0"),
            "{text}"
        );
    }
}
