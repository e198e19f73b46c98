//! Black-box tests of the payment service through real gRPC on port 0.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set (each fleet gets its own database, dropped afterwards).
//!
//! Alipay is played by the tests: a merchant key pair (its private half configured as the app
//! key, its public half verifying the page-pay URLs) and an "Alipay" key pair (its public half
//! configured, its private half signing notifications), both generated once per test binary.
//! The card-data grep test lives in `card_data.rs`, alone in its process (see there).

mod support;

use mall_proto::payment::v1 as pb;
use mall_testing::{TestFleet, assert_code};
use sqlx::Row;
use support::*;
use tonic::Code;

#[tokio::test]
async fn charge_records_brand_and_last4_only() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let txn = client
        .charge(charge_req(
            "order-card-1",
            7,
            12_345,
            card("5555 5555-5555 4444"),
        ))
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    assert!(uuid::Uuid::parse_str(&txn).is_ok(), "{txn}");
    let p = get(&mut client, &txn).await.unwrap();
    assert_eq!(p.transaction_id, txn);
    assert_eq!(p.order_id, "order-card-1");
    assert_eq!(p.user_id, 7);
    assert_eq!(p.amount_cents, 12_345);
    assert_eq!(p.refunded_cents, 0);
    assert_eq!(p.status, "paid");
    assert_eq!(p.payment_method, "credit_card");
    assert_eq!(p.card_brand, "mastercard");
    assert_eq!(p.card_last4, "4444");
    assert!(p.created_at > 0);

    // An empty method means credit_card; Amex is told by its prefix.
    let mut req = charge_req(
        "order-card-2",
        7,
        100,
        card_with("378282246310005", "1234", this_year() % 100 + 1, 1),
    );
    req.payment_method = String::new();
    let txn = client
        .charge(req)
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    let p = get(&mut client, &txn).await.unwrap();
    assert_eq!(
        (p.card_brand.as_str(), p.card_last4.as_str()),
        ("amex", "0005")
    );

    assert_code!(
        get(&mut client, "no-such-transaction").await,
        Code::NotFound,
        "unknown id"
    );
    assert_code!(
        get(&mut client, "").await,
        Code::InvalidArgument,
        "empty id"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn invalid_charges_are_invalid_argument() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let year = this_year() + 2;
    let expired = this_year() - 1;
    let cases: Vec<(&str, pb::ChargeReq)> = vec![
        (
            "bad luhn",
            charge_req("o", 7, 100, card("4242424242424241")),
        ),
        ("12 digits", charge_req("o", 7, 100, card("424242424242"))),
        (
            "20 digits",
            charge_req("o", 7, 100, card("42424242424242424242")),
        ),
        ("letters", charge_req("o", 7, 100, card("4242x42424242424"))),
        ("empty number", charge_req("o", 7, 100, card(""))),
        (
            "cvv 12",
            charge_req("o", 7, 100, card_with(VISA, "12", year, 1)),
        ),
        (
            "cvv 12a",
            charge_req("o", 7, 100, card_with(VISA, "12a", year, 1)),
        ),
        (
            "cvv 12345",
            charge_req("o", 7, 100, card_with(VISA, "12345", year, 1)),
        ),
        (
            "month 13",
            charge_req("o", 7, 100, card_with(VISA, "123", year, 13)),
        ),
        (
            "month 0",
            charge_req("o", 7, 100, card_with(VISA, "123", year, 0)),
        ),
        (
            "expired",
            charge_req("o", 7, 100, card_with(VISA, "123", expired, 12)),
        ),
        (
            "expired 2-digit",
            charge_req("o", 7, 100, card_with(VISA, "123", expired % 100, 12)),
        ),
        (
            "3-digit year",
            charge_req("o", 7, 100, card_with(VISA, "123", 123, 1)),
        ),
        ("amount 0", charge_req("o", 7, 0, card(VISA))),
        ("amount negative", charge_req("o", 7, -100, card(VISA))),
        ("empty order", charge_req("", 7, 100, card(VISA))),
        (
            "long order",
            charge_req(&"x".repeat(65), 7, 100, card(VISA)),
        ),
        ("user 0", charge_req("o", 0, 100, card(VISA))),
        (
            "no card",
            pb::ChargeReq {
                credit_card: None,
                ..charge_req("o", 7, 100, card(VISA))
            },
        ),
        (
            "unknown method",
            pb::ChargeReq {
                payment_method: "paypal".into(),
                ..charge_req("o", 7, 100, card(VISA))
            },
        ),
    ];
    for (what, req) in cases {
        let number = req
            .credit_card
            .as_ref()
            .map(|c| c.credit_card_number.clone())
            .unwrap_or_default();
        match client.charge(req).await {
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
                assert!(
                    number.len() < 12 || !status.message().contains(&number),
                    "{what} echoes the number"
                );
            }
            Ok(r) => panic!("{what}: accepted as {:?}", r.into_inner()),
        }
    }
    let alipay = pb::ChargeReq {
        payment_method: "alipay".into(),
        ..charge_req("o", 7, 100, card(VISA))
    };
    let status = client.charge(alipay).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("AlipayCharge"),
        "{}",
        status.message()
    );

    // Nothing was recorded for order "o".
    let pool = database(&fleet).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payments WHERE order_id = ?",
            "o"
        )
        .await,
        0
    );
    fleet.stop().await;
}

