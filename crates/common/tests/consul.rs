//! Consul discovery against the stateful fake agent of `mall-testkit`: registration with an
//! agent-run gRPC check, deregistration on graceful shutdown, a killed instance turning critical,
//! the keep-alive, and the resolver's blocking watch across an agent outage. Loopback only,
//! every wait bounded.

use mall_types::ServiceName;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mall_common::config::{self, ConfigError, Settings, Source};
use mall_common::discovery::consul::{ConsulRegistry, ConsulResolver};
use mall_common::platform::Platform;
use mall_testkit::consul::{CheckStatus, FakeConsul};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(5);

fn consul_settings(fake: &FakeConsul) -> Settings {
    let mut s = Settings::defaults("product");
    s.server.host = [127, 0, 0, 1].into();
    s.server.port = 0;
    s.discovery.kind = config::DiscoveryKind::Consul;
    s.discovery.consul.address = fake.url();
    s.discovery.consul.check_interval = Duration::from_millis(100);
    s.discovery.consul.check_timeout = Duration::from_millis(500);
    s.discovery.consul.deregister_critical_after = Duration::from_secs(1);
    s.discovery.consul.wait = Duration::from_secs(2);
    s.validate().expect("valid test settings");
    s
}

struct Running {
    addr: SocketAddr,
    id: String,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_server(settings: &Settings) -> Running {
    let platform = Platform::open(settings, None).await.expect("platform");
    let bound = platform.server(settings).bind().await.expect("bind");
    let addr = bound.grpc_addr;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(bound.serve(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        id: ConsulRegistry::instance_id("product", "127.0.0.1", addr.port()),
        stop,
        task,
    }
}

async fn wait_watch(
    rx: &mut watch::Receiver<Option<Vec<String>>>,
    timeout: Duration,
    want: &[String],
) -> Result<(), Vec<String>> {
    let mut want = want.to_vec();
    want.sort();
    let reached = matches!(
        tokio::time::timeout(timeout, rx.wait_for(|v| v.as_ref() == Some(&want))).await,
        Ok(Ok(_))
    );
    if reached {
        Ok(())
    } else {
        Err(rx.borrow().clone().unwrap_or_default())
    }
}

#[tokio::test]
async fn registers_with_passing_grpc_check_and_deregisters_on_graceful_shutdown() {
    let fake = FakeConsul::start().await;
    let settings = consul_settings(&fake);
    let server = start_server(&settings).await;
    let id = server.id.clone();

    assert!(
        fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Passing))
            .await,
        "never passing: {:?}",
        fake.service_ids()
    );
    let reg = fake.registration(&id).expect("registered");
    assert_eq!(reg["Name"], "product");
    assert_eq!(reg["Address"], "127.0.0.1");
    assert_eq!(reg["Port"], server.addr.port());
    assert_eq!(reg["Tags"], serde_json::json!(["mall"]));
    assert_eq!(reg["Meta"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(reg["Meta"]["admin_port"].as_str().is_some());
    assert_eq!(
        reg["Check"]["GRPC"],
        format!("127.0.0.1:{}", server.addr.port())
    );
    assert_eq!(reg["Check"]["Interval"], "100ms");
    assert_eq!(reg["Check"]["Timeout"], "500ms");
    assert_eq!(reg["Check"]["DeregisterCriticalServiceAfter"], "1000ms");

    // Graceful shutdown deregisters before draining.
    server.stop.send(()).expect("server running");
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("stopped in time")
        .expect("join")
        .expect("serve ok");
    assert_eq!(fake.status(&id), None);
    assert!(fake.service_ids().is_empty());
}

#[tokio::test]
async fn killed_instance_turns_critical_leaves_passing_and_is_reaped() {
    let fake = FakeConsul::start().await;
    let settings = consul_settings(&fake);
    let resolver = ConsulResolver::new(&settings.discovery.consul).expect("resolver");
    let mut rx = resolver.watch("product");

    let server = start_server(&settings).await;
    let id = server.id.clone();
    let addr = format!("127.0.0.1:{}", server.addr.port());
    wait_watch(&mut rx, WAIT, std::slice::from_ref(&addr))
        .await
        .expect("instance passing");

    // Killed, not drained: no deregistration happens.
    server.task.abort();
    let _ = server.task.await;
    assert!(
        fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Critical))
            .await,
        "never critical"
    );
    assert!(fake.service_ids().contains(&id), "deregistered too early");
    wait_watch(&mut rx, WAIT, &[])
        .await
        .expect("dropped out of passing");
    // DeregisterCriticalServiceAfter = 1s: the agent reaps it.
    assert!(
        fake.wait_until(WAIT, |f| f.status(&id).is_none()).await,
        "never reaped"
    );
}

