//! Reads a [`Snapshot`] from the fleet's MariaDB/MySQL databases (`<prefix>product`,
//! `<prefix>order`, `<prefix>payment`, `<prefix>checkout`), in one read-only transaction with a
//! consistent snapshot: InnoDB's snapshot covers every database of the server, so all four are
//! read at one instant.

use sqlx::mysql::{MySqlConnection, MySqlRow};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::model::{Order, Payment, Product, Reservation, Saga, Snapshot};

/// A database name prefix: letters, digits and `_` only (it is spliced into SQL, which is why
/// every query below may be built with `format!`).
pub fn validate_prefix(prefix: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !prefix.is_empty()
            && prefix.len() <= 48
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "--db-prefix `{prefix}`: use 1 to 48 letters, digits or `_`"
    );
    Ok(())
}

/// Connects to the server at `url` (`mysql://user[:password]@host:port`; a database part is
/// ignored: every table is named with its database).
pub async fn connect(url: &str) -> anyhow::Result<MySqlConnection> {
    anyhow::ensure!(
        url.starts_with("mysql://"),
        "--mysql-url must start with mysql://"
    );
    MySqlConnection::connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database server: {e}"))
}

/// Reads everything the rules need, at one instant.
pub async fn snapshot(conn: &mut MySqlConnection, prefix: &str) -> anyhow::Result<Snapshot> {
    validate_prefix(prefix)?;
    sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await?;
    sqlx::raw_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut *conn)
        .await?;
    let read = read_all(conn, prefix).await;
    // Read-only: ending it either way changes nothing.
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
    read
}

async fn read_all(conn: &mut MySqlConnection, prefix: &str) -> anyhow::Result<Snapshot> {
    let db = |service: &str| format!("`{prefix}{service}`");
    let taken_at: i64 = sqlx::query_scalar("SELECT CAST(UNIX_TIMESTAMP() AS SIGNED)")
        .fetch_one(&mut *conn)
        .await?;
    let product = db("product");
    let products = read_products(conn, &product).await?;
    let reservations = read_reservations(conn, &product).await?;
    let orders = read_orders(conn, &db("order")).await?;
    let payment = db("payment");
    let payments = read_payments(conn, &payment).await?;
    let refunds = read_refund_totals(conn, &payment).await?;
    let sagas = read_sagas(conn, &db("checkout")).await?;
    Ok(Snapshot {
        taken_at,
        products,
        reservations,
        orders,
        payments,
        refunds,
        sagas,
    })
}

/// Product's products.
async fn read_products(conn: &mut MySqlConnection, db: &str) -> anyhow::Result<Vec<Product>> {
    let sql = format!("SELECT id, name, stock FROM {db}.products ORDER BY id");
    fetch(conn, sql, |r| {
        Ok(Product {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            stock: r.try_get("stock")?,
        })
    })
    .await
}

/// Order's orders.
async fn read_orders(conn: &mut MySqlConnection, db: &str) -> anyhow::Result<Vec<Order>> {
    let sql = format!(
        "SELECT id, user_id, status, total_cents, transaction_id, updated_at FROM {db}.orders"
    );
    fetch(conn, sql, |r| {
        Ok(Order {
            id: r.try_get("id")?,
            user_id: r.try_get("user_id")?,
            status: r.try_get("status")?,
            total_cents: r.try_get("total_cents")?,
            transaction_id: r.try_get("transaction_id")?,
            updated_at: r.try_get("updated_at")?,
        })
    })
    .await
}

/// Payment's payments.
async fn read_payments(conn: &mut MySqlConnection, db: &str) -> anyhow::Result<Vec<Payment>> {
    let sql = format!(
        "SELECT transaction_id, order_id, user_id, amount_cents, refunded_cents, status, \
         updated_at FROM {db}.payments"
    );
    fetch(conn, sql, |r| {
        Ok(Payment {
            transaction_id: r.try_get("transaction_id")?,
            order_id: r.try_get("order_id")?,
            user_id: r.try_get("user_id")?,
            amount_cents: r.try_get("amount_cents")?,
            refunded_cents: r.try_get("refunded_cents")?,
            status: r.try_get("status")?,
            updated_at: r.try_get("updated_at")?,
        })
    })
    .await
}

/// How many refunds payment made, and their sum in cents.
async fn read_refund_totals(conn: &mut MySqlConnection, db: &str) -> anyhow::Result<(u64, i64)> {
    let (count, cents): (i64, i64) = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount_cents), 0) AS SIGNED) FROM {db}.refunds"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| anyhow::anyhow!("reading {db}.refunds: {e}"))?;
    Ok((u64::try_from(count).unwrap_or(0), cents))
}

/// Checkout's sagas.
async fn read_sagas(conn: &mut MySqlConnection, db: &str) -> anyhow::Result<Vec<Saga>> {
    let sql = format!("SELECT id, state, step, order_id, created_at FROM {db}.sagas");
    fetch(conn, sql, |r| {
        Ok(Saga {
            id: r.try_get("id")?,
            state: r.try_get("state")?,
            step: r.try_get("step")?,
            order_id: r.try_get("order_id")?,
            created_at: r.try_get("created_at")?,
        })
    })
    .await
}

/// Product's reservations with their lines.
async fn read_reservations(
    conn: &mut MySqlConnection,
    product: &str,
) -> anyhow::Result<Vec<Reservation>> {
    let held = fetch(
        conn,
        format!("SELECT reservation_id, status, items FROM {product}.stock_reservations"),
        |r| {
            Ok((
                r.try_get::<String, _>("reservation_id")?,
                r.try_get::<String, _>("status")?,
                r.try_get::<Option<String>, _>("items")?,
            ))
        },
    )
    .await?;
    held.into_iter()
        .map(|(id, status, items)| {
            let items = product::store::parse_items(items.as_deref().unwrap_or_default())
                .ok_or_else(|| anyhow::anyhow!("reservation {id} has unreadable items"))?;
            Ok(Reservation {
                items,
                id,
                live: status == "reserved",
            })
        })
        .collect()
}

/// Every row of `sql` (which names its table in `FROM`) through `row`; a failure names the
/// statement's table.
async fn fetch<T>(
    conn: &mut MySqlConnection,
    sql: String,
    row: impl Fn(&MySqlRow) -> Result<T, sqlx::Error>,
) -> anyhow::Result<Vec<T>> {
    let table = sql
        .split(" FROM ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("?")
        .to_string();
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| anyhow::anyhow!("reading {table}: {e}"))?;
    Ok(rows.iter().map(row).collect::<Result<Vec<_>, _>>()?)
}

#[cfg(test)]
mod tests {
    use super::validate_prefix;

    #[test]
    fn prefixes_are_plain_names() {
        assert!(validate_prefix("fleet_").is_ok());
        assert!(validate_prefix("t_0123abcd_").is_ok());
        for bad in ["", "fleet`; DROP", "a-b", "x y", &"p".repeat(49)] {
            assert!(validate_prefix(bad).is_err(), "{bad}");
        }
    }
}