#[tokio::test]
async fn test_cards_decline_and_record_nothing() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let status = client
        .charge(charge_req("order-decline", 7, 100, card(DECLINED)))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "card declined")
    );
    let status = client
        .charge(charge_req(
            "order-decline",
            7,
            100,
            card(INSUFFICIENT_FUNDS),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::FailedPrecondition,
            "card declined: insufficient funds"
        )
    );
    // The declines left the order free for a working card.
    let txn = charge(&mut client, "order-decline", 7, 100).await;
    assert_eq!(get(&mut client, &txn).await.unwrap().amount_cents, 100);
    let pool = database(&fleet).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payments WHERE order_id = ?",
            "order-decline"
        )
        .await,
        1
    );
    fleet.stop().await;
}

#[tokio::test]
async fn one_charge_per_order_repeats_answer_with_the_same_transaction() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let first = charge(&mut client, "order-once", 7, 2_500).await;
    let again = charge(&mut client, "order-once", 7, 2_500).await;
    assert_eq!(
        first, again,
        "a repeat with the same user and amount is the same charge"
    );
    assert_code!(
        client
            .charge(charge_req("order-once", 7, 2_600, card(VISA)))
            .await,
        Code::AlreadyExists,
        "different amount"
    );
    assert_code!(
        client
            .charge(charge_req("order-once", 8, 2_500, card(VISA)))
            .await,
        Code::AlreadyExists,
        "different user"
    );
    let pool = database(&fleet).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payments WHERE order_id = ?",
            "order-once"
        )
        .await,
        1
    );
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_charges_for_one_order_make_one_payment() {
    let fleet = fleet().await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut client = service(&fleet);
            tokio::spawn(async move {
                client
                    .charge(charge_req("order-race", 7, 4_200, card(VISA)))
                    .await
                    .map(|r| r.into_inner().transaction_id)
            })
        })
        .collect();
    let mut ids = Vec::new();
    for call in calls {
        ids.push(
            call.await
                .unwrap()
                .expect("every concurrent charge succeeds"),
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one transaction id: {ids:?}");
    let pool = database(&fleet).await;
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payments WHERE order_id = ?",
            "order-race"
        )
        .await,
        1
    );
    fleet.stop().await;
}

