//! An Alipay pay link: the valid `AlipayCharge` request ([`AlipayOrder`]), the order it is
//! signed for ([`PayLinkFor`]), and the cached link that a repeat of the request reuses.

use std::time::Duration;

use mall_common::cache::SharedCache;
use mall_types::{Cents, Invalid, OrderId, UserId};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gateway::{BEIJING_OFFSET_SECS, Gateway, METHOD_PAGE_PAY, PRODUCT_CODE};
use super::sign::sign_request;
use crate::domain::{Civil, MAX_ALIPAY_CENTS, amount, yuan};
use crate::error::Error;

/// Longest Alipay `return_url` (Alipay's limit).
pub const MAX_RETURN_URL_CHARS: usize = 256;

/// A valid `AlipayCharge`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayOrder {
    /// Alipay's `out_trade_no`.
    pub order_id: OrderId,
    /// The paying user (sent as `passback_params`, returned in the notification).
    pub user_id: UserId,
    /// Positive, at most Alipay's limit; `None`: the order's total (asked from order).
    pub amount_cents: Option<Cents>,
    /// Where Alipay sends the browser back; `None` for none.
    pub return_url: Option<String>,
}

/// An order's pay link to sign: the order as the order service gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayLinkFor {
    /// `out_trade_no`.
    pub order_id: OrderId,
    /// The order's owner.
    pub user_id: UserId,
    /// The order's total.
    pub amount_cents: Cents,
    /// Where Alipay sends the browser back.
    pub return_url: Option<String>,
}

impl AlipayOrder {
    /// Validates an `AlipayCharge` request (`amount_cents` 0: the order's total).
    pub fn parse(
        order: &str,
        user: u64,
        amount_cents: i64,
        return_url: &str,
    ) -> Result<AlipayOrder, Invalid> {
        let return_url = match return_url.trim() {
            "" => None,
            url => {
                if url.len() > MAX_RETURN_URL_CHARS
                    || !(url.starts_with("https://") || url.starts_with("http://"))
                    || url.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(Invalid::new(
                        "return_url",
                        format!(
                            "must be an http(s) URL of at most {MAX_RETURN_URL_CHARS} characters"
                        ),
                    ));
                }
                Some(url.to_string())
            }
        };
        Ok(AlipayOrder {
            order_id: OrderId::parse(order, "order_id")?,
            user_id: UserId::parse(user, "user_id")?,
            amount_cents: match amount_cents {
                0 => None,
                cents => Some(amount(cents, MAX_ALIPAY_CENTS)?),
            },
            return_url,
        })
    }
}

/// A cached Alipay page-pay link: who it is for and how much, so a repeat can be checked. The
/// cache holds it as JSON, so its fields keep their plain stored types.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PayLink {
    user_id: i64,
    amount_cents: i64,
    url: String,
}

impl PayLink {
    /// A cached link answers a request for the same user and amount only.
    fn answer(self, order: &PayLinkFor) -> Result<String, Error> {
        if self.user_id != order.user_id.db() {
            return Err(Error::OtherUsersOrder(order.order_id.to_string()));
        }
        if self.amount_cents != order.amount_cents.get() {
            return Err(Error::PayLinkConflict(order.order_id.to_string()));
        }
        Ok(self.url)
    }
}

/// The pay links of orders, each reused for `ttl`.
#[derive(Clone)]
pub struct PayLinks {
    cache: SharedCache,
    ttl: Duration,
}

fn key(order_id: &OrderId) -> String {
    format!("payment:v1:alipay_url:{order_id}")
}

impl PayLinks {
    /// Links kept in `cache` for `ttl`.
    pub fn new(cache: SharedCache, ttl: Duration) -> Self {
        PayLinks { cache, ttl }
    }

