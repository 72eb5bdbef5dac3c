//! The gateway over real sockets: auth, publish, request, SSE, WebSocket, masking per
//! token, restricted subjects, limits and hostile input.

mod support;

use std::time::Duration;

use busbar::EventBus;
use busbar_gateway::auth::JwtSettings;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use support::*;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as Frame;

const CLAIM: &str = r#"{"ssn":"123-45-6789","diagnosis":"flu","amount":12}"#;
const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn without_a_token_every_api_call_is_401_but_health_and_openapi_answer() {
    let gw = start(Setup::default()).await;
    let a = gw.addr;
    for (method, path) in [
        ("POST", "/v1/publish/claims.new"),
        ("POST", "/v1/request/claims.new"),
        ("GET", "/v1/subscribe/claims.%3E"),
        ("GET", "/v1/ws"),
        ("GET", "/v1/admin/streams"),
        ("POST", "/v1/admin/dlq/1/redrive"),
        ("GET", "/v1/admin/audit/verify"),
    ] {
        let r = call(a, method, path, None, &[], b"{}").await;
        assert_eq!(r.status, 401, "{method} {path}");
        assert_eq!(r.code(), "unauthorized");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let r = call(a, method, path, Some("not-a-known-token"), &[], b"{}").await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (401, "unauthorized"),
            "{method} {path}"
        );
    }
    // A wrong scheme, or a token that is too long to be hashed, is refused the same way.
    let r = call(
        a,
        "POST",
        "/v1/publish/a",
        None,
        &[("Authorization", &format!("Basic {BILLING}"))],
        b"",
    )
    .await;
    assert_eq!(r.code(), "unauthorized");
    let long = "x".repeat(20_000);
    let r = call(a, "POST", "/v1/publish/a", Some(&long), &[], b"").await;
    assert_eq!(r.code(), "unauthorized");
    for path in ["/healthz", "/readyz", "/v1/openapi.json"] {
        let r = call(a, "GET", path, None, &[], b"").await;
        assert_eq!(r.status, 200, "{path}");
    }
    let api = call(a, "GET", "/v1/openapi.json", None, &[], b"").await.json();
    for path in [
        "/v1/publish/{subject}",
        "/v1/request/{subject}",
        "/v1/subscribe/{pattern}",
        "/v1/ws",
        "/v1/admin/dlq",
    ] {
        assert!(api["paths"][path].is_object(), "openapi lacks {path}");
    }
    let r = call(a, "GET", "/nowhere", None, &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (404, "not_found"));
    let r = call(a, "DELETE", "/v1/publish/a", Some(BILLING), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn a_curl_publish_reaches_each_subscriber_masked_for_its_principal() {
    let gw = start(Setup::default()).await;
    let bus = &gw.gw.bus;
    let billing = busbar::policy::Principal::new("billing-svc", ["billing"]);
    let clinician = busbar::policy::Principal::new("dr-who", ["clinician"]);
    let nobody = busbar::policy::Principal::new("web", ["web"]);
    let mut b = bus.subscribe_as(&billing, "claims.>").await.unwrap();
    let mut c = bus.subscribe_as(&clinician, "claims.>").await.unwrap();
    let mut n = bus.subscribe_as(&nobody, "claims.>").await.unwrap();
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/claims.new",
        Some(BILLING),
        &[
            ("Content-Type", "application/json"),
            ("ce-type", "claim.filed"),
            ("ce-correlationid", "c-1"),
            ("ce-source", "spoofed"),
        ],
        CLAIM.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", r);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let got = |m: busbar::Message| serde_json::from_slice::<Value>(m.data()).unwrap();
    let m = b.next().await.unwrap().unwrap();
    assert_eq!(
        (m.id(), m.event_type(), m.correlation_id()),
        (id.as_str(), "claim.filed", Some("c-1"))
    );
    // The source is the token's principal, whatever the client claims.
    assert_eq!(m.source(), "billing-svc");
    assert_eq!(
        got(m),
        json!({"ssn":"123-45-6789","diagnosis":"[REDACTED]","amount":12})
    );
    assert_eq!(
        got(c.next().await.unwrap().unwrap()),
        json!({"ssn":"123-45-6789","diagnosis":"flu","amount":12})
    );
    assert_eq!(
        got(n.next().await.unwrap().unwrap()),
        json!({"ssn":"*******6789","diagnosis":"[REDACTED]","amount":12})
    );

    // Structured mode: the CloudEvent is the body.
    let event = json!({"specversion":"1.0","id":"ev-1","type":"claim.filed","source":"x","classification":"pii",
        "datacontenttype":"application/json","data":{"ssn":"999-99-1234"}, "traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"});
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/claims.s",
        Some(CLINICIAN),
        &[("Content-Type", "application/cloudevents+json")],
        event.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202, "{:?}", String::from_utf8_lossy(&r.body));
    let m = n.next().await.unwrap().unwrap();
    assert_eq!(
        (m.id(), m.source(), m.classification()),
        ("ev-1", "dr-who", Some("pii"))
    );
    assert!(m.traceparent().unwrap().starts_with("00-4bf9"));
    assert_eq!(got(m), json!({"ssn":"*******1234"}));
    assert_eq!(
        got(b.next().await.unwrap().unwrap()),
        json!({"ssn":"999-99-1234"})
    );
    // Bytes that are not JSON pass as they are, with their content type.
    // Bytes that are not JSON pass the gateway as they are, with their content type; under
    // field rules they cannot be checked, so policy subscribers do not get them (withheld,
    // counted: fail closed), while the bus below carries them unchanged.
    let mut raw = bus.inner().subscribe("claims.raw").await.unwrap();
    let withheld = bus.policy_stats().withheld;
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/claims.raw",
        Some(BILLING),
        &[("Content-Type", "application/octet-stream")],
        &[0, 159, 255],
    )
    .await;
    assert_eq!(r.status, 202);
    let m = tokio::time::timeout(WAIT, raw.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.data().as_ref(), m.content_type()),
        (&[0u8, 159, 255][..], Some("application/octet-stream"))
    );
    // Billing's subscription evaluates it as it polls, and withholds it.
    assert!(tokio::time::timeout(Duration::from_millis(300), b.next())
        .await
        .is_err());
    assert_eq!(bus.policy_stats().withheld, withheld + 1);
}

