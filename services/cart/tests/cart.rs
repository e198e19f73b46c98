//! Black-box tests of the cart service through real gRPC on port 0, with the real product
//! catalog behind it.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set (each fleet gets its own databases, dropped afterwards).

use mall::testing::TestFleet;
use mall_common::client::Channel;
use mall_proto::cart::v1 as pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::common::v1::CartItem;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use tonic::{Code, Status};

type Cart = CartServiceClient<Channel>;
type Catalog = ProductCatalogServiceClient<Channel>;

const ME: u64 = 7;
const SOMEONE_ELSE: u64 = 8;

/// A fleet with auth, product and cart, and a catalog client signed in as an admin.
async fn fleet() -> (TestFleet, Catalog) {
    let fleet = TestFleet::start(&["auth", "product", "cart"]).await;
    let catalog = fleet.client_as::<Catalog>("product", &fleet.admin_token());
    (fleet, catalog)
}

/// A cart client acting as end user `user_id`.
fn cart_as(fleet: &TestFleet, user_id: u64) -> Cart {
    fleet.client_as::<Cart>("cart", &fleet.user_token(user_id))
}

/// Creates a product and returns its id.
async fn product(catalog: &mut Catalog, name: &str) -> u64 {
    catalog
        .create_product(product_pb::CreateProductReq {
            name: name.into(),
            description: format!("{name}, described"),
            picture: format!("/img/{name}.png"),
            price_cents: 1_000,
            stock: 50,
            categories: vec![],
        })
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
        .into_inner()
        .id
}

fn item(product_id: u64, quantity: i32) -> Option<CartItem> {
    Some(CartItem {
        product_id,
        quantity,
    })
}

async fn add(cart: &mut Cart, user_id: u64, product_id: u64, quantity: i32) -> Result<(), Status> {
    cart.add_item(pb::AddItemReq {
        user_id,
        item: item(product_id, quantity),
    })
    .await
    .map(|_| ())
}

async fn update(
    cart: &mut Cart,
    user_id: u64,
    product_id: u64,
    quantity: i32,
) -> Result<(), Status> {
    cart.update_item(pb::UpdateItemReq {
        user_id,
        item: item(product_id, quantity),
    })
    .await
    .map(|_| ())
}

async fn remove(cart: &mut Cart, user_id: u64, product_id: u64) -> Result<(), Status> {
    cart.remove_item(pb::RemoveItemReq {
        user_id,
        product_id,
    })
    .await
    .map(|_| ())
}

async fn empty(cart: &mut Cart, user_id: u64) -> Result<(), Status> {
    cart.empty_cart(pb::EmptyCartReq { user_id })
        .await
        .map(|_| ())
}

async fn get(cart: &mut Cart, user_id: u64) -> Result<pb::Cart, Status> {
    cart.get_cart(pb::GetCartReq { user_id })
        .await
        .map(|r| r.into_inner().cart.expect("GetCart answers with a cart"))
}

/// `(product_id, quantity)` lines of a cart, in the order the service returns them.
async fn lines(cart: &mut Cart, user_id: u64) -> Vec<(u64, i32)> {
    get(cart, user_id)
        .await
        .unwrap_or_else(|e| panic!("GetCart {user_id}: {e}"))
        .items
        .into_iter()
        .map(|i| (i.product_id, i.quantity))
        .collect()
}

