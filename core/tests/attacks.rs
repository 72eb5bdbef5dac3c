//! Held-out attacks at the seams of the issue-11/12 branches: subject limits against
//! dead-letter subjects, policy request/reply through the correlation check, undecodable
//! messages through the policy layer, hostile NATS peers. Each scenario with a wire runs
//! on the in-memory bus and on a private nats-server.

use std::sync::Arc;
use std::time::Duration;

use busbar::{Backend, Config, ConsumerConfig, EventBus, StreamConfig};

#[cfg(feature = "nats")]
#[path = "support/nats_server.rs"]
mod nats_server;
#[cfg(feature = "nats")]
#[path = "support/round_trip.rs"]
mod round_trip;
#[cfg(feature = "nats")]
use nats_server::NatsServer;

#[macro_use]
#[path = "support/both.rs"]
mod both;
#[cfg(feature = "nats")]
use both::{nats, start};

const WAIT: Duration = Duration::from_secs(5);
const MAX_BYTES: usize = busbar::subject::MAX_SUBJECT_BYTES;
const MAX_TOKENS: usize = busbar::subject::MAX_SUBJECT_TOKENS;

/// A message on a subject at the length or token limit is accepted by `publish_durable`;
/// dead-lettering it (`term`) must then store it too: what was accepted must be
/// dead-letterable, or the settle must say so, and nothing acked may be missing.
async fn dead_letters_of_subjects_at_the_limit(bus: Arc<dyn EventBus>) {
    bus.declare_stream(StreamConfig::new("EDGE", ["edge.>"]))
        .await
        .unwrap();
    let long = format!("edge.{}", "x".repeat(MAX_BYTES - 5));
    assert_eq!(long.len(), MAX_BYTES);
    let deep = format!("edge{}", ".t".repeat(MAX_TOKENS - 1));
    for subject in [&long, &deep] {
        bus.publish_durable(bus.message(subject).data("x").build().unwrap())
            .await
            .unwrap();
    }
    let mut sub = bus
        .durable_subscribe(ConsumerConfig::new("EDGE", "c"))
        .await
        .unwrap();
    let mut letters = bus.subscribe("dlq.>").await.unwrap();
    bus.flush().await.unwrap();
    for _ in 0..2 {
        let m = tokio::time::timeout(WAIT, sub.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        m.term("rejected").await.unwrap();
    }
    let info = bus.stream_info("DLQ_DLQ").await.unwrap();
    assert_eq!(info.messages, 2, "both dead letters are stored: {info:?}");
    // Plain subscribers of the dead-letter subjects receive them whole.
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(WAIT, letters.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        got.push(m.subject().to_owned());
    }
    got.sort();
    let mut want = vec![format!("dlq.{long}"), format!("dlq.{deep}")];
    want.sort();
    assert_eq!(got, want);
    // And a durable reader of the dead-letter stream reads them back.
    let mut reader = bus
        .durable_subscribe(ConsumerConfig::new("DLQ_DLQ", "reader"))
        .await
        .unwrap();
    for _ in 0..2 {
        let m = tokio::time::timeout(WAIT, reader.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(m.subject().starts_with("dlq.edge"), "{}", m.subject());
        m.ack().await.unwrap();
    }
    // The prefix itself is bounded so that `<prefix>.<subject>` always fits.
    let long_prefix = "p".repeat(busbar::subject::MAX_DLQ_PREFIX_BYTES + 1);
    let err = bus
        .durable_subscribe(ConsumerConfig::new("EDGE", "d").dlq_prefix(long_prefix))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_argument", "{err}");
    // A user still cannot publish to a subject over the limit, dead-letter shaped or not.
    let over = format!("dlq.{long}");
    assert_eq!(
        bus.publish(&over, "x".into()).await.unwrap_err().code(),
        "invalid_subject"
    );
    assert!(bus.message(&over).build().is_err());
}
on_both!(
    dead_letters_of_subjects_at_the_limit,
    dead_letters_of_subjects_at_the_limit_in_memory,
    dead_letters_of_subjects_at_the_limit_on_nats
);

fn phi_policy() -> busbar::policy::Policy {
    use busbar::policy::{Action, Policy};
    Policy::new()
        .class("pii")
        .field_on(["patients.>"], "/ssn", "pii", Action::Partial(4))
        .restrict("phi.raw.>", ["clinician"])
        .grant("clinician", ["pii"])
}

fn policy_bus(inner: Arc<dyn EventBus>) -> busbar::policy::PolicyBus {
    busbar::policy::PolicyBus::builder(inner)
        .policy(phi_policy())
        .key_ring(busbar::policy::KeyRing::new("k1", &[7; 32]).unwrap())
        .encryption(true)
        .build()
        .unwrap()
}

/// A hostile peer on the same NATS account sends a policy-bound `serve` responder an
/// undecodable request: the responder counts it and goes on answering; a reply through
/// the policy (encrypted under the request's subject) carries the request's correlation
/// id and is taken by the requester, masked for an ungranted principal.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_responder_survives_a_foreign_request_and_answers_with_the_right_correlation() {
    use busbar::policy::Principal;
    let server = start().await;
    let responder_bus = policy_bus(nats(&server).await);
    let requester_bus = policy_bus(nats(&server).await);
    let clinician = Principal::new("dr", ["clinician"]);
    let sub = responder_bus
        .subscribe_as(&clinician, "patients.get")
        .await
        .unwrap();
    let serving = tokio::spawn(busbar::serve(sub, |_| async {
        busbar::Bytes::from_static(br#"{"ssn":"123-45-6789"}"#)
    }));
    responder_bus.flush().await.unwrap();

    let hostile = async_nats::connect(server.url()).await.unwrap();
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-time", "yesterday");
    for _ in 0..3 {
        hostile
            .publish_with_reply_and_headers("patients.get", "hostile.inbox", headers.clone(), "junk".into())
            .await
            .unwrap();
    }
    // Taken by the responder before the requests below: they reach it after the junk.
    round_trip::round_trip(&hostile).await;

    for who in [clinician.clone(), Principal::new("web", ["web"])] {
        let request = requester_bus.message("patients.get").data("{}").build().unwrap();
        let id = request.id().to_owned();
        let reply = requester_bus.request_as(&who, request, WAIT).await.unwrap();
        assert_eq!(reply.correlation_id(), Some(id.as_str()));
        let body = String::from_utf8_lossy(reply.data()).into_owned();
        if who.name == "dr" {
            assert_eq!(body, r#"{"ssn":"123-45-6789"}"#);
        } else {
            assert_eq!(body, r#"{"ssn":"*******6789"}"#);
        }
    }
    assert_eq!(requester_bus.inner().stats().rejected_replies, 0);
    assert_eq!(responder_bus.inner().stats().undecodable, 3);
    requester_bus.close().await.unwrap();
    responder_bus.close().await.unwrap();
    tokio::time::timeout(WAIT, serving)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// A password (or token) holding a character that ends a URL's authority (`/`, `?`, `#`,
/// common in generated secrets) written into `nats_url` unescaped: it is never printed
/// (Debug, errors), and it still authenticates.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_passwords_with_slashes_are_redacted_and_still_work() {
    for secret in ["hunt/er2", "hunt?er2", "hunt#er2", "a/b@c"] {
        let url = format!("nats://svc:{secret}@127.0.0.1:1");
        let config = Config::default().with_backend(Backend::Nats).with_nats_url(&url);
        let shown = format!("{config:?}");
        assert!(!shown.contains(secret), "{shown}");
        assert!(!busbar::config::redact_url(&url).contains(secret));
        let err = busbar::connect(config)
            .await
            .err()
            .expect("nothing listens on port 1");
        assert!(!err.to_string().contains(secret), "{err}");
        assert!(!format!("{err:?}").contains(secret), "{err:?}");
    }
    let server =
        tokio::task::spawn_blocking(|| NatsServer::start_with(&["--user", "svc", "--pass", "hunt/er2"]))
            .await
            .unwrap();
    let url = server.url().replace("nats://", "nats://svc:hunt/er2@");
    let bus = busbar::connect(Config::default().with_backend(Backend::Nats).with_nats_url(&url))
        .await
        .unwrap();
    bus.publish("a.b", "x".into()).await.unwrap();
    bus.close().await.unwrap();
}

/// Against a hung broker (SIGSTOP) a durable publish, a `term` (which stores a dead
/// letter), an `ack` and `close` end within publish_timeout and a little, never hang;
/// what could not be stored is an error, not a success.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_broker_bounds_durable_calls_and_close() {
    let server = start().await;
    let publish_timeout = Duration::from_millis(400);
    let bus = busbar::connect(
        Config::default()
            .with_backend(Backend::Nats)
            .with_nats_url(server.url())
            .with_publish_timeout(publish_timeout),
    )
    .await
    .unwrap();
    bus.declare_stream(StreamConfig::new("HUNG", ["hung.>"]))
        .await
        .unwrap();
    for n in ["1", "2"] {
        bus.publish_durable(bus.message("hung.a").data(n).build().unwrap())
            .await
            .unwrap();
    }
    let mut sub = bus
        .durable_subscribe(ConsumerConfig::new("HUNG", "c"))
        .await
        .unwrap();
    let mut delivered = Vec::new();
    for _ in 0..2 {
        delivered.push(
            tokio::time::timeout(WAIT, sub.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap(),
        );
    }

    let _hung = server.hang();
    let limit = publish_timeout + Duration::from_millis(600);
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(
        limit,
        bus.publish_durable(bus.message("hung.b").data("3").build().unwrap()),
    )
    .await;
    eprintln!("publish_durable: {r:?} after {:?}", started.elapsed());
    assert!(matches!(r, Ok(Err(_))), "publish_durable on a hung broker: {r:?}");
    let started = std::time::Instant::now();
    let r = tokio::time::timeout(limit, delivered[1].term("bad")).await;
    eprintln!("term: {r:?} after {:?}", started.elapsed());
    assert!(
        matches!(r, Ok(Err(_))),
        "term on a hung broker stores no dead letter: {r:?}"
    );
    let r = tokio::time::timeout(limit, delivered[0].ack()).await;
    assert!(r.is_ok(), "ack still running after {limit:?} on a hung broker");
    let r = tokio::time::timeout(limit, bus.close()).await;
    assert!(r.is_ok(), "close still running after {limit:?} on a hung broker");
}

/// A 10,000-token subject and a 1 MB subject through every entry point: refused with a
/// clear code, quickly, without touching the stack or the connection; the bus still works.
async fn huge_subjects_everywhere(bus: Arc<dyn EventBus>) {
    let deep = vec!["t"; 10_000].join(".");
    let wide = "x".repeat(1 << 20);
    let deep_pattern = format!("{deep}.>");
    bus.declare_stream(StreamConfig::new("OK", ["ok.>"]))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    for s in [&deep, &wide] {
        let code = |r: busbar::Error| r.code().to_owned();
        assert_eq!(
            code(bus.publish(s, "x".into()).await.unwrap_err()),
            "invalid_subject"
        );
        assert_eq!(code(bus.message(s).build().unwrap_err()), "invalid_subject");
        assert_eq!(
            code(bus.request(s, "x".into(), WAIT).await.unwrap_err()),
            "invalid_subject"
        );
        assert_eq!(code(bus.subscribe(s).await.unwrap_err()), "invalid_subject");
        assert_eq!(
            code(bus.subscribe(&deep_pattern).await.unwrap_err()),
            "invalid_subject"
        );
        assert_eq!(
            code(bus.queue_subscribe(s, "g").await.unwrap_err()),
            "invalid_subject"
        );
        assert_eq!(
            code(bus.queue_subscribe("ok.x", s).await.unwrap_err()),
            "invalid_argument"
        );
        assert_eq!(
            code(
                bus.declare_stream(StreamConfig::new("HUGE", [s.as_str()]))
                    .await
                    .unwrap_err()
            ),
            "invalid_subject"
        );
        let filtered = ConsumerConfig::new("OK", "f").filter(s.as_str());
        assert_eq!(
            code(bus.durable_subscribe(filtered).await.unwrap_err()),
            "invalid_subject"
        );
        let prefixed = ConsumerConfig::new("OK", "p").dlq_prefix(s.as_str());
        assert!(bus.durable_subscribe(prefixed).await.is_err());
        let err = busbar::policy::Policy::from_json(&format!(
            r#"{{"classes":["phi"],"restricted":[{{"subjects":["{s}"],"roles":["c"]}}]}}"#
        ))
        .and_then(|p| {
            busbar::policy::PolicyBus::builder(bus.clone())
                .policy(p)
                .build()
                .map(drop)
        })
        .unwrap_err();
        assert_eq!(err.code(), "invalid_subject", "{err}");
        assert!(err.to_string().len() < 1000, "errors quote inputs short");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let mut sub = bus.subscribe("ok.>").await.unwrap();
    bus.flush().await.unwrap();
    bus.publish("ok.1", "still".into()).await.unwrap();
    let m = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.data(), "still");
}
on_both!(
    huge_subjects_everywhere,
    huge_subjects_everywhere_in_memory,
    huge_subjects_everywhere_on_nats
);

/// `block` mode with a subscription byte bound smaller than the messages, the subscriber
/// on the same (single-threaded) runtime as the publisher: each message gets through
/// alone while the subscriber keeps reading; a publisher waiting for bytes must not spin
/// (before the fix it spun on its own wake-up and starved the subscriber for ever).
async fn a_message_over_the_byte_bound(bus: Arc<dyn EventBus>) {
    let mut sub = bus.subscribe("big.>").await.unwrap();
    bus.flush().await.unwrap();
    let reader = tokio::spawn(async move {
        // On NATS `block` cannot hold a publisher in another process back: what the
        // bound cannot hold is missed, counted and reported at the gap (docs/design.md §4).
        // A trailing gap is reported before the next message: the test ends with one.
        let (mut got, mut missed) = (0, 0);
        while got + missed < 21 {
            match tokio::time::timeout(WAIT, sub.next()).await {
                Ok(Some(Ok(_))) => got += 1,
                Ok(Some(Err(busbar::Error::Lagged { missed: m, .. }))) => missed += m,
                other => panic!(
                    "after {got} messages and {missed} reported missed ({:?}): {other:?}",
                    sub.stats()
                ),
            }
        }
        assert_eq!(missed, sub.stats().missed);
        (got, missed)
    });
    for n in 0..20 {
        let r = tokio::time::timeout(WAIT, bus.publish("big.one", vec![b'x'; 1000 + n].into())).await;
        assert!(matches!(r, Ok(Ok(()))), "publish {n} over the byte bound: {r:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bus.publish("big.end", "end".into()).await.unwrap();
    let (got, missed) = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(got + missed, 21);
    if bus.backend() == Backend::Memory {
        assert_eq!(missed, 0, "block mode in memory loses nothing");
    }
}

fn tiny_bytes(config: Config) -> Config {
    config.with_subscription_max_bytes(100)
}

#[tokio::test]
async fn a_message_over_the_byte_bound_in_memory() {
    let bus = Arc::new(busbar::InMemoryBus::new(tiny_bytes(Config::default())).unwrap());
    a_message_over_the_byte_bound(bus).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_byte_bound_on_nats() {
    let server = start().await;
    let bus = busbar::connect(tiny_bytes(
        Config::default()
            .with_backend(Backend::Nats)
            .with_nats_url(server.url()),
    ))
    .await
    .unwrap();
    a_message_over_the_byte_bound(bus).await;
}

/// Lag accounting through the policy layer: a principal in `lag` mode that reads late sees
/// some messages, is told of the rest by lag notices, and the policy counts what it
/// withheld: delivered + missed + withheld adds up to what was published.
async fn lag_accounting_through_the_policy(inner: Arc<dyn EventBus>) {
    use busbar::policy::Principal;
    let bus = policy_bus(inner);
    let web = Principal::new("web", ["web"]);
    let mut sub = bus.subscribe_as(&web, "patients.>").await.unwrap();
    bus.flush().await.unwrap();
    const N: u64 = 200;
    for n in 0..N {
        // Every other message is tagged with a class no rule locates: withheld for `web`.
        let mut m = bus.message("patients.x").data(format!(r#"{{"n":{n}}}"#));
        if n % 2 == 0 {
            m = m.classification("pii");
        }
        bus.publish_message(m.build().unwrap()).await.unwrap();
    }
    bus.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut got, mut missed) = (0u64, 0u64);
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        match item {
            Ok(_) => got += 1,
            Err(busbar::Error::Lagged { missed: m, .. }) => missed += m,
            Err(e) => panic!("{e}"),
        }
    }
    let withheld = bus.policy_stats().withheld;
    assert_eq!(missed, sub.stats().missed);
    assert!(missed > 0, "the subscription lagged");
    assert_eq!(
        got + missed + withheld,
        N,
        "got {got} missed {missed} withheld {withheld}"
    );
}

fn lagging(config: Config) -> Config {
    config
        .with_subscription_capacity(8)
        .with_backpressure(busbar::Backpressure::Lag)
}

#[tokio::test]
async fn lag_accounting_through_the_policy_in_memory() {
    let bus = Arc::new(busbar::InMemoryBus::new(lagging(Config::default())).unwrap());
    lag_accounting_through_the_policy(bus).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_accounting_through_the_policy_on_nats() {
    let server = start().await;
    let bus = busbar::connect(lagging(
        Config::default()
            .with_backend(Backend::Nats)
            .with_nats_url(server.url()),
    ))
    .await
    .unwrap();
    lag_accounting_through_the_policy(bus).await;
}

/// A hostile peer on the same NATS account publishes classified plaintext under a forged
/// `ce-keyid` (known and unknown), and with a forged `busbar-dlq-subject` naming a
/// restricted subject: an ungranted principal never receives the value in clear.
#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_keyids_and_dead_letter_headers_from_a_hostile_peer() {
    use busbar::policy::Principal;
    let server = start().await;
    let bus = policy_bus(nats(&server).await);
    let web = Principal::new("web", ["web"]);
    let mut sub = bus.subscribe_as(&web, "patients.>").await.unwrap();
    bus.flush().await.unwrap();
    let hostile = async_nats::connect(server.url()).await.unwrap();
    let forgeries: [&[(&str, &str)]; 4] = [
        &[("ce-keyid", "k1")],
        &[("ce-keyid", "nope")],
        &[("ce-keyid", "k1"), ("ce-classification", "pii")],
        &[("busbar-dlq-subject", "phi.raw.x")],
    ];
    for headers in forgeries {
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        for body in [r#"{"ssn":"123-45-6789"}"#, r#"{"ssn":123456789}"#] {
            hostile
                .publish_with_headers("patients.x", map.clone(), body.into())
                .await
                .unwrap();
        }
    }
    // A control: the same value with nothing forged arrives, masked.
    hostile
        .publish("patients.x", r#"{"ssn":"123-45-6789"}"#.into())
        .await
        .unwrap();
    hostile.flush().await.unwrap();
    let mut masked = 0;
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(700), sub.next()).await {
        if let Ok(m) = item {
            masked += usize::from(m.data() == r#"{"ssn":"*******6789"}"#);
            let body = String::from_utf8_lossy(m.data()).into_owned();
            assert!(
                !body.contains("45-6789") && !body.contains("123456789"),
                "delivered in clear to an ungranted principal: {body} ({:?})",
                m.keyid()
            );
        }
    }
    assert!(masked >= 1, "the control message arrived masked");
}
