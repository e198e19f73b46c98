//! [`TestFleet`]: a fleet on port 0 with its own databases and cache namespace.
//!
//! By default each service gets an SQLite file in a temporary directory and the in-process
//! cache. With `MALL_TEST_MYSQL_URL` (e.g. `mysql://root@127.0.0.1:3306`) each service gets a
//! fresh MariaDB/MySQL database, dropped when the fleet is stopped or dropped; with
//! `MALL_TEST_REDIS_URL` the cache is Redis under a fresh namespace.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use mall::{Endpoints, Fleet};
use mall_common::client::{Clients, FromChannel};
use mall_common::config::{self, Source};
use mall_types::{ServiceName, UserId};
use parking_lot::Mutex;
use tonic::Status;

/// Env var naming the MySQL server tests use (no database part).
pub const MYSQL_ENV: &str = "MALL_TEST_MYSQL_URL";
/// Env var naming the Redis server tests use.
pub const REDIS_ENV: &str = "MALL_TEST_REDIS_URL";

/// Env var naming the NATS server (JetStream) the fleets' event bus runs on instead of their own
/// in-process bus; each fleet gets its own namespace (subjects and stream) there.
pub const NATS_ENV: &str = "MALL_TEST_NATS_URL";

/// The user id of [`TestFleet::admin_token`]'s synthetic admin.
pub const ADMIN_USER_ID: u64 = 4_000_000_000;

/// A running test fleet; stop it with [`TestFleet::stop`] (dropping also cleans up).
pub struct TestFleet {
    fleet: Option<Fleet>,
    database_template: String,
    cache_namespace: String,
    /// The fleet's own in-process event bus (`memory://test-<run>`), or the override.
    events_url: String,
    /// `events.namespace` (the default unless on NATS, where each fleet has its own).
    events_namespace: Option<String>,
    /// The `MALL__TLS__*` settings of a fleet started with mutual TLS (empty otherwise).
    tls_env: BTreeMap<String, String>,
    /// The databases this fleet drops when it stops: its services' and
    /// [`TestFleet::fresh_database`]'s.
    database_urls: Mutex<Vec<String>>,
    _dir: tempfile::TempDir,
}

/// The database URL template tests use for service `{service}` (a fresh database per fleet).
fn database_template(dir: &std::path::Path, run: &str) -> String {
    match std::env::var(MYSQL_ENV) {
        Ok(base) => format!("{}/t_{run}_{{service}}", base.trim_end_matches('/')),
        Err(_) => format!("sqlite://{}/{{service}}.db?mode=rwc", dir.display()),
    }
}

/// The settings every service a test starts runs with: loopback, port 0, `database_url` (may be
/// a `{service}` template), its own cache namespace, Redis when the tests have one, its own
/// in-process event bus (named like the namespace), notification's mail as `.eml` files in
/// `mail_dir`.
fn test_env(
    database_url: String,
    cache_namespace: String,
    mail_dir: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    put("MALL__PROFILE", "test".into());
    put("MALL__SERVER__HOST", "127.0.0.1".into());
    put("MALL__SERVER__PORT", "0".into());
    put("MALL__SERVER__SHUTDOWN_GRACE", "5s".into());
    put("MALL__DATABASE__URL", database_url);
    match std::env::var(NATS_ENV) {
        Ok(nats) => {
            put("MALL__EVENTS__URL", nats);
            put("MALL__EVENTS__NAMESPACE", cache_namespace.clone());
        }
        Err(_) => put("MALL__EVENTS__URL", format!("memory://{cache_namespace}")),
    }
    put("MALL__CACHE__NAMESPACE", cache_namespace);
    put(
        "MALL__NOTIFICATION__SMTP_URL",
        format!("file://{}", mail_dir.display()),
    );
    if let Ok(redis) = std::env::var(REDIS_ENV) {
        put("MALL__CACHE__URL", redis);
    }
    put("MALL__CATALOG__SEED_DEMO", "false".into());
    // Cheap password hashing: tests hash hundreds of passwords in debug builds.
    put("MALL__ACCOUNTS__ARGON2__MEMORY_KIB", "256".into());
    put("MALL__ACCOUNTS__ARGON2__ITERATIONS", "1".into());
    env
}

