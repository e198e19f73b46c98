//! Black-box tests of the cart service through real gRPC on port 0, with the real product
//! catalog behind it.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set (each fleet gets its own databases, dropped afterwards).

use mall_proto::cart::v1 as pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::common::v1::CartItem;
use mall_testing::{Cart, CartClient, Catalog, TestFleet, assert_code};
use tonic::Code;

const ME: u64 = 7;
const SOMEONE_ELSE: u64 = 8;

/// A fleet with auth, product and cart, and its catalog.
async fn fleet() -> (TestFleet, Catalog) {
    let fleet = TestFleet::start(&["auth", "product", "cart"]).await;
    let catalog = fleet.catalog();
    (fleet, catalog)
}

/// Creates a product (1,000 cents, 50 in stock) and returns its id.
async fn product(catalog: &Catalog, name: &str) -> u64 {
    catalog.create_product(name, 1_000, 50).await
}

#[tokio::test]
async fn add_item_adds_to_the_line_and_get_cart_keeps_first_added_order() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let (a, b, c) = (
        product(&catalog, "apple").await,
        product(&catalog, "bread").await,
        product(&catalog, "cheese").await,
    );

    let fresh = cart.get().await.unwrap();
    assert_eq!(fresh.user_id, ME);
    assert!(fresh.items.is_empty(), "an empty cart is not an error");

    cart.add(b, 1).await.unwrap();
    cart.add(a, 2).await.unwrap();
    cart.add(c, 4).await.unwrap();
    cart.add(b, 3).await.unwrap();
    assert_eq!(
        cart.lines().await,
        vec![(b, 4), (a, 2), (c, 4)],
        "adding again increments; order is first-added"
    );

    // Changing a line keeps its place; a removed and re-added line goes to the end.
    cart.update(b, 9).await.unwrap();
    cart.remove(a).await.unwrap();
    cart.add(a, 1).await.unwrap();
    assert_eq!(cart.lines().await, vec![(b, 9), (c, 4), (a, 1)]);

    // Many lines added in quick succession (same millisecond) still come back in order.
    let mut more = Vec::new();
    for i in 0..8 {
        more.push(product(&catalog, &format!("extra-{i}")).await);
    }
    for p in more.iter().rev() {
        cart.add(*p, 1).await.unwrap();
    }
    let got: Vec<u64> = cart.lines().await.into_iter().map(|l| l.0).collect();
    let mut want = vec![b, c, a];
    want.extend(more.iter().rev());
    assert_eq!(got, want);
    fleet.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_add_items_on_one_line_lose_no_increment() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let p = product(&catalog, "popular").await;
    // The first round races on creating the line, the second on incrementing it.
    for round in 1..=2 {
        let calls = (0..20).map(|_| {
            let cart = cart.clone();
            async move { cart.add(p, 1).await }
        });
        for result in futures::future::join_all(calls).await {
            result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert_eq!(cart.lines().await, vec![(p, 20 * round)], "round {round}");
    }
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_adds_never_push_a_line_past_999() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let p = product(&catalog, "bulk").await;
    // 30 adds of 100: exactly 9 fit.
    let calls = (0..30).map(|_| {
        let cart = cart.clone();
        async move { cart.add(p, 100).await }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    }
    assert_eq!(cart.lines().await, vec![(p, 900)]);
    fleet.stop().await;
}

#[tokio::test]
async fn unknown_and_deleted_products_are_not_found() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let kept = product(&catalog, "kept").await;
    let doomed = product(&catalog, "doomed").await;
    cart.add(kept, 1).await.unwrap();

    let err = cart.add(424_242, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert_eq!(err.message(), "product 424242 not found");
    let err = cart.update(424_242, 3).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    // Seen once (and so cached by the catalog), then deleted: the delete wins.
    cart.add(doomed, 1).await.unwrap();
    cart.remove(doomed).await.unwrap();
    catalog.delete(doomed).await.unwrap();
    let err = cart.add(doomed, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert_eq!(err.message(), format!("product {doomed} not found"));
    let err = cart.update(doomed, 2).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    assert_eq!(cart.lines().await, vec![(kept, 1)], "nothing added");
    fleet.stop().await;
}

#[tokio::test]
async fn a_deleted_products_line_can_still_be_removed() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let p = product(&catalog, "discontinued").await;
    let q = product(&catalog, "other").await;
    cart.add(p, 2).await.unwrap();
    cart.add(q, 2).await.unwrap();
    catalog.delete(p).await.unwrap();
    assert_eq!(cart.lines().await, vec![(p, 2), (q, 2)]);
    cart.update(p, 0).await.unwrap();
    assert_eq!(cart.lines().await, vec![(q, 2)]);
    fleet.stop().await;
}

#[tokio::test]
async fn bad_quantities_and_ids_are_invalid_argument_and_change_nothing() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let p = product(&catalog, "thing").await;
    cart.add(p, 5).await.unwrap();

    for quantity in [0, -1, 1000, i32::MIN, i32::MAX] {
        let err = cart.add(p, quantity).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "add {quantity}: {err}");
        assert!(err.message().contains("quantity"), "{}", err.message());
    }
    for quantity in [-1, 1000, i32::MIN] {
        let err = cart.update(p, quantity).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "update {quantity}: {err}"
        );
        assert!(err.message().contains("quantity"), "{}", err.message());
    }
    for id in [0, u64::MAX] {
        let err = cart.add(id, 1).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "add product {id}: {err}");
        assert!(err.message().contains("product_id"), "{}", err.message());
        let err = cart.update(id, 1).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "update product {id}: {err}"
        );
        let err = cart.remove(id).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "remove product {id}: {err}"
        );
    }
    // Requests without an item cannot be built through the fixture.
    let mut raw = fleet.client_as::<CartClient>("cart", &fleet.user_token(ME));
    for (what, result) in [
        (
            "add without item",
            raw.add_item(pb::AddItemReq {
                user_id: ME,
                item: None,
            })
            .await
            .map(|_| ()),
        ),
        (
            "update without item",
            raw.update_item(pb::UpdateItemReq {
                user_id: ME,
                item: None,
            })
            .await
            .map(|_| ()),
        ),
    ] {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
        assert!(err.message().contains("item"), "{}", err.message());
    }
    assert_eq!(cart.lines().await, vec![(p, 5)], "nothing changed");
    fleet.stop().await;
}

