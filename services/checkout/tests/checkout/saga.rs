//! Black-box tests of the checkout saga through real gRPC on port 0: a test fleet runs auth,
//! product, payment, cart and order; each test builds its own checkout instance (with faults
//! injected around its calls where needed, see `support`) pointed at them, on its own database.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mall_proto::order::v1 as order_pb;
use mall_testing::order_status as status;
use mall_testing::{
    DECLINED_CARD, GOOD_CARD, assert_code, checkout_request as request, eventually,
};
use mall_testkit::proxy::LatencyProxy;
use tonic::{Code, Status};

use crate::support::{Faults, Instance, fleet};

#[tokio::test]
async fn checkout_of_three_lines_pays_the_order_charges_the_total_and_empties_the_cart() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let user = 101;
    let a = fleet.catalog().create_product("Apple", 250, 10).await;
    let b = fleet.catalog().create_product("Bread", 1_000, 10).await;
    let c = fleet.catalog().create_product("Cheese", 799, 10).await;
    fleet.cart(user).add(a, 2).await.unwrap();
    fleet.cart(user).add(b, 1).await.unwrap();
    fleet.cart(user).add(c, 3).await.unwrap();

    let resp = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "")
        .await
        .expect("checkout");
    let expected = 250 * 2 + 1_000 + 799 * 3;

    let placed = fleet.orders(user).get(&resp.order_id).await;
    assert_eq!(status(&placed), order_pb::OrderStatus::Paid);
    assert_eq!(placed.total_cents, expected);
    assert_eq!(placed.transaction_id, resp.transaction_id);
    assert_eq!(placed.order_items.len(), 3);
    assert_eq!(fleet.catalog().stock_of(a).await, 8);
    assert_eq!(fleet.catalog().stock_of(b).await, 9);
    assert_eq!(fleet.catalog().stock_of(c).await, 7);
    let payment = fleet
        .payments()
        .get(&resp.transaction_id)
        .await
        .expect("payment recorded");
    assert_eq!(payment.amount_cents, expected);
    assert_eq!(payment.order_id, resp.order_id);
    assert_eq!(payment.refunded_cents, 0);
    assert!(fleet.cart(user).lines().await.is_empty());

    // The same request again within 10 s (no key) is the same checkout.
    let again = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "")
        .await
        .expect("repeat");
    assert_eq!(again.order_id, resp.order_id);
    assert_eq!(again.transaction_id, resp.transaction_id);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn bad_requests_empty_carts_and_other_users_are_refused() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let user = 102;
    let client = instance.checkout(&fleet, user);

    let mut bad = request(user, GOOD_CARD, "");
    bad.firstname = String::new();
    let err = client.send(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("firstname"), "{}", err.message());
    let mut bad = request(user, GOOD_CARD, "");
    bad.credit_card.as_mut().unwrap().credit_card_cvv = "12345".into();
    let err = client.send(bad).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("cvv"), "{}", err.message());

    let err = client
        .send(request(user + 1, GOOD_CARD, ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    let err = client.pay(GOOD_CARD, "empty-1").await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "cart is empty");
    assert!(fleet.orders(user).list().await.is_empty());

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_checkouts_never_oversell_and_losers_are_cancelled_uncharged() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let product = fleet.catalog().create_product("Scarce", 1_500, 5).await;
    let users: Vec<u64> = (1_000..1_020).collect();
    for user in &users {
        fleet.cart(*user).add(product, 1).await.unwrap();
    }
    let results = futures::future::join_all(users.iter().map(|user| {
        let client = instance.checkout(&fleet, *user);
        let req = request(*user, GOOD_CARD, &format!("buy-{user}"));
        async move { (*user, client.send(req).await) }
    }))
    .await;

    let mut won = 0;
    for (user, result) in &results {
        match result {
            Ok(_) => won += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
                assert!(
                    e.message().contains("insufficient stock"),
                    "{}",
                    e.message()
                );
                let orders = fleet.orders(*user).list().await;
                assert_eq!(orders.len(), 1);
                assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
                let charge = fleet.payments().of_order(&orders[0].order_id).await;
                assert_eq!(charge.unwrap_err().code(), Code::NotFound);
                assert_eq!(fleet.cart(*user).lines().await, vec![(product, 1)]);
            }
        }
    }
    assert_eq!(won, 5);
    assert_eq!(fleet.catalog().stock_of(product).await, 0);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn the_same_idempotency_key_ten_times_at_once_places_one_order_and_charges_once() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let user = 103;
    let product = fleet.catalog().create_product("Lamp", 4_200, 10).await;
    fleet.cart(user).add(product, 2).await.unwrap();

    let results = futures::future::join_all((0..10).map(|_| {
        let client = instance.checkout(&fleet, user);
        async move { client.pay(GOOD_CARD, "order-once").await }
    }))
    .await;
    let mut ids = Vec::new();
    for result in results {
        match result {
            Ok(resp) => ids.push((resp.order_id, resp.transaction_id)),
            Err(e) => {
                assert_eq!(e.code(), Code::Aborted, "{e:?}");
                assert_eq!(e.message(), "checkout in progress");
            }
        }
    }
    assert!(!ids.is_empty());
    ids.dedup();
    assert_eq!(ids.len(), 1, "every success carries the same ids");

    let retry = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "order-once")
        .await
        .expect("retry after completion");
    assert_eq!(
        (retry.order_id.clone(), retry.transaction_id.clone()),
        ids[0]
    );

    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Paid);
    let payment = fleet
        .payments()
        .of_order(&orders[0].order_id)
        .await
        .expect("one payment");
    assert_eq!(payment.transaction_id, ids[0].1);
    assert_eq!(payment.amount_cents, 8_400);
    assert_eq!(fleet.catalog().stock_of(product).await, 8);

    // The key is the user's: reusing it for another request is refused.
    let err = instance
        .checkout(&fleet, user)
        .pay(DECLINED_CARD, "order-once")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn checkout_with_declined_card_releases_stock_and_cancels_order() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let user = 104;
    let product = fleet.catalog().create_product("Chair", 3_000, 4).await;
    fleet.cart(user).add(product, 2).await.unwrap();

    let err = instance
        .checkout(&fleet, user)
        .pay(DECLINED_CARD, "declined-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("declined"), "{}", err.message());
    assert_eq!(fleet.catalog().stock_of(product).await, 4);
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
    assert_eq!(fleet.cart(user).lines().await, vec![(product, 2)]);

    // The recorded answer is replayed.
    let again = instance
        .checkout(&fleet, user)
        .pay(DECLINED_CARD, "declined-1")
        .await
        .unwrap_err();
    assert_eq!(again.code(), err.code());
    assert_eq!(again.message(), err.message());

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn checkout_with_payment_unreachable_is_unavailable_and_cancels_the_order() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    // Port 1: nothing listens there and no test can bind it (a port freed by another bind
    // could be taken by a concurrent test's server meanwhile).
    let instance = Instance::start(
        &fleet,
        &db,
        Faults::default(),
        &[("MALL__DISCOVERY__STATIC__PAYMENT", "127.0.0.1:1")],
    )
    .await;
    let user = 105;
    let product = fleet.catalog().create_product("Desk", 9_900, 3).await;
    fleet.cart(user).add(product, 1).await.unwrap();

    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "no-payment")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    // Decided for good (compensated): the answer says so, so a client does not retry the key
    // forever, and a retry with the key replays it, saying so too.
    let decided = Some(checkout::saga::DECIDED_FAILURE_REASON.to_string());
    assert_eq!(mall_common::error::reason_of(&err), decided, "{err:?}");
    let again = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "no-payment")
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::Unavailable, "{again:?}");
    assert_eq!(mall_common::error::reason_of(&again), decided, "{again:?}");
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
    assert_eq!(fleet.catalog().stock_of(product).await, 3);
    assert_eq!(fleet.cart(user).lines().await, vec![(product, 1)]);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn mark_paid_failing_after_the_charge_refunds_it_and_cancels_the_order() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let hooks = Faults::default();
    hooks.fail_mark_paid.store(100, Ordering::SeqCst);
    let instance = Instance::start(&fleet, &db, hooks.clone(), &[]).await;
    let user = 106;
    let product = fleet.catalog().create_product("Sofa", 50_000, 2).await;
    fleet.cart(user).add(product, 1).await.unwrap();

    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "mark-paid-fails")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(err.message().contains("refunded"), "{}", err.message());
    assert_eq!(
        mall_common::error::reason_of(&err).as_deref(),
        Some(checkout::saga::DECIDED_FAILURE_REASON),
        "ABORTED without it would mean \"in progress\""
    );
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
    let payment = fleet
        .payments()
        .of_order(&orders[0].order_id)
        .await
        .expect("the charge is recorded");
    assert_eq!(payment.amount_cents, 50_000);
    assert_eq!(payment.refunded_cents, 50_000);
    assert_eq!(fleet.catalog().stock_of(product).await, 2);
    assert_eq!(fleet.cart(user).lines().await, vec![(product, 1)]);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_lost_mark_paid_answer_with_cancel_failing_settles_as_paid_and_the_key_replays_it() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let hooks = Faults::default();
    // MarkOrderPaid succeeds at the order service but every answer is lost, so the saga starts
    // compensating; its CancelOrder then fails once, leaving the compensation to the worker.
    hooks
        .lose_mark_paid_answers
        .store(checkout::saga::MARK_PAID_ATTEMPTS, Ordering::SeqCst);
    hooks.fail_cancel_order.store(1, Ordering::SeqCst);
    let instance = Instance::start(&fleet, &db, hooks.clone(), &[]).await;
    let user = 110;
    let product = fleet.catalog().create_product("Lamp", 4_500, 2).await;
    fleet.cart(user).add(product, 1).await.unwrap();
    let client = instance.checkout(&fleet, user);

    // Neither paid nor refunded yet: the client is not told a failure that may not happen.
    let err = client.pay(GOOD_CARD, "lost-answer").await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    assert!(!err.message().contains("refunded"), "{}", err.message());

    // The worker finds the order PAID by this charge and settles the checkout as a success;
    // the same key then answers it.
    let mut settled = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while settled.is_none() {
        assert!(Instant::now() < deadline, "the saga was never settled");
        match client.pay(GOOD_CARD, "lost-answer").await {
            Ok(resp) => settled = Some(resp),
            Err(e) => {
                assert_eq!(e.code(), Code::Aborted, "{e:?}");
                assert!(!e.message().contains("refunded"), "{}", e.message());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let resp = settled.expect("settled");
    let placed = fleet.orders(user).get(&resp.order_id).await;
    assert_eq!(status(&placed), order_pb::OrderStatus::Paid);
    let payment = fleet
        .payments()
        .of_order(&resp.order_id)
        .await
        .expect("the charge is recorded");
    assert_eq!(payment.transaction_id, resp.transaction_id);
    assert_eq!((payment.amount_cents, payment.refunded_cents), (4_500, 0));
    assert_eq!(fleet.catalog().stock_of(product).await, 1);
    eventually(Duration::from_secs(10), "the cart is emptied", || async {
        fleet.cart(user).lines().await.is_empty()
    })
    .await;
    assert_eq!(hooks.fail_cancel_order.load(Ordering::SeqCst), 0);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn cart_cleanup_failing_still_pays_and_the_worker_removes_only_what_was_bought() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let hooks = Faults::default();
    hooks.fail_remove_purchased.store(3, Ordering::SeqCst);
    let instance = Instance::start(&fleet, &db, hooks.clone(), &[]).await;
    let user = 107;
    let product = fleet.catalog().create_product("Mug", 1_200, 5).await;
    let later = fleet.catalog().create_product("Saucer", 300, 5).await;
    fleet.cart(user).add(product, 2).await.unwrap();

    let resp = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "cart-later")
        .await
        .expect("checkout succeeds although RemovePurchased failed");
    assert_eq!(
        status(&fleet.orders(user).get(&resp.order_id).await),
        order_pb::OrderStatus::Paid
    );
    // The shopper goes on shopping before the worker gets to the cart.
    fleet.cart(user).add(product, 1).await.unwrap();
    fleet.cart(user).add(later, 4).await.unwrap();
    eventually(
        Duration::from_secs(10),
        "the worker removes the purchased units",
        || async { fleet.cart(user).lines().await == vec![(product, 1), (later, 4)] },
    )
    .await;
    assert_eq!(hooks.fail_remove_purchased.load(Ordering::SeqCst), 0);
    assert_eq!(fleet.catalog().stock_of(product).await, 3);
    // Whatever the worker repeats later changes nothing more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fleet.cart(user).lines().await,
        vec![(product, 1), (later, 4)]
    );

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_checkout_killed_after_the_charge_is_completed_by_a_new_instance_without_a_second_charge()
{
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let timing = [
        ("MALL__CHECKOUT__STEP_TIMEOUT", "300ms"),
        ("MALL__CHECKOUT__BUDGET", "1s"),
    ];
    let hooks = Faults::default();
    hooks.crash_after_charge.store(true, Ordering::SeqCst);
    let first = Instance::start(&fleet, &db, hooks, &timing).await;
    let user = 108;
    let product = fleet.catalog().create_product("Bike", 25_000, 2).await;
    fleet.cart(user).add(product, 1).await.unwrap();

    let err = first
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "crash-1")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    first.stop().await;
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    let order_id = orders[0].order_id.clone();
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Pending);
    let charged = fleet
        .payments()
        .of_order(&order_id)
        .await
        .expect("charged before the crash");

    // A retry meanwhile sees the saga in progress.
    let second = Instance::start(&fleet, &db, Faults::default(), &timing).await;
    let busy = second
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "crash-1")
        .await;
    if let Err(e) = &busy {
        assert_eq!(e.code(), Code::Aborted, "{e:?}");
    }

    eventually(
        Duration::from_secs(20),
        "the new instance pays the order",
        || async {
            status(&fleet.orders(user).get(&order_id).await) == order_pb::OrderStatus::Paid
        },
    )
    .await;
    let paid = fleet.orders(user).get(&order_id).await;
    assert_eq!(paid.transaction_id, charged.transaction_id);
    let payment = fleet.payments().of_order(&order_id).await.expect("payment");
    assert_eq!(payment.transaction_id, charged.transaction_id);
    assert_eq!(payment.amount_cents, 25_000);
    assert_eq!(payment.refunded_cents, 0);
    eventually(Duration::from_secs(10), "the cart is emptied", || async {
        fleet.cart(user).lines().await.is_empty()
    })
    .await;
    let replay = second
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "crash-1")
        .await
        .expect("the recorded result");
    assert_eq!(replay.order_id, order_id);
    assert_eq!(replay.transaction_id, charged.transaction_id);
    assert_eq!(fleet.catalog().stock_of(product).await, 1);

    second.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_checkout_killed_between_charge_and_recording_it_is_resolved_through_the_order_lookup() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    // A short budget and step timeout keep the abandoned lease (budget + the steps a request may
    // still take after it) short.
    let timing = [
        ("MALL__CHECKOUT__STEP_TIMEOUT", "300ms"),
        ("MALL__CHECKOUT__BUDGET", "1s"),
    ];
    let hooks = Faults::default();
    hooks
        .crash_before_recording_charge
        .store(true, Ordering::SeqCst);
    let first = Instance::start(&fleet, &db, hooks, &timing).await;
    let user = 111;
    let product = fleet.catalog().create_product("Kayak", 32_000, 3).await;
    fleet.cart(user).add(product, 1).await.unwrap();

    let err = first
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "crash-2")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    first.stop().await;
    // The card was charged, but the saga died at `charging` without the transaction id: only
    // payment knows it, by the order id.
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    let order_id = orders[0].order_id.clone();
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Pending);
    let charged = fleet
        .payments()
        .of_order(&order_id)
        .await
        .expect("charged before the crash");

    // A retry meanwhile sees the saga in progress (or, if the worker was quicker, its result).
    let second = Instance::start(&fleet, &db, Faults::default(), &timing).await;
    match second
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "crash-2")
        .await
    {
        Ok(resp) => assert_eq!(resp.transaction_id, charged.transaction_id),
        Err(e) => assert_eq!(e.code(), Code::Aborted, "{e:?}"),
    }

    // Once the lease expires, the new instance's worker finds the charge through the order and
    // completes the checkout with it rather than cancelling a charged order.
    eventually(
        Duration::from_secs(10),
        "the new instance pays the order",
        || async {
            status(&fleet.orders(user).get(&order_id).await) == order_pb::OrderStatus::Paid
        },
    )
    .await;
    let paid = fleet.orders(user).get(&order_id).await;
    assert_eq!(paid.transaction_id, charged.transaction_id);
    let payment = fleet.payments().of_order(&order_id).await.expect("payment");
    assert_eq!(payment.transaction_id, charged.transaction_id);
    assert_eq!((payment.amount_cents, payment.refunded_cents), (32_000, 0));
    assert_eq!(fleet.catalog().stock_of(product).await, 2);
    eventually(Duration::from_secs(10), "the cart is emptied", || async {
        fleet.cart(user).lines().await.is_empty()
    })
    .await;
    let replay = second
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "crash-2")
        .await
        .expect("the recorded result");
    assert_eq!(replay.order_id, order_id);
    assert_eq!(replay.transaction_id, charged.transaction_id);
    assert_eq!(fleet.orders(user).list().await.len(), 1);

    second.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_slow_catalog_exhausting_the_budget_fails_the_checkout_without_charging() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    // Every product call takes at least 600 ms. Each fits the 900 ms step timeout, but pricing
    // and the reservation together do not fit the 1 s budget: the budget cuts the reservation.
    let slow =
        LatencyProxy::start(fleet.endpoints("product").grpc, Duration::from_millis(600)).await;
    let product_addr = slow.addr();
    let instance = Instance::start(
        &fleet,
        &db,
        Faults::default(),
        &[
            ("MALL__DISCOVERY__STATIC__PRODUCT", product_addr.as_str()),
            ("MALL__CHECKOUT__STEP_TIMEOUT", "900ms"),
            ("MALL__CHECKOUT__BUDGET", "1s"),
        ],
    )
    .await;
    let user = 112;
    let product = fleet.catalog().create_product("Tent", 18_000, 4).await;
    fleet.cart(user).add(product, 2).await.unwrap();
    let client = instance.checkout(&fleet, user);

    // The budget, not the catalog, is what ran out: DEADLINE_EXCEEDED, saying so.
    let err = client.pay(GOOD_CARD, "slow-catalog").await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert_eq!(err.message(), checkout::downstream::BUDGET_MESSAGE);
    // Pricing got through, so the order was placed; the saga cancelled it and charged nothing.
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
    for placed in &orders {
        let charge = fleet.payments().of_order(&placed.order_id).await;
        assert_eq!(charge.unwrap_err().code(), Code::NotFound);
    }
    // The cut reservation reaches product only after the saga gave up on it, once the cancelled
    // order has released it: product refuses it, so no stock stays held.
    eventually(
        Duration::from_secs(10),
        "the reserved stock is back",
        || async { fleet.catalog().stock_of(product).await == 4 },
    )
    .await;
    assert_eq!(fleet.cart(user).lines().await, vec![(product, 2)]);

    // The recorded answer is replayed.
    let again = client.pay(GOOD_CARD, "slow-catalog").await.unwrap_err();
    assert_eq!((again.code(), again.message()), (err.code(), err.message()));

    instance.stop().await;
    drop(slow);
    fleet.stop().await;
}

