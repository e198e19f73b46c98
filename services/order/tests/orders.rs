//! Black-box tests of the order service through real gRPC on port 0, with the real product
//! service holding the stock reservations.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set (each fleet gets its own databases, dropped afterwards).

use std::collections::HashSet;
use std::time::Duration;

use mall_common::client::Clients;
use mall_common::store::Database;
use mall_proto::common::v1::{Address, CartItem};
use mall_proto::order::v1 as pb;
use mall_testing::{OrderClient, TestFleet, address, assert_code, eventually};
use mall_types::time::unix_secs as unix_now;
use order::store::Orders;
use order::sweeper::Sweeper;
use tonic::Code;

const ALICE: u64 = 7;
const BOB: u64 = 8;

/// How long the sweeper gets to act.
const SWEEP_WAIT: Duration = Duration::from_secs(15);

async fn fleet() -> TestFleet {
    TestFleet::start(&["auth", "product", "order"]).await
}

/// A client calling as a service (PlaceOrder and MarkOrderPaid are internal).
fn internal(fleet: &TestFleet) -> OrderClient {
    fleet.client::<OrderClient>("order")
}

/// A client signed in as end user `user_id`.
fn as_user(fleet: &TestFleet, user_id: u64) -> OrderClient {
    fleet.client_as::<OrderClient>("order", &fleet.user_token(user_id))
}

/// The order service's own database, opened beside the running service.
async fn open_orders(fleet: &TestFleet) -> Orders {
    let url = fleet.database_url("order");
    let db = Database::connect(
        &url,
        &order::default_settings().database,
        &order::store::MIGRATIONS,
    )
    .await
    .expect("open the order database");
    Orders::new(db)
}

