//! Alipay end to end, through real gRPC and HTTP: checkout with `payment_method = "alipay"` →
//! signed pay link → the fake Alipay gateway (`mall-testkit`) notifies the admin-port endpoint
//! → the order is PAID, its stock sold and the purchased lines out of the cart; lost
//! notifications found by `alipay.trade.query`; refunds through `alipay.trade.refund`.
//!
//! Keys are generated per test binary (`mall_testing::alipay_keys`). SQLite and the in-process
//! cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and `MALL_TEST_REDIS_URL` are
//! set.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use mall_proto::order::v1 as order_pb;
use mall_proto::payment::v1 as pb;
use mall_testing::{
    ALIPAY_APP_ID, ALIPAY_NOTIFY_URL, AlipayFleet, PaymentClient, alipay_checkout_request,
    alipay_keys, assert_code, eventually, order_status, pay_url_params,
};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::{Signer, Verifier};
use sha2::Sha256;
use tonic::Code;

/// How long a background step (reconciliation, poller) gets.
const WAIT: Duration = Duration::from_secs(15);

/// The string Alipay verifies a request's `sign` over (written here from Alipay's rules, not
/// taken from the code under test): every non-empty parameter but `sign`, sorted, `k=v` joined
/// with `&`.
fn request_sign_content(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .filter(|(k, v)| k.as_str() != "sign" && !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn verify_pay_link(params: &BTreeMap<String, String>) -> Result<(), rsa::signature::Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&params["sign"])
        .expect("base64 sign");
    let signature = Signature::try_from(bytes.as_slice()).expect("signature");
    VerifyingKey::<Sha256>::new(alipay_keys().app_public.clone())
        .verify(request_sign_content(params).as_bytes(), &signature)
}

async fn payment_rows(shop: &AlipayFleet, order_id: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&shop.fleet.database_url("payment"))
        .await
        .expect("payment database");
    let n = sqlx::query_scalar("SELECT COUNT(*) FROM payments WHERE order_id = ?")
        .bind(order_id.to_string())
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

fn service(shop: &AlipayFleet) -> PaymentClient {
    shop.fleet.client("payment")
}

async fn payment_of(shop: &AlipayFleet, order_id: &str) -> Result<pb::Payment, tonic::Status> {
    shop.fleet.payments().of_order(order_id).await
}

