//! Runs one check on each backend: the in-memory bus and a private nats-server.
//! A test file includes it with `#[macro_use] #[path = "support/both.rs"] mod both;`
//! next to `mod nats_server;` (support/nats_server.rs).

use std::sync::Arc;

use busbar::{Backend, Config, EventBus};

#[cfg(feature = "nats")]
use crate::nats_server::NatsServer;

/// An in-memory bus with the default configuration.
pub(crate) fn memory() -> Arc<dyn EventBus> {
    Arc::new(busbar::InMemoryBus::new(Config::default()).unwrap())
}

/// Starts a private nats-server off the async runtime's threads.
#[cfg(feature = "nats")]
pub(crate) async fn start() -> NatsServer {
    tokio::task::spawn_blocking(NatsServer::start).await.unwrap()
}

/// A NATS bus on `server` with the default configuration.
#[cfg(feature = "nats")]
pub(crate) async fn nats(server: &NatsServer) -> Arc<dyn EventBus> {
    busbar::connect(
        Config::default()
            .with_backend(Backend::Nats)
            .with_nats_url(server.url()),
    )
    .await
    .unwrap()
}

/// Runs `check` as a test on each backend (a private nats-server for NATS).
macro_rules! on_both {
    ($check:ident, $memory:ident, $nats:ident) => {
        #[tokio::test]
        async fn $memory() {
            $check(crate::both::memory()).await;
        }

        #[cfg(feature = "nats")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $nats() {
            let server = crate::both::start().await;
            $check(crate::both::nats(&server).await).await;
        }
    };
}
