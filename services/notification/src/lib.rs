//! The notification service (port 8007): reads order and payment events from the bus and mails
//! the customer an order confirmation (on `order.paid`), a cancellation notice
//! (`order.cancelled`) and a refund notice (`payment.refunded`), each once per event as far as
//! the customer can tell (an inbox keyed by event id, see [`consumer`]), with retries and a
//! dead-letter subject after `notification.max_attempts` failures.
//!
//! It serves no RPC of its own: its gRPC port carries health and reflection, its admin port
//! `/metrics`, `/healthz` and `/readyz`, as every service's.
//!
//! Mail goes where `notification.smtp_url` says: `smtp://host:port` (plain SMTP; STARTTLS and
//! implicit TLS are not built in — run a local relay or an in-cluster sink such as mailpit that
//! forwards), or `file://DIR` (the embedded default, `file://data/mail`: one `.eml` per mail).
//!
//! [`build`] opens the database and the bus, binds the server and starts the consumer; [`run`]
//! serves until shutdown. Tests and the `mall` fleet call `build` with port 0.

pub mod consumer;
pub mod mail;
pub mod store;

use std::time::Duration;

use mall_common::config::{self, Secret};
use mall_common::platform::Platform;
use mall_common::server::BoundServer;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Notification.as_str();

/// Default of `notification.smtp_url`: `.eml` files under `data/mail/`.
pub const DEFAULT_SMTP_URL: &str = "file://data/mail";
/// Default of `notification.from`.
pub const DEFAULT_FROM: &str = "TikTokMall <orders@tiktokmall.local>";
/// Default of `notification.max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;
/// Default of `notification.retry_backoff`.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(2);
/// Default of `notification.send_timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Notification's own settings, the `notification` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `notification.*`
    pub notification: NotificationSettings,
}

/// `notification.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationSettings {
    /// `smtp://host:port` (plain SMTP) or `file://DIR` (`.eml` files).
    pub smtp_url: String,
    /// The SMTP user (empty: no AUTH).
    #[serde(default)]
    pub smtp_username: String,
    /// The SMTP password (never logged).
    #[serde(default)]
    pub smtp_password: Secret,
    /// The sender (`Name <address>` or `address`).
    pub from: String,
    /// Attempts per event before it is dead-lettered.
    pub max_attempts: u32,
    /// The pause before the first retry (doubling, jittered, at most 5 minutes).
    #[serde(with = "mall_common::config::duration")]
    pub retry_backoff: Duration,
    /// How long one send may take.
    #[serde(with = "mall_common::config::duration")]
    pub send_timeout: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        NotificationSettings {
            smtp_url: DEFAULT_SMTP_URL.into(),
            smtp_username: String::new(),
            smtp_password: Secret::default(),
            from: DEFAULT_FROM.into(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            send_timeout: DEFAULT_SEND_TIMEOUT,
        }
    }
}

/// Notification's settings: the platform sections plus `notification`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            notification: NotificationSettings::default(),
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

impl config::Validate for Extra {
    fn validate(&self, _: config::Profile) -> Result<(), config::ConfigError> {
        let n = &self.notification;
        let url = &n.smtp_url;
        let smtp_ok = mail::smtp_authority(url).is_some();
        let file_ok = url.strip_prefix("file://").is_some_and(|d| !d.is_empty());
        config::ensure(
            smtp_ok || file_ok,
            "notification.smtp_url",
            format!(
                "`{}` is neither smtp://host:port nor file://DIR",
                config::redact_url(url)
            ),
        )?;
        config::ensure(
            n.from.parse::<lettre::message::Mailbox>().is_ok(),
            "notification.from",
            format!("`{}` is not a mail address", n.from),
        )?;
        config::ensure(
            (1..=100).contains(&n.max_attempts),
            "notification.max_attempts",
            "must be 1 to 100",
        )?;
        config::ensure(
            !n.retry_backoff.is_zero(),
            "notification.retry_backoff",
            "must be positive",
        )?;
        config::ensure(
            !n.send_timeout.is_zero(),
            "notification.send_timeout",
            "must be positive",
        )
    }
}

/// Opens the database and the bus, binds the ports and starts the consumer (it runs while the
/// server does).
pub async fn build(settings: Settings) -> anyhow::Result<BoundServer> {
    config::Validate::validate(&settings.ext, settings.profile)?;
    let platform = Platform::open(&settings, Some(&store::MIGRATIONS)).await?;
    let notifications = store::Notifications::new(platform.database()?.clone());
    let mailer = mail::Mailer::new(&settings.ext.notification)?;
    let consumer = consumer::Consumer::new(
        notifications,
        mailer,
        platform.events().await?,
        settings.ext.notification.clone(),
    );
    let mut server = platform.server(&settings);
    consumer.metrics().register(server.registry_mut());
    let bound = server.bind().await?;
    consumer.spawn(bound.shutdown_handle());
    Ok(bound)
}

/// Builds and serves until `shutdown` completes.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    mall_common::server::build_and_serve(build(settings), shutdown).await
}