#[tokio::test]
async fn sse_clients_receive_the_masked_view_of_their_token() {
    let gw = start(Setup::default()).await;
    let mut billing = Sse::open(gw.addr, "/v1/subscribe/claims.%3E", Some(BILLING), &[]).await;
    let mut clinician = Sse::open(
        gw.addr,
        &format!("/v1/subscribe/claims.*?access_token={CLINICIAN}"),
        None,
        &[],
    )
    .await;
    assert_eq!((billing.status, clinician.status), (200, 200));
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/claims.new",
        Some(ADMIN),
        &[("Content-Type", "application/json")],
        CLAIM.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 202);
    let id = r.json()["id"].clone();
    let e = billing.next(WAIT).await.expect("billing gets the claim");
    assert_eq!((e.kind.as_str(), e.id.as_deref()), ("message", id.as_str()));
    assert_eq!(e.data["subject"], "claims.new");
    assert_eq!(e.data["source"], "ops");
    assert_eq!(
        e.data["data"],
        json!({"ssn":"123-45-6789","diagnosis":"[REDACTED]","amount":12})
    );
    let e = clinician.next(WAIT).await.expect("the clinician gets the claim");
    assert_eq!(
        e.data["data"],
        json!({"ssn":"123-45-6789","diagnosis":"flu","amount":12})
    );
}