#[tokio::test]
async fn two_instances_recovering_the_same_sagas_drive_each_exactly_once() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    // `serving` can never empty a cart, so each of its checkouts is paid and then parked; the
    // workers of both instances (every 100 ms, on the same database) race for the parked sagas,
    // and only `other`'s can finish them. `serving`'s charges take 300 ms, so the workers' passes
    // also fall inside running checkouts: a worker taking a saga its request still drives would
    // find no charge yet and cancel an order that is about to be charged.
    let slow_payment =
        LatencyProxy::start(fleet.endpoints("payment").grpc, Duration::from_millis(300)).await;
    let hooks = Faults::default();
    hooks
        .fail_remove_purchased
        .store(u32::MAX, Ordering::SeqCst);
    let slow_addr = slow_payment.addr();
    let serving = Instance::start(
        &fleet,
        &db,
        hooks,
        &[("MALL__DISCOVERY__STATIC__PAYMENT", slow_addr.as_str())],
    )
    .await;
    let other = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let price = 1_250;
    let product = fleet.catalog().create_product("Lantern", price, 20).await;
    let buyers = [(121, 1), (122, 2), (123, 3), (124, 4), (125, 5)];
    for (user, quantity) in &buyers {
        fleet.cart(*user).add(product, *quantity).await.unwrap();
    }

    let bought = futures::future::join_all(buyers.iter().map(|(user, quantity)| {
        let client = serving.checkout(&fleet, *user);
        let req = request(*user, GOOD_CARD, &format!("two-workers-{user}"));
        async move {
            let resp = client.send(req).await;
            (*user, *quantity, resp.expect("checkout"))
        }
    }))
    .await;
    for (user, _, _) in &bought {
        eventually(Duration::from_secs(10), "every cart is emptied", || async {
            fleet.cart(*user).lines().await.is_empty()
        })
        .await;
    }

    for (user, quantity, resp) in &bought {
        let orders = fleet.orders(*user).list().await;
        assert_eq!(orders.len(), 1, "user {user}");
        assert_eq!(orders[0].order_id, resp.order_id);
        assert_eq!(status(&orders[0]), order_pb::OrderStatus::Paid);
        assert_eq!(orders[0].transaction_id, resp.transaction_id);
        let payment = fleet
            .payments()
            .of_order(&resp.order_id)
            .await
            .expect("one charge");
        assert_eq!(payment.transaction_id, resp.transaction_id);
        assert_eq!(
            (payment.amount_cents, payment.refunded_cents),
            (price * i64::from(*quantity), 0),
            "user {user}"
        );
        // Either instance answers the recorded result.
        let replay = other
            .checkout(&fleet, *user)
            .pay(GOOD_CARD, &format!("two-workers-{user}"))
            .await
            .expect("the recorded result");
        assert_eq!(replay.order_id, resp.order_id);
        assert_eq!(replay.transaction_id, resp.transaction_id);
    }
    assert_eq!(fleet.catalog().stock_of(product).await, 20 - 15);

    serving.stop().await;
    other.stop().await;
    drop(slow_payment);
    fleet.stop().await;
}

