//! The parts of Alipay's open API this service speaks: signing an `alipay.trade.page.pay`
//! request with the merchant's key, verifying the signature of Alipay's asynchronous
//! notification with Alipay's public key, and calling the gateway for `alipay.trade.query` and
//! `alipay.trade.refund` ([`Gateway::query_trade`], [`Gateway::refund_trade`]). All of it is RSA2:
//! RSA PKCS#1 v1.5 over SHA-256 (SHA256withRSA), base64-encoded.
//!
//! The string signed is the parameters sorted by key and joined as `k=v` with `&`, values not
//! URL-encoded: for a request every non-empty parameter except `sign`; for a notification every
//! parameter except `sign` and `sign_type`. A gateway answer is
//! `{"<method>_response": {...}, "sign": "..."}`, signed over the exact JSON text of the
//! `*_response` value; it is verified before anything in it is believed.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::Verifier;
use sha2::Sha256;

use super::sign::{private_key, public_key, sign_request, signed_response_content};
use crate::domain::{Civil, yuan};
use crate::error::Error;
use crate::settings::PaymentSettings;

/// The API method of a desktop-web payment page.
pub const METHOD_PAGE_PAY: &str = "alipay.trade.page.pay";
/// The product code `alipay.trade.page.pay` requires.
pub const PRODUCT_CODE: &str = "FAST_INSTANT_TRADE_PAY";
/// Alipay reads `timestamp` as Beijing time (UTC+8).
pub(super) const BEIJING_OFFSET_SECS: i64 = 8 * 3_600;

/// The API method that asks for a trade's status.
pub const METHOD_QUERY: &str = "alipay.trade.query";
/// The API method that refunds (part of) a trade.
pub const METHOD_REFUND: &str = "alipay.trade.refund";
/// How long one gateway call may take.
pub const GATEWAY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The merchant side: what signs page-pay requests.
pub(super) struct Merchant {
    pub(super) app_id: String,
    pub(super) gateway: String,
    pub(super) notify_url: String,
    pub(super) seller_id: String,
    pub(super) key: SigningKey<Sha256>,
}

/// What `alipay.trade.query` says about an order's trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TradeStatus {
    /// `TRADE_SUCCESS` or `TRADE_FINISHED`: paid `amount_cents` under Alipay's `trade_no`.
    Paid {
        /// Alipay's trade number.
        trade_no: String,
        /// `total_amount` in cents.
        amount_cents: i64,
    },
    /// `WAIT_BUYER_PAY`, or no trade yet (`ACQ.TRADE_NOT_EXIST`: the buyer has not opened the
    /// pay page).
    Unpaid,
    /// `TRADE_CLOSED`: closed unpaid, or fully refunded.
    Closed,
}

/// What `alipay.trade.refund` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Refunded (now, or by an earlier request with the same `out_request_no`).
    Refunded,
    /// Alipay refused it (a business error: nothing was refunded); its `sub_code`.
    Refused(String),
}

/// A gateway call that did not give a verified answer: nothing can be concluded from it (the
/// request may or may not have been carried out).
#[derive(Debug, thiserror::Error)]
#[error("alipay gateway: {0}")]
pub struct GatewayError(pub String);

/// What a notification's signature check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by Alipay for our app.
    Verified,
    /// No Alipay public key is configured: nothing can be verified.
    NotConfigured,
    /// Missing, malformed or wrong signature, or not RSA2.
    BadSignature,
    /// Correctly signed, but for another merchant app.
    OtherApp,
}

/// Alipay's gateway as configured: either side may be missing (see [`Gateway::from_settings`]).
pub struct Gateway {
    pub(super) merchant: Option<Merchant>,
    pub(super) alipay_key: Option<VerifyingKey<Sha256>>,
    http: reqwest::Client,
}

impl fmt::Debug for Gateway {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gateway")
            .field("app_id", &self.merchant.as_ref().map(|m| m.app_id.as_str()))
            .field("can_sign", &self.merchant.is_some())
            .field("can_verify", &self.alipay_key.is_some())
            .finish()
    }
}

/// Why a gateway call gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Not sent: Alipay is not configured, or signing failed.
    #[error(transparent)]
    Local(Error),
    /// Sent, but no verified answer came back.
    #[error(transparent)]
    Gateway(GatewayError),
}

impl From<CallError> for Error {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Local(e) => e,
            CallError::Gateway(e) => Error::Gateway(e.0),
        }
    }
}