    /// The link for `order`: the cached one while it lives (for the same user and amount
    /// only), else `sign()`'s, stored so that of concurrent requests the first link stored is
    /// everyone's. Cache trouble is logged and costs only reuse: a fresh link is as good.
    pub async fn reuse_or_sign(
        &self,
        order: &PayLinkFor,
        sign: impl FnOnce() -> Result<String, Error>,
    ) -> Result<String, Error> {
        let key = key(&order.order_id);
        if let Some(link) = self.cached(&key).await {
            return link.answer(order);
        }
        let link = PayLink {
            user_id: order.user_id.db(),
            amount_cents: order.amount_cents.get(),
            url: sign()?,
        };
        let bytes = match serde_json::to_vec(&link) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode the pay link");
                return Ok(link.url);
            }
        };
        match self.cache.set_nx(&key, &bytes, self.ttl).await {
            Ok(true) => {
                tracing::info!(order = %order.order_id, amount_cents = link.amount_cents, "alipay pay link created");
                Ok(link.url)
            }
            Ok(false) => match self.cached(&key).await {
                Some(winner) => winner.answer(order),
                None => Ok(link.url),
            },
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot cache the pay link");
                Ok(link.url)
            }
        }
    }

    /// The cached link under `key`; a miss on cache trouble.
    async fn cached(&self, key: &str) -> Option<PayLink> {
        match self.cache.get(key).await {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(link) => Some(link),
                Err(e) => {
                    tracing::warn!(key, error = %e, "undecodable pay link in the cache");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(key, error = %e, "cache read failed; making a new pay link");
                None
            }
        }
    }
}

impl Gateway {
    /// The signed parameters of a page-pay request for `order`, at `now` (unix seconds).
    pub fn page_pay_params(
        &self,
        order: &PayLinkFor,
        now: i64,
    ) -> Result<BTreeMap<String, String>, Error> {
        let merchant = self.merchant.as_ref().ok_or(Error::AlipayNotConfigured)?;
        let biz_content = serde_json::json!({
            "out_trade_no": order.order_id,
            "total_amount": yuan(order.amount_cents.get()),
            "subject": format!("TikTokMall order {}", order.order_id),
            "product_code": PRODUCT_CODE,
            // Comes back in the notification: the user the payment is recorded for.
            "passback_params": order.user_id.to_string(),
        });
        let timestamp = Civil::from_unix(now.saturating_add(BEIJING_OFFSET_SECS)).format();
        let mut params: BTreeMap<String, String> = [
            ("app_id", merchant.app_id.clone()),
            ("method", METHOD_PAGE_PAY.to_string()),
            ("format", "JSON".to_string()),
            ("charset", "utf-8".to_string()),
            ("sign_type", "RSA2".to_string()),
            ("timestamp", timestamp),
            ("version", "1.0".to_string()),
            ("notify_url", merchant.notify_url.clone()),
            ("return_url", order.return_url.clone().unwrap_or_default()),
            ("biz_content", biz_content.to_string()),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        sign_request(&merchant.key, &mut params)?;
        Ok(params)
    }

    /// The URL that opens Alipay's payment page for `order`.
    pub fn page_pay_url(&self, order: &PayLinkFor, now: i64) -> Result<String, Error> {
        let merchant = self.merchant.as_ref().ok_or(Error::AlipayNotConfigured)?;
        let params = self.page_pay_params(order, now)?;
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let joiner = if merchant.gateway.contains('?') {
            '&'
        } else {
            '?'
        };
        Ok(format!("{}{joiner}{query}", merchant.gateway))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfigured_alipay_signs_no_link() {
        let settings = crate::settings::default_settings().ext.payment;
        let gateway = Gateway::from_settings(&settings).unwrap();
        let order = PayLinkFor {
            order_id: OrderId::parse("o1", "order_id").unwrap(),
            user_id: UserId::parse(7, "user_id").unwrap(),
            amount_cents: Cents::new(100).unwrap(),
            return_url: None,
        };
        assert!(matches!(
            gateway.page_pay_url(&order, 0),
            Err(Error::AlipayNotConfigured)
        ));
    }
}
