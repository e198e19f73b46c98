//! Test support: a fleet on port 0 with its own databases and cache namespace.
//!
//! By default each service gets an SQLite file in a temporary directory and the in-process
//! cache. With `MALL_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306`) each service gets a
//! fresh MariaDB/MySQL database, dropped when the fleet is stopped or dropped; with
//! `MALL_TEST_REDIS_URL` the cache is Redis under a fresh namespace.

use mall_common::client::FromChannel;
use mall_common::config::Source;
use tonic::Status;

use crate::{Endpoints, Fleet};

/// Env var naming the MySQL server tests use (no database part).
pub const MYSQL_ENV: &str = "MALL_TEST_MYSQL_URL";
/// Env var naming the Redis server tests use.
pub const REDIS_ENV: &str = "MALL_TEST_REDIS_URL";

/// The user id of [`TestFleet::admin_token`]'s synthetic admin.
pub const ADMIN_USER_ID: u64 = 4_000_000_000;

/// A running test fleet; stop it with [`TestFleet::stop`] (dropping also cleans up).
pub struct TestFleet {
    fleet: Option<Fleet>,
    database_template: String,
    cache_namespace: String,
    database_urls: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The database URL template tests use for service `{service}` (a fresh database per fleet).
fn database_template(dir: &std::path::Path, run: &str) -> String {
    match std::env::var(MYSQL_ENV) {
        Ok(base) => format!("{}/t_{run}_{{service}}", base.trim_end_matches('/')),
        Err(_) => format!("sqlite://{}/{{service}}.db?mode=rwc", dir.display()),
    }
}

impl TestFleet {
    /// Starts `names` with test defaults.
    pub async fn start(names: &[&str]) -> TestFleet {
        Self::start_with(names, &[]).await
    }

    /// Starts `names` with test defaults plus `MALL__*` overrides.
    pub async fn start_with(names: &[&str], overrides: &[(&str, &str)]) -> TestFleet {
        let dir = tempfile::tempdir().expect("temporary directory");
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let template = database_template(dir.path(), &run);
        let mut env = std::collections::BTreeMap::new();
        let mut put = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        put("MALL__PROFILE", "test".into());
        put("MALL__SERVER__HOST", "127.0.0.1".into());
        put("MALL__SERVER__PORT", "0".into());
        put("MALL__SERVER__SHUTDOWN_GRACE", "5s".into());
        put("MALL__DATABASE__URL", template);
        put("MALL__CACHE__NAMESPACE", format!("test-{run}"));
        if let Ok(redis) = std::env::var(REDIS_ENV) {
            put("MALL__CACHE__URL", redis);
        }
        put("MALL__CATALOG__SEED_DEMO", "false".into());
        // Cheap password hashing: tests hash hundreds of passwords in debug builds.
        put("MALL__ACCOUNTS__ARGON2__MEMORY_KIB", "256".into());
        put("MALL__ACCOUNTS__ARGON2__ITERATIONS", "1".into());
        for (k, v) in overrides {
            put(k, (*v).to_string());
        }
        // Overrides may have replaced the template and namespace.
        let database_template = env["MALL__DATABASE__URL"].clone();
        let cache_namespace = env["MALL__CACHE__NAMESPACE"].clone();
        let database_urls = names
            .iter()
            .map(|n| env["MALL__DATABASE__URL"].replace("{service}", n))
            .collect();
        let source = Source { file: None, env };
        let fleet = Fleet::start(names, source)
            .await
            .unwrap_or_else(|e| panic!("test fleet failed to start: {e:#}"));
        TestFleet {
            fleet: Some(fleet),
            database_template,
            cache_namespace,
            database_urls,
            _dir: dir,
        }
    }

    /// Starts more instances of `names` sharing this fleet's databases and cache, as replicas
    /// behind a balancer would; the replica leaves the databases to this fleet.
    pub async fn replica(&self, names: &[&str], overrides: &[(&str, &str)]) -> TestFleet {
        let mut all = vec![
            ("MALL__DATABASE__URL", self.database_template.as_str()),
            ("MALL__CACHE__NAMESPACE", self.cache_namespace.as_str()),
        ];
        all.extend_from_slice(overrides);
        let mut replica = Self::start_with(names, &all).await;
        replica.database_urls.clear();
        replica
    }

    fn fleet(&self) -> &Fleet {
        self.fleet.as_ref().expect("fleet is running")
    }

