//! A real round trip on a plain async-nats connection, for tests that order a plain
//! client's subscriptions or publishes before a bus's (apart from `nats_server.rs`, which
//! crates without async-nats include too).

use std::time::Duration;

use futures_util::StreamExt;

/// A real round trip on a plain async-nats connection: when it returns, the server has
/// processed everything `client` sent before (subscriptions included) and routed what it
/// published. async-nats' `flush` only empties the socket buffer, so a bus on another
/// connection could still reach the server first (a CI run failed on that once, in
/// service.rs). busbar's own `flush` is a round trip already.
pub(crate) async fn round_trip(client: &async_nats::Client) {
    let inbox = client.new_inbox();
    let mut echo = client.subscribe(inbox.clone()).await.unwrap();
    client.publish(inbox, bytes::Bytes::new()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), echo.next())
        .await
        .expect("the server echoed nothing within 10 s")
        .expect("the echo subscription ended");
}
