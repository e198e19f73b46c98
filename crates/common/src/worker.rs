//! Background work that runs beside a server: [`spawn_periodic`] runs a task on an interval
//! until the server shuts down. Every background loop of the fleet (checkout's recovery, order's
//! sweeper) uses it, so they all stop the same way.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::server::Shutdown;

/// Runs `tick` at once and then every `interval` until `shutdown` fires.
/// A tick in progress when it fires is finished; no new one starts. Ticks never overlap: a tick
/// that takes longer than `interval` delays the next.
pub fn spawn_periodic<F, Fut>(
    name: &'static str,
    interval: Duration,
    mut shutdown: Shutdown,
    mut tick: F,
) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.wait() => break,
                _ = timer.tick() => {}
            }
            if shutdown.is_started() {
                break;
            }
            tick().await;
        }
        tracing::debug!(worker = name, "stopped");
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::server::shutdown_pair;

    #[tokio::test(start_paused = true)]
    async fn runs_on_its_interval_and_stops_on_shutdown() {
        let (trigger, shutdown) = shutdown_pair();
        let ticks = Arc::new(AtomicU32::new(0));
        let counted = ticks.clone();
        let handle = spawn_periodic("test", Duration::from_secs(1), shutdown, move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 4, "at 0, 1, 2 and 3 s");
        trigger.fire();
        handle.await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 4, "no tick after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_server_is_gone() {
        let (trigger, shutdown) = shutdown_pair();
        let handle = spawn_periodic("test", Duration::from_secs(1), shutdown, || async {});
        drop(trigger);
        tokio::time::timeout(Duration::from_secs(2), handle)
            .await
            .expect("stopped")
            .unwrap();
    }
}