#[tokio::test]
async fn alipay_checkout_notify_success_pays_the_order_sells_the_stock_and_cleans_the_cart() {
    let shop = AlipayFleet::start(&[]).await;
    let user = 7;
    let (products, resp) = shop
        .checkout(user, "ali-e2e", &[(1_250, 2), (300, 1)])
        .await;
    let total = 2 * 1_250 + 300;
    assert!(resp.transaction_id.is_empty(), "{resp:?}");
    let order_id = resp.order_id.clone();

    // The pay link: a signed alipay.trade.page.pay for the order's total.
    assert!(
        resp.pay_url.starts_with(&shop.gateway.gateway_url()),
        "{}",
        resp.pay_url
    );
    let params = pay_url_params(&resp.pay_url);
    for (k, v) in [
        ("app_id", ALIPAY_APP_ID),
        ("method", "alipay.trade.page.pay"),
        ("charset", "utf-8"),
        ("sign_type", "RSA2"),
        ("notify_url", ALIPAY_NOTIFY_URL),
        ("return_url", "https://mall.example/orders/paid"),
    ] {
        assert_eq!(params.get(k).map(String::as_str), Some(v), "{k}");
    }
    let ts = &params["timestamp"];
    assert!(
        ts.len() == 19
            && ts.bytes().enumerate().all(|(i, b)| match i {
                4 | 7 => b == b'-',
                10 => b == b' ',
                13 | 16 => b == b':',
                _ => b.is_ascii_digit(),
            }),
        "timestamp is yyyy-MM-dd HH:mm:ss: {ts}"
    );
    let biz: serde_json::Value = serde_json::from_str(&params["biz_content"]).unwrap();
    assert_eq!(biz["out_trade_no"], order_id.as_str());
    assert_eq!(biz["total_amount"], "28.00");
    assert_eq!(biz["product_code"], "FAST_INSTANT_TRADE_PAY");
    verify_pay_link(&params).expect("the pay link verifies with the app's public key");
    let mut tampered = params.clone();
    tampered.insert(
        "biz_content".into(),
        params["biz_content"].replace("28.00", "0.01"),
    );
    assert!(verify_pay_link(&tampered).is_err(), "tampered amount");

    // PENDING, stock reserved, the cart untouched until Alipay confirms.
    let orders = shop.fleet.orders(user);
    let order = orders.get(&order_id).await;
    assert_eq!(order_status(&order), order_pb::OrderStatus::Pending);
    assert_eq!(order.total_cents, total);
    assert_eq!(order.payment_method, "alipay");
    assert_eq!(shop.fleet.catalog().stock_of(products[0]).await, 8);
    assert_eq!(shop.fleet.cart(user).lines().await.len(), 2);
    // The idempotency key replays the same answer.
    let again = shop
        .fleet
        .checkout(user)
        .send(alipay_checkout_request(user, "ali-e2e"))
        .await
        .expect("replay");
    assert_eq!(again, resp);

    // The buyer pays; Alipay notifies; the endpoint answers the literal `success`.
    assert_eq!(shop.pay_and_notify(&order_id, total).await, "success");
    let trade_no = shop.gateway.trade(&order_id).unwrap().trade_no;
    let payment = payment_of(&shop, &order_id)
        .await
        .expect("payment recorded");
    assert_eq!(
        (
            payment.transaction_id.as_str(),
            payment.amount_cents,
            payment.payment_method.as_str(),
            payment.user_id
        ),
        (trade_no.as_str(), total, "alipay", user)
    );
    eventually(WAIT, "the order is PAID by the trade", || async {
        let o = orders.get(&order_id).await;
        order_status(&o) == order_pb::OrderStatus::Paid && o.transaction_id == trade_no
    })
    .await;
    eventually(WAIT, "the purchased lines leave the cart", || async {
        shop.fleet.cart(user).lines().await.is_empty()
    })
    .await;
    // Sold: the reservation stays taken.
    assert_eq!(shop.fleet.catalog().stock_of(products[0]).await, 8);
    assert_eq!(shop.fleet.catalog().stock_of(products[1]).await, 9);

    // The same notification again: `success`, still one payment.
    let params = shop.gateway.sign(shop.gateway.notification(&order_id));
    let (_, body) = shop.gateway.notify(&shop.notify_url(), &params).await;
    assert_eq!(body, "success");
    assert_eq!(payment_rows(&shop, &order_id).await, 1);
    shop.stop().await;
}

