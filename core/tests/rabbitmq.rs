//! The RabbitMQ backend against a real broker: the shared subject vectors bound and
//! published on a topic exchange, what AMQP cannot express refused by name, a plain AMQP
//! client (lapin, no busbar) reading busbar's messages and asking busbar a request, and
//! hostile messages from such a client. Each test works on an exchange of its own.
#![cfg(feature = "rabbitmq")]

use std::sync::Arc;
use std::time::Duration;

use busbar::rabbitmq::{envelope, subjects};
use busbar::{Config, EventBus, Subscription};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};
use serde_json::Value;

#[path = "support/rabbitmq.rs"]
mod rabbitmq;

const WAIT: Duration = Duration::from_secs(5);

/// Whether the broker routes `routing_key` anywhere on `exchange`: a mandatory publish
/// under confirms comes back (basic.return) when no binding matches.
async fn routed(channel: &Channel, exchange: &str, routing_key: &str) -> bool {
    match rabbitmq::send(channel, exchange, routing_key, b"", BasicProperties::default()).await {
        Confirmation::Ack(None) => true,
        Confirmation::Ack(Some(_)) => false,
        other => panic!("unexpected confirmation {other:?}"),
    }
}

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/vectors/subjects.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every `matches` vector whose pattern and subject RabbitMQ can express, decided by the
/// broker itself: the pattern's binding key alone on an exchange, the subject published
/// mandatory. Where the mapping refuses, the refusal is `invalid_subject` naming AMQP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subject_vectors_agree_on_the_broker() {
    let v = vectors();
    let cases = v["matches"].as_array().unwrap();
    let (_conn, channel) = rabbitmq::plain().await;
    let exchange = rabbitmq::exchange();
    rabbitmq::declare_exchange(&channel, &exchange).await;
    // A queue bound to nothing matching keeps the exchange alive between cases.
    let holder = rabbitmq::bound_queue(&channel, &exchange, "busbar-test-holder").await;
    let (mut checked, mut refused, mut invalid) = (0, 0, 0);
    let mut failures = Vec::new();
    for case in cases {
        let pattern = case["pattern"].as_str().unwrap();
        let subject = case["subject"].as_str().unwrap();
        let want = case["matches"].as_bool().unwrap();
        if busbar::validate_pattern(pattern).is_err() || busbar::validate_subject(subject).is_err() {
            invalid += 1;
            continue;
        }
        let (key, rkey) = match (subjects::binding_key(pattern), subjects::routing_key(subject)) {
            (Ok(key), Ok(rkey)) => (key, rkey),
            (Err(e), _) | (_, Err(e)) => {
                assert_eq!(e.code(), "invalid_subject", "{e}");
                let text = e.to_string();
                assert!(
                    text.contains("255 bytes") || text.contains("'#' token"),
                    "refusal does not name the AMQP limit: {text}"
                );
                refused += 1;
                continue;
            }
        };
        channel
            .queue_bind(
                holder.clone(),
                exchange.as_str().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let got = routed(&channel, &exchange, rkey).await;
        channel
            .queue_unbind(
                holder.clone(),
                exchange.as_str().into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        if got != want {
            failures.push(format!(
                "pattern {pattern:?} (binding {key:?}) and subject {subject:?}: broker {got}, vectors {want}; {}",
                case["note"]
            ));
        }
        checked += 1;
    }
    channel
        .queue_delete(holder, QueueDeleteOptions::default())
        .await
        .unwrap();
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked >= 100,
        "only {checked} vectors reached the broker ({refused} refused, {invalid} invalid)"
    );
    eprintln!(
        "{checked} vectors agreed on the broker, {refused} refused by the AMQP mapping, {invalid} invalid"
    );
}

async fn next(sub: &mut Subscription) -> busbar::Result<busbar::Message> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("an item in time")
        .expect("the subscription goes on")
}

async fn quiet(sub: &mut Subscription) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), sub.next()).await {
        panic!("expected nothing on {:?}, got {item:?}", sub.pattern());
    }
}