#[tokio::test]
async fn user_id_zero_is_invalid_argument_on_every_rpc() {
    let (fleet, catalog) = fleet().await;
    let p = product(&catalog, "thing").await;
    // An admin may act for any user, so the id itself is what is refused (checkout's
    // GetCart too, below).
    {
        let cart = Cart::new(fleet.client_as("cart", &fleet.admin_token()), 0);
        let results = [
            ("AddItem", cart.add(p, 1).await),
            ("UpdateItem", cart.update(p, 1).await),
            ("RemoveItem", cart.remove(p).await),
            ("EmptyCart", cart.empty().await),
            ("GetCart", cart.get().await.map(|_| ())),
        ];
        for (rpc, result) in results {
            let err = result.unwrap_err();
            assert_eq!(err.code(), Code::InvalidArgument, "{rpc}: {err}");
            assert!(
                err.message().contains("user_id"),
                "{rpc}: {}",
                err.message()
            );
        }
    }
    let err = Cart::new(fleet.client("cart"), 0).get().await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "checkout's GetCart: {err}"
    );
    // An end user too: the request is parsed before it is authorized, in every service, so
    // the same bad id gets the same answer from everyone.
    let err = fleet.cart(ME).of(0).get().await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    fleet.stop().await;
}

#[tokio::test]
async fn a_line_never_holds_more_than_999() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let full = product(&catalog, "full").await;
    let half = product(&catalog, "half").await;

    cart.add(full, 999).await.unwrap();
    let err = cart.add(full, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(
        err.message(),
        format!("cart line for product {full} would exceed 999")
    );

    cart.add(half, 500).await.unwrap();
    let err = cart.add(half, 500).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(
        cart.lines().await,
        vec![(full, 999), (half, 500)],
        "a refused add changes nothing"
    );
    cart.add(half, 499).await.unwrap();
    assert_eq!(cart.lines().await, vec![(full, 999), (half, 999)]);

    // UpdateItem may set anything up to 999, after which AddItem is refused again.
    cart.update(half, 998).await.unwrap();
    cart.add(half, 1).await.unwrap();
    assert!(cart.add(half, 1).await.is_err());
    assert_eq!(cart.lines().await, vec![(full, 999), (half, 999)]);
    fleet.stop().await;
}