#[tokio::test]
async fn notifications_with_a_wrong_amount_unknown_order_other_app_or_bad_signature_record_nothing()
{
    let shop = AlipayFleet::start(&[]).await;
    let (_, resp) = shop.checkout(7, "ali-bad-notify", &[(999, 1)]).await;
    let order_id = resp.order_id;
    shop.gateway.pay(&order_id, 999);
    let good = shop.gateway.notification(&order_id);
    let url = shop.notify_url();
    let changed = |k: &str, v: &str| {
        let mut p = good.clone();
        p.insert(k.into(), v.into());
        p
    };
    let mut bad_signature = shop.gateway.sign(good.clone());
    bad_signature.insert("subject".into(), "changed after signing".into());
    let mut not_rsa2 = shop.gateway.sign(good.clone());
    not_rsa2.insert("sign_type".into(), "RSA".into());
    let cases = [
        (
            "wrong amount",
            shop.gateway.sign(changed("total_amount", "0.01")),
        ),
        (
            "unknown order",
            shop.gateway.sign(changed("out_trade_no", "no-such-order")),
        ),
        (
            "another app id",
            shop.gateway.sign(changed("app_id", "2021999999999999")),
        ),
        (
            "another seller",
            shop.gateway.sign(changed("seller_id", "2088999999999999")),
        ),
        ("bad signature", bad_signature),
        ("not RSA2", not_rsa2),
        ("unsigned", good.clone()),
        ("GBK", shop.gateway.sign(changed("charset", "GBK"))),
    ];
    for (what, params) in cases {
        let (_, body) = shop.gateway.notify(&url, &params).await;
        assert_eq!(body, "fail", "{what}");
    }
    // The gRPC AlipayNotify runs the same checks.
    let accepted = service(&shop)
        .alipay_notify(pb::AlipayNotifyReq {
            params: shop
                .gateway
                .sign(changed("total_amount", "9.98"))
                .into_iter()
                .collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .accepted;
    assert!(!accepted, "wrong amount over gRPC");
    assert_eq!(payment_rows(&shop, &order_id).await, 0, "nothing recorded");
    assert_eq!(
        payment_rows(&shop, "no-such-order").await,
        0,
        "nothing recorded"
    );
    assert_code!(payment_of(&shop, &order_id).await, Code::NotFound);

    // The right one, twice (once over gRPC): recorded once.
    let signed = shop.gateway.sign(good);
    assert_eq!(shop.gateway.notify(&url, &signed).await.1, "success");
    let accepted = service(&shop)
        .alipay_notify(pb::AlipayNotifyReq {
            params: signed.clone().into_iter().collect(),
        })
        .await
        .unwrap()
        .into_inner()
        .accepted;
    assert!(accepted, "duplicate over gRPC");
    assert_eq!(shop.gateway.notify(&url, &signed).await.1, "success");
    assert_eq!(payment_rows(&shop, &order_id).await, 1);
    shop.stop().await;
}

#[tokio::test]
async fn a_lost_notification_is_found_by_the_query_poller_and_the_order_becomes_paid() {
    let shop = AlipayFleet::start(&[]).await;
    let user = 9;
    let (_, resp) = shop.checkout(user, "ali-lost", &[(4_200, 1)]).await;
    let order_id = resp.order_id;
    // The buyer paid; the notification never arrives.
    shop.gateway.pay(&order_id, 4_200);
    let orders = shop.fleet.orders(user);
    eventually(WAIT, "the poller finds the payment", || async {
        order_status(&orders.get(&order_id).await) == order_pb::OrderStatus::Paid
    })
    .await;
    assert!(
        shop.gateway
            .requests()
            .iter()
            .any(|c| c.method == "alipay.trade.query" && c.biz["out_trade_no"] == order_id.as_str()),
        "asked with alipay.trade.query"
    );
    let payment = payment_of(&shop, &order_id).await.expect("recorded");
    assert_eq!(payment.amount_cents, 4_200);
    eventually(WAIT, "the cart is cleaned", || async {
        shop.fleet.cart(user).lines().await.is_empty()
    })
    .await;
    shop.stop().await;
}

#[tokio::test]
async fn alipay_charge_is_refused_for_someone_else_s_order_a_paid_order_or_the_wrong_amount() {
    let shop = AlipayFleet::start(&[]).await;
    let (_, resp) = shop.checkout(7, "ali-charge-rules", &[(1_500, 1)]).await;
    let order_id = resp.order_id.clone();
    let fleet = &shop.fleet;
    let as_user = |u: u64| fleet.client_as::<PaymentClient>("payment", &fleet.user_token(u));
    let req = |user_id: u64, amount_cents: i64| pb::AlipayChargeReq {
        order_id: order_id.clone(),
        user_id,
        amount_cents,
        return_url: String::new(),
    };
    // The owner, for the total or with no amount: the checkout's link (reused).
    for amount in [0, 1_500] {
        let url = as_user(7)
            .alipay_charge(req(7, amount))
            .await
            .expect("owner")
            .into_inner()
            .pay_url;
        assert_eq!(
            pay_url_params(&url)["biz_content"],
            pay_url_params(&resp.pay_url)["biz_content"]
        );
    }
    let status = assert_code!(
        as_user(7).alipay_charge(req(7, 1_499)).await,
        Code::InvalidArgument,
        "wrong amount"
    );
    assert!(status.message().contains("1500"), "{}", status.message());
    assert_code!(
        as_user(8).alipay_charge(req(8, 0)).await,
        Code::NotFound,
        "someone else's order"
    );
    assert_code!(
        as_user(8).alipay_charge(req(7, 0)).await,
        Code::PermissionDenied,
        "acting for someone else"
    );
    assert_code!(
        as_user(7)
            .alipay_charge(pb::AlipayChargeReq {
                order_id: "no-such-order".into(),
                ..req(7, 0)
            })
            .await,
        Code::NotFound,
        "unknown order"
    );
    assert_code!(
        as_user(7)
            .alipay_charge(pb::AlipayChargeReq {
                return_url: "javascript:alert(1)".into(),
                ..req(7, 0)
            })
            .await,
        Code::InvalidArgument,
        "bad return url"
    );
    // Paid: refused.
    assert_eq!(shop.pay_and_notify(&order_id, 1_500).await, "success");
    eventually(WAIT, "the order is PAID", || async {
        order_status(&fleet.orders(7).get(&order_id).await) == order_pb::OrderStatus::Paid
    })
    .await;
    assert_code!(
        as_user(7).alipay_charge(req(7, 0)).await,
        Code::AlreadyExists,
        "paid order"
    );
    // A card order (PAID by its checkout) is not paid twice either.
    let product = fleet.catalog().create_product("card item", 700, 5).await;
    fleet.cart(7).add(product, 1).await.unwrap();
    let card = fleet
        .checkout(7)
        .pay(mall_testing::GOOD_CARD, "card-order")
        .await
        .expect("card checkout");
    let refused = as_user(7)
        .alipay_charge(pb::AlipayChargeReq {
            order_id: card.order_id,
            ..req(7, 0)
        })
        .await;
    assert!(
        matches!(
            refused.as_ref().map_err(tonic::Status::code),
            Err(Code::AlreadyExists | Code::FailedPrecondition)
        ),
        "{refused:?}"
    );
    shop.stop().await;
}

#[tokio::test]
async fn partial_alipay_refunds_summing_to_the_payment_succeed_and_one_more_cent_is_refused() {
    let shop = AlipayFleet::start(&[]).await;
    let user = 7;
    let (_, resp) = shop.checkout(user, "ali-refunds", &[(2_500, 1)]).await;
    let order_id = resp.order_id;
    assert_eq!(shop.pay_and_notify(&order_id, 2_500).await, "success");
    let txn = shop.gateway.trade(&order_id).unwrap().trade_no;
    let mut client = service(&shop);
    let refund = |amount_cents: i64, request: &str| pb::RefundReq {
        transaction_id: txn.clone(),
        order_id: order_id.clone(),
        amount_cents,
        reason: "customer asked".into(),
        user_id: user,
        refund_request_id: request.into(),
    };
    let first = client
        .refund(refund(1_000, "r1"))
        .await
        .expect("first refund")
        .into_inner()
        .refund_id;
    // A retry of the same request: the same refund, nothing more refunded.
    let retried = client
        .refund(refund(1_000, "r1"))
        .await
        .expect("retry")
        .into_inner()
        .refund_id;
    assert_eq!(retried, first);
    assert_code!(
        client.refund(refund(900, "r1")).await,
        Code::AlreadyExists,
        "same request, another amount"
    );
    // Alipay refunds, but its answer is lost: unavailable now, the retry completes it once.
    shop.gateway.lose_next_responses(1);
    assert_code!(
        client.refund(refund(1_000, "r2")).await,
        Code::Unavailable,
        "answer lost"
    );
    client
        .refund(refund(1_000, "r2"))
        .await
        .expect("retry after a lost answer");
    client
        .refund(refund(500, "r3"))
        .await
        .expect("the last 5.00");
    // Nothing is left: one more cent is refused, at Alipay nothing more moved.
    let status = assert_code!(
        client.refund(refund(1, "r4")).await,
        Code::FailedPrecondition,
        "one cent more"
    );
    assert!(status.message().contains("exceeds"), "{}", status.message());
    let refunds = shop.gateway.refunds(&order_id);
    assert_eq!(
        refunds
            .iter()
            .map(|r| (r.out_request_no.as_str(), r.amount_cents))
            .collect::<Vec<_>>(),
        vec![("r1", 1_000), ("r2", 1_000), ("r3", 500)]
    );
    assert_eq!(shop.gateway.trade(&order_id).unwrap().refunded_cents, 2_500);
    let payment = payment_of(&shop, &order_id).await.unwrap();
    assert_eq!(
        (payment.refunded_cents, payment.status.as_str()),
        (2_500, "refunded")
    );
    shop.stop().await;
}

/// A refund Alipay refuses leaves the ledger as it was before it: after a partial refund, the
/// payment still reads the first refund, `partially_refunded` (on MariaDB, which evaluates
/// `SET` left to right with updated values, giving the amount back once used to read `paid`).
#[tokio::test]
async fn a_refund_alipay_refuses_leaves_the_ledger_as_it_was() {
    let shop = AlipayFleet::start(&[]).await;
    let user = 7;
    let (_, resp) = shop.checkout(user, "ali-refused", &[(2_500, 1)]).await;
    let order_id = resp.order_id;
    assert_eq!(shop.pay_and_notify(&order_id, 2_500).await, "success");
    let txn = shop.gateway.trade(&order_id).unwrap().trade_no;
    let mut client = service(&shop);
    let refund = |amount_cents: i64, request: &str| pb::RefundReq {
        transaction_id: txn.clone(),
        order_id: order_id.clone(),
        amount_cents,
        reason: "customer asked".into(),
        user_id: user,
        refund_request_id: request.into(),
    };
    client
        .refund(refund(100, "r1"))
        .await
        .expect("first refund");
    shop.gateway.refuse_next_refunds(1);
    let refused = assert_code!(
        client.refund(refund(100, "r2")).await,
        Code::FailedPrecondition,
        "the seller's balance is short"
    );
    assert_eq!(
        mall_common::error::reason_of(&refused).as_deref(),
        Some("ALIPAY_REFUND_REFUSED"),
        "{refused:?}"
    );
    let payment = payment_of(&shop, &order_id).await.unwrap();
    assert_eq!(
        (payment.refunded_cents, payment.status.as_str()),
        (100, "partially_refunded")
    );
    // The refused request stays refused; a new one for the rest goes through.
    assert_code!(
        client.refund(refund(100, "r2")).await,
        Code::FailedPrecondition,
        "refused before"
    );
    client.refund(refund(2_400, "r3")).await.expect("the rest");
    let payment = payment_of(&shop, &order_id).await.unwrap();
    assert_eq!(
        (payment.refunded_cents, payment.status.as_str()),
        (2_500, "refunded")
    );
    shop.stop().await;
}

#[tokio::test]
async fn only_paid_statuses_record_a_payment_and_a_second_trade_for_a_paid_order_is_refused() {
    let shop = AlipayFleet::start(&[]).await;
    let url = shop.notify_url();
    let (_, waiting) = shop.checkout(7, "ali-statuses-1", &[(600, 1)]).await;
    let (_, finished) = shop.checkout(8, "ali-statuses-2", &[(700, 1)]).await;
    // WAIT_BUYER_PAY: `success` (nothing to do), nothing recorded.
    shop.gateway.open_trade(&waiting.order_id, 600);
    let params = shop
        .gateway
        .sign(shop.gateway.notification(&waiting.order_id));
    assert_eq!(shop.gateway.notify(&url, &params).await.1, "success");
    assert_eq!(payment_rows(&shop, &waiting.order_id).await, 0);
    // Signed with the merchant's key instead of Alipay's: refused.
    let mut forged = shop.gateway.notification(&waiting.order_id);
    forged.insert("trade_status".into(), "TRADE_SUCCESS".into());
    let content = forged
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature: Signature =
        rsa::pkcs1v15::SigningKey::<Sha256>::new(alipay_keys().app_private.clone())
            .sign(content.as_bytes());
    forged.insert(
        "sign".into(),
        base64::engine::general_purpose::STANDARD
            .encode(rsa::signature::SignatureEncoding::to_bytes(&signature)),
    );
    forged.insert("sign_type".into(), "RSA2".into());
    assert_eq!(
        shop.gateway.notify(&url, &forged).await.1,
        "fail",
        "wrong key"
    );
    assert_eq!(payment_rows(&shop, &waiting.order_id).await, 0);

    // TRADE_FINISHED records as TRADE_SUCCESS does.
    shop.gateway.pay(&finished.order_id, 700);
    let mut done = shop.gateway.notification(&finished.order_id);
    done.insert("trade_status".into(), "TRADE_FINISHED".into());
    assert_eq!(
        shop.gateway
            .notify(&url, &shop.gateway.sign(done.clone()))
            .await
            .1,
        "success"
    );
    let paid = payment_of(&shop, &finished.order_id)
        .await
        .expect("recorded");
    assert_eq!((paid.amount_cents, paid.status.as_str()), (700, "paid"));
    // Another trade number for the paid order: not recorded, not `success`.
    let mut second = done;
    second.insert("trade_no".into(), "2026999999999999".into());
    assert_eq!(
        shop.gateway
            .notify(&url, &shop.gateway.sign(second))
            .await
            .1,
        "fail"
    );
    assert_eq!(payment_rows(&shop, &finished.order_id).await, 1);
    // A form in another encoding declared in its Content-Type: `fail`.
    let resp = mall_common::http::client()
        .build()
        .unwrap()
        .post(&url)
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=GBK",
        )
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.text().await.unwrap(), "fail");
    shop.stop().await;
}

