//! The consumer: reads order and payment events as the durable group `notification`, mails the
//! customer, and keeps the inbox so each event is mailed once as far as the customer can tell.
//!
//! # Per event
//!
//! 1. An event already `sent`, `noted` or `dead` in the inbox is acknowledged at once
//!    (`notification_duplicates_skipped_total`).
//! 2. `order.placed` is remembered (the address, items, total: the later events do not carry
//!    them) and `noted`; it sends no mail. The confirmation goes out on `order.paid`: a checkout
//!    whose payment fails gets a cancellation notice and no confirmation.
//! 3. `order.paid` → confirmation, `order.cancelled` → cancellation notice, `payment.refunded`
//!    → refund notice. The inbox row is claimed (`sending`, attempts + 1) before the mail goes
//!    out and settled `sent` after the server accepted it, then the event is acknowledged.
//! 4. A failed send (or an event about an order not heard of yet) is retried with backoff
//!    through the bus (`nack`); after `notification.max_attempts` the envelope goes to the
//!    dead-letter subject `<namespace>.deadletter.notification`, the row is settled `dead`
//!    and the event acknowledged.
//!
//! # What remains of "exactly once"
//!
//! SMTP is not transactional: a crash after the server accepted a mail and before the inbox
//! row says `sent` leaves it `sending`, and the redelivery sends the mail again — at most one
//! duplicate per crash, carrying the same Message-ID (derived from the event id), so a mail
//! client or the operator can recognise it.

use std::sync::Arc;
use std::time::Duration;

use mall_common::backoff::backoff;
use mall_common::events::{Delivery, EventBus, Payload, SubscribeOptions};
use mall_common::server::Shutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tracing::Instrument as _;

use crate::NotificationSettings;
use crate::mail::{self, Mail, Mailer};
use crate::store::{InboxEntry, InboxStatus, KnownOrder, Notifications};

/// The consumer group (durable consumer) of the service, and the dead-letter subject's last
/// part.
pub const GROUP: &str = "notification";
/// The event types the service reads.
pub const TYPES: [&str; 2] = ["order.*", "payment.refunded"];
/// The longest pause between two attempts of one event.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);
/// The pause before subscribing again after the bus failed.
pub const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// The consumer's metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Mails accepted by the server.
    pub sent: Counter,
    /// Failed send attempts.
    pub failures: Counter,
    /// Events given up and dead-lettered.
    pub dead_lettered: Counter,
    /// Redelivered events acknowledged without a second mail.
    pub duplicates_skipped: Counter,
}

impl Metrics {
    /// Registers them in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let notification_mails_sent: Counter = self.sent.clone();
        registry.register(
            "notification_mails_sent",
            "Mails accepted by the SMTP server (or written to the mail directory)",
            notification_mails_sent,
        );
        let notification_send_failures: Counter = self.failures.clone();
        registry.register(
            "notification_send_failures",
            "Failed attempts to send a mail",
            notification_send_failures,
        );
        let notification_dead_lettered: Counter = self.dead_lettered.clone();
        registry.register(
            "notification_dead_lettered",
            "Events given up after notification.max_attempts and sent to the dead-letter subject",
            notification_dead_lettered,
        );
        let notification_duplicates_skipped: Counter = self.duplicates_skipped.clone();
        registry.register(
            "notification_duplicates_skipped",
            "Redelivered events acknowledged without a second mail (already in the inbox)",
            notification_duplicates_skipped,
        );
    }
}

/// What to do with one delivery.
#[derive(Debug)]
enum Outcome {
    /// Acknowledge.
    Done,
    /// Try again after this long.
    Retry(Duration, String),
    /// Give up: dead-letter with this reason.
    GiveUp(String),
}

/// The consumer of one service instance.
#[derive(Clone)]
pub struct Consumer {
    store: Notifications,
    mailer: Arc<Mailer>,
    bus: Arc<dyn EventBus>,
    settings: NotificationSettings,
    metrics: Metrics,
}