#[tokio::test]
async fn update_item_sets_the_quantity_and_zero_removes_the_line() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let a = product(&catalog, "a").await;
    let b = product(&catalog, "b").await;
    cart.add(a, 5).await.unwrap();

    cart.update(a, 2).await.unwrap();
    assert_eq!(cart.lines().await, vec![(a, 2)], "sets, not adds");
    cart.update(a, 2).await.unwrap();
    assert_eq!(cart.lines().await, vec![(a, 2)], "same value is fine");

    cart.update(b, 7).await.unwrap();
    assert_eq!(
        cart.lines().await,
        vec![(a, 2), (b, 7)],
        "a missing line is created at the end"
    );

    cart.update(a, 0).await.unwrap();
    assert_eq!(cart.lines().await, vec![(b, 7)], "0 removes the line");
    cart.update(a, 0).await.unwrap();
    assert_eq!(cart.lines().await, vec![(b, 7)], "removing twice is fine");
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_updates_leave_one_of_the_written_quantities() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let p = product(&catalog, "contested").await;
    let calls = (1..=10).map(|q| {
        let cart = cart.clone();
        async move { cart.update(p, q).await }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let got = cart.lines().await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!((1..=10).contains(&got[0].1), "{got:?}");
    fleet.stop().await;
}

#[tokio::test]
async fn remove_item_and_empty_cart_are_idempotent_and_touch_only_that_cart() {
    let (fleet, catalog) = fleet().await;
    let mine = fleet.cart(ME);
    let theirs = fleet.cart(SOMEONE_ELSE);
    let a = product(&catalog, "a").await;
    let b = product(&catalog, "b").await;

    mine.remove(a).await.unwrap();
    mine.add(a, 1).await.unwrap();
    mine.add(b, 2).await.unwrap();
    theirs.add(a, 3).await.unwrap();

    mine.remove(a).await.unwrap();
    mine.remove(a).await.unwrap();
    assert_eq!(mine.lines().await, vec![(b, 2)]);
    assert_eq!(
        theirs.lines().await,
        vec![(a, 3)],
        "another cart's line of the same product stays"
    );

    mine.empty().await.unwrap();
    mine.empty().await.unwrap();
    assert!(mine.lines().await.is_empty());
    assert_eq!(theirs.lines().await, vec![(a, 3)]);

    // An emptied cart fills up again normally.
    mine.add(b, 1).await.unwrap();
    assert_eq!(mine.lines().await, vec![(b, 1)]);
    fleet.stop().await;
}

#[tokio::test]
async fn users_cannot_touch_another_users_cart() {
    let (fleet, catalog) = fleet().await;
    let mine = fleet.cart(ME);
    let theirs = fleet.cart(SOMEONE_ELSE);
    let p = product(&catalog, "theirs").await;
    theirs.add(p, 4).await.unwrap();

    let results = [
        ("AddItem", mine.of(SOMEONE_ELSE).add(p, 1).await),
        ("UpdateItem", mine.of(SOMEONE_ELSE).update(p, 1).await),
        ("UpdateItem 0", mine.of(SOMEONE_ELSE).update(p, 0).await),
        ("RemoveItem", mine.of(SOMEONE_ELSE).remove(p).await),
        ("EmptyCart", mine.of(SOMEONE_ELSE).empty().await),
        ("GetCart", mine.of(SOMEONE_ELSE).get().await.map(|_| ())),
    ];
    for (rpc, result) in results {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{rpc}: {err}");
    }
    // A malformed request is refused as malformed, whoever it names (as order and payment
    // do): it is parsed before ownership is checked.
    let err = mine.of(SOMEONE_ELSE).add(0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");

    assert_eq!(theirs.lines().await, vec![(p, 4)]);
    assert!(mine.lines().await.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let (fleet, catalog) = fleet().await;
    let p = product(&catalog, "p").await;
    let mut anonymous = CartServiceClient::new(fleet.bare_channel("cart").await);
    let err = anonymous
        .get_cart(pb::GetCartReq { user_id: ME })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = anonymous
        .add_item(pb::AddItemReq {
            user_id: ME,
            item: Some(CartItem {
                product_id: p,
                quantity: 1,
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    let forged = Cart::new(fleet.client_as("cart", "not.a.token"), ME);
    let err = forged.add(p, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    assert!(fleet.cart(ME).lines().await.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn admins_act_on_any_cart_and_checkout_only_reads_it() {
    let (fleet, catalog) = fleet().await;
    let theirs = fleet.cart(SOMEONE_ELSE);
    let admin = Cart::new(fleet.client_as("cart", &fleet.admin_token()), SOMEONE_ELSE);
    let service = Cart::new(fleet.client::<CartClient>("cart"), SOMEONE_ELSE);
    let p = product(&catalog, "p").await;
    let q = product(&catalog, "q").await;
    theirs.add(p, 2).await.unwrap();

    let cart = admin.get().await.unwrap();
    assert_eq!(cart.user_id, SOMEONE_ELSE);
    assert_eq!(
        cart.items,
        vec![CartItem {
            product_id: p,
            quantity: 2
        }]
    );
    admin.add(q, 1).await.unwrap();

    // Checkout reads the cart as a service (and removes purchased lines through its internal
    // RPC); changing a cart is for its owner and admins only.
    assert_eq!(service.lines().await, vec![(p, 2), (q, 1)]);
    let changes = [
        ("AddItem", service.add(q, 1).await),
        ("UpdateItem", service.update(p, 5).await),
        ("RemoveItem", service.remove(q).await),
        ("EmptyCart", service.empty().await),
    ];
    for (rpc, result) in changes {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{rpc}: {err}");
        assert!(
            err.message().contains("checkout"),
            "{rpc}: {}",
            err.message()
        );
    }
    admin.empty().await.unwrap();
    assert!(theirs.lines().await.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn adding_is_unavailable_while_the_catalog_is_down() {
    // No product service: discovery points at a port nothing listens on.
    let fleet = TestFleet::start_with(
        &["cart"],
        &[("MALL__DISCOVERY__STATIC__PRODUCT", "127.0.0.1:1")],
    )
    .await;
    let cart = fleet.cart(ME);
    let err = cart.add(5, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(!err.message().contains("127.0.0.1"), "{}", err.message());
    let err = cart.update(5, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Reading, removing and emptying do not need the catalog.
    assert!(cart.lines().await.is_empty());
    cart.remove(5).await.unwrap();
    cart.update(5, 0).await.unwrap();
    cart.empty().await.unwrap();
    fleet.stop().await;
}

#[tokio::test]
async fn a_cart_holds_at_most_100_lines_also_under_concurrent_adds() {
    let (fleet, catalog) = fleet().await;
    let cart = fleet.cart(ME);
    let mut products = Vec::new();
    for i in 0..110 {
        products.push(catalog.create_product(&format!("item {i}"), 100, 50).await);
    }
    for p in &products[..95] {
        cart.add(*p, 1).await.unwrap();
    }
    // 15 new products at once into a cart with room for 5: exactly 5 get in.
    let added = futures::future::join_all(products[95..].iter().map(|p| cart.add(*p, 1))).await;
    let ok = added.iter().filter(|r| r.is_ok()).count();
    for err in added.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert_eq!(
            err.message(),
            "cart already holds 100 lines; remove one before adding another product"
        );
    }
    assert_eq!(ok, 5, "{added:?}");
    let lines = cart.lines().await;
    assert_eq!(lines.len(), 100);

    // A full cart still takes more units on its lines, and a new line once one is gone.
    let (first, _) = lines[0];
    cart.add(first, 2).await.unwrap();
    cart.update(first, 7).await.unwrap();
    let outside = *products
        .iter()
        .find(|p| !lines.iter().any(|(q, _)| q == *p))
        .expect("a product outside the cart");
    assert_code!(cart.update(outside, 1).await, Code::FailedPrecondition);
    cart.remove(first).await.unwrap();
    cart.add(outside, 1).await.unwrap();
    assert_eq!(cart.lines().await.len(), 100);
    fleet.stop().await;
}

#[tokio::test]
async fn remove_purchased_takes_out_what_was_bought_once_per_order() {
    let (fleet, catalog) = fleet().await;
    let (a, b, c) = (
        product(&catalog, "a").await,
        product(&catalog, "b").await,
        product(&catalog, "c").await,
    );
    let mine = fleet.cart(ME);
    mine.add(a, 3).await.unwrap();
    mine.add(b, 1).await.unwrap();
    mine.add(c, 2).await.unwrap();
    fleet.cart(SOMEONE_ELSE).add(a, 1).await.unwrap();
    let service = fleet.cart_as_service(ME);

    assert!(
        service
            .remove_purchased("order-1", &[(a, 2), (b, 1)])
            .await
            .unwrap()
    );
    assert_eq!(mine.lines().await, vec![(a, 1), (c, 2)]);
    assert_eq!(fleet.cart(SOMEONE_ELSE).lines().await, vec![(a, 1)]);

    // The shopper buys more afterwards; a repeat of the removal, however late, changes nothing.
    mine.add(b, 5).await.unwrap();
    let bought = [(a, 2), (b, 1)];
    let repeats =
        futures::future::join_all((0..8).map(|_| service.remove_purchased("order-1", &bought)))
            .await;
    assert!(
        repeats.iter().all(|r| matches!(r, Ok(false))),
        "{repeats:?}"
    );
    assert_eq!(mine.lines().await, vec![(a, 1), (c, 2), (b, 5)]);

    // Concurrent first removals of one order: exactly one takes effect.
    let bought = [(c, 1)];
    let firsts =
        futures::future::join_all((0..8).map(|_| service.remove_purchased("order-2", &bought)))
            .await;
    let removed = firsts.iter().filter(|r| matches!(r, Ok(true))).count();
    assert_eq!(removed, 1, "{firsts:?}");
    assert_eq!(mine.lines().await, vec![(a, 1), (c, 1), (b, 5)]);
    // Bought more than the line holds (it changed since): the line goes.
    assert!(
        service
            .remove_purchased("order-3", &[(b, 9)])
            .await
            .unwrap()
    );
    assert_eq!(mine.lines().await, vec![(a, 1), (c, 1)]);

    // Only services may call it, and bad input is refused precisely.
    assert_code!(
        mine.remove_purchased("order-4", &[(a, 1)]).await,
        Code::PermissionDenied
    );
    let err = assert_code!(
        service.remove_purchased("order-4", &[(a, 1), (a, 1)]).await,
        Code::InvalidArgument
    );
    assert_eq!(
        err.message(),
        format!("items[1].product_id repeats product {a}")
    );
    assert_code!(
        service.remove_purchased("", &[(a, 1)]).await,
        Code::InvalidArgument
    );
    assert_code!(
        service.remove_purchased("order-4", &[]).await,
        Code::InvalidArgument
    );
    assert_eq!(mine.lines().await, vec![(a, 1), (c, 1)]);
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_adds_and_empties_of_different_carts_never_fail() {
    // Different users' AddItem and EmptyCart on one table: under REPEATABLE READ their
    // next-key locks deadlocked each other on MariaDB (1213), surfacing as INTERNAL.
    let (fleet, catalog) = fleet().await;
    let products = [
        product(&catalog, "x").await,
        product(&catalog, "y").await,
        product(&catalog, "z").await,
    ];
    let users: Vec<u64> = (100..108).collect();
    let runs = users.iter().map(|&user| {
        let cart = fleet.cart(user);
        async move {
            let mut failures = Vec::new();
            for round in 0..15 {
                for p in products {
                    if let Err(e) = cart.add(p, 1).await {
                        failures.push(format!("AddItem round {round}: {e}"));
                    }
                }
                if let Err(e) = cart.empty().await {
                    failures.push(format!("EmptyCart round {round}: {e}"));
                }
            }
            failures
        }
    });
    let failures: Vec<String> = futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    fleet.stop().await;
}

/// `cart --help` (and `-h`, `--version`) answer and exit 0 without binding a port or opening
/// a database; an unknown argument is a usage error.
#[test]
fn the_binary_answers_help_without_serving() {
    mall_testing::assert_cli_answers(env!("CARGO_BIN_EXE_cart"), "cart", &[]);
}
