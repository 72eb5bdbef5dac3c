//! The circuit breaker of requests, one circuit per subject (docs/design.md §5): after
//! `breaker_failures` consecutive failures within `breaker_window_ms` the circuit opens and
//! requests to that subject fail at once with `circuit_open`; after `breaker_cooldown_ms`
//! one probe request goes through (half-open): its success closes the circuit, its failure
//! opens it again. Each change is a [`ConnectionEvent`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use std::time::Instant;

use tokio::sync::broadcast;

use crate::bus::ConnectionEvent;
use crate::envelope::Message;
use crate::error::{Error, Result};
use crate::service::SERVICE_ERROR;

/// Most subjects tracked at once. Only subjects with recent failures are tracked, and a
/// subject past this many while all are busy is simply not tracked, so a caller sending
/// requests to endless fresh subjects cannot grow the table.
const MAX_CIRCUITS: usize = 10_000;

/// Most open circuits `health()` names (it counts them all): a health answer stays small
/// when a broken service opens thousands.
pub(crate) const LISTED_CIRCUITS: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open {
        until: Instant,
    },
    /// The probe request is on its way.
    HalfOpen,
}

struct Circuit {
    state: State,
    failures: u32,
    since: Instant,
}

pub(crate) struct Breakers {
    threshold: u32,
    window: Duration,
    cooldown: Duration,
    circuits: Mutex<HashMap<String, Circuit>>,
    events: broadcast::Sender<ConnectionEvent>,
    /// `breaker_patterns`: the subjects a pattern matches share its circuit.
    patterns: Vec<String>,
}

/// How one request went, for its circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    /// Refused before it reached a responder (a bad argument, a policy): says nothing
    /// about the responder.
    Neutral,
}

impl Outcome {
    /// Timeouts, no responders, `backend` and error replies are failures of the responder.
    pub(crate) fn of(result: &Result<Message>) -> Outcome {
        match result {
            Ok(reply) if is_error_reply(reply) => Outcome::Failure,
            Ok(_) => Outcome::Success,
            Err(e) if matches!(e.code(), "timeout" | "no_responders" | "backend") => Outcome::Failure,
            Err(_) => Outcome::Neutral,
        }
    }
}

/// Whether `reply` is an error reply of the NATS services protocol (any case of the name).
pub(crate) fn is_error_reply(reply: &Message) -> bool {
    reply
        .headers()
        .keys()
        .any(|k| k.eq_ignore_ascii_case(SERVICE_ERROR))
}

impl Breakers {
    pub(crate) fn new(
        threshold: u32,
        window: Duration,
        cooldown: Duration,
        events: broadcast::Sender<ConnectionEvent>,
        patterns: Vec<String>,
    ) -> Breakers {
        Breakers {
            threshold,
            window,
            cooldown,
            circuits: Mutex::new(HashMap::new()),
            events,
            patterns,
        }
    }

    /// The circuit of `subject`: the first of `breaker_patterns` that matches it, else the
    /// subject itself.
    fn circuit_of<'a>(&'a self, subject: &'a str) -> &'a str {
        self.patterns
            .iter()
            .find(|pattern| crate::subject::matches(pattern, subject))
            .map_or(subject, String::as_str)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Circuit>> {
        self.circuits.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets a request to `subject` through (a [`Pass`] to report its outcome with), or
    /// fails it with `circuit_open`.
    pub(crate) fn admit<'a>(&'a self, subject: &str) -> Result<Pass<'a>> {
        self.admit_at(self.circuit_of(subject), Instant::now())
    }

