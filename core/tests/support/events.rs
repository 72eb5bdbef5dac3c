//! Waiting for a connection event in a test, without hanging.
#![allow(dead_code)]

use std::time::Duration;

use busbar::ConnectionEvent;
use tokio::sync::broadcast;

/// Waits up to `limit` for an event that `wanted` accepts, skipping the others; panics
/// past `limit` or when the events end.
pub(crate) async fn wait_for(
    events: &mut broadcast::Receiver<ConnectionEvent>,
    limit: Duration,
    wanted: impl Fn(&ConnectionEvent) -> bool,
) {
    let waiting = async {
        loop {
            match events.recv().await {
                Ok(e) if wanted(&e) => return,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("connection events ended: {e}"),
            }
        }
    };
    tokio::time::timeout(limit, waiting)
        .await
        .expect("the connection event never came")
}