#[tokio::test]
async fn an_alipay_checkout_without_alipay_configured_is_refused_and_undone() {
    let fleet = mall_testing::TestFleet::start(&[
        "auth", "product", "cart", "order", "payment", "checkout",
    ])
    .await;
    let user = 7;
    let product = fleet.catalog().create_product("no alipay", 900, 4).await;
    fleet.cart(user).add(product, 2).await.unwrap();
    let status = assert_code!(
        fleet
            .checkout(user)
            .send(alipay_checkout_request(user, "ali-off"))
            .await,
        Code::FailedPrecondition,
        "no alipay"
    );
    assert!(
        status.message().contains("alipay is not configured"),
        "{}",
        status.message()
    );
    // The saga undid what it did: the order CANCELLED, the stock back, the cart as it was.
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(order_status(&orders[0]), order_pb::OrderStatus::Cancelled);
    eventually(WAIT, "the stock is back", || async {
        fleet.catalog().stock_of(product).await == 4
    })
    .await;
    assert_eq!(fleet.cart(user).lines().await, vec![(product, 2)]);
    fleet.stop().await;
}

#[tokio::test]
async fn a_payment_recorded_before_a_crash_still_marks_its_order_paid_and_cleans_the_cart() {
    let shop = AlipayFleet::start(&[("MALL__PAYMENT__ALIPAY_QUERY_AFTER", "1h")]).await;
    let user = 11;
    let (_, resp) = shop.checkout(user, "ali-crash", &[(1_999, 1)]).await;
    let order_id = resp.order_id;
    // What a payment instance that crashed right after committing a notification's payment
    // leaves behind: the payment row, its order still PENDING, the cart untouched.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&shop.fleet.database_url("payment"))
        .await
        .expect("payment database");
    let now = mall_types::time::unix_secs();
    sqlx::query(
        "INSERT INTO order_settlements (order_id, outcome, created_at) VALUES (?, 'charged', ?)",
    )
    .bind(order_id.clone())
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (transaction_id, order_id, user_id, amount_cents, refunded_cents, \
         status, payment_method, card_brand, card_last4, created_at, updated_at) \
         VALUES ('2026crash0000000001', ?, ?, 1999, 0, 'paid', 'alipay', '', '', ?, ?)",
    )
    .bind(order_id.clone())
    .bind(i64::try_from(user).unwrap())
    .bind(now)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let orders = shop.fleet.orders(user);
    eventually(WAIT, "the worker marks the order PAID", || async {
        let o = orders.get(&order_id).await;
        order_status(&o) == order_pb::OrderStatus::Paid && o.transaction_id == "2026crash0000000001"
    })
    .await;
    eventually(WAIT, "and takes the lines out of the cart", || async {
        shop.fleet.cart(user).lines().await.is_empty()
    })
    .await;
    shop.stop().await;
}

#[tokio::test]
async fn a_gateway_answer_with_a_bad_signature_is_not_believed() {
    let shop = AlipayFleet::start(&[]).await;
    let user = 12;
    let (_, resp) = shop.checkout(user, "ali-forged", &[(3_100, 1)]).await;
    let order_id = resp.order_id;
    shop.gateway.forge_next_responses(usize::MAX);
    shop.gateway.pay(&order_id, 3_100);
    // The poller asks (and is answered "paid", wrongly signed): nothing is recorded.
    eventually(WAIT, "the poller asks", || async {
        shop.gateway
            .requests()
            .iter()
            .any(|c| c.method == "alipay.trade.query")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(payment_rows(&shop, &order_id).await, 0);
    let orders = shop.fleet.orders(user);
    assert_eq!(
        order_status(&orders.get(&order_id).await),
        order_pb::OrderStatus::Pending
    );
    // Signed right again: the next question finds the payment.
    shop.gateway.forge_next_responses(0);
    eventually(Duration::from_secs(30), "the payment is found", || async {
        order_status(&orders.get(&order_id).await) == order_pb::OrderStatus::Paid
    })
    .await;
    shop.stop().await;
}
