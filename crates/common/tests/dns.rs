//! DNS discovery (`discovery.kind = dns`): `localhost` resolved through the system resolver to a
//! real gRPC server on port 0 that the clients then call; a name that stops resolving keeps the
//! last good instances (and counts the failures); a name that never resolves fails calls fast;
//! the settings as loaded from the environment. Loopback only, every wait bounded.

use mall_types::ServiceName;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use mall_common::client::{Channel, Clients};
use mall_common::config::{self, ConfigError, DiscoveryKind, Settings, Source};
use mall_common::discovery::Resolve;
use mall_common::discovery::dns::{self, DnsResolver, LookupFn};
use mall_common::platform::Platform;
use prometheus_client::registry::Registry;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const WAIT: Duration = Duration::from_secs(5);

struct Running {
    addr: SocketAddr,
    admin: SocketAddr,
    /// The server's own clients (calling as product).
    clients: Clients,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn stop(self) {
        self.stop.send(()).expect("server running");
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("stopped in time")
            .expect("join")
            .expect("serve ok");
    }
}

/// A product server on 127.0.0.1, port 0, itself on DNS discovery (registering announces
/// nothing; its clients look `localhost` up).
async fn start_server() -> Running {
    let mut s = Settings::defaults("product");
    s.server.host = [127, 0, 0, 1].into();
    s.server.port = 0;
    s.discovery.kind = DiscoveryKind::Dns;
    s.discovery.dns.name = "localhost".into();
    s.validate().expect("valid server settings");
    let platform = Platform::open(&s, None).await.expect("platform");
    let bound = platform.server(&s).bind().await.expect("bind");
    let addr = bound.grpc_addr;
    let admin = bound.admin_addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        admin,
        clients: platform.clients.clone(),
        stop,
        task,
    }
}

