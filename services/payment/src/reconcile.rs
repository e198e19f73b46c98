//! The reconciliation worker: every successful payment must end on a PAID order or be refunded,
//! and every Alipay pay link is followed until its trade is paid or given up.
//!
//! Every `payment.reconcile_interval` a round:
//! - asks Alipay (`alipay.trade.query`) about open trades that are due ([`Payments::poll_trades`]):
//!   notifications get lost, so a trade paid at Alipay is found and recorded even without one;
//! - settles the payments not found settled yet ([`Payments::settle`]): Alipay payments at any
//!   age (their order is marked PAID and the cart cleaned, or, order cancelled, they are
//!   refunded in full through Alipay), card payments older than `payment.reconcile_after`
//!   (younger ones are still in their checkout; a card payment on a cancelled order is refunded);
//! - re-sends Alipay refunds whose answer was lost (same `out_request_no`).
//!
//! Several payment instances may run it at once: every step is idempotent (MarkOrderPaid with
//! the same transaction, RemovePurchased once per order, refunds bounded by the charge and keyed
//! by their request id), so the loser of a race changes nothing.

use std::sync::Arc;
use std::time::Duration;

use mall_common::server::Shutdown;
use mall_common::worker::spawn_periodic;
use mall_types::time::unix_secs;

use crate::app::Payments;
use crate::error::Error;
use crate::settle::Settle;

pub use crate::settle::{OrderClient, REFUND_REASON};

/// Most payments (and trades, and refunds) one round looks at.
pub const BATCH: i64 = 100;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Payments found settled (including those refunded now).
    pub settled: Vec<String>,
    /// Payments refunded now (transaction ids).
    pub refunded: Vec<String>,
    /// Payments left for a later round.
    pub pending: usize,
    /// Payments the trade poller found at Alipay.
    pub found_by_query: usize,
}

/// The worker.
#[derive(Clone)]
pub struct Reconciler {
    payments: Payments,
    after: Duration,
}

impl Reconciler {
    /// A worker over `payments`, settling card payments older than `after`.
    pub fn new(payments: Payments, after: Duration) -> Self {
        Reconciler { payments, after }
    }

    /// One round now.
    pub async fn run_once(&self) -> Result<Round, Error> {
        let mut round = Round::default();
        let now = unix_secs();
        if self.payments.alipay().can_call() {
            round.found_by_query = self.payments.poll_trades(now, BATCH).await?;
            self.payments.retry_pending_refunds(BATCH).await?;
        }
        let after = i64::try_from(self.after.as_secs()).unwrap_or(i64::MAX);
        let due = self
            .payments
            .ledger()
            .unreconciled(now.saturating_sub(after), BATCH)
            .await?;
        for payment in due {
            let tx = payment.transaction_id.clone();
            match self.payments.settle(&payment).await {
                Settle::Settled => round.settled.push(tx.clone()),
                Settle::Refunded => {
                    round.refunded.push(tx.clone());
                    round.settled.push(tx.clone());
                }
                Settle::Later => {
                    round.pending += 1;
                    continue;
                }
            }
            self.payments.ledger().mark_reconciled(&tx).await?;
        }
        Ok(round)
    }

    /// Runs a round every `interval` in a background task until the server shuts down.
    pub fn spawn(self, interval: Duration, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        let worker = Arc::new(self);
        spawn_periodic("payment reconciliation", interval, shutdown, move || {
            let worker = worker.clone();
            async move {
                match worker.run_once().await {
                    Ok(round) if !round.refunded.is_empty() => {
                        tracing::warn!(
                            refunded = round.refunded.len(),
                            "reconciliation refunded payments of cancelled orders"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "payment reconciliation failed"),
                }
            }
        })
    }
}