/// `(product_id, quantity, cost_cents)` lines.
fn place_req(user_id: u64, lines: &[(u64, i32, i64)], key: &str) -> pb::PlaceOrderReq {
    pb::PlaceOrderReq {
        user_id,
        user_currency: "USD".into(),
        address: Some(address()),
        email: "Alice@Example.com".into(),
        order_items: lines
            .iter()
            .map(|(product_id, quantity, cost_cents)| pb::OrderItem {
                item: Some(CartItem {
                    product_id: *product_id,
                    quantity: *quantity,
                }),
                cost_cents: *cost_cents,
            })
            .collect(),
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

async fn place_ok(fleet: &TestFleet, user_id: u64, lines: &[(u64, i32, i64)]) -> String {
    place(&mut internal(fleet), place_req(user_id, lines, ""))
        .await
        .expect("place order")
}

async fn get(client: &mut OrderClient, user_id: u64, id: &str) -> Result<pb::Order, tonic::Status> {
    client
        .get_order(pb::GetOrderReq {
            user_id,
            order_id: id.into(),
        })
        .await
        .map(|r| r.into_inner().order.expect("order"))
}

async fn status_of(fleet: &TestFleet, user_id: u64, id: &str) -> pb::OrderStatus {
    let order = get(&mut internal(fleet), user_id, id)
        .await
        .expect("get order");
    pb::OrderStatus::try_from(order.status).expect("known status")
}

async fn pay(
    client: &mut OrderClient,
    user_id: u64,
    id: &str,
    transaction: &str,
) -> Result<(), tonic::Status> {
    client
        .mark_order_paid(pb::MarkOrderPaidReq {
            user_id,
            order_id: id.into(),
            transaction_id: transaction.into(),
        })
        .await
        .map(|_| ())
}

async fn cancel(
    client: &mut OrderClient,
    user_id: u64,
    id: &str,
    reason: &str,
) -> Result<(), tonic::Status> {
    client
        .cancel_order(pb::CancelOrderReq {
            user_id,
            order_id: id.into(),
            reason: reason.into(),
        })
        .await
        .map(|_| ())
}

async fn list(
    client: &mut OrderClient,
    user_id: u64,
    page: i32,
    page_size: i64,
) -> Result<pb::ListOrderResp, tonic::Status> {
    client
        .list_order(pb::ListOrderReq {
            user_id,
            page,
            page_size,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_placed_order_is_pending_with_its_items_address_and_total() {
    let fleet = fleet().await;
    let before = unix_now();
    let id = place_ok(&fleet, ALICE, &[(11, 2, 1_000), (12, 1, 250), (11, 1, 0)]).await;
    let parsed = uuid::Uuid::parse_str(&id).expect("order ids are UUIDs");
    assert_eq!(parsed.get_version_num(), 7, "time-ordered UUIDv7");

    let order = get(&mut as_user(&fleet, ALICE), ALICE, &id).await.unwrap();
    assert_eq!(order.order_id, id);
    assert_eq!(order.user_id, ALICE);
    assert_eq!(order.status, pb::OrderStatus::Pending as i32);
    assert_eq!(
        order.total_cents, 1_250,
        "total is the sum of the line totals"
    );
    assert_eq!(order.user_currency, "USD");
    assert_eq!(order.email, "alice@example.com");
    assert_eq!(order.address, Some(address()));
    assert!(order.created_at >= before && order.created_at <= unix_now());
    assert_eq!(order.transaction_id, "");
    assert_eq!(order.paid_at, 0);
    let lines: Vec<(u64, i32, i64)> = order
        .order_items
        .iter()
        .map(|i| {
            let item = i.item.as_ref().expect("cart item");
            (item.product_id, item.quantity, i.cost_cents)
        })
        .collect();
    assert_eq!(lines, vec![(11, 2, 1_000), (12, 1, 250), (11, 1, 0)]);

    // An empty currency means the store currency.
    let mut req = place_req(ALICE, &[(11, 1, 1)], "");
    req.user_currency.clear();
    let id = place(&mut internal(&fleet), req).await.unwrap();
    let order = get(&mut as_user(&fleet, ALICE), ALICE, &id).await.unwrap();
    assert_eq!(order.user_currency, "USD");
    fleet.stop().await;
}

#[tokio::test]
async fn place_order_refuses_bad_input_and_writes_nothing() {
    let fleet = fleet().await;
    let mut client = internal(&fleet);
    let ok = || place_req(ALICE, &[(11, 1, 100)], "");
    let too_many: Vec<(u64, i32, i64)> = (1..=101).map(|p| (p, 1, 1)).collect();
    let cases: Vec<(&str, pb::PlaceOrderReq)> = vec![
        ("user 0", pb::PlaceOrderReq { user_id: 0, ..ok() }),
        (
            "other currency",
            pb::PlaceOrderReq {
                user_currency: "EUR".into(),
                ..ok()
            },
        ),
        (
            "no address",
            pb::PlaceOrderReq {
                address: None,
                ..ok()
            },
        ),
        (
            "no city",
            pb::PlaceOrderReq {
                address: Some(Address {
                    city: " ".into(),
                    ..address()
                }),
                ..ok()
            },
        ),
        (
            "no zip",
            pb::PlaceOrderReq {
                address: Some(Address {
                    zip_code: String::new(),
                    ..address()
                }),
                ..ok()
            },
        ),
        (
            "long street",
            pb::PlaceOrderReq {
                address: Some(Address {
                    street_address: "s".repeat(201),
                    ..address()
                }),
                ..ok()
            },
        ),
        (
            "no email",
            pb::PlaceOrderReq {
                email: String::new(),
                ..ok()
            },
        ),
        (
            "bad email",
            pb::PlaceOrderReq {
                email: "alice-at-example".into(),
                ..ok()
            },
        ),
        ("no items", place_req(ALICE, &[], "")),
        ("product 0", place_req(ALICE, &[(0, 1, 1)], "")),
        ("quantity 0", place_req(ALICE, &[(11, 0, 1)], "")),
        ("quantity 1000", place_req(ALICE, &[(11, 1000, 1)], "")),
        ("negative cost", place_req(ALICE, &[(11, 1, -1)], "")),
        ("huge cost", place_req(ALICE, &[(11, 1, i64::MAX)], "")),
        ("101 lines", place_req(ALICE, &too_many, "")),
        (
            "long key",
            place_req(ALICE, &[(11, 1, 1)], &"k".repeat(129)),
        ),
        (
            "missing item",
            pb::PlaceOrderReq {
                order_items: vec![pb::OrderItem {
                    item: None,
                    cost_cents: 1,
                }],
                ..ok()
            },
        ),
    ];
    for (what, req) in cases {
        assert_code!(
            place(&mut client, req).await,
            Code::InvalidArgument,
            "{what}"
        );
    }
    let listed = list(&mut as_user(&fleet, ALICE), ALICE, 1, 100)
        .await
        .unwrap();
    assert_eq!(listed.total, 0, "no refused order was written");
    fleet.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_order() {
    let fleet = fleet().await;
    let mut client = internal(&fleet);
    let first = place(&mut client, place_req(ALICE, &[(11, 1, 100)], "cart-1"))
        .await
        .unwrap();
    let again = place(&mut client, place_req(ALICE, &[(11, 1, 100)], "cart-1"))
        .await
        .unwrap();
    assert_eq!(first, again, "a retried PlaceOrder returns the first order");
    let other_key = place(&mut client, place_req(ALICE, &[(11, 1, 100)], "cart-2"))
        .await
        .unwrap();
    assert_ne!(first, other_key);
    let other_user = place(&mut client, place_req(BOB, &[(11, 1, 100)], "cart-1"))
        .await
        .unwrap();
    assert_ne!(first, other_user, "keys are per user");
    let no_key_a = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    let no_key_b = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    assert_ne!(
        no_key_a, no_key_b,
        "without a key every call is a new order"
    );

    // Ten concurrent calls with one key: one order.
    let calls = (0..10).map(|_| {
        let mut client = internal(&fleet);
        async move { place(&mut client, place_req(ALICE, &[(11, 3, 300)], "race")).await }
    });
    let ids: HashSet<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("concurrent place"))
        .collect();
    assert_eq!(ids.len(), 1, "one order for one key: {ids:?}");
    let listed = list(&mut as_user(&fleet, ALICE), ALICE, 1, 100)
        .await
        .unwrap();
    assert_eq!(listed.total, 5, "cart-1, cart-2, two without a key, race");
    fleet.stop().await;
}

#[tokio::test]
async fn orders_are_listed_newest_first_in_pages() {
    let fleet = fleet().await;
    let mut placed = Vec::new();
    for i in 0..25 {
        placed.push(place_ok(&fleet, ALICE, &[(11, 1, 100 + i), (12, 2, 10)]).await);
    }
    place_ok(&fleet, BOB, &[(11, 1, 1)]).await;
    let newest_first: Vec<String> = placed.iter().rev().cloned().collect();

    let mut client = as_user(&fleet, ALICE);
    let default = list(&mut client, ALICE, 0, 0).await.unwrap();
    assert_eq!(default.total, 25);
    assert_eq!(default.orders.len(), 20, "default page size is 20");
    let mut seen = Vec::new();
    for page in 1..=3 {
        let resp = list(&mut client, ALICE, page, 10).await.unwrap();
        assert_eq!(resp.total, 25);
        seen.extend(resp.orders.iter().map(|o| o.order_id.clone()));
        for order in &resp.orders {
            assert_eq!(order.user_id, ALICE);
            assert_eq!(order.order_items.len(), 2, "orders come with their items");
            assert_eq!(order.status, pb::OrderStatus::Pending as i32);
            assert_eq!(
                order.total_cents,
                order.order_items.iter().map(|i| i.cost_cents).sum::<i64>()
            );
        }
    }
    assert_eq!(seen, newest_first, "newest first, no overlap between pages");
    let beyond = list(&mut client, ALICE, 9, 10).await.unwrap();
    assert!(beyond.orders.is_empty());
    assert_eq!(beyond.total, 25);
    let clamped = list(&mut client, ALICE, 1, 1_000).await.unwrap();
    assert_eq!(clamped.orders.len(), 25, "page_size is clamped to 100");

    let bob = list(&mut as_user(&fleet, BOB), BOB, 1, 10).await.unwrap();
    assert_eq!(bob.total, 1, "only the caller's own orders");
    let nobody = list(&mut as_user(&fleet, 9), 9, 1, 10).await.unwrap();
    assert_eq!((nobody.total, nobody.orders.len()), (0, 0));

    assert_code!(
        list(&mut client, ALICE, -1, 10).await,
        Code::InvalidArgument,
        "page -1"
    );
    assert_code!(
        list(&mut client, ALICE, 1, -1).await,
        Code::InvalidArgument,
        "size -1"
    );
    assert_code!(
        list(&mut client, 0, 1, 10).await,
        Code::InvalidArgument,
        "user 0"
    );
    fleet.stop().await;
}

/// A storefront's "my orders" tabs: only the orders in one status, paged and counted as such;
/// an unknown status is refused.
#[tokio::test]
async fn orders_are_listed_by_status() {
    let fleet = fleet().await;
    let mut client = as_user(&fleet, ALICE);
    let pending = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    let cancelled = place_ok(&fleet, ALICE, &[(11, 1, 200)]).await;
    let paid = place_ok(&fleet, ALICE, &[(11, 1, 300)]).await;
    cancel(&mut client, ALICE, &cancelled, "changed my mind")
        .await
        .unwrap();
    pay(&mut internal(&fleet), ALICE, &paid, "tx-by-status")
        .await
        .unwrap();
    place_ok(&fleet, BOB, &[(11, 1, 1)]).await;
    let by = |status: pb::OrderStatus| pb::ListOrderReq {
        user_id: ALICE,
        status: status.into(),
        ..Default::default()
    };
    for (status, want) in [
        (pb::OrderStatus::Pending, vec![pending.clone()]),
        (pb::OrderStatus::Cancelled, vec![cancelled.clone()]),
        (pb::OrderStatus::Paid, vec![paid.clone()]),
        (pb::OrderStatus::Refunded, vec![]),
        (pb::OrderStatus::Unspecified, vec![paid, cancelled, pending]),
    ] {
        let resp = client.list_order(by(status)).await.unwrap().into_inner();
        let ids: Vec<String> = resp.orders.iter().map(|o| o.order_id.clone()).collect();
        assert_eq!(ids, want, "{status:?}");
        assert_eq!(resp.total, want.len() as u64, "{status:?}");
        assert!(
            resp.orders
                .iter()
                .all(|o| status == pb::OrderStatus::Unspecified || o.status == status as i32),
            "{status:?}"
        );
    }
    let bad = pb::ListOrderReq {
        user_id: ALICE,
        status: 99,
        ..Default::default()
    };
    let status = assert_code!(
        client.list_order(bad).await,
        Code::InvalidArgument,
        "status 99"
    );
    assert!(
        status.message().starts_with("status"),
        "{}",
        status.message()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn another_users_order_is_not_found() {
    let fleet = fleet().await;
    let id = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    let mut bob = as_user(&fleet, BOB);

    // Bob asking for his own data, naming Alice's order: it does not exist for him.
    assert_code!(get(&mut bob, BOB, &id).await, Code::NotFound, "get");
    assert_code!(
        cancel(&mut bob, BOB, &id, "").await,
        Code::NotFound,
        "cancel"
    );
    // Bob naming Alice as the user: not his to ask.
    assert_code!(
        get(&mut bob, ALICE, &id).await,
        Code::PermissionDenied,
        "get as alice"
    );
    assert_code!(
        cancel(&mut bob, ALICE, &id, "").await,
        Code::PermissionDenied,
        "cancel as alice"
    );
    assert_code!(
        list(&mut bob, ALICE, 1, 10).await,
        Code::PermissionDenied,
        "list as alice"
    );
    assert_eq!(
        status_of(&fleet, ALICE, &id).await,
        pb::OrderStatus::Pending,
        "untouched"
    );

    // Unknown and malformed ids.
    let mut alice = as_user(&fleet, ALICE);
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_code!(
        get(&mut alice, ALICE, &unknown).await,
        Code::NotFound,
        "unknown id"
    );
    assert_code!(
        cancel(&mut alice, ALICE, &unknown, "").await,
        Code::NotFound,
        "cancel unknown"
    );
    for bad in [String::new(), "x".repeat(65), "has space".into()] {
        assert_code!(
            get(&mut alice, ALICE, &bad).await,
            Code::InvalidArgument,
            "bad id"
        );
        assert_code!(
            cancel(&mut alice, ALICE, &bad, "").await,
            Code::InvalidArgument,
            "bad id"
        );
    }

    // The owner, an admin and a service (checkout) see it.
    assert_eq!(get(&mut alice, ALICE, &id).await.unwrap().order_id, id);
    let mut admin = fleet.client_as::<OrderClient>("order", &fleet.admin_token());
    assert_eq!(get(&mut admin, ALICE, &id).await.unwrap().order_id, id);
    assert_eq!(
        get(&mut internal(&fleet), ALICE, &id)
            .await
            .unwrap()
            .order_id,
        id
    );
    fleet.stop().await;
}

#[tokio::test]
async fn internal_rpcs_reject_end_user_tokens() {
    let fleet = fleet().await;
    let id = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    for token in [fleet.user_token(ALICE), fleet.admin_token()] {
        let mut client = fleet.client_as::<OrderClient>("order", &token);
        assert_code!(
            place(&mut client, place_req(ALICE, &[(11, 1, 100)], "")).await,
            Code::PermissionDenied,
            "PlaceOrder with an end-user token"
        );
        assert_code!(
            pay(&mut client, ALICE, &id, "txn-1").await,
            Code::PermissionDenied,
            "MarkOrderPaid with an end-user token"
        );
    }
    let mut forged = fleet.client_as::<OrderClient>("order", "not-a-token");
    assert_code!(
        place(&mut forged, place_req(ALICE, &[(11, 1, 100)], "")).await,
        Code::Unauthenticated,
        "PlaceOrder with a bad token"
    );
    assert_code!(
        get(&mut forged, ALICE, &id).await,
        Code::Unauthenticated,
        "GetOrder with a bad token"
    );
    assert_eq!(
        status_of(&fleet, ALICE, &id).await,
        pb::OrderStatus::Pending,
        "still unpaid"
    );
    let listed = list(&mut as_user(&fleet, ALICE), ALICE, 1, 10)
        .await
        .unwrap();
    assert_eq!(listed.total, 1, "no order placed by a user token");
    fleet.stop().await;
}

#[tokio::test]
async fn mark_order_paid_twice_with_the_same_transaction_is_a_no_op() {
    let fleet = fleet().await;
    let id = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    let mut client = internal(&fleet);
    pay(&mut client, ALICE, &id, "txn-1").await.unwrap();
    let paid = get(&mut client, ALICE, &id).await.unwrap();
    assert_eq!(paid.status, pb::OrderStatus::Paid as i32);
    assert_eq!(paid.transaction_id, "txn-1");
    assert!(paid.paid_at > 0);

    pay(&mut client, ALICE, &id, "txn-1")
        .await
        .expect("same transaction again is fine");
    let again = get(&mut client, ALICE, &id).await.unwrap();
    assert_eq!(again, paid, "nothing changed");

    assert_code!(
        pay(&mut client, ALICE, &id, "txn-2").await,
        Code::FailedPrecondition,
        "other txn"
    );
    assert_eq!(
        get(&mut client, ALICE, &id).await.unwrap().transaction_id,
        "txn-1"
    );

    let other = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    assert_code!(
        pay(&mut client, ALICE, &other, "").await,
        Code::InvalidArgument,
        "no txn"
    );
    assert_code!(
        pay(&mut client, 0, &other, "t").await,
        Code::InvalidArgument,
        "user 0"
    );
    assert_code!(
        pay(&mut client, ALICE, "", "t").await,
        Code::InvalidArgument,
        "no order id"
    );
    assert_code!(
        pay(&mut client, BOB, &other, "t").await,
        Code::NotFound,
        "someone else's order"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_code!(
        pay(&mut client, ALICE, &unknown, "t").await,
        Code::NotFound,
        "unknown order"
    );
    assert_eq!(
        status_of(&fleet, ALICE, &other).await,
        pb::OrderStatus::Pending
    );
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_payments_pay_an_order_once() {
    let fleet = fleet().await;
    let id = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    let calls = (0..8).map(|i| {
        let mut client = internal(&fleet);
        let id = id.clone();
        async move { pay(&mut client, ALICE, &id, &format!("txn-{i}")).await }
    });
    let results = futures::future::join_all(calls).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    for r in results.into_iter().filter_map(Result::err) {
        assert_eq!(r.code(), Code::FailedPrecondition, "{}", r.message());
    }
    fleet.stop().await;
}

#[tokio::test]
async fn illegal_transitions_are_failed_precondition() {
    let fleet = fleet().await;
    let mut service = internal(&fleet);
    let mut alice = as_user(&fleet, ALICE);

    // PAID -> CANCELLED.
    let paid = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    pay(&mut service, ALICE, &paid, "txn-paid").await.unwrap();
    let err = cancel(&mut alice, ALICE, &paid, "").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("order is PAID"), "{}", err.message());
    assert_eq!(status_of(&fleet, ALICE, &paid).await, pb::OrderStatus::Paid);

    // CANCELLED -> PAID and CANCELLED -> CANCELLED.
    let cancelled = place_ok(&fleet, ALICE, &[(11, 1, 100)]).await;
    cancel(&mut alice, ALICE, &cancelled, "changed my mind")
        .await
        .unwrap();
    let err = pay(&mut service, ALICE, &cancelled, "txn-late")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("order is CANCELLED"),
        "{}",
        err.message()
    );
    assert_code!(
        cancel(&mut alice, ALICE, &cancelled, "").await,
        Code::FailedPrecondition,
        "cancel twice"
    );
    let order = get(&mut alice, ALICE, &cancelled).await.unwrap();
    assert_eq!(order.status, pb::OrderStatus::Cancelled as i32);
    assert_eq!((order.transaction_id.as_str(), order.paid_at), ("", 0));

    assert_code!(
        cancel(&mut alice, ALICE, &paid, &"r".repeat(501)).await,
        Code::InvalidArgument,
        "reason too long"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn cancelling_an_order_gives_its_reserved_stock_back() {
    let fleet = fleet().await;
    let catalog = fleet.catalog();
    let pen = catalog.create_product("Pen", 500, 10).await;
    let ink = catalog.create_product("Ink", 500, 5).await;
    let id = place_ok(&fleet, ALICE, &[(pen, 3, 1_500), (ink, 2, 1_000)]).await;
    catalog
        .reserve(&id, &[(pen, 3), (ink, 2)])
        .await
        .expect("reserve stock");
    assert_eq!(
        (catalog.stock_of(pen).await, catalog.stock_of(ink).await),
        (7, 3)
    );

    cancel(&mut as_user(&fleet, ALICE), ALICE, &id, "found it cheaper")
        .await
        .unwrap();
    assert_eq!(
        status_of(&fleet, ALICE, &id).await,
        pb::OrderStatus::Cancelled
    );
    assert_eq!(
        (catalog.stock_of(pen).await, catalog.stock_of(ink).await),
        (10, 5)
    );
    let orders = open_orders(&fleet).await;
    assert_eq!(orders.stock_released(&id).await.unwrap(), Some(true));

    // A cancelled order without a reservation is fine too (product treats it as a no-op).
    let unreserved = place_ok(&fleet, ALICE, &[(pen, 1, 500)]).await;
    cancel(&mut internal(&fleet), ALICE, &unreserved, "")
        .await
        .unwrap();
    assert_eq!(catalog.stock_of(pen).await, 10);
    orders.database().close().await;
    fleet.stop().await;
}

#[tokio::test]
async fn the_sweeper_cancels_an_expired_pending_order_and_its_stock_comes_back() {
    let fleet = TestFleet::start_with(
        &["auth", "product", "order"],
        &[
            ("MALL__ORDER__PENDING_TIMEOUT", "1s"),
            ("MALL__ORDER__SWEEP_INTERVAL", "200ms"),
        ],
    )
    .await;
    let catalog = fleet.catalog();
    let pen = catalog.create_product("Pen", 500, 10).await;
    let unpaid = place_ok(&fleet, ALICE, &[(pen, 2, 1_000)]).await;
    catalog
        .reserve(&unpaid, &[(pen, 2)])
        .await
        .expect("reserve stock");
    let paid = place_ok(&fleet, ALICE, &[(pen, 3, 1_500)]).await;
    catalog
        .reserve(&paid, &[(pen, 3)])
        .await
        .expect("reserve stock");
    pay(&mut internal(&fleet), ALICE, &paid, "txn-1")
        .await
        .unwrap();
    assert_eq!(catalog.stock_of(pen).await, 5);

    let (f, c, id) = (&fleet, &catalog, unpaid.as_str());
    eventually(SWEEP_WAIT, "the unpaid order is cancelled", || async move {
        status_of(f, ALICE, id).await == pb::OrderStatus::Cancelled
    })
    .await;
    eventually(SWEEP_WAIT, "its stock is back", || async move {
        c.stock_of(pen).await == 7
    })
    .await;
    let orders = open_orders(&fleet).await;
    let o = &orders;
    eventually(SWEEP_WAIT, "the release is recorded", || async move {
        o.stock_released(id).await.unwrap() == Some(true)
    })
    .await;
    assert_eq!(
        status_of(&fleet, ALICE, &paid).await,
        pb::OrderStatus::Paid,
        "paid orders stay"
    );
    // Later sweeps change nothing more.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(catalog.stock_of(pen).await, 7);
    assert_code!(
        pay(&mut internal(&fleet), ALICE, &unpaid, "txn-late").await,
        Code::FailedPrecondition,
        "paying a timed-out order"
    );
    orders.database().close().await;
    fleet.stop().await;
}

#[tokio::test]
async fn two_sweepers_at_once_cancel_and_release_each_order_once() {
    // The fleet's own sweeper uses the 15-minute default, so only the two below act.
    let fleet = fleet().await;
    let catalog = fleet.catalog();
    let pen = catalog.create_product("Pen", 500, 100).await;
    let mut expired = Vec::new();
    for quantity in 1..=5 {
        let id = place_ok(&fleet, ALICE, &[(pen, quantity, 100)]).await;
        catalog
            .reserve(&id, &[(pen, quantity)])
            .await
            .expect("reserve stock");
        expired.push(id);
    }
    let paid = place_ok(&fleet, ALICE, &[(pen, 10, 100)]).await;
    catalog
        .reserve(&paid, &[(pen, 10)])
        .await
        .expect("reserve stock");
    pay(&mut internal(&fleet), ALICE, &paid, "txn-1")
        .await
        .unwrap();
    assert_eq!(catalog.stock_of(pen).await, 100 - 15 - 10);

    // Two "instances": separate pools on the same database, each with its own product client.
    let a = open_orders(&fleet).await;
    let b = open_orders(&fleet).await;
    let timeout = Duration::from_secs(1);
    let sweeper_a = Sweeper::new(a.clone(), fleet.client("product"), timeout);
    let sweeper_b = Sweeper::new(b.clone(), fleet.client("product"), timeout);
    let later = unix_now() + 60;
    let (ra, rb) = tokio::join!(sweeper_a.run_once_at(later), sweeper_b.run_once_at(later));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());

    let mut claimed: Vec<String> = ra.cancelled.iter().chain(&rb.cancelled).cloned().collect();
    claimed.sort();
    let mut want = expired.clone();
    want.sort();
    assert_eq!(
        claimed, want,
        "each expired order claimed by exactly one sweeper: {ra:?} {rb:?}"
    );
    let mut released: Vec<String> = ra.released.iter().chain(&rb.released).cloned().collect();
    released.sort();
    assert_eq!(released, want, "each released exactly once");
    assert_eq!(ra.failed_releases + rb.failed_releases, 0);
    assert_eq!(
        catalog.stock_of(pen).await,
        90,
        "all expired stock back, exactly once"
    );
    for id in &expired {
        assert_eq!(
            status_of(&fleet, ALICE, id).await,
            pb::OrderStatus::Cancelled
        );
    }
    assert_eq!(status_of(&fleet, ALICE, &paid).await, pb::OrderStatus::Paid);

    // Nothing left to do.
    let (ra, rb) = tokio::join!(
        sweeper_a.run_once_at(later + 60),
        sweeper_b.run_once_at(later)
    );
    assert_eq!(ra.unwrap(), Default::default());
    assert_eq!(rb.unwrap(), Default::default());
    assert_eq!(catalog.stock_of(pen).await, 90);

    // Orders younger than the timeout are left alone.
    let fresh = place_ok(&fleet, ALICE, &[(pen, 1, 100)]).await;
    assert!(sweeper_a.run_once().await.unwrap().cancelled.is_empty());
    assert_eq!(
        status_of(&fleet, ALICE, &fresh).await,
        pb::OrderStatus::Pending
    );
    a.database().close().await;
    b.database().close().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_release_that_failed_while_product_was_down_is_retried_by_the_sweeper() {
    // Product runs in its own fleet; the order service is told product lives on a dead port.
    let products = TestFleet::start(&["product"]).await;
    let catalog = products.catalog();
    let fleet = TestFleet::start_with(
        &["auth", "order"],
        &[("MALL__DISCOVERY__STATIC__PRODUCT", "127.0.0.1:1")],
    )
    .await;
    let pen = catalog.create_product("Pen", 500, 10).await;
    let id = place_ok(&fleet, ALICE, &[(pen, 4, 2_000)]).await;
    catalog
        .reserve(&id, &[(pen, 4)])
        .await
        .expect("reserve stock");
    assert_eq!(catalog.stock_of(pen).await, 6);

    // The cancel itself succeeds; the release is left for later.
    cancel(&mut as_user(&fleet, ALICE), ALICE, &id, "")
        .await
        .unwrap();
    assert_eq!(
        status_of(&fleet, ALICE, &id).await,
        pb::OrderStatus::Cancelled
    );
    assert_eq!(catalog.stock_of(pen).await, 6);
    let orders = open_orders(&fleet).await;
    assert_eq!(orders.stock_released(&id).await.unwrap(), Some(false));

    // A sweeper that still cannot reach product counts a failure and keeps the order due.
    let mut discovery = order::default_settings().discovery;
    discovery
        .static_addrs
        .insert("product".into(), vec!["127.0.0.1:1".into()]);
    let dead =
        Clients::discover(&discovery, &order::default_settings().client, None).expect("clients");
    let down = Sweeper::new(
        orders.clone(),
        dead.client(mall_types::ServiceName::Product).unwrap(),
        Duration::from_secs(900),
    )
    .with_release_retry_after(Duration::ZERO);
    let report = down.run_once().await.unwrap();
    assert_eq!((report.released.len(), report.failed_releases), (0, 1));
    assert_eq!(orders.stock_released(&id).await.unwrap(), Some(false));

    // Once product answers, the retry gives the stock back, once.
    let up = Sweeper::new(
        orders.clone(),
        products.client("product"),
        Duration::from_secs(900),
    )
    .with_release_retry_after(Duration::ZERO);
    let report = up.run_once().await.unwrap();
    assert_eq!(report.released, vec![id.clone()]);
    assert!(report.cancelled.is_empty());
    assert_eq!(catalog.stock_of(pen).await, 10);
    assert_eq!(orders.stock_released(&id).await.unwrap(), Some(true));
    assert_eq!(up.run_once().await.unwrap(), Default::default());
    assert_eq!(catalog.stock_of(pen).await, 10);
    orders.database().close().await;
    fleet.stop().await;
    products.stop().await;
}

/// `order --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_order"), "order", &[]);
}
