//! Black-box tests of the product catalog through real gRPC on port 0.
//!
//! SQLite and the in-process cache by default; MariaDB and Redis when `MALL_TEST_MYSQL_URL` and
//! `MALL_TEST_REDIS_URL` are set (each fleet gets its own database, dropped afterwards).

use mall_proto::product::v1 as pb;
use mall_testing::{ProductClient as Client, TestFleet, cart_items, http_get};
use tonic::{Code, Request};

/// A fleet and a client signed in as an admin (catalog writes).
async fn fleet() -> (TestFleet, Client) {
    let fleet = TestFleet::start(&["product"]).await;
    let client = fleet.client_as::<Client>("product", &fleet.admin_token());
    (fleet, client)
}

/// A client calling as a service (stock and batch RPCs are internal).
pub(crate) fn service_client(fleet: &TestFleet) -> Client {
    fleet.client::<Client>("product")
}

/// [`mall_testing::new_product`] in `categories`.
fn new_product(
    name: &str,
    price_cents: i64,
    stock: u32,
    categories: &[&str],
) -> pb::CreateProductReq {
    pb::CreateProductReq {
        categories: categories.iter().map(|c| c.to_string()).collect(),
        ..mall_testing::new_product(name, price_cents, stock)
    }
}

async fn create(
    client: &mut Client,
    name: &str,
    price_cents: i64,
    stock: u32,
    categories: &[&str],
) -> pb::Product {
    client
        .create_product(new_product(name, price_cents, stock, categories))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"))
        .into_inner()
}

pub(crate) async fn get(client: &mut Client, id: u64) -> Result<pb::Product, tonic::Status> {
    client
        .get_product(pb::GetProductReq { id })
        .await
        .map(|r| r.into_inner().product.expect("product"))
}

async fn total(client: &mut Client) -> u64 {
    client
        .list_products(pb::ListProductsReq::default())
        .await
        .unwrap()
        .into_inner()
        .total
}

pub(crate) async fn reserve(
    client: &mut Client,
    id: &str,
    lines: &[(u64, i32)],
) -> Result<(), tonic::Status> {
    client
        .reserve_stock(pb::ReserveStockReq {
            reservation_id: id.into(),
            items: cart_items(lines),
        })
        .await
        .map(|_| ())
}