/// Literal `*`/`#` inside tokens route as literals through busbar itself; a literal `#`
/// token and keys over 255 bytes are refused with `invalid_subject`, before anything
/// reaches the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn literal_tokens_and_amqp_limits_end_to_end() {
    let bus = rabbitmq::bus(Config::default()).await;
    let mut star = bus.subscribe("a*.b").await.unwrap();
    let mut any = bus.subscribe("*.b").await.unwrap();
    let mut hash_tail = bus.subscribe("x.>").await.unwrap();
    bus.publish("ab.b", "1".into()).await.unwrap();
    bus.publish("a*.b", "2".into()).await.unwrap();
    bus.publish("x.#", "3".into()).await.unwrap();
    bus.publish("x", "4".into()).await.unwrap();
    bus.flush().await.unwrap();
    assert_eq!(next(&mut star).await.unwrap().subject(), "a*.b");
    quiet(&mut star).await;
    assert_eq!(next(&mut any).await.unwrap().subject(), "ab.b");
    assert_eq!(next(&mut any).await.unwrap().subject(), "a*.b");
    // `x.#` is an ordinary subject: `x.>` takes it, `x` (no trailing token) is not.
    assert_eq!(next(&mut hash_tail).await.unwrap().subject(), "x.#");
    quiet(&mut hash_tail).await;

    for p in ["a.#", "#", "#.>"] {
        let e = bus.subscribe(p).await.unwrap_err();
        assert_eq!(e.code(), "invalid_subject", "{p}: {e}");
        assert!(e.to_string().contains("AMQP"), "{e}");
        let e = bus.queue_subscribe(p, "g").await.unwrap_err();
        assert_eq!(e.code(), "invalid_subject", "{p}: {e}");
    }
    let long = format!("{}.x", "s".repeat(254));
    let e = bus.publish(&long, "x".into()).await.unwrap_err();
    assert_eq!(e.code(), "invalid_subject");
    assert!(e.to_string().contains("255 bytes"), "{e}");
    let e = bus.request(&long, "x".into(), WAIT).await.unwrap_err();
    assert_eq!(e.code(), "invalid_subject");
    let e = bus
        .subscribe(&format!("{}.>", "s".repeat(252)))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("255 bytes"), "{e}");
    // Valid busbar subjects within the limits still work after the refusals.
    let at_limit = "s".repeat(255);
    let mut sub = bus.subscribe(&at_limit).await.unwrap();
    bus.publish(&at_limit, "ok".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.unwrap().data()[..], b"ok");
    bus.close().await.unwrap();
}

fn header_text(props: &BasicProperties, name: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8(s.as_bytes().to_vec()).unwrap()),
        other => panic!("header {name} is {other:?}"),
    }
}