impl Gateway {
    /// Reads `payment.*`. Page payments need the app id and the private key; notifications
    /// need Alipay's public key. A side left empty is off (its RPC says so); a key that is set
    /// but unreadable is a start-up error naming the setting (never showing the key).
    pub fn from_settings(s: &PaymentSettings) -> anyhow::Result<Gateway> {
        let gateway = s.alipay_gateway.trim();
        if !(gateway.starts_with("https://") || gateway.starts_with("http://")) {
            anyhow::bail!("invalid configuration: `payment.alipay_gateway` must be an http(s) URL");
        }
        let merchant = match (
            s.alipay_app_id.trim(),
            s.alipay_private_key_pem.trim().is_empty(),
        ) {
            ("", true) => None,
            ("", false) => anyhow::bail!(
                "invalid configuration: `payment.alipay_app_id` is required with `payment.alipay_private_key_pem`"
            ),
            (_, true) => anyhow::bail!(
                "invalid configuration: `payment.alipay_private_key_pem` is required with `payment.alipay_app_id`"
            ),
            (app_id, false) => {
                let key = private_key(&s.alipay_private_key_pem).map_err(|e| {
                    anyhow::anyhow!(
                        "invalid configuration: `payment.alipay_private_key_pem` is not an RSA PKCS#8 private key: {e}"
                    )
                })?;
                Some(Merchant {
                    app_id: app_id.to_string(),
                    gateway: gateway.to_string(),
                    notify_url: s.alipay_notify_url.trim().to_string(),
                    seller_id: s.alipay_seller_id.trim().to_string(),
                    key: SigningKey::<Sha256>::new(key),
                })
            }
        };
        let alipay_key = match s.alipay_public_key_pem.trim() {
            "" => None,
            text => Some(VerifyingKey::<Sha256>::new(public_key(text).map_err(|e| {
                anyhow::anyhow!(
                    "invalid configuration: `payment.alipay_public_key_pem` is not an RSA public key: {e}"
                )
            })?)),
        };
        let http = mall_common::http::client()
            .timeout(GATEWAY_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("alipay http client: {e}"))?;
        Ok(Gateway {
            merchant,
            alipay_key,
            http,
        })
    }

    /// True when the gateway can be called: the merchant side (to sign) and Alipay's public
    /// key (to verify the answers) are both configured.
    pub fn can_call(&self) -> bool {
        self.merchant.is_some() && self.alipay_key.is_some()
    }

    /// The configured merchant app id (empty when Alipay is off).
    pub fn app_id(&self) -> &str {
        self.merchant.as_ref().map_or("", |m| m.app_id.as_str())
    }

    /// The configured seller id (`payment.alipay_seller_id`; empty: not checked).
    pub fn seller_id(&self) -> &str {
        self.merchant.as_ref().map_or("", |m| m.seller_id.as_str())
    }

