//! The Rust participant of the cross-language test (`tests/cross/run.py` drives it).
//!
//! ```text
//! busbar-cross publish URL SUBJECT DATA ID TYPE CONTENT_TYPE CORRELATION_ID CLASSIFICATION
//!              TRACEPARENT TRACESTATE [HEADER_NAME HEADER_VALUE]...
//! busbar-cross read URL COUNT   # prints "ready", then one JSON line per message received
//! busbar-cross serve URL NAME   # a service NAME 1.2.3, endpoint "echo" on svc.NAME.echo;
//!                               # prints "ready ID", serves until stdin closes
//! busbar-cross discover URL NAME  # prints {"ping": [...], "info": [...]} for services NAME
//! ```
//! (`tests/cross/discover.py` drives the last two.)

use std::io::Read;
use std::time::{Duration, UNIX_EPOCH};

use busbar::{Config, EventBus, Message, Payload, PublishOptions};
use serde_json::json;

#[tokio::main]
async fn main() -> busbar::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, url, rest @ ..] = args.as_slice() else {
        return Err(busbar::Error::InvalidArgument(
            "usage: busbar-cross publish|read URL ...".into(),
        ));
    };
    let mut config = Config::default();
    config.set("backend", "nats")?;
    config.set("nats_url", url)?;
    let bus = busbar::connect(config).await?;
    let outcome = match role.as_str() {
        "publish" => publish(bus.as_ref(), rest).await,
        "serve" => serve(bus.clone(), rest).await,
        "discover" => discover(bus.as_ref(), rest).await,
        _ => read(bus.as_ref(), rest).await,
    };
    bus.close().await?;
    outcome
}

async fn publish(bus: &dyn EventBus, args: &[String]) -> busbar::Result<()> {
    let [subject, data, id, event_type, content_type, correlation_id, classification, traceparent, tracestate, headers @ ..] =
        args
    else {
        return Err(busbar::Error::InvalidArgument(
            "publish needs nine attributes".into(),
        ));
    };
    let mut options = PublishOptions::new()
        .id(id)
        .event_type(event_type)
        .content_type(content_type)
        .correlation_id(correlation_id)
        .classification(classification)
        .traceparent(traceparent)
        .tracestate(tracestate);
    for pair in headers.chunks_exact(2) {
        options = options.header(&pair[0], &pair[1]);
    }
    bus.publish_with(subject, Payload::bytes(data.clone().into_bytes()), options)
        .await?;
    bus.flush().await
}

async fn read(bus: &dyn EventBus, args: &[String]) -> busbar::Result<()> {
    let count: usize = args.first().and_then(|c| c.parse().ok()).unwrap_or(1);
    let mut sub = bus.subscribe("cross.>").await?;
    bus.flush().await?;
    println!("ready");
    let mut got = 0;
    while let Some(item) = sub.next().await {
        println!("{}", record(&item?));
        got += 1;
        if got == count {
            break;
        }
    }
    Ok(())
}

fn record(msg: &Message) -> serde_json::Value {
    let time_ms = msg.time().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    json!({
        "subject": msg.subject(),
        "data": String::from_utf8_lossy(msg.data()),
        "id": msg.id(),
        "type": msg.event_type(),
        "content_type": msg.content_type(),
        "correlation_id": msg.correlation_id(),
        "classification": msg.classification(),
        "traceparent": msg.traceparent(),
        "tracestate": msg.tracestate(),
        "headers": msg.headers(),
        "keyid": msg.keyid(),
        "time_ms": time_ms,
    })
}

async fn serve(bus: std::sync::Arc<dyn EventBus>, args: &[String]) -> busbar::Result<()> {
    let name = args.first().map_or("cross", String::as_str);
    let config = busbar::service::ServiceConfig::new(name, "1.2.3").description("the cross-language service");
    let service = busbar::service::Service::start(bus.clone(), config).await?;
    service
        .endpoint("echo", &format!("svc.{name}.echo"), |request| async move {
            Ok::<_, busbar::service::ServiceError>(request.data().clone())
        })
        .await?;
    bus.flush().await?;
    println!("ready {}", service.id());
    // Serves until the driver closes stdin.
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
        .await
        .ok();
    service.stop().await;
    Ok(())
}

async fn discover(bus: &dyn EventBus, args: &[String]) -> busbar::Result<()> {
    use busbar::service::{discover, Verb};
    let name = args.first().map(String::as_str);
    let wait = Duration::from_millis(500);
    let ping = discover(bus, Verb::Ping, name, wait).await?;
    let info = discover(bus, Verb::Info, name, wait).await?;
    println!("{}", json!({ "ping": ping, "info": info }));
    Ok(())
}