#[tokio::test]
async fn partial_refunds_up_to_what_remains() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let txn = charge(&mut client, "order-refund", 7, 100).await;

    let first = client
        .refund(refund_req(&txn, "order-refund", 7, 30))
        .await
        .unwrap()
        .into_inner()
        .refund_id;
    let p = get(&mut client, &txn).await.unwrap();
    assert_eq!(
        (p.refunded_cents, p.status.as_str()),
        (30, "partially_refunded")
    );

    assert_code!(
        client.refund(refund_req(&txn, "order-refund", 7, 71)).await,
        Code::FailedPrecondition,
        "more than remains"
    );
    assert_code!(
        client.refund(refund_req(&txn, "order-refund", 7, 0)).await,
        Code::InvalidArgument,
        "zero"
    );
    assert_code!(
        client.refund(refund_req(&txn, "order-refund", 7, -5)).await,
        Code::InvalidArgument,
        "negative"
    );
    assert_code!(
        client
            .refund(refund_req("nope", "order-refund", 7, 5))
            .await,
        Code::NotFound,
        "unknown transaction"
    );

    let second = client
        .refund(refund_req(&txn, "order-refund", 7, 70))
        .await
        .unwrap()
        .into_inner()
        .refund_id;
    assert_ne!(first, second);
    let p = get(&mut client, &txn).await.unwrap();
    assert_eq!((p.refunded_cents, p.status.as_str()), (100, "refunded"));
    let status = client
        .refund(refund_req(&txn, "order-refund", 7, 1))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (
            Code::FailedPrecondition,
            "refund exceeds the remaining amount"
        )
    );

    // Refund ids are persisted with their amounts and reason.
    let pool = database(&fleet).await;
    let rows = sqlx::query("SELECT refund_id, amount_cents, reason FROM refunds WHERE transaction_id = ? ORDER BY amount_cents")
        .bind(txn.clone())
        .fetch_all(&pool)
        .await
        .unwrap();
    let stored: Vec<(String, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        stored,
        vec![
            (first, 30, "customer asked".to_string()),
            (second, 70, "customer asked".to_string())
        ]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn refunds_must_name_the_payments_order_and_user() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let txn = charge(&mut client, "order-owner", 7, 100).await;
    charge(&mut client, "order-other", 8, 100).await;
    for (what, req) in [
        ("other order", refund_req(&txn, "order-other", 7, 10)),
        ("other user", refund_req(&txn, "order-owner", 8, 10)),
    ] {
        let status = client.refund(req).await.unwrap_err();
        assert_eq!(
            status.code(),
            Code::FailedPrecondition,
            "{what}: {status:?}"
        );
        assert!(
            !status.message().contains("order-other"),
            "{what}: {}",
            status.message()
        );
    }
    assert_eq!(get(&mut client, &txn).await.unwrap().refunded_cents, 0);
    fleet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_concurrent_refunds_never_exceed_the_charge() {
    let fleet = fleet().await;
    let txn = charge(&mut service(&fleet), "order-refund-race", 7, 100).await;
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let mut client = service(&fleet);
            let req = refund_req(&txn, "order-refund-race", 7, 30);
            tokio::spawn(async move { client.refund(req).await })
        })
        .collect();
    let mut succeeded = 0;
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(succeeded, 3, "three refunds of 30 fit into 100");
    let p = get(&mut service(&fleet), &txn).await.unwrap();
    assert_eq!(p.refunded_cents, 90);
    assert!(p.refunded_cents <= p.amount_cents);
    let pool = database(&fleet).await;
    // Summed here: SUM is DECIMAL on MySQL, which the Any driver does not decode.
    let amounts: Vec<i64> =
        sqlx::query_scalar("SELECT amount_cents FROM refunds WHERE transaction_id = ?")
            .bind(txn.clone())
            .fetch_all(&pool)
            .await
            .unwrap();
    let refunded: i64 = amounts.iter().sum();
    assert_eq!(refunded, 90, "one refund row per successful refund");
    fleet.stop().await;
}

