//! Migrations on catalogs written by older services. 0002 (folded text): the database is
//! created with migration 0001 only and filled the way the old service wrote it, then the
//! current service starts on it, migrates, back-fills the folded columns, and answers over
//! real gRPC. On SQLite the old schema allowed `Ärger` and `ärger` as two categories (NOCASE
//! folds ASCII only); they are merged. SQLite by default, MariaDB with `MALL_TEST_MYSQL_URL`.

use mall_common::config::DatabaseSettings;
use mall_common::store::{Backend, Database, Migrations};
use mall_proto::product::v1 as pb;
use mall_testing::{MYSQL_ENV, ProductClient as Client, TestFleet};

use crate::catalog::{get, listed, release, reserve, search_ids, service_client};
use sqlx::migrate::Migrator;

/// The catalog's migrations up to and including `version`.
fn migrations_to(version: i64) -> Migrations {
    let upto = |m: &Migrator| {
        Migrator::with_migrations(m.iter().filter(|m| m.version <= version).cloned().collect())
    };
    Migrations {
        sqlite: upto(&product::store::MIGRATIONS.sqlite),
        mysql: upto(&product::store::MIGRATIONS.mysql),
    }
}

/// A URL for a database of this test alone, on the tests' backend.
fn fresh_url(dir: &std::path::Path) -> String {
    match std::env::var(MYSQL_ENV) {
        Ok(base) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            format!(
                "{}/t_mig_{}_{nanos}",
                base.trim_end_matches('/'),
                std::process::id()
            )
        }
        Err(_) => format!("sqlite://{}/product.db?mode=rwc", dir.display()),
    }
}

/// Writes a product the way the service did before migration 0002: no folded columns.
async fn old_product(db: &Database, name: &str, description: &str) -> u64 {
    let done = sqlx::query(
        "INSERT INTO products (name, description, picture, price_cents, stock, created_at, updated_at) \
         VALUES (?, ?, '', 100, 5, 1, 1)",
    )
    .bind(name)
    .bind(description)
    .execute(db.pool())
    .await
    .expect("insert an old product");
    let id: i64 = match done.last_insert_id() {
        Some(id) => id,
        None => sqlx::query_scalar("SELECT MAX(id) FROM products")
            .fetch_one(db.pool())
            .await
            .expect("the new id"),
    };
    u64::try_from(id).expect("a positive id")
}

/// Links `product` to category `name`, creating it the old way (by its raw name).
async fn old_link(db: &Database, product: u64, name: &str) {
    let category: Option<i64> = sqlx::query_scalar("SELECT id FROM categories WHERE name = ?")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .expect("find a category");
    let category = match category {
        Some(id) => id,
        None => {
            sqlx::query("INSERT INTO categories (name) VALUES (?)")
                .bind(name)
                .execute(db.pool())
                .await
                .expect("insert an old category");
            sqlx::query_scalar("SELECT MAX(id) FROM categories")
                .fetch_one(db.pool())
                .await
                .expect("the new category id")
        }
    };
    sqlx::query("INSERT INTO product_categories (product_id, category_id) VALUES (?, ?)")
        .bind(i64::try_from(product).expect("a stored id"))
        .bind(category)
        .execute(db.pool())
        .await
        .expect("link an old category");
}

#[tokio::test]
async fn folded_text_migration_fills_and_merges_an_existing_catalog() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = fresh_url(dir.path());
    let old = Database::connect(&url, &DatabaseSettings::default(), &migrations_to(1))
        .await
        .expect("create the old schema");
    let anger = old_product(&old, "Ärger im Büro", "Viel Lärm").await;
    let coffee = old_product(&old, "Kaffee", "Stark").await;
    let tea = old_product(&old, "Tee", "Mild").await;
    old_link(&old, anger, "Ärger").await;
    old_link(&old, coffee, "Café").await;
    old_link(&old, tea, "Café").await;
    let sqlite = old.backend() == Backend::Sqlite;
    let twin = if sqlite {
        // Two categories the old NOCASE unique name allowed; the new key makes them one.
        let twin = old_product(&old, "Zwilling", "").await;
        old_link(&old, twin, "ärger").await;
        old_link(&old, anger, "ärger").await;
        Some(twin)
    } else {
        None
    };
    // Many rows, so the back-fill takes more than one batch.
    for i in 0..1_200 {
        old_product(&old, &format!("Füller {i}"), "").await;
    }
    old.close().await;

    // The current service migrates and back-fills at start; the fleet drops the database.
    let fleet = TestFleet::start_with(&["product"], &[("MALL__DATABASE__URL", url.as_str())]).await;
    let mut client = fleet.client_as::<Client>("product", &fleet.admin_token());

    for query in ["ärger", "ÄRGER", "lärm"] {
        assert_eq!(search_ids(&mut client, query).await, vec![anger], "{query}");
    }
    let fillers = client
        .search_products(pb::SearchProductsReq {
            query: "FÜLLER".into(),
            ..Default::default()
        })
        .await
        .expect("search the fillers")
        .into_inner();
    assert_eq!(fillers.total, 1_200, "every batch of the back-fill");

    let cafe = listed(&mut client, "CAFÉ").await;
    let ids: Vec<u64> = cafe.iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![coffee, tea]);
    assert!(
        listed(&mut client, "Cafe").await.is_empty(),
        "accents count"
    );

    let angry = listed(&mut client, "ärger").await;
    let ids: Vec<u64> = angry.iter().map(|p| p.id).collect();
    let mut expected = vec![anger];
    expected.extend(twin);
    assert_eq!(ids, expected, "both old spellings are one category now");
    assert!(
        angry.iter().all(|p| p.categories == vec!["Ärger"]),
        "one category, the oldest spelling: {angry:?}"
    );

    // New writes join the old categories by key.
    let new = client
        .create_product(pb::CreateProductReq {
            categories: vec!["ÄRGER".into(), "café".into()],
            ..mall_testing::new_product("Neu", 100, 1)
        })
        .await
        .expect("create beside old rows")
        .into_inner();
    assert_eq!(new.categories, vec!["Café", "Ärger"]);
    assert_eq!(listed(&mut client, "Ärger").await.len(), expected.len() + 1);
    fleet.stop().await;
}