    /// Where `name` listens.
    pub fn endpoints(&self, name: &str) -> Endpoints {
        self.fleet()
            .endpoints(name)
            .unwrap_or_else(|| panic!("{name} is not running"))
    }

    /// A typed client for `name` calling with a service token (internal RPCs).
    pub fn client<T: FromChannel>(&self, name: &str) -> T {
        self.fleet()
            .clients()
            .client(name)
            .unwrap_or_else(|e: Status| panic!("client for {name}: {e}"))
    }

    /// A typed client for `name` that sends `token` as its bearer.
    pub fn client_as<T: FromChannel>(&self, name: &str, token: &str) -> T {
        self.fleet()
            .clients()
            .client_as(name, token)
            .unwrap_or_else(|e: Status| panic!("client for {name}: {e}"))
    }

    /// The fleet's token keys.
    pub fn tokens(&self) -> &mall_common::auth::Tokens {
        self.fleet().tokens().expect("fleet has token keys")
    }

    /// An access token for a synthetic admin (admin checks are local to each service, so no
    /// account is needed).
    pub fn admin_token(&self) -> String {
        let sid = uuid::Uuid::new_v4().to_string();
        self.tokens()
            .issue_access(
                ADMIN_USER_ID,
                "test-admin",
                mall_common::auth::ROLE_ADMIN,
                &sid,
            )
            .expect("sign admin token")
            .0
    }

    /// An access token for a synthetic end user `user_id`.
    pub fn user_token(&self, user_id: u64) -> String {
        let sid = uuid::Uuid::new_v4().to_string();
        self.tokens()
            .issue_access(
                user_id,
                &format!("user{user_id}"),
                mall_common::auth::ROLE_USER,
                &sid,
            )
            .expect("sign user token")
            .0
    }

    /// The database URL service `name` uses.
    pub fn database_url(&self, name: &str) -> String {
        self.database_template.replace("{service}", name)
    }

    /// Shuts the fleet down gracefully and drops its databases.
    pub async fn stop(mut self) {
        if let Some(fleet) = self.fleet.take() {
            fleet.shutdown().await.expect("clean shutdown");
        }
        for url in std::mem::take(&mut self.database_urls) {
            let _ = mall_common::store::drop_database(&url).await;
        }
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        let urls: Vec<String> = std::mem::take(&mut self.database_urls)
            .into_iter()
            .filter(|u| u.starts_with("mysql://"))
            .collect();
        if urls.is_empty() {
            return;
        }
        // A panicking test never reached `stop`: drop its MySQL databases on a side runtime.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    for url in urls {
                        let _ = mall_common::store::drop_database(&url).await;
                    }
                });
            }
        })
        .join();
    }
}

/// A minimal HTTP/1.0 GET against an admin port: `(status code, body)`.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to admin port");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send request");
    let mut raw = String::new();
    stream
        .read_to_string(&mut raw)
        .await
        .expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

/// A card number the payment service approves.
pub const GOOD_CARD: &str = "4111111111111111";
/// A card number the payment service declines (a test card).
pub const DECLINED_CARD: &str = "4000000000000002";

/// A complete, valid checkout request for `user_id` paying with `card` under idempotency `key`
/// (the card expires next year).
pub fn checkout_request(
    user_id: u64,
    card: &str,
    key: &str,
) -> mall_proto::checkout::v1::CheckoutReq {
    use mall_proto::common::v1::{Address, CreditCardInfo};
    // A year is 31,556,952 s on average: good enough for "next year" without a date library.
    let next_year =
        i32::try_from(1970 + mall_common::store::unix_now() / 31_556_952 + 1).unwrap_or(2100);
    mall_proto::checkout::v1::CheckoutReq {
        user_id,
        firstname: "Ann".into(),
        lastname: "Lee".into(),
        email: "Ann@Example.com".into(),
        address: Some(Address {
            street_address: "1 Main St".into(),
            city: "Springfield".into(),
            state: "IL".into(),
            country: "US".into(),
            zip_code: "62701".into(),
        }),
        credit_card: Some(CreditCardInfo {
            credit_card_number: card.into(),
            credit_card_cvv: "123".into(),
            credit_card_expiration_year: next_year,
            credit_card_expiration_month: 6,
        }),
        idempotency_key: key.into(),
    }
}
