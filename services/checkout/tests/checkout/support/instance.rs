//! A checkout [`Instance`] built by the test itself, beside a [`TestFleet`] running the services
//! checkout calls, so that it can inject [`Faults`], be killed and replaced, or run twice on one
//! database.

use std::net::SocketAddr;

use mall_common::config;
use mall_testing::{Checkout, TestFleet, client_at};
use tokio::sync::oneshot;

use super::Faults;

/// The services checkout calls.
pub async fn fleet() -> TestFleet {
    TestFleet::start(&["auth", "product", "payment", "cart", "order"]).await
}

/// A checkout instance on port 0.
pub struct Instance {
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its admin address (`/metrics`).
    pub admin_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    /// Builds checkout on `db_url` (e.g. [`TestFleet::fresh_database`]) calling `fleet`'s
    /// services through `faults`, with short test timings; `overrides` (`MALL__*` keys) replace
    /// any of them, e.g. where a dependency is found.
    pub async fn start(
        fleet: &TestFleet,
        db_url: &str,
        faults: Faults,
        overrides: &[(&str, &str)],
    ) -> Instance {
        let mut source = fleet.source_beside(db_url).await;
        let timings = [
            ("MALL__SERVER__DRAIN_DELAY", "0s"),
            ("MALL__SERVER__SHUTDOWN_GRACE", "2s"),
            ("MALL__CHECKOUT__STEP_TIMEOUT", "2s"),
            ("MALL__CHECKOUT__BUDGET", "8s"),
            ("MALL__CHECKOUT__RECOVERY_INTERVAL", "100ms"),
            ("MALL__CHECKOUT__RETRY_DELAY", "100ms"),
        ];
        for (k, v) in timings.iter().chain(overrides) {
            source.env.insert(k.to_string(), v.to_string());
        }
        let settings = config::load(checkout::NAME, checkout::default_settings(), &source)
            .expect("checkout settings");
        let bound = checkout::build_with(settings, faults.wrap())
            .await
            .expect("start checkout");
        let (addr, admin_addr) = (bound.grpc_addr, bound.admin_addr);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        Instance {
            addr,
            admin_addr,
            stop: Some(stop),
            task,
        }
    }

    /// `user_id` checking out through this instance, with their own token.
    pub fn checkout(&self, fleet: &TestFleet, user_id: u64) -> Checkout {
        let client = client_at("checkout", self.addr, &fleet.user_token(user_id));
        Checkout::new(client, user_id)
    }

    /// How many checkouts this instance counted with `outcome` in `checkout_outcomes_total`.
    pub async fn outcomes(&self, outcome: &str) -> u64 {
        let (_, body) = mall_testing::http_get(self.admin_addr, "/metrics").await;
        let series = format!("checkout_outcomes_total{{outcome=\"{outcome}\"}} ");
        body.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    }

    /// Stops the instance and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