/// Marks the revocation copy in `source`'s cache namespace complete, as auth does at start.
/// For fleets (and instances beside them) that do not run auth in that namespace: services
/// fail closed on user tokens until a revocation epoch exists, and with no auth nothing can
/// have been revoked, so an empty copy is the true one.
async fn stand_in_for_auth(source: &Source) {
    let settings = config::load("test", config::Settings::defaults("test"), source)
        .unwrap_or_else(|e| panic!("test settings: {e}"));
    let cache = mall_common::cache::connect(&settings.cache)
        .await
        .unwrap_or_else(|e| panic!("test cache: {e}"));
    mall_common::auth::revocation::publish_epoch(cache.as_ref(), "test-fleet-without-auth")
        .await
        .unwrap_or_else(|e| panic!("revocation epoch: {e}"));
}

impl TestFleet {
    /// Starts `names` with test defaults.
    pub async fn start(names: &[&str]) -> TestFleet {
        Self::start_with(names, &[]).await
    }

    /// Starts `names` with test defaults plus `MALL__*` overrides.
    pub async fn start_with(names: &[&str], overrides: &[(&str, &str)]) -> TestFleet {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self::start_in(dir, names, overrides).await
    }

    /// Starts `names` with mutual TLS on (`tls.*`): a fresh development certificate set (see
    /// `mall certs`) in the fleet's temporary directory.
    pub async fn start_tls(names: &[&str]) -> TestFleet {
        Self::start_tls_with(names, &[]).await
    }

    /// [`TestFleet::start_tls`] plus `MALL__*` overrides.
    pub async fn start_tls_with(names: &[&str], more: &[(&str, &str)]) -> TestFleet {
        let dir = tempfile::tempdir().expect("temporary directory");
        let certs = dir.path().join("certs");
        mall::certs::generate(&certs, &mall::certs::names()).expect("generate certificates");
        let ca = certs.join("ca.pem").display().to_string();
        let cert = certs.join("{service}.pem").display().to_string();
        let key = certs.join("{service}.key").display().to_string();
        let overrides = [
            ("MALL__TLS__ENABLED", "true"),
            ("MALL__TLS__CA", ca.as_str()),
            ("MALL__TLS__CERT", cert.as_str()),
            ("MALL__TLS__KEY", key.as_str()),
        ];
        let overrides: Vec<(&str, &str)> = overrides.iter().chain(more).copied().collect();
        Self::start_in(dir, names, &overrides).await
    }

