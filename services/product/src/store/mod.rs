//! The catalog's SQL. One implementation for both backends: statements use `?` placeholders and
//! portable types; the two that differ (category upsert, last-insert id) switch on
//! [`Backend`]. Stock changes are single conditional `UPDATE`s inside one transaction, never
//! read-then-write, so concurrent reservations cannot oversell. Each line reserved or released
//! appends one `product.stock_changed` (the new level, the delta, the reservation) to the
//! outbox in the same transaction.
//!
//! Names and descriptions are stored with their [`fold`]ed forms (`name_fold`,
//! `description_fold`, `categories.name_key`, binary collation on both backends): category
//! lookups are exact matches on the unique key, search is `LIKE` on the folded columns.
//! [`Catalog::backfill`] fills them for rows written before they existed.

use std::collections::HashMap;

use mall_common::events::{Outbox, Payload, StockChanged};
use mall_common::paging::Page;
use mall_common::store::{Backend, Database, Migrations, Tx, inserted_id, is_unique_violation};
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{ProductId, ReservationId, Text};
use sqlx::{AssertSqlSafe, Row};

use unicode_normalization::UnicodeNormalization;

use crate::domain::{Category, NewProduct, Product, ProductPatch, Reservation, Search, fold};
use crate::error::Error;

/// The catalog's migrations, one set per backend.
pub static MIGRATIONS: Migrations = Migrations {
    sqlite: sqlx::migrate!("./migrations/sqlite"),
    mysql: sqlx::migrate!("./migrations/mysql"),
};

const PRODUCT_COLUMNS: &str = "id, name, description, picture, price_cents, stock";

/// How often a reservation is tried when a line falls short in a race with a release.
const RESERVE_ATTEMPTS: usize = 3;

/// Rows [`Catalog::backfill`] reads at a time.
const BACKFILL_BATCH: i64 = 500;

/// What [`Catalog::backfill`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backfilled {
    /// Products whose folded name and description were filled.
    pub products: u64,
    /// Categories that got their key.
    pub categories: u64,
    /// Categories merged into an older one with the same key (their products moved over).
    pub merged: u64,
}

/// What keying one old category did.
enum Keyed {
    /// It got its key.
    Keyed,
    /// Another category had the key; this one was merged into it.
    Merged,
}

/// What `reserve` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// Stock was taken now.
    Now,
    /// The same reservation was already in place; nothing changed.
    Already,
}

/// Appends `product.stock_changed` for each `(product, delta)` line (their rows locked by the
/// caller's `UPDATE`) of a reservation or release: the new levels are read in the transaction,
/// all in one statement, then one outbox insert per line.
async fn stock_changed(
    tx: &mut Tx,
    lines: &[(i64, i64)],
    reservation_id: &str,
) -> Result<(), Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT id, stock FROM products WHERE id IN ({})",
        placeholders(lines.len())
    );
    let mut query = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
    for (product, _) in lines {
        query = query.bind(*product);
    }
    let levels: HashMap<i64, i64> = query.fetch_all(&mut **tx).await?.into_iter().collect();
    for (product, delta) in lines {
        let changed = Payload::StockChanged(StockChanged {
            product_id: u64::try_from(*product).unwrap_or_default(),
            stock: levels.get(product).copied().unwrap_or_default(),
            delta: *delta,
            reservation_id: Some(reservation_id.to_string()),
        });
        Outbox::append(tx, EVENTS_SOURCE, &product.to_string(), changed).await?;
    }
    Ok(())
}

