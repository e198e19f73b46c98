//! Alipay's asynchronous notification endpoint, on the admin HTTP port at
//! `payment.alipay_notify_path` (default `/alipay/notify`): Alipay POSTs the notification as an
//! `application/x-www-form-urlencoded` form and retries until the answer body is the literal
//! `success`.
//!
//! The form is decoded as UTF-8, the charset every pay link this service signs asks for (a
//! notification that declares another charset, such as GBK, in its `Content-Type` or `charset`
//! field is answered `fail`). The parameters then go through the same checks as the gRPC
//! `AlipayNotify` ([`Alipay::accept_notice`]): RSA2 signature with Alipay's public key,
//! `app_id`, `seller_id` when configured, `out_trade_no` an order with a pay link,
//! `total_amount` its total. `success` is answered only after the payment row is committed
//! (or was already there: duplicates are idempotent); everything else is `fail`.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use crate::alipay::Alipay;

/// The body Alipay needs to stop notifying.
pub const SUCCESS: &str = "success";
/// Any other answer: Alipay notifies again later.
pub const FAIL: &str = "fail";

/// The notify route at `path`.
pub fn routes(path: &str, alipay: Alipay) -> Router {
    Router::new().route(path, post(notify)).with_state(alipay)
}

/// UTF-8 (or no charset named) in a `Content-Type` or `charset` value.
fn is_utf8(charset: &str) -> bool {
    let c = charset.trim().trim_matches('"').to_ascii_lowercase();
    c.is_empty() || c == "utf-8" || c == "utf8"
}

async fn notify(
    State(alipay): State<Alipay>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        tracing::warn!(content_type, "alipay notification refused: not a form");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, FAIL);
    }
    let declared = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("charset="))
        .next()
        .unwrap_or_default();
    if !is_utf8(declared) {
        tracing::warn!(
            charset = declared,
            "alipay notification refused: only UTF-8 is supported"
        );
        return (StatusCode::OK, FAIL);
    }
    if std::str::from_utf8(&body).is_err() {
        tracing::warn!("alipay notification refused: body is not UTF-8");
        return (StatusCode::OK, FAIL);
    }
    let mut params = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        if params.insert(k.into_owned(), v.into_owned()).is_some() {
            tracing::warn!("alipay notification refused: a parameter appears twice");
            return (StatusCode::OK, FAIL);
        }
    }
    if !params.get("charset").is_none_or(|c| is_utf8(c)) {
        tracing::warn!("alipay notification refused: only UTF-8 is supported");
        return (StatusCode::OK, FAIL);
    }
    match alipay.accept_notice(&params).await {
        Ok(true) => (StatusCode::OK, SUCCESS),
        Ok(false) => (StatusCode::OK, FAIL),
        Err(e) => {
            tracing::warn!(error = %e, "alipay notification not recorded; alipay will retry");
            (StatusCode::INTERNAL_SERVER_ERROR, FAIL)
        }
    }
}