#[tokio::test]
async fn an_sse_client_too_slow_is_told_how_many_messages_it_missed() {
    let gw = start(Setup {
        capacity: 8,
        ..Setup::default()
    })
    .await;
    let mut slow = Sse::open(gw.addr, "/v1/subscribe/load.%3E", Some(BILLING), &[]).await;
    assert_eq!(slow.status, 200);
    let payload = bytes_of(json!({"pad": "x".repeat(4000)}));
    let sent = 3000u64;
    for _ in 0..sent {
        gw.gw.bus.publish("load.x", payload.clone()).await.unwrap();
    }
    let (mut received, mut missed, mut notices) = (0u64, 0u64, 0);
    while received + missed < sent {
        let e = slow
            .next(WAIT)
            .await
            .expect("every message is received or reported missed");
        match e.kind.as_str() {
            "message" => received += 1,
            "lagged" => {
                assert_eq!(e.data["code"], "lagged");
                missed += e.data["missed"].as_u64().unwrap();
                notices += 1;
            }
            other => panic!("unexpected {other}: {:?}", e.data),
        }
    }
    assert_eq!(received + missed, sent);
    assert!(
        notices > 0 && missed > 0,
        "3000 × 4 KB outran an 8-message buffer and the socket"
    );
}

fn bytes_of(v: Value) -> busbar::Bytes {
    v.to_string().into_bytes().into()
}