#[tokio::test]
async fn internal_rpcs_reject_end_user_tokens() {
    let fleet = fleet().await;
    let txn = charge(&mut service(&fleet), "order-internal", 7, 100).await;
    for mut client in [
        user(&fleet, 7),
        fleet.client_as::<Client>("payment", &fleet.admin_token()),
    ] {
        assert_code!(
            client
                .charge(charge_req("order-internal-2", 7, 100, card(VISA)))
                .await,
            Code::PermissionDenied,
            "Charge"
        );
        assert_code!(
            client
                .refund(refund_req(&txn, "order-internal", 7, 10))
                .await,
            Code::PermissionDenied,
            "Refund"
        );
        assert_code!(
            get(&mut client, &txn).await,
            Code::PermissionDenied,
            "GetPayment"
        );
    }
    assert_eq!(
        get(&mut service(&fleet), &txn)
            .await
            .unwrap()
            .refunded_cents,
        0
    );
    fleet.stop().await;
}

// AlipayCharge and AlipayNotify against real orders and the fake gateway: tests/alipay.rs.

#[tokio::test]
async fn alipay_without_keys_is_refused_not_a_panic() {
    let fleet = TestFleet::start(&["auth", "payment"]).await;
    let status = user(&fleet, 7)
        .alipay_charge(pb::AlipayChargeReq {
            order_id: "order-ali-off".into(),
            user_id: 7,
            amount_cents: 100,
            return_url: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), status.message()),
        (Code::FailedPrecondition, "alipay is not configured")
    );
    let signed = sign_notification(
        notification("order-ali-off", "t-off", "TRADE_SUCCESS", "1.00", "7"),
        &keys().alipay_private,
    );
    assert!(!notify(&mut service(&fleet), signed).await);
    // Card payments work without Alipay.
    charge(&mut service(&fleet), "order-card-no-alipay", 7, 100).await;
    fleet.stop().await;
}

#[test]
fn settings_debug_hides_the_private_key() {
    let mut settings = payment::default_settings();
    settings.ext.payment.alipay_private_key_pem =
        "-----BEGIN PRIVATE KEY-----\nSECRETBYTES\n-----END PRIVATE KEY-----".into();
    let shown = format!("{settings:?}");
    assert!(!shown.contains("SECRETBYTES"), "{shown}");
    assert!(shown.contains("openapi-sandbox.dl.alipaydev.com"));
}

