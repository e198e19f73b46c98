//! The checkout service (port 8006): the distributed transaction across cart, product, order
//! and payment, run as a saga whose progress is persisted in checkout's own database, so a
//! crashed or restarted instance drives every open saga to an end state (see [`saga`] and
//! [`recovery`]).
//!
//! [`build`] opens the database, binds the server and starts the recovery worker; [`run`] serves
//! until shutdown. Tests use [`build_with`] to wrap the saga's [`Downstream`] in one that injects
//! faults.

pub mod api;
pub mod domain;
pub mod downstream;
pub mod error;
pub mod metrics;
pub mod recovery;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use mall_common::config;
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_proto::checkout::v1::checkout_service_server::CheckoutServiceServer;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

pub use downstream::Downstream;

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Checkout.as_str();

/// Default deadline of each remote step.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// Default budget of one checkout request.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(10);
/// Default interval of the recovery worker.
pub const DEFAULT_RECOVERY_INTERVAL: Duration = Duration::from_secs(5);
/// Default delay before a saga whose step failed is retried by the worker.
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(2);
/// The built-in development key of request fingerprints; the `online` profile refuses it.
pub const DEFAULT_FINGERPRINT_SECRET: &str =
    "tiktokmall-development-fingerprint-key-do-not-use-online";
/// Shortest fingerprint secret, in bytes (as for the token signing key).
pub const MIN_FINGERPRINT_SECRET_BYTES: usize = config::MIN_SECRET_BYTES;

/// Checkout's own settings, the `checkout` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `checkout.*`
    pub checkout: CheckoutSettings,
}

/// `checkout.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckoutSettings {
    /// Deadline of each remote call.
    #[serde(with = "mall_common::config::duration")]
    pub step_timeout: Duration,
    /// Budget of the forward path of one checkout.
    #[serde(with = "mall_common::config::duration")]
    pub budget: Duration,
    /// How often the recovery worker looks for abandoned sagas.
    #[serde(with = "mall_common::config::duration")]
    pub recovery_interval: Duration,
    /// How long after a failed step the worker retries a saga.
    #[serde(with = "mall_common::config::duration")]
    pub retry_delay: Duration,
    /// Secret keying the stored request fingerprints (they cover the card number), so a leaked
    /// `sagas` table cannot be brute-forced back to cards. Its own key, not the fleet's token
    /// signing key: rotating one must not touch the other. From the environment in production
    /// (`MALL__CHECKOUT__FINGERPRINT_SECRET`).
    pub fingerprint_secret: config::Secret,
}

impl config::Validate for Extra {
    /// The timing keys (positive, the step within the budget) and `checkout.fingerprint_secret`:
    /// long enough, and not the development key online.
    fn validate(&self, profile: config::Profile) -> Result<(), config::ConfigError> {
        timing(&self.checkout)
            .map_err(|e| config::ConfigError::invalid("checkout", e.to_string()))?;
        let secret = self.checkout.fingerprint_secret.expose();
        config::ensure(
            secret.len() >= MIN_FINGERPRINT_SECRET_BYTES,
            "checkout.fingerprint_secret",
            format!("must be at least {MIN_FINGERPRINT_SECRET_BYTES} bytes"),
        )?;
        config::ensure(
            !(profile == config::Profile::Online && secret == DEFAULT_FINGERPRINT_SECRET),
            "checkout.fingerprint_secret",
            "the online profile refuses the built-in development key; \
             set MALL__CHECKOUT__FINGERPRINT_SECRET",
        )
    }
}

/// Checkout's settings: the platform sections plus `checkout`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            checkout: CheckoutSettings {
                step_timeout: DEFAULT_STEP_TIMEOUT,
                budget: DEFAULT_BUDGET,
                recovery_interval: DEFAULT_RECOVERY_INTERVAL,
                retry_delay: DEFAULT_RETRY_DELAY,
                fingerprint_secret: config::Secret::new(DEFAULT_FINGERPRINT_SECRET),
            },
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

/// Remote steps a request may still take once its budget is spent: the lookup of a charge whose
/// answer was lost, every `MarkOrderPaid` attempt, then a full compensation (place-or-find the
/// order, cancel it, read it back, release the stock, read the payment, refund it).
const POST_BUDGET_STEPS: u32 = 1 + saga::MARK_PAID_ATTEMPTS + 6;

/// The sleeps between `MarkOrderPaid` attempts, all together.
fn mark_paid_backoff() -> Duration {
    (1..saga::MARK_PAID_ATTEMPTS)
        .map(|attempt| saga::MARK_PAID_BACKOFF * 2u32.pow(attempt - 1))
        .sum()
}