async fn ws(
    addr: std::net::SocketAddr,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn frame<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let f = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Frame::Text(t) = f {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

#[tokio::test]
async fn websocket_clients_subscribe_publish_request_and_see_their_masked_view() {
    let gw = start(Setup::default()).await;
    let mut billing = ws(gw.addr, BILLING).await;
    let mut clinician = ws(gw.addr, CLINICIAN).await;
    billing
        .send(Frame::text(
            r#"{"op":"subscribe","id":"s1","pattern":"claims.>"}"#,
        ))
        .await
        .unwrap();
    assert_eq!(frame(&mut billing).await, json!({"op":"subscribed","id":"s1"}));
    clinician
        .send(Frame::text(r#"{"op":"subscribe","id":"c","pattern":"claims.*"}"#))
        .await
        .unwrap();
    assert_eq!(frame(&mut clinician).await["op"], "subscribed");
    // The clinician publishes over its WebSocket; each sees its own view.
    clinician
        .send(Frame::text(json!({"op":"publish","id":"p1","subject":"claims.new","data":serde_json::from_str::<Value>(CLAIM).unwrap()}).to_string()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(frame(&mut clinician).await);
    }
    assert!(
        seen.iter().any(|f| f["op"] == "published" && f["id"] == "p1"),
        "{seen:?}"
    );
    let m = seen.iter().find(|f| f["op"] == "message").unwrap();
    assert_eq!(m["message"]["data"]["diagnosis"], "flu");
    let m = frame(&mut billing).await;
    assert_eq!(
        (m["op"].as_str(), m["id"].as_str()),
        (Some("message"), Some("s1"))
    );
    assert_eq!(
        m["message"]["data"],
        json!({"ssn":"123-45-6789","diagnosis":"[REDACTED]","amount":12})
    );
    assert_eq!(m["message"]["source"], "dr-who");

    // Request: a responder on the bus answers; the reply is masked for the requester.
    let responder = gw.gw.bus.inner().subscribe("svc.lookup").await.unwrap();
    tokio::spawn(busbar::serve(responder, |_m| async {
        busbar::Bytes::from_static(br#"{"diagnosis":"flu"}"#)
    }));
    billing
        .send(Frame::text(
            r#"{"op":"request","id":"r1","subject":"svc.lookup","data":{},"timeout_ms":2000}"#,
        ))
        .await
        .unwrap();
    let reply = frame(&mut billing).await;
    assert_eq!(
        (reply["op"].as_str(), reply["id"].as_str()),
        (Some("reply"), Some("r1")),
        "{reply}"
    );
    assert_eq!(reply["message"]["data"], json!({"diagnosis":"[REDACTED]"}));

    // Bad frames answer an error frame with a code; the connection stays usable.
    for (bad, code) in [
        ("{not json", "decode"),
        (r#"{"op":"fly"}"#, "invalid_argument"),
        (r#"{"op":"subscribe","id":"s2","pattern":"psych.>"}"#, "forbidden"),
        (
            r#"{"op":"subscribe","id":"s3","pattern":"a..b"}"#,
            "invalid_subject",
        ),
        (
            r#"{"op":"subscribe","id":"s1","pattern":"x"}"#,
            "invalid_argument",
        ),
        (r#"{"op":"publish","subject":"a.*","data":1}"#, "invalid_subject"),
        (
            r#"{"op":"request","id":"r2","subject":"psych.notes","data":1}"#,
            "forbidden",
        ),
        (
            r#"{"op":"request","id":"r3","subject":"nobody.home","data":1}"#,
            "no_responders",
        ),
        (r#"{"op":"unsubscribe","id":"zz"}"#, "not_found"),
    ] {
        billing.send(Frame::text(bad)).await.unwrap();
        let f = frame(&mut billing).await;
        assert_eq!(
            (f["op"].as_str(), f["code"].as_str()),
            (Some("error"), Some(code)),
            "{bad} → {f}"
        );
    }
    billing
        .send(Frame::text(r#"{"op":"unsubscribe","id":"s1"}"#))
        .await
        .unwrap();
    assert_eq!(frame(&mut billing).await, json!({"op":"unsubscribed","id":"s1"}));
}

#[tokio::test]
async fn restricted_subjects_are_403_with_the_forbidden_code() {
    let gw = start(Setup::default()).await;
    let sse = Sse::open(gw.addr, "/v1/subscribe/psych.%3E", Some(BILLING), &[]).await;
    assert_eq!(sse.status, 403);
    assert_eq!(sse.response.as_ref().unwrap().code(), "forbidden");
    // Overlapping wildcards too, and requests.
    let sse = Sse::open(gw.addr, "/v1/subscribe/%3E", Some(BILLING), &[]).await;
    assert_eq!(sse.response.unwrap().code(), "forbidden");
    let r = call(
        gw.addr,
        "POST",
        "/v1/request/psych.notes",
        Some(BILLING),
        &[],
        b"{}",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
    // A clinician may.
    let sse = Sse::open(gw.addr, "/v1/subscribe/psych.%3E", Some(CLINICIAN), &[]).await;
    assert_eq!(sse.status, 200);
    // Admin endpoints need the admin role.
    let r = call(gw.addr, "GET", "/v1/admin/streams", Some(CLINICIAN), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (403, "forbidden"));
}

#[tokio::test]
async fn requests_answer_replies_timeouts_and_no_responders_with_codes() {
    let gw = start(Setup::default()).await;
    let responder = gw.gw.bus.inner().subscribe("svc.echo").await.unwrap();
    tokio::spawn(busbar::serve(responder, |m| async move { m.data().clone() }));
    let r = call(
        gw.addr,
        "POST",
        "/v1/request/svc.echo?timeout_ms=2000",
        Some(BILLING),
        &[("Content-Type", "application/json")],
        CLAIM.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{:?}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["diagnosis"], "[REDACTED]");
    let r = call(
        gw.addr,
        "POST",
        "/v1/request/nobody.home",
        Some(BILLING),
        &[],
        b"x",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (503, "no_responders"));
    let _silent = gw.gw.bus.inner().subscribe("svc.silent").await.unwrap();
    let r = call(
        gw.addr,
        "POST",
        "/v1/request/svc.silent?timeout_ms=100",
        Some(BILLING),
        &[],
        b"x",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (504, "timeout"));
    for bad in ["abc", "0", "-1", "60001", "1e3", "99999999999999999999999"] {
        let r = call(
            gw.addr,
            "POST",
            &format!("/v1/request/svc.echo?timeout_ms={bad}"),
            Some(BILLING),
            &[],
            b"x",
        )
        .await;
        assert_eq!(
            (r.status, r.code().as_str()),
            (400, "invalid_argument"),
            "timeout_ms={bad}"
        );
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_with_the_payload_too_large_code() {
    let gw = start(Setup {
        max_payload: 1024,
        ..Setup::default()
    })
    .await;
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/a.b",
        Some(BILLING),
        &[],
        &[b'x'; 1024],
    )
    .await;
    assert_eq!(r.status, 202);
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/a.b",
        Some(BILLING),
        &[],
        &[b'x'; 1025],
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    // A chunked body with no length is cut at the limit too.
    let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chunk = "x".repeat(600);
    let req = format!(
        "POST /v1/publish/a.b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BILLING}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n258\r\n{chunk}\r\n258\r\n{chunk}\r\n0\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let r = parse(&raw);
    assert_eq!((r.status, r.code().as_str()), (413, "payload_too_large"));
    // A structured event whose data is over the limit once decoded is refused by the bus.
    let big = json!({"data_base64": base64_of(&[7u8; 1000])});
    let r = call(
        gw.addr,
        "POST",
        "/v1/publish/a.b",
        Some(BILLING),
        &[("Content-Type", "application/cloudevents+json")],
        big.to_string().as_bytes(),
    )
    .await;
    assert_eq!(r.status, 413, "{:?}", String::from_utf8_lossy(&r.body));
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn hostile_input_gets_a_coded_error_and_the_gateway_keeps_serving() {
    let gw = start(Setup::default()).await;
    let a = gw.addr;
    let huge_subject = vec!["t"; 10_000].join(".");
    let r = call(
        a,
        "POST",
        &format!("/v1/publish/{huge_subject}"),
        Some(BILLING),
        &[],
        b"x",
    )
    .await;
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_subject"));
    let sse = Sse::open(a, &format!("/v1/subscribe/{huge_subject}"), Some(BILLING), &[]).await;
    assert_eq!(sse.response.unwrap().code(), "invalid_subject");
    for path in [
        "/v1/publish/a%FFb",
        "/v1/publish/a%20b",
        "/v1/publish/a.%3E",
        "/v1/publish/.a",
        "/v1/publish/a%0Db",
    ] {
        let r = call(a, "POST", path, Some(BILLING), &[], b"x").await;
        assert_eq!((r.status, r.code().as_str()), (400, "invalid_subject"), "{path}");
    }
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [u8], &'a str);
    let cases: Vec<Case> = vec![
        (&[("Content-Type", "application/json")], b"{\"ssn\": ", "decode"),
        (&[("Content-Type", "application/json")], b"\xff\xfe", "decode"),
        (
            &[("Content-Type", "application/cloudevents+json")],
            b"[1,2]",
            "decode",
        ),
        (
            &[("Content-Type", "application/cloudevents+json")],
            br#"{"specversion":"0.3"}"#,
            "invalid_argument",
        ),
        (
            &[("Content-Type", "application/cloudevents+json")],
            br#"{"time":"yesterday"}"#,
            "invalid_argument",
        ),
        (
            &[("Content-Type", "application/cloudevents+json")],
            br#"{"id":7}"#,
            "invalid_argument",
        ),
        (
            &[("Content-Type", "application/cloudevents+json")],
            br#"{"data_base64":"***"}"#,
            "invalid_argument",
        ),
        (
            &[("Content-Type", "application/cloudevents+json")],
            br#"{"headers":{"busbar-x":"1"}}"#,
            "invalid_argument",
        ),
        (&[("ce-specversion", "2.0")], b"x", "invalid_argument"),
        (&[("ce-time", "not a time")], b"x", "invalid_argument"),
        (&[("ce-busbar-dlq-reason", "forged")], b"x", "invalid_argument"),
    ];
    for (headers, body, code) in cases {
        let r = call(a, "POST", "/v1/publish/a.b", Some(BILLING), headers, body).await;
        assert_eq!(
            (r.status / 100, r.code().as_str()),
            (4, code),
            "{headers:?} {:?}",
            String::from_utf8_lossy(body)
        );
    }
    // A 1 MB header: refused by the HTTP layer (431) or the connection closed, never a crash.
    let big = "v".repeat(1 << 20);
    let mut stream = tokio::net::TcpStream::connect(a).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("POST /v1/publish/a HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    // Bounded: the test must not hang on a server that stops reading (it then must
    // still serve everyone else, checked at the end).
    let exchange = async {
        let _ = stream.write_all(req.as_bytes()).await;
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        raw
    };
    if let Ok(raw) = tokio::time::timeout(Duration::from_secs(20), exchange).await {
        if !raw.is_empty() {
            assert_eq!(parse(&raw).status, 431);
        }
    }
    // A header value that is not ASCII in a ce- attribute.
    let mut stream = tokio::net::TcpStream::connect(a).await.unwrap();
    let mut req =
        format!("POST /v1/publish/a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {BILLING}\r\nce-type: ")
            .into_bytes();
    req.extend_from_slice(b"\xff\xfe\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(&req).await.unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let r = parse(&raw);
    assert_eq!((r.status, r.code().as_str()), (400, "invalid_argument"));
    // Still serving.
    let r = call(a, "POST", "/v1/publish/a.b", Some(BILLING), &[], b"ok").await;
    assert_eq!(r.status, 202);
}

fn jwt_settings(algorithm: &str) -> JwtSettings {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let (secret, key) = match algorithm {
        "HS256" => (Some(HS_SECRET.to_owned()), None),
        "RS256" => (None, Some(format!("{dir}/rsa.pub.pem"))),
        _ => (None, Some(format!("{dir}/ed25519.pub.pem"))),
    };
    serde_json::from_value(json!({
        "algorithm": algorithm, "secret": secret, "public_key_file": key,
        "issuer": "https://issuer.test", "audience": "busbar",
    }))
    .unwrap()
}

fn sign(algorithm: &str, claims: Value) -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");
    let (alg, key) = match algorithm {
        "HS256" => (Algorithm::HS256, EncodingKey::from_secret(HS_SECRET.as_bytes())),
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&std::fs::read(format!("{dir}/rsa.pem")).unwrap()).unwrap(),
        ),
        _ => (
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&std::fs::read(format!("{dir}/ed25519.pem")).unwrap()).unwrap(),
        ),
    };
    encode(&Header::new(alg), &claims, &key).unwrap()
}

#[tokio::test]
async fn jwts_are_checked_for_signature_expiry_audience_and_issuer() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for algorithm in ["HS256", "RS256", "EdDSA"] {
        let gw = start(Setup {
            jwt: Some(jwt_settings(algorithm)),
            ..Setup::default()
        })
        .await;
        let good = json!({"sub":"jwt-billing","roles":["billing"],"exp":now+600,"aud":"busbar","iss":"https://issuer.test"});
        let mut sse = Sse::open(
            gw.addr,
            "/v1/subscribe/claims.%3E",
            Some(&sign(algorithm, good.clone())),
            &[],
        )
        .await;
        assert_eq!(sse.status, 200, "{algorithm}");
        let r = call(
            gw.addr,
            "POST",
            "/v1/publish/claims.x",
            Some(ADMIN),
            &[],
            CLAIM.as_bytes(),
        )
        .await;
        assert_eq!(r.status, 202);
        assert_eq!(
            sse.next(WAIT).await.unwrap().data["data"]["diagnosis"],
            "[REDACTED]",
            "{algorithm}"
        );
        let mut bad = Vec::new();
        for (field, value) in [
            ("exp", json!(now - 3600)),
            ("aud", json!("other")),
            ("iss", json!("https://evil.test")),
            ("roles", json!("billing")),
        ] {
            let mut claims = good.clone();
            claims[field] = value;
            bad.push((field.to_owned(), sign(algorithm, claims)));
        }
        for missing in ["exp", "sub", "aud"] {
            let mut claims = good.clone();
            claims.as_object_mut().unwrap().remove(missing);
            bad.push((format!("no {missing}"), sign(algorithm, claims)));
        }
        let token = sign(algorithm, good.clone());
        let (head, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{head}.{}.{sig}", base64url(&json!({"sub":"x","roles":["clinician"],"exp":now+600,"aud":"busbar","iss":"https://issuer.test"}).to_string()));
        bad.push(("forged payload".into(), forged));
        // alg=none and an HS256 token signed with the public key must not pass.
        bad.push((
            "alg none".into(),
            format!(
                "{}.{}.",
                base64url(r#"{"alg":"none"}"#),
                base64url(&good.to_string())
            ),
        ));
        for (what, token) in bad {
            let r = call(gw.addr, "POST", "/v1/publish/a", Some(&token), &[], b"x").await;
            assert_eq!(
                (r.status, r.code().as_str()),
                (401, "unauthorized"),
                "{algorithm}: {what}"
            );
        }
    }
}

fn base64url(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429() {
    let gw = start(Setup {
        rate: 5.0,
        ..Setup::default()
    })
    .await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        codes.push(
            call(gw.addr, "POST", "/v1/publish/a", Some(BILLING), &[], b"x")
                .await
                .status,
        );
    }
    assert_eq!(codes.iter().filter(|&&c| c == 202).count(), 5, "{codes:?}");
    let r = call(gw.addr, "POST", "/v1/publish/a", Some(BILLING), &[], b"x").await;
    assert_eq!((r.status, r.code().as_str()), (429, "rate_limited"));
    // Another principal has its own budget.
    assert_eq!(
        call(gw.addr, "POST", "/v1/publish/a", Some(CLINICIAN), &[], b"x")
            .await
            .status,
        202
    );
}

#[tokio::test]
async fn streams_over_the_limit_are_503_and_shutdown_ends_open_streams() {
    let gw = start(Setup {
        max_streams: 2,
        ..Setup::default()
    })
    .await;
    let mut one = Sse::open(gw.addr, "/v1/subscribe/a", Some(BILLING), &[]).await;
    let _two = Sse::open(gw.addr, "/v1/subscribe/b", Some(BILLING), &[]).await;
    let three = Sse::open(gw.addr, "/v1/subscribe/c", Some(BILLING), &[]).await;
    assert_eq!(
        (three.status, three.response.unwrap().code().as_str()),
        (503, "unavailable")
    );
    gw.gw.shut_down();
    assert!(one.ends_within(WAIT).await, "the stream ends on shutdown");
    tokio::time::timeout(WAIT, gw.server)
        .await
        .expect("serve returns after shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_durable_sse_read_resumes_after_last_event_id() {
    let gw = start(Setup::default()).await;
    gw.gw
        .bus
        .declare_stream(busbar::StreamConfig::new("CLAIMS", ["claims.>"]))
        .await
        .unwrap();
    for n in 0..5 {
        let m = gw
            .gw
            .bus
            .message("claims.n")
            .data(format!(r#"{{"n":{n},"diagnosis":"d{n}"}}"#))
            .build()
            .unwrap();
        gw.gw.bus.publish_durable(m).await.unwrap();
    }
    let mut first = Sse::open(
        gw.addr,
        "/v1/subscribe/claims.%3E?stream=CLAIMS",
        Some(BILLING),
        &[],
    )
    .await;
    assert_eq!(first.status, 200);
    let mut last = None;
    for n in 0..3 {
        let e = first.next(WAIT).await.unwrap();
        assert_eq!(e.data["data"], json!({"n": n, "diagnosis": "[REDACTED]"}));
        last = e.id;
    }
    drop(first);
    let mut resumed = Sse::open(
        gw.addr,
        "/v1/subscribe/claims.%3E?stream=CLAIMS",
        Some(CLINICIAN),
        &[("Last-Event-ID", last.as_deref().unwrap())],
    )
    .await;
    for n in 3..5 {
        let e = resumed.next(WAIT).await.unwrap();
        assert_eq!(e.data["data"], json!({"n": n, "diagnosis": format!("d{n}")}));
    }
    let bad = Sse::open(
        gw.addr,
        "/v1/subscribe/claims.%3E?stream=CLAIMS",
        Some(BILLING),
        &[("Last-Event-ID", "abc")],
    )
    .await;
    assert_eq!(bad.response.unwrap().code(), "invalid_argument");

    // Each read's consumer is deleted once its client has gone: none is left behind. The
    // gateway notices a closed connection when it next writes, so keep publishing.
    drop(resumed);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = gw.gw.bus.list_consumers("CLAIMS").await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "consumers left behind: {left:?}"
        );
        let m = gw.gw.bus.message("claims.nudge").data("{}").build().unwrap();
        gw.gw.bus.publish_durable(m).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
