//! `busbar`: the command line of a busbar bus, configured by the same `BUSBAR_*`
//! variables as the libraries (`BUSBAR_BACKEND=nats`, `BUSBAR_NATS_URL`, `BUSBAR_POLICY`, …).
//! Readable output by default, JSON lines with `--json`; a failure prints
//! `error[<code>]: <message>` (or `{"code":…,"message":…}` with `--json`) and exits 1.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use busbar::durable::DLQ_SUBJECT;
use busbar::policy::{PolicyBus, Principal};
use busbar::{Bytes, ConsumerConfig, EventBus, Message, StartAt, StreamConfig};

use busbar_gateway::event::to_json;
use clap::{CommandFactory, Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "busbar",
    version,
    about = "Publish, subscribe, request and operate a busbar bus"
)]
struct Cli {
    /// JSON lines on stdout (and JSON errors on stderr), for scripts.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish DATA (or stdin when DATA is `-` or absent) to SUBJECT.
    Pub {
        subject: String,
        data: Option<String>,
        /// A user header NAME=VALUE (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// Store it in the stream that holds SUBJECT and wait for its acknowledgement.
        #[arg(long)]
        durable: bool,
    },
    /// Print what arrives on PATTERN.
    Sub {
        pattern: String,
        /// Subscribe as this principal (masking and restrictions of the policy apply).
        #[arg(long = "as")]
        principal: Option<String>,
        /// Roles of that principal, comma-separated.
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Exit when nothing arrives for this long (milliseconds).
        #[arg(long)]
        idle_ms: Option<u64>,
    },
    /// Send a request and print the reply.
    Req {
        subject: String,
        data: Option<String>,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
    },
    /// Answer requests on SUBJECT (a test responder): with DATA, or echoing the request.
    Reply {
        subject: String,
        data: Option<String>,
        /// Exit after this many replies.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Durable streams.
    Stream {
        #[command(subcommand)]
        command: StreamCommand,
    },
    /// Durable consumers of a stream.
    Consumer {
        #[command(subcommand)]
        command: ConsumerCommand,
    },
    /// Dead letters of a dead-letter stream.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Print a stream's messages stored since a time.
    Replay {
        stream: String,
        /// RFC 3339 time, or a duration ago: `90s`, `15m`, `2h`, `1d`.
        #[arg(long)]
        since: String,
        /// Only subjects matching this pattern.
        #[arg(long)]
        filter: Option<String>,
        /// Exit when nothing arrives for this long (milliseconds).
        #[arg(long, default_value_t = 1000)]
        idle_ms: u64,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Measure publish, subscribe and request rates against the configured backend.
    Bench {
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
        #[arg(long, default_value_t = 128)]
        size: usize,
        #[arg(long, default_value_t = 2_000)]
        requests: u64,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum StreamCommand {
    /// Declare stream NAME over PATTERNs (idempotent).
    Add {
        name: String,
        #[arg(required = true)]
        patterns: Vec<String>,
    },
    /// What stream NAME holds.
    Info { name: String },
    /// Every stream, with what it holds (one line each).
    Ls,
    /// Delete stream NAME with its messages and consumers.
    Rm { name: String },
}

#[derive(Subcommand)]
enum ConsumerCommand {
    /// The consumers of STREAM (one line each).
    Ls { stream: String },
    /// Where consumer NAME of STREAM stands.
    Info { stream: String, name: String },
    /// Delete consumer NAME of STREAM.
    Rm { stream: String, name: String },
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List the dead letters waiting (attributes and size, never the payload).
    Ls {
        #[arg(long, default_value = busbar_gateway::admin::DEFAULT_DLQ_STREAM)]
        stream: String,
    },
    /// Publish dead letter SEQUENCE back to its original subject.
    Redrive {
        sequence: u64,
        #[arg(long, default_value = busbar_gateway::admin::DEFAULT_DLQ_STREAM)]
        stream: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify the hash chain and head of an audit log file (BUSBAR_KEY_RING keys it).
    Verify { file: String },
}

struct Failure(String, String);

impl From<busbar::Error> for Failure {
    fn from(e: busbar::Error) -> Self {
        Failure(e.code().to_owned(), e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure("invalid_argument".into(), message.into())
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(code, message)) => {
            if json {
                eprintln!("{}", json!({"code": code, "message": message}));
            } else {
                eprintln!("error[{code}]: {message}");
            }
            ExitCode::FAILURE
        }
    }
}

fn data_of(data: Option<String>) -> Result<Bytes, Failure> {
    match data.as_deref() {
        Some(d) if d != "-" => Ok(Bytes::from(d.to_owned())),
        _ => {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .map_err(|e| invalid(format!("cannot read stdin: {e}")))?;
            Ok(buf.into())
        }
    }
}

fn print_message(json_out: bool, m: &Message) {
    if json_out {
        println!("{}", to_json(m));
    } else {
        println!("{} {}", m.subject(), String::from_utf8_lossy(m.data()));
    }
}

fn print_value(json_out: bool, value: &Value, text: String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

async fn connect() -> Result<PolicyBus, Failure> {
    Ok(busbar::policy::connect(busbar::Config::from_env()?).await?)
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let j = cli.json;
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "busbar", &mut std::io::stdout());
        return Ok(());
    }
    if let Command::Audit {
        command: AuditCommand::Verify { file },
    } = &cli.command
    {
        return audit_verify(j, file);
    }
    let bus = connect().await?;
    let result = command(j, &bus, cli.command).await;
    // What was sent last (a reply, a publish) reaches the server before the connection closes.
    let _ = bus.flush().await;
    let _ = bus.close().await;
    result
}

async fn command(j: bool, bus: &PolicyBus, command: Command) -> Result<(), Failure> {
    match command {
        Command::Pub {
            subject,
            data,
            headers,
            durable,
        } => {
            let mut builder = bus.message(&subject).data(data_of(data)?);
            for h in headers {
                let (k, v) = h
                    .split_once('=')
                    .ok_or_else(|| invalid(format!("header {h:?} is not NAME=VALUE")))?;
                builder = builder.header(k, v);
            }
            let message = builder.build()?;
            let id = message.id().to_owned();
            if durable {
                let ack = bus.publish_durable(message).await?;
                let v = json!({"id": id, "stream": ack.stream, "sequence": ack.sequence, "duplicate": ack.duplicate});
                print_value(
                    j,
                    &v,
                    format!("stored {id} in {} at {}", ack.stream, ack.sequence),
                );
            } else {
                bus.publish_message(message).await?;
                bus.flush().await?;
                print_value(j, &json!({"id": id}), format!("published {id}"));
            }
        }
        Command::Sub {
            pattern,
            principal,
            roles,
            count,
            idle_ms,
        } => {
            let principal = Principal::new(principal.as_deref().unwrap_or("anonymous"), roles);
            let mut sub = bus.subscribe_as(&principal, &pattern).await?;
            // A round trip through the server: the subscription is in place when a script,
            // having read this line, publishes.
            bus.flush().await?;
            eprintln!("subscribed to {pattern}");
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                let next = match idle_ms {
                    Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), sub.next()).await {
                        Ok(n) => n,
                        Err(_) => break,
                    },
                    None => sub.next().await,
                };
                match next {
                    None => break,
                    Some(Ok(m)) => {
                        print_message(j, &m);
                        seen += 1;
                    }
                    Some(Err(busbar::Error::Lagged { missed, .. })) => {
                        eprintln!("lagged: missed {missed} messages");
                    }
                    Some(Err(e)) => eprintln!("error[{}]: {e}", e.code()),
                }
            }
        }
        Command::Req {
            subject,
            data,
            timeout_ms,
        } => {
            let message = bus.message(&subject).data(data_of(data)?).build()?;
            let reply = bus
                .request_message(message, Duration::from_millis(timeout_ms))
                .await?;
            // The reply's subject is the request's private inbox: show the data alone.
            let text = String::from_utf8_lossy(reply.data()).into_owned();
            print_value(j, &to_json(&reply), text);
        }
        Command::Reply { subject, data, count } => {
            let mut sub = bus.subscribe(&subject).await?;
            bus.flush().await?;
            eprintln!("replying on {subject}");
            let mut answered = 0;
            while count.is_none_or(|c| answered < c) {
                let Some(item) = sub.next().await else { break };
                let Ok(request) = item else { continue };
                let answer = data
                    .clone()
                    .map(Bytes::from)
                    .unwrap_or_else(|| request.data().clone());
                request.respond(answer).await?;
                answered += 1;
                print_message(j, &request);
            }
        }
        Command::Stream { command } => match command {
            StreamCommand::Add { name, patterns } => {
                let info = bus.declare_stream(StreamConfig::new(name, patterns)).await?;
                print_value(j, &stream_json(&info), format!("stream {} declared", info.name));
            }
            StreamCommand::Info { name } => {
                let info = bus.stream_info(&name).await?;
                let text = format!(
                    "{}: {} messages, {} bytes, sequences {}..{}",
                    info.name, info.messages, info.bytes, info.first_sequence, info.last_sequence
                );
                print_value(j, &stream_json(&info), text);
            }
            StreamCommand::Ls => {
                for info in bus.list_streams().await? {
                    let text = format!(
                        "{} [{}] {} messages, {} bytes, last sequence {}",
                        info.name,
                        info.subjects.join(" "),
                        info.messages,
                        info.bytes,
                        info.last_sequence
                    );
                    print_value(j, &stream_json(&info), text);
                }
            }
            StreamCommand::Rm { name } => {
                bus.delete_stream(&name).await?;
                print_value(j, &json!({"deleted": name}), format!("stream {name} deleted"));
            }
        },
        Command::Consumer { command } => match command {
            ConsumerCommand::Ls { stream } => {
                for info in bus.list_consumers(&stream).await? {
                    print_value(j, &consumer_json(&info), consumer_text(&info));
                }
            }
            ConsumerCommand::Info { stream, name } => {
                let info = bus.consumer_info(&stream, &name).await?;
                print_value(j, &consumer_json(&info), consumer_text(&info));
            }
            ConsumerCommand::Rm { stream, name } => {
                bus.delete_consumer(&stream, &name).await?;
                let v = json!({"deleted": name, "stream": stream});
                print_value(j, &v, format!("consumer {name} of {stream} deleted"));
            }
        },
        Command::Dlq { command } => dlq(j, bus, command).await?,
        Command::Replay {
            stream,
            since,
            filter,
            idle_ms,
        } => {
            let since = parse_since(&since)?;
            let name = format!("busbar-cli-replay-{}", busbar::envelope::new_id());
            let mut config = ConsumerConfig::new(stream.as_str(), name.as_str()).start(StartAt::Time(since));
            if let Some(f) = filter {
                config = config.filter(f);
            }
            let mut sub = bus.durable_subscribe(config).await?;
            let replayed = async {
                while let Ok(Some(item)) =
                    tokio::time::timeout(Duration::from_millis(idle_ms), sub.next()).await
                {
                    let d = item?;
                    print_message(j, d.message());
                    d.ack().await?;
                }
                Ok::<_, Failure>(())
            }
            .await;
            drop(sub);
            // The consumer was this replay's own: none is left behind on the broker.
            let deleted = bus.inner().delete_consumer(&stream, &name).await;
            replayed?;
            deleted?;
        }
        Command::Bench {
            messages,
            size,
            requests,
        } => bench(j, bus, messages, size, requests).await?,
        Command::Audit { .. } | Command::Completions { .. } => unreachable!("handled before connecting"),
    }
    Ok(())
}

fn stream_json(info: &busbar::StreamInfo) -> Value {
    json!({"name": info.name, "subjects": info.subjects, "messages": info.messages, "bytes": info.bytes,
           "first_sequence": info.first_sequence, "last_sequence": info.last_sequence})
}

fn consumer_json(info: &busbar::ConsumerInfo) -> Value {
    json!({"stream": info.stream, "name": info.name, "filter": info.filter, "pending": info.pending,
           "ack_pending": info.ack_pending, "delivered_sequence": info.delivered_sequence})
}

fn consumer_text(info: &busbar::ConsumerInfo) -> String {
    format!(
        "{} on {} [{}]: {} pending, {} unacknowledged, delivered up to {}",
        info.name,
        info.stream,
        info.filter.as_deref().unwrap_or(">"),
        info.pending,
        info.ack_pending,
        info.delivered_sequence
    )
}

/// An RFC 3339 time, or `<n>s|m|h|d` ago.
fn parse_since(text: &str) -> Result<SystemTime, Failure> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t.into());
    }
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = n
        .parse()
        .map_err(|_| invalid(format!("--since {text:?} is neither RFC 3339 nor <n>s|m|h|d")))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => {
            return Err(invalid(format!(
                "--since {text:?}: the unit must be s, m, h or d"
            )))
        }
    };
    SystemTime::now()
        .checked_sub(Duration::from_secs(secs))
        .ok_or_else(|| invalid(format!("--since {text:?} is before the epoch")))
}