/// Checks the `checkout` section and derives the saga's timing. The lease covers a whole
/// request (budget, then the post-charge steps and compensation), so the worker never takes a
/// saga a live request still drives.
fn timing(c: &CheckoutSettings) -> anyhow::Result<saga::Timing> {
    for (key, value) in [
        ("checkout.step_timeout", c.step_timeout),
        ("checkout.budget", c.budget),
        ("checkout.recovery_interval", c.recovery_interval),
        ("checkout.retry_delay", c.retry_delay),
    ] {
        if value.is_zero() {
            anyhow::bail!("invalid configuration: `{key}`: must be positive");
        }
    }
    if c.step_timeout > c.budget {
        anyhow::bail!(
            "invalid configuration: `checkout.step_timeout`: must not exceed checkout.budget"
        );
    }
    Ok(saga::Timing {
        step: c.step_timeout,
        budget: c.budget,
        lease: c.budget + c.step_timeout * POST_BUDGET_STEPS + mark_paid_backoff(),
        retry_delay: c.retry_delay,
    })
}

/// The keys of `checkout.*` a config-centre reload applies: the saga's timing (new runs take
/// it; a running one keeps its own). `recovery_interval` needs a restart.
pub const RELOADABLE: &[&str] = &[
    "checkout.step_timeout",
    "checkout.budget",
    "checkout.retry_delay",
];

fn reload_timing(engine: &saga::Engine, loaded: &config::centre::Loaded) {
    let section = loaded.tree.get("checkout").cloned().unwrap_or_default();
    // The reload validated the whole document (`Extra::validate` checks the timing).
    match serde_json::from_value::<CheckoutSettings>(section)
        .map_err(anyhow::Error::from)
        .and_then(|c| timing(&c))
    {
        Ok(t) => engine.set_timing(t),
        Err(e) => tracing::error!(error = %e, "checkout timing not applied"),
    }
}

/// Opens the database, binds the ports and starts the recovery worker.
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    build_with(settings, |grpc| grpc).await
}

/// [`build`] with the saga's remote calls passed through `wrap` first: tests wrap the gRPC
/// implementation in a [`Downstream`] that injects faults; production passes it on unchanged.
pub async fn build_with(
    settings: Settings,
    wrap: impl FnOnce(Arc<dyn Downstream>) -> Arc<dyn Downstream>,
) -> anyhow::Result<BoundServer> {
    let timing = timing(&settings.ext.checkout)?;
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let sagas = store::Sagas::new(platform.database()?.clone());
    let grpc = downstream::grpc::GrpcDownstream::new(platform.clients.clone());
    let down = wrap(Arc::new(grpc));
    let mut builder = platform.server(&settings);
    let metrics = metrics::Metrics::register(builder.registry_mut());
    let engine = saga::Engine::new(
        sagas,
        down,
        metrics,
        timing,
        settings
            .ext
            .checkout
            .fingerprint_secret
            .expose()
            .to_string(),
    );
    let service = api::CheckoutApi::new(engine.clone(), platform.features.clone());
    let reloaded = engine.clone();
    let bound = builder
        .on_reload(RELOADABLE, move |loaded| reload_timing(&reloaded, loaded))
        .add_service(CheckoutServiceServer::new(service), api::ACCESS)
        .bind()
        .await?;
    recovery::Recovery::new(engine).spawn(
        settings.ext.checkout.recovery_interval,
        bound.shutdown_handle(),
    );
    Ok(bound)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use config::Validate;

    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Settings, config::ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        config::load(
            NAME,
            default_settings(),
            &config::Source {
                file: None,
                env,
                ..Default::default()
            },
        )
    }

    #[test]
    fn the_fingerprint_secret_is_checkout_s_own_and_never_printed() {
        let secret = "a-fingerprint-key-of-at-least-32-bytes";
        let settings = load(&[("MALL__CHECKOUT__FINGERPRINT_SECRET", secret)]).expect("settings");
        let own = settings.ext.checkout.fingerprint_secret.expose();
        assert_eq!(own, secret);
        assert_ne!(own, settings.auth.jwt_secret.expose());
        assert!(!format!("{settings:?}").contains(secret));
        // The development default is its own key too.
        let dev = load(&[]).expect("defaults");
        let own = dev.ext.checkout.fingerprint_secret.expose();
        assert_eq!(own, DEFAULT_FINGERPRINT_SECRET);
        assert_ne!(own, config::DEFAULT_JWT_SECRET);
    }

    #[test]
    fn short_secrets_and_the_development_key_online_are_refused() {
        let err = load(&[("MALL__CHECKOUT__FINGERPRINT_SECRET", "too-short")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`checkout.fingerprint_secret`"), "{err}");
        assert!(err.contains("at least 32 bytes"), "{err}");
        let err = load(&[("MALL__CHECKOUT__FINGERPRINT_SECRT", "x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("did you mean `checkout.fingerprint_secret`"),
            "{err}"
        );

        let mut ext = default_settings().ext;
        let err = ext
            .validate(config::Profile::Online)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`checkout.fingerprint_secret`"), "{err}");
        assert!(err.contains("MALL__CHECKOUT__FINGERPRINT_SECRET"), "{err}");
        assert!(ext.validate(config::Profile::Dev).is_ok());
        ext.checkout.fingerprint_secret =
            config::Secret::new("an-online-fingerprint-key-of-32-bytes+");
        assert!(ext.validate(config::Profile::Online).is_ok());
    }
}
