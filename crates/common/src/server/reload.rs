//! The config centre's watch beside a running server (see [`crate::config::centre`]): every
//! change of the service's key is loaded, refused (the running settings stay) or applied —
//! the log filter and the admission limits here, the rest by the hooks the service added
//! ([`crate::server::ServerBuilder::on_reload`]; the platform's add the clients' settings and
//! the feature flags), other keys logged as needing a restart.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::Shutdown;
use super::layers::load_shed::{Admission, LoadShedLayer};
use crate::config::centre::{Loaded, Outcome, Reloader, WATCH_WAIT};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// `config_reloads_total{result}`: `applied`, `rejected`, `restart_needed`.
#[derive(Clone, Default)]
pub struct ReloadMetrics(Family<ResultLabels, Counter>);

impl ReloadMetrics {
    /// Registers the counter in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Changes of the service's config-centre key, by what became of them",
            reloads.clone(),
        );
        ReloadMetrics(reloads)
    }

    fn count(&self, result: &'static str) {
        self.0.get_or_create(&ResultLabels { result }).inc();
    }
}

/// The admission settings in `loaded`.
pub fn admission(server: &crate::config::ServerSettings) -> Admission {
    Admission {
        adaptive: server.adaptive_concurrency,
        min: server.min_concurrent_rpcs.min(server.max_concurrent_rpcs),
        max: server.max_concurrent_rpcs,
        internal_reserve_percent: server.internal_reserve_percent,
        max_queued: server.max_queued_rpcs,
        queue_timeout: server.queue_timeout,
    }
}

fn apply(loaded: &Loaded, admission_layer: &LoadShedLayer) {
    admission_layer.reconfigure(admission(&loaded.server));
    if let Err(e) = crate::telemetry::set_log_filter(&loaded.log_filter) {
        tracing::warn!(error = %e, "telemetry.log_filter not applied");
    }
}

/// Starts [`watch`] beside the server whose admission layer is `admission_layer`, until it
/// shuts down.
pub(super) fn spawn(
    reloader: Reloader,
    admission_layer: &LoadShedLayer,
    metrics: ReloadMetrics,
    trigger: &super::ShutdownTrigger,
) {
    tokio::spawn(watch(
        reloader,
        admission_layer.clone(),
        metrics,
        trigger.subscribe(),
    ));
}

/// Watches `reloader`'s key until `shutdown` (see the module docs).
pub async fn watch(
    mut reloader: Reloader,
    limiter: LoadShedLayer,
    metrics: ReloadMetrics,
    mut shutdown: Shutdown,
) {
    let key = reloader.centre.key(&reloader.service);
    let mut last = reloader.source.kv.get(&reloader.service).cloned();
    let mut index = None;
    let mut failures = 0u32;
    loop {
        let read = tokio::select! {
            () = shutdown.wait() => break,
            r = reloader.centre.read(&reloader.service, index, WATCH_WAIT) => r,
        };
        let (text, at) = match read {
            Ok(answer) => {
                failures = 0;
                answer
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let delay = crate::backoff::backoff(
                    failures,
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                tracing::warn!(%key, error = %e, ?delay, "config centre unreachable; the running settings stay");
                tokio::select! {
                    () = shutdown.wait() => break,
                    () = tokio::time::sleep(delay) => {}
                }
                continue;
            }
        };
        // Consul's index may go backwards (a restarted agent): start over from 0.
        index = Some(match index {
            Some(old) if at < old => 0,
            _ => at,
        });
        if text == last {
            continue;
        }
        last = text.clone();
        match reloader.take(text) {
            (Outcome::Rejected(error), _) => {
                metrics.count("rejected");
                tracing::error!(%key, %error, "config centre: change refused; the running settings stay");
            }
            (Outcome::Loaded { applied, restart }, loaded) => {
                if let Some(loaded) = &loaded {
                    apply(loaded, &limiter);
                    reloader.run_hooks(loaded);
                }
                metrics.count("applied");
                if !applied.is_empty() {
                    tracing::info!(%key, keys = ?applied, "config centre: applied");
                }
                if !restart.is_empty() {
                    metrics.count("restart_needed");
                    tracing::warn!(%key, keys = ?restart, "config centre: these settings take effect at the next restart");
                }
            }
        }
    }
}