#[tokio::test]
async fn a_charge_whose_answer_is_lost_is_found_and_paid_not_cancelled_uncharged() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let proxy = LatencyProxy::start(fleet.endpoints("payment").grpc, Duration::ZERO).await;
    let proxy_addr = proxy.addr();
    let instance = Instance::start(
        &fleet,
        &db,
        Faults::default(),
        &[("MALL__DISCOVERY__STATIC__PAYMENT", proxy_addr.as_str())],
    )
    .await;
    let product = fleet.catalog().create_product("Kettle", 3_000, 5).await;

    // A first purchase opens the connection to payment (through the proxy).
    fleet.cart(131).add(product, 1).await.unwrap();
    instance
        .checkout(&fleet, 131)
        .pay(GOOD_CARD, "before-the-loss")
        .await
        .expect("a normal checkout");

    // The next Charge reaches payment and charges the card, but its answer never comes back:
    // the connection fails mid-call. The saga must not take that for "nothing was charged".
    proxy.lose_next_answer();
    let user = 132;
    fleet.cart(user).add(product, 2).await.unwrap();
    let resp = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "lost-charge-answer")
        .await
        .expect("the charge is found through the order and the checkout completes");
    let placed = fleet.orders(user).get(&resp.order_id).await;
    assert_eq!(status(&placed), order_pb::OrderStatus::Paid);
    let payment = fleet
        .payments()
        .of_order(&resp.order_id)
        .await
        .expect("the charge");
    assert_eq!(payment.transaction_id, resp.transaction_id);
    assert_eq!((payment.amount_cents, payment.refunded_cents), (6_000, 0));
    assert_eq!(fleet.catalog().stock_of(product).await, 2);

    instance.stop().await;
    drop(proxy);
    fleet.stop().await;
}