/// A reservation's lines as stored in its row: `product:quantity` pairs, comma-separated, in
/// the reservation's order (product ids ascending).
fn encode_items(lines: &[(ProductId, i64)]) -> String {
    lines
        .iter()
        .map(|(product, quantity)| format!("{}:{quantity}", product.db()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `(product, quantity)` lines of reservation `id` from its row's `items` (none for a
/// tombstone), product ids ascending.
fn decode_items(id: &ReservationId, items: Option<&str>) -> Result<Vec<(i64, i64)>, Error> {
    parse_items(items.unwrap_or_default())
        .ok_or_else(|| Error::Corrupt(format!("reservation {id} has unreadable items")))
}

/// `product:quantity,…` as `(product, quantity)` pairs sorted by product; `None` when any pair
/// is malformed. The invariant checker reads the rows with it too.
pub fn parse_items(items: &str) -> Option<Vec<(i64, i64)>> {
    let mut lines = items
        .split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (product, quantity) = pair.split_once(':')?;
            Some((product.parse().ok()?, quantity.parse().ok()?))
        })
        .collect::<Option<Vec<(i64, i64)>>>()?;
    lines.sort_unstable();
    Some(lines)
}

/// The source of the catalog's events.
const EVENTS_SOURCE: &str = mall_types::ServiceName::Product.as_str();

/// The product catalog's repository.
#[derive(Clone, Debug)]
pub struct Catalog {
    db: Database,
}

#[derive(sqlx::FromRow)]
struct ProductRow {
    id: i64,
    name: String,
    description: String,
    picture: String,
    price_cents: i64,
    stock: i64,
}

impl ProductRow {
    fn into_product(self, categories: Vec<String>) -> Product {
        Product {
            id: self.id,
            name: self.name,
            description: self.description,
            picture: self.picture,
            price_cents: self.price_cents,
            stock: self.stock,
            categories,
        }
    }
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

impl Catalog {
    /// A repository on an open, migrated database.
    pub fn new(db: Database) -> Self {
        Catalog { db }
    }

    /// The database (for readiness checks).
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Attaches category names to rows, keeping the rows' order.
    async fn with_categories(&self, rows: Vec<ProductRow>) -> Result<Vec<Product>, Error> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT pc.product_id, c.name FROM product_categories pc \
             JOIN categories c ON c.id = pc.category_id \
             WHERE pc.product_id IN ({}) ORDER BY c.name_key, c.id",
            placeholders(rows.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for row in &rows {
            query = query.bind(row.id);
        }
        let mut by_product: HashMap<i64, Vec<String>> = HashMap::new();
        for r in query.fetch_all(self.db.pool()).await? {
            by_product
                .entry(r.try_get::<i64, _>(0)?)
                .or_default()
                .push(r.try_get::<String, _>(1)?);
        }
        Ok(rows
            .into_iter()
            .map(|row| {
                let cats = by_product.remove(&row.id).unwrap_or_default();
                row.into_product(cats)
            })
            .collect())
    }

    /// Every category holding a live product, with how many it holds, in `name_key` order
    /// (case-insensitive, as categories are matched).
    pub async fn categories(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows = sqlx::query(
            "SELECT c.name, COUNT(p.id) FROM categories c \
             JOIN product_categories pc ON pc.category_id = c.id \
             JOIN products p ON p.id = pc.product_id AND p.deleted_at IS NULL \
             GROUP BY c.id, c.name, c.name_key ORDER BY c.name_key, c.id",
        )
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect()
    }

    /// Live products by id order, optionally in the category with key `category` (see
    /// [`crate::domain::category_filter`]), with the total count.
    pub async fn list(
        &self,
        category: Option<&str>,
        page: Page,
    ) -> Result<(Vec<Product>, u64), Error> {
        let filter = match category {
            Some(_) => {
                "WHERE p.deleted_at IS NULL AND EXISTS (SELECT 1 FROM product_categories pc \
                 JOIN categories c ON c.id = pc.category_id \
                 WHERE pc.product_id = p.id AND c.name_key = ?)"
            }
            None => "WHERE p.deleted_at IS NULL",
        };
        let count_sql = format!("SELECT COUNT(*) FROM products p {filter}");
        let page_sql = format!(
            "SELECT p.id, p.name, p.description, p.picture, p.price_cents, p.stock \
             FROM products p {filter} ORDER BY p.id LIMIT ? OFFSET ?"
        );
        let mut count = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
        let mut rows = sqlx::query_as::<_, ProductRow>(AssertSqlSafe(page_sql));
        if let Some(name) = category {
            count = count.bind(name.to_string());
            rows = rows.bind(name.to_string());
        }
        let total = count.fetch_one(self.db.pool()).await?;
        let rows = rows
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(self.db.pool())
            .await?;
        Ok((
            self.with_categories(rows).await?,
            u64::try_from(total).unwrap_or(0),
        ))
    }

    /// Live products whose folded name or description contains the folded search text.
    pub async fn search(&self, search: &Search, page: Page) -> Result<(Vec<Product>, u64), Error> {
        const FILTER: &str = "WHERE deleted_at IS NULL \
             AND (name_fold LIKE ? ESCAPE '!' OR description_fold LIKE ? ESCAPE '!')";
        let total: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM products {FILTER}"
        )))
        .bind(&search.pattern)
        .bind(&search.pattern)
        .fetch_one(self.db.pool())
        .await?;
        let rows = sqlx::query_as::<_, ProductRow>(AssertSqlSafe(format!(
            "SELECT {PRODUCT_COLUMNS} FROM products {FILTER} ORDER BY id LIMIT ? OFFSET ?"
        )))
        .bind(&search.pattern)
        .bind(&search.pattern)
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(self.db.pool())
        .await?;
        Ok((
            self.with_categories(rows).await?,
            u64::try_from(total).unwrap_or(0),
        ))
    }

    /// One live product.
    pub async fn get(&self, id: ProductId) -> Result<Option<Product>, Error> {
        Ok(self.batch_get(&[id]).await?.pop())
    }

    /// The live products among `ids`, in the order asked: one statement, the products joined
    /// with their categories (a row per product and category).
    pub async fn batch_get(&self, ids: &[ProductId]) -> Result<Vec<Product>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT p.id, p.name, p.description, p.picture, p.price_cents, p.stock, c.name \
             FROM products p LEFT JOIN product_categories pc ON pc.product_id = p.id \
             LEFT JOIN categories c ON c.id = pc.category_id \
             WHERE p.deleted_at IS NULL AND p.id IN ({}) ORDER BY p.id, c.name_key, c.id",
            placeholders(ids.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.db());
        }
        let mut products: Vec<Product> = Vec::new();
        for row in query.fetch_all(self.db.pool()).await? {
            let id: i64 = row.try_get(0)?;
            let category: Option<String> = row.try_get(6)?;
            if products.last().is_none_or(|p| p.id != id) {
                let product = ProductRow {
                    id,
                    name: row.try_get(1)?,
                    description: row.try_get(2)?,
                    picture: row.try_get(3)?,
                    price_cents: row.try_get(4)?,
                    stock: row.try_get(5)?,
                };
                products.push(product.into_product(Vec::new()));
            }
            if let (Some(name), Some(product)) = (category, products.last_mut()) {
                product.categories.push(name);
            }
        }
        products.sort_by_key(|p| ids.iter().position(|id| id.db() == p.id));
        Ok(products)
    }

    /// Links `product` to `categories`, creating the unknown ones. A category is found by its
    /// key, so a name that folds like an existing one joins it (under the stored spelling).
    async fn link_categories(
        &self,
        tx: &mut Tx,
        product: i64,
        categories: &[Category],
    ) -> Result<(), Error> {
        let upsert = match self.db.backend() {
            Backend::Sqlite => {
                "INSERT INTO categories (name, name_key) VALUES (?, ?) ON CONFLICT (name_key) DO NOTHING"
            }
            Backend::MySql => {
                "INSERT INTO categories (name, name_key) VALUES (?, ?) ON DUPLICATE KEY UPDATE id = id"
            }
        };
        for category in categories {
            sqlx::query(upsert)
                .bind(category.name.as_str())
                .bind(category.key.as_str())
                .execute(&mut **tx)
                .await?;
            let id: i64 = sqlx::query_scalar("SELECT id FROM categories WHERE name_key = ?")
                .bind(category.key.as_str())
                .fetch_one(&mut **tx)
                .await?;
            sqlx::query("INSERT INTO product_categories (product_id, category_id) VALUES (?, ?)")
                .bind(product)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Inserts one product row and its category links; returns the new id.
    async fn insert(&self, tx: &mut Tx, new: &NewProduct, now: i64) -> Result<i64, Error> {
        let done = sqlx::query(
            "INSERT INTO products (name, description, picture, price_cents, stock, created_at, \
             updated_at, name_fold, description_fold) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new.name.as_str())
        .bind(new.description.as_str())
        .bind(new.picture.as_str())
        .bind(new.price.get())
        .bind(new.stock)
        .bind(now)
        .bind(now)
        .bind(fold(new.name.as_str()))
        .bind(fold(new.description.as_str()))
        .execute(&mut **tx)
        .await?;
        let id = inserted_id(&done, &mut **tx).await?;
        self.link_categories(tx, id, &new.categories).await?;
        Ok(id)
    }

    /// Inserts a product and its categories in one transaction.
    pub async fn create(&self, new: &NewProduct) -> Result<Product, Error> {
        self.db.retrying("create", || self.create_once(new)).await
    }

    async fn create_once(&self, new: &NewProduct) -> Result<Product, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        let id = self.insert(&mut tx, new, now).await?;
        tx.commit().await?;
        // The database hands out positive ids; a row it cannot find again is as good as gone.
        let found = match ProductId::from_db(id) {
            Some(id) => self.get(id).await?,
            None => None,
        };
        found.ok_or(Error::ProductNotFound(stored_to_api(id)))
    }

    /// Applies a patch to a live product; `None` when there is none with that id.
    pub async fn update(&self, patch: &ProductPatch) -> Result<Option<Product>, Error> {
        self.db.retrying("update", || self.update_once(patch)).await
    }

    async fn update_once(&self, patch: &ProductPatch) -> Result<Option<Product>, Error> {
        let mut tx = self.db.begin_write().await?;
        let done = sqlx::query(
            "UPDATE products SET name = COALESCE(?, name), description = COALESCE(?, description), \
             picture = COALESCE(?, picture), price_cents = COALESCE(?, price_cents), updated_at = ?, \
             name_fold = COALESCE(?, name_fold), description_fold = COALESCE(?, description_fold) \
             WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(patch.name.clone().map(Text::into_string))
        .bind(patch.description.clone().map(Text::into_string))
        .bind(patch.picture.clone().map(Text::into_string))
        .bind(patch.price.map(|p| p.get()))
        .bind(unix_secs())
        .bind(patch.name.as_ref().map(|n| fold(n.as_str())))
        .bind(patch.description.as_ref().map(|d| fold(d.as_str())))
        .bind(patch.id.db())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        if let Some(categories) = &patch.categories {
            sqlx::query("DELETE FROM product_categories WHERE product_id = ?")
                .bind(patch.id.db())
                .execute(&mut *tx)
                .await?;
            self.link_categories(&mut tx, patch.id.db(), categories)
                .await?;
        }
        tx.commit().await?;
        self.get(patch.id).await
    }

    /// Soft-deletes a live product; false when there is none with that id.
    pub async fn delete(&self, id: ProductId) -> Result<bool, Error> {
        let now = unix_secs();
        let done = sqlx::query(
            "UPDATE products SET deleted_at = ?, updated_at = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(now)
        .bind(id.db())
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Takes the reservation's stock, all lines or none. Idempotent per reservation id.
    pub async fn reserve(&self, r: &Reservation) -> Result<Reserved, Error> {
        for _ in 0..RESERVE_ATTEMPTS {
            match self.db.retrying("reserve", || self.reserve_once(r)).await? {
                Some(reserved) => return Ok(reserved),
                // A line fell short but every line can be served now: stock came back meanwhile.
                None => continue,
            }
        }
        // Short at every attempt, if only for a moment: the first line is what is refused.
        let first = r.lines.first().map(|(p, _)| p.get()).unwrap_or_default();
        Err(Error::InsufficientStock(first))
    }

    /// Two statements whatever the number of lines (and the levels its events carry): the
    /// claim of the id with its lines, and one conditional `UPDATE` taking every line's units
    /// (each row only if it holds enough). `None` when the `UPDATE` missed a line that a
    /// re-read finds servable (a race with a release): try again.
    async fn reserve_once(&self, r: &Reservation) -> Result<Option<Reserved>, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        // Claim the id first, with its lines: a replay (or a concurrent twin) fails here and
        // changes nothing.
        let claimed = sqlx::query(
            "INSERT INTO stock_reservations (reservation_id, status, created_at, items) \
             VALUES (?, 'reserved', ?, ?)",
        )
        .bind(r.id.as_str())
        .bind(now)
        .bind(encode_items(&r.lines))
        .execute(&mut *tx)
        .await;
        match claimed {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                drop(tx);
                return self.existing_reservation(r).await.map(Some);
            }
            Err(e) => return Err(e.into()),
        }
        let n = r.lines.len();
        let sql = format!(
            "UPDATE products SET stock = stock - CASE id {} END, updated_at = ? \
             WHERE deleted_at IS NULL AND ({})",
            vec!["WHEN ? THEN ?"; n].join(" "),
            vec!["(id = ? AND stock >= ?)"; n].join(" OR ")
        );
        let mut take = sqlx::query(AssertSqlSafe(sql));
        for (product, quantity) in &r.lines {
            take = take.bind(product.db()).bind(*quantity);
        }
        take = take.bind(now);
        for (product, quantity) in &r.lines {
            take = take.bind(product.db()).bind(*quantity);
        }
        let taken = take.execute(&mut *tx).await?;
        if usize::try_from(taken.rows_affected()).unwrap_or(usize::MAX) != n {
            // Dropping the transaction rolls back the lines already taken.
            return self.short_line(&mut tx, r).await;
        }
        let taken: Vec<(i64, i64)> = r.lines.iter().map(|(p, q)| (p.db(), -*q)).collect();
        stock_changed(&mut tx, &taken, r.id.as_str()).await?;
        tx.commit().await?;
        Ok(Some(Reserved::Now))
    }

    /// Why the reservation's `UPDATE` missed a line: the first line (by product id) that is
    /// gone or short, as the refusal; `None` when every line can be served now.
    async fn short_line(&self, tx: &mut Tx, r: &Reservation) -> Result<Option<Reserved>, Error> {
        let sql = format!(
            "SELECT id, stock FROM products WHERE deleted_at IS NULL AND id IN ({})",
            placeholders(r.lines.len())
        );
        let mut query = sqlx::query_as::<_, (i64, i64)>(AssertSqlSafe(sql));
        for (product, _) in &r.lines {
            query = query.bind(product.db());
        }
        let live: HashMap<i64, i64> = query.fetch_all(&mut **tx).await?.into_iter().collect();
        for (product, quantity) in &r.lines {
            match live.get(&product.db()) {
                None => return Err(Error::ProductNotFound(product.get())),
                Some(stock) if stock < quantity => {
                    return Err(Error::InsufficientStock(product.get()));
                }
                Some(_) => {}
            }
        }
        Ok(None)
    }

    /// A replayed reservation: fine if it is the same and still held.
    async fn existing_reservation(&self, r: &Reservation) -> Result<Reserved, Error> {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT status, items FROM stock_reservations WHERE reservation_id = ?")
                .bind(r.id.as_str())
                .fetch_optional(self.db.pool())
                .await?;
        let Some((status, items)) = row else {
            return Err(Error::ReservationConflict(r.id.to_string()));
        };
        let lines = decode_items(&r.id, items.as_deref())?;
        let same = lines.len() == r.lines.len()
            && lines
                .iter()
                .zip(&r.lines)
                .all(|(stored, asked)| *stored == (asked.0.db(), asked.1));
        match status.as_str() {
            "reserved" if same => Ok(Reserved::Already),
            "released" => Err(Error::ReservationReleased(r.id.to_string())),
            _ => Err(Error::ReservationConflict(r.id.to_string())),
        }
    }

    /// Puts a held reservation's stock back, once. Returns the products touched (empty when the
    /// reservation is unknown or already released; an unknown id is recorded as released).
    pub async fn release(&self, id: &ReservationId) -> Result<Vec<ProductId>, Error> {
        self.db.retrying("release", || self.release_once(id)).await
    }

    async fn release_once(&self, id: &ReservationId) -> Result<Vec<ProductId>, Error> {
        let now = unix_secs();
        let mut tx = self.db.begin_write().await?;
        // Flipping the status is the claim: only one concurrent release can do it.
        let flipped = sqlx::query(
            "UPDATE stock_reservations SET status = 'released', released_at = ? \
             WHERE reservation_id = ? AND status = 'reserved'",
        )
        .bind(now)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await?;
        if flipped.rows_affected() == 0 {
            // Unknown id: remember it as released, so a reservation that arrives late (after
            // its order was cancelled) is refused instead of holding stock forever.
            let tombstone = sqlx::query(
                "INSERT INTO stock_reservations (reservation_id, status, created_at, released_at) \
                 VALUES (?, 'released', ?, ?)",
            )
            .bind(id.as_str())
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await;
            match tombstone {
                Ok(_) => tx.commit().await?,
                Err(e) if is_unique_violation(&e) => {}
                Err(e) => return Err(e.into()),
            }
            return Ok(Vec::new());
        }
        let items: Option<String> =
            sqlx::query_scalar("SELECT items FROM stock_reservations WHERE reservation_id = ?")
                .bind(id.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let lines = decode_items(id, items.as_deref())?;
        let mut touched = Vec::with_capacity(lines.len());
        let mut released = Vec::with_capacity(lines.len());
        for (product, quantity) in lines {
            // Deleted products get their units back too, so the books balance.
            sqlx::query("UPDATE products SET stock = stock + ?, updated_at = ? WHERE id = ?")
                .bind(quantity)
                .bind(now)
                .bind(product)
                .execute(&mut *tx)
                .await?;
            released.push((product, quantity));
            // Only positive ids were ever reserved; the cache entry of any other is not ours.
            touched.extend(ProductId::from_db(product));
        }
        stock_changed(&mut tx, &released, id.as_str()).await?;
        tx.commit().await?;
        Ok(touched)
    }

    /// Fills the folded columns of rows written before they existed (migration 0002 adds them
    /// empty: SQL cannot fold like Rust). Categories whose names now fold alike (`Ärger` and
    /// `ärger` were two on SQLite) are merged into the oldest, their products moved over.
    /// Touches only rows still missing a folded form, so it is cheap on every start, and safe
    /// with several instances starting at once.
    pub async fn backfill(&self) -> Result<Backfilled, Error> {
        let mut done = Backfilled::default();
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, name FROM categories WHERE name_key IS NULL ORDER BY id LIMIT ?",
            )
            .bind(BACKFILL_BATCH)
            .fetch_all(self.db.pool())
            .await?;
            if rows.is_empty() {
                break;
            }
            for (id, name) in &rows {
                match self.key_category_racing(*id, name).await? {
                    Keyed::Keyed => done.categories += 1,
                    Keyed::Merged => done.merged += 1,
                }
            }
        }
        loop {
            let filled = self
                .db
                .retrying("backfill", || self.fold_product_batch())
                .await?;
            if filled == 0 {
                break;
            }
            done.products += filled;
        }
        Ok(done)
    }

    /// [`Self::key_category`], once more when another instance gave a second category the
    /// same key in the meantime (the retry then merges into that one).
    async fn key_category_racing(&self, id: i64, name: &str) -> Result<Keyed, Error> {
        let once = || self.db.retrying("backfill", || self.key_category(id, name));
        match once().await {
            Err(Error::Database(e)) if is_unique_violation(&e) => once().await,
            keyed => keyed,
        }
    }

    /// Gives old category `id` its key, or merges it into the category that has it already.
    async fn key_category(&self, id: i64, name: &str) -> Result<Keyed, Error> {
        let name: String = name.nfc().collect();
        let key = fold(&name);
        let mut tx = self.db.begin_write().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM categories WHERE name_key = ? AND id <> ?")
                .bind(&key)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(keep) = existing else {
            sqlx::query(
                "UPDATE categories SET name = ?, name_key = ? WHERE id = ? AND name_key IS NULL",
            )
            .bind(&name)
            .bind(&key)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(Keyed::Keyed);
        };
        // Links the products of `id` to `keep` (those not linked already), then drops `id`.
        sqlx::query(
            "INSERT INTO product_categories (product_id, category_id) \
             SELECT product_id, ? FROM product_categories WHERE category_id = ? \
             AND product_id NOT IN (SELECT product_id FROM product_categories WHERE category_id = ?)",
        )
        .bind(keep)
        .bind(id)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM product_categories WHERE category_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM categories WHERE id = ? AND name_key IS NULL")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::warn!(
            category = %name,
            into = keep,
            "merged a category into one whose name folds alike"
        );
        Ok(Keyed::Merged)
    }

    /// Folds the name and description of up to [`BACKFILL_BATCH`] products missing them;
    /// returns how many.
    async fn fold_product_batch(&self) -> Result<u64, Error> {
        let mut tx = self.db.begin_write().await?;
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, name, description FROM products \
             WHERE name_fold IS NULL OR description_fold IS NULL ORDER BY id LIMIT ?",
        )
        .bind(BACKFILL_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        for (id, name, description) in &rows {
            sqlx::query("UPDATE products SET name_fold = ?, description_fold = ? WHERE id = ?")
                .bind(fold(name))
                .bind(fold(description))
                .bind(*id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// Loads `products` when the catalog has never been seeded and is empty. Safe with several
    /// instances starting at once: the `demo_seeded` marker is claimed in the same transaction.
    pub async fn seed_if_empty(&self, products: &[NewProduct]) -> Result<bool, Error> {
        let mut tx = self.db.begin_write().await?;
        let claimed =
            sqlx::query("INSERT INTO catalog_meta (name, created_at) VALUES ('demo_seeded', ?)")
                .bind(unix_secs())
                .execute(&mut *tx)
                .await;
        match claimed {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM products")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            tx.commit().await?;
            return Ok(false);
        }
        let now = unix_secs();
        for new in products {
            self.insert(&mut tx, new, now).await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}