/// A plain AMQP consumer bound to `#` reads every attribute of what busbar publishes, and
/// a plain AMQP requester gets busbar's reply with its correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_amqp_client_reads_busbar_and_asks_it() {
    let exchange = rabbitmq::exchange();
    let bus = rabbitmq::connect(Config::default().with_source("interop-test"), &exchange).await;
    let (_conn, channel) = rabbitmq::plain().await;
    let queue = rabbitmq::bound_queue(&channel, &exchange, "orders.#").await;
    let mut consumer = rabbitmq::consume(&channel, queue).await;
    let msg = bus
        .message("orders.created")
        .event_type("com.example.order.created")
        .content_type("application/json")
        .header("tenant", "t-1")
        .data(&br#"{"id":7}"#[..])
        .build()
        .unwrap();
    bus.publish_message(msg.clone()).await.unwrap();
    let d = tokio::time::timeout(WAIT, consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.routing_key.as_str(), "orders.created");
    assert_eq!(d.data, br#"{"id":7}"#);
    let p = &d.properties;
    assert_eq!(header_text(p, "cloudEvents:id").as_deref(), Some(msg.id()));
    assert_eq!(header_text(p, "cloudEvents:specversion").as_deref(), Some("1.0"));
    assert_eq!(
        header_text(p, "cloudEvents:source").as_deref(),
        Some("interop-test")
    );
    assert_eq!(
        header_text(p, "cloudEvents:type").as_deref(),
        Some("com.example.order.created")
    );
    assert_eq!(
        header_text(p, "cloudEvents:subject").as_deref(),
        Some("orders.created")
    );
    assert!(header_text(p, "cloudEvents:time").unwrap().ends_with('Z'));
    assert_eq!(header_text(p, "tenant").as_deref(), Some("t-1"));
    assert_eq!(p.content_type().as_ref().unwrap().as_str(), "application/json");
    assert_eq!(p.message_id().as_ref().unwrap().as_str(), msg.id());

    // The plain client asks busbar: reply-to is a routing key it bound, correlation-id its own.
    let responder = bus.subscribe("prices.get").await.unwrap();
    let served = tokio::spawn(busbar::serve(responder, |m| async move {
        format!("price of {}", String::from_utf8_lossy(m.data())).into()
    }));
    let reply_key = format!("plain.reply.{}", uuid::Uuid::new_v4().simple());
    let replies = rabbitmq::bound_queue(&channel, &exchange, &reply_key).await;
    let mut replies = rabbitmq::consume(&channel, replies).await;
    bus.flush().await.unwrap();
    let confirm = rabbitmq::send(
        &channel,
        &exchange,
        "prices.get",
        b"apples",
        BasicProperties::default()
            .with_reply_to(reply_key.as_str().into())
            .with_correlation_id("plain-42".into()),
    )
    .await;
    assert!(matches!(confirm, Confirmation::Ack(None)), "{confirm:?}");
    let r = tokio::time::timeout(WAIT, replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.data, b"price of apples");
    assert_eq!(r.routing_key.as_str(), reply_key);
    assert_eq!(
        r.properties.correlation_id().as_ref().unwrap().as_str(),
        "plain-42"
    );
    assert_eq!(
        header_text(&r.properties, "cloudEvents:correlationid").as_deref(),
        Some("plain-42")
    );
    bus.close().await.unwrap();
    assert_eq!(served.await.unwrap().unwrap(), 1);
}

/// Hostile messages from a plain client: each reaches the subscriber as a counted
/// `decode` item and the next good message still arrives; a hostile reply with the right
/// correlation id fails its request with `decode`, never a crash or a hang.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_amqp_messages_are_decode_items() {
    let exchange = rabbitmq::exchange();
    let bus: Arc<dyn EventBus> = rabbitmq::connect(Config::default(), &exchange).await;
    let mut sub = bus.subscribe("h.>").await.unwrap();
    bus.flush().await.unwrap();
    let (_conn, channel) = rabbitmq::plain().await;
    let mut tables = Vec::new();
    let mut t = FieldTable::default();
    t.insert("nested".into(), AMQPValue::FieldTable(FieldTable::default()));
    tables.push(("h.table", t));
    let mut t = FieldTable::default();
    t.insert("bin".into(), AMQPValue::LongString(vec![0xff, 0x00, 0xfe].into()));
    tables.push(("h.utf8", t));
    let mut t = FieldTable::default();
    t.insert(
        "cloudEvents:time".into(),
        AMQPValue::LongString(b"not a time".to_vec().into()),
    );
    tables.push(("h.time", t));
    let mut t = FieldTable::default();
    t.insert(
        "cloudEvents:specversion".into(),
        AMQPValue::LongString(b"0.1".to_vec().into()),
    );
    tables.push(("h.spec", t));
    let mut t = FieldTable::default();
    t.insert("cloudEvents:id".into(), AMQPValue::LongString(Vec::new().into()));
    t.insert(
        "arr".into(),
        AMQPValue::FieldArray(vec![AMQPValue::Boolean(true)].into()),
    );
    tables.push(("h.array", t));
    // Not a busbar subject at all (an empty word), but an AMQP routing key `h.>` matches.
    tables.push(("h..empty", FieldTable::default()));
    tables.push(("h. space", FieldTable::default()));
    let hostile = tables.len() as u64;
    for (key, headers) in tables {
        rabbitmq::send(
            &channel,
            &exchange,
            key,
            b"x",
            BasicProperties::default().with_headers(headers),
        )
        .await;
    }
    let mut ints = FieldTable::default();
    ints.insert("count".into(), AMQPValue::LongInt(3));
    rabbitmq::send(
        &channel,
        &exchange,
        "h.good",
        b"fine",
        BasicProperties::default().with_headers(ints),
    )
    .await;
    for _ in 0..hostile {
        let e = next(&mut sub).await.unwrap_err();
        assert_eq!(e.code(), "decode", "{e}");
    }
    let good = next(&mut sub).await.unwrap();
    assert_eq!(&good.data()[..], b"fine");
    assert_eq!(good.source(), "amqp");
    assert_eq!(good.headers().get("count").map(String::as_str), Some("3"));
    assert_eq!(sub.stats().undecodable, hostile);
    assert_eq!(bus.stats().undecodable, hostile);

    // A responder that answers with a table header and the right correlation id.
    let service = rabbitmq::bound_queue(&channel, &exchange, "svc.hostile").await;
    let mut requests = rabbitmq::consume(&channel, service).await;
    let responder = {
        let channel = channel.clone();
        let exchange = exchange.clone();
        tokio::spawn(async move {
            let req = requests.next().await.unwrap().unwrap();
            let mut t = FieldTable::default();
            t.insert("x".into(), AMQPValue::FieldTable(FieldTable::default()));
            let props = BasicProperties::default()
                .with_headers(t)
                .with_correlation_id(req.properties.correlation_id().clone().unwrap());
            let to = req.properties.reply_to().clone().unwrap();
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    to,
                    BasicPublishOptions::default(),
                    b"r",
                    props,
                )
                .await
                .unwrap()
                .await
                .unwrap();
        })
    };
    let e = bus.request("svc.hostile", "q".into(), WAIT).await.unwrap_err();
    assert_eq!(e.code(), "decode", "{e}");
    responder.await.unwrap();
    bus.close().await.unwrap();
}

