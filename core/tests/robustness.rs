//! Hostile peers and hung brokers on NATS (issue 11 #6, #12, #13; issue 12 #5, #8, #10):
//! a raw-protocol peer (a few lines of socket code, no NATS client) sends what a well-behaved
//! client never would, and a private nats-server is stopped with SIGSTOP.
#![cfg(feature = "nats")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use busbar::{Backend, Config, ConnectionEvent, ConsumerConfig, EventBus, StreamConfig, Subscription};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[path = "support/nats_server.rs"]
mod nats_server;
use nats_server::NatsServer;

const WAIT: Duration = Duration::from_secs(5);

async fn start() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start).await.unwrap()
}

fn config(server: &NatsServer) -> Config {
    Config::default()
        .with_backend(Backend::Nats)
        .with_nats_url(server.url())
}

async fn bus(server: &NatsServer) -> Arc<dyn EventBus> {
    busbar::connect(config(server)).await.unwrap()
}

/// A private server, a bus subscribed to `pattern` (the subscription live at the server),
/// and a raw peer to write to it by hand.
async fn subscribed_to_a_raw_peer(pattern: &str) -> (NatsServer, Arc<dyn EventBus>, Subscription, RawPeer) {
    let server = start().await;
    let bus = bus(&server).await;
    let sub = bus.subscribe(pattern).await.unwrap();
    bus.flush().await.unwrap();
    let peer = RawPeer::connect(&server).await;
    (server, bus, sub, peer)
}

/// A NATS peer speaking the protocol by hand over a socket.
struct RawPeer {
    conn: BufReader<TcpStream>,
}

/// What a raw peer received: subject, reply subject, header block, payload.
struct RawMsg {
    reply: Option<String>,
    header: Vec<u8>,
}

impl RawPeer {
    async fn connect(server: &NatsServer) -> RawPeer {
        let socket = TcpStream::connect(("127.0.0.1", server.port())).await.unwrap();
        let mut peer = RawPeer {
            conn: BufReader::new(socket),
        };
        let info = peer.line().await;
        assert!(info.starts_with("INFO "), "{info}");
        peer.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n")
            .await;
        peer.sync().await;
        peer
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        tokio::time::timeout(WAIT, self.conn.read_line(&mut line))
            .await
            .expect("the server answers the raw peer")
            .unwrap();
        line.trim_end().to_owned()
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.conn.get_mut().write_all(bytes).await.unwrap();
    }