#[tokio::test]
async fn keep_alive_registers_again_when_the_agent_forgets() {
    let fake = FakeConsul::start().await;
    let settings = consul_settings(&fake);
    let server = start_server(&settings).await;
    let id = server.id.clone();
    assert!(
        fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Passing))
            .await
    );

    fake.forget(&id);
    assert_eq!(fake.status(&id), None);
    assert!(
        fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Passing))
            .await,
        "not registered again"
    );

    server.stop.send(()).expect("server running");
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("stopped in time")
        .expect("join")
        .expect("serve ok");
    assert!(fake.service_ids().is_empty());
}

#[tokio::test]
async fn resolver_sees_new_instances_and_keeps_the_last_set_during_an_outage() {
    let mut fake = FakeConsul::start().await;
    let settings = consul_settings(&fake);
    let resolver = ConsulResolver::new(&settings.discovery.consul).expect("resolver");
    let mut rx = resolver.watch("product");

    let a = start_server(&settings).await;
    let a_addr = format!("127.0.0.1:{}", a.addr.port());
    wait_watch(&mut rx, WAIT, std::slice::from_ref(&a_addr))
        .await
        .expect("first instance");

    // A new instance arrives within one watch round (the blocking query returns on the change,
    // long before its 2 s wait), after its first passing check.
    let b = start_server(&settings).await;
    let b_addr = format!("127.0.0.1:{}", b.addr.port());
    let started = Instant::now();
    wait_watch(
        &mut rx,
        Duration::from_secs(2),
        &[a_addr.clone(), b_addr.clone()],
    )
    .await
    .expect("second instance");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        started.elapsed()
    );

    // Outage: the resolver keeps the last good set.
    fake.stop().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut both = vec![a_addr.clone(), b_addr.clone()];
    both.sort();
    assert_eq!(*rx.borrow(), Some(both));

    // Back: changes flow again (b drains and deregisters).
    fake.restart().await;
    b.stop.send(()).expect("b running");
    tokio::time::timeout(WAIT, b.task)
        .await
        .expect("b stopped in time")
        .expect("join")
        .expect("serve ok");
    wait_watch(&mut rx, WAIT, std::slice::from_ref(&a_addr))
        .await
        .expect("resumed after restart");

    a.stop.send(()).expect("a running");
    let _ = tokio::time::timeout(WAIT, a.task).await;
}

fn load_with(env: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load(
        "product",
        Settings::defaults("product"),
        &Source {
            file: None,
            env,
            ..Source::default()
        },
    )
}