/// Reads what the dead-letter consumer `busbar-cli-dlq` holds, redrives `redrive` if
/// asked, and hands the others back (nak) for the next call.
async fn dlq(j: bool, bus: &PolicyBus, command: DlqCommand) -> Result<(), Failure> {
    let (stream, redrive) = match &command {
        DlqCommand::Ls { stream } => (stream.clone(), None),
        DlqCommand::Redrive { sequence, stream } => (stream.clone(), Some(*sequence)),
    };
    let config = ConsumerConfig::new(stream.as_str(), "busbar-cli-dlq")
        .ack_wait(Duration::from_secs(30))
        .max_deliver(1_000_000);
    if stream == busbar_gateway::admin::DEFAULT_DLQ_STREAM {
        // The default dead-letter stream, as a durable subscription declares it.
        let patterns = [format!("{}.>", busbar::durable::DEFAULT_DLQ_PREFIX)];
        bus.declare_stream(StreamConfig::new(stream.as_str(), patterns))
            .await?;
    }
    let mut sub = bus.inner().durable_subscribe(config).await?;
    let mut held = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
        held.push(item?);
    }
    let mut found = false;
    for letter in held {
        let m = letter.message();
        if Some(letter.sequence()) == redrive {
            let message = busbar_gateway::admin::redriven(m)?;
            let subject = message.subject().to_owned();
            if bus.publish_durable(message.clone()).await.is_err() {
                bus.publish_message(message).await?;
            }
            letter.ack().await?;
            found = true;
            let v = json!({"redriven": letter.sequence(), "subject": subject});
            print_value(j, &v, format!("redrove {} to {subject}", letter.sequence()));
            continue;
        }
        if redrive.is_none() {
            let v = json!({
                "sequence": letter.sequence(), "id": m.id(),
                "subject": m.header(DLQ_SUBJECT).unwrap_or(m.subject()),
                "reason": m.header(busbar::durable::DLQ_REASON), "bytes": m.data().len(),
            });
            let text = format!(
                "{} {} {} ({} bytes)",
                letter.sequence(),
                v["subject"].as_str().unwrap_or(""),
                v["reason"].as_str().unwrap_or(""),
                m.data().len()
            );
            print_value(j, &v, text);
        }
        letter.nak(Some(Duration::ZERO)).await?;
    }
    bus.flush().await?;
    match redrive {
        Some(seq) if !found => Err(Failure(
            "invalid_argument".into(),
            format!("no dead letter {seq} waiting in {stream}"),
        )),
        _ => Ok(()),
    }
}