#[tokio::test]
async fn checkout_decisions_follow_the_refusal_reason_not_its_text() {
    use mall_common::error::with_reason;

    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let hooks = Faults::default();
    let instance = Instance::start(&fleet, &db, hooks.clone(), &[]).await;
    let product = fleet.catalog().create_product("Globe", 2_000, 10).await;
    let refused = |hooks: &Faults, stock: Option<Status>, charge: Option<Status>| {
        *hooks.refuse_reserve_stock.lock() = stock;
        *hooks.refuse_charge.lock() = charge;
    };
    // Every refused checkout cancels its one order, charges nothing and keeps the cart.
    let undone = |user: u64| {
        let fleet = &fleet;
        async move {
            let orders = fleet.orders(user).list().await;
            assert_eq!(orders.len(), 1, "user {user}");
            assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
            let charge = fleet.payments().of_order(&orders[0].order_id).await;
            assert_eq!(charge.unwrap_err().code(), Code::NotFound, "user {user}");
            assert_eq!(fleet.cart(user).lines().await, vec![(product, 1)]);
        }
    };

    // Product's INSUFFICIENT_STOCK, whatever its words, is out of stock: told as it is.
    let user = 141;
    fleet.cart(user).add(product, 1).await.unwrap();
    let stock_out = with_reason(
        Code::FailedPrecondition,
        "no units left",
        "INSUFFICIENT_STOCK",
    );
    refused(&hooks, Some(stock_out), None);
    let client = instance.checkout(&fleet, user);
    let err = client.pay(GOOD_CARD, "reason-stock").await.unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, "no units left")
    );
    undone(user).await;
    let again = client.pay(GOOD_CARD, "reason-stock").await.unwrap_err();
    assert_eq!((again.code(), again.message()), (err.code(), err.message()));

    // The same words without the reason are not a stock answer: a refusal the saga does not
    // act on, compensated, and told to the client as product gave it (never INTERNAL: the
    // fault, if any, is product's).
    let user = 142;
    fleet.cart(user).add(product, 1).await.unwrap();
    let words = format!("insufficient stock for product {product}");
    refused(
        &hooks,
        Some(Status::failed_precondition(words.clone())),
        None,
    );
    let outcomes_before = instance.outcomes("insufficient_stock").await;
    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "words-stock")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, words.as_str())
    );
    assert_eq!(
        instance.outcomes("insufficient_stock").await,
        outcomes_before,
        "not counted as out of stock"
    );
    undone(user).await;

    // Payment's CARD_DECLINED, whatever its words, is a declined card: told as it is.
    let user = 143;
    fleet.cart(user).add(product, 1).await.unwrap();
    let declined = with_reason(Code::FailedPrecondition, "issuer says no", "CARD_DECLINED");
    refused(&hooks, None, Some(declined));
    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "reason-declined")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, "issuer says no")
    );
    undone(user).await;

    // "card declined" without the reason is no proof that nothing was charged: the saga asks
    // payment, which has no charge for the order, and only then answers.
    let user = 144;
    fleet.cart(user).add(product, 1).await.unwrap();
    refused(
        &hooks,
        None,
        Some(Status::failed_precondition("card declined")),
    );
    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "words-declined")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, checkout::saga::NOT_CHARGED_MESSAGE)
    );
    undone(user).await;

    // A card payment finds invalid (a failed Luhn check) is refused with INVALID_REQUEST:
    // nothing was charged, and the client hears payment's answer.
    let user = 145;
    fleet.cart(user).add(product, 1).await.unwrap();
    let err = instance
        .checkout(&fleet, user)
        .pay("4111111111111112", "invalid-card")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("credit_card_number"),
        "{}",
        err.message()
    );
    undone(user).await;
    assert_eq!(fleet.catalog().stock_of(product).await, 10);
    assert!(hooks.refuse_reserve_stock.lock().is_none() && hooks.refuse_charge.lock().is_none());

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_charge_that_lands_after_checkout_gave_up_is_refused_and_nothing_stays_charged() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let hooks = Faults::default();
    let instance = Instance::start(&fleet, &db, hooks.clone(), &[]).await;
    let user = 151;
    let product = fleet.catalog().create_product("Clock", 4_400, 4).await;
    fleet.cart(user).add(product, 1).await.unwrap();

    // The Charge times out for the saga but is still on its way to payment; it arrives after
    // checkout has settled the order as uncharged.
    *hooks.delay_charge.lock() = Some(Duration::from_millis(800));
    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "late-charge")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unavailable, checkout::saga::NOT_CHARGED_MESSAGE)
    );
    let orders = fleet.orders(user).list().await;
    assert_eq!(orders.len(), 1);
    assert_eq!(status(&orders[0]), order_pb::OrderStatus::Cancelled);
    eventually(
        Duration::from_secs(5),
        "the late charge arrives",
        || async { hooks.late_charge_answer.lock().is_some() },
    )
    .await;
    let late = hooks.late_charge_answer.lock().take().expect("an answer");
    let refused = late.expect_err("the late charge is refused");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_code!(
        fleet.payments().of_order(&orders[0].order_id).await,
        Code::NotFound
    );
    assert_eq!(fleet.catalog().stock_of(product).await, 4);
    assert_eq!(fleet.cart(user).lines().await, vec![(product, 1)]);

    instance.stop().await;
    fleet.stop().await;
}