/// `block` mode on RabbitMQ: a backlog far larger than the subscription's buffer and the
/// prefetch waits in the broker, nothing is missed, and a drain yields all of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_mode_keeps_a_backlog_in_the_broker_and_drain_yields_it() {
    const N: usize = 1_000;
    let bus = rabbitmq::bus(Config::default().with_subscription_capacity(4)).await;
    let mut sub = bus.subscribe("backlog.*").await.unwrap();
    for i in 0..N {
        bus.publish("backlog.x", i.to_string().into()).await.unwrap();
    }
    bus.flush().await.unwrap();
    sub.drain().await.unwrap();
    bus.publish("backlog.x", "after the drain".into()).await.unwrap();
    let mut got = Vec::new();
    while let Some(item) = tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("the drained stream ends")
    {
        got.push(String::from_utf8(item.unwrap().data().to_vec()).unwrap());
    }
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(
        got, want,
        "every message routed before the drain, in order, then the end"
    );
    let stats = sub.stats();
    assert_eq!((stats.delivered, stats.missed), (N as u64, 0), "{stats:?}");
}

/// `lag` mode on RabbitMQ: what a full buffer cannot take is missed, counted and reported
/// at the gap, so received + missed = published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_mode_counts_and_reports_every_miss() {
    const N: u64 = 200;
    let config = Config::default()
        .with_subscription_capacity(8)
        .with_backpressure(busbar::Backpressure::Lag);
    let bus = rabbitmq::bus(config).await;
    let mut sub = bus.subscribe("lag.*").await.unwrap();
    for i in 0..N {
        bus.publish("lag.x", i.to_string().into()).await.unwrap();
    }
    bus.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (mut received, mut reported) = (0u64, 0u64);
    let mut take = |item: busbar::Result<busbar::Message>| match item {
        Ok(m) => {
            received += 1;
            m.data() == "last"
        }
        Err(busbar::Error::Lagged { missed, .. }) => {
            reported += missed;
            false
        }
        Err(e) => panic!("{e}"),
    };
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(300), sub.next()).await {
        take(item);
    }
    let missed = sub.stats().missed;
    assert!(missed > 0, "a buffer of 8 took all {N} without a miss");
    // A loss at the tail is counted at once and reported before the next message.
    bus.publish("lag.x", "last".into()).await.unwrap();
    while !take(next(&mut sub).await) {}
    assert_eq!(
        received - 1 + missed,
        N,
        "received {received} (with the last), missed {missed}"
    );
    assert_eq!(reported, missed, "every miss is reported at its gap");
    assert_eq!(bus.stats().missed, reported);
}