fn audit_verify(j: bool, file: &str) -> Result<(), Failure> {
    let ring = match std::env::var("BUSBAR_KEY_RING") {
        Ok(path) if !path.is_empty() => Some(busbar::policy::KeyRing::from_file(&path)?),
        _ => None,
    };
    let report = busbar::policy::verify_file(file, ring.as_ref())?;
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({"line": p.line, "kind": format!("{:?}", p.kind).to_lowercase(), "detail": p.detail}))
        .collect();
    let v = json!({"ok": report.is_ok(), "records": report.records, "problems": problems});
    let mut text = format!("{file}: {} records, ", report.records);
    text.push_str(if report.is_ok() { "intact" } else { "TAMPERED" });
    for p in &report.problems {
        text.push_str(&format!("\n  line {}: {:?}: {}", p.line, p.kind, p.detail));
    }
    print_value(j, &v, text);
    if report.is_ok() {
        Ok(())
    } else {
        Err(Failure(
            "decode".into(),
            format!("audit log {file} fails verification"),
        ))
    }
}

/// Progress of one bench phase: a bar on stderr when stdout is a terminal, a plain line
/// at each tenth when it is not (a pipe, a log), nothing with `--json`.
#[derive(Clone)]
struct Progress {
    bar: Option<ProgressBar>,
    label: &'static str,
    total: u64,
    tenth: u64,
    quiet: bool,
}

