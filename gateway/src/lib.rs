//! busbar-gateway: HTTP, Server-Sent Events and WebSocket access to a busbar bus.
//!
//! Every call carries a bearer token mapped to a principal; every publish, request and
//! subscription runs as that principal through busbar's policy layer
//! ([`busbar::policy::PolicyBus`]): masked per role, `forbidden` on restricted subjects,
//! audited. See gateway/README.md for the API and docs/guide/gateway.md for operation.
#![deny(missing_docs)]

pub mod admin;
pub mod auth;
pub mod error;
pub mod event;
pub mod http;
pub mod openapi;
pub mod sse;
pub mod streams;
pub mod ws;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use busbar::policy::PolicyBus;
use tokio::sync::{watch, Semaphore};

pub use auth::Authenticator;
pub use error::ApiError;

/// Longest `timeout_ms` of a request through the gateway.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the gateway serves and how.
pub struct Options {
    /// The bus, wrapped in its policy layer.
    pub bus: PolicyBus,
    /// Who may call.
    pub auth: Authenticator,
    /// Largest body accepted (the bus's `max_payload`).
    pub max_payload: usize,
    /// Most SSE and WebSocket connections open at once.
    pub max_streams: usize,
}

/// Counters of a gateway since it started.
#[derive(Default, Debug)]
pub struct Counters {
    /// Messages published through it.
    pub published: AtomicU64,
    /// Requests sent through it.
    pub requests: AtomicU64,
    /// Messages handed to SSE and WebSocket clients.
    pub streamed: AtomicU64,
    /// Lag notices handed to them (a client too slow for its subscription).
    pub lag_notices: AtomicU64,
    /// Messages those notices said were missed.
    pub missed: AtomicU64,
}

/// The state shared by every handler.
pub struct Gateway {
    /// The bus, through its policy layer.
    pub bus: PolicyBus,
    /// Who may call.
    pub auth: Authenticator,
    /// Largest body accepted.
    pub max_payload: usize,
    /// Open SSE and WebSocket connections (permits).
    pub streams: Arc<Semaphore>,
    /// Most streams open at once.
    pub max_streams: usize,
    /// Counters.
    pub counters: Counters,
    /// Dead letters the admin API holds.
    pub admin: admin::AdminState,
    shutdown: watch::Sender<bool>,
}

impl Gateway {
    /// A gateway over `options.bus`.
    pub fn new(options: Options) -> Arc<Self> {
        Arc::new(Gateway {
            bus: options.bus,
            auth: options.auth,
            max_payload: options.max_payload,
            streams: Arc::new(Semaphore::new(options.max_streams)),
            max_streams: options.max_streams,
            counters: Counters::default(),
            admin: admin::AdminState::default(),
            shutdown: watch::channel(false).0,
        })
    }

    /// Ends every SSE and WebSocket stream (graceful shutdown: the HTTP server then
    /// finishes the calls in flight).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves when [`Gateway::shut_down`] was called.
    pub fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.shutdown.subscribe();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// Every route of the gateway.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::new()
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/publish/{subject}", post(http::publish))
        .route("/v1/request/{subject}", post(http::request))
        .route("/v1/subscribe/{pattern}", get(sse::subscribe))
        .route("/v1/ws", get(ws::upgrade))
        .merge(admin::routes())
        .route("/", get(admin::page_index))
        .route("/admin/{file}", get(admin::page_file))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::disable())
        .with_state(gw)
}

/// Serves `gw` on `listener` until `gw.shut_down()`; open streams end first, then the
/// calls in flight finish.
pub async fn serve(listener: tokio::net::TcpListener, gw: Arc<Gateway>) -> std::io::Result<()> {
    let stopping = gw.stopping();
    axum::serve(listener, router(gw))
        .with_graceful_shutdown(stopping)
        .await
}