/// The envelope mapping is public: what busbar writes decodes back to the same message.
#[test]
fn envelope_mapping_round_trips() {
    let msg = busbar::Message::builder("a.b")
        .correlation_id("c")
        .data(&b"d"[..])
        .build()
        .unwrap();
    let props = envelope::properties(&msg, true).unwrap();
    assert_eq!(*props.delivery_mode(), Some(2));
    let back = envelope::decode("a.b", &props, b"d".to_vec()).unwrap();
    assert_eq!((back.id(), back.correlation_id()), (msg.id(), Some("c")));
}

/// `amqp_url` without its credentials, and the user and password it carried.
fn split_credentials(url: &str) -> (String, String, String) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (userinfo, host) = rest.rsplit_once('@').expect("the test URL carries credentials");
    let (user, password) = userinfo.split_once(':').unwrap();
    (format!("{scheme}://{host}"), user.to_owned(), password.to_owned())
}

/// Authentication beyond the URL, as for NATS: `amqp_user`/`amqp_password` log in when the
/// URL carries no credentials; a wrong password fails with `backend` and is never printed;
/// settings that contradict each other are `invalid_argument` before any connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_and_tls_settings_beyond_the_url() {
    let (bare, user, password) = split_credentials(&rabbitmq::url());
    let config = || {
        Config::default()
            .with_backend(busbar::Backend::RabbitMq)
            .with_amqp_url(bare.clone())
            .with_amqp_exchange(rabbitmq::exchange())
    };
    let mut good = config();
    good.set("amqp_user", &user).unwrap();
    good.set("amqp_password", &password).unwrap();
    let bus = busbar::connect(good.clone()).await.unwrap();
    let mut sub = bus.subscribe("auth.x").await.unwrap();
    bus.publish("auth.x", "in".into()).await.unwrap();
    assert_eq!(&next(&mut sub).await.unwrap().data()[..], b"in");
    bus.close().await.unwrap();

    let mut wrong = config();
    wrong.set("amqp_user", &user).unwrap();
    wrong.set("amqp_password", "not-the-password-4242").unwrap();
    let e = busbar::connect(wrong).await.err().expect("a refused connection");
    assert_eq!(e.code(), "backend", "{e}");
    assert!(!format!("{e:?} {e}").contains("not-the-password-4242"), "{e}");

    let refused = |set: &[(&str, &str)], url: &str| {
        let mut c = config().with_amqp_url(url);
        for (k, v) in set {
            c.set(k, v).unwrap();
        }
        c
    };
    let cases = [
        // Credentials twice.
        refused(&[("amqp_user", "u"), ("amqp_password", "p")], &rabbitmq::url()),
        // One without the other.
        refused(&[("amqp_user", "u")], &bare),
        refused(&[("amqp_tls_cert", "/c.pem")], &bare),
        // TLS required, plain URL.
        refused(&[("amqp_require_tls", "true")], &bare),
        // A file that is not there, named.
        refused(
            &[("amqp_tls_ca", "/nonexistent/busbar-ca.pem")],
            &bare.replacen("amqp://", "amqps://", 1),
        ),
    ];
    for case in cases {
        let e = busbar::connect(case.clone())
            .await
            .err()
            .expect("a refused connection");
        assert_eq!(e.code(), "invalid_argument", "{case:?}: {e}");
    }
    let e = busbar::connect(refused(
        &[("amqp_tls_ca", "/nonexistent/busbar-ca.pem")],
        &bare.replacen("amqp://", "amqps://", 1),
    ))
    .await
    .err()
    .expect("a refused connection");
    assert!(e.to_string().contains("/nonexistent/busbar-ca.pem"), "{e}");
    assert!(
        format!("{good:?}").contains(r#"amqp_password: Some("<redacted>")"#),
        "{good:?}"
    );
}

