//! A fake Alipay OpenAPI gateway for tests: an axum server on `127.0.0.1:0` with in-memory
//! trades, speaking the two methods the payment service calls, and sending the asynchronous
//! notifications Alipay posts to a merchant's `notify_url`.
//!
//! # Covered API (what `services/payment` uses)
//!
//! - `POST /gateway.do`, the OpenAPI gateway: the common parameters (`app_id`, `method`,
//!   `format`, `charset`, `sign_type`, `timestamp`, `version`, `biz_content`, `sign`) in the
//!   query string and/or an `application/x-www-form-urlencoded` body (both are merged, as
//!   Alipay does). The request's `sign` is verified as Alipay does: RSA2 (SHA256withRSA) over
//!   every non-empty parameter but `sign`, sorted by key, `k=v` joined with `&`, with the app's
//!   public key given to [`FakeAlipay::start`]; `app_id` must be the app's. A bad signature is
//!   `code 40002`, `sub_code isv.invalid-signature`; another app id `isv.invalid-app-id`.
//!   - `alipay.trade.query` (`biz_content.out_trade_no` or `trade_no`): `code 10000` with
//!     `trade_no`, `out_trade_no`, `trade_status`, `total_amount`, `buyer_logon_id`; an unknown
//!     trade is `code 40004`, `sub_code ACQ.TRADE_NOT_EXIST`.
//!   - `alipay.trade.refund` (`out_trade_no` or `trade_no`, `refund_amount`,
//!     `out_request_no`, `refund_reason`): refunds part of a paid trade; the answer has
//!     `fund_change` (`Y` when money moved, `N` for a repeat of an `out_request_no`, which
//!     refunds nothing more) and `refund_fee` (all refunded so far). More than what is left is
//!     `ACQ.REFUND_AMT_NOT_EQUAL_TOTAL`; an unpaid trade `ACQ.TRADE_STATUS_ERROR`; an unknown
//!     one `ACQ.TRADE_NOT_EXIST`; the same `out_request_no` with another amount
//!     `ACQ.REFUND_AMT_NOT_EQUAL_TOTAL` too (Alipay answers the first request's result).
//!   - Any other method: `code 40004`, `sub_code isv.invalid-method`... answered as
//!     `error_response`.
//!
//!   Every answer is Alipay's JSON: `{"<method with _ for .>_response": {...}, "sign": "..."}`,
//!   where `sign` is RSA2 with the gateway's private key over the exact JSON text of the
//!   `*_response` value, which is what a client verifies with Alipay's public key.
//! - Notifications ([`FakeAlipay::notification`], [`FakeAlipay::sign`], [`FakeAlipay::notify`]):
//!   Alipay's `trade_status_sync` parameters (`notify_time`, `notify_type`, `notify_id`,
//!   `app_id`, `charset`, `version`, `trade_no`, `out_trade_no`, `trade_status`,
//!   `total_amount`, `receipt_amount`, `buyer_id`, `seller_id`, `gmt_create`, `gmt_payment`,
//!   `subject`), signed RSA2 over every parameter but `sign` and `sign_type`, and POSTed
//!   form-encoded to a `notify_url`; the merchant's answer body is returned (Alipay retries
//!   anything but the literal `success`). A test changes parameters before signing (wrong
//!   amount, other app id) or after (bad signature), and sends one twice (duplicates) or after
//!   the order was cancelled (late).
//!
//! Trades are scripted: [`FakeAlipay::open_trade`] (a buyer opened the pay page:
//! `WAIT_BUYER_PAY`), [`FakeAlipay::pay`] (paid: `TRADE_SUCCESS`). [`FakeAlipay::requests`]
//! lists the calls the gateway answered, [`FakeAlipay::refunds`] the refunds of a trade,
//! [`FakeAlipay::lose_next_responses`] applies requests but answers HTTP 502, as a response
//! lost on the way back, [`FakeAlipay::forge_next_responses`] signs answers wrongly, and
//! [`FakeAlipay::refuse_next_refunds`] refuses refunds as a short merchant balance does.
//!
//! # Differences from Alipay's sandbox
//!
//! - Only `alipay.trade.query` and `alipay.trade.refund`; no `alipay.trade.page.pay` page (a
//!   test "pays" with [`FakeAlipay::pay`]), no `close`, `cancel`, `fastpay.refund.query`,
//!   bill downloads, certificate-mode (`app_cert_sn`) signing, or `RSA` (SHA1) signatures.
//! - No retry schedule of its own: Alipay re-sends an unanswered notification 8 times over 25
//!   hours; here a test calls [`FakeAlipay::notify`] again.
//! - UTF-8 only (the sandbox also speaks GBK when a request says `charset=GBK`); `timestamp`
//!   is not checked against the clock (Alipay refuses one more than 15 minutes off).
//! - A trade is never closed for being unpaid (Alipay closes one after `timeout_express`,
//!   15 days by default) and refunds are never refused for age.
//! - Trade numbers are `2026` + a counter, not Alipay's date-based ones; buyer ids are fixed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::routing::post;
use base64::Engine as _;
use parking_lot::Mutex;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The seller id (`seller_id`) the fake's notifications carry unless a test changes it.
pub const SELLER_ID: &str = "2088102000000001";
/// The buyer id of every fake payment.
pub const BUYER_ID: &str = "2088102000000002";

