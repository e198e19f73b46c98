//! The payment-timeout sweeper: PENDING orders older than `order.pending_timeout` are
//! cancelled ("payment timeout") and their stock reservation released; cancelled orders whose
//! release failed (product was down) are retried.
//!
//! Several order instances may sweep the same database at once. Each expired order is claimed
//! with one conditional `UPDATE` ([`Orders::cancel_expired`]), so exactly one instance cancels
//! it and releases its stock; retries are claimed the same way ([`Orders::claim_release`]).
//! Product's `ReleaseStock` is idempotent as well, so even a lost claim cannot give stock back
//! twice.
//!
//! An Alipay order is paid on Alipay's page, and Alipay's notification may be late or lost, so
//! before cancelling one the sweeper asks payment (`QueryOrderPayment`, which may itself ask
//! Alipay with `alipay.trade.query`): a payment found marks the order PAID instead; payment
//! unreachable leaves the order for the next sweep. A payment that still arrives after the
//! cancellation is refunded in full by payment's reconciliation.

use std::sync::Arc;
use std::time::Duration;

use mall_common::server::Shutdown;
use mall_common::worker::spawn_periodic;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use mall_types::{OrderId, TransactionId, UserId};

use crate::domain::PaymentMethod;
use crate::error::Error;
use crate::peers::{PaymentClient, ProductClient, order_payment, release_stock};
use crate::store::{Expired, Orders, Paid};

/// Most orders one sweep cancels, and most releases it retries.
pub const DEFAULT_SWEEP_BATCH: i64 = 100;
/// How long after a failed (or in-flight) release the sweeper tries it again.
pub const DEFAULT_RELEASE_RETRY_AFTER: Duration = Duration::from_secs(30);

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Orders this sweeper cancelled for payment timeout (it won their claim).
    pub cancelled: Vec<String>,
    /// Orders whose stock this sweeper gave back (new cancellations and retries).
    pub released: Vec<String>,
    /// Releases that failed and will be retried.
    pub failed_releases: usize,
    /// Alipay orders payment found paid: marked PAID instead of cancelled.
    pub paid: Vec<String>,
    /// Alipay orders left for the next sweep because payment could not be asked.
    pub unsure: usize,
}

/// Cancels expired PENDING orders and retries pending stock releases.
#[derive(Clone)]
pub struct Sweeper {
    orders: Orders,
    product: ProductClient,
    payment: Option<PaymentClient>,
    pending_timeout: Duration,
    release_retry_after: Duration,
    batch: i64,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

impl Sweeper {
    /// A sweeper cancelling PENDING orders older than `pending_timeout`.
    pub fn new(orders: Orders, product: ProductClient, pending_timeout: Duration) -> Self {
        Sweeper {
            orders,
            product,
            payment: None,
            pending_timeout,
            release_retry_after: DEFAULT_RELEASE_RETRY_AFTER,
            batch: DEFAULT_SWEEP_BATCH,
        }
    }

    /// Asks `payment` before cancelling an Alipay order (without it, Alipay orders are never
    /// cancelled: the sweeper cannot know they are unpaid).
    pub fn with_payment(mut self, payment: PaymentClient) -> Self {
        self.payment = Some(payment);
        self
    }

    /// Retries a release this long after the last attempt (default 30 s).
    pub fn with_release_retry_after(mut self, after: Duration) -> Self {
        self.release_retry_after = after;
        self
    }

    /// One sweep now.
    pub async fn run_once(&self) -> Result<SweepReport, Error> {
        self.run_once_at(unix_secs()).await
    }

    /// One sweep as if it were `now` (unix seconds), so tests need not wait for the timeout.
    pub async fn run_once_at(&self, now: i64) -> Result<SweepReport, Error> {
        let mut report = SweepReport::default();
        let cutoff = now.saturating_sub(secs(self.pending_timeout));
        for expired in self.orders.expired_pending(cutoff, self.batch).await? {
            if expired.payment_method == PaymentMethod::Alipay {
                match self.paid_at_payment(&expired).await {
                    Ok(None) => {}
                    Ok(Some(paid)) => {
                        report.paid.push(paid);
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(order = %expired.id, error = %e, "cannot ask payment about an alipay order; not cancelling it yet");
                        report.unsure += 1;
                        continue;
                    }
                }
            }
            // Another instance (or a payment) may have won the order since the SELECT.
            if !self.orders.cancel_expired(&expired, cutoff, now).await? {
                continue;
            }
            let id = expired.id;
            tracing::info!(order = %id, "cancelled unpaid order after the payment timeout");
            report.cancelled.push(id.clone());
            self.release(&id, &mut report).await;
        }
        let retry_cutoff = now.saturating_sub(secs(self.release_retry_after));
        for id in self.orders.releases_due(retry_cutoff, self.batch).await? {
            if !self.orders.claim_release(&id, retry_cutoff, now).await? {
                continue;
            }
            self.release(&id, &mut report).await;
        }
        Ok(report)
    }

    /// Asks payment whether an expired Alipay order was paid; if so marks it PAID (the order
    /// id back), else `None`.
    async fn paid_at_payment(&self, expired: &Expired) -> Result<Option<String>, Error> {
        let Some(payment) = &self.payment else {
            return Err(Error::Payment(tonic::Status::unavailable(
                "no payment client configured",
            )));
        };
        let Some(transaction) = order_payment(payment, &expired.id, expired.user_id).await? else {
            return Ok(None);
        };
        let user = UserId::parse(stored_to_api(expired.user_id), "user_id")?;
        let id = OrderId::parse(&expired.id, "order_id")?;
        let transaction = TransactionId::parse(&transaction, "transaction_id")?;
        if self.orders.mark_paid(user, &id, &transaction).await? == Paid::Now {
            tracing::info!(order = %id, transaction = %transaction, "alipay order found paid by the sweeper");
        }
        Ok(Some(expired.id.clone()))
    }

    async fn release(&self, id: &str, report: &mut SweepReport) {
        let released = match release_stock(&self.product, id).await {
            Ok(()) => self.orders.mark_released(id).await,
            Err(e) => Err(e),
        };
        match released {
            Ok(()) => report.released.push(id.to_string()),
            Err(e) => {
                report.failed_releases += 1;
                tracing::warn!(order = %id, error = %e, "stock release failed; will retry");
            }
        }
    }

    /// Sweeps every `interval` in a background task until the server shuts down.
    pub fn spawn(self, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let sweeper = Arc::new(self);
        spawn_periodic("order sweeper", interval, shutdown, move || {
            let sweeper = sweeper.clone();
            async move {
                match sweeper.run_once().await {
                    Ok(report) if report.failed_releases > 0 => {
                        tracing::warn!(
                            failed = report.failed_releases,
                            "some stock releases failed"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "order sweep failed"),
                }
            }
        })
    }
}
