//! The recovery worker: on start and every `checkout.recovery_interval` it claims running
//! sagas whose lease expired (one conditional `UPDATE` each, so one instance at a time drives a
//! saga, across instances) and drives them to an end state with [`Engine::resume`]: a saga left
//! where the forward path wrote it (`placing_order`) has its order found by the saga id and its
//! charge by payment's void — charged, the order is marked paid and the cart emptied; not
//! charged (the card is never stored, so it cannot be charged now), it is compensated; after a
//! recorded charge the order is marked paid or the charge refunded; `cart_pending` sagas get
//! their cart emptied.

use std::sync::Arc;
use std::time::Duration;

use mall_common::server::Shutdown;
use mall_common::worker::spawn_periodic;

use crate::error::Error;
use crate::saga::Engine;
use crate::store::now_ms;

/// Most sagas one pass claims.
pub const DEFAULT_RECOVERY_BATCH: i64 = 50;

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sagas this instance claimed and drove.
    pub resumed: Vec<String>,
    /// Sagas whose driving failed (storage, lost lease); they are retried later.
    pub failed: usize,
}

/// Claims and resumes open sagas.
#[derive(Clone)]
pub struct Recovery {
    engine: Engine,
    batch: i64,
}

impl Recovery {
    /// A worker driving sagas with `engine`.
    pub fn new(engine: Engine) -> Self {
        Recovery {
            engine,
            batch: DEFAULT_RECOVERY_BATCH,
        }
    }

    /// One pass now.
    pub async fn run_once(&self) -> Result<RecoveryReport, Error> {
        let mut report = RecoveryReport::default();
        let claimed = self
            .engine
            .sagas()
            .claim(
                self.engine.owner(),
                now_ms(),
                self.engine.lease_until(),
                self.batch,
            )
            .await?;
        for saga in claimed {
            let id = saga.id.clone();
            match self.engine.resume(saga).await {
                Ok(()) => report.resumed.push(id),
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(saga = %id, error = %e, "resuming saga failed; will retry");
                }
            }
        }
        let open = self.engine.sagas().count_open().await?;
        self.engine.metrics().open_sagas(open);
        Ok(report)
    }

    /// Runs a pass now and then every `interval` in a background task, until the server
    /// shuts down.
    pub fn spawn(self, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let recovery = Arc::new(self);
        spawn_periodic("checkout recovery", interval, shutdown, move || {
            let recovery = recovery.clone();
            async move {
                match recovery.run_once().await {
                    Ok(report) if !report.resumed.is_empty() || report.failed > 0 => {
                        tracing::info!(
                            resumed = report.resumed.len(),
                            failed = report.failed,
                            "recovery pass"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "recovery pass failed"),
                }
            }
        })
    }
}
