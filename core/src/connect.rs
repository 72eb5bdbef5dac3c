//! [`connect`]: builds the backend a [`Config`] names, then wraps it once in the policy
//! layer when the configuration asks for one (docs/design.md §6).

use std::sync::Arc;

use crate::bus::EventBus;
use crate::config::Config;
use crate::error::Result;
use crate::policy::PolicyBus;

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
    Ok(connect_parts(config).await?.bus)
}

/// What [`connect_parts`] builds: the bus, and the same bus as its policy layer when the
/// configuration asks for one, for the calls only a policy layer has
/// ([`PolicyBus::subscribe_with`], [`PolicyBus::request_as`], [`PolicyBus::policy_stats`],
/// the audit log): what a binding holds.
#[derive(Clone)]
#[non_exhaustive]
pub struct Connected {
    /// The bus.
    pub bus: Arc<dyn EventBus>,
    /// The same bus as a [`PolicyBus`], when `config` asked for the policy layer.
    pub policy: Option<Arc<PolicyBus>>,
}

/// [`connect`], keeping the policy layer's own type beside the bus.
pub async fn connect_parts(config: Config) -> Result<Connected> {
    config.check()?;
    let mut bus = crate::backend::connect(&config).await?;
    if crate::resilience::configured(&config) {
        // A breaker, rate limits or retries wrap the backend (§4, §5), under the policy
        // layer, so calls made as a principal (`request_as`, `subscribe_as`) pass them too.
        bus = crate::resilience::wrap(bus, &config);
    }
    let policy = if crate::policy::configured(&config) {
        // A policy, key ring, encryption or audit log wraps the rest (docs/design.md §6).
        let policy = Arc::new(crate::policy::from_config(bus, &config)?);
        bus = policy.clone();
        Some(policy)
    } else {
        None
    };
    tracing::info!(backend = %bus.backend(), source = %config.source, "bus connected");
    if let Some(addr) = config.metrics_addr {
        if let Err(e) = serve_metrics(addr, &bus).await {
            let _ = bus.close().await;
            return Err(e);
        }
    }
    Ok(Connected { bus, policy })
}

#[cfg(feature = "metrics-endpoint")]
async fn serve_metrics(addr: std::net::SocketAddr, bus: &Arc<dyn EventBus>) -> Result<()> {
    crate::endpoint::serve(addr, bus).await.map(drop)
}

#[cfg(not(feature = "metrics-endpoint"))]
async fn serve_metrics(addr: std::net::SocketAddr, _bus: &Arc<dyn EventBus>) -> Result<()> {
    Err(crate::error::Error::InvalidArgument(format!(
        "metrics_addr {addr} needs busbar built with the \"metrics-endpoint\" feature; read bus.metrics() instead"
    )))
}

/// [`connect`] with [`Config::from_env`].
pub async fn connect_from_env() -> Result<Arc<dyn EventBus>> {
    connect(Config::from_env()?).await
}
