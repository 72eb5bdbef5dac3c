//! Regression tests of issue 11 (protected values leaking at the edges of the policy
//! layer): dead letters, tags with nothing located, reply inboxes, replies, restricted
//! dead letters, requests on restricted subjects, headers, publisher key ids, the audit
//! tail, the JetStream audit sink, dead-letter dedupe, and the smaller items. Each
//! scenario with a wire runs on the in-memory bus and on NATS, where a plain async-nats
//! client on `>` checks that no protected value ever travels in clear.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use busbar::policy::{Action, AuditAction, AuditLog, KeyRing, Policy, PolicyBus, Principal, ProblemKind};
use busbar::{Config, ConsumerConfig, DurableSubscription, EventBus, Message, StreamConfig, Subscription};

const WAIT: Duration = Duration::from_secs(5);
const NAME: &str = "Zoë Ångström";
const SSN: &str = "123-45-6789";
const DIAGNOSIS: &str = "HIV+ stage 2";
// Whole values only: a fragment such as "6789" also turns up in random tokens and in
// the nanoseconds of `ce-time`.
const SECRETS: &[&str] = &[NAME, SSN, DIAGNOSIS, "MRN-42"];

fn policy() -> Policy {
    Policy::new()
        .class("phi")
        .class("pii")
        .field("/patient/name", "phi", Action::Redact)
        .field("/patient/ssn", "pii", Action::Partial(4))
        .field_on(["patients.>"], "/diagnosis", "phi", Action::Redact)
        .header("x-patient-name", "phi", Action::Redact)
        .header("x-ssn", "pii", Action::Drop)
        .restrict("phi.raw.>", ["clinician"])
        .grant("clinician", ["phi", "pii"])
        .grant("billing", ["pii"])
}

fn ring() -> KeyRing {
    KeyRing::new("k1", &[7; 32]).unwrap()
}

fn clinician() -> Principal {
    Principal::new("dr-house", ["clinician"])
}

fn billing() -> Principal {
    Principal::new("billing-svc", ["billing"])
}