impl Progress {
    fn new(bars: Option<&MultiProgress>, label: &'static str, total: u64, quiet: bool) -> Self {
        let bar = bars.map(|bars| {
            let style = ProgressStyle::with_template(
                "{prefix:>8} [{bar:40}] {pos}/{len} {per_sec:>12} {elapsed_precise}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = bars.add(ProgressBar::new(total).with_style(style).with_prefix(label));
            bar.tick();
            bar
        });
        Progress {
            bar,
            label,
            total,
            tenth: (total / 10).max(1),
            quiet,
        }
    }

    /// `done` of the phase's steps are done.
    fn set(&self, done: u64) {
        match &self.bar {
            // Drawn at most ~20 times a second by indicatif; updated every 64 steps.
            Some(bar) if done.is_multiple_of(64) || done == self.total => bar.set_position(done),
            Some(_) => {}
            None if !self.quiet && (done.is_multiple_of(self.tenth) || done == self.total) => {
                eprintln!("{}: {done}/{}", self.label, self.total);
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}

async fn bench(j: bool, bus: &PolicyBus, messages: u64, size: usize, requests: u64) -> Result<(), Failure> {
    let subject = format!("bench.{}", busbar::envelope::new_id());
    let payload = Bytes::from(vec![b'x'; size]);
    let bars = (!j && std::io::stdout().is_terminal())
        .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let publishing = Progress::new(bars.as_ref(), "publish", messages, j);
    let receiving = Progress::new(bars.as_ref(), "receive", messages, j);
    let mut sub = bus.inner().subscribe(&subject).await?;
    let received = receiving.clone();
    let counter = tokio::spawn(async move {
        let (mut n, mut missed) = (0u64, 0u64);
        while n + missed < messages {
            match sub.next().await {
                Some(Ok(_)) => n += 1,
                Some(Err(busbar::Error::Lagged { missed: m, .. })) => missed += m,
                Some(Err(_)) => {}
                None => break,
            }
            received.set(n + missed);
        }
        received.finish();
        (n, missed, Instant::now())
    });
    let start = Instant::now();
    for i in 0..messages {
        bus.inner().publish(&subject, payload.clone()).await?;
        publishing.set(i + 1);
    }
    publishing.finish();
    bus.flush().await?;
    let published = start.elapsed();
    let (received, missed, done) = counter
        .await
        .map_err(|e| Failure("backend".into(), e.to_string()))?;
    let received_in = done.duration_since(start);
    let responder = bus.inner().subscribe(&format!("{subject}.svc")).await?;
    tokio::spawn(busbar::serve(responder, |m| async move { m.data().clone() }));
    let requesting = Progress::new(bars.as_ref(), "request", requests, j);
    let req_start = Instant::now();
    for i in 0..requests {
        bus.inner()
            .request(&format!("{subject}.svc"), payload.clone(), Duration::from_secs(5))
            .await?;
        requesting.set(i + 1);
    }
    let req_time = req_start.elapsed();
    requesting.finish();
    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
    let v = json!({
        "backend": bus.backend().to_string(), "messages": messages, "size": size,
        "publish_per_s": rate(messages, published).round(),
        "receive_per_s": rate(received, received_in).round(), "missed": missed,
        "requests": requests, "request_per_s": rate(requests, req_time).round(),
        "request_mean_us": (req_time.as_secs_f64() * 1e6 / requests.max(1) as f64).round(),
    });
    let text = format!(
        "backend {}: publish {:.0} msg/s, receive {:.0} msg/s ({missed} missed), request {:.0}/s ({:.0} µs mean), {messages} × {size} B",
        v["backend"].as_str().unwrap_or(""),
        v["publish_per_s"].as_f64().unwrap_or(0.0),
        v["receive_per_s"].as_f64().unwrap_or(0.0),
        v["request_per_s"].as_f64().unwrap_or(0.0),
        v["request_mean_us"].as_f64().unwrap_or(0.0),
    );
    print_value(j, &v, text);
    Ok(())
}