#[tokio::test]
async fn a_cart_of_more_than_100_lines_is_refused_before_any_other_call() {
    let fleet = fleet().await;
    let db = fleet.fresh_database("checkout");
    let instance = Instance::start(&fleet, &db, Faults::default(), &[]).await;
    let user = 161;
    // Cart refuses a 101st line, so the oversized cart is written straight into its database
    // (as one written before the cap existed would be).
    sqlx::any::install_default_drivers();
    let carts = sqlx::AnyPool::connect(&fleet.database_url("cart"))
        .await
        .expect("cart database");
    for product in 1..=101_i64 {
        sqlx::query(
            "INSERT INTO cart_items (user_id, product_id, quantity, added_at_ms, updated_at) \
             VALUES (?, ?, 1, ?, 0)",
        )
        .bind(i64::try_from(user).unwrap())
        .bind(product)
        .bind(product)
        .execute(&carts)
        .await
        .expect("insert a cart line");
    }
    carts.close().await;
    let err = instance
        .checkout(&fleet, user)
        .pay(GOOD_CARD, "too-many-lines")
        .await
        .unwrap_err();
    assert_eq!(
        (err.code(), err.message()),
        (Code::FailedPrecondition, "cart has more than 100 lines")
    );
    assert!(
        fleet.orders(user).list().await.is_empty(),
        "no order placed"
    );

    instance.stop().await;
    fleet.stop().await;
}