fn event() -> String {
    format!(r#"{{"patient":{{"name":"{NAME}","ssn":"{SSN}"}},"ward":4}}"#)
}

fn text(m: &Message) -> String {
    String::from_utf8_lossy(m.data()).into_owned()
}

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;
#[cfg(feature = "nats")]
#[path = "support/round_trip.rs"]
mod round_trip;

#[path = "support/rabbitmq.rs"]
mod rabbitmq_broker;

/// A backend for one scenario: its config and, on NATS, the server and a plain client
/// recording everything that crosses it.
struct Wire {
    config: Config,
    /// On memory every bus of a scenario shares one in-memory bus.
    shared: Option<Arc<dyn EventBus>>,
    #[cfg(feature = "nats")]
    server: Option<nats_server::NatsServer>,
    seen: Arc<Mutex<Vec<String>>>,
    /// On RabbitMQ: the test broker, on an exchange of the scenario's own.
    rabbitmq: bool,
}

impl Wire {
    async fn memory() -> Wire {
        Wire {
            config: Config::default(),
            shared: Some(busbar::connect(Config::default()).await.unwrap()),
            #[cfg(feature = "nats")]
            server: None,
            seen: Arc::default(),
            rabbitmq: false,
        }
    }

    /// A fresh nats-server and a plain async-nats subscriber on `>` recording subject,
    /// headers and payload of every message.
    #[cfg(feature = "nats")]
    async fn nats() -> Wire {
        use futures_util::StreamExt;
        let server = tokio::task::spawn_blocking(nats_server::NatsServer::start)
            .await
            .unwrap();
        let plain = async_nats::connect(server.url()).await.unwrap();
        let mut all = plain.subscribe(">").await.unwrap();
        plain.publish("probe.wire", "".into()).await.unwrap();
        let probe = tokio::time::timeout(WAIT, all.next()).await.unwrap().unwrap();
        assert_eq!(probe.subject.as_str(), "probe.wire");
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let _keep = plain;
            while let Some(m) = all.next().await {
                let mut line = format!("{} ", m.subject);
                if let Some(h) = &m.headers {
                    for (k, vs) in h.iter() {
                        for v in vs {
                            line.push_str(&format!("{k}={} ", v.as_str()));
                        }
                    }
                }
                line.push_str(&String::from_utf8_lossy(&m.payload));
                record.lock().unwrap().push(line);
            }
        });
        Wire {
            config: Config::default()
                .with_backend(busbar::Backend::Nats)
                .with_nats_url(server.url()),
            shared: None,
            server: Some(server),
            seen,
            rabbitmq: false,
        }
    }

    /// A plain lapin consumer bound to `#` on a fresh exchange of the test broker,
    /// recording routing key, headers and payload of every message.
    #[cfg(feature = "rabbitmq")]
    async fn rabbitmq() -> Wire {
        use futures_util::StreamExt;
        use lapin::types::AMQPValue;
        let exchange = rabbitmq_broker::exchange();
        let (conn, channel) = rabbitmq_broker::plain().await;
        rabbitmq_broker::declare_exchange(&channel, &exchange).await;
        let queue = rabbitmq_broker::bound_queue(&channel, &exchange, "#").await;
        let mut all = rabbitmq_broker::consume(&channel, queue).await;
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            let _keep = conn;
            while let Some(Ok(d)) = all.next().await {
                let mut line = format!("{} ", d.routing_key);
                for (k, v) in d.properties.headers().iter().flat_map(|h| h.inner()) {
                    match v {
                        AMQPValue::LongString(s) => {
                            line.push_str(&format!("{k}={} ", String::from_utf8_lossy(s.as_bytes())))
                        }
                        other => line.push_str(&format!("{k}={other:?} ")),
                    }
                }
                line.push_str(&String::from_utf8_lossy(&d.data));
                record.lock().unwrap().push(line);
            }
        });
        Wire {
            config: rabbitmq_broker::config(Config::default(), &exchange),
            shared: None,
            #[cfg(feature = "nats")]
            server: None,
            seen,
            rabbitmq: true,
        }
    }

    /// Every backend: for scenarios without durable streams (which RabbitMQ refuses).
    async fn each_with_rabbitmq() -> Vec<Wire> {
        #[allow(unused_mut)]
        let mut wires = Self::each().await;
        #[cfg(feature = "rabbitmq")]
        wires.push(Wire::rabbitmq().await);
        wires
    }

    /// Both backends, NATS when the feature is on.
    async fn each() -> Vec<Wire> {
        #[allow(unused_mut)]
        let mut wires = vec![Wire::memory().await];
        #[cfg(feature = "nats")]
        wires.push(Wire::nats().await);
        wires
    }

    fn name(&self) -> &'static str {
        if self.rabbitmq {
            return "rabbitmq";
        }
        #[cfg(feature = "nats")]
        if self.server.is_some() {
            return "nats";
        }
        "memory"
    }

    /// A connection of its own on NATS; the one shared bus on memory.
    async fn inner(&self) -> Arc<dyn EventBus> {
        match &self.shared {
            Some(bus) => bus.clone(),
            None => busbar::connect(self.config.clone()).await.unwrap(),
        }
    }

    /// A policy bus on a connection of its own (encrypting, with `policy()`).
    async fn bus(&self) -> PolicyBus {
        self.bus_on(self.inner().await).await
    }

    async fn bus_on(&self, inner: Arc<dyn EventBus>) -> PolicyBus {
        PolicyBus::builder(inner)
            .policy(policy())
            .key_ring(ring())
            .encryption(true)
            .build()
            .unwrap()
    }

    /// Asserts that the plain client saw none of `secrets` in clear (after a moment for
    /// what is in flight), and that it saw something at all.
    async fn assert_clean(&self, secrets: &[&str]) {
        if self.name() == "memory" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = self.seen.lock().unwrap();
        assert!(seen.len() > 1, "the plain client saw traffic");
        for line in seen.iter() {
            for secret in secrets {
                assert!(
                    !line.contains(secret),
                    "a plain {} client on every subject saw {secret:?} in clear: {line}",
                    self.name()
                );
            }
        }
    }
}

async fn next(sub: &mut Subscription) -> busbar::Result<Message> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message in time")
        .expect("subscription open")
}

