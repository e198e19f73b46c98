//! Payment's settings: the `payment` section beside the platform's, its defaults, and the checks
//! `build` makes before binding anything. A leaf: the rooms that need a setting import it from
//! here, never from `lib.rs`.

use std::fmt;
use std::time::Duration;

use mall_common::config;
use mall_types::ServiceName;
use serde::{Deserialize, Serialize};

/// The service name used in config, discovery and the database URL.
pub const NAME: &str = ServiceName::Payment.as_str();

/// Alipay's sandbox gateway, the default.
pub const ALIPAY_SANDBOX_GATEWAY: &str = "https://openapi-sandbox.dl.alipaydev.com/gateway.do";

/// The default path of the Alipay notify endpoint on the admin port.
pub const DEFAULT_NOTIFY_PATH: &str = "/alipay/notify";

/// Payment's own settings, the `payment` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Extra {
    /// `payment.*`
    pub payment: PaymentSettings,
}

/// `payment.*`. Alipay is off while its keys are empty: AlipayCharge then answers
/// `FAILED_PRECONDITION` and AlipayNotify `accepted = false`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PaymentSettings {
    /// Alipay's gateway (sandbox by default; `https://openapi.alipay.com/gateway.do` live).
    pub alipay_gateway: String,
    /// The merchant app id. Alipay's ids are all digits, which YAML reads as a number when
    /// unquoted; both forms are accepted.
    #[serde(deserialize_with = "string_or_number")]
    pub alipay_app_id: String,
    /// The app's RSA private key, PKCS#8 PEM (a secret: give it through
    /// `MALL__PAYMENT__ALIPAY_PRIVATE_KEY_PEM`; never logged).
    pub alipay_private_key_pem: String,
    /// Alipay's RSA public key (SubjectPublicKeyInfo PEM), to verify notifications.
    pub alipay_public_key_pem: String,
    /// Where Alipay posts payment notifications (empty: none sent): the public URL of this
    /// service's notify endpoint (`alipay_notify_path` on the admin port, behind the
    /// operator's HTTPS proxy).
    pub alipay_notify_url: String,
    /// The path of the notify endpoint on the admin port (`POST`, form-encoded, UTF-8).
    pub alipay_notify_path: String,
    /// The merchant's seller id (Alipay's `2088…` partner id): when set, notifications for any
    /// other `seller_id` are refused.
    #[serde(deserialize_with = "string_or_number")]
    pub alipay_seller_id: String,
    /// How long after a pay link `alipay.trade.query` is first asked about its trade; each
    /// unpaid answer doubles the wait (at most [`crate::alipay::MAX_QUERY_BACKOFF`]).
    #[serde(with = "mall_common::config::duration")]
    pub alipay_query_after: Duration,
    /// For how long after a pay link its trade is asked about (then only the notification, the
    /// order sweeper's question, or a late payment's refund remain).
    #[serde(with = "mall_common::config::duration")]
    pub alipay_query_for: Duration,
    /// How long one order's pay link is reused.
    #[serde(with = "mall_common::config::duration")]
    pub pay_url_cache: Duration,
    /// How often the reconciliation worker looks for payments of cancelled orders.
    #[serde(with = "mall_common::config::duration")]
    pub reconcile_interval: Duration,
    /// How old a payment must be before the worker asks about its order (younger ones are
    /// still in their checkout).
    #[serde(with = "mall_common::config::duration")]
    pub reconcile_after: Duration,
}

/// A string setting that may arrive as a number (`alipay_app_id: 2021...` unquoted in YAML).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Unsigned(u64),
        Signed(i64),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::Text(s) => s,
        Raw::Unsigned(n) => n.to_string(),
        Raw::Signed(n) => n.to_string(),
    })
}

