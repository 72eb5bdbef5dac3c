//! [`connect`]: builds the backend a [`Config`] names, then wraps it once in the policy
//! layer when the configuration asks for one (docs/design.md §6).

use std::sync::Arc;

use crate::bus::EventBus;
use crate::config::Config;
use crate::error::Result;

/// Builds the bus that `config` describes.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let bus = busbar::connect(busbar::Config::default()).await?;
/// let mut sub = bus.subscribe("greetings.*").await?;
/// bus.publish("greetings.en", "hello".into()).await?;
/// let msg = sub.next().await.unwrap()?;
/// assert_eq!(&msg.data()[..], b"hello");
/// # Ok::<(), busbar::Error>(()) }).unwrap();
/// ```
pub async fn connect(config: Config) -> Result<Arc<dyn EventBus>> {
    config.check()?;
    let backend = crate::backend::connect(&config).await?;
    if crate::policy::configured(&config) {
        // A policy, key ring, encryption or audit log wraps the backend (docs/design.md §6).
        return Ok(Arc::new(crate::policy::from_config(backend, &config)?));
    }
    Ok(backend)
}

/// [`connect`] with [`Config::from_env`].
pub async fn connect_from_env() -> Result<Arc<dyn EventBus>> {
    connect(Config::from_env()?).await
}
