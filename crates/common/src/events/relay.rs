//! The outbox relay: publishes unsent outbox rows to the [`EventBus`] in row order and marks
//! them sent.
//!
//! - **One publisher at a time.** Each round first takes or renews the `outbox_lease` row for
//!   `events.lease_ttl`; only the holder reads and publishes, so two instances of a service
//!   never publish concurrently, and one aggregate's events (rows in sequence order) go out
//!   in order. The holder stops publishing well before its lease could lapse (publishes are
//!   bounded by `events.publish_timeout`, which is shorter than the lease), so a successor
//!   never overlaps it. Clocks of the instances must agree to well under the lease.
//! - **Head-of-line on failure.** A publish that fails `events.publish_attempts` times (with
//!   backoff) ends the round there: nothing after it is published before it, so a broker
//!   outage delays events and reorders none. Later rounds back off exponentially (up to
//!   [`MAX_ROUND_BACKOFF`]) and try again; nothing is ever dropped.
//! - **At least once.** A crash between publish and `sent_at` publishes again after restart;
//!   the same `event_id` is deduped by the broker (JetStream's window) or the consumer.
//! - **Retention.** Sent rows older than `events.retention` are pruned every
//!   [`PRUNE_EVERY`], except each aggregate's last row, which holds its sequence.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{EventBus, Outbox, OutboxRow, now_unix_ms};
use crate::config::EventsSettings;
use crate::server::Shutdown;
use crate::store::Database;

/// The longest pause between failing rounds.
pub const MAX_ROUND_BACKOFF: Duration = Duration::from_secs(30);
/// How often sent rows past the retention are deleted.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);
const PUBLISH_RETRY_BASE: Duration = Duration::from_millis(50);
const PUBLISH_RETRY_CAP: Duration = Duration::from_secs(1);

/// The relay's metrics (register them with [`Relay::register_metrics`]).
#[derive(Clone, Default)]
pub struct RelayMetrics {
    outbox_pending: Gauge,
    outbox_lag_seconds: Gauge<f64, AtomicU64>,
    events_published: Counter,
    events_publish_failures: Counter,
}

impl RelayMetrics {
    /// Registers them in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "outbox_pending",
            "Outbox rows not yet published",
            self.outbox_pending.clone(),
        );
        registry.register(
            "outbox_lag_seconds",
            "Age of the oldest unpublished outbox row (0 when none)",
            self.outbox_lag_seconds.clone(),
        );
        registry.register(
            "events_published",
            "Events the outbox relay published",
            self.events_published.clone(),
        );
        registry.register(
            "events_publish_failures",
            "Failed publish attempts of the outbox relay",
            self.events_publish_failures.clone(),
        );
    }

    /// Unsent rows at the last round.
    pub fn pending(&self) -> i64 {
        self.outbox_pending.get()
    }

    /// Age of the oldest unsent row at the last round, in seconds.
    pub fn lag_seconds(&self) -> f64 {
        self.outbox_lag_seconds.get()
    }

    /// Events published so far.
    pub fn published(&self) -> u64 {
        self.events_published.get()
    }

    /// Failed publish attempts so far.
    pub fn failures(&self) -> u64 {
        self.events_publish_failures.get()
    }
}

/// What one relay round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayRound {
    /// Another instance holds the lease.
    Standby,
    /// Waiting after failed rounds.
    BackingOff,
    /// Published `sent` rows; `blocked` when a row failed and ended the round.
    Published {
        /// Rows published and marked sent.
        sent: usize,
        /// A publish failed (the rest waits for the next round).
        blocked: bool,
    },
}

#[derive(Default)]
struct RoundState {
    failures: u32,
    retry_at: Option<Instant>,
    pruned_at: Option<Instant>,
}

/// The outbox relay of one service instance (see the module docs).
#[derive(Clone)]
pub struct Relay {
    db: Database,
    bus: Arc<dyn EventBus>,
    settings: EventsSettings,
    holder: String,
    metrics: RelayMetrics,
    state: Arc<Mutex<RoundState>>,
}

impl Relay {
    /// A relay from `db`'s outbox to `bus`, with `events.*` limits and a fresh instance id.
    pub fn new(db: Database, bus: Arc<dyn EventBus>, settings: &EventsSettings) -> Self {
        Relay {
            db,
            bus,
            settings: settings.clone(),
            holder: uuid::Uuid::new_v4().to_string(),
            metrics: RelayMetrics::default(),
            state: Arc::default(),
        }
    }

    /// Registers the relay's metrics (`outbox_pending`, `outbox_lag_seconds`,
    /// `events_published_total`, `events_publish_failures_total`) in `registry`.
    pub fn register_metrics(self, registry: &mut Registry) -> Self {
        self.metrics.register(registry);
        self
    }

