//! busbar quickstart: wildcards, a queue group and a request/reply round trip.
//!
//! Runs on the embedded in-memory bus by default. The same program talks to a NATS
//! server when the environment says so (BUSBAR_BACKEND=nats BUSBAR_NATS_URL=...).
//!
//!     cargo run -p busbar-sdk --example quickstart

use std::time::Duration;

use busbar::{Config, Message, Subscription};

#[tokio::main]
async fn main() -> Result<(), busbar::Error> {
    let config = Config::from_env()?;
    let bus = busbar::connect(config).await?;
    println!("connected to the {} bus\n", bus.backend());

    // 1. Subjects are dot-separated tokens. `*` matches one token, `>` one or more.
    println!("1. wildcards");
    let mut every_order = bus.subscribe("orders.>").await?;
    let mut eu_orders = bus.subscribe("orders.eu.*").await?;
    for subject in ["orders.eu.created", "orders.us.created", "orders.eu.paid.late"] {
        bus.publish(subject, "{\"qty\":1}".into()).await?;
        println!("   published {subject}");
    }
    bus.flush().await?;
    println!(
        "   'orders.>'    got {:?}",
        subjects(drain(&mut every_order, 3).await?)
    );
    println!(
        "   'orders.eu.*' got {:?}",
        subjects(drain(&mut eu_orders, 1).await?)
    );
    println!(
        "   ('orders.eu.*' wants exactly one token after 'orders.eu', so it skips orders.eu.paid.late)\n"
    );

    // 2. A queue group shares the work: each message goes to one member.
    println!("2. queue group 'workers' with two members");
    let mut worker_a = bus.queue_subscribe("jobs.resize", "workers").await?;
    let mut worker_b = bus.queue_subscribe("jobs.resize", "workers").await?;
    for n in 1..=4 {
        bus.publish("jobs.resize", format!("image-{n}").into()).await?;
    }
    bus.flush().await?;
    // Each job goes to one member; which one is the bus's choice (in turn on the
    // in-memory bus, at random on NATS). Collect from both until all four are in.
    let (mut got_a, mut got_b) = (Vec::new(), Vec::new());
    while got_a.len() + got_b.len() < 4 {
        let (who, item) = tokio::select! {
            item = worker_a.next() => (&mut got_a, item),
            item = worker_b.next() => (&mut got_b, item),
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                return Err(busbar::Error::Timeout { subject: "jobs.resize".into(), timeout: Duration::from_secs(2) })
            }
        };
        if let Some(msg) = item {
            who.push(String::from_utf8_lossy(msg?.data()).into_owned());
        }
    }
    println!("   worker a took {got_a:?}");
    println!("   worker b took {got_b:?}");
    println!("   four jobs, each done once\n");

    // 3. Request/reply: the request carries an inbox and a correlation id; the reply echoes it.
    println!("3. request/reply");
    let responder = bus.subscribe("time.now").await?;
    let server = tokio::spawn(busbar::serve(responder, |request| async move {
        let asked = String::from_utf8_lossy(request.data()).into_owned();
        format!("it is tea time (you asked {asked:?})").into()
    }));
    let request = bus.message("time.now").data("what time is it?").build()?;
    let request_id = request.id().to_owned();
    let reply = bus.request_message(request, Duration::from_secs(2)).await?;
    println!("   reply: {}", String::from_utf8_lossy(reply.data()));
    println!("   request id            {request_id}");
    println!(
        "   reply correlation id  {}",
        reply.correlation_id().unwrap_or("-")
    );

    // Nobody listens on `time.later`: the request fails at once (no_responders) instead of
    // waiting; on Kafka, which cannot tell who listens, it fails after its timeout.
    match bus
        .request("time.later", "hello?".into(), Duration::from_secs(2))
        .await
    {
        Err(e) => println!("   request to time.later failed: [{}] {e}", e.code()),
        Ok(_) => println!("   unexpected reply from time.later"),
    }

    // Bad input gets a clear error, never a silent drop.
    if let Err(e) = bus.publish("orders..eu", "x".into()).await {
        println!("\n4. bad input\n   publish to \"orders..eu\": [{}] {e}", e.code());
    }

    bus.close().await?;
    let answered = server.await.expect("responder task")?;
    let stats = bus.stats();
    println!(
        "\nclosed: {} published, {} delivered, {} request(s) answered",
        stats.published, stats.delivered, answered
    );
    Ok(())
}

fn subjects(messages: Vec<Message>) -> Vec<String> {
    messages.iter().map(|m| m.subject().to_owned()).collect()
}

/// Takes `n` messages from `sub`, waiting at most two seconds for each.
async fn drain(sub: &mut Subscription, n: usize) -> Result<Vec<Message>, busbar::Error> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(2), sub.next()).await;
        let msg = match next {
            Ok(Some(item)) => item?,
            Ok(None) => break,
            Err(_) => {
                return Err(busbar::Error::Timeout {
                    subject: sub.pattern().to_owned(),
                    timeout: Duration::from_secs(2),
                })
            }
        };
        out.push(msg);
    }
    Ok(out)
}
