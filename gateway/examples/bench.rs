//! Gateway against library path, in one run on the in-memory bus:
//! - publish throughput: HTTP POST /v1/publish over keep-alive connections vs
//!   `PolicyBus::publish`;
//! - fan-out: messages/s delivered to 100 SSE clients vs 100 library subscribers;
//! - request latency: POST /v1/request vs `PolicyBus::request_as` (mean and p99).
//!
//! `cargo run --release -p busbar-gateway --example bench [messages]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::policy::{Action, Policy, PolicyBus, Principal};
use busbar::{Bytes, EventBus};
use busbar_gateway::auth::{sha256_hex, OpaqueToken, TokensFile};
use busbar_gateway::{Authenticator, Gateway, Options};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const TOKEN: &str = "bench-token-0123456789";
const PAYLOAD: &str =
    r#"{"ssn":"123-45-6789","diagnosis":"flu","amount":12,"note":"a claim of about a hundred bytes"}"#;
const CLIENTS: usize = 100;
const CONNECTIONS: usize = 8;

/// A keep-alive HTTP/1.1 connection.
struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        Conn(BufReader::new(s))
    }

    async fn post(&mut self, path: &str, body: &str) -> u16 {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.0.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).await.unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut length = 0;
        loop {
            line.clear();
            self.0.read_line(&mut line).await.unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        self.0.read_exact(&mut body).await.unwrap();
        status
    }
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let messages: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(20_000);
    let config = busbar::Config::default()
        .with_backpressure(busbar::Backpressure::Lag)
        .with_subscription_capacity(1 << 20);
    let policy = Policy::new()
        .class("pii")
        .class("phi")
        .field("/ssn", "pii", Action::Partial(4))
        .field("/diagnosis", "phi", Action::Redact)
        .grant("billing", ["pii"]);
    let bus = PolicyBus::builder(busbar::connect(config).await.unwrap())
        .policy(policy)
        .build()
        .unwrap();
    let tokens = TokensFile {
        tokens: vec![OpaqueToken {
            sha256: sha256_hex(TOKEN.as_bytes()),
            principal: "bench".into(),
            roles: vec!["billing".into()],
        }],
        jwt: None,
    };
    let gw = Gateway::new(Options {
        bus,
        auth: Authenticator::from_file(tokens, 0.0).unwrap(),
        max_payload: 1 << 20,
        max_streams: 1000,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(busbar_gateway::serve(listener, gw.clone()));
    let principal = Principal::new("bench", ["billing"]);
    let payload = Bytes::from_static(PAYLOAD.as_bytes());
    println!(
        "{messages} messages of {} bytes, in-memory bus with a policy (billing view masked)",
        PAYLOAD.len()
    );

    // Publish: library.
    let mut sub = gw.bus.subscribe_as(&principal, "lib.pub").await.unwrap();
    let t = Instant::now();
    for _ in 0..messages {
        gw.bus.publish("lib.pub", payload.clone()).await.unwrap();
    }
    let lib_pub = t.elapsed();
    for _ in 0..messages {
        sub.next().await.unwrap().unwrap();
    }
    drop(sub);
    // Publish: gateway, CONNECTIONS keep-alive connections.
    let mut sub = gw.bus.subscribe_as(&principal, "gw.pub").await.unwrap();
    let t = Instant::now();
    let per = messages / CONNECTIONS as u64;
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        tasks.push(tokio::spawn(async move {
            let mut c = Conn::open(addr).await;
            for _ in 0..per {
                assert_eq!(c.post("/v1/publish/gw.pub", PAYLOAD).await, 202);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let gw_pub = t.elapsed();
    for _ in 0..per * CONNECTIONS as u64 {
        sub.next().await.unwrap().unwrap();
    }
    drop(sub);
    println!(
        "publish: library {:.0} msg/s, gateway HTTP ({CONNECTIONS} keep-alive connections) {:.0} msg/s",
        rate(messages, lib_pub),
        rate(per * CONNECTIONS as u64, gw_pub)
    );

    // Fan-out: library subscribers.
    let fan = (messages / 10).max(1);
    let mut subs = Vec::new();
    for _ in 0..CLIENTS {
        subs.push(gw.bus.subscribe_as(&principal, "lib.fan").await.unwrap());
    }
    let t = Instant::now();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                for _ in 0..fan {
                    s.next().await.unwrap().unwrap();
                }
            })
        })
        .collect();
    for _ in 0..fan {
        gw.bus.publish("lib.fan", payload.clone()).await.unwrap();
    }
    for r in readers {
        r.await.unwrap();
    }
    let lib_fan = t.elapsed();
    // Fan-out: SSE clients.
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET /v1/subscribe/gw.fan HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
        let mut head = [0u8; 1];
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut head).await.unwrap();
            seen.push(head[0]);
        }
        assert!(seen.starts_with(b"HTTP/1.1 200"));
        clients.push(s);
    }
    let t = Instant::now();
    let readers: Vec<_> = clients
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let needle = b"event: message";
                let (mut count, mut lagged) = (0u64, 0u64);
                let mut buf = vec![0u8; 64 * 1024];
                let mut carry: Vec<u8> = Vec::new();
                while count < fan {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "stream ended");
                    carry.extend_from_slice(&buf[..n]);
                    count += carry.windows(needle.len()).filter(|w| w == needle).count() as u64;
                    lagged += carry.windows(13).filter(|w| w == b"event: lagged").count() as u64;
                    let keep = carry.len().saturating_sub(needle.len() - 1);
                    carry.drain(..keep);
                }
                lagged
            })
        })
        .collect();
    for _ in 0..fan {
        gw.bus.publish("gw.fan", payload.clone()).await.unwrap();
    }
    let mut lag_notices = 0;
    for r in readers {
        lag_notices += r.await.unwrap();
    }
    let gw_fan = t.elapsed();
    println!(
        "fan-out of {fan} messages to {CLIENTS}: library {:.0} deliveries/s, SSE {:.0} deliveries/s ({lag_notices} lag notices)",
        rate(fan * CLIENTS as u64, lib_fan),
        rate(fan * CLIENTS as u64, gw_fan)
    );

    // Request latency.
    let responder = gw.bus.inner().subscribe("svc.echo").await.unwrap();
    tokio::spawn(busbar::serve(responder, |m| async move { m.data().clone() }));
    let n = (messages / 20).max(10) as usize;
    let mut lib = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let m = gw.bus.message("svc.echo").data(payload.clone()).build().unwrap();
        gw.bus
            .request_as(&principal, m, Duration::from_secs(5))
            .await
            .unwrap();
        lib.push(t.elapsed());
    }
    let mut c = Conn::open(addr).await;
    let mut http = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        assert_eq!(c.post("/v1/request/svc.echo?timeout_ms=5000", PAYLOAD).await, 200);
        http.push(t.elapsed());
    }
    let stats = |v: &mut Vec<Duration>| {
        v.sort();
        let mean = v.iter().sum::<Duration>() / v.len() as u32;
        (mean, v[v.len() * 99 / 100])
    };
    let (lm, lp) = stats(&mut lib);
    let (hm, hp) = stats(&mut http);
    println!(
        "request ({n}): library mean {:.0} µs p99 {:.0} µs, gateway mean {:.0} µs p99 {:.0} µs, added {:.0} µs mean",
        lm.as_secs_f64() * 1e6,
        lp.as_secs_f64() * 1e6,
        hm.as_secs_f64() * 1e6,
        hp.as_secs_f64() * 1e6,
        (hm.as_secs_f64() - lm.as_secs_f64()) * 1e6
    );
    let _ = Arc::strong_count(&gw);
}