/// One scripted trade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trade {
    /// Alipay's trade number.
    pub trade_no: String,
    /// The merchant's order id.
    pub out_trade_no: String,
    /// Total in cents.
    pub total_cents: i64,
    /// `WAIT_BUYER_PAY`, `TRADE_SUCCESS`.
    pub status: String,
    /// Refunded so far, in cents.
    pub refunded_cents: i64,
}

/// One refund the gateway made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    /// The merchant's refund request id.
    pub out_request_no: String,
    /// Amount in cents.
    pub amount_cents: i64,
}

/// One call the gateway answered: its method and `biz_content`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayCall {
    /// `method`.
    pub method: String,
    /// `biz_content`, parsed.
    pub biz: Value,
}

#[derive(Default)]
struct Trades {
    by_order: BTreeMap<String, Trade>,
    refunds: BTreeMap<String, Vec<RefundRecord>>,
    calls: Vec<GatewayCall>,
    lose_responses: usize,
    forge_responses: usize,
    refuse_refunds: usize,
    next_trade: u64,
}

struct Inner {
    app_id: String,
    app_key: VerifyingKey<Sha256>,
    gateway_key: SigningKey<Sha256>,
    trades: Mutex<Trades>,
}

/// A running fake gateway; stops when dropped.
pub struct FakeAlipay {
    addr: SocketAddr,
    inner: Arc<Inner>,
    task: JoinHandle<()>,
}

impl Drop for FakeAlipay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Cents as Alipay's `"12.34"`.
pub fn yuan(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Alipay's `"12.34"` (or `"12"`, `"12.3"`) as cents.
fn cents(text: &str) -> Option<i64> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !(whole.bytes().chain(frac.bytes())).all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(100)?
        .checked_add(frac)
}

