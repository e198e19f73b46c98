//! Shared helpers of the payment tests: a fleet with Alipay configured, clients, request
//! builders, direct database reads, and the test's own Alipay (key pairs generated once per test
//! binary).
#![allow(dead_code)] // each test binary uses its own subset

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use mall_proto::common::v1::CreditCardInfo;
use mall_proto::payment::v1 as pb;
use mall_testing::{PaymentClient, TestFleet};
use mall_types::time::unix_secs as unix_now;
use payment::domain::Civil;
use rsa::pkcs1v15::{Signature, SigningKey};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::Signer;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use sqlx::Row;

pub type Client = PaymentClient;

pub const APP_ID: &str = "2021000000000000";
pub const NOTIFY_URL: &str = "https://mall.example/alipay/notify";
pub const RETURN_URL: &str = "https://mall.example/orders/paid";
pub const VISA: &str = "4242424242424242";
pub const DECLINED: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";

/// The merchant's and "Alipay's" key pairs.
pub struct Keys {
    pub app_private: RsaPrivateKey,
    pub app_private_pem: String,
    pub app_public: RsaPublicKey,
    pub alipay_private: RsaPrivateKey,
    pub alipay_public_pem: String,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        let app = RsaPrivateKey::new(&mut rng, 2048).expect("merchant key");
        let alipay = RsaPrivateKey::new(&mut rng, 2048).expect("alipay key");
        Keys {
            app_private_pem: app.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            app_public: app.to_public_key(),
            app_private: app,
            alipay_public_pem: alipay
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
            alipay_private: alipay,
        }
    })
}

/// A fleet with Alipay configured.
pub async fn fleet() -> TestFleet {
    let k = keys();
    TestFleet::start_with(
        &["auth", "payment"],
        &[
            ("MALL__PAYMENT__ALIPAY_APP_ID", APP_ID),
            ("MALL__PAYMENT__ALIPAY_PRIVATE_KEY_PEM", &k.app_private_pem),
            ("MALL__PAYMENT__ALIPAY_PUBLIC_KEY_PEM", &k.alipay_public_pem),
            ("MALL__PAYMENT__ALIPAY_NOTIFY_URL", NOTIFY_URL),
        ],
    )
    .await
}

/// A client calling as a service (Charge, Refund and GetPayment are internal).
pub fn service(fleet: &TestFleet) -> Client {
    fleet.client::<Client>("payment")
}

/// A client signed in as end user `user_id`.
pub fn user(fleet: &TestFleet, user_id: u64) -> Client {
    fleet.client_as::<Client>("payment", &fleet.user_token(user_id))
}

pub fn this_year() -> i32 {
    i32::try_from(Civil::from_unix(unix_now()).year).expect("year")
}

pub fn card_with(number: &str, cvv: &str, year: i32, month: i32) -> CreditCardInfo {
    CreditCardInfo {
        credit_card_number: number.into(),
        credit_card_cvv: cvv.into(),
        credit_card_expiration_year: year,
        credit_card_expiration_month: month,
    }
}

pub fn card(number: &str) -> CreditCardInfo {
    card_with(number, "123", this_year() + 3, 12)
}

pub fn charge_req(
    order: &str,
    user_id: u64,
    amount_cents: i64,
    card: CreditCardInfo,
) -> pb::ChargeReq {
    pb::ChargeReq {
        amount_cents,
        credit_card: Some(card),
        payment_method: "credit_card".into(),
        order_id: order.into(),
        user_id,
    }
}

pub async fn charge(client: &mut Client, order: &str, user_id: u64, amount: i64) -> String {
    client
        .charge(charge_req(order, user_id, amount, card(VISA)))
        .await
        .unwrap_or_else(|e| panic!("charge {order}: {e}"))
        .into_inner()
        .transaction_id
}

pub async fn get(client: &mut Client, transaction_id: &str) -> Result<pb::Payment, tonic::Status> {
    client
        .get_payment(pb::GetPaymentReq {
            transaction_id: transaction_id.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

pub fn refund_req(txn: &str, order: &str, user_id: u64, amount_cents: i64) -> pb::RefundReq {
    pb::RefundReq {
        transaction_id: txn.into(),
        order_id: order.into(),
        amount_cents,
        reason: "customer asked".into(),
        user_id,
        ..Default::default()
    }
}

/// A pool on the payment service's own database.
pub async fn database(fleet: &TestFleet) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&fleet.database_url("payment"))
        .await
        .expect("open the payment database")
}

pub async fn count(pool: &sqlx::AnyPool, sql: &str, arg: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
        .bind(arg.to_string())
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Every column of every row of the payment tables, as text.
pub async fn every_stored_value(pool: &sqlx::AnyPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in ["payments", "refunds"] {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {table}")))
            .fetch_all(pool)
            .await
            .expect("read table");
        for row in rows {
            for i in 0..row.len() {
                let value = row
                    .try_get::<String, _>(i)
                    .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                    .unwrap_or_default();
                out.push(value);
            }
        }
    }
    out
}

/// Signs notification parameters the way Alipay does: every parameter but `sign` and
/// `sign_type`, sorted, `k=v` joined with `&`, SHA256withRSA, base64.
pub fn sign_notification(
    mut params: BTreeMap<String, String>,
    key: &RsaPrivateKey,
) -> BTreeMap<String, String> {
    params.remove("sign");
    params.remove("sign_type");
    let content = params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature: Signature = SigningKey::<Sha256>::new(key.clone()).sign(content.as_bytes());
    params.insert(
        "sign".into(),
        base64::engine::general_purpose::STANDARD
            .encode(rsa::signature::SignatureEncoding::to_bytes(&signature)),
    );
    params.insert("sign_type".into(), "RSA2".into());
    params
}

pub fn notification(
    order: &str,
    trade_no: &str,
    status: &str,
    amount: &str,
    user: &str,
) -> BTreeMap<String, String> {
    [
        ("app_id", APP_ID),
        ("charset", "utf-8"),
        ("notify_id", "2026031500222123456789"),
        ("notify_time", "2026-03-15 20:00:00"),
        ("notify_type", "trade_status_sync"),
        ("out_trade_no", order),
        ("passback_params", user),
        ("subject", "TikTokMall order"),
        ("total_amount", amount),
        ("trade_no", trade_no),
        ("trade_status", status),
        ("version", "1.0"),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub async fn notify(client: &mut Client, params: BTreeMap<String, String>) -> bool {
    client
        .alipay_notify(pb::AlipayNotifyReq {
            params: params.into_iter().collect(),
        })
        .await
        .expect("AlipayNotify never fails for bad input")
        .into_inner()
        .accepted
}
