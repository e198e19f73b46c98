//! Migration 0002 (folded text) on a catalog that already has products: the database is
//! created with migration 0001 only and filled the way the old service wrote it, then the
//! current service starts on it, migrates, back-fills the folded columns, and answers over
//! real gRPC. On SQLite the old schema allowed `Ärger` and `ärger` as two categories (NOCASE
//! folds ASCII only); they are merged. SQLite by default, MariaDB with `MALL_TEST_MYSQL_URL`.

use mall_common::config::DatabaseSettings;
use mall_common::store::{Backend, Database, Migrations};
use mall_proto::product::v1 as pb;
use mall_testing::{MYSQL_ENV, ProductClient as Client, TestFleet};

use crate::catalog::{listed, search_ids};
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