/// `k=v` pairs of `params` (sorted by key), skipping `skip` keys and, when `skip_empty`, empty
/// values, joined with `&`: the string Alipay signs.
fn sign_content(params: &BTreeMap<String, String>, skip: &[&str], skip_empty: bool) -> String {
    params
        .iter()
        .filter(|(k, v)| !(skip.contains(&k.as_str()) || (skip_empty && v.is_empty())))
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

impl FakeAlipay {
    /// Starts a gateway for merchant app `app_id` whose requests are signed with the private
    /// key of `app_public`; it signs answers and notifications with `gateway_key` (the test
    /// configures the payment service with its public half as Alipay's public key).
    pub async fn start(
        app_id: &str,
        app_public: RsaPublicKey,
        gateway_key: RsaPrivateKey,
    ) -> FakeAlipay {
        let inner = Arc::new(Inner {
            app_id: app_id.to_string(),
            app_key: VerifyingKey::new(app_public),
            gateway_key: SigningKey::new(gateway_key),
            trades: Mutex::new(Trades::default()),
        });
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake alipay");
        let addr = listener.local_addr().expect("fake alipay address");
        let app = Router::new()
            .route("/gateway.do", post(gateway))
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAlipay { addr, inner, task }
    }

    /// The gateway URL to configure as `payment.alipay_gateway`.
    pub fn gateway_url(&self) -> String {
        format!("http://{}/gateway.do", self.addr)
    }

    /// A buyer opened the pay page of `out_trade_no` for `total_cents`: the trade exists,
    /// `WAIT_BUYER_PAY`. Returns its trade number.
    pub fn open_trade(&self, out_trade_no: &str, total_cents: i64) -> String {
        self.put_trade(out_trade_no, total_cents, "WAIT_BUYER_PAY")
    }

    /// The buyer paid `out_trade_no` (`total_cents`): `TRADE_SUCCESS`. Returns the trade number.
    pub fn pay(&self, out_trade_no: &str, total_cents: i64) -> String {
        self.put_trade(out_trade_no, total_cents, "TRADE_SUCCESS")
    }

    fn put_trade(&self, out_trade_no: &str, total_cents: i64, status: &str) -> String {
        let mut t = self.inner.trades.lock();
        if let Some(trade) = t.by_order.get_mut(out_trade_no) {
            trade.status = status.to_string();
            trade.total_cents = total_cents;
            return trade.trade_no.clone();
        }
        t.next_trade += 1;
        let trade_no = format!("2026{:016}", t.next_trade);
        t.by_order.insert(
            out_trade_no.to_string(),
            Trade {
                trade_no: trade_no.clone(),
                out_trade_no: out_trade_no.to_string(),
                total_cents,
                status: status.to_string(),
                refunded_cents: 0,
            },
        );
        trade_no
    }

    /// The trade of `out_trade_no`, if any.
    pub fn trade(&self, out_trade_no: &str) -> Option<Trade> {
        self.inner.trades.lock().by_order.get(out_trade_no).cloned()
    }

    /// The refunds made on `out_trade_no`'s trade, in order.
    pub fn refunds(&self, out_trade_no: &str) -> Vec<RefundRecord> {
        self.inner
            .trades
            .lock()
            .refunds
            .get(out_trade_no)
            .cloned()
            .unwrap_or_default()
    }

    /// Every call the gateway answered (with a verified signature), in order.
    pub fn requests(&self) -> Vec<GatewayCall> {
        self.inner.trades.lock().calls.clone()
    }

    /// The next `n` gateway requests are carried out but answered HTTP 502 (a lost response).
    pub fn lose_next_responses(&self, n: usize) {
        self.inner.trades.lock().lose_responses = n;
    }

    /// The next `n` new refunds are refused as Alipay refuses a refund the merchant's balance
    /// cannot cover (`code 40004`, `sub_code ACQ.SELLER_BALANCE_NOT_ENOUGH`): nothing moves.
    pub fn refuse_next_refunds(&self, n: usize) {
        self.inner.trades.lock().refuse_refunds = n;
    }

    /// The next `n` gateway answers carry a signature that does not verify (as a man in the
    /// middle would); the requests are carried out.
    pub fn forge_next_responses(&self, n: usize) {
        self.inner.trades.lock().forge_responses = n;
    }

    /// The (unsigned) `trade_status_sync` notification of `out_trade_no`'s trade as Alipay
    /// would send it for its current status. Panics when there is no such trade.
    pub fn notification(&self, out_trade_no: &str) -> BTreeMap<String, String> {
        let trade = self
            .trade(out_trade_no)
            .unwrap_or_else(|| panic!("no trade for {out_trade_no}"));
        [
            ("notify_time", "2026-12-01 20:00:00".to_string()),
            ("notify_type", "trade_status_sync".to_string()),
            ("notify_id", format!("ntf{}", trade.trade_no)),
            ("app_id", self.inner.app_id.clone()),
            ("charset", "utf-8".to_string()),
            ("version", "1.0".to_string()),
            ("trade_no", trade.trade_no.clone()),
            ("out_trade_no", trade.out_trade_no.clone()),
            ("trade_status", trade.status.clone()),
            ("total_amount", yuan(trade.total_cents)),
            ("receipt_amount", yuan(trade.total_cents)),
            ("buyer_id", BUYER_ID.to_string()),
            ("seller_id", SELLER_ID.to_string()),
            ("gmt_create", "2026-12-01 19:59:00".to_string()),
            ("gmt_payment", "2026-12-01 19:59:30".to_string()),
            (
                "subject",
                format!("TikTokMall order {}", trade.out_trade_no),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// `params` signed as Alipay signs a notification: `sign` (RSA2 over every parameter but
    /// `sign` and `sign_type`) and `sign_type=RSA2` added.
    pub fn sign(&self, mut params: BTreeMap<String, String>) -> BTreeMap<String, String> {
        params.remove("sign");
        params.remove("sign_type");
        let content = sign_content(&params, &[], false);
        params.insert("sign".into(), self.inner.sign(&content));
        params.insert("sign_type".into(), "RSA2".into());
        params
    }

    /// POSTs `params` form-encoded to `notify_url` as Alipay does; the status and the body of
    /// the merchant's answer.
    pub async fn notify(
        &self,
        notify_url: &str,
        params: &BTreeMap<String, String>,
    ) -> (u16, String) {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let resp = crate::http_client()
            .build()
            .expect("an HTTP client")
            .post(notify_url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("notify {notify_url}: {e}"));
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }
}

impl Inner {
    fn sign(&self, content: &str) -> String {
        let signature: Signature = self.gateway_key.sign(content.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(signature.to_bytes())
    }

    /// Alipay's answer: `{"<key>": <response>, "sign": "..."}` signed over `response`'s text
    /// (over something else when the test forges it).
    fn answer(&self, key: &str, response: &Value) -> String {
        let text = response.to_string();
        let forge = {
            let mut t = self.trades.lock();
            let forge = t.forge_responses > 0;
            t.forge_responses = t.forge_responses.saturating_sub(1);
            forge
        };
        let sign = if forge {
            self.sign(&format!("{text} "))
        } else {
            self.sign(&text)
        };
        format!("{{\"{key}\":{text},\"sign\":\"{sign}\"}}")
    }

    fn verify(&self, params: &BTreeMap<String, String>) -> Result<(), &'static str> {
        let sign = params.get("sign").ok_or("isv.missing-signature")?;
        if params.get("sign_type").map(String::as_str) != Some("RSA2") {
            return Err("isv.invalid-signature-type");
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sign)
            .map_err(|_| "isv.invalid-signature")?;
        let signature =
            Signature::try_from(bytes.as_slice()).map_err(|_| "isv.invalid-signature")?;
        let content = sign_content(params, &["sign"], true);
        self.app_key
            .verify(content.as_bytes(), &signature)
            .map_err(|_| "isv.invalid-signature")?;
        if params.get("app_id") != Some(&self.app_id) {
            return Err("isv.invalid-app-id");
        }
        Ok(())
    }
}

fn failed(sub_code: &str, sub_msg: &str) -> Value {
    json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg})
}

/// The trade a request's `biz_content` names, by `out_trade_no` or `trade_no`.
fn find<'a>(t: &'a mut Trades, biz: &Value) -> Option<&'a mut Trade> {
    if let Some(out) = biz.get("out_trade_no").and_then(Value::as_str) {
        return t.by_order.get_mut(out);
    }
    let no = biz.get("trade_no").and_then(Value::as_str)?;
    t.by_order.values_mut().find(|tr| tr.trade_no == no)
}