async fn durable_next(sub: &mut busbar::DurableSubscription) -> busbar::Result<busbar::DurableMessage> {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a durable item in time")
        .expect("the durable subscription goes on")
}

fn durable_text(item: busbar::Result<busbar::DurableMessage>) -> (String, u64, u32) {
    let m = item.expect("a durable message");
    let text = String::from_utf8(m.data().to_vec()).unwrap();
    (text, m.sequence(), m.attempt())
}

async fn stream_names(bus: &Arc<dyn EventBus>) -> Vec<String> {
    let streams = bus.list_streams().await.unwrap();
    streams.into_iter().map(|s| s.name).collect()
}

/// Two buses on one journal: what one deletes, the other sees deleted (its subscription
/// told once, then reading again from its configured start); a deleted stream's subjects
/// reach the journal no more. Entries a hostile or buggy peer puts on the journal (not
/// JSON, an unknown kind, names no busbar call accepts) are skipped and counted by every
/// bus, which goes on applying the rest; an entry with extreme numbers panics nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_admin_spans_buses_and_hostile_entries_are_skipped() {
    let exchange = rabbitmq::exchange();
    let _journal = rabbitmq::Journal(exchange.clone());
    let a = rabbitmq::connect(Config::default(), &exchange).await;
    let b = rabbitmq::connect(Config::default(), &exchange).await;
    a.declare_stream(busbar::StreamConfig::new("ORDERS", ["orders.>"]))
        .await
        .unwrap();
    let mut sub = b
        .durable_subscribe(busbar::ConsumerConfig::new("ORDERS", "billing"))
        .await
        .unwrap();

    let (_conn, channel) = rabbitmq::plain().await;
    let queue = format!("{exchange}.journal");
    let json = || BasicProperties::default().with_content_type("application/json".into());
    let hostile: [&[u8]; 7] = [
        b"not json at all",
        br#"{"op":"explode","stream":"ORDERS"}"#,
        br#"{"op":"declare","name":"bad name","subjects":["x.>"],"duplicate_window_ms":1}"#,
        br#"{"op":"declare","name":"EMPTY","subjects":[],"duplicate_window_ms":1}"#,
        br#"{"op":"consumer","stream":"ORDERS","name":"stuck","filter":null,"start":"beginning","max_ack_pending":0}"#,
        br#"{"op":"delete_stream","name":""}"#,
        br#"{"op":"deliver","stream":"ORDERS","consumer":"billing","seq":1,"attempt":0,"at_ms":0,"due_ms":0}"#,
    ];
    for entry in hostile {
        let sent = rabbitmq::send(&channel, "", &queue, entry, json()).await;
        assert_eq!(sent, Confirmation::Ack(None));
    }
    // Sound, with extreme numbers: applied, and nothing panics.
    let extreme = br#"{"op":"consumer","stream":"ORDERS","name":"late","filter":null,"start":{"time_ms":18446744073709551615},"max_ack_pending":1}"#;
    rabbitmq::send(&channel, "", &queue, extreme, json()).await;

    let msg = a.message("orders.1").data("m1").build().unwrap();
    assert_eq!(a.publish_durable(msg).await.unwrap().sequence, 1);
    let first = durable_next(&mut sub).await.unwrap();
    assert_eq!((first.sequence(), first.attempt()), (1, 1));
    first.ack().await.unwrap();
    for bus in [&a, &b] {
        let names = stream_names(bus).await;
        assert_eq!(names, ["DLQ_DLQ", "ORDERS"], "no hostile declaration applied");
        assert_eq!(
            bus.stats().undecodable,
            hostile.len() as u64,
            "each skipped entry counted"
        );
    }
    let late = a.consumer_info("ORDERS", "late").await.unwrap();
    // Made before m1 was stored (no message that late yet): m1 is pending for it.
    assert_eq!((late.pending, late.ack_pending), (1, 0), "{late:?}");

    // What b delivered and settled, a reads.
    let billing = a.consumer_info("ORDERS", "billing").await.unwrap();
    assert_eq!(
        (billing.pending, billing.ack_pending, billing.delivered_sequence),
        (0, 0, 1),
        "{billing:?}"
    );

    // a deletes b's consumer: b is told once, then reads from its start again.
    a.delete_consumer("ORDERS", "billing").await.unwrap();
    let lost = durable_next(&mut sub).await.unwrap_err();
    assert_eq!(lost.code(), "backend", "{lost}");
    assert_eq!(
        durable_text(durable_next(&mut sub).await),
        ("m1".to_owned(), 1, 1)
    );
    let consumers = b.list_consumers("ORDERS").await.unwrap();
    let names: Vec<&str> = consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["billing", "late"]);

    // a deletes the stream: b is told, and the subjects reach the journal no more.
    a.delete_stream("ORDERS").await.unwrap();
    let lost = durable_next(&mut sub).await.unwrap_err();
    assert_eq!(lost.code(), "backend", "{lost}");
    assert_eq!(
        b.stream_info("ORDERS").await.unwrap_err().code(),
        "invalid_argument"
    );
    assert!(
        !routed(&channel, &exchange, "orders.2").await,
        "unbound from the journal"
    );
    let refused = b.publish_durable(b.message("orders.2").data("x").build().unwrap());
    assert_eq!(refused.await.unwrap_err().code(), "invalid_argument");

    // Declared anew (by b): bound again, and the subscription reads it from sequence 1.
    b.declare_stream(busbar::StreamConfig::new("ORDERS", ["orders.>"]))
        .await
        .unwrap();
    let msg = a.message("orders.3").data("m3").build().unwrap();
    assert_eq!(a.publish_durable(msg).await.unwrap().sequence, 1);
    assert_eq!(
        durable_text(durable_next(&mut sub).await),
        ("m3".to_owned(), 1, 1)
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A close that races subscribes still opening their channels (a caller that closes
/// without awaiting them) closes the bus: `close()` succeeds, each subscribe ends with
/// `closed` or `backend`, and nothing hangs. lapin fails its connection close with
/// "invalid channel state" when a channel's open-ok arrives during it; the connection
/// is gone all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_racing_subscribes_closes_the_bus() {
    for round in 0..20 {
        let exchange = rabbitmq::exchange();
        let _journal = rabbitmq::Journal(exchange.clone());
        let bus = rabbitmq::connect(Config::default(), &exchange).await;
        let pending: Vec<_> = (0..4)
            .map(|i| {
                let bus = bus.clone();
                tokio::spawn(async move { bus.subscribe(&format!("race.{i}")).await.map(|_| ()) })
            })
            .collect();
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(10), bus.close())
            .await
            .expect("close returns")
            .unwrap_or_else(|e| panic!("round {round}: close failed: {e}"));
        for p in pending {
            match tokio::time::timeout(Duration::from_secs(10), p)
                .await
                .expect("subscribe ends")
                .unwrap()
            {
                Ok(()) => {}
                Err(e) => assert!(matches!(e.code(), "closed" | "backend"), "round {round}: {e}"),
            }
        }
        assert!(matches!(
            bus.publish("race.x", "x".into()).await.unwrap_err().code(),
            "closed"
        ));
    }
}