    /// The common parameters of a gateway request for `method` with `biz_content`, signed.
    fn signed_request(
        &self,
        method: &str,
        biz_content: &serde_json::Value,
        now: i64,
    ) -> Result<BTreeMap<String, String>, Error> {
        let merchant = self.merchant.as_ref().ok_or(Error::AlipayNotConfigured)?;
        let timestamp = Civil::from_unix(now.saturating_add(BEIJING_OFFSET_SECS)).format();
        let mut params: BTreeMap<String, String> = [
            ("app_id", merchant.app_id.clone()),
            ("method", method.to_string()),
            ("format", "JSON".to_string()),
            ("charset", "utf-8".to_string()),
            ("sign_type", "RSA2".to_string()),
            ("timestamp", timestamp),
            ("version", "1.0".to_string()),
            ("biz_content", biz_content.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        sign_request(&merchant.key, &mut params)?;
        Ok(params)
    }

    /// Calls `method` on the gateway and returns its verified `*_response` object.
    async fn call(
        &self,
        method: &str,
        biz_content: serde_json::Value,
    ) -> Result<serde_json::Value, CallError> {
        let merchant = self
            .merchant
            .as_ref()
            .ok_or(CallError::Local(Error::AlipayNotConfigured))?;
        let key = self
            .alipay_key
            .as_ref()
            .ok_or(CallError::Local(Error::AlipayNotConfigured))?;
        let params = self
            .signed_request(method, &biz_content, mall_types::time::unix_secs())
            .map_err(CallError::Local)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let gateway_err = |e: String| CallError::Gateway(GatewayError(e));
        let resp = self
            .http
            .post(&merchant.gateway)
            .header(
                "content-type",
                "application/x-www-form-urlencoded;charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .map_err(|e| gateway_err(format!("{method}: {e}")))?;
        if !resp.status().is_success() {
            return Err(gateway_err(format!("{method}: HTTP {}", resp.status())));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| gateway_err(format!("{method}: reading the answer: {e}")))?;
        let response_key = format!("\"{}_response\"", method.replace('.', "_"));
        let content = signed_response_content(&text, &response_key)
            .or_else(|| signed_response_content(&text, "\"error_response\""))
            .ok_or_else(|| gateway_err(format!("{method}: no signed response in the answer")))?;
        let outer: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| gateway_err(format!("{method}: the answer is not JSON")))?;
        let sign = outer
            .get("sign")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| gateway_err(format!("{method}: unsigned answer")))?;
        let verified = base64::engine::general_purpose::STANDARD
            .decode(sign.trim())
            .ok()
            .and_then(|b| Signature::try_from(b.as_slice()).ok())
            .is_some_and(|sig| key.verify(content.as_bytes(), &sig).is_ok());
        if !verified {
            return Err(gateway_err(format!(
                "{method}: bad signature on the answer"
            )));
        }
        serde_json::from_str(content)
            .map_err(|_| gateway_err(format!("{method}: the response is not an object")))
    }

    /// `alipay.trade.query` for the trade of `order_id` (`out_trade_no`).
    pub async fn query_trade(&self, order_id: &str) -> Result<TradeStatus, CallError> {
        let r = self
            .call(
                METHOD_QUERY,
                serde_json::json!({ "out_trade_no": order_id }),
            )
            .await?;
        let field = |k: &str| {
            r.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        match field("code") {
            "10000" => {}
            _ if field("sub_code") == "ACQ.TRADE_NOT_EXIST" => return Ok(TradeStatus::Unpaid),
            code => {
                return Err(CallError::Gateway(GatewayError(format!(
                    "{METHOD_QUERY}: code {code} {}",
                    field("sub_code")
                ))));
            }
        }
        if field("out_trade_no") != order_id {
            return Err(CallError::Gateway(GatewayError(format!(
                "{METHOD_QUERY}: the answer is about another trade"
            ))));
        }
        Ok(match field("trade_status") {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                let amount_cents = crate::domain::cents_from_yuan(field("total_amount"))
                    .ok_or_else(|| {
                        CallError::Gateway(GatewayError(format!(
                            "{METHOD_QUERY}: total_amount is not an amount"
                        )))
                    })?;
                TradeStatus::Paid {
                    trade_no: field("trade_no").to_string(),
                    amount_cents,
                }
            }
            "TRADE_CLOSED" => TradeStatus::Closed,
            _ => TradeStatus::Unpaid,
        })
    }

    /// `alipay.trade.refund` of `amount_cents` of `order_id`'s trade as refund request
    /// `out_request_no` (Alipay refunds one request number once, so a retry is safe).
    pub async fn refund_trade(
        &self,
        order_id: &str,
        amount_cents: i64,
        out_request_no: &str,
        reason: &str,
    ) -> Result<RefundOutcome, CallError> {
        let mut biz = serde_json::json!({
            "out_trade_no": order_id,
            "refund_amount": yuan(amount_cents),
            "out_request_no": out_request_no,
        });
        if !reason.is_empty() {
            biz["refund_reason"] = serde_json::Value::String(reason.to_string());
        }
        let r = self.call(METHOD_REFUND, biz).await?;
        let field = |k: &str| {
            r.get(k)
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
        };
        match field("code") {
            "10000" => Ok(RefundOutcome::Refunded),
            // 40004: a business refusal (nothing refunded). 20000 (service busy) and anything
            // else leave the outcome unknown.
            "40004" => Ok(RefundOutcome::Refused(field("sub_code").to_string())),
            code => Err(CallError::Gateway(GatewayError(format!(
                "{METHOD_REFUND}: code {code} {}",
                field("sub_code")
            )))),
        }
    }

    /// True when page-pay requests can be signed (app id and private key configured).
    pub fn can_sign(&self) -> bool {
        self.merchant.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_keys_fail_start_up_without_echoing_them() {
        let mut settings = crate::settings::default_settings().ext.payment;
        settings.alipay_app_id = "2021000000000000".into();
        settings.alipay_private_key_pem = "not-a-key-SECRETVALUE".into();
        let err = Gateway::from_settings(&settings).unwrap_err().to_string();
        assert!(err.contains("payment.alipay_private_key_pem"), "{err}");
        assert!(!err.contains("SECRETVALUE"), "{err}");
    }
}
