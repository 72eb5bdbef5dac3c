//! busbar's RabbitMQ backend side by side with a raw lapin client doing the same work on
//! the same broker, in one run: publish rate, publish→subscribe rate and request latency.
//! Prints a table; each rate is the median of ROUNDS rounds. Each round uses an exchange
//! of its own (auto-deleted afterwards).
//!
//!     cargo bench -p busbar-benches --bench rabbitmq
//!
//! Needs the broker at BUSBAR_TEST_AMQP_URL (default the local guest account).

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Bytes, Config, EventBus};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};

const ROUNDS: usize = 3;
const PUBLISHES: usize = 20_000;
const PUB_SUB: usize = 20_000;
const REQUESTS: usize = 1_000;
const PAYLOAD: usize = 128;

#[path = "../tests/support/rabbitmq.rs"]
mod rabbitmq;

fn exchange() -> String {
    format!("busbar.bench.{}", uuid::Uuid::new_v4().simple())
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

async fn bus(exchange: &str) -> Arc<dyn EventBus> {
    rabbitmq::connect(Config::default(), exchange).await
}

/// A raw lapin connection with a channel (no confirms) and the bench's topic exchange
/// declared as busbar declares it.
async fn raw(exchange: &str) -> (Connection, Channel) {
    let conn = rabbitmq::connection().await;
    let channel = conn.create_channel().await.unwrap();
    rabbitmq::declare_exchange(&channel, exchange).await;
    (conn, channel)
}

async fn raw_queue(channel: &Channel, exchange: &str, key: &str) -> lapin::Consumer {
    let queue = rabbitmq::bound_queue(channel, exchange, key).await;
    rabbitmq::consume(channel, queue).await
}

async fn raw_publish(channel: &Channel, exchange: &str, key: &str, data: &[u8], props: BasicProperties) {
    channel
        .basic_publish(
            exchange.into(),
            key.into(),
            BasicPublishOptions::default(),
            data,
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

/// Publishes handed to the connection per second, ending with a round trip so the broker
/// has taken them all (busbar: `flush`; raw: a message through a queue of its own).
async fn publish_busbar(payload: &Bytes) -> f64 {
    let ex = exchange();
    let bus = bus(&ex).await;
    let start = Instant::now();
    for _ in 0..PUBLISHES {
        bus.publish("bench.pub", payload.clone()).await.unwrap();
    }
    bus.flush().await.unwrap();
    let rate = PUBLISHES as f64 / start.elapsed().as_secs_f64();
    bus.close().await.unwrap();
    rate
}

async fn publish_raw(payload: &Bytes) -> f64 {
    let ex = exchange();
    let (conn, channel) = raw(&ex).await;
    let mut marker = raw_queue(&channel, &ex, "bench.marker").await;
    let start = Instant::now();
    for _ in 0..PUBLISHES {
        raw_publish(&channel, &ex, "bench.pub", payload, BasicProperties::default()).await;
    }
    raw_publish(&channel, &ex, "bench.marker", b"", BasicProperties::default()).await;
    marker.next().await.unwrap().unwrap();
    let rate = PUBLISHES as f64 / start.elapsed().as_secs_f64();
    conn.close(200, "done".into()).await.unwrap();
    rate
}

/// Messages per second from the first publish until the subscriber has them all.
async fn pub_sub_busbar(payload: &Bytes) -> f64 {
    let ex = exchange();
    let publisher = bus(&ex).await;
    let subscriber = bus(&ex).await;
    let mut sub = subscriber.subscribe("bench.ps").await.unwrap();
    subscriber.flush().await.unwrap();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        for _ in 0..PUB_SUB {
            sub.next().await.unwrap().unwrap();
        }
    });
    for _ in 0..PUB_SUB {
        publisher.publish("bench.ps", payload.clone()).await.unwrap();
    }
    reader.await.unwrap();
    let rate = PUB_SUB as f64 / start.elapsed().as_secs_f64();
    publisher.close().await.unwrap();
    subscriber.close().await.unwrap();
    rate
}

async fn pub_sub_raw(payload: &Bytes) -> f64 {
    let ex = exchange();
    let (pconn, publisher) = raw(&ex).await;
    let (sconn, schannel) = raw(&ex).await;
    // The raw subscriber acks as busbar's block mode does, with the same prefetch.
    schannel.basic_qos(256, BasicQosOptions::default()).await.unwrap();
    let queue = rabbitmq::bound_queue(&schannel, &ex, "bench.ps").await;
    let mut consumer = schannel
        .basic_consume(
            queue,
            "bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let start = Instant::now();
    let reader = tokio::spawn(async move {
        for _ in 0..PUB_SUB {
            let d = consumer.next().await.unwrap().unwrap();
            d.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
    for _ in 0..PUB_SUB {
        raw_publish(&publisher, &ex, "bench.ps", payload, BasicProperties::default()).await;
    }
    reader.await.unwrap();
    let rate = PUB_SUB as f64 / start.elapsed().as_secs_f64();
    pconn.close(200, "done".into()).await.unwrap();
    sconn.close(200, "done".into()).await.unwrap();
    rate
}

/// Sequential request latencies, sorted.
async fn request_busbar(payload: &Bytes) -> Vec<Duration> {
    let ex = exchange();
    let server = bus(&ex).await;
    let client = bus(&ex).await;
    let sub = server.subscribe("bench.req").await.unwrap();
    let served = tokio::spawn(busbar::serve(sub, |m| async move { m.data().clone() }));
    server.flush().await.unwrap();
    let mut out = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let start = Instant::now();
        client
            .request("bench.req", payload.clone(), Duration::from_secs(5))
            .await
            .unwrap();
        out.push(start.elapsed());
    }
    client.close().await.unwrap();
    server.close().await.unwrap();
    let _ = served.await;
    out.sort();
    out
}

async fn request_raw(payload: &Bytes) -> Vec<Duration> {
    let ex = exchange();
    let (sconn, schannel) = raw(&ex).await;
    let (cconn, cchannel) = raw(&ex).await;
    cchannel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut requests = raw_queue(&schannel, &ex, "bench.req").await;
    let reply_key = format!("bench.reply.{}", uuid::Uuid::new_v4().simple());
    let mut replies = raw_queue(&cchannel, &ex, &reply_key).await;
    let responder = {
        let (channel, ex) = (schannel.clone(), ex.clone());
        tokio::spawn(async move {
            while let Some(Ok(d)) = requests.next().await {
                let to = d.properties.reply_to().clone().unwrap();
                let props = BasicProperties::default()
                    .with_correlation_id(d.properties.correlation_id().clone().unwrap());
                raw_publish(&channel, &ex, to.as_str(), &d.data, props).await;
            }
        })
    };
    let mut out = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let start = Instant::now();
        let id = i.to_string();
        let props = BasicProperties::default()
            .with_reply_to(reply_key.as_str().into())
            .with_correlation_id(id.as_str().into());
        // Mandatory under confirms, as busbar does to tell no_responders.
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = cchannel
            .basic_publish(ex.as_str().into(), "bench.req".into(), options, payload, props)
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(confirm.take_message().is_none());
        let reply = replies.next().await.unwrap().unwrap();
        assert_eq!(reply.properties.correlation_id().as_ref().unwrap().as_str(), id);
        out.push(start.elapsed());
    }
    cconn.close(200, "done".into()).await.unwrap();
    sconn.close(200, "done".into()).await.unwrap();
    responder.abort();
    out.sort();
    out
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e6
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let payload = Bytes::from(vec![b'x'; PAYLOAD]);
        let (mut pb, mut pr, mut sb, mut sr) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            pb.push(publish_busbar(&payload).await);
            pr.push(publish_raw(&payload).await);
            sb.push(pub_sub_busbar(&payload).await);
            sr.push(pub_sub_raw(&payload).await);
        }
        let (rb, rr) = (request_busbar(&payload).await, request_raw(&payload).await);
        let (pb, pr, sb, sr) = (median(pb), median(pr), median(sb), median(sr));
        println!("RabbitMQ, {PAYLOAD}-byte payloads, median of {ROUNDS} rounds");
        println!("{:<28}{:>14}{:>14}{:>10}", "", "busbar", "raw lapin", "ratio");
        println!(
            "{:<28}{:>14.0}{:>14.0}{:>10.2}",
            "publish (msg/s)",
            pb,
            pr,
            pb / pr
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