#[tokio::test]
async fn add_item_adds_to_the_line_and_get_cart_keeps_first_added_order() {
    let (fleet, mut catalog) = fleet().await;
    let mut cart = cart_as(&fleet, ME);
    let (a, b, c) = (
        product(&mut catalog, "apple").await,
        product(&mut catalog, "bread").await,
        product(&mut catalog, "cheese").await,
    );

    let fresh = get(&mut cart, ME).await.unwrap();
    assert_eq!(fresh.user_id, ME);
    assert!(fresh.items.is_empty(), "an empty cart is not an error");

    add(&mut cart, ME, b, 1).await.unwrap();
    add(&mut cart, ME, a, 2).await.unwrap();
    add(&mut cart, ME, c, 4).await.unwrap();
    add(&mut cart, ME, b, 3).await.unwrap();
    assert_eq!(
        lines(&mut cart, ME).await,
        vec![(b, 4), (a, 2), (c, 4)],
        "adding again increments; order is first-added"
    );

    // Changing a line keeps its place; a removed and re-added line goes to the end.
    update(&mut cart, ME, b, 9).await.unwrap();
    remove(&mut cart, ME, a).await.unwrap();
    add(&mut cart, ME, a, 1).await.unwrap();
    assert_eq!(lines(&mut cart, ME).await, vec![(b, 9), (c, 4), (a, 1)]);

    // Many lines added in quick succession (same millisecond) still come back in order.
    let mut more = Vec::new();
    for i in 0..8 {
        more.push(product(&mut catalog, &format!("extra-{i}")).await);
    }
    for p in more.iter().rev() {
        add(&mut cart, ME, *p, 1).await.unwrap();
    }
    let got: Vec<u64> = lines(&mut cart, ME)
        .await
        .into_iter()
        .map(|l| l.0)
        .collect();
    let mut want = vec![b, c, a];
    want.extend(more.iter().rev());
    assert_eq!(got, want);
    fleet.stop().await;
}