#[tokio::test]
async fn get_payment_finds_an_order_s_charge_by_order_id() {
    let fleet = fleet().await;
    let mut svc = service(&fleet);
    let txn = charge(&mut svc, "order-lookup-1", 7, 1_234).await;
    let by_order = svc
        .get_payment(pb::GetPaymentReq {
            transaction_id: String::new(),
            order_id: "order-lookup-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_order.transaction_id, txn);
    assert_eq!(by_order.amount_cents, 1_234);
    let missing = svc
        .get_payment(pb::GetPaymentReq {
            transaction_id: String::new(),
            order_id: "never-charged".into(),
        })
        .await;
    assert_code!(missing, Code::NotFound, "unknown order");
    let neither = svc.get_payment(pb::GetPaymentReq::default()).await;
    assert_code!(neither, Code::InvalidArgument, "no id at all");
    fleet.stop().await;
}

#[tokio::test]
async fn a_voided_order_refuses_a_late_charge_and_a_void_after_a_charge_finds_it() {
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let void = |order: &str| pb::VoidOrderReq {
        order_id: order.into(),
    };

    // Voided first: the charge that arrives late is refused, and nothing is recorded.
    for _ in 0..2 {
        let answer = client
            .void_order(void("order-void-1"))
            .await
            .unwrap()
            .into_inner();
        assert!(answer.voided && answer.payment.is_none(), "{answer:?}");
    }
    let err = assert_code!(
        client
            .charge(charge_req("order-void-1", 7, 1_000, card(VISA)))
            .await,
        Code::FailedPrecondition
    );
    assert_eq!(
        mall_common::error::reason_of(&err).as_deref(),
        Some("ORDER_VOIDED")
    );
    assert_code!(
        client
            .get_payment(pb::GetPaymentReq {
                transaction_id: String::new(),
                order_id: "order-void-1".into(),
            })
            .await,
        Code::NotFound
    );

    // Charged first: the void changes nothing and answers with the charge.
    let txn = charge(&mut client, "order-void-2", 7, 2_500).await;
    let answer = client
        .void_order(void("order-void-2"))
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.voided, "{answer:?}");
    let payment = answer.payment.expect("the order's payment");
    assert_eq!(
        (
            payment.transaction_id.as_str(),
            payment.user_id,
            payment.amount_cents
        ),
        (txn.as_str(), 7, 2_500)
    );
    assert_eq!(payment.payment_method, "credit_card");
    // A repeat of the charge still answers the same transaction.
    assert_eq!(charge(&mut client, "order-void-2", 7, 2_500).await, txn);

    assert_code!(client.void_order(void("")).await, Code::InvalidArgument);
    assert_code!(
        user(&fleet, 7).void_order(void("order-void-3")).await,
        Code::PermissionDenied
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_charge_racing_a_void_either_lands_and_is_found_or_is_refused() {
    let fleet = fleet().await;
    let races = (0..12).map(|i| {
        let (mut charging, mut voiding) = (service(&fleet), service(&fleet));
        let order = format!("order-race-void-{i}");
        async move {
            let (charged, voided) = tokio::join!(
                charging.charge(charge_req(&order, 7, 700, card(VISA))),
                voiding.void_order(pb::VoidOrderReq {
                    order_id: order.clone(),
                })
            );
            let voided = voided.expect("void answers").into_inner();
            match charged {
                Ok(resp) => {
                    let txn = resp.into_inner().transaction_id;
                    assert!(!voided.voided, "{order}: charged and voided");
                    assert_eq!(voided.payment.map(|p| p.transaction_id), Some(txn));
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::FailedPrecondition, "{order}: {status}");
                    assert!(voided.voided, "{order}: neither charged nor voided");
                }
            }
        }
    });
    futures::future::join_all(races).await;
    fleet.stop().await;
}

#[tokio::test]
async fn reconciliation_refunds_payments_of_cancelled_orders_and_keeps_paid_ones() {
    let k = keys();
    let fleet = TestFleet::start_with(
        &["auth", "product", "order", "payment"],
        &[
            ("MALL__PAYMENT__ALIPAY_APP_ID", APP_ID),
            ("MALL__PAYMENT__ALIPAY_PRIVATE_KEY_PEM", &k.app_private_pem),
            ("MALL__PAYMENT__ALIPAY_PUBLIC_KEY_PEM", &k.alipay_public_pem),
            ("MALL__PAYMENT__RECONCILE_INTERVAL", "1s"),
            ("MALL__PAYMENT__RECONCILE_AFTER", "0s"),
        ],
    )
    .await;
    let user = 9;
    let mut order: mall_testing::OrderClient = fleet.client("order");
    let place = |key: &'static str| {
        let req = mall_proto::order::v1::PlaceOrderReq {
            user_id: user,
            user_currency: String::new(),
            address: Some(mall_testing::address()),
            email: "buyer@example.com".into(),
            order_items: vec![mall_proto::order::v1::OrderItem {
                item: Some(mall_proto::common::v1::CartItem {
                    product_id: 1,
                    quantity: 2,
                }),
                cost_cents: 1_800,
            }],
            idempotency_key: key.into(),
            ..Default::default()
        };
        let mut order = order.clone();
        async move {
            order
                .place_order(req)
                .await
                .expect("PlaceOrder")
                .into_inner()
                .order
                .expect("an order")
                .order_id
        }
    };
    let (cancelled, paid, pending) = (
        place("reconcile-cancelled").await,
        place("reconcile-paid").await,
        place("reconcile-pending").await,
    );
    let mut client = service(&fleet);
    let late = charge(&mut client, &cancelled, user, 1_800).await;
    let good = charge(&mut client, &paid, user, 1_800).await;
    let waiting = charge(&mut client, &pending, user, 1_800).await;
    order
        .cancel_order(mall_proto::order::v1::CancelOrderReq {
            user_id: user,
            order_id: cancelled.clone(),
            reason: "checkout gave up".into(),
        })
        .await
        .expect("cancel");
    order
        .mark_order_paid(mall_proto::order::v1::MarkOrderPaidReq {
            user_id: user,
            order_id: paid.clone(),
            transaction_id: good.clone(),
        })
        .await
        .expect("mark paid");

    mall_testing::eventually(
        std::time::Duration::from_secs(10),
        "the cancelled order's payment is refunded",
        || async {
            let p = get(&mut service(&fleet), &late).await.unwrap();
            p.refunded_cents == 1_800 && p.status == "refunded"
        },
    )
    .await;
    let pool = database(&fleet).await;
    mall_testing::eventually(
        std::time::Duration::from_secs(10),
        "the paid order's payment is reconciled",
        || async {
            count(
                &pool,
                "SELECT COUNT(*) FROM payments WHERE transaction_id = ? AND reconciled_at IS NOT NULL",
                &good,
            )
            .await
                == 1
        },
    )
    .await;
    // A few more rounds change nothing else: the paid one is kept, the pending one waits.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    for txn in [&good, &waiting] {
        let p = get(&mut client, txn).await.unwrap();
        assert_eq!((p.refunded_cents, p.status.as_str()), (0, "paid"), "{txn}");
    }
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM payments WHERE transaction_id = ? AND reconciled_at IS NULL",
            &waiting,
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pool,
            "SELECT COUNT(*) FROM refunds WHERE transaction_id = ?",
            &late
        )
        .await,
        1,
        "refunded exactly once"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_charge_and_its_refunds_are_events_and_a_refused_refund_emits_nothing() {
    use mall_common::events::{Payload, SubscribeOptions};
    let fleet = fleet().await;
    let mut client = service(&fleet);
    let txn = charge(&mut client, "order-events", 7, 100).await;
    let refund_id = client
        .refund(refund_req(&txn, "order-events", 7, 40))
        .await
        .unwrap()
        .into_inner()
        .refund_id;
    assert_code!(
        client.refund(refund_req(&txn, "order-events", 7, 61)).await,
        Code::FailedPrecondition,
        "more than remains: rolled back"
    );
    let bus = fleet.events().await;
    let mut sub = bus
        .subscribe(SubscribeOptions::new("payment-events-test"))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(Ok(d)) = tokio::time::timeout(std::time::Duration::from_secs(2), sub.next()).await
    {
        seen.push(d.envelope.clone());
        d.ack().await.unwrap();
    }
    let ours: Vec<_> = seen
        .iter()
        .filter(|e| e.aggregate_id == "order-events")
        .collect();
    assert_eq!(ours.len(), 2, "{seen:?}");
    assert_eq!((ours[0].sequence, ours[1].sequence), (1, 2));
    let Some(Payload::PaymentCharged(c)) = &ours[0].payload else {
        panic!("{:?}", ours[0])
    };
    assert_eq!(
        (c.transaction_id.as_str(), c.amount_cents),
        (txn.as_str(), 100)
    );
    let Some(Payload::PaymentRefunded(r)) = &ours[1].payload else {
        panic!("{:?}", ours[1])
    };
    assert_eq!(
        (r.refund_id.as_str(), r.amount_cents),
        (refund_id.as_str(), 40)
    );
    fleet.stop().await;
}

/// `payment --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_payment"), "payment", &[]);
}