impl fmt::Debug for PaymentSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &str| if v.trim().is_empty() { "" } else { "***" };
        f.debug_struct("PaymentSettings")
            .field("alipay_gateway", &self.alipay_gateway)
            .field("alipay_app_id", &self.alipay_app_id)
            .field("alipay_private_key_pem", &set(&self.alipay_private_key_pem))
            .field(
                "alipay_public_key_pem",
                &if self.alipay_public_key_pem.trim().is_empty() {
                    ""
                } else {
                    "<set>"
                },
            )
            .field("alipay_notify_url", &self.alipay_notify_url)
            .field("alipay_notify_path", &self.alipay_notify_path)
            .field("alipay_seller_id", &self.alipay_seller_id)
            .field("alipay_query_after", &self.alipay_query_after)
            .field("alipay_query_for", &self.alipay_query_for)
            .field("pay_url_cache", &self.pay_url_cache)
            .field("reconcile_interval", &self.reconcile_interval)
            .field("reconcile_after", &self.reconcile_after)
            .finish()
    }
}

impl config::Validate for Extra {
    fn validate(&self, _: config::Profile) -> Result<(), config::ConfigError> {
        self.payment.check()
    }
}

/// Payment's settings: the platform sections plus `payment`.
pub type Settings = config::Settings<Extra>;

/// The built-in defaults.
pub fn default_settings() -> Settings {
    config::Settings::with_ext(
        NAME,
        Extra {
            payment: PaymentSettings {
                alipay_gateway: ALIPAY_SANDBOX_GATEWAY.into(),
                alipay_app_id: String::new(),
                alipay_private_key_pem: String::new(),
                alipay_public_key_pem: String::new(),
                alipay_notify_url: String::new(),
                alipay_notify_path: DEFAULT_NOTIFY_PATH.into(),
                alipay_seller_id: String::new(),
                alipay_query_after: Duration::from_secs(10),
                alipay_query_for: Duration::from_secs(30 * 60),
                pay_url_cache: Duration::from_secs(600),
                reconcile_interval: Duration::from_secs(30),
                reconcile_after: Duration::from_secs(120),
            },
        },
    )
}

/// Loads the settings from the process (`--config`, `MALL_CONFIG`, the config centre, `MALL__*`).
pub async fn load_settings() -> Result<Settings, config::ConfigError> {
    config::load_process(NAME, default_settings()).await
}

impl PaymentSettings {
    /// The rules of `payment.*` beyond their types (checked when the settings load, and again
    /// by `build`): a wrong value fails before any port is bound.
    pub fn check(&self) -> Result<(), config::ConfigError> {
        let at_least_1s = |d: Duration| d >= Duration::from_secs(1);
        config::ensure(
            at_least_1s(self.pay_url_cache),
            "payment.pay_url_cache",
            "must be at least 1s",
        )?;
        config::ensure(
            at_least_1s(self.reconcile_interval),
            "payment.reconcile_interval",
            "must be at least 1s",
        )?;
        config::ensure(
            self.alipay_notify_path.starts_with('/') && self.alipay_notify_path.len() >= 2,
            "payment.alipay_notify_path",
            "must be a path such as /alipay/notify",
        )?;
        config::ensure(
            at_least_1s(self.alipay_query_after),
            "payment.alipay_query_after",
            "must be at least 1s",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_and_each_rule_names_its_key() {
        let defaults = default_settings().ext;
        assert!(config::Validate::validate(&defaults, config::Profile::Dev).is_ok());
        type Break = fn(&mut PaymentSettings);
        let cases: [(&str, Break); 4] = [
            ("payment.pay_url_cache", |p| {
                p.pay_url_cache = Duration::ZERO
            }),
            ("payment.reconcile_interval", |p| {
                p.reconcile_interval = Duration::from_millis(500)
            }),
            ("payment.alipay_notify_path", |p| {
                p.alipay_notify_path = "notify".into()
            }),
            ("payment.alipay_query_after", |p| {
                p.alipay_query_after = Duration::ZERO
            }),
        ];
        for (key, break_it) in cases {
            let mut extra = default_settings().ext;
            break_it(&mut extra.payment);
            let err = config::Validate::validate(&extra, config::Profile::Dev).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }
}