    /// The relay's metrics.
    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// This instance's lease holder id.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs rounds every `events.relay_interval` until `shutdown`, then gives the lease up.
    pub fn spawn(self, shutdown: Shutdown) -> JoinHandle<()> {
        let relay = self.clone();
        let rounds = crate::worker::spawn_periodic(
            "outbox-relay",
            self.settings.relay_interval,
            shutdown,
            move || {
                let relay = relay.clone();
                async move {
                    if let Err(e) = relay.round().await {
                        tracing::warn!(error = %e, "outbox relay round failed");
                    }
                }
            },
        );
        tokio::spawn(async move {
            let _ = rounds.await;
            if let Err(e) = Outbox::release(&self.db, &self.holder).await {
                tracing::debug!(error = %e, "releasing the outbox lease failed");
            }
        })
    }

    /// One round: lease, publish a batch in order, mark it sent, prune, update the metrics.
    pub async fn round(&self) -> Result<RelayRound, sqlx::Error> {
        let outcome = self.publish_round().await;
        self.update_backlog().await?;
        outcome
    }

    async fn publish_round(&self) -> Result<RelayRound, sqlx::Error> {
        if self
            .state
            .lock()
            .retry_at
            .is_some_and(|at| Instant::now() < at)
        {
            return Ok(RelayRound::BackingOff);
        }
        let leased_at = Instant::now();
        let ttl = self.settings.lease_ttl;
        let until = now_unix_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        if !Outbox::lease(&self.db, &self.holder, until).await? {
            return Ok(RelayRound::Standby);
        }
        // Stop publishing at 4/5 of the lease: a successor can never overlap this round.
        let fence = leased_at + ttl.mul_f64(0.8);
        let rows = Outbox::unsent(&self.db, self.settings.relay_batch).await?;
        let mut sent = Vec::with_capacity(rows.len());
        let mut blocked = false;
        for row in &rows {
            if Instant::now() + self.settings.publish_timeout > fence {
                break;
            }
            if self.publish(row).await {
                sent.push(row.id);
            } else {
                blocked = true;
                Outbox::note_failure(&self.db, row.id).await?;
                break;
            }
        }
        Outbox::mark_sent(&self.db, &sent, now_unix_ms()).await?;
        self.metrics.events_published.inc_by(sent.len() as u64);
        self.after_round(blocked);
        self.prune_if_due().await?;
        Ok(RelayRound::Published {
            sent: sent.len(),
            blocked,
        })
    }

    /// Publishes one row with up to `events.publish_attempts` attempts; whether it went out.
    async fn publish(&self, row: &OutboxRow) -> bool {
        let attempts = self.settings.publish_attempts.max(1);
        for attempt in 0..attempts {
            let done = tokio::time::timeout(
                self.settings.publish_timeout,
                self.bus.publish(&row.envelope),
            )
            .await;
            let error = match done {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "publish timed out".to_string(),
            };
            self.metrics.events_publish_failures.inc();
            tracing::warn!(
                event_id = %row.envelope.event_id,
                event_type = %row.envelope.r#type,
                attempt = attempt + 1,
                previous_failures = row.attempts,
                error,
                "publishing an outbox event failed"
            );
            if attempt + 1 < attempts {
                let delay = crate::backoff::backoff(attempt, PUBLISH_RETRY_BASE, PUBLISH_RETRY_CAP);
                tokio::time::sleep(delay).await;
            }
        }
        false
    }

    fn after_round(&self, blocked: bool) {
        let mut state = self.state.lock();
        if blocked {
            let delay = crate::backoff::backoff(
                state.failures,
                self.settings.relay_interval,
                MAX_ROUND_BACKOFF,
            );
            state.failures = state.failures.saturating_add(1);
            state.retry_at = Some(Instant::now() + delay);
        } else {
            state.failures = 0;
            state.retry_at = None;
        }
    }

    async fn prune_if_due(&self) -> Result<(), sqlx::Error> {
        let due = self
            .state
            .lock()
            .pruned_at
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if !due {
            return Ok(());
        }
        let retention = i64::try_from(self.settings.retention.as_millis()).unwrap_or(i64::MAX);
        let pruned = Outbox::prune(&self.db, now_unix_ms().saturating_sub(retention)).await?;
        if pruned > 0 {
            tracing::debug!(pruned, "pruned sent outbox rows");
        }
        self.state.lock().pruned_at = Some(Instant::now());
        Ok(())
    }

    async fn update_backlog(&self) -> Result<(), sqlx::Error> {
        let (pending, oldest) = Outbox::backlog(&self.db).await?;
        self.metrics.outbox_pending.set(pending);
        let lag = oldest.map_or(0.0, |at| {
            (now_unix_ms().saturating_sub(at)).max(0) as f64 / 1000.0
        });
        self.metrics.outbox_lag_seconds.set(lag);
        Ok(())
    }
}