pub(crate) async fn release(client: &mut Client, id: &str) -> Result<(), tonic::Status> {
    client
        .release_stock(pb::ReleaseStockReq {
            reservation_id: id.into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
async fn reflection_and_health_list_the_catalog() {
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;

    let (fleet, _) = fleet().await;
    let channel = fleet.bare_channel("product").await;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = stream.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "grpc.health.v1.Health",
            "tiktokmall.product.v1.ProductCatalogService"
        ]
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    for service in ["", "tiktokmall.product.v1.ProductCatalogService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn listing_pages_by_id_with_totals_and_filters_by_category() {
    let (fleet, mut client) = fleet().await;
    let mut ids = Vec::new();
    for i in 0..25 {
        let cats: &[&str] = if i % 5 == 0 {
            &["Books", "Gifts"]
        } else {
            &["Toys"]
        };
        ids.push(
            create(&mut client, &format!("item-{i:02}"), 100 + i, 5, cats)
                .await
                .id,
        );
    }
    let page = |page, page_size, category: &str| pb::ListProductsReq {
        page,
        page_size,
        category_name: category.into(),
    };
    let first = client
        .list_products(page(0, 0, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.total, 25);
    assert_eq!(first.products.len(), 20, "default page size is 20");
    let second = client
        .list_products(page(2, 20, ""))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<u64> = first
        .products
        .iter()
        .chain(&second.products)
        .map(|p| p.id)
        .collect();
    assert_eq!(got, ids, "ordered by id, no overlap between pages");
    let beyond = client
        .list_products(page(9, 20, ""))
        .await
        .unwrap()
        .into_inner();
    assert!(beyond.products.is_empty());
    assert_eq!(beyond.total, 25);

    let books = client
        .list_products(page(1, 100, "books"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(books.total, 5, "category match ignores case");
    assert!(
        books
            .products
            .iter()
            .all(|p| p.categories == vec!["Books", "Gifts"])
    );
    let unknown = client
        .list_products(page(1, 10, "Nope"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((unknown.total, unknown.products.len()), (0, 0));

    let clamped = client
        .list_products(page(1, 1_000_000, ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        clamped.products.len(),
        25,
        "huge page sizes are clamped, not refused"
    );
    for (p, size) in [(-1, 10), (1, -1)] {
        let err = client.list_products(page(p, size, "")).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "page {p} size {size}: {err}"
        );
    }
    fleet.stop().await;
}

#[tokio::test]
async fn get_product_validates_ids_and_hides_deleted_products() {
    let (fleet, mut client) = fleet().await;
    let p = create(&mut client, "lamp", 2_500, 3, &["Home"]).await;
    let got = get(&mut client, p.id).await.unwrap();
    assert_eq!(got, p);
    assert_eq!(got.price_cents, 2_500);
    assert_eq!(
        get(&mut client, 0).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(
        get(&mut client, 999_999).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        get(&mut client, u64::MAX).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    client
        .delete_product(pb::DeleteProductReq { id: p.id })
        .await
        .unwrap();
    assert_eq!(
        get(&mut client, p.id).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(total(&mut client).await, 0);
    let again = client
        .delete_product(pb::DeleteProductReq { id: p.id })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::NotFound);
    let search = client
        .search_products(pb::SearchProductsReq {
            query: "lamp".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        search.results.is_empty(),
        "deleted products are not found by search"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn search_is_case_insensitive_and_treats_wildcards_literally() {
    let (fleet, mut client) = fleet().await;
    let sale = create(&mut client, "Mug 50% off", 900, 1, &[]).await;
    let under = create(&mut client, "snake_case poster", 1_200, 1, &[]).await;
    let _plain = create(&mut client, "Mug 500 pack", 9_000, 1, &[]).await;
    let mut described = new_product("Teapot", 3_000, 1, &[]);
    described.description = "Pairs well with a MUG".into();
    let teapot = client.create_product(described).await.unwrap().into_inner();

    let search = |query: &str| pb::SearchProductsReq {
        query: query.into(),
        page: 0,
        page_size: 0,
    };
    let ids = |r: pb::SearchProductsResp| r.results.into_iter().map(|p| p.id).collect::<Vec<_>>();
    let r = client
        .search_products(search("50%"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(r), vec![sale.id], "% matches only itself");
    let r = client
        .search_products(search("e_c"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ids(r), vec![under.id], "_ matches only itself");
    let r = client
        .search_products(search("mug"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total, 3);
    assert!(ids(r).contains(&teapot.id), "description matches too");
    let r = client
        .search_products(search("no such thing"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.total, r.results.len()),
        (0, 0),
        "no match is an empty list"
    );
    for bad in ["", "   "] {
        let err = client.search_products(search(bad)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("query"), "{}", err.message());
    }
    fleet.stop().await;
}

/// The ids a search for `query` finds, in id order.
pub(crate) async fn search_ids(client: &mut Client, query: &str) -> Vec<u64> {
    client
        .search_products(pb::SearchProductsReq {
            query: query.into(),
            page: 0,
            page_size: 100,
        })
        .await
        .unwrap_or_else(|e| panic!("search {query:?}: {e}"))
        .into_inner()
        .results
        .into_iter()
        .map(|p| p.id)
        .collect()
}

/// The products listed in category `name` (first page of 100).
pub(crate) async fn listed(client: &mut Client, name: &str) -> Vec<pb::Product> {
    client
        .list_products(pb::ListProductsReq {
            category_name: name.into(),
            page: 0,
            page_size: 100,
        })
        .await
        .unwrap_or_else(|e| panic!("list {name:?}: {e}"))
        .into_inner()
        .products
}

/// The ids listed in category `name`, in id order.
async fn in_category(client: &mut Client, name: &str) -> Vec<u64> {
    listed(client, name)
        .await
        .into_iter()
        .map(|p| p.id)
        .collect()
}

#[tokio::test]
async fn search_ignores_case_for_all_of_unicode() {
    let (fleet, mut client) = fleet().await;
    let anger = create(&mut client, "Ärger im Büro", 1_500, 1, &[]).await;
    let mut street = new_product("Map", 700, 1, &[]);
    street.description = "Every Straße of the old town".into();
    let street = client.create_product(street).await.unwrap().into_inner();
    let greek = create(&mut client, "ΣΊΣΥΦΟΣ poster", 900, 1, &[]).await;
    let _other = create(&mut client, "Arger", 100, 1, &[]).await;

    // Upper, lower and a decomposed Ä (A + U+0308) all find the one product; `Arger` is not it.
    for query in ["ärger", "ÄRGER", "Ärger", "A\u{308}RGER", "BÜRO"] {
        assert_eq!(
            search_ids(&mut client, query).await,
            vec![anger.id],
            "{query}"
        );
    }
    assert_eq!(search_ids(&mut client, "STRASSE").await, vec![street.id]);
    assert_eq!(search_ids(&mut client, "straße").await, vec![street.id]);
    assert_eq!(search_ids(&mut client, "σίσυφος").await, vec![greek.id]);

    // A renamed product is found by its new name only.
    client
        .update_product(pb::UpdateProductReq {
            id: anger.id,
            name: "Öl".into(),
            description: "Für die LAMPE".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(search_ids(&mut client, "ärger").await.is_empty());
    assert_eq!(search_ids(&mut client, "ÖL").await, vec![anger.id]);
    assert_eq!(
        search_ids(&mut client, "für die lampe").await,
        vec![anger.id]
    );
    fleet.stop().await;
}

#[tokio::test]
async fn accented_categories_are_distinct_and_never_internal() {
    let (fleet, mut client) = fleet().await;
    // Equal under MariaDB's utf8mb4_unicode_ci, but different categories here: accents count.
    let plain = create(&mut client, "plain", 100, 1, &["Cafe"]).await;
    let accented = create(&mut client, "accented", 100, 1, &["Café"]).await;
    assert_eq!(accented.categories, vec!["Café"]);
    // Case and a decomposed é join the existing categories under their stored spelling.
    let both = create(&mut client, "both", 100, 1, &["CAFE\u{301}", "cafe"]).await;
    assert_eq!(both.categories, vec!["Cafe", "Café"]);

    for name in ["Cafe", "cafe", "CAFE"] {
        assert_eq!(
            in_category(&mut client, name).await,
            vec![plain.id, both.id],
            "{name}"
        );
    }
    for name in ["Café", "CAFÉ", "cafe\u{301}"] {
        assert_eq!(
            in_category(&mut client, name).await,
            vec![accented.id, both.id],
            "{name}"
        );
    }

    // Names that fold alike in one request are one category; case-only twins too.
    let twins = client
        .update_product(pb::UpdateProductReq {
            id: plain.id,
            categories: vec!["Ärger".into(), "ÄRGER".into(), "Café".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(twins.categories, vec!["Café", "Ärger"]);
    assert_eq!(in_category(&mut client, "ärger").await, vec![plain.id]);
    assert_eq!(in_category(&mut client, "Cafe").await, vec![both.id]);

    let err = client
        .list_products(pb::ListProductsReq {
            category_name: "x".repeat(65),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(
        err.message().starts_with("category_name"),
        "{}",
        err.message()
    );
    fleet.stop().await;
}

#[tokio::test]
async fn batch_get_reports_missing_ids() {
    let (fleet, mut client) = fleet().await;
    let mut svc = service_client(&fleet);
    let a = create(&mut client, "a", 100, 1, &[]).await;
    let b = create(&mut client, "b", 200, 1, &[]).await;
    client
        .delete_product(pb::DeleteProductReq { id: b.id })
        .await
        .unwrap();
    let r = svc
        .batch_get_products(pb::BatchGetProductsReq {
            ids: vec![b.id, 424_242, a.id, a.id],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.products.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![a.id]
    );
    assert_eq!(r.missing_ids, vec![b.id, 424_242]);
    for ids in [vec![0], (1..=101).collect::<Vec<u64>>()] {
        let err = svc
            .batch_get_products(pb::BatchGetProductsReq { ids })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    }
    fleet.stop().await;
}

/// A storefront's reads need no token: a batch of products (a cart's lines in one call), and the
/// categories with how many live products each holds (deleted ones count for nothing; names
/// keep their spelling; empty categories are not listed).
#[tokio::test]
async fn batch_reads_and_categories_are_public() {
    let (fleet, mut admin) = fleet().await;
    let a = create(&mut admin, "lamp", 100, 1, &["Home", "light"]).await;
    create(&mut admin, "bulb", 200, 1, &["Light"]).await;
    let c = create(&mut admin, "chair", 300, 1, &["home"]).await;
    let gone = create(&mut admin, "vase", 400, 1, &["Decor"]).await;
    admin
        .delete_product(pb::DeleteProductReq { id: gone.id })
        .await
        .unwrap();
    let mut anyone = fleet.client_as::<Client>("product", "");
    let batch = anyone
        .batch_get_products(pb::BatchGetProductsReq {
            ids: vec![gone.id, c.id, a.id],
        })
        .await
        .expect("public batch read")
        .into_inner();
    // In the order asked.
    assert_eq!(
        batch
            .products
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["chair", "lamp"]
    );
    assert_eq!(batch.missing_ids, vec![gone.id]);
    let categories = anyone
        .list_categories(pb::ListCategoriesReq {})
        .await
        .expect("public categories")
        .into_inner()
        .categories;
    let listed: Vec<(&str, u64)> = categories
        .iter()
        .map(|c| (c.name.as_str(), c.product_count))
        .collect();
    // "light" and "Light", "Home" and "home" are one category each (matched case-insensitively
    // when created), named as first written.
    assert_eq!(listed, [("Home", 2), ("light", 2)], "{categories:?}");
    fleet.stop().await;
}

#[tokio::test]
async fn bad_writes_are_invalid_argument_and_write_nothing() {
    let (fleet, mut client) = fleet().await;
    let p = create(&mut client, "kept", 1_000, 1, &["A"]).await;
    let huge = "x".repeat(10 * 1024);
    let cases: Vec<(&str, pb::CreateProductReq)> = vec![
        (
            "10 KB name",
            pb::CreateProductReq {
                name: huge.clone(),
                ..new_product("n", 100, 1, &[])
            },
        ),
        (
            "empty name",
            pb::CreateProductReq {
                name: " ".into(),
                ..new_product("n", 100, 1, &[])
            },
        ),
        ("negative price", new_product("n", -1, 1, &[])),
        ("zero price", new_product("n", 0, 1, &[])),
        ("absurd price", new_product("n", i64::MAX, 1, &[])),
        ("empty category", new_product("n", 100, 1, &[""])),
        (
            "long category",
            pb::CreateProductReq {
                categories: vec![huge.clone()],
                ..new_product("n", 100, 1, &[])
            },
        ),
        (
            "control characters",
            new_product("bad\u{0}name", 100, 1, &[]),
        ),
    ];
    for (what, req) in cases {
        let err = client.create_product(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err}");
    }
    let err = client
        .update_product(pb::UpdateProductReq {
            id: p.id,
            name: huge,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .update_product(pb::UpdateProductReq {
            id: p.id,
            price_cents: -5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .update_product(pb::UpdateProductReq {
            id: 0,
            name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = client
        .update_product(pb::UpdateProductReq {
            id: 777,
            name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    assert_eq!(total(&mut client).await, 1, "nothing was written");
    assert_eq!(
        get(&mut client, p.id).await.unwrap(),
        p,
        "the product is unchanged"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn update_changes_only_the_given_fields_and_replaces_categories() {
    let (fleet, mut client) = fleet().await;
    let p = create(&mut client, "chair", 5_000, 4, &["Home", "Office"]).await;
    let updated = client
        .update_product(pb::UpdateProductReq {
            id: p.id,
            price_cents: 4_500,
            categories: vec!["Garden".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "chair");
    assert_eq!(updated.description, p.description);
    assert_eq!(updated.price_cents, 4_500);
    assert_eq!(updated.stock, 4);
    assert_eq!(updated.categories, vec!["Garden"]);
    let office = client
        .list_products(pb::ListProductsReq {
            category_name: "Office".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(office.total, 0);
    fleet.stop().await;
}

#[tokio::test]
async fn get_product_never_serves_a_price_older_than_the_last_update() {
    let (fleet, mut client) = fleet().await;
    let mut svc = service_client(&fleet);
    let p = create(&mut client, "clock", 1_000, 50, &[]).await;
    for round in 1..=20 {
        // Warm the cache, then write, then read: the read must see the write.
        assert!(get(&mut client, p.id).await.is_ok());
        let price = 1_000 + round;
        client
            .update_product(pb::UpdateProductReq {
                id: p.id,
                price_cents: price,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            get(&mut client, p.id).await.unwrap().price_cents,
            price,
            "round {round}"
        );
    }
    // Stock changes invalidate too.
    reserve(&mut svc, "cache-check", &[(p.id, 7)])
        .await
        .unwrap();
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 43);
    release(&mut svc, "cache-check").await.unwrap();
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 50);
    fleet.stop().await;
}

#[tokio::test]
async fn fifty_concurrent_reservations_never_oversell_ten_units() {
    let (fleet, mut client) = fleet().await;
    let svc = service_client(&fleet);
    let p = create(&mut client, "limited", 999, 10, &[]).await;
    let calls = (0..50).map(|i| {
        let mut svc = svc.clone();
        async move { reserve(&mut svc, &format!("race-{i}"), &[(p.id, 1)]).await }
    });
    let results = futures::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 10, "exactly the stock is sold");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert_eq!(
            err.message(),
            format!("insufficient stock for product {}", p.id)
        );
    }
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 0);
    fleet.stop().await;
}

#[tokio::test]
async fn reservations_are_idempotent_and_released_once() {
    let (fleet, mut client) = fleet().await;
    let mut svc = service_client(&fleet);
    let p = create(&mut client, "widget", 100, 10, &[]).await;
    reserve(&mut svc, "order-1", &[(p.id, 3)]).await.unwrap();
    reserve(&mut svc, "order-1", &[(p.id, 3)]).await.unwrap();
    assert_eq!(
        get(&mut client, p.id).await.unwrap().stock,
        7,
        "a replay reserves nothing"
    );
    let conflict = reserve(&mut svc, "order-1", &[(p.id, 4)])
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);

    release(&mut svc, "order-1").await.unwrap();
    release(&mut svc, "order-1").await.unwrap();
    assert_eq!(
        get(&mut client, p.id).await.unwrap().stock,
        10,
        "released once"
    );
    let reused = reserve(&mut svc, "order-1", &[(p.id, 3)])
        .await
        .unwrap_err();
    assert_eq!(
        reused.code(),
        Code::FailedPrecondition,
        "a released id cannot reserve again"
    );
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 10);

    // Unknown reservation: a no-op (API.md), nothing changes; a reservation arriving after
    // its release (a cancelled order's late reserve) is refused.
    release(&mut svc, "never-made").await.unwrap();
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 10);
    let late = reserve(&mut svc, "never-made", &[(p.id, 1)])
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 10);

    // Concurrent releases of one reservation restore the stock once.
    reserve(&mut svc, "order-2", &[(p.id, 5)]).await.unwrap();
    let releases = (0..8).map(|_| {
        let mut svc = svc.clone();
        async move { release(&mut svc, "order-2").await }
    });
    for r in futures::future::join_all(releases).await {
        r.unwrap();
    }
    assert_eq!(get(&mut client, p.id).await.unwrap().stock, 10);
    fleet.stop().await;
}

#[tokio::test]
async fn reservations_are_all_or_nothing() {
    let (fleet, mut client) = fleet().await;
    let mut svc = service_client(&fleet);
    let plenty = create(&mut client, "plenty", 100, 100, &[]).await;
    let scarce = create(&mut client, "scarce", 100, 1, &[]).await;
    let err = reserve(&mut svc, "mixed", &[(plenty.id, 5), (scarce.id, 2)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains(&scarce.id.to_string()),
        "{}",
        err.message()
    );
    assert_eq!(
        get(&mut client, plenty.id).await.unwrap().stock,
        100,
        "no partial reservation"
    );
    // The failed attempt left no reservation behind: the id is still free.
    reserve(&mut svc, "mixed", &[(plenty.id, 5), (scarce.id, 1)])
        .await
        .unwrap();
    assert_eq!(get(&mut client, scarce.id).await.unwrap().stock, 0);
    // Repeated lines for one product are added up.
    reserve(&mut svc, "merged", &[(plenty.id, 2), (plenty.id, 3)])
        .await
        .unwrap();
    assert_eq!(get(&mut client, plenty.id).await.unwrap().stock, 90);

    let missing = reserve(&mut svc, "ghost", &[(plenty.id, 1), (31_337, 1)])
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(get(&mut client, plenty.id).await.unwrap().stock, 90);

    for (id, lines) in [
        ("", vec![(plenty.id, 1)]),
        ("bad-qty", vec![(plenty.id, 0)]),
        ("neg-qty", vec![(plenty.id, -3)]),
        ("zero-id", vec![(0, 1)]),
        ("no-lines", vec![]),
    ] {
        let err = reserve(&mut svc, id, &lines).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{id}: {err}");
    }
    let err = release(&mut svc, "").await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(get(&mut client, plenty.id).await.unwrap().stock, 90);
    fleet.stop().await;
}

#[tokio::test]
async fn admin_port_serves_metrics_health_and_readiness() {
    let (fleet, mut client) = fleet().await;
    let _ = get(&mut client, 0).await;
    let _ = client
        .list_products(pb::ListProductsReq::default())
        .await
        .unwrap();
    let admin = fleet.endpoints("product").admin;
    let (status, body) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(
            r#"grpc_server_handled_total{grpc_service="tiktokmall.product.v1.ProductCatalogService",grpc_method="GetProduct",grpc_code="InvalidArgument"} 1"#
        ),
        "{body}"
    );
    assert!(
        body.contains(r#"grpc_method="ListProducts",grpc_code="OK""#),
        "{body}"
    );
    assert!(
        body.contains("grpc_server_handling_seconds_bucket"),
        "{body}"
    );
    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!((status, body.trim()), (200, "ready"));
    fleet.stop().await;
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let (fleet, mut client) = fleet().await;
    let mut req = Request::new(pb::ListProductsReq::default());
    req.metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let resp = client.list_products(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "trace-me-42");
    let resp = client
        .list_products(pb::ListProductsReq::default())
        .await
        .unwrap();
    assert_eq!(
        resp.metadata().get("x-request-id").unwrap().len(),
        36,
        "a generated UUID"
    );
    fleet.stop().await;
}

#[tokio::test]
async fn demo_catalog_is_loaded_once_into_an_empty_database() {
    let fleet = TestFleet::start_with(&["product"], &[("MALL__CATALOG__SEED_DEMO", "true")]).await;
    let mut client = fleet.client::<Client>("product");
    let all = client
        .list_products(pb::ListProductsReq {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.total, 30);
    let mut categories: Vec<String> = all
        .products
        .iter()
        .flat_map(|p| p.categories.clone())
        .collect();
    categories.sort();
    categories.dedup();
    assert_eq!(categories.len(), 5, "{categories:?}");
    assert!(all.products.iter().all(|p| p.price_cents > 0));
    fleet.stop().await;
}

#[tokio::test]
async fn access_rules_guard_admin_and_internal_rpcs() {
    let fleet = TestFleet::start(&["product"]).await;
    let mut admin = fleet.client_as::<Client>("product", &fleet.admin_token());
    let mut user = fleet.client_as::<Client>("product", &fleet.user_token(42));
    let mut anonymous = fleet.client_as::<Client>("product", "");
    let mut svc = service_client(&fleet);
    let p = create(&mut admin, "guarded", 100, 5, &[]).await;

    // Browsing needs no token.
    assert!(get(&mut anonymous, p.id).await.is_ok());
    // Admin RPCs: no token → UNAUTHENTICATED; a user or a service → PERMISSION_DENIED.
    let err = anonymous
        .create_product(new_product("x", 1, 1, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = user
        .create_product(new_product("x", 1, 1, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = svc
        .delete_product(pb::DeleteProductReq { id: p.id })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Internal RPCs: end-user tokens (even an admin's) → PERMISSION_DENIED.
    for client in [&mut user, &mut admin] {
        let err = reserve(client, "nope", &[(p.id, 1)]).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
    let err = reserve(&mut anonymous, "nope", &[(p.id, 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut forged = fleet.client_as::<Client>("product", "not.a.token");
    let err = forged
        .create_product(new_product("x", 1, 1, &[]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    reserve(&mut svc, "ok", &[(p.id, 1)]).await.unwrap();
    assert_eq!(get(&mut anonymous, p.id).await.unwrap().stock, 4);
    fleet.stop().await;
}
