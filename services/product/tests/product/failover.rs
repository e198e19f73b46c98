//! Failover across real `product` processes found through Consul (the fake agent of
//! `mall-testkit`): one of three instances is killed (SIGKILL, no deregistration) in the middle
//! of a stream of 1,000 idempotent calls; no call fails, and the resolver drops the dead
//! instance once the agent's gRPC check sees it down. A SIGTERM deregisters an instance before
//! it exits. Loopback only, every wait bounded.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mall_common::client::{Channel, Clients};
use mall_common::config::Settings;
use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_testing::KillOnDrop;
use mall_testkit::consul::{CheckStatus, FakeConsul};

const CALLS: usize = 1_000;
const KILL_AFTER: usize = 300;
const CALLERS: usize = 4;
const CHECK_INTERVAL_MS: u64 = 200;
const WAIT: Duration = Duration::from_secs(20);

fn start_product(db_url: &str, consul: &str) -> KillOnDrop {
    let child = Command::new(env!("CARGO_BIN_EXE_product"))
        .env_remove("MALL_CONFIG")
        .env("MALL__SERVER__HOST", "127.0.0.1")
        .env("MALL__SERVER__PORT", "0")
        .env("MALL__SERVER__ADMIN_PORT", "0")
        .env("MALL__DATABASE__URL", db_url)
        .env("MALL__CATALOG__SEED_DEMO", "true")
        .env("MALL__TELEMETRY__LOG_FORMAT", "compact")
        .env("MALL__DISCOVERY__KIND", "consul")
        .env("MALL__DISCOVERY__CONSUL__ADDRESS", consul)
        .env(
            "MALL__DISCOVERY__CONSUL__CHECK_INTERVAL",
            format!("{CHECK_INTERVAL_MS}ms"),
        )
        .env("MALL__DISCOVERY__CONSUL__CHECK_TIMEOUT", "200ms")
        .stdout(Stdio::null())
        .spawn()
        .expect("start the product binary");
    KillOnDrop(child)
}

/// Registered instance ids that are passing.
fn passing(fake: &FakeConsul) -> BTreeSet<String> {
    fake.service_ids()
        .into_iter()
        .filter(|id| fake.status(id) == Some(CheckStatus::Passing))
        .collect()
}

#[tokio::test]
async fn killing_one_of_three_instances_mid_stream_fails_no_call() {
    let fake = FakeConsul::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("product.db").display()
    );

    // Three instances, started one after another (the first migrates and seeds the catalog).
    let mut instances = Vec::new();
    for n in 1..=3 {
        let known = passing(&fake);
        let child = start_product(&db_url, &fake.url());
        assert!(
            fake.wait_until(WAIT, |f| passing(f).len() == n).await,
            "instance {n} never passed its check: {:?}",
            fake.service_ids()
        );
        let id = passing(&fake)
            .difference(&known)
            .next()
            .cloned()
            .expect("a new instance");
        let reg = fake.registration(&id).expect("registration");
        let addr = format!("127.0.0.1:{}", reg["Port"]);
        instances.push((child, addr));
    }

    let mut settings = Settings::defaults("loadtest");
    settings.discovery.kind = mall_common::config::DiscoveryKind::Consul;
    settings.discovery.consul.address = fake.url();
    settings.discovery.consul.wait = Duration::from_secs(2);
    let clients = Clients::discover(&settings.discovery, &settings.client, None).expect("clients");
    let channel = clients.channel("product").expect("channel");
    let deadline = Instant::now() + WAIT;
    while channel.addresses().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "client never saw three instances"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client = ProductCatalogServiceClient::new(channel.clone());

    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let left = Arc::new(AtomicUsize::new(CALLS));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let mut client: ProductCatalogServiceClient<Channel> = client.clone();
            let (done, failed, left) = (done.clone(), failed.clone(), left.clone());
            tokio::spawn(async move {
                while left
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    let req = pb::ListProductsReq {
                        page_size: 5,
                        ..Default::default()
                    };
                    match client.list_products(req).await {
                        Ok(resp) => assert!(!resp.into_inner().products.is_empty()),
                        Err(e) => {
                            eprintln!("failed call: {e:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // Kill the first instance once the stream is well under way.
    while done.load(Ordering::Relaxed) < KILL_AFTER {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (mut victim, victim_addr) = instances.remove(0);
    victim.0.kill().expect("kill");
    let killed_at = Instant::now();
    let _ = victim.0.wait();
    let watcher = {
        let channel = channel.clone();
        let victim_addr = victim_addr.clone();
        tokio::spawn(async move {
            while channel.addresses().contains(&victim_addr) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            killed_at.elapsed()
        })
    };

    for caller in callers {
        caller.await.expect("caller");
    }
    assert_eq!(done.load(Ordering::Relaxed), CALLS);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "calls failed over the kill"
    );

    // The agent's check fails within an interval (plus its timeout), the blocking query
    // answers at once, and the client drops the instance.
    let dropped_after = tokio::time::timeout(WAIT, watcher)
        .await
        .expect("the dead instance was never dropped")
        .expect("watcher");
    eprintln!("dead instance dropped {dropped_after:?} after the kill");
    assert!(
        dropped_after < Duration::from_millis(CHECK_INTERVAL_MS * 5),
        "dropped only after {dropped_after:?}"
    );
    let mut left: Vec<String> = instances.iter().map(|(_, a)| a.clone()).collect();
    left.sort();
    let mut seen = channel.addresses();
    seen.sort();
    assert_eq!(seen, left);
}

#[tokio::test]
async fn sigterm_deregisters_the_instance_before_it_exits() {
    let fake = FakeConsul::start().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("product.db").display()
    );
    let mut child = start_product(&db_url, &fake.url());
    assert!(
        fake.wait_until(WAIT, |f| passing(f).len() == 1).await,
        "never passed its check: {:?}",
        fake.service_ids()
    );
    let terminated = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(terminated.success());
    assert!(
        fake.wait_until(WAIT, |f| f.service_ids().is_empty()).await,
        "still registered after SIGTERM: {:?}",
        fake.service_ids()
    );
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
}