fn query(t: &mut Trades, biz: &Value) -> Value {
    match find(t, biz) {
        Some(tr) => json!({
            "code": "10000",
            "msg": "Success",
            "trade_no": tr.trade_no,
            "out_trade_no": tr.out_trade_no,
            "buyer_logon_id": "buy***@example.com",
            "trade_status": tr.status,
            "total_amount": yuan(tr.total_cents),
            "buyer_user_id": BUYER_ID,
        }),
        None => failed("ACQ.TRADE_NOT_EXIST", "交易不存在"),
    }
}

fn refund(t: &mut Trades, biz: &Value) -> Value {
    let Some(amount) = biz
        .get("refund_amount")
        .and_then(Value::as_str)
        .and_then(cents)
    else {
        return json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-parameter", "sub_msg": "refund_amount"});
    };
    let request = biz
        .get("out_request_no")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let Some(trade) = find(t, biz).cloned() else {
        return failed("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    let done = |tr: &Trade, change: &str| {
        json!({
            "code": "10000",
            "msg": "Success",
            "trade_no": tr.trade_no,
            "out_trade_no": tr.out_trade_no,
            "buyer_logon_id": "buy***@example.com",
            "fund_change": change,
            "refund_fee": yuan(tr.refunded_cents),
            "send_back_fee": yuan(amount),
        })
    };
    let earlier = t
        .refunds
        .get(&trade.out_trade_no)
        .and_then(|rs| rs.iter().find(|r| r.out_request_no == request).cloned());
    if let Some(earlier) = earlier {
        if earlier.amount_cents != amount {
            return failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与原请求不一致");
        }
        return done(&trade, "N");
    }
    if trade.status != "TRADE_SUCCESS" {
        return failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法");
    }
    if trade.refunded_cents + amount > trade.total_cents || amount <= 0 {
        return failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限");
    }
    if t.refuse_refunds > 0 {
        t.refuse_refunds -= 1;
        return failed("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足");
    }
    let Some(tr) = t.by_order.get_mut(&trade.out_trade_no) else {
        return failed("ACQ.TRADE_NOT_EXIST", "交易不存在");
    };
    tr.refunded_cents += amount;
    let tr = tr.clone();
    t.refunds
        .entry(tr.out_trade_no.clone())
        .or_default()
        .push(RefundRecord {
            out_request_no: request,
            amount_cents: amount,
        });
    done(&tr, "Y")
}

async fn gateway(
    State(inner): State<Arc<Inner>>,
    RawQuery(query_string): RawQuery,
    body: Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    if let Some(q) = query_string {
        params.extend(form_urlencoded::parse(q.as_bytes()).into_owned());
    }
    params.extend(form_urlencoded::parse(&body).into_owned());
    let method = params.get("method").cloned().unwrap_or_default();
    let key = format!("{}_response", method.replace('.', "_"));
    let json_answer =
        |text: String| ([("content-type", "application/json;charset=utf-8")], text).into_response();
    if let Err(sub_code) = inner.verify(&params) {
        let response = json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": "验签出错"});
        return json_answer(inner.answer(&key, &response));
    }
    let biz: Value = params
        .get("biz_content")
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    let (response, lose) = {
        let mut t = inner.trades.lock();
        t.calls.push(GatewayCall {
            method: method.clone(),
            biz: biz.clone(),
        });
        let response = match method.as_str() {
            "alipay.trade.query" => query(&mut t, &biz),
            "alipay.trade.refund" => refund(&mut t, &biz),
            _ => {
                let response = json!({"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method", "sub_msg": "不存在的方法名"});
                return json_answer(inner.answer("error_response", &response));
            }
        };
        let lose = t.lose_responses > 0;
        if lose {
            t.lose_responses -= 1;
        }
        (response, lose)
    };
    if lose {
        return (axum::http::StatusCode::BAD_GATEWAY, "lost").into_response();
    }
    json_answer(inner.answer(&key, &response))
}