    fn admit_at<'a>(&'a self, subject: &str, now: Instant) -> Result<Pass<'a>> {
        let mut circuits = self.lock();
        let Some(circuit) = circuits.get_mut(subject) else {
            return Ok(self.pass(subject, false));
        };
        match circuit.state {
            State::Closed => Ok(self.pass(subject, false)),
            State::Open { until } if now >= until => {
                circuit.state = State::HalfOpen;
                let _ = self
                    .events
                    .send(ConnectionEvent::CircuitHalfOpen(subject.to_owned()));
                Ok(self.pass(subject, true))
            }
            State::Open { until } => Err(self.open_error(subject, circuit, until - now)),
            // Another request is the probe: this one waits for its verdict, failing now.
            State::HalfOpen => Err(self.open_error(subject, circuit, Duration::ZERO)),
        }
    }

    fn pass<'a>(&'a self, subject: &str, probe: bool) -> Pass<'a> {
        Pass {
            breakers: self,
            subject: subject.to_owned(),
            probe,
            reported: false,
        }
    }

    fn open_error(&self, subject: &str, circuit: &Circuit, retry_in: Duration) -> Error {
        Error::CircuitOpen {
            subject: subject.to_owned(),
            failures: circuit.failures,
            retry_in,
        }
    }

    fn record(&self, subject: &str, probe: bool, outcome: Outcome, now: Instant) {
        let mut circuits = self.lock();
        match outcome {
            Outcome::Neutral => {
                // A probe that said nothing lets the next request probe.
                if let Some(c) = circuits
                    .get_mut(subject)
                    .filter(|c| probe && c.state == State::HalfOpen)
                {
                    c.state = State::Open { until: now };
                }
            }
            Outcome::Success => {
                if let Some(c) = circuits.remove(subject) {
                    if c.state != State::Closed {
                        let _ = self
                            .events
                            .send(ConnectionEvent::CircuitClosed(subject.to_owned()));
                    }
                }
            }
            Outcome::Failure => {
                if !circuits.contains_key(subject) && !make_room(&mut circuits, now, self.window) {
                    return;
                }
                let circuit = circuits.entry(subject.to_owned()).or_insert(Circuit {
                    state: State::Closed,
                    failures: 0,
                    since: now,
                });
                match circuit.state {
                    State::HalfOpen if probe => {
                        circuit.failures += 1;
                        self.open(subject, circuit, now);
                    }
                    State::Closed => {
                        if now.duration_since(circuit.since) > self.window {
                            circuit.failures = 0;
                            circuit.since = now;
                        }
                        circuit.failures += 1;
                        if circuit.failures >= self.threshold {
                            self.open(subject, circuit, now);
                        }
                    }
                    // A request let through before the circuit opened: already counted out.
                    State::Open { .. } | State::HalfOpen => {}
                }
            }
        }
    }

    /// How many circuits are open or half-open now, and the subjects of the first
    /// [`LISTED_CIRCUITS`] of them in order (what `health()` reports).
    pub(crate) fn open_circuits(&self) -> (u64, Vec<String>) {
        let circuits = self.lock();
        let mut subjects: Vec<&String> = circuits
            .iter()
            .filter(|(_, c)| c.state != State::Closed)
            .map(|(subject, _)| subject)
            .collect();
        let count = subjects.len() as u64;
        subjects.sort_unstable();
        let listed = subjects.into_iter().take(LISTED_CIRCUITS).cloned().collect();
        (count, listed)
    }

    /// How many circuits are open or half-open now, without listing them: what the
    /// `busbar_open_circuits` gauge reads on every scrape (no allocation, no sort).
    pub(crate) fn open_count(&self) -> u64 {
        self.lock().values().filter(|c| c.state != State::Closed).count() as u64
    }

    fn open(&self, subject: &str, circuit: &mut Circuit, now: Instant) {
        circuit.state = State::Open {
            until: now + self.cooldown,
        };
        let _ = self.events.send(ConnectionEvent::CircuitOpen(subject.to_owned()));
    }
}

/// Drops closed circuits whose failures are older than the window; false if the table
/// is still full.
fn make_room(circuits: &mut HashMap<String, Circuit>, now: Instant, window: Duration) -> bool {
    if circuits.len() < MAX_CIRCUITS {
        return true;
    }
    circuits.retain(|_, c| c.state != State::Closed || now.duration_since(c.since) <= window);
    circuits.len() < MAX_CIRCUITS
}

/// A request let through by [`Breakers::admit`]; report how it went with
/// [`Pass::report`]. Dropped unreported (the caller gave up), it counts as neutral.
pub(crate) struct Pass<'a> {
    breakers: &'a Breakers,
    subject: String,
    probe: bool,
    reported: bool,
}