#[test]
fn discovery_kind_and_consul_settings_are_validated() {
    let s = load_with(&[]).expect("defaults");
    assert_eq!(s.discovery.kind, config::DiscoveryKind::Static);
    assert_eq!(s.discovery.consul.address, config::DEFAULT_CONSUL_ADDRESS);
    assert_eq!(
        s.discovery.consul.check_interval,
        config::DEFAULT_CONSUL_CHECK_INTERVAL
    );

    let s = load_with(&[
        ("MALL__DISCOVERY__KIND", "consul"),
        ("MALL__DISCOVERY__CONSUL__ADDRESS", "http://10.0.0.5:8500"),
        ("MALL__DISCOVERY__CONSUL__CHECK_INTERVAL", "200ms"),
        (
            "MALL__DISCOVERY__CONSUL__ADVERTISE_HOST",
            "product.internal",
        ),
    ])
    .expect("consul settings");
    assert_eq!(s.discovery.kind, config::DiscoveryKind::Consul);
    assert_eq!(s.discovery.consul.address, "http://10.0.0.5:8500");
    assert_eq!(
        s.discovery.consul.check_interval,
        Duration::from_millis(200)
    );
    assert_eq!(s.discovery.consul.advertise_host, "product.internal");
    assert_eq!(s.discovery.consul.wait, config::DEFAULT_CONSUL_WAIT);

    let err = load_with(&[("MALL__DISCOVERY__KIND", "etcd")]).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("discovery.kind"), "{msg}");
    assert!(
        msg.contains("`static`") && msg.contains("`consul`"),
        "{msg}"
    );

    let err = load_with(&[
        ("MALL__DISCOVERY__KIND", "consul"),
        ("MALL__DISCOVERY__CONSUL__ADDRESS", "127.0.0.1:8500"),
    ])
    .unwrap_err();
    assert!(
        err.to_string().contains("discovery.consul.address"),
        "{err}"
    );

    let err = load_with(&[
        ("MALL__DISCOVERY__KIND", "consul"),
        ("MALL__DISCOVERY__CONSUL__WAIT", "0s"),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("discovery.consul.wait"), "{err}");
}

#[tokio::test]
async fn consul_client_fails_fast_without_instances_and_follows_registrations() {
    use mall_common::client::{Channel, Clients};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let fake = FakeConsul::start().await;
    let settings = consul_settings(&fake);
    let clients = Clients::discover(&settings.discovery, &settings.client, None).expect("clients");
    let mut client: HealthClient<Channel> = clients.client(ServiceName::Product).expect("client");
    let check = HealthCheckRequest {
        service: String::new(),
    };

    // No instance: UNAVAILABLE at once, never a hang.
    let started = Instant::now();
    let err = client.check(check.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );

    // An instance registers and passes: the same client reaches it, without a restart.
    let server = start_server(&settings).await;
    let deadline = Instant::now() + WAIT;
    loop {
        match client.check(check.clone()).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => {
                assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("never reached the new instance: {e:?}"),
        }
    }
    let channel = clients.channel("product").expect("channel");
    assert_eq!(
        channel.addresses(),
        vec![format!("127.0.0.1:{}", server.addr.port())]
    );

    // It deregisters on shutdown: the client is back to failing fast.
    server.stop.send(()).expect("server running");
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("stopped in time")
        .expect("join")
        .expect("serve ok");
    let deadline = Instant::now() + WAIT;
    while !channel.addresses().is_empty() {
        assert!(Instant::now() < deadline, "instance never removed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let err = client.check(check).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn the_first_call_of_a_new_client_waits_for_the_first_lookup() {
    use mall_common::client::{Channel, Clients};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let fake = FakeConsul::start().await;
    let settings = consul_settings(&fake);
    let server = start_server(&settings).await;
    let id = server.id.clone();
    assert!(
        fake.wait_until(WAIT, |f| f.status(&id) == Some(CheckStatus::Passing))
            .await,
        "never passing"
    );
    // A service that just started calls a dependency that is up: its very first call must not
    // fail because Consul has not been asked yet.
    for _ in 0..20 {
        let clients =
            Clients::discover(&settings.discovery, &settings.client, None).expect("clients");
        let mut client: HealthClient<Channel> =
            clients.client(ServiceName::Product).expect("client");
        client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("the first call finds the instance");
    }
    server.stop.send(()).expect("server running");
    let _ = tokio::time::timeout(WAIT, server.task).await;
}
