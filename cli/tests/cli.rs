//! Every `busbar` command, run as a process against a private nats-server (the in-memory
//! bus lives in one process; the CLI's commands meet across processes on NATS).

#[path = "../../core/tests/support/nats_server.rs"]
mod nats_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use busbar::{ConsumerConfig, EventBus};
use nats_server::NatsServer;
use serde_json::{json, Value};

const POLICY: &str = r#"{"classes":["pii","phi"],
 "fields":[{"path":"/ssn","class":"pii","action":"partial","keep":4},
           {"path":"/diagnosis","class":"phi","action":"redact"}],
 "restricted":[{"subjects":["psych.>"],"roles":["clinician"]}],
 "grants":{"billing":["pii"],"clinician":["pii","phi"]}}"#;

struct Env {
    server: NatsServer,
    dir: std::path::PathBuf,
}

impl Env {
    fn new(name: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("busbar-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("policy.json"), POLICY).unwrap();
        Env {
            server: NatsServer::start(),
            dir,
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_busbar"));
        c.args(args)
            .env_clear()
            .env("BUSBAR_BACKEND", "nats")
            .env("BUSBAR_NATS_URL", self.server.url())
            .env("BUSBAR_POLICY", self.dir.join("policy.json"));
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Starts a long-running command and waits for its `ready` line on stderr.
    fn spawn(&self, args: &[&str], ready: &str) -> Running {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        assert!(line.contains(ready), "{line:?}");
        let name = args.join(" ");
        // Keep reading its stderr (into the test's output), so the pipe stays open.
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
            }
        });
        // And its stdout, as a user's terminal would, collected for the test.
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, lines }
    }

    async fn bus(&self) -> busbar::policy::PolicyBus {
        let config = busbar::Config::default()
            .with_backend(busbar::Backend::Nats)
            .with_nats_url(self.server.url());
        busbar::policy::connect(config).await.unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn failure(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "should fail: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A command started in the background; killed if the test ends before it does.
struct Running {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits (up to 10 s) for a background command to exit successfully; its stdout.
fn wait(mut running: Running) -> String {
    for _ in 0..100 {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            let mut out = String::new();
            while let Ok(line) = running.lines.recv_timeout(Duration::from_secs(1)) {
                out.push_str(&line);
                out.push('\n');
            }
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the command did not finish");
}

#[test]
fn pub_reaches_sub_masked_for_its_principal_and_errors_carry_the_code() {
    let env = Env::new("pubsub");
    let billing = env.spawn(
        &[
            "sub",
            "claims.>",
            "--as",
            "billing-svc",
            "--roles",
            "billing",
            "--count",
            "1",
            "--json",
        ],
        "subscribed",
    );
    let anyone = env.spawn(&["sub", "claims.*", "--count", "1"], "subscribed");
    let out = env.run(&[
        "pub",
        "claims.new",
        r#"{"ssn":"123-45-6789","diagnosis":"flu"}"#,
        "-H",
        "site=north",
    ]);
    assert!(stdout(&out).starts_with("published "));
    let got: Value = serde_json::from_str(wait(billing).trim()).unwrap();
    assert_eq!(got["data"], json!({"ssn":"123-45-6789","diagnosis":"[REDACTED]"}));
    assert_eq!(got["headers"]["site"], "north");
    assert_eq!(
        wait(anyone).trim(),
        r#"claims.new {"ssn":"*******6789","diagnosis":"[REDACTED]"}"#
    );

    let err = failure(&env.run(&["pub", "a..b", "x"]));
    assert!(err.starts_with("error[invalid_subject]: "), "{err}");
    let err = failure(&env.run(&[
        "--json",
        "sub",
        "psych.>",
        "--as",
        "billing-svc",
        "--roles",
        "billing",
    ]));
    let err: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(err["code"], "forbidden");
    let err = failure(&env.run(&["pub", "a", "x", "-H", "novalue"]));
    assert!(err.starts_with("error[invalid_argument]"), "{err}");
}

#[test]
fn req_gets_the_reply_of_a_reply_responder() {
    let env = Env::new("req");
    let responder = env.spawn(&["reply", "svc.echo", "--count", "2"], "replying");
    // JSON payloads: under a policy with field rules, a payload that is not JSON cannot
    // be checked and is withheld from subscribers (fail closed, docs/design.md §6).
    let out = stdout(&env.run(&[
        "req",
        "svc.echo",
        r#"{"ssn":"123-45-6789"}"#,
        "--timeout-ms",
        "20000",
    ]));
    assert_eq!(out.trim(), r#"{"ssn":"*******6789"}"#);
    let out = stdout(&env.run(&["--json", "req", "svc.echo", r#"{"a":1}"#, "--timeout-ms", "20000"]));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["data"],
        json!({"a":1})
    );
    assert_eq!(wait(responder).lines().count(), 2);
    let fixed = env.spawn(
        &["reply", "svc.fixed", r#"{"pong":true}"#, "--count", "1"],
        "replying",
    );
    let out = stdout(&env.run(&["req", "svc.fixed", "{}", "--timeout-ms", "20000"]));
    assert_eq!(out.trim(), r#"{"pong":true}"#);
    wait(fixed);
    let err = failure(&env.run(&["req", "nobody.home", "x", "--timeout-ms", "500"]));
    assert!(err.starts_with("error[no_responders]"), "{err}");
}

#[test]
fn streams_are_added_inspected_and_replayed_since_a_time() {
    let env = Env::new("stream");
    let out: Value = serde_json::from_str(&stdout(
        &env.run(&["--json", "stream", "add", "ORDERS", "orders.>"]),
    ))
    .unwrap();
    assert_eq!(out["name"], "ORDERS");
    for n in 0..3 {
        stdout(&env.run(&["pub", "--durable", "orders.new", &format!(r#"{{"n":{n}}}"#)]));
    }
    let info = stdout(&env.run(&["stream", "info", "ORDERS"]));
    // Bytes as the server counts them (headers included).
    assert!(
        info.starts_with("ORDERS: 3 messages, ") && info.trim().ends_with(" bytes, sequences 1..3"),
        "{info}"
    );
    let info: Value =
        serde_json::from_str(&stdout(&env.run(&["--json", "stream", "info", "ORDERS"]))).unwrap();
    assert_eq!(info["messages"], 3);
    let replay = stdout(&env.run(&["replay", "ORDERS", "--since", "1h", "--idle-ms", "500"]));
    assert_eq!(
        replay.lines().collect::<Vec<_>>(),
        [
            r#"orders.new {"n":0}"#,
            r#"orders.new {"n":1}"#,
            r#"orders.new {"n":2}"#
        ]
    );
    let future = stdout(&env.run(&[
        "replay",
        "ORDERS",
        "--since",
        "2099-01-01T00:00:00Z",
        "--idle-ms",
        "300",
    ]));
    assert_eq!(future, "");
    let err = failure(&env.run(&["replay", "ORDERS", "--since", "yesterday"]));
    assert!(err.starts_with("error[invalid_argument]"), "{err}");
    let err = failure(&env.run(&["stream", "info", "NOPE"]));
    assert!(err.starts_with("error["), "{err}");
    // Each replay deleted the consumer it made: none is left behind.
    assert_eq!(stdout(&env.run(&["consumer", "ls", "ORDERS"])), "");
}

#[test]
fn streams_and_consumers_are_listed_inspected_and_removed() {
    let env = Env::new("admin");
    stdout(&env.run(&["stream", "add", "ORDERS", "orders.>"]));
    stdout(&env.run(&["stream", "add", "PSYCH", "psych.>"]));
    for n in 0..2 {
        stdout(&env.run(&["pub", "--durable", "orders.new", &format!(r#"{{"n":{n}}}"#)]));
    }
    let listed = stdout(&env.run(&["stream", "ls"]));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].starts_with("ORDERS [orders.>] 2 messages, "), "{listed}");
    assert!(lines[1].starts_with("PSYCH [psych.>] 0 messages, "), "{listed}");
    let json_lines = stdout(&env.run(&["--json", "stream", "ls"]));
    let first: Value = serde_json::from_str(json_lines.lines().next().unwrap()).unwrap();
    assert_eq!(
        (&first["name"], &first["subjects"]),
        (&json!("ORDERS"), &json!(["orders.>"]))
    );

    // A consumer made by a library, seen and removed from the command line.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bus = env.bus().await;
        let sub = bus
            .durable_subscribe(ConsumerConfig::new("ORDERS", "billing").filter("orders.*"))
            .await
            .unwrap();
        drop(sub);
        bus.close().await.unwrap();
    });
    assert_eq!(
        stdout(&env.run(&["consumer", "ls", "ORDERS"])).trim(),
        "billing on ORDERS [orders.*]: 2 pending, 0 unacknowledged, delivered up to 0"
    );
    let info: Value = serde_json::from_str(&stdout(
        &env.run(&["--json", "consumer", "info", "ORDERS", "billing"]),
    ))
    .unwrap();
    assert_eq!(
        info,
        json!({"stream": "ORDERS", "name": "billing", "filter": "orders.*", "pending": 2,
               "ack_pending": 0, "delivered_sequence": 0})
    );
    assert_eq!(
        stdout(&env.run(&["consumer", "rm", "ORDERS", "billing"])).trim(),
        "consumer billing of ORDERS deleted"
    );
    assert_eq!(stdout(&env.run(&["consumer", "ls", "ORDERS"])), "");
    let err = failure(&env.run(&["consumer", "info", "ORDERS", "billing"]));
    assert!(err.starts_with("error[invalid_argument]: "), "{err}");

    // Deleting needs the right to read what the stream holds (the policy restricts psych.>).
    let err = failure(&env.run(&["--json", "stream", "rm", "PSYCH"]));
    let err: Value = serde_json::from_str(err.trim()).unwrap();
    assert_eq!(err["code"], "forbidden", "{err}");
    let out = env
        .cmd(&["stream", "rm", "PSYCH"])
        .env("BUSBAR_PRINCIPAL", "dr-who")
        .env("BUSBAR_ROLES", "clinician")
        .output()
        .unwrap();
    assert_eq!(stdout(&out).trim(), "stream PSYCH deleted");
    stdout(&env.run(&["stream", "rm", "ORDERS"]));
    // Left: the dead-letter stream the library's durable subscription declared.
    let left = stdout(&env.run(&["stream", "ls"]));
    assert!(
        left.starts_with("DLQ_DLQ [dlq.>] ") && left.lines().count() == 1,
        "{left}"
    );
    let err = failure(&env.run(&["stream", "rm", "ORDERS"]));
    assert!(err.starts_with("error[invalid_argument]: "), "{err}");
}

#[tokio::test]
async fn dead_letters_are_listed_and_redriven() {
    let env = Env::new("dlq");
    let bus = env.bus().await;
    bus.declare_stream(busbar::StreamConfig::new("JOBS", ["jobs.>"]))
        .await
        .unwrap();
    let mut worker = bus
        .durable_subscribe(ConsumerConfig::new("JOBS", "worker").max_deliver(1))
        .await
        .unwrap();
    let m = bus.message("jobs.run").data(r#"{"job":7}"#).build().unwrap();
    bus.publish_durable(m).await.unwrap();
    let job = tokio::time::timeout(Duration::from_secs(5), worker.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    job.term("broken input").await.unwrap();
    bus.flush().await.unwrap();

    let ls = stdout(&env.run(&["dlq", "ls"]));
    assert_eq!(ls.trim(), "1 jobs.run terminated: broken input (9 bytes)");
    // Listing does not consume: a second listing shows the same.
    let ls: Value = serde_json::from_str(stdout(&env.run(&["--json", "dlq", "ls"])).trim()).unwrap();
    assert_eq!(
        (ls["sequence"].as_u64(), ls["subject"].as_str()),
        (Some(1), Some("jobs.run"))
    );
    let err = failure(&env.run(&["dlq", "redrive", "42"]));
    assert!(
        err.starts_with("error[invalid_argument]: no dead letter 42"),
        "{err}"
    );
    let out = stdout(&env.run(&["dlq", "redrive", "1"]));
    assert_eq!(out.trim(), "redrove 1 to jobs.run");
    let again = tokio::time::timeout(Duration::from_secs(5), worker.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(again.message().data().as_ref(), br#"{"job":7}"#);
    again.ack().await.unwrap();
    assert_eq!(stdout(&env.run(&["dlq", "ls"])), "");
}

#[tokio::test]
async fn audit_verify_reports_an_intact_log_and_a_tampered_one() {
    let env = Env::new("audit");
    let log_path = env.dir.join("audit.log");
    {
        let inner = busbar::connect(busbar::Config::default()).await.unwrap();
        let log = std::sync::Arc::new(busbar::policy::AuditLog::open(&log_path, None).unwrap());
        let bus = busbar::policy::PolicyBus::builder(inner)
            .audit_log(log)
            .build()
            .unwrap();
        for n in 0..3 {
            bus.publish("a.b", format!("{n}").into()).await.unwrap();
        }
    }
    let path = log_path.to_str().unwrap();
    let out = stdout(&env.run(&["audit", "verify", path]));
    assert!(out.trim().ends_with("3 records, intact"), "{out}");
    let text = std::fs::read_to_string(&log_path).unwrap();
    std::fs::write(&log_path, text.replacen("a.b", "a.c", 1)).unwrap();
    let out = env.run(&["--json", "audit", "verify", path]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["problems"][0]["kind"].as_str()),
        (Some(false), Some("edited"))
    );
    assert!(failure(&out).contains("\"code\":\"decode\""));
    let err = failure(&env.run(&["audit", "verify", "/nonexistent/log"]));
    assert!(err.starts_with("error["), "{err}");
}

#[test]
fn bench_measures_rates_and_accounts_for_every_message() {
    let env = Env::new("bench");
    let out = stdout(&env.run(&[
        "--json",
        "bench",
        "--messages",
        "2000",
        "--size",
        "64",
        "--requests",
        "50",
    ]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["backend"], "nats");
    assert!(
        v["publish_per_s"].as_f64().unwrap() > 0.0 && v["request_per_s"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    // stdout is a pipe here: progress comes as plain lines on stderr.
    let out = env.run(&["bench", "--messages", "500", "--requests", "10"]);
    let human = stdout(&out);
    assert!(human.starts_with("backend nats: publish "), "{human}");
    let progress = String::from_utf8_lossy(&out.stderr);
    for line in [
        "publish: 50/500",
        "publish: 500/500",
        "receive: 500/500",
        "request: 10/10",
    ] {
        assert!(progress.lines().any(|l| l == line), "no {line:?} in {progress}");
    }
    assert!(
        !progress.contains('\u{1b}'),
        "no terminal codes in a pipe: {progress:?}"
    );

    // On a terminal (a pseudo-terminal from util-linux's `script`): progress bars.
    let command = format!(
        "{} bench --messages 500 --requests 10",
        env!("CARGO_BIN_EXE_busbar")
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("TERM", "xterm")
        .env("BUSBAR_BACKEND", "nats")
        .env("BUSBAR_NATS_URL", env.server.url())
        .output()
        .expect("util-linux script");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    for bar in ["publish [", "receive [", "request [", "] 500/500", "] 10/10"] {
        assert!(screen.contains(bar), "no {bar:?} on the terminal: {screen:?}");
    }
    assert!(screen.contains("backend nats: publish "), "{screen:?}");
}

#[test]
fn completions_are_printed_for_bash() {
    let env = Env::new("completions");
    let out = stdout(&env.run(&["completions", "bash"]));
    assert!(
        out.contains("_busbar()") && out.contains("redrive"),
        "{}",
        &out[..200.min(out.len())]
    );
    let out = env.run(&["completions", "tcsh"]);
    assert!(!out.status.success());
}
