//! The HTTP endpoint a bus serves when `metrics_addr` is set: `/metrics` (OpenMetrics
//! text), `/healthz` (alive: 200 until the bus is closed) and `/readyz` (200 only while
//! connected), both with the [`Health`] as JSON. It runs on the caller's
//! tokio runtime and stops once the bus is closed or dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::bus::EventBus;
use crate::error::{Error, Result};
use crate::metrics::{ConnectionState, Health};

/// The content type of the OpenMetrics text that [`EventBus::metrics`] returns.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Bus = Weak<dyn EventBus>;

/// Binds `addr` and serves `bus`'s endpoint on the current runtime; returns the bound
/// address. Fails with `backend` when the address cannot be bound (in use, say).
pub(crate) async fn serve(addr: SocketAddr, bus: &Arc<dyn EventBus>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Backend {
            message: format!("serving metrics_addr {addr}: {e}"),
            source: Some(Box::new(e)),
        })?;
    let bound = listener.local_addr().unwrap_or(addr);
    let weak = Arc::downgrade(bus);
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(weak.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(ended(weak))
            .await;
        tracing::debug!(%bound, "metrics endpoint stopped");
    });
    tracing::info!(%bound, "serving /metrics, /healthz and /readyz");
    Ok(bound)
}

/// Resolves once the bus is closed or dropped.
async fn ended(bus: Bus) {
    loop {
        match bus.upgrade() {
            Some(b) if b.health().state != ConnectionState::Closed => {}
            _ => return,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn gone() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "bus closed\n").into_response()
}

async fn metrics(State(bus): State<Bus>) -> Response {
    match bus.upgrade() {
        Some(bus) => ([(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)], bus.metrics()).into_response(),
        None => gone(),
    }
}

/// The bus's health as JSON, with `ok` when `healthy` says so and 503 otherwise.
fn health(bus: Bus, healthy: fn(&Health) -> bool) -> Response {
    let Some(bus) = bus.upgrade() else { return gone() };
    let health = bus.health();
    let status = match healthy(&health) {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        health.to_json(),
    )
        .into_response()
}

async fn healthz(State(bus): State<Bus>) -> Response {
    health(bus, |h| h.state != ConnectionState::Closed)
}

async fn readyz(State(bus): State<Bus>) -> Response {
    health(bus, Health::ready)
}