impl Pass<'_> {
    pub(crate) fn report(self, result: &Result<Message>) {
        self.report_at(result, Instant::now());
    }

    fn report_at(mut self, result: &Result<Message>, now: Instant) {
        self.reported = true;
        self.breakers
            .record(&self.subject, self.probe, Outcome::of(result), now);
    }
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.breakers
                .record(&self.subject, self.probe, Outcome::Neutral, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> Result<Message> {
        Err(Error::Timeout {
            subject: "s".into(),
            timeout: Duration::from_millis(1),
        })
    }

    fn ok() -> Result<Message> {
        Ok(Message::builder("s").build().unwrap())
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn subjects_under_a_pattern_share_one_circuit_named_by_it() {
        let (events, mut seen) = broadcast::channel(16);
        let patterns = vec!["svc.orders.*".to_owned(), "svc.>".to_owned()];
        let b = Breakers::new(2, secs(10), secs(5), events, patterns);
        b.admit("svc.orders.a").unwrap().report(&timeout());
        b.admit("svc.orders.b").unwrap().report(&timeout());
        assert_eq!(
            seen.try_recv().unwrap(),
            ConnectionEvent::CircuitOpen("svc.orders.*".into())
        );
        let Err(err) = b.admit("svc.orders.c") else {
            panic!("the shared circuit is open")
        };
        assert_eq!(err.code(), "circuit_open");
        assert!(err.to_string().contains("svc.orders.*"), "{err}");
        // The first pattern that matches names the circuit: svc.billing.x is under svc.>.
        b.admit("svc.billing.x").unwrap().report(&timeout());
        assert!(b.admit("svc.other").is_ok(), "one failure under svc.> so far");
        // A subject no pattern matches has its own.
        b.admit("other.a").unwrap().report(&timeout());
        assert!(b.admit("other.b").is_ok());
        assert_eq!(b.open_circuits(), (1, vec!["svc.orders.*".to_owned()]));
    }

    #[test]
    fn open_and_half_open_circuits_are_counted_and_the_first_listed_in_order() {
        let (events, _seen) = broadcast::channel(1024);
        let b = Breakers::new(1, secs(10), secs(5), events, Vec::new());
        let t0 = Instant::now();
        assert_eq!(b.open_circuits(), (0, vec![]));
        for i in (0..LISTED_CIRCUITS + 5).rev() {
            b.admit_at(&format!("s.{i:03}"), t0)
                .unwrap()
                .report_at(&timeout(), t0);
        }
        let (count, listed) = b.open_circuits();
        assert_eq!(count, (LISTED_CIRCUITS + 5) as u64);
        assert_eq!(b.open_count(), count);
        assert_eq!(listed.len(), LISTED_CIRCUITS);
        assert_eq!((listed[0].as_str(), listed[1].as_str()), ("s.000", "s.001"));
        // Half-open (the probe on its way) still counts; a success closes it.
        let probe = b.admit_at("s.000", t0 + secs(6)).unwrap();
        assert_eq!(b.open_circuits().0, (LISTED_CIRCUITS + 5) as u64);
        probe.report_at(&ok(), t0 + secs(6));
        let (count, listed) = b.open_circuits();
        assert_eq!(count, (LISTED_CIRCUITS + 4) as u64);
        assert_eq!(b.open_count(), count);
        assert_eq!(listed[0], "s.001");
        // A failure below the threshold of another breaker is tracked but not open.
        let (events, _seen) = broadcast::channel(16);
        let two = Breakers::new(2, secs(10), secs(5), events, Vec::new());
        two.admit_at("t", t0).unwrap().report_at(&timeout(), t0);
        assert_eq!(two.open_circuits(), (0, vec![]));
        assert_eq!(two.open_count(), 0);
    }

    #[test]
    fn opens_after_n_failures_probes_once_after_the_cooldown_and_closes() {
        let (events, mut seen) = broadcast::channel(16);
        let b = Breakers::new(3, secs(10), secs(5), events, Vec::new());
        let t0 = Instant::now();
        for _ in 0..2 {
            b.admit_at("s", t0).unwrap().report_at(&timeout(), t0);
        }
        b.admit_at("s", t0).unwrap().report_at(&ok(), t0);
        for _ in 0..3 {
            b.admit_at("s", t0).unwrap().report_at(&timeout(), t0);
        }
        assert_eq!(seen.try_recv().unwrap(), ConnectionEvent::CircuitOpen("s".into()));
        let err = b.admit_at("s", t0 + secs(1)).err().unwrap();
        assert_eq!(err.code(), "circuit_open");
        assert!(
            err.to_string().contains("\"s\"") && err.to_string().contains("4000 ms"),
            "{err}"
        );
        assert!(b.admit_at("other", t0).is_ok(), "one circuit per subject");

        let t1 = t0 + secs(5);
        let probe = b.admit_at("s", t1).unwrap();
        assert_eq!(
            seen.try_recv().unwrap(),
            ConnectionEvent::CircuitHalfOpen("s".into())
        );
        assert_eq!(
            b.admit_at("s", t1).err().unwrap().code(),
            "circuit_open",
            "one probe at a time"
        );
        probe.report_at(&timeout(), t1);
        assert_eq!(seen.try_recv().unwrap(), ConnectionEvent::CircuitOpen("s".into()));
        assert!(
            b.admit_at("s", t1 + secs(4)).is_err(),
            "a failed probe opens it for another cool-down"
        );

        let t2 = t1 + secs(5);
        drop(b.admit_at("s", t2).unwrap());
        assert_eq!(
            seen.try_recv().unwrap(),
            ConnectionEvent::CircuitHalfOpen("s".into())
        );
        // A probe dropped unreported lets the next request probe.
        b.admit_at("s", t2).unwrap().report_at(&ok(), t2);
        assert_eq!(
            seen.try_recv().unwrap(),
            ConnectionEvent::CircuitHalfOpen("s".into())
        );
        assert_eq!(
            seen.try_recv().unwrap(),
            ConnectionEvent::CircuitClosed("s".into())
        );
        assert!(b.admit_at("s", t2).is_ok());
        assert!(b.lock().is_empty(), "a closed circuit is forgotten");
    }

    #[test]
    fn failures_outside_the_window_start_a_new_count() {
        let b = Breakers::new(2, secs(1), secs(5), broadcast::channel(1).0, Vec::new());
        let t0 = Instant::now();
        b.admit_at("s", t0).unwrap().report_at(&timeout(), t0);
        let t1 = t0 + secs(2);
        b.admit_at("s", t1).unwrap().report_at(&timeout(), t1);
        assert!(
            b.admit_at("s", t1).is_ok(),
            "two failures 2 s apart do not fill a 1 s window"
        );
        b.admit_at("s", t1).unwrap().report_at(&timeout(), t1);
        assert!(b.admit_at("s", t1).is_err());
        let neutral = Breakers::new(1, secs(1), secs(5), broadcast::channel(1).0, Vec::new());
        let bad = Err(Error::InvalidArgument("x".into()));
        neutral.admit_at("s", t0).unwrap().report_at(&bad, t0);
        assert!(
            neutral.admit_at("s", t0).is_ok(),
            "a refused argument is not the responder's failure"
        );
        let reply = Message::builder("s")
            .header("nats-service-error", "boom")
            .build()
            .unwrap();
        neutral.admit_at("s", t0).unwrap().report_at(&Ok(reply), t0);
        assert!(neutral.admit_at("s", t0).is_err(), "an error reply is a failure");
    }

    #[test]
    fn the_table_of_circuits_is_bounded() {
        let b = Breakers::new(5, secs(60), secs(5), broadcast::channel(1).0, Vec::new());
        let t0 = Instant::now();
        for i in 0..MAX_CIRCUITS + 100 {
            b.admit_at(&format!("s.{i}"), t0)
                .unwrap()
                .report_at(&timeout(), t0);
        }
        assert_eq!(b.lock().len(), MAX_CIRCUITS);
        // Once their window has passed, old entries make room for new ones.
        let later = t0 + secs(61);
        b.admit_at("fresh", later).unwrap().report_at(&timeout(), later);
        assert!(b.lock().contains_key("fresh"));
    }
}
