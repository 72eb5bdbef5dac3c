//! `busbar-gateway --listen ADDR [--tokens FILE]`: serves a busbar bus over HTTP, SSE
//! and WebSocket. The bus comes from the usual `BUSBAR_*` variables (in-memory by
//! default; `BUSBAR_BACKEND=nats` and `BUSBAR_NATS_URL` for NATS; `BUSBAR_POLICY`,
//! `BUSBAR_KEY_RING`, `BUSBAR_AUDIT_LOG` for the policy layer).

use std::process::ExitCode;

use busbar_gateway::{Authenticator, Gateway, Options};
use clap::Parser;

#[derive(Parser)]
#[command(
    version,
    about = "HTTP, Server-Sent Events and WebSocket gateway to a busbar bus"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "BUSBAR_GATEWAY_LISTEN")]
    listen: String,
    /// Tokens file (opaque token hashes, JWT settings); without one every API call is 401.
    #[arg(long, env = "BUSBAR_GATEWAY_TOKENS")]
    tokens: Option<String>,
    /// Calls per second per principal (0: unlimited).
    #[arg(long, default_value_t = 0.0, env = "BUSBAR_GATEWAY_RATE_LIMIT")]
    rate_limit: f64,
    /// Most SSE and WebSocket connections at once.
    #[arg(long, default_value_t = 10_000, env = "BUSBAR_GATEWAY_MAX_STREAMS")]
    max_streams: usize,
    /// Streams to declare at start, `NAME=PATTERN[,PATTERN…]` (repeatable).
    #[arg(long = "stream")]
    streams: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("busbar-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = busbar::Config::from_env()?;
    // A web client too slow for its subscription is told what it missed (lag), and
    // never holds publishers back, unless BUSBAR_BACKPRESSURE says otherwise.
    if std::env::var_os("BUSBAR_BACKPRESSURE").is_none() {
        config.backpressure = busbar::Backpressure::Lag;
    }
    let max_payload = config.max_payload;
    let bus = busbar::policy::connect(config).await?;
    let auth = match &args.tokens {
        Some(path) => Authenticator::load(path, args.rate_limit)?,
        None => {
            eprintln!("busbar-gateway: no --tokens file: every API call answers 401");
            Authenticator::none()
        }
    };
    let gw = Gateway::new(Options {
        bus,
        auth,
        max_payload,
        max_streams: args.max_streams,
    });
    for spec in &args.streams {
        let (name, patterns) = spec
            .split_once('=')
            .ok_or_else(|| format!("--stream {spec:?} is not NAME=PATTERN[,PATTERN…]"))?;
        let config = busbar::StreamConfig::new(name, patterns.split(','));
        use busbar::EventBus;
        gw.bus.declare_stream(config).await?;
    }
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    // Tests and scripts read the bound address (port 0 picks one) from this line.
    println!("busbar-gateway listening on http://{}", listener.local_addr()?);
    let stop = gw.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.shut_down();
    });
    #[cfg(unix)]
    {
        let stop = gw.clone();
        tokio::spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                stop.shut_down();
            }
        });
    }
    busbar_gateway::serve(listener, gw.clone()).await?;
    use busbar::EventBus;
    gw.bus.close().await?;
    Ok(())
}
