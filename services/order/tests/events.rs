//! The order service's events, read from the fleet's own event bus: each state change emits its
//! event once, in order per order, and a change that does not happen emits nothing.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set.

use std::time::Duration;

use mall_common::events::{Envelope, Payload, SubscribeOptions};
use mall_proto::common::v1::CartItem;
use mall_proto::order::v1 as pb;
use mall_testing::{OrderClient, TestFleet, address, assert_code};
use tonic::Code;

const ALICE: u64 = 7;

/// Every `order.*` event the bus delivers to a fresh group until it stays quiet for `quiet`.
async fn order_events(fleet: &TestFleet, quiet: Duration) -> Vec<Envelope> {
    let bus = fleet.events().await;
    let group = format!("t{}", uuid_like());
    let mut sub = bus
        .subscribe(SubscribeOptions::new(group).types(["order.*"]).unwrap())
        .await
        .expect("subscribe");
    let mut seen = Vec::new();
    while let Ok(next) = tokio::time::timeout(quiet, sub.next()).await {
        let delivery = next.expect("delivery");
        seen.push(delivery.envelope.clone());
        delivery.ack().await.expect("ack");
    }
    seen
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn place_req(key: &str, product: u64) -> pb::PlaceOrderReq {
    pb::PlaceOrderReq {
        user_id: ALICE,
        user_currency: "USD".into(),
        address: Some(address()),
        email: "alice@example.com".into(),
        order_items: vec![pb::OrderItem {
            item: Some(CartItem {
                product_id: product,
                quantity: 2,
            }),
            cost_cents: 1_000,
        }],
        idempotency_key: key.into(),
        ..Default::default()
    }
}

async fn place(client: &mut OrderClient, req: pb::PlaceOrderReq) -> Result<String, tonic::Status> {
    client
        .place_order(req)
        .await
        .map(|r| r.into_inner().order.expect("order result").order_id)
}

fn types_of(events: &[Envelope], order_id: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.aggregate_id == order_id)
        .map(|e| e.r#type.clone())
        .collect()
}

#[tokio::test]
async fn placing_paying_and_cancelling_emit_one_event_each_in_order() {
    let fleet = TestFleet::start(&["auth", "product", "order"]).await;
    let product = fleet.catalog().create_product("Pen", 500, 10).await;
    let mut client = fleet.client::<OrderClient>("order");
    let paid = place(&mut client, place_req("events-paid", product))
        .await
        .unwrap();
    // An idempotent replay of PlaceOrder names the same order and emits nothing new.
    let again = place(&mut client, place_req("events-paid", product))
        .await
        .unwrap();
    assert_eq!(again, paid);
    for _ in 0..2 {
        client
            .mark_order_paid(pb::MarkOrderPaidReq {
                user_id: ALICE,
                order_id: paid.clone(),
                transaction_id: "t-events".into(),
            })
            .await
            .expect("paid (a repeat is a no-op)");
    }
    let cancelled = place(&mut client, place_req("events-cancelled", product))
        .await
        .unwrap();
    let cancel = |id: String| pb::CancelOrderReq {
        user_id: ALICE,
        order_id: id,
        reason: "changed my mind".into(),
    };
    client
        .cancel_order(cancel(cancelled.clone()))
        .await
        .unwrap();
    // Cancels that lose (already cancelled; already paid) change nothing and emit nothing.
    assert_code!(
        client.cancel_order(cancel(cancelled.clone())).await,
        Code::FailedPrecondition
    );
    assert_code!(
        client.cancel_order(cancel(paid.clone())).await,
        Code::FailedPrecondition
    );

    let events = order_events(&fleet, Duration::from_secs(2)).await;
    assert_eq!(types_of(&events, &paid), ["order.placed", "order.paid"]);
    assert_eq!(
        types_of(&events, &cancelled),
        ["order.placed", "order.cancelled"]
    );
    for id in [&paid, &cancelled] {
        let sequences: Vec<u64> = events
            .iter()
            .filter(|e| &e.aggregate_id == id)
            .map(|e| e.sequence)
            .collect();
        assert_eq!(sequences, [1, 2], "{id}");
    }
    let placed = events
        .iter()
        .find(|e| e.aggregate_id == paid && e.r#type == "order.placed")
        .unwrap();
    let Some(Payload::OrderPlaced(p)) = &placed.payload else {
        panic!("{placed:?}")
    };
    assert_eq!(p.email, "alice@example.com");
    assert_eq!(p.total_cents, 1_000); // cost_cents is the line total
    assert_eq!(p.items.len(), 1);
    assert_eq!(p.items[0].product_id, product);
    assert_eq!(p.items[0].quantity, 2);
    let cancel_event = events
        .iter()
        .find(|e| e.aggregate_id == cancelled && e.r#type == "order.cancelled")
        .unwrap();
    let Some(Payload::OrderCancelled(c)) = &cancel_event.payload else {
        panic!("{cancel_event:?}")
    };
    assert_eq!(c.reason, "changed my mind");
    fleet.stop().await;
}

#[tokio::test]
async fn a_place_order_refused_by_validation_emits_nothing() {
    let fleet = TestFleet::start(&["auth", "product", "order"]).await;
    let product = fleet.catalog().create_product("Pen", 500, 10).await;
    let mut client = fleet.client::<OrderClient>("order");
    let mut wrong_currency = place_req("events-eur", product);
    wrong_currency.user_currency = "EUR".into();
    assert_code!(
        place(&mut client, wrong_currency).await,
        Code::InvalidArgument
    );
    let mut no_items = place_req("events-empty", product);
    no_items.order_items.clear();
    assert_code!(place(&mut client, no_items).await, Code::InvalidArgument);
    let events = order_events(&fleet, Duration::from_secs(1)).await;
    assert!(events.is_empty(), "{events:?}");
    fleet.stop().await;
}