impl Consumer {
    /// A consumer mailing through `mailer`, reading from `bus`.
    pub fn new(
        store: Notifications,
        mailer: Mailer,
        bus: Arc<dyn EventBus>,
        settings: NotificationSettings,
    ) -> Self {
        Consumer {
            store,
            mailer: Arc::new(mailer),
            bus,
            settings,
            metrics: Metrics::default(),
        }
    }

    /// Its metrics (register them with [`Metrics::register`]).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn options(&self) -> Result<SubscribeOptions, mall_common::events::BusError> {
        Ok(SubscribeOptions::new(GROUP)
            .types(TYPES)?
            // The inbox counts attempts; the bus must not stop redelivering before it does.
            .max_deliver(self.settings.max_attempts.saturating_add(1))
            .ack_wait(self.settings.send_timeout.saturating_mul(2)))
    }

    /// Consumes until `shutdown`; the bus failing only pauses it.
    pub fn spawn(self, mut shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let subscription = tokio::select! {
                    _ = shutdown.wait() => return,
                    s = async { self.bus.subscribe(self.options()?).await } => s,
                };
                let mut subscription = match subscription {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "subscribing to events failed; trying again");
                        tokio::select! {
                            _ = shutdown.wait() => return,
                            _ = tokio::time::sleep(RESUBSCRIBE_DELAY) => continue,
                        }
                    }
                };
                loop {
                    let delivery = tokio::select! {
                        _ = shutdown.wait() => return,
                        d = subscription.next() => d,
                    };
                    match delivery {
                        Ok(delivery) => {
                            let span = delivery.span(crate::NAME);
                            self.settle(delivery).instrument(span).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "event subscription failed; subscribing again");
                            tokio::time::sleep(RESUBSCRIBE_DELAY).await;
                            break;
                        }
                    }
                }
            }
        })
    }

    /// Handles one delivery and settles it with the bus.
    pub async fn settle(&self, delivery: Delivery) {
        let event_id = delivery.envelope.event_id.clone();
        let outcome = match self.handle(&delivery).await {
            Ok(outcome) => outcome,
            // The database failed: the event stays unsettled and comes again.
            Err(e) => Outcome::Retry(
                backoff(
                    delivery.delivery_attempt,
                    self.settings.retry_backoff,
                    MAX_RETRY_DELAY,
                ),
                format!("inbox: {e}"),
            ),
        };
        let settled = match outcome {
            Outcome::Done => delivery.ack().await,
            Outcome::Retry(after, reason) => {
                tracing::info!(%event_id, ?after, %reason, "event will be retried");
                delivery.nack(after).await
            }
            Outcome::GiveUp(reason) => self.give_up(delivery, &reason).await,
        };
        if let Err(e) = settled {
            tracing::warn!(%event_id, error = %e, "settling the event with the bus failed");
        }
    }

    async fn give_up(
        &self,
        delivery: Delivery,
        reason: &str,
    ) -> Result<(), mall_common::events::BusError> {
        let event_id = delivery.envelope.event_id.clone();
        if let Err(e) = self
            .bus
            .dead_letter(GROUP, &delivery.envelope, reason)
            .await
        {
            // Not acknowledged: it comes again and is dead-lettered then.
            tracing::warn!(%event_id, error = %e, "dead-lettering failed");
            return delivery.nack(self.settings.retry_backoff).await;
        }
        self.metrics.dead_lettered.inc();
        tracing::warn!(%event_id, %reason, "event dead-lettered");
        if let Err(e) = self
            .store
            .settle(&event_id, InboxStatus::Dead, reason)
            .await
        {
            tracing::warn!(%event_id, error = %e, "recording the dead letter failed");
        }
        delivery.ack().await
    }

    async fn handle(&self, delivery: &Delivery) -> Result<Outcome, sqlx::Error> {
        let envelope = &delivery.envelope;
        if let Some(entry) = self.store.inbox(&envelope.event_id).await?
            && entry.status.is_final()
        {
            self.metrics.duplicates_skipped.inc();
            tracing::debug!(event_id = %envelope.event_id, "already handled");
            return Ok(Outcome::Done);
        }
        let order_id = match &envelope.payload {
            Some(Payload::OrderPlaced(placed)) => {
                self.store
                    .remember_order(&KnownOrder {
                        order_id: placed.order_id.clone(),
                        user_id: placed.user_id,
                        email: placed.email.clone(),
                        currency: placed.currency.clone(),
                        total_cents: placed.total_cents,
                        items: placed
                            .items
                            .iter()
                            .map(|l| (l.product_id, l.quantity, l.cost_cents))
                            .collect(),
                    })
                    .await?;
                self.store
                    .note(&envelope.event_id, &envelope.r#type, &envelope.aggregate_id)
                    .await?;
                return Ok(Outcome::Done);
            }
            Some(Payload::OrderPaid(p)) => p.order_id.clone(),
            Some(Payload::OrderCancelled(c)) => c.order_id.clone(),
            Some(Payload::PaymentRefunded(r)) => r.order_id.clone(),
            // Another type (a broader filter): nothing to mail.
            _ => return Ok(Outcome::Done),
        };
        let Some(order) = self.store.order(&order_id).await? else {
            return self
                .attempt_failed(delivery, None, format!("order {order_id} not heard of yet"))
                .await;
        };
        let Some(mail) = compose(delivery, &order) else {
            return Ok(Outcome::Done);
        };
        self.send(delivery, mail).await
    }

    async fn send(&self, delivery: &Delivery, mail: Mail) -> Result<Outcome, sqlx::Error> {
        let envelope = &delivery.envelope;
        let entry = InboxEntry {
            event_id: envelope.event_id.clone(),
            event_type: envelope.r#type.clone(),
            aggregate_id: envelope.aggregate_id.clone(),
            status: InboxStatus::Sending,
            attempts: 0,
            recipient: mail.to.clone(),
            subject: mail.subject.clone(),
            message_id: mail.message_id.clone(),
            last_error: String::new(),
        };
        let attempt = self.store.claim(&entry).await?;
        match self.mailer.send(&mail).await {
            Ok(()) => {
                self.metrics.sent.inc();
                tracing::info!(event_id = %entry.event_id, subject = %mail.subject, "mail sent");
                self.store
                    .settle(&entry.event_id, InboxStatus::Sent, "")
                    .await?;
                Ok(Outcome::Done)
            }
            Err(e) => {
                self.metrics.failures.inc();
                tracing::warn!(event_id = %entry.event_id, attempt, error = %e, "sending a mail failed");
                let permanent = matches!(e, mail::SendError::Invalid(_));
                let reason = e.to_string();
                self.store
                    .settle(&entry.event_id, InboxStatus::Sending, &reason)
                    .await?;
                if permanent {
                    return Ok(Outcome::GiveUp(reason));
                }
                self.attempt_failed(delivery, Some(attempt), reason).await
            }
        }
    }

    /// Retry or give up after a failed attempt (`attempt` from the inbox when a send was
    /// claimed, else the bus's delivery count).
    async fn attempt_failed(
        &self,
        delivery: &Delivery,
        attempt: Option<u32>,
        reason: String,
    ) -> Result<Outcome, sqlx::Error> {
        let attempt = attempt.unwrap_or(delivery.delivery_attempt);
        if attempt >= self.settings.max_attempts {
            return Ok(Outcome::GiveUp(format!(
                "{reason} (after {attempt} attempts)"
            )));
        }
        Ok(Outcome::Retry(
            backoff(attempt, self.settings.retry_backoff, MAX_RETRY_DELAY),
            reason,
        ))
    }
}

/// The mail for `delivery` about `order`, if its type sends one.
fn compose(delivery: &Delivery, order: &KnownOrder) -> Option<Mail> {
    let event_id = &delivery.envelope.event_id;
    match delivery.envelope.payload.as_ref()? {
        Payload::OrderPaid(_) => Some(mail::confirmation(order, event_id)),
        Payload::OrderCancelled(c) => Some(mail::cancellation(order, &c.reason, event_id)),
        Payload::PaymentRefunded(r) => {
            Some(mail::refund(order, r.amount_cents, &r.refund_id, event_id))
        }
        _ => None,
    }
}