    /// The directory of a fleet started with [`TestFleet::start_tls`]'s certificates.
    pub fn certs_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("certs")
    }

    async fn start_in(
        dir: tempfile::TempDir,
        names: &[&str],
        overrides: &[(&str, &str)],
    ) -> TestFleet {
        crate::logs::init();
        let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
        let mut env = test_env(
            database_template(dir.path(), &run),
            format!("test-{run}"),
            &dir.path().join("mail"),
        );
        for (k, v) in overrides {
            env.insert(k.to_string(), (*v).to_string());
        }
        // Overrides may have replaced the template and namespace.
        let database_template = env["MALL__DATABASE__URL"].clone();
        let cache_namespace = env["MALL__CACHE__NAMESPACE"].clone();
        let events_url = env["MALL__EVENTS__URL"].clone();
        let events_namespace = env.get("MALL__EVENTS__NAMESPACE").cloned();
        let tls_env = env
            .iter()
            .filter(|(k, _)| k.starts_with("MALL__TLS__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let database_urls = names
            .iter()
            .map(|n| database_template.replace("{service}", n))
            .collect();
        let source = Source {
            file: None,
            env,
            ..Source::default()
        }
        // With MALL_CONFIG_CONSUL among the overrides, the config centre's layer.
        .read_centre(names)
        .await
        .unwrap_or_else(|e| panic!("test fleet: {e}"));
        if !names.contains(&"auth") {
            stand_in_for_auth(&source).await;
        }
        let fleet = Fleet::start(names, source)
            .await
            .unwrap_or_else(|e| panic!("test fleet failed to start: {e:#}"));
        TestFleet {
            fleet: Some(fleet),
            database_template,
            cache_namespace,
            events_url,
            events_namespace,
            tls_env,
            database_urls: Mutex::new(database_urls),
            _dir: dir,
        }
    }

    /// Starts more instances of `names` sharing this fleet's databases and cache, as replicas
    /// behind a balancer would; the replica leaves the databases to this fleet.
    pub async fn replica(&self, names: &[&str], overrides: &[(&str, &str)]) -> TestFleet {
        let mut all = vec![
            ("MALL__DATABASE__URL", self.database_template.as_str()),
            ("MALL__CACHE__NAMESPACE", self.cache_namespace.as_str()),
            ("MALL__EVENTS__URL", self.events_url.as_str()),
        ];
        if let Some(namespace) = &self.events_namespace {
            all.push(("MALL__EVENTS__NAMESPACE", namespace.as_str()));
        }
        all.extend_from_slice(overrides);
        let replica = Self::start_with(names, &all).await;
        replica.database_urls.lock().clear();
        replica
    }

    /// Settings for one more service instance the test builds itself beside this fleet (as
    /// checkout's tests build checkout with faults injected): the test defaults, `database_url`,
    /// a cache namespace of its own, and this fleet's services in static discovery.
    pub async fn source_beside(&self, database_url: &str) -> Source {
        let namespace = format!("test-beside-{}", uuid::Uuid::new_v4().simple());
        let mut env = test_env(
            database_url.to_string(),
            namespace,
            &self._dir.path().join("mail"),
        );
        // Beside this fleet: on its event bus.
        env.insert("MALL__EVENTS__URL".into(), self.events_url.clone());
        if let Some(namespace) = &self.events_namespace {
            env.insert("MALL__EVENTS__NAMESPACE".into(), namespace.clone());
        }
        env.extend(self.tls_env.clone());
        for (name, endpoints) in self.fleet().all_endpoints() {
            env.insert(
                format!("MALL__DISCOVERY__STATIC__{}", name.to_uppercase()),
                endpoints.grpc.to_string(),
            );
        }
        let source = Source {
            file: None,
            env,
            ..Source::default()
        };
        stand_in_for_auth(&source).await;
        source
    }

    /// A database URL for service `name` that this fleet does not run, on the fleet's backend
    /// (for an instance built with [`TestFleet::source_beside`]); dropped with the fleet's own.
    pub fn fresh_database(&self, name: &str) -> String {
        let url = self.database_url(name);
        self.database_urls.lock().push(url.clone());
        url
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

    /// A typed client for `name` calling as the service that calls `name`'s internal RPCs in
    /// the fleet ([`usual_caller`]): user for auth, checkout for the others.
    pub fn client<T: FromChannel>(&self, name: &str) -> T {
        self.client_from(usual_caller(name), name)
    }

    /// A typed client for `name` calling as the service `caller` (its service tokens, and in a
    /// [`TestFleet::start_tls`] fleet its certificate).
    pub fn client_from<T: FromChannel>(&self, caller: &str, name: &str) -> T {
        self.clients_as(caller)
            .client(service(name))
            .unwrap_or_else(|e: Status| panic!("client for {name}: {e}"))
    }

    /// A typed client for `name` that sends `token` as its bearer (over the
    /// [`TOOLS`](mall::certs::TOOLS) certificate in a [`TestFleet::start_tls`] fleet).
    pub fn client_as<T: FromChannel>(&self, name: &str, token: &str) -> T {
        self.clients_as(mall::certs::TOOLS)
            .client_as(service(name), token)
            .unwrap_or_else(|e: Status| panic!("client for {name}: {e}"))
    }

    /// A typed client for `name` that sends `token` as its bearer over the service `caller`'s
    /// connection (its certificate in a [`TestFleet::start_tls`] fleet).
    pub fn client_from_as<T: FromChannel>(&self, caller: &str, name: &str, token: &str) -> T {
        self.clients_as(caller)
            .client_as(service(name), token)
            .unwrap_or_else(|e: Status| panic!("client for {name}: {e}"))
    }

    fn clients_as(&self, caller: &str) -> Clients {
        self.fleet()
            .clients_as(caller)
            .unwrap_or_else(|e| panic!("clients calling as {caller}: {e:#}"))
    }

    /// A bare tonic channel to `name`: no client stack and no `authorization` metadata at all.
    pub async fn bare_channel(&self, name: &str) -> tonic::transport::Channel {
        let addr = self.endpoints(name).grpc;
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .expect("endpoint")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connect to {name}: {e}"))
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
                UserId::parse(ADMIN_USER_ID, "user_id").expect("admin id"),
                "test-admin",
                mall_common::auth::Role::Admin,
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
                UserId::parse(user_id, "user_id").expect("a positive user id"),
                &format!("user{user_id}"),
                mall_common::auth::Role::User,
                &sid,
            )
            .expect("sign user token")
            .0
    }

    /// Empties this fleet's cache namespace, as a Redis restart or `FLUSHALL` would (the
    /// in-process cache: every entry of the namespace); answers how many keys went.
    pub async fn wipe_cache(&self) -> u64 {
        let settings = mall_common::config::CacheSettings {
            url: std::env::var(REDIS_ENV).unwrap_or_else(|_| "memory://".into()),
            namespace: self.cache_namespace.clone(),
            ..Default::default()
        };
        let cache = mall_common::cache::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("test cache: {e}"));
        cache.clear().await.expect("clear the cache")
    }

    /// The `events.url` of this fleet's services (its own in-process bus unless overridden).
    pub fn events_url(&self) -> &str {
        &self.events_url
    }

    /// The event bus this fleet's services publish to (the `events.*` settings of `mall`'s
    /// defaults with this fleet's URL).
    pub async fn events(&self) -> std::sync::Arc<dyn mall_common::events::EventBus> {
        let mut settings = mall_common::config::EventsSettings::for_url(&self.events_url);
        if let Some(namespace) = &self.events_namespace {
            settings.namespace = namespace.clone();
        }
        mall_common::events::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("test fleet event bus: {e}"))
    }

    /// Where the fleet's notification service writes its mail (`.eml` files), unless a test
    /// pointed `notification.smtp_url` elsewhere.
    pub fn mail_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("mail")
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
        let urls = std::mem::take(&mut *self.database_urls.lock());
        for url in urls {
            let _ = mall_common::store::drop_database(&url).await;
        }
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        let urls: Vec<String> = std::mem::take(&mut *self.database_urls.lock())
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

/// The service that calls `target`'s internal RPCs in the fleet: user calls auth's account RPCs,
/// checkout the internal RPCs of every other service.
pub fn usual_caller(target: &str) -> &'static str {
    if target == ServiceName::Auth.as_str() {
        ServiceName::User.as_str()
    } else {
        ServiceName::Checkout.as_str()
    }
}

/// A typed client for `name` at `addr` (an instance the test started itself, outside any
/// fleet) sending `token`, with a 30 s request timeout for slow debug builds.
pub fn client_at<T: FromChannel>(name: &str, addr: SocketAddr, token: &str) -> T {
    let mut discovery = config::Settings::defaults("test").discovery;
    discovery
        .static_addrs
        .insert(name.into(), vec![addr.to_string()]);
    let mut client = config::Settings::defaults("test").client;
    client.request_timeout = Duration::from_secs(30);
    Clients::discover(&discovery, &client, None)
        .expect("clients")
        .client_as::<T>(service(name), token)
        .unwrap_or_else(|e| panic!("client for {name} at {addr}: {e}"))
}

/// The service a test names.
fn service(name: &str) -> ServiceName {
    name.parse()
        .unwrap_or_else(|e| panic!("{name} is not a service: {e}"))
}