async fn nothing_within(sub: &mut Subscription, ms: u64) -> bool {
    tokio::time::timeout(Duration::from_millis(ms), sub.next())
        .await
        .is_err()
}

async fn durable_next(sub: &mut DurableSubscription) -> busbar::DurableMessage {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a durable message in time")
        .expect("subscription open")
        .expect("no error")
}

/// Every message of `stream` read below the policy layer (as stored).
async fn stored(bus: &PolicyBus, stream: &str, consumer: &str) -> Vec<Message> {
    let mut sub = bus
        .inner()
        .durable_subscribe(ConsumerConfig::new(stream, consumer))
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        out.push(m.message().clone());
        m.ack().await.unwrap();
    }
    out
}

// ------------------------------------------------------------- #1 and #15: dead letters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_the_stored_form_whoever_dead_letters_them() {
    for wire in Wire::each().await {
        let bus = wire.bus().await;
        bus.declare_stream(StreamConfig::new("PHI", ["phi.>"]))
            .await
            .unwrap();
        let msg = bus.message("phi.admitted").data(event()).build().unwrap();
        bus.publish_durable(msg).await.unwrap();
        let original = stored(&bus, "PHI", "below").await;
        assert_eq!(original.len(), 1);
        let original = &original[0];
        assert_eq!(original.keyid(), Some("k1"), "{}", wire.name());

        // The clinician sees it decrypted and terminates it; billing sees it masked and
        // nacks it past max_deliver. Both use the default dead-letter prefix.
        let mut doctor = bus
            .durable_subscribe_as(&clinician(), ConsumerConfig::new("PHI", "doctor"))
            .await
            .unwrap();
        let m = durable_next(&mut doctor).await;
        assert_eq!(text(&m), event(), "{}", wire.name());
        m.term("cannot process").await.unwrap();
        let mut clerk = bus
            .durable_subscribe_as(&billing(), ConsumerConfig::new("PHI", "clerk").max_deliver(1))
            .await
            .unwrap();
        let m = durable_next(&mut clerk).await;
        assert!(!text(&m).contains(NAME), "masked for billing");
        m.nak(None).await.unwrap();

        // Both dead letters are stored, each byte for byte the stored form.
        let letters = stored(&bus, "DLQ_DLQ", "dlq-below").await;
        assert_eq!(letters.len(), 2, "{}: one dead letter per consumer", wire.name());
        let mut consumers: Vec<_> = letters
            .iter()
            .map(|l| l.header(busbar::durable::DLQ_CONSUMER).unwrap().to_owned())
            .collect();
        consumers.sort();
        assert_eq!(consumers, ["clerk", "doctor"]);
        for letter in &letters {
            assert_eq!(letter.subject(), "dlq.phi.admitted");
            assert_eq!(
                letter.data(),
                original.data(),
                "{}: the stored bytes",
                wire.name()
            );
            assert_eq!(letter.keyid(), Some("k1"));
            assert_eq!(letter.id(), original.id());
            assert_eq!(letter.header(busbar::durable::DLQ_SUBJECT), Some("phi.admitted"));
        }
        // Read through the policy the dead letter opens for the clinician.
        let mut dlq = bus
            .durable_subscribe_as(&clinician(), ConsumerConfig::new("DLQ_DLQ", "dlq-doctor"))
            .await
            .unwrap();
        let letter = durable_next(&mut dlq).await;
        assert_eq!(text(&letter), event(), "{}", wire.name());
        letter.ack().await.unwrap();
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
    }
}

#[tokio::test]
async fn busbar_headers_are_reserved() {
    let bus = Wire::memory().await.bus().await;
    for name in ["busbar-dlq-reason", "BUSBAR-anything"] {
        let err = bus.message("a.b").header(name, "x").build().unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{name}: {err}");
    }
    assert!(bus.message("a.b").header("busbarx", "x").build().is_ok());
}

