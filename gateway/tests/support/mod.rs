//! A gateway on an ephemeral port over an in-memory bus with a PHI policy, and a
//! minimal HTTP/1.1 client (plain requests and a Server-Sent Events reader), so the
//! tests speak to the gateway over real sockets as curl or a browser would.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use busbar::policy::{Action, AuditLog, Policy, PolicyBus};
use busbar_gateway::auth::{sha256_hex, JwtSettings, OpaqueToken, TokensFile};
use busbar_gateway::{Authenticator, Gateway, Options};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub(crate) const BILLING: &str = "billing-token-0123456789";
pub(crate) const CLINICIAN: &str = "clinician-token-0123456789";
pub(crate) const ADMIN: &str = "admin-token-0123456789";
pub(crate) const HS_SECRET: &str = "a-test-secret-of-at-least-thirty-two-bytes";

/// Classes `pii` (`/ssn`, partial) and `phi` (`/diagnosis`, redacted); billing sees pii,
/// clinicians both; `psych.>` is for clinicians only.
pub(crate) fn policy() -> Policy {
    Policy::new()
        .class("pii")
        .class("phi")
        .field("/ssn", "pii", Action::Partial(4))
        .field("/diagnosis", "phi", Action::Redact)
        .grant("billing", ["pii"])
        .grant("clinician", ["pii", "phi"])
        .restrict("psych.>", ["clinician"])
}

pub(crate) fn tokens(jwt: Option<JwtSettings>) -> TokensFile {
    let token = |t: &str, p: &str, roles: &[&str]| OpaqueToken {
        sha256: sha256_hex(t.as_bytes()),
        principal: p.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
    };
    TokensFile {
        tokens: vec![
            token(BILLING, "billing-svc", &["billing"]),
            token(CLINICIAN, "dr-who", &["clinician"]),
            token(ADMIN, "ops", &["admin"]),
        ],
        jwt,
    }
}

pub(crate) struct Setup {
    pub max_payload: usize,
    pub rate: f64,
    pub jwt: Option<JwtSettings>,
    pub audit: Option<std::path::PathBuf>,
    pub capacity: usize,
    pub max_streams: usize,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            max_payload: busbar::Config::default().max_payload,
            rate: 0.0,
            jwt: None,
            audit: None,
            capacity: 4096,
            max_streams: 100,
        }
    }
}

pub(crate) struct Running {
    pub addr: std::net::SocketAddr,
    pub gw: Arc<Gateway>,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub(crate) async fn start(setup: Setup) -> Running {
    let config = busbar::Config::default()
        .with_max_payload(setup.max_payload)
        .with_subscription_capacity(setup.capacity)
        .with_backpressure(busbar::Backpressure::Lag);
    let inner = busbar::connect(config).await.unwrap();
    let mut builder = PolicyBus::builder(inner).policy(policy());
    if let Some(path) = &setup.audit {
        builder = builder.audit_log(Arc::new(AuditLog::open(path, None).unwrap()));
    }
    let gw = Gateway::new(Options {
        bus: builder.build().unwrap(),
        auth: Authenticator::from_file(tokens(setup.jwt), setup.rate).unwrap(),
        max_payload: setup.max_payload,
        max_streams: setup.max_streams,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(busbar_gateway::serve(listener, gw.clone()));
    Running { addr, gw, server }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The `code` of a JSON error body (asserting there is one).
    pub(crate) fn code(&self) -> String {
        let body = self.json();
        assert!(body["message"].is_string(), "error without message: {body}");
        body["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no code in {body}"))
            .to_owned()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request_head(method: &str, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head
}

/// One request on a fresh connection (`Connection: close`), the whole answer read.
pub(crate) async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut head = request_head(method, path, token, headers);
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).await.unwrap();
    // A server that answers before reading a body it refuses may stop reading it.
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.write_all(body)).await;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the gateway answers within 30 s")
        .ok();
    parse(&raw)
}

pub(crate) fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

pub(crate) async fn post_json(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Response {
    call(
        addr,
        "POST",
        path,
        token,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

/// A Server-Sent Events reader over one connection.
pub(crate) struct Sse {
    pub status: u16,
    reader: BufReader<TcpStream>,
    buffer: String,
    pub response: Option<Response>,
}

/// One SSE event: its `event:`, `id:` and `data:` (as JSON).
#[derive(Debug, Clone)]
pub(crate) struct Event {
    pub kind: String,
    pub id: Option<String>,
    pub data: Value,
}

impl Sse {
    pub(crate) async fn open(
        addr: std::net::SocketAddr,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Sse {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut head = request_head("GET", path, token, headers);
        // No keep-alive: an error answer ends with its connection.
        head.push_str("Accept: text/event-stream\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut raw = Vec::new();
        loop {
            let mut line = Vec::new();
            reader.read_until(b'\n', &mut line).await.unwrap();
            assert!(!line.is_empty(), "connection closed in the head");
            raw.extend_from_slice(&line);
            if line == b"\r\n" {
                break;
            }
        }
        let head = parse(&raw);
        let mut sse = Sse {
            status: head.status,
            reader,
            buffer: String::new(),
            response: None,
        };
        if head.status != 200 {
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), sse.reader.read_to_end(&mut rest)).await;
            raw.extend_from_slice(&rest);
            sse.response = Some(parse(&raw));
        }
        sse
    }

    async fn chunk(&mut self) -> Option<()> {
        let mut size = String::new();
        if self.reader.read_line(&mut size).await.ok()? == 0 {
            return None;
        }
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return None;
        }
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).await.ok()?;
        self.buffer.push_str(&String::from_utf8_lossy(&data[..size]));
        Some(())
    }

    /// Whether the stream ends (its last chunk arrives) within `wait`, skipping events.
    pub(crate) async fn ends_within(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, async { while self.chunk().await.is_some() {} })
            .await
            .is_ok()
    }

    /// The next event other than a keep-alive comment, or `None` at the end or after `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, async {
            loop {
                while let Some(cut) = self.buffer.find("\n\n") {
                    let block: String = self.buffer.drain(..cut + 2).collect();
                    let mut event = Event {
                        kind: "message".into(),
                        id: None,
                        data: Value::Null,
                    };
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            event.kind = v.trim().into();
                        } else if let Some(v) = line.strip_prefix("id:") {
                            event.id = Some(v.trim().into());
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        }
                    }
                    if !data.is_empty() {
                        event.data = serde_json::from_str(&data).unwrap();
                        return Some(event);
                    }
                }
                self.chunk().await?;
            }
        })
        .await
        .ok()
        .flatten()
    }
}