#[tokio::test]
async fn twenty_concurrent_add_items_on_one_line_lose_no_increment() {
    let (fleet, mut catalog) = fleet().await;
    let cart = cart_as(&fleet, ME);
    let p = product(&mut catalog, "popular").await;
    // The first round races on creating the line, the second on incrementing it.
    for round in 1..=2 {
        let calls = (0..20).map(|_| {
            let mut cart = cart.clone();
            async move { add(&mut cart, ME, p, 1).await }
        });
        for result in futures::future::join_all(calls).await {
            result.unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        assert_eq!(
            lines(&mut cart.clone(), ME).await,
            vec![(p, 20 * round)],
            "round {round}"
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_adds_never_push_a_line_past_999() {
    let (fleet, mut catalog) = fleet().await;
    let cart = cart_as(&fleet, ME);
    let p = product(&mut catalog, "bulk").await;
    // 30 adds of 100: exactly 9 fit.
    let calls = (0..30).map(|_| {
        let mut cart = cart.clone();
        async move { add(&mut cart, ME, p, 100).await }
    });
    let results = futures::future::join_all(calls).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 9);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    }
    assert_eq!(lines(&mut cart.clone(), ME).await, vec![(p, 900)]);
    fleet.stop().await;
}

#[tokio::test]
async fn unknown_and_deleted_products_are_not_found() {
    let (fleet, mut catalog) = fleet().await;
    let mut cart = cart_as(&fleet, ME);
    let kept = product(&mut catalog, "kept").await;
    let doomed = product(&mut catalog, "doomed").await;
    add(&mut cart, ME, kept, 1).await.unwrap();

    let err = add(&mut cart, ME, 424_242, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert_eq!(err.message(), "product 424242 not found");
    let err = update(&mut cart, ME, 424_242, 3).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    // Seen once (and so cached by the catalog), then deleted: the delete wins.
    add(&mut cart, ME, doomed, 1).await.unwrap();
    remove(&mut cart, ME, doomed).await.unwrap();
    catalog
        .delete_product(product_pb::DeleteProductReq { id: doomed })
        .await
        .unwrap();
    let err = add(&mut cart, ME, doomed, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    assert_eq!(err.message(), format!("product {doomed} not found"));
    let err = update(&mut cart, ME, doomed, 2).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");

    assert_eq!(lines(&mut cart, ME).await, vec![(kept, 1)], "nothing added");
    fleet.stop().await;
}

#[tokio::test]
async fn a_deleted_products_line_can_still_be_removed() {
    let (fleet, mut catalog) = fleet().await;
    let mut cart = cart_as(&fleet, ME);
    let p = product(&mut catalog, "discontinued").await;
    let q = product(&mut catalog, "other").await;
    add(&mut cart, ME, p, 2).await.unwrap();
    add(&mut cart, ME, q, 2).await.unwrap();
    catalog
        .delete_product(product_pb::DeleteProductReq { id: p })
        .await
        .unwrap();
    assert_eq!(lines(&mut cart, ME).await, vec![(p, 2), (q, 2)]);
    update(&mut cart, ME, p, 0).await.unwrap();
    assert_eq!(lines(&mut cart, ME).await, vec![(q, 2)]);
    fleet.stop().await;
}

#[tokio::test]
async fn bad_quantities_and_ids_are_invalid_argument_and_change_nothing() {
    let (fleet, mut catalog) = fleet().await;
    let mut cart = cart_as(&fleet, ME);
    let p = product(&mut catalog, "thing").await;
    add(&mut cart, ME, p, 5).await.unwrap();

    for quantity in [0, -1, 1000, i32::MIN, i32::MAX] {
        let err = add(&mut cart, ME, p, quantity).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "add {quantity}: {err}");
        assert!(err.message().contains("quantity"), "{}", err.message());
    }
    for quantity in [-1, 1000, i32::MIN] {
        let err = update(&mut cart, ME, p, quantity).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "update {quantity}: {err}"
        );
        assert!(err.message().contains("quantity"), "{}", err.message());
    }
    for id in [0, u64::MAX] {
        let err = add(&mut cart, ME, id, 1).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "add product {id}: {err}");
        assert!(err.message().contains("product_id"), "{}", err.message());
        let err = update(&mut cart, ME, id, 1).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "update product {id}: {err}"
        );
        let err = remove(&mut cart, ME, id).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "remove product {id}: {err}"
        );
    }
    for (what, result) in [
        (
            "add without item",
            cart.add_item(pb::AddItemReq {
                user_id: ME,
                item: None,
            })
            .await
            .map(|_| ()),
        ),
        (
            "update without item",
            cart.update_item(pb::UpdateItemReq {
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
    assert_eq!(lines(&mut cart, ME).await, vec![(p, 5)], "nothing changed");
    fleet.stop().await;
}

#[tokio::test]
async fn user_id_zero_is_invalid_argument_on_every_rpc() {
    let (fleet, mut catalog) = fleet().await;
    let p = product(&mut catalog, "thing").await;
    // A service (or admin) may act for any user, so the id itself is what is refused.
    for mut cart in [
        fleet.client::<Cart>("cart"),
        fleet.client_as::<Cart>("cart", &fleet.admin_token()),
    ] {
        let results = [
            ("AddItem", add(&mut cart, 0, p, 1).await),
            ("UpdateItem", update(&mut cart, 0, p, 1).await),
            ("RemoveItem", remove(&mut cart, 0, p).await),
            ("EmptyCart", empty(&mut cart, 0).await),
            ("GetCart", get(&mut cart, 0).await.map(|_| ())),
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
    // An end user asking for user 0's cart is asking for someone else's.
    let err = get(&mut cart_as(&fleet, ME), 0).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");
    fleet.stop().await;
}

#[tokio::test]
async fn a_line_never_holds_more_than_999() {
    let (fleet, mut catalog) = fleet().await;
    let mut cart = cart_as(&fleet, ME);
    let full = product(&mut catalog, "full").await;
    let half = product(&mut catalog, "half").await;

    add(&mut cart, ME, full, 999).await.unwrap();
    let err = add(&mut cart, ME, full, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(
        err.message(),
        format!("cart line for product {full} would exceed 999")
    );

    add(&mut cart, ME, half, 500).await.unwrap();
    let err = add(&mut cart, ME, half, 500).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(
        lines(&mut cart, ME).await,
        vec![(full, 999), (half, 500)],
        "a refused add changes nothing"
    );
    add(&mut cart, ME, half, 499).await.unwrap();
    assert_eq!(lines(&mut cart, ME).await, vec![(full, 999), (half, 999)]);

    // UpdateItem may set anything up to 999, after which AddItem is refused again.
    update(&mut cart, ME, half, 998).await.unwrap();
    add(&mut cart, ME, half, 1).await.unwrap();
    assert!(add(&mut cart, ME, half, 1).await.is_err());
    assert_eq!(lines(&mut cart, ME).await, vec![(full, 999), (half, 999)]);
    fleet.stop().await;
}

#[tokio::test]
async fn update_item_sets_the_quantity_and_zero_removes_the_line() {
    let (fleet, mut catalog) = fleet().await;
    let mut cart = cart_as(&fleet, ME);
    let a = product(&mut catalog, "a").await;
    let b = product(&mut catalog, "b").await;
    add(&mut cart, ME, a, 5).await.unwrap();

    update(&mut cart, ME, a, 2).await.unwrap();
    assert_eq!(lines(&mut cart, ME).await, vec![(a, 2)], "sets, not adds");
    update(&mut cart, ME, a, 2).await.unwrap();
    assert_eq!(
        lines(&mut cart, ME).await,
        vec![(a, 2)],
        "same value is fine"
    );

    update(&mut cart, ME, b, 7).await.unwrap();
    assert_eq!(
        lines(&mut cart, ME).await,
        vec![(a, 2), (b, 7)],
        "a missing line is created at the end"
    );

    update(&mut cart, ME, a, 0).await.unwrap();
    assert_eq!(
        lines(&mut cart, ME).await,
        vec![(b, 7)],
        "0 removes the line"
    );
    update(&mut cart, ME, a, 0).await.unwrap();
    assert_eq!(
        lines(&mut cart, ME).await,
        vec![(b, 7)],
        "removing twice is fine"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn concurrent_updates_leave_one_of_the_written_quantities() {
    let (fleet, mut catalog) = fleet().await;
    let cart = cart_as(&fleet, ME);
    let p = product(&mut catalog, "contested").await;
    let calls = (1..=10).map(|q| {
        let mut cart = cart.clone();
        async move { update(&mut cart, ME, p, q).await }
    });
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let got = lines(&mut cart.clone(), ME).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!((1..=10).contains(&got[0].1), "{got:?}");
    fleet.stop().await;
}

#[tokio::test]
async fn remove_item_and_empty_cart_are_idempotent_and_touch_only_that_cart() {
    let (fleet, mut catalog) = fleet().await;
    let mut mine = cart_as(&fleet, ME);
    let mut theirs = cart_as(&fleet, SOMEONE_ELSE);
    let a = product(&mut catalog, "a").await;
    let b = product(&mut catalog, "b").await;

    remove(&mut mine, ME, a).await.unwrap();
    add(&mut mine, ME, a, 1).await.unwrap();
    add(&mut mine, ME, b, 2).await.unwrap();
    add(&mut theirs, SOMEONE_ELSE, a, 3).await.unwrap();

    remove(&mut mine, ME, a).await.unwrap();
    remove(&mut mine, ME, a).await.unwrap();
    assert_eq!(lines(&mut mine, ME).await, vec![(b, 2)]);
    assert_eq!(
        lines(&mut theirs, SOMEONE_ELSE).await,
        vec![(a, 3)],
        "another cart's line of the same product stays"
    );

    empty(&mut mine, ME).await.unwrap();
    empty(&mut mine, ME).await.unwrap();
    assert!(lines(&mut mine, ME).await.is_empty());
    assert_eq!(lines(&mut theirs, SOMEONE_ELSE).await, vec![(a, 3)]);

    // An emptied cart fills up again normally.
    add(&mut mine, ME, b, 1).await.unwrap();
    assert_eq!(lines(&mut mine, ME).await, vec![(b, 1)]);
    fleet.stop().await;
}

#[tokio::test]
async fn users_cannot_touch_another_users_cart() {
    let (fleet, mut catalog) = fleet().await;
    let mut mine = cart_as(&fleet, ME);
    let mut theirs = cart_as(&fleet, SOMEONE_ELSE);
    let p = product(&mut catalog, "theirs").await;
    add(&mut theirs, SOMEONE_ELSE, p, 4).await.unwrap();

    let results = [
        ("AddItem", add(&mut mine, SOMEONE_ELSE, p, 1).await),
        ("UpdateItem", update(&mut mine, SOMEONE_ELSE, p, 1).await),
        ("UpdateItem 0", update(&mut mine, SOMEONE_ELSE, p, 0).await),
        ("RemoveItem", remove(&mut mine, SOMEONE_ELSE, p).await),
        ("EmptyCart", empty(&mut mine, SOMEONE_ELSE).await),
        ("GetCart", get(&mut mine, SOMEONE_ELSE).await.map(|_| ())),
    ];
    for (rpc, result) in results {
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "{rpc}: {err}");
    }
    // Ownership is checked before the request is: even a malformed one is denied.
    let err = add(&mut mine, SOMEONE_ELSE, 0, 0).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err}");

    assert_eq!(lines(&mut theirs, SOMEONE_ELSE).await, vec![(p, 4)]);
    assert!(lines(&mut mine, ME).await.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let (fleet, mut catalog) = fleet().await;
    let p = product(&mut catalog, "p").await;
    let addr = fleet.endpoints("cart").grpc;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut anonymous = CartServiceClient::new(channel);
    let err = anonymous
        .get_cart(pb::GetCartReq { user_id: ME })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");
    let err = anonymous
        .add_item(pb::AddItemReq {
            user_id: ME,
            item: item(p, 1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    let mut forged = fleet.client_as::<Cart>("cart", "not.a.token");
    let err = add(&mut forged, ME, p, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err}");

    assert!(lines(&mut cart_as(&fleet, ME), ME).await.is_empty());
    fleet.stop().await;
}

#[tokio::test]
async fn admins_and_services_may_act_on_any_cart() {
    let (fleet, mut catalog) = fleet().await;
    let mut theirs = cart_as(&fleet, SOMEONE_ELSE);
    let mut admin = fleet.client_as::<Cart>("cart", &fleet.admin_token());
    let mut service = fleet.client::<Cart>("cart");
    let p = product(&mut catalog, "p").await;
    let q = product(&mut catalog, "q").await;
    add(&mut theirs, SOMEONE_ELSE, p, 2).await.unwrap();

    let cart = get(&mut admin, SOMEONE_ELSE).await.unwrap();
    assert_eq!(cart.user_id, SOMEONE_ELSE);
    assert_eq!(
        cart.items,
        vec![CartItem {
            product_id: p,
            quantity: 2
        }]
    );
    add(&mut admin, SOMEONE_ELSE, q, 1).await.unwrap();

    // Checkout reads the cart and empties it as a service.
    assert_eq!(
        lines(&mut service, SOMEONE_ELSE).await,
        vec![(p, 2), (q, 1)]
    );
    add(&mut service, SOMEONE_ELSE, q, 1).await.unwrap();
    update(&mut service, SOMEONE_ELSE, p, 5).await.unwrap();
    remove(&mut service, SOMEONE_ELSE, q).await.unwrap();
    assert_eq!(lines(&mut theirs, SOMEONE_ELSE).await, vec![(p, 5)]);
    empty(&mut service, SOMEONE_ELSE).await.unwrap();
    assert!(lines(&mut theirs, SOMEONE_ELSE).await.is_empty());
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
    let mut cart = cart_as(&fleet, ME);
    let err = add(&mut cart, ME, 5, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(!err.message().contains("127.0.0.1"), "{}", err.message());
    let err = update(&mut cart, ME, 5, 1).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // Reading, removing and emptying do not need the catalog.
    assert!(lines(&mut cart, ME).await.is_empty());
    remove(&mut cart, ME, 5).await.unwrap();
    update(&mut cart, ME, 5, 0).await.unwrap();
    empty(&mut cart, ME).await.unwrap();
    fleet.stop().await;
}