// ------------------------------------------------------------- #2: tag, nothing located

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_with_nothing_located_is_withheld_and_sealed_whole() {
    for wire in Wire::each_with_rabbitmq().await {
        let bus = wire.bus().await;
        let mut raw = bus.inner().subscribe("labs.>").await.unwrap();
        let mut clerk = bus.subscribe_as(&billing(), "labs.>").await.unwrap();
        let mut doctor = bus.subscribe_as(&clinician(), "labs.>").await.unwrap();
        bus.flush().await.unwrap();
        let payload = format!(r#"{{"result":"{DIAGNOSIS}"}}"#);
        let msg = bus
            .message("labs.result")
            .classification("phi")
            .data(payload.clone())
            .build()
            .unwrap();
        bus.publish_message(msg).await.unwrap();
        let on_wire = next(&mut raw).await.unwrap();
        assert!(
            on_wire.data().starts_with(b"busbar:aead:v1:"),
            "{}: sealed whole: {}",
            wire.name(),
            text(&on_wire)
        );
        assert_eq!(text(&next(&mut doctor).await.unwrap()), payload);
        assert!(
            nothing_within(&mut clerk, 300).await,
            "{}: withheld from billing",
            wire.name()
        );
        assert_eq!(bus.policy_stats().withheld, 1, "{}", wire.name());
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
    }
}

// ------------------------------------------------------------- #3: reply inboxes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_inboxes_are_not_for_subscribers() {
    for wire in Wire::each().await {
        let bus = Arc::new(wire.bus().await);
        for pattern in ["_INBOX.>", "_INBOX.*.*", "_INBOX"] {
            let err = bus.subscribe_as(&clinician(), pattern).await.unwrap_err();
            assert_eq!(err.code(), "forbidden", "{pattern}");
            let err = bus
                .queue_subscribe_as(&clinician(), pattern, "q")
                .await
                .unwrap_err();
            assert_eq!(err.code(), "forbidden", "{pattern}");
        }
        bus.declare_stream(StreamConfig::new("ANY", ["stored.>"]))
            .await
            .unwrap();
        let err = bus
            .durable_subscribe_as(&clinician(), ConsumerConfig::new("ANY", "x").filter("_INBOX.>"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        // A wildcard that overlaps the inbox is allowed, and never receives a reply.
        let mut everything = bus.subscribe_as(&clinician(), "*.>").await.unwrap();
        let responder = bus.subscribe_as(&clinician(), "svc.echo").await.unwrap();
        let server = tokio::spawn(busbar::serve(responder, |req| async move { req.data().clone() }));
        bus.flush().await.unwrap();
        let reply = bus
            .request_as(
                &clinician(),
                bus.message("svc.echo").data("ping").build().unwrap(),
                WAIT,
            )
            .await
            .unwrap();
        assert_eq!(text(&reply), "ping");
        // `*.>` also matches the server's own JetStream advisories (`$JS.EVENT.…`, from
        // declaring the stream above), which may arrive at any point: only they may come
        // besides the request, and never a reply.
        let mut seen = Vec::new();
        let arrived = tokio::time::Instant::now() + WAIT;
        while let Ok(Some(item)) = tokio::time::timeout_at(arrived, everything.next()).await {
            let subject = item.unwrap().subject().to_owned();
            if !subject.starts_with("$JS.") {
                seen.push(subject);
                break;
            }
        }
        let quiet = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(Some(item)) = tokio::time::timeout_at(quiet, everything.next()).await {
            let subject = item.unwrap().subject().to_owned();
            if !subject.starts_with("$JS.") {
                seen.push(subject);
            }
        }
        assert_eq!(seen, ["svc.echo"], "{}: no reply for a bystander", wire.name());
        assert!(bus.policy_stats().inbox_skipped >= 1, "{:?}", bus.policy_stats());
        bus.close().await.unwrap();
        server.await.unwrap().unwrap();
    }
}

// ------------------------------------------------------------- #4 and #7: replies

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_are_protected_by_the_subject_they_answer() {
    for wire in Wire::each_with_rabbitmq().await {
        let responder_bus = wire.bus().await;
        let bus = Arc::new(wire.bus().await);
        let responder = responder_bus
            .subscribe_as(&clinician(), "patients.get")
            .await
            .unwrap();
        let answer = format!(r#"{{"diagnosis":"{DIAGNOSIS}","ward":4}}"#);
        let reply_body = answer.clone();
        let server = tokio::spawn(busbar::serve(responder, move |_| {
            let body = reply_body.clone();
            async move { body.into() }
        }));
        responder_bus.flush().await.unwrap();
        let ask = |who: Principal| {
            let bus = bus.clone();
            async move {
                let req = bus.message("patients.get").data(r#"{"id":1}"#).build().unwrap();
                bus.request_as(&who, req, WAIT).await.unwrap()
            }
        };
        assert_eq!(text(&ask(clinician()).await), answer, "{}", wire.name());
        let masked = text(&ask(billing()).await);
        assert_eq!(
            masked,
            r#"{"diagnosis":"[REDACTED]","ward":4}"#,
            "{}",
            wire.name()
        );
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
        responder_bus.close().await.unwrap();
        server.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requesting_on_a_restricted_subject_needs_the_role() {
    for wire in Wire::each_with_rabbitmq().await {
        let responder_bus = wire.bus().await;
        let bus = wire.bus().await;
        let mut responder = responder_bus
            .subscribe_as(&clinician(), "phi.raw.>")
            .await
            .unwrap();
        responder_bus.flush().await.unwrap();
        let req = bus.message("phi.raw.labs").data(event()).build().unwrap();
        let err = bus.request_as(&billing(), req, WAIT).await.unwrap_err();
        assert_eq!(err.code(), "forbidden", "{}", wire.name());
        assert!(
            nothing_within(&mut responder, 300).await,
            "the request was not sent"
        );
        // As the bus's own principal (anonymous) too.
        let err = bus
            .request("phi.raw.labs", event().into(), WAIT)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "forbidden");
        let req = bus.message("phi.raw.labs").data(event()).build().unwrap();
        let doctor = clinician();
        let ask = bus.request_as(&doctor, req, WAIT);
        let answer = async {
            let m = next(&mut responder).await.unwrap();
            m.respond(event()).await.unwrap();
        };
        let (reply, ()) = tokio::join!(ask, answer);
        assert_eq!(text(&reply.unwrap()), event());
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
        responder_bus.close().await.unwrap();
    }
}

// ------------------------------------------------------------- #5: restricted dead letters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restrictions_cover_the_dead_letters_of_a_restricted_subject() {
    for wire in Wire::each().await {
        let bus = wire.bus().await;
        bus.declare_stream(StreamConfig::new("RAW", ["phi.raw.>"]))
            .await
            .unwrap();
        // A bus that never saw the custom prefix, on its own connection.
        let other = wire.bus().await;
        let mut custom = other.subscribe_as(&billing(), "dead.>").await.unwrap();
        other.flush().await.unwrap();
        bus.publish_durable(bus.message("phi.raw.labs").data(event()).build().unwrap())
            .await
            .unwrap();
        for (name, prefix) in [("doctor", "dlq"), ("doctor2", "dead")] {
            let mut doctor = bus
                .durable_subscribe_as(&clinician(), ConsumerConfig::new("RAW", name).dlq_prefix(prefix))
                .await
                .unwrap();
            durable_next(&mut doctor).await.term("bad").await.unwrap();
        }
        // Subscribing to the dead letters of a restricted subject is forbidden...
        for pattern in ["dlq.>", "dlq.phi.raw.*", "dead.phi.>"] {
            let err = bus.subscribe_as(&billing(), pattern).await.unwrap_err();
            assert_eq!(err.code(), "forbidden", "{pattern}");
        }
        // ... and where the prefix is not known, the dead letter is withheld.
        assert!(nothing_within(&mut custom, 300).await, "{}", wire.name());
        assert_eq!(other.policy_stats().withheld, 1, "{}", wire.name());
        // A durable consumer on the dead-letter stream sees nothing restricted either.
        let mut dlq = bus
            .durable_subscribe_as(&billing(), ConsumerConfig::new("DLQ_DLQ", "peek"))
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(500), dlq.next())
                .await
                .is_err(),
            "{}: withheld from billing",
            wire.name()
        );
        let mut dlq = bus
            .durable_subscribe_as(&clinician(), ConsumerConfig::new("DLQ_DLQ", "read"))
            .await
            .unwrap();
        assert_eq!(text(durable_next(&mut dlq).await.message()), event());
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
        other.close().await.unwrap();
    }
}

// ------------------------------------------------------------- #8: headers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_rules_encrypt_and_mask_headers() {
    for wire in Wire::each().await {
        let bus = wire.bus().await;
        let mut raw = bus.inner().subscribe("visits.>").await.unwrap();
        let mut doctor = bus.subscribe_as(&clinician(), "visits.>").await.unwrap();
        let mut clerk = bus.subscribe_as(&billing(), "visits.>").await.unwrap();
        let mut web = bus
            .subscribe_as(&Principal::new("web", ["web"]), "visits.>")
            .await
            .unwrap();
        bus.flush().await.unwrap();
        let msg = bus
            .message("visits.new")
            .header("x-patient-name", NAME)
            .header("X-SSN", SSN)
            .header("tenant", "acme")
            .data(r#"{"ward":4}"#)
            .build()
            .unwrap();
        bus.publish_message(msg).await.unwrap();
        let on_wire = next(&mut raw).await.unwrap();
        assert!(on_wire
            .header("x-patient-name")
            .unwrap()
            .starts_with("busbar:aead:v1:"));
        assert!(on_wire.header("X-SSN").unwrap().starts_with("busbar:aead:v1:"));
        assert_eq!(on_wire.header("tenant"), Some("acme"));
        let d = next(&mut doctor).await.unwrap();
        assert_eq!(
            (d.header("x-patient-name"), d.header("X-SSN")),
            (Some(NAME), Some(SSN))
        );
        let c = next(&mut clerk).await.unwrap();
        assert_eq!(c.header("x-patient-name"), Some("[REDACTED]"), "{}", wire.name());
        assert_eq!(c.header("X-SSN"), Some(SSN));
        let w = next(&mut web).await.unwrap();
        assert_eq!(w.header("X-SSN"), None, "dropped");
        assert_eq!(w.header("tenant"), Some("acme"));
        assert_eq!(text(&w), r#"{"ward":4}"#);
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
    }
    let from_json = Policy::from_json(
        r#"{"classes":["phi"],"headers":[{"name":"x-patient-name","class":"phi","action":"redact"}]}"#,
    )
    .unwrap();
    assert_eq!(
        from_json,
        Policy::new()
            .class("phi")
            .header("x-patient-name", "phi", Action::Redact)
    );
}

// ------------------------------------------------------------- #9: publisher key ids

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_keyid_never_turns_encryption_off() {
    for wire in Wire::each().await {
        let bus = wire.bus().await;
        let mut raw = bus.inner().subscribe("patients.>").await.unwrap();
        let mut doctor = bus.subscribe_as(&clinician(), "patients.>").await.unwrap();
        bus.flush().await.unwrap();
        for kid in ["bogus", "k1"] {
            let msg = bus
                .message("patients.admitted")
                .keyid(kid)
                .data(event())
                .build()
                .unwrap();
            let err = bus.publish_message(msg).await.unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{kid}: {err}");
        }
        // A sealed message forwarded as it is passes.
        bus.publish("patients.admitted", event().into()).await.unwrap();
        let sealed = next(&mut raw).await.unwrap();
        assert_eq!(text(&next(&mut doctor).await.unwrap()), event());
        bus.publish_message(sealed.clone()).await.unwrap();
        next(&mut raw).await.unwrap();
        assert_eq!(text(&next(&mut doctor).await.unwrap()), event());
        // Its keyid stripped, it is a crypto error, not data.
        let stripped = Message::builder(sealed.subject())
            .id(sealed.id())
            .data(sealed.data().clone())
            .build()
            .unwrap();
        bus.inner().publish_message(stripped).await.unwrap();
        let err = next(&mut doctor).await.unwrap_err();
        assert_eq!(err.code(), "crypto", "{}: {err}", wire.name());
        wire.assert_clean(SECRETS).await;
        bus.close().await.unwrap();
    }
}

// ------------------------------------------------------------- low: subject in the AAD

#[tokio::test]
async fn a_sealed_field_moved_to_another_subject_does_not_open() {
    let wire = Wire::memory().await;
    let bus = wire.bus().await;
    let mut raw = bus.inner().subscribe("patients.>").await.unwrap();
    let mut other = bus.subscribe_as(&clinician(), "wards.>").await.unwrap();
    bus.publish("patients.admitted", event().into()).await.unwrap();
    let sealed = next(&mut raw).await.unwrap();
    let moved = sealed.to_builder().subject("wards.admitted").build().unwrap();
    bus.inner().publish_message(moved).await.unwrap();
    let err = next(&mut other).await.unwrap_err();
    assert_eq!(err.code(), "crypto", "{err}");
}

// ------------------------------------------------------------- #10: the audit tail

fn temp_path(tag: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "busbar-leaks-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

fn entry(n: usize) -> busbar::policy::AuditEntry {
    busbar::policy::AuditEntry {
        action: AuditAction::Deliver,
        subject: format!("patients.e{n}"),
        message_id: Some(format!("id-{n}")),
        principal: "svc".into(),
        classes: vec!["phi".into()],
        fields: Vec::new(),
        detail: None,
    }
}

fn kinds(report: &busbar::policy::VerifyReport) -> Vec<ProblemKind> {
    report.problems.iter().map(|p| p.kind).collect()
}

#[test]
fn records_cut_from_the_end_of_an_audit_file_are_detected() {
    use busbar::policy::{anchor_file, head_path, verify_file};
    let key = ring();
    let path = temp_path("tail.jsonl");
    let log = AuditLog::open(&path, Some(&key)).unwrap();
    for n in 1..=4 {
        log.record(entry(n)).unwrap();
    }
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(verify_file(&path, Some(&key)).unwrap().is_ok());
    // Cut two records, then empty the file: both are seen, and the writer refuses.
    let kept: Vec<&str> = text.lines().take(2).collect();
    for cut in [kept.join("\n") + "\n", String::new()] {
        std::fs::write(&path, &cut).unwrap();
        let report = verify_file(&path, Some(&key)).unwrap();
        assert_eq!(kinds(&report), [ProblemKind::Removed], "{report:?}");
        let err = AuditLog::open(&path, Some(&key)).unwrap_err();
        assert_eq!(err.code(), "decode", "{err}");
    }
    // Without its head a log with records cannot be checked: reported and refused.
    std::fs::write(&path, &text).unwrap();
    let head = std::fs::read(head_path(&path)).unwrap();
    std::fs::remove_file(head_path(&path)).unwrap();
    assert_eq!(
        kinds(&verify_file(&path, Some(&key)).unwrap()),
        [ProblemKind::Unanchored]
    );
    assert!(AuditLog::open(&path, Some(&key)).is_err());
    // anchor_file writes the head of a log that verifies.
    assert!(anchor_file(&path, Some(&key)).unwrap().is_ok());
    assert_eq!(std::fs::read(head_path(&path)).unwrap(), head);
    let log = AuditLog::open(&path, Some(&key)).unwrap();
    log.record(entry(5)).unwrap();
    assert!(log.verify().unwrap().is_ok());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(head_path(&path));
}

#[test]
fn a_damaged_last_line_is_cut_and_recorded_and_files_are_private() {
    use busbar::policy::{head_path, read_range, verify_file};
    let path = temp_path("partial.jsonl");
    let log = AuditLog::open(&path, None).unwrap();
    log.record(entry(1)).unwrap();
    log.record(entry(2)).unwrap();
    drop(log);
    #[cfg(unix)]
    for p in [path.clone(), head_path(&path)] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    // A write cut short leaves half a line.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(r#"{"seq":3,"time":"2026-"#);
    std::fs::write(&path, &text).unwrap();
    let log = AuditLog::open(&path, None).unwrap();
    log.record(entry(3)).unwrap();
    drop(log);
    let records = read_range(&path, None, None).unwrap();
    let actions: Vec<_> = records.iter().map(|r| r.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::Deliver,
            AuditAction::Deliver,
            AuditAction::Recover,
            AuditAction::Deliver
        ]
    );
    assert!(verify_file(&path, None).unwrap().is_ok());
    // A complete last record edited into garbage is not a cut write: refused.
    let mut lines: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let last = lines.len() - 1;
    lines[last] = "garbage".into();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    assert!(AuditLog::open(&path, None).is_err());
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(head_path(&path));
}

#[tokio::test]
async fn publisher_chosen_text_is_escaped_in_the_audit_log() {
    let path = temp_path("escape.jsonl");
    let log = Arc::new(AuditLog::open(&path, None).unwrap());
    let bus = PolicyBus::builder(busbar::connect(Config::default()).await.unwrap())
        .policy(policy())
        .audit_log(log)
        .build()
        .unwrap();
    let source = "evil\u{1b}[31m\u{202e}gnp.exe\u{2028}";
    bus.publish_message(
        bus.message("patients.x")
            .source(source)
            .data("{}")
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let records = busbar::policy::read_range(&path, None, None).unwrap();
    let principal = &records[0].principal;
    assert!(
        !principal
            .chars()
            .any(|c| c.is_control() || ('\u{2028}'..='\u{202e}').contains(&c)),
        "{principal:?}"
    );
    assert!(
        principal.contains("\\u{001b}") && principal.contains("\\u{202e}"),
        "{principal:?}"
    );
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(busbar::policy::head_path(&path));
}

// ------------------------------------------------------------- #10, #11: JetStream audit

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jetstream_audit_sees_a_cut_tail_and_fails_closed() {
    use busbar::policy::JetStreamSink;
    let wire = Wire::nats().await;
    let url = wire.config.nats_url.clone();
    let client = async_nats::connect(&url).await.unwrap();
    let key = ring();
    let (sink, audit, last) = JetStreamSink::open(client.clone(), "AUDIT", "audit.records")
        .await
        .unwrap();
    assert!(last.is_none());
    let log = Arc::new(AuditLog::with_sink(Box::new(sink), Some(&key), None));
    let bus = PolicyBus::builder(wire.inner().await)
        .policy(policy())
        .key_ring(ring())
        .encryption(true)
        .audit_log(log)
        .build()
        .unwrap();
    let mut clerk = bus.subscribe_as(&billing(), "patients.>").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("patients.admitted", event().into()).await.unwrap();
    next(&mut clerk).await.unwrap();
    audit.flush().await.unwrap();
    assert!(audit.verify(Some(&key)).await.unwrap().is_ok());
    // The last record deleted from the stream: seen, and a new sink refuses the stream.
    let info = audit.read_all().await.unwrap();
    let records = info.lines().count() as u64;
    assert_eq!(records, 3, "publish, mask, deliver");
    assert!(audit.delete(records).await.unwrap());
    let report = audit.verify(Some(&key)).await.unwrap();
    assert_eq!(kinds(&report), [ProblemKind::Removed], "{report:?}");
    let err = JetStreamSink::open(client.clone(), "AUDIT", "audit.records")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), "decode", "{err}");

    // The audit stream gone: the very next publish fails, and nothing goes out.
    let js = async_nats::jetstream::new(client.clone());
    js.delete_stream("AUDIT").await.unwrap();
    let mut raw = client.subscribe("patients.>").await.unwrap();
    round_trip::round_trip(&client).await;
    for _ in 0..5 {
        let err = bus
            .publish("patients.admitted", event().into())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "backend", "{err}");
    }
    use futures_util::StreamExt;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), raw.next())
            .await
            .is_err(),
        "no publish went out unaudited"
    );
    wire.assert_clean(SECRETS).await;
    bus.close().await.unwrap();
}

// ------------------------------------------------------------- low: configuration files

#[test]
fn bad_policies_and_key_rings_are_refused_without_echoing_keys() {
    for bad in [
        "[]",
        "null",
        "3",
        r#"{"classes":["phi","phi"]}"#,
        r#"{"redaction":""}"#,
    ] {
        let err = Policy::from_json(bad).unwrap_err();
        assert_eq!(err.code(), "invalid_argument", "{bad}: {err}");
    }
    assert!(Policy::new().redaction("").check().is_err());
    let secret = "c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3QtcHJpbnQ";
    for bad in [
        format!(r#"{{"active":"k1","keys":"{secret}"}}"#),
        format!(r#"{{"active":"k1","keys":{{"k1":"{secret}!!"}}}}"#),
        format!(r#"{{"active":"k1","keys":{{"k1":"{secret}"#),
        format!(r#"{{"active":"k1","keys":{{"k1":["{secret}"]}}}}"#),
    ] {
        let err = KeyRing::from_json(&bad).unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        assert!(!err.to_string().contains(&secret[..12]), "{err}");
    }
}
