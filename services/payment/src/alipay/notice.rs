//! An Alipay notification, and the three questions it answers (hyperswitch's `IncomingWebhook`):
//! is it really from Alipay for this merchant ([`Gateway::verify_notification`], then the seller
//! check in [`AlipayPayment::is_for_seller`]), what does it refer to (`out_trade_no`), and what happened
//! (`trade_status`: paid, or nothing to record).

use std::collections::BTreeMap;

use mall_types::{Cents, Invalid, OrderId, TransactionId};

use base64::Engine as _;
use rsa::pkcs1v15::Signature;
use rsa::signature::Verifier;

use super::gateway::{Gateway, Verdict};
use super::sign::notification_sign_content;
use crate::domain::cents_from_yuan;

/// A payment confirmed by an Alipay notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlipayPayment {
    /// `out_trade_no`.
    pub order_id: OrderId,
    /// `total_amount` in cents.
    pub amount_cents: Cents,
    /// Alipay's `trade_no`, used as the transaction id when it is a valid one.
    pub trade_no: Option<TransactionId>,
    /// `seller_id` (empty when absent).
    pub seller_id: String,
}

/// What a (verified) Alipay notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// `TRADE_SUCCESS` or `TRADE_FINISHED`: record the payment.
    Paid(AlipayPayment),
    /// Any other status (`WAIT_BUYER_PAY`, `TRADE_CLOSED`): nothing to record.
    Other,
}

impl Notice {
    /// Reads a notification's parameters (after its signature was verified).
    pub fn parse(params: &BTreeMap<String, String>) -> Result<Notice, Invalid> {
        let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
        if !matches!(get("trade_status"), "TRADE_SUCCESS" | "TRADE_FINISHED") {
            return Ok(Notice::Other);
        }
        let order_id = OrderId::parse(get("out_trade_no"), "out_trade_no")?;
        let amount_cents = cents_from_yuan(get("total_amount"))
            .and_then(Cents::new)
            .ok_or_else(|| Invalid::new("total_amount", "is not an amount"))?;
        // The payer is the order's owner recorded with its pay link, not `passback_params`.
        let trade_no = TransactionId::parse(get("trade_no"), "trade_no").ok();
        Ok(Notice::Paid(AlipayPayment {
            order_id,
            amount_cents,
            trade_no,
            seller_id: get("seller_id").to_string(),
        }))
    }
}

impl AlipayPayment {
    /// Is it for `seller` (any seller when none is configured)?
    pub fn is_for_seller(&self, seller: &str) -> bool {
        seller.is_empty() || self.seller_id == seller
    }
}

impl Gateway {
    /// Checks a notification was signed by Alipay (RSA2) for our app.
    pub fn verify_notification(&self, params: &BTreeMap<String, String>) -> Verdict {
        let Some(key) = &self.alipay_key else {
            return Verdict::NotConfigured;
        };
        if params.get("sign_type").is_some_and(|t| t != "RSA2") {
            return Verdict::BadSignature;
        }
        let Some(sign) = params.get("sign") else {
            return Verdict::BadSignature;
        };
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(sign.trim()) else {
            return Verdict::BadSignature;
        };
        let Ok(signature) = Signature::try_from(bytes.as_slice()) else {
            return Verdict::BadSignature;
        };
        let content = notification_sign_content(params);
        if key.verify(content.as_bytes(), &signature).is_err() {
            return Verdict::BadSignature;
        }
        match (&self.merchant, params.get("app_id")) {
            (Some(m), app_id) if app_id != Some(&m.app_id) => Verdict::OtherApp,
            _ => Verdict::Verified,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_need_status_order_and_amount() {
        let params = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let paid = Notice::parse(&params(&[
            ("trade_status", "TRADE_SUCCESS"),
            ("out_trade_no", "o1"),
            ("total_amount", "12.34"),
            ("seller_id", "2088"),
            ("trade_no", "2026031522001"),
        ]))
        .unwrap();
        assert_eq!(
            paid,
            Notice::Paid(AlipayPayment {
                order_id: OrderId::parse("o1", "out_trade_no").unwrap(),
                amount_cents: Cents::new(1234).unwrap(),
                trade_no: Some(TransactionId::parse("2026031522001", "trade_no").unwrap()),
                seller_id: "2088".into(),
            })
        );
        assert_eq!(
            Notice::parse(&params(&[("trade_status", "WAIT_BUYER_PAY")])).unwrap(),
            Notice::Other
        );
        for missing in ["out_trade_no", "total_amount"] {
            let mut p = params(&[
                ("trade_status", "TRADE_FINISHED"),
                ("out_trade_no", "o1"),
                ("total_amount", "12.34"),
            ]);
            p.remove(missing);
            assert!(Notice::parse(&p).is_err(), "{missing}");
        }
    }

    #[test]
    fn unconfigured_alipay_verifies_nothing() {
        let settings = crate::settings::default_settings().ext.payment;
        let gateway = Gateway::from_settings(&settings).unwrap();
        assert_eq!(
            gateway.verify_notification(&BTreeMap::new()),
            Verdict::NotConfigured
        );
    }
}
