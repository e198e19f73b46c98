//! The payment-timeout sweeper and Alipay orders, with the whole shop and the fake Alipay
//! gateway: before cancelling an unpaid Alipay order the sweeper asks payment (which asks
//! Alipay); a payment it finds marks the order PAID instead, and a payment that arrives after
//! the cancellation is refunded in full while the order stays CANCELLED.
//!
//! The sweeper runs in the test (`run_once_at` a time past the timeout) on the order service's
//! database, with clients calling as order: the fleet's own sweeper waits the 15-minute
//! default.

use std::time::Duration;

use mall_common::store::Database;
use mall_proto::order::v1 as pb;
use mall_testing::{AlipayFleet, eventually, order_status};
use mall_types::time::unix_secs as unix_now;
use order::store::Orders;
use order::sweeper::Sweeper;

const WAIT: Duration = Duration::from_secs(15);

async fn sweeper(shop: &AlipayFleet) -> Sweeper {
    let db = Database::connect(
        &shop.fleet.database_url("order"),
        &order::default_settings().database,
        &order::store::MIGRATIONS,
    )
    .await
    .expect("open the order database");
    Sweeper::new(
        Orders::new(db),
        shop.fleet.client_from("order", "product"),
        Duration::from_secs(900),
    )
    .with_payment(shop.fleet.client_from("order", "payment"))
}

#[tokio::test]
async fn unpaid_alipay_order_is_cancelled_and_a_payment_after_that_is_refunded_in_full() {
    // Payment's own poller waits, so only the sweeper's question finds the lost payment.
    let shop = AlipayFleet::start(&[("MALL__PAYMENT__ALIPAY_QUERY_AFTER", "1h")]).await;
    let user = 7;
    let (products, unpaid) = shop.checkout(user, "sweep-unpaid", &[(1_100, 3)]).await;
    // Another buyer (the first one's cart keeps its lines until the order is paid).
    let other = 8;
    let (_, lost) = shop.checkout(other, "sweep-lost", &[(800, 1)]).await;
    let catalog = shop.fleet.catalog();
    assert_eq!(catalog.stock_of(products[0]).await, 7, "reserved");
    // The second order was paid at Alipay, its notification lost.
    shop.gateway.pay(&lost.order_id, 800);

    let report = sweeper(&shop)
        .await
        .run_once_at(unix_now() + 901)
        .await
        .expect("sweep");
    assert_eq!(
        report.cancelled,
        vec![unpaid.order_id.clone()],
        "{report:?}"
    );
    assert_eq!(report.paid, vec![lost.order_id.clone()], "{report:?}");
    let orders = shop.fleet.orders(user);
    assert_eq!(
        order_status(&orders.get(&unpaid.order_id).await),
        pb::OrderStatus::Cancelled
    );
    assert_eq!(catalog.stock_of(products[0]).await, 10, "stock released");
    let paid = shop.fleet.orders(other).get(&lost.order_id).await;
    assert_eq!(
        order_status(&paid),
        pb::OrderStatus::Paid,
        "found paid, not cancelled"
    );
    assert_eq!(
        paid.transaction_id,
        shop.gateway.trade(&lost.order_id).unwrap().trade_no
    );

    // The buyer pays the cancelled order after all: recorded, then refunded in full through
    // Alipay; the order stays CANCELLED.
    assert_eq!(
        shop.pay_and_notify(&unpaid.order_id, 3_300).await,
        "success"
    );
    eventually(WAIT, "the late payment is refunded in full", || async {
        shop.gateway
            .trade(&unpaid.order_id)
            .is_some_and(|t| t.refunded_cents == 3_300)
    })
    .await;
    let refunds = shop.gateway.refunds(&unpaid.order_id);
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    eventually(WAIT, "payment records the refund", || async {
        shop.fleet
            .payments()
            .of_order(&unpaid.order_id)
            .await
            .is_ok_and(|p| p.refunded_cents == 3_300 && p.status == "refunded")
    })
    .await;
    assert_eq!(
        order_status(&orders.get(&unpaid.order_id).await),
        pb::OrderStatus::Cancelled
    );
    shop.stop().await;
}