    /// `HPUB` bytes of a message with a hand-made header block.
    fn hpub(subject: &str, reply: Option<&str>, header: &[u8], payload: &[u8]) -> Vec<u8> {
        let reply = reply.map(|r| format!("{r} ")).unwrap_or_default();
        let mut out = format!(
            "HPUB {subject} {reply}{} {}\r\n",
            header.len(),
            header.len() + payload.len()
        )
        .into_bytes();
        out.extend_from_slice(header);
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    fn publish(subject: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = format!("PUB {subject} {}\r\n", payload.len()).into_bytes();
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\r\n");
        out
    }

    /// A round trip: everything sent before has been processed by the server.
    async fn sync(&mut self) {
        self.send(b"PING\r\n").await;
        loop {
            let line = self.line().await;
            assert!(
                !line.starts_with("-ERR"),
                "the server refused the raw peer: {line}"
            );
            if line == "PONG" {
                return;
            }
        }
    }

    /// The next `MSG`/`HMSG` delivered to this peer.
    async fn next_msg(&mut self) -> RawMsg {
        loop {
            let line = self.line().await;
            let args: Vec<&str> = line.split(' ').collect();
            let (reply, header_len, total) = match args[0] {
                "PING" => {
                    self.send(b"PONG\r\n").await;
                    continue;
                }
                "MSG" if args.len() == 5 => (Some(args[3]), 0, args[4]),
                "MSG" => (None, 0, args[3]),
                "HMSG" if args.len() == 6 => (Some(args[3]), args[4].parse().unwrap(), args[5]),
                "HMSG" => (None, args[3].parse().unwrap(), args[4]),
                _ => continue,
            };
            let reply = reply.map(str::to_owned);
            let total: usize = total.parse().unwrap();
            let mut body = vec![0; total + 2];
            self.conn.read_exact(&mut body).await.unwrap();
            return RawMsg {
                reply,
                header: body[..header_len].to_vec(),
            };
        }
    }
}

impl RawMsg {
    fn header(&self, name: &str) -> Option<String> {
        String::from_utf8_lossy(&self.header).lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Header blocks async-nats 0.51 could not parse: each reset the receiving connection.
const MALFORMED: &[&[u8]] = &[
    b"NATS/1.0\r\nno colon on this line\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-Peer: hostile\r\n\r\n",
    b"NATS/1.0 abc\r\n\r\n",
    b"NATS/1.0\r\nX-N\xffme: v\r\n\r\n",
    b"NATS/1.0\r\nX-Name: v\xff\xfe\r\n\r\n",
];

/// Asserts the connection reported no disconnection so far.
fn assert_never_disconnected(events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) {
    let seen: Vec<ConnectionEvent> = std::iter::from_fn(|| events.try_recv().ok()).collect();
    assert!(
        !seen.contains(&ConnectionEvent::Disconnected),
        "connection events: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_header_blocks_surface_as_decode_errors_and_keep_the_connection() {
    let (_server, bus, mut sub, mut peer) = subscribed_to_a_raw_peer("hostile.>").await;
    let mut events = bus.connection_events().unwrap();
    // One write: good and malformed messages interleaved, so anything a reset lost in
    // flight would be missing.
    let mut burst = Vec::new();
    for (i, header) in MALFORMED.iter().enumerate() {
        burst.extend(RawPeer::publish(&format!("hostile.ok.{i}"), b"fine"));
        burst.extend(RawPeer::hpub(
            &format!("hostile.bad.{i}"),
            None,
            header,
            b"poison",
        ));
    }
    // Subjects the server passes on but busbar (or async-nats 0.51) cannot read.
    burst.extend(b"PUB hostile.bad.\xff 6\r\npoison\r\n");
    burst.extend(RawPeer::hpub(
        "hostile.bad.\u{1}",
        None,
        b"NATS/1.0\r\n\r\n",
        b"poison",
    ));
    burst.extend(RawPeer::publish("hostile.ok.last", b"fine"));
    peer.send(&burst).await;
    peer.sync().await;
    let mut got = Vec::new();
    for _ in 0..2 * MALFORMED.len() + 3 {
        match tokio::time::timeout(WAIT, sub.next()).await {
            Ok(Some(Ok(m))) => got.push(m.subject().to_owned()),
            Ok(Some(Err(e))) => {
                assert_eq!(e.code(), "decode", "{e}");
                got.push(format!("decode: {e}"));
            }
            other => panic!("expected an item after {got:?}, got {other:?}"),
        }
    }
    for (i, _) in MALFORMED.iter().enumerate() {
        assert_eq!(got[2 * i], format!("hostile.ok.{i}"), "{got:#?}");
        assert!(got[2 * i + 1].contains(&format!("hostile.bad.{i}")), "{got:#?}");
    }
    for (i, _) in MALFORMED.iter().enumerate() {
        assert!(got[2 * i + 1].contains("malformed header block"), "{got:#?}");
    }
    let n = 2 * MALFORMED.len();
    assert!(got[n].contains("not valid UTF-8"), "{got:#?}");
    assert!(got[n + 1].contains("control character"), "{got:#?}");
    assert_eq!(got[n + 2], "hostile.ok.last");
    assert_eq!(bus.stats().undecodable, MALFORMED.len() as u64 + 2);
    assert_eq!(bus.stats().disconnects, 0);
    // The connection was never reset: it still carries traffic, and said nothing.
    bus.publish("hostile.ok.after", "x".into()).await.unwrap();
    let after = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(after.subject(), "hostile.ok.after");
    assert_never_disconnected(&mut events);
}

/// A well-formed block as other clients may write it: names in any case, spaces around
/// values, a value continued on a second line, a repeated name, values that are not ASCII.
/// busbar reads it as async-nats' `HeaderMap` parse always has (vendor/async-nats reads
/// the pairs off the block; the map is not built).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_header_block_is_read_as_it_always_was() {
    let (_server, bus, mut sub, mut peer) = subscribed_to_a_raw_peer("foreign.>").await;
    let block = "NATS/1.0\r\nCE-ID:   evt-7  \r\nce-type: com.example.thing\r\nX-Long: first\r\n second\r\nX-Rep: a\r\nX-Rep: b\r\nWard: Zürich 東京\r\n\r\n";
    peer.send(&RawPeer::hpub("foreign.one", None, block.as_bytes(), b"{}"))
        .await;
    peer.sync().await;
    let msg = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(msg.id(), "evt-7");
    assert_eq!(msg.event_type(), "com.example.thing");
    assert_eq!(msg.header("X-Long"), Some("first second"));
    assert_eq!(msg.header("X-Rep"), Some("a, b"));
    assert_eq!(msg.header("Ward"), Some("Zürich 東京"));
    assert_eq!(msg.data().as_ref(), b"{}");
    assert_eq!(bus.stats().undecodable, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_answered_with_a_malformed_header_block_fails_with_decode_not_timeout() {
    let server = start().await;
    let bus = bus(&server).await;
    let mut peer = RawPeer::connect(&server).await;
    peer.send(b"SUB svc.hostile 1\r\n").await;
    peer.sync().await;
    let requester = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = bus
                .request("svc.hostile", "q".into(), Duration::from_secs(10))
                .await;
            (result, started.elapsed())
        })
    };
    let request = peer.next_msg().await;
    let inbox = request.reply.clone().expect("a request has a reply subject");
    peer.send(&RawPeer::hpub(&inbox, None, MALFORMED[0], b"answer"))
        .await;
    peer.sync().await;
    let (result, took) = requester.await.unwrap();
    let err = result.unwrap_err();
    assert_eq!(err.code(), "decode", "{err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");

    // A raw responder that echoes the correlation id is answered as any other.
    let requester = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.request("svc.hostile", "q".into(), WAIT).await })
    };
    let request = peer.next_msg().await;
    let correlation = request.header("ce-correlationid").expect("requests carry one");
    let header = format!("NATS/1.0\r\nce-correlationid: {correlation}\r\n\r\n");
    peer.send(&RawPeer::hpub(
        request.reply.as_deref().unwrap(),
        None,
        header.as_bytes(),
        b"raw answer",
    ))
    .await;
    let reply = requester.await.unwrap().unwrap();
    assert_eq!(reply.data(), "raw answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_in_a_durable_stream_is_dead_lettered_not_redelivered() {
    let server = start().await;
    let bus = bus(&server).await;
    let mut events = bus.connection_events().unwrap();
    bus.declare_stream(StreamConfig::new("HOSTILE", ["hostile.durable.>"]))
        .await
        .unwrap();
    let consumer = ConsumerConfig::new("HOSTILE", "reader").ack_wait(Duration::from_millis(500));
    let mut durable = bus.durable_subscribe(consumer).await.unwrap();
    let mut peer = RawPeer::connect(&server).await;
    let mut burst = RawPeer::hpub("hostile.durable.bad", None, MALFORMED[1], b"poison");
    burst.extend(RawPeer::publish("hostile.durable.good", b"fine"));
    peer.send(&burst).await;
    peer.sync().await;

    let err = tokio::time::timeout(WAIT, durable.next())
        .await
        .expect("the malformed message is reported")
        .unwrap()
        .unwrap_err();
    assert_eq!(err.code(), "decode", "{err}");
    assert!(err.to_string().contains("dead-lettered"), "{err}");
    let good = tokio::time::timeout(WAIT, durable.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(good.subject(), "hostile.durable.good");
    good.ack().await.unwrap();

    let dlq = bus.stream_info("DLQ_DLQ").await.unwrap();
    assert_eq!(dlq.messages, 1, "stored once as a dead letter");
    let mut letters = bus
        .durable_subscribe(ConsumerConfig::new("DLQ_DLQ", "inspector"))
        .await
        .unwrap();
    let letter = tokio::time::timeout(WAIT, letters.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(letter.subject(), "dlq.hostile.durable.bad");
    assert_eq!(letter.data(), "poison");
    let reason = letter.header(busbar::durable::DLQ_REASON).unwrap();
    assert!(reason.starts_with("undecodable: "), "{reason}");

    // Not redelivered after ack_wait, and the connection never reset.
    let again = tokio::time::timeout(Duration::from_millis(1500), durable.next()).await;
    assert!(again.is_err(), "redelivered: {again:?}");
    assert_never_disconnected(&mut events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replies_and_statuses_are_refused_on_the_wire() {
    let server = start().await;
    let bus = bus(&server).await;
    let mut responder = bus.subscribe("svc.forged").await.unwrap();
    let mut peer = RawPeer::connect(&server).await;
    let requester = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.request("svc.forged", "q".into(), WAIT).await })
    };
    let request = tokio::time::timeout(WAIT, responder.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let inbox = request.reply_to().unwrap().to_owned();
    let (prefix, token) = inbox.rsplit_once('.').unwrap();
    assert_eq!(token.len(), 32, "a random token, not a counter: {inbox}");

    // A no-responders status is believed on the request's own subject only: forged on the
    // subjects a counter would have given, it changes nothing.
    let mut burst = Vec::new();
    for n in 0..4 {
        burst.extend(RawPeer::hpub(
            &format!("{prefix}.{n}"),
            None,
            b"NATS/1.0 503\r\n\r\n",
            b"",
        ));
    }
    // On the right subject: a header-less reply, a wrong correlation id, a status other
    // than 503, a fake flush marker. All are refused.
    burst.extend(RawPeer::publish(&inbox, b"forged: no headers"));
    burst.extend(RawPeer::hpub(
        &inbox,
        None,
        b"NATS/1.0\r\nce-correlationid: guess\r\n\r\n",
        b"forged",
    ));
    burst.extend(RawPeer::hpub(
        &inbox,
        None,
        b"NATS/1.0 408 Request Timeout\r\n\r\n",
        b"",
    ));
    burst.extend(RawPeer::hpub(
        &inbox,
        None,
        b"NATS/1.0\r\nBusbar-Flush: 1\r\n\r\n",
        b"",
    ));
    peer.send(&burst).await;
    peer.sync().await;
    let deadline = Instant::now() + WAIT;
    while bus.stats().rejected_replies < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(bus.stats().rejected_replies, 4);
    assert_eq!(
        bus.stats().late_replies,
        4,
        "the forged statuses found no request"
    );
    request.respond("real").await.unwrap();
    let reply = requester.await.unwrap().unwrap();
    assert_eq!(reply.data(), "real");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_carrying_the_flush_header_is_not_hidden() {
    let (_server, _bus, mut sub, mut peer) = subscribed_to_a_raw_peer("_INBOX.someone.>").await;
    peer.send(&RawPeer::hpub(
        "_INBOX.someone.x",
        None,
        b"NATS/1.0\r\nBusbar-Flush: 1\r\n\r\n",
        b"hidden?",
    ))
    .await;
    peer.sync().await;
    // It surfaces (busbar reserves the header name, so as a `decode` item naming it).
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("not skipped")
        .unwrap()
    {
        Ok(got) => assert_eq!(got.data(), "hidden?"),
        Err(e) => assert!(
            e.code() == "decode" && e.to_string().contains("_INBOX.someone.x"),
            "{e}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_are_never_printed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens on `port` any more.
    for url in [
        format!("nats://svc:hunter2@127.0.0.1:{port}"),
        format!("nats://s3cr3t-token@127.0.0.1:{port},nats://s3cr3t-token@127.0.0.1:{port}"),
        // Refused before connecting (two sets of credentials), and still not printed.
        format!("nats://s3cr3t-token@127.0.0.1:{port},nats://svc:hunter2@127.0.0.1:{port}"),
    ] {
        let config = Config::default().with_backend(Backend::Nats).with_nats_url(url);
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cr3t"), "{shown}");
        let err = match busbar::connect(config).await {
            Ok(_) => panic!("nothing listens there"),
            Err(e) => e,
        };
        assert!(matches!(err.code(), "backend" | "invalid_argument"), "{err}");
        for shown in [err.to_string(), format!("{err:?}")] {
            assert!(!shown.contains("hunter2") && !shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("<redacted>"), "{shown}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_inside_the_url_authenticate() {
    let server = tokio::task::spawn_blocking(|| NatsServer::start_with(&["--user", "svc", "--pass", "p@ss"]))
        .await
        .unwrap();
    let url = format!("nats://svc:p%40ss@127.0.0.1:{}", server.port());
    let bus = busbar::connect(Config::default().with_backend(Backend::Nats).with_nats_url(url))
        .await
        .expect("the URL's user and password authenticate");
    let mut sub = bus.subscribe("auth.check").await.unwrap();
    bus.publish("auth.check", "in".into()).await.unwrap();
    let got = tokio::time::timeout(WAIT, sub.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.data(), "in");
    let wrong = format!("nats://svc:nope@127.0.0.1:{}", server.port());
    let err = match busbar::connect(Config::default().with_backend(Backend::Nats).with_nats_url(wrong)).await
    {
        Ok(_) => panic!("a wrong password is refused"),
        Err(e) => e,
    };
    assert!(!err.to_string().contains("nope"), "{err}");
}

/// Runs `call`, failing the test instead of hanging if it does not end within `limit`.
async fn bounded<T>(
    limit: Duration,
    what: &str,
    call: impl std::future::Future<Output = T>,
) -> (T, Duration) {
    let started = Instant::now();
    match tokio::time::timeout(limit, call).await {
        Ok(out) => (out, started.elapsed()),
        Err(_) => panic!("{what} still running after {limit:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_server_bounds_publish_request_and_flush() {
    let server = start().await;
    let publish_timeout = Duration::from_millis(400);
    let bus = busbar::connect(config(&server).with_publish_timeout(publish_timeout))
        .await
        .unwrap();
    let mut responder = bus.subscribe("svc.hung").await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(m)) = responder.next().await {
            let _ = m.respond("pong").await;
        }
    });
    bus.request("svc.hung", "ping".into(), WAIT).await.unwrap();

    let hung = server.hang();
    let slack = Duration::from_millis(600);
    let request_timeout = Duration::from_secs(1);
    let (result, took) = bounded(
        Duration::from_secs(10),
        "a request",
        bus.request("svc.hung", "ping".into(), request_timeout),
    )
    .await;
    assert!(
        result.is_err() && took < request_timeout + slack,
        "{result:?} after {took:?}"
    );
    eprintln!("hung server: a request with a 1 s timeout ended in {took:?}");

    // Fill the socket and the client's buffers until a publish can no longer be handed
    // over: it fails within publish_timeout, it does not hang.
    let payload = bytes::Bytes::from(vec![b'x'; 4096]);
    let mut failed = None;
    for i in 0..200_000 {
        let (result, took) = bounded(
            Duration::from_secs(10),
            "a publish",
            bus.publish("flood", payload.clone()),
        )
        .await;
        assert!(took < publish_timeout + slack, "publish {i} took {took:?}");
        if let Err(e) = result {
            failed = Some((i, e));
            break;
        }
    }
    let (sent, err) = failed.expect("publishes to a hung server end failing");
    assert_eq!(err.code(), "backend", "after {sent} publishes: {err}");
    assert!(err.to_string().contains("publish_timeout_ms"), "{err}");
    eprintln!("hung server: publish {sent} was the first to fail: {err}");

    // With the connection full, the request's timeout covers sending too.
    let (result, took) = bounded(
        Duration::from_secs(10),
        "a request into a full connection",
        bus.request("svc.hung", "ping".into(), request_timeout),
    )
    .await;
    let err = result.unwrap_err();
    assert!(matches!(err.code(), "timeout" | "backend"), "{err}");
    assert!(took < request_timeout + slack, "request took {took:?}");
    eprintln!("hung server: a request into the full connection ended in {took:?}: {err}");
    // A timeout shorter than publish_timeout: the request's own timeout ends the sending.
    let short = Duration::from_millis(150);
    let (result, took) = bounded(
        Duration::from_secs(10),
        "a short request into a full connection",
        bus.request("svc.hung", "ping".into(), short),
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    assert!(took < short + slack, "request took {took:?}");
    eprintln!("hung server: a 150 ms request into the full connection ended in {took:?}");

    let (result, took) = bounded(Duration::from_secs(15), "a flush", bus.flush()).await;
    let err = result.unwrap_err();
    assert_eq!(err.code(), "backend", "{err}");
    assert!(took < publish_timeout + slack, "flush took {took:?}");
    eprintln!("hung server: flush ended in {took:?}");

    // Resumed, the same bus works again.
    drop(hung);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match bus.request("svc.hung", "ping".into(), WAIT).await {
            Ok(reply) => {
                assert_eq!(reply.data(), "pong");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the bus did not recover: {e}"),
        }
    }
}