/// A reservation written the way the service did before migration 0003: its row, then its
/// lines in `stock_reservation_items`, the units taken from stock.
async fn old_reservation(db: &Database, id: &str, lines: &[(u64, i64)]) {
    sqlx::query(
        "INSERT INTO stock_reservations (reservation_id, status, created_at) \
         VALUES (?, 'reserved', 1)",
    )
    .bind(id)
    .execute(db.pool())
    .await
    .expect("insert an old reservation");
    for (product, quantity) in lines {
        let product = i64::try_from(*product).expect("a stored id");
        sqlx::query(
            "INSERT INTO stock_reservation_items (reservation_id, product_id, quantity) \
             VALUES (?, ?, ?)",
        )
        .bind(id)
        .bind(product)
        .bind(quantity)
        .execute(db.pool())
        .await
        .expect("insert an old reservation line");
        sqlx::query("UPDATE products SET stock = stock - ? WHERE id = ?")
            .bind(quantity)
            .bind(product)
            .execute(db.pool())
            .await
            .expect("take the old reservation's units");
    }
}

/// Migration 0003 moves each reservation's lines into its row: reservations made before it
/// still replay, conflict and release as they did (their units come back), and a tombstone
/// still refuses a late reservation.
#[tokio::test]
async fn inline_items_migration_keeps_existing_reservations() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = fresh_url(dir.path());
    let old = Database::connect(&url, &DatabaseSettings::default(), &migrations_to(2))
        .await
        .expect("create the schema before 0003");
    let a = old_product(&old, "Alt A", "").await;
    let b = old_product(&old, "Alt B", "").await;
    // Lines written out of product order: the migration sorts them.
    old_reservation(&old, "old-both", &[(b, 2), (a, 1)]).await;
    old_reservation(&old, "old-one", &[(a, 3)]).await;
    sqlx::query(
        "INSERT INTO stock_reservations (reservation_id, status, created_at, released_at) \
         VALUES ('old-tombstone', 'released', 1, 1)",
    )
    .execute(old.pool())
    .await
    .expect("insert an old tombstone");
    old.close().await;

    let fleet = TestFleet::start_with(&["product"], &[("MALL__DATABASE__URL", url.as_str())]).await;
    let mut client = service_client(&fleet);
    let stock = |p: &mall_proto::product::v1::Product| p.stock;
    assert_eq!(
        stock(&get(&mut client, a).await.expect("a")),
        1,
        "5 - 1 - 3"
    );
    assert_eq!(stock(&get(&mut client, b).await.expect("b")), 3, "5 - 2");

    // The same lines again (in any order): already reserved, nothing taken.
    reserve(&mut client, "old-both", &[(a, 1), (b, 2)])
        .await
        .expect("replay of an old reservation");
    let conflict = reserve(&mut client, "old-one", &[(a, 2)])
        .await
        .expect_err("other lines under an old id");
    assert_eq!(conflict.code(), tonic::Code::AlreadyExists, "{conflict:?}");
    let late = reserve(&mut client, "old-tombstone", &[(a, 1)])
        .await
        .expect_err("a late reservation after its release");
    assert_eq!(late.code(), tonic::Code::FailedPrecondition, "{late:?}");
    assert_eq!(
        stock(&get(&mut client, a).await.expect("a")),
        1,
        "nothing taken"
    );

    release(&mut client, "old-both")
        .await
        .expect("release old-both");
    release(&mut client, "old-one")
        .await
        .expect("release old-one");
    assert_eq!(
        stock(&get(&mut client, a).await.expect("a")),
        5,
        "all units back"
    );
    assert_eq!(
        stock(&get(&mut client, b).await.expect("b")),
        5,
        "all units back"
    );
    // Released once: a second release gives nothing back.
    release(&mut client, "old-both")
        .await
        .expect("release again");
    assert_eq!(stock(&get(&mut client, b).await.expect("b")), 5);

    // New reservations beside the old ones.
    reserve(&mut client, "new-one", &[(b, 4)])
        .await
        .expect("a new reservation");
    assert_eq!(stock(&get(&mut client, b).await.expect("b")), 1);
    fleet.stop().await;
}
