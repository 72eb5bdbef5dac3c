//! busbar's Kafka backend side by side with a raw rdkafka client (the same librdkafka)
//! doing the same work on the same private tansu broker, in one run: publish rate,
//! publish→subscribe rate and request latency. Rounds of busbar and raw alternate; each
//! rate is the median of ROUNDS rounds. Each round uses a topic of its own.
//!
//!     cargo bench -p busbar-benches --bench kafka
//!
//! Needs tansu (scripts/test.sh installs it into ~/.cache/busbar/tansu).

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Bytes, Config, EventBus};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const ROUNDS: usize = 5;
const PUBLISHES: usize = 50_000;
const PUB_SUB: usize = 20_000;
const REQUESTS: usize = 200;
const PAYLOAD: usize = 128;
const PARTITIONS: i32 = 8;

#[path = "../tests/support/tansu.rs"]
mod tansu;

fn topic() -> String {
    format!("bench-{}", uuid::Uuid::new_v4().simple())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

async fn bus(brokers: &str, topic: &str) -> Arc<dyn EventBus> {
    let mut config = Config::default().with_backend(busbar::Backend::Kafka);
    config.set("kafka_brokers", brokers).unwrap();
    config.set("kafka_topic", topic).unwrap();
    config.set("publish_buffer", "1000000").unwrap();
    busbar::connect(config).await.unwrap()
}

/// The raw client's settings: what busbar's producer uses (idempotent, acks=all, linger 1 ms).
fn raw_producer(brokers: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap()
}

async fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(-1));
    admin.create_topics([&new], &AdminOptions::new()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A raw reader of every partition of `topic` from the start (the topic is the round's own).
fn raw_consumer(brokers: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("raw-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    c
}

/// Publishes per second until the brokers acknowledged them all (busbar: `flush`).
async fn publish_busbar(brokers: &str, payload: &Bytes) -> f64 {
    let bus = bus(brokers, &topic()).await;
    bus.publish("bench.pub", payload.clone()).await.unwrap(); // warm-up, as for raw
    bus.flush().await.unwrap();
    let start = Instant::now();
    for _ in 0..PUBLISHES {
        bus.publish("bench.pub", payload.clone()).await.unwrap();
    }
    bus.flush().await.unwrap();
    let rate = PUBLISHES as f64 / start.elapsed().as_secs_f64();
    bus.close().await.unwrap();
    rate
}

async fn publish_raw(brokers: &str, payload: &Bytes) -> f64 {
    let topic = topic();
    create_topic(brokers, &topic).await;
    let producer = raw_producer(brokers);
    // Warm-up: the producer learns the topic's metadata, as busbar's did at connect.
    producer
        .send(BaseRecord::to(&topic).key("bench.pub").payload(payload.as_ref()))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let start = Instant::now();
    for _ in 0..PUBLISHES {
        producer
            .send(BaseRecord::to(&topic).key("bench.pub").payload(payload.as_ref()))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    PUBLISHES as f64 / start.elapsed().as_secs_f64()
}

/// The raw client sending what busbar sends per record: the CloudEvents headers of a new
/// event (busbar's own encoding, `busbar::kafka::envelope::headers`) beside the payload.
async fn publish_raw_ce(brokers: &str, payload: &Bytes) -> f64 {
    let topic = topic();
    create_topic(brokers, &topic).await;
    let producer = raw_producer(brokers);
    let event = || {
        busbar::Message::builder("bench.pub")
            .data(payload.clone())
            .build()
            .unwrap()
    };
    producer
        .send(BaseRecord::to(&topic).key("bench.pub").payload(payload.as_ref()))
        .map_err(|(e, _)| e)
        .unwrap();
    producer.flush(Duration::from_secs(30)).unwrap();
    let start = Instant::now();
    for _ in 0..PUBLISHES {
        let msg = event();
        producer
            .send(
                BaseRecord::to(&topic)
                    .key("bench.pub")
                    .payload(payload.as_ref())
                    .headers(busbar::kafka::envelope::headers(&msg)),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    PUBLISHES as f64 / start.elapsed().as_secs_f64()
}

/// Messages per second from the first publish to the last one received.
async fn pub_sub_busbar(brokers: &str, payload: &Bytes) -> f64 {
    let bus = bus(brokers, &topic()).await;
    let mut sub = bus.subscribe("bench.>").await.unwrap();
    bus.publish("bench.warm", payload.clone()).await.unwrap(); // warm-up, as for raw
    sub.next().await.unwrap().unwrap();
    let start = Instant::now();
    let publisher = {
        let (bus, payload) = (bus.clone(), payload.clone());
        tokio::spawn(async move {
            for _ in 0..PUB_SUB {
                bus.publish("bench.ps", payload.clone()).await.unwrap();
            }
        })
    };
    for _ in 0..PUB_SUB {
        sub.next().await.unwrap().unwrap();
    }
    let rate = PUB_SUB as f64 / start.elapsed().as_secs_f64();
    publisher.await.unwrap();
    bus.close().await.unwrap();
    rate
}

async fn pub_sub_raw(brokers: &str, payload: &Bytes) -> f64 {
    let topic = topic();
    create_topic(brokers, &topic).await;
    let consumer = raw_consumer(brokers, &topic);
    let producer = raw_producer(brokers);
    // Warm-up: one record through, so both clients know the topic and fetch.
    producer
        .send(BaseRecord::to(&topic).key("bench.warm").payload(payload.as_ref()))
        .map_err(|(e, _)| e)
        .unwrap();
    consumer.recv().await.unwrap();
    let start = Instant::now();
    let publisher = {
        let (topic, payload) = (topic.clone(), payload.clone());
        tokio::task::spawn_blocking(move || {
            for _ in 0..PUB_SUB {
                producer
                    .send(BaseRecord::to(&topic).key("bench.ps").payload(payload.as_ref()))
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
            producer.flush(Duration::from_secs(30)).unwrap();
        })
    };
    for _ in 0..PUB_SUB {
        consumer.recv().await.unwrap();
    }
    let rate = PUB_SUB as f64 / start.elapsed().as_secs_f64();
    publisher.await.unwrap();
    rate
}

/// Round-trip times of sequential requests (a responder on the same bus).
async fn request_busbar(brokers: &str, payload: &Bytes) -> Vec<Duration> {
    let bus = bus(brokers, &topic()).await;
    let responder = bus.subscribe("bench.req").await.unwrap();
    let server = tokio::spawn(busbar::serve(responder, |req| async move { req.data().clone() }));
    bus.request("bench.req", payload.clone(), Duration::from_secs(10))
        .await
        .unwrap();
    let mut out = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        bus.request("bench.req", payload.clone(), Duration::from_secs(10))
            .await
            .unwrap();
        out.push(start.elapsed());
    }
    bus.close().await.unwrap();
    let _ = server.await;
    out.sort();
    out
}

/// The same with raw rdkafka: a request record with a correlation header, a responder that
/// answers on a reply key, one topic for both (as busbar's mapping).
async fn request_raw(brokers: &str, payload: &Bytes) -> Vec<Duration> {
    let topic = topic();
    create_topic(brokers, &topic).await;
    let requests = raw_consumer(brokers, &topic);
    let replies = raw_consumer(brokers, &topic);
    let producer = Arc::new(raw_producer(brokers));
    let server = {
        let (producer, topic) = (producer.clone(), topic.clone());
        tokio::spawn(async move {
            loop {
                let m = requests.recv().await.unwrap();
                if m.key() != Some(b"req") {
                    continue;
                }
                let id = m.headers().unwrap().get(0).value.unwrap().to_vec();
                let headers = OwnedHeaders::new().insert(Header {
                    key: "id",
                    value: Some(&id),
                });
                producer
                    .send(
                        BaseRecord::to(&topic)
                            .key("reply")
                            .payload(m.payload().unwrap())
                            .headers(headers),
                    )
                    .map_err(|(e, _)| e)
                    .unwrap();
            }
        })
    };
    let mut out = Vec::with_capacity(REQUESTS);
    for n in 0..=REQUESTS {
        let id = n.to_string();
        let start = Instant::now();
        let headers = OwnedHeaders::new().insert(Header {
            key: "id",
            value: Some(&id),
        });
        producer
            .send(
                BaseRecord::to(&topic)
                    .key("req")
                    .payload(payload.as_ref())
                    .headers(headers),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        loop {
            let m = replies.recv().await.unwrap();
            if m.key() == Some(b"reply") && m.headers().unwrap().get(0).value == Some(id.as_bytes()) {
                break;
            }
        }
        if n > 0 {
            out.push(start.elapsed()); // the first one warms up, as for busbar
        }
    }
    server.abort();
    out.sort();
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

fn main() {
    let broker = tansu::Tansu::start();
    let brokers = broker.brokers();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let payload = Bytes::from(vec![b'x'; PAYLOAD]);
        let (mut pb, mut pr, mut sb, mut sr) = (vec![], vec![], vec![], vec![]);
        let mut pc = vec![];
        for round in 0..ROUNDS {
            // Alternate which client goes first, so neither always meets a warmer broker.
            if round % 2 == 0 {
                pb.push(publish_busbar(&brokers, &payload).await);
                pr.push(publish_raw(&brokers, &payload).await);
                pc.push(publish_raw_ce(&brokers, &payload).await);
                sb.push(pub_sub_busbar(&brokers, &payload).await);
                sr.push(pub_sub_raw(&brokers, &payload).await);
            } else {
                pc.push(publish_raw_ce(&brokers, &payload).await);
                pr.push(publish_raw(&brokers, &payload).await);
                pb.push(publish_busbar(&brokers, &payload).await);
                sr.push(pub_sub_raw(&brokers, &payload).await);
                sb.push(pub_sub_busbar(&brokers, &payload).await);
            }
            eprintln!(
                "round {round}: publish {:.0} / {:.0} / {:.0}, pub->sub {:.0} / {:.0} msg/s (busbar / raw / raw with ce_ headers)",
                pb[round], pr[round], pc[round], sb[round], sr[round]
            );
        }
        let (rb, rr) = (
            request_busbar(&brokers, &payload).await,
            request_raw(&brokers, &payload).await,
        );
        let (pb, pr, pc, sb, sr) = (median(pb), median(pr), median(pc), median(sb), median(sr));
        println!("Kafka (tansu 0.6.0, memory storage), {PAYLOAD}-byte payloads, median of {ROUNDS} rounds");
        println!("{:<28}{:>14}{:>14}{:>10}", "", "busbar", "raw rdkafka", "ratio");
        println!(
            "{:<28}{:>14.0}{:>14.0}{:>10.2}",
            "publish (msg/s)",
            pb,
            pr,
            pb / pr
        );
        println!(
            "{:<28}{:>14.0}{:>14.0}{:>10.2}",
            "publish, raw sends ce_ hdrs",
            pb,
            pc,
            pb / pc
        );
        println!(
            "{:<28}{:>14.0}{:>14.0}{:>10.2}",
            "publish->subscribe (msg/s)",
            sb,
            sr,
            sb / sr
        );
        for (name, p) in [("p50", 0.5), ("p99", 0.99)] {
            let (b, r) = (pct(&rb, p), pct(&rr, p));
            println!(
                "{:<28}{:>14.0}{:>14.0}{:>10.2}",
                format!("request {name} (us)"),
                b,
                r,
                r / b
            );
        }
        println!("(ratio: busbar / raw for rates, raw / busbar for latencies; 1.00 = parity)");
    });
}