/// Client-side settings finding `product` as `name` on `port`, looked up every 100 ms.
fn dns_settings(name: &str, port: u16) -> Settings {
    let mut s = Settings::defaults("checkout");
    s.discovery.kind = DiscoveryKind::Dns;
    s.discovery.dns.name = name.into();
    s.discovery.dns.ports.insert("product".into(), port);
    s.discovery.dns.interval = Duration::from_millis(100);
    s.discovery.dns.timeout = Duration::from_secs(2);
    s.validate().expect("valid dns settings");
    s
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

async fn wait_watch(
    rx: &mut watch::Receiver<Option<Vec<String>>>,
    want: &[String],
) -> Result<(), Option<Vec<String>>> {
    let reached = matches!(
        tokio::time::timeout(WAIT, rx.wait_for(|v| v.as_deref() == Some(want))).await,
        Ok(Ok(_))
    );
    if reached {
        Ok(())
    } else {
        Err(rx.borrow().clone())
    }
}

fn metrics_text(clients: &Clients) -> String {
    let mut registry = Registry::default();
    clients.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    text
}

#[tokio::test]
async fn localhost_resolves_to_the_server_and_calls_reach_it() {
    let server = start_server().await;
    let port = server.addr.port();
    assert_eq!(
        dns::lookup("localhost", port, WAIT).await.expect("lookup"),
        vec![format!("127.0.0.1:{port}")]
    );

    let settings = dns_settings("localhost", port);
    let clients = Clients::discover(&settings.discovery, &settings.client, None).expect("clients");
    let mut client: HealthClient<Channel> = clients.client(ServiceName::Product).expect("client");
    // The first call waits for the first lookup instead of failing.
    client.check(check()).await.expect("reached through dns");
    assert_eq!(
        clients.channel("product").expect("channel").addresses(),
        vec![format!("127.0.0.1:{port}")]
    );
    let text = metrics_text(&clients);
    assert!(
        text.contains("discovery_dns_instances{target=\"product\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("discovery_dns_lookup_failures_total{target=\"product\"} 0"),
        "{text}"
    );

    // A server on DNS discovery lists its resolver's metrics on /metrics: once its own clients
    // looked auth up (`localhost`, port 8000), the set has one address.
    server.clients.channel("auth").expect("channel to auth");
    let want = "discovery_dns_instances{target=\"auth\"} 1";
    let deadline = Instant::now() + WAIT;
    loop {
        let scraped = mall_common::http::client()
            .build()
            .unwrap()
            .get(format!("http://{}/metrics", server.admin))
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        if scraped.contains(want) {
            break;
        }
        assert!(Instant::now() < deadline, "no {want} in {scraped}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_name_that_stops_resolving_keeps_the_last_instances() {
    const REAL: u8 = 0;
    const FAILING: u8 = 1;
    const MOVED: u8 = 2;
    let server = start_server().await;
    let port = server.addr.port();
    let settings = dns_settings("localhost", port);

    // The system resolver, until the name stops resolving, then two other addresses.
    let mode = Arc::new(AtomicU8::new(REAL));
    let lookups = mode.clone();
    let lookup: LookupFn = Arc::new(move |name: String, port, timeout| {
        let mode = lookups.load(Ordering::SeqCst);
        Box::pin(async move {
            match mode {
                REAL => dns::lookup(&name, port, timeout).await,
                FAILING => anyhow::bail!("looking up {name}: Name or service not known"),
                _ => Ok(vec!["127.0.0.2:7001".into(), "127.0.0.3:7001".into()]),
            }
        })
    });
    let resolver = DnsResolver::with_lookup(&settings.discovery.dns, lookup);
    let clients = Clients::new(Arc::new(resolver.clone()), &settings.client, None);
    let mut client: HealthClient<Channel> = clients.client(ServiceName::Product).expect("client");
    client.check(check()).await.expect("reached through dns");

    let mut rx = resolver.resolve("product").expect("watch");
    let first = vec![format!("127.0.0.1:{port}")];
    wait_watch(&mut rx, &first).await.expect("first answer");

    mode.store(FAILING, Ordering::SeqCst);
    let before = resolver.failures("product");
    let deadline = Instant::now() + WAIT;
    while resolver.failures("product") < before + 3 {
        assert!(Instant::now() < deadline, "the failing lookups never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        rx.borrow().as_deref(),
        Some(first.as_slice()),
        "set dropped"
    );
    assert_eq!(
        clients.channel("product").expect("channel").addresses(),
        first
    );
    client
        .check(check())
        .await
        .expect("the kept instance still answers");
    let text = metrics_text(&clients);
    assert!(
        !text.contains("discovery_dns_lookup_failures_total{target=\"product\"} 0"),
        "{text}"
    );

    // Resolving again with other addresses replaces the set.
    mode.store(MOVED, Ordering::SeqCst);
    let moved = vec!["127.0.0.2:7001".to_string(), "127.0.0.3:7001".to_string()];
    wait_watch(&mut rx, &moved).await.expect("moved");
    let deadline = Instant::now() + WAIT;
    while clients.channel("product").expect("channel").addresses() != moved {
        assert!(
            Instant::now() < deadline,
            "the balancer never took the new set"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_name_that_never_resolves_fails_calls_fast() {
    // `.invalid` never resolves (RFC 2606).
    let settings = dns_settings("{service}.mall-test.invalid", 8003);
    let resolver = DnsResolver::new(&settings.discovery.dns);
    let mut rx = resolver.resolve("product").expect("watch");
    wait_watch(&mut rx, &[])
        .await
        .expect("an empty first answer");
    assert!(resolver.failures("product") >= 1);

    let clients = Clients::new(Arc::new(resolver), &settings.client, None);
    let mut client: HealthClient<Channel> = clients.client(ServiceName::Product).expect("client");
    let started = Instant::now();
    let err = client.check(check()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // A service with neither a configured nor a well-known port cannot be resolved at all.
    let mut s = settings.discovery.dns.clone();
    s.ports.clear();
    let err = DnsResolver::new(&s).resolve("search").unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(
        err.message().contains("discovery.dns.ports.search"),
        "{err:?}"
    );
}

fn load_with(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(
        "checkout",
        Settings::defaults("checkout"),
        &Source {
            file: None,
            env,
            ..Source::default()
        },
    )
}

#[test]
fn dns_settings_load_from_the_environment_and_are_validated() {
    let s = load_with(&[]).expect("defaults");
    assert_eq!(s.discovery.dns.name, config::DEFAULT_DNS_NAME);
    assert_eq!(s.discovery.dns.interval, config::DEFAULT_DNS_INTERVAL);
    assert_eq!(s.discovery.dns.port_of("payment"), Some(8005));

    let s = load_with(&[
        ("MALL__DISCOVERY__KIND", "dns"),
        (
            "MALL__DISCOVERY__DNS__NAME",
            "tm-{service}.{namespace}.svc.cluster.local",
        ),
        ("MALL__DISCOVERY__DNS__NAMESPACE", "shop"),
        ("MALL__DISCOVERY__DNS__PORTS__CART", "9443"),
        ("MALL__DISCOVERY__DNS__INTERVAL", "2s"),
    ])
    .expect("dns settings");
    assert_eq!(s.discovery.kind, DiscoveryKind::Dns);
    assert_eq!(
        s.discovery.dns.name_of("cart"),
        "tm-cart.shop.svc.cluster.local"
    );
    assert_eq!(s.discovery.dns.port_of("cart"), Some(9443));
    assert_eq!(s.discovery.dns.port_of("order"), Some(8004));
    assert_eq!(s.discovery.dns.interval, Duration::from_secs(2));

    let err = load_with(&[
        ("MALL__DISCOVERY__KIND", "dns"),
        ("MALL__DISCOVERY__DNS__NAME", "{service}.{namespace}.svc"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("discovery.dns.namespace"), "{err}");
    let err = load_with(&[("MALL__DISCOVERY__DNS__PORTS__CART", "x")]).unwrap_err();
    assert!(err.to_string().contains("discovery.dns.ports"), "{err}");
    let err = load_with(&[("MALL__DISCOVERY__DNS__NAMES", "x")]).unwrap_err();
    assert!(err.to_string().contains("discovery.dns.names"), "{err}");
}
