//! Settling a recorded payment with the rest of the fleet: every successful payment must end on
//! a PAID order or be refunded, and an Alipay order's purchased lines leave the buyer's cart.
//!
//! Card payments are checkout's: checkout marks their order paid and cleans the cart; payment
//! only refunds one whose order ended otherwise. Alipay payments arrive after checkout is done
//! (the buyer pays on Alipay's page), so payment drives them: the order still PENDING is marked
//! PAID by this payment (`MarkOrderPaid`, a no-op when repeated), then the purchased lines are
//! removed from the cart (`RemovePurchased`, once per order); an order CANCELLED meanwhile
//! gets the payment refunded in full through Alipay. Each step is idempotent, so the
//! reconciliation worker repeats [`Settler::settle`] until it says settled (a crash between
//! recording a payment and marking its order paid is caught up by the next round).
//!
//! and every Alipay pay link is followed until its trade is paid or given up.
//!
//! Every `payment.reconcile_interval` a round:
//! - asks Alipay (`alipay.trade.query`) about open trades that are due ([`crate::alipay::Alipay::poll_trades`]):
//!   notifications get lost, so a trade paid at Alipay is found and recorded even without one;
//! - settles the payments not found settled yet ([`Settler::settle`]): Alipay payments at any
//!   age (their order is marked PAID and the cart cleaned, or, order cancelled, they are
//!   refunded in full through Alipay), card payments older than `payment.reconcile_after`
//!   (younger ones are still in their checkout; a card payment on a cancelled order is refunded);
//! - re-sends Alipay refunds whose answer was lost (same `out_request_no`).
//!
//! Several payment instances may run it at once: every step is idempotent (MarkOrderPaid with
//! the same transaction, RemovePurchased once per order, refunds bounded by the charge and keyed
//! by their request id), so the loser of a race changes nothing.

//!
//! Payments recorded by Alipay's notifications and queries arrive on the settle queue and are
//! settled at once; the worker's rounds settle whatever the queue dropped or a step left.

use std::sync::Arc;
use std::time::Duration;

use mall_common::server::Shutdown;
use mall_common::worker::spawn_periodic;
use mall_proto::order::v1 as order_pb;
use mall_types::ids::stored_to_api;
use mall_types::time::unix_secs;
use tokio::sync::mpsc;

use crate::alipay::SettleQueue;
use crate::domain::{Payment, PaymentMethod, Refund};
use crate::error::Error;
use crate::payments::Payments;
use crate::peers::Peers;

/// The reason recorded on the refunds reconciliation makes.
pub const REFUND_REASON: &str = "order was cancelled: payment reconciled";

/// What settling a payment came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Its order is PAID by it (and, for Alipay, the cart is cleaned), or it is fully refunded.
    Settled,
    /// Its order ended without it: it was refunded now.
    Refunded,
    /// Not decided yet (order PENDING for a card payment) or a step failed: try again later.
    Later,
}

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

/// How many recorded payments may wait on the settle queue.
pub const QUEUE: usize = 1024;

/// The settle queue: the sender for the Alipay use cases, the receiver for [`Settler::spawn`].
pub fn queue() -> (SettleQueue, mpsc::Receiver<Payment>) {
    mpsc::channel(QUEUE)
}

/// Settles payments: those handed over on the queue at once, the rest in periodic rounds.
#[derive(Clone)]
pub struct Settler {
    payments: Payments,
    peers: Peers,
    after: Duration,
}

impl Settler {
    /// Takes `payment` one step towards settled (see the module docs).
    pub async fn settle(&self, payment: &Payment) -> Settle {
        if payment.refunded_cents >= payment.amount_cents {
            return Settle::Settled;
        }
        let user = stored_to_api(payment.user_id);
        let order = match self.peers.order(user, &payment.order_id).await {
            Ok(Some(order)) => order,
            Ok(None) => {
                tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, "payment for an order that order does not know");
                return Settle::Later;
            }
            Err(e) => {
                tracing::debug!(order = %payment.order_id, error = %e, "cannot ask order; will retry");
                return Settle::Later;
            }
        };
        use order_pb::OrderStatus as S;
        match S::try_from(order.status) {
            Ok(S::Pending) if payment.method == PaymentMethod::Alipay => {
                if let Err(e) = self.peers.mark_order_paid(payment).await {
                    tracing::warn!(order = %payment.order_id, transaction = %payment.transaction_id, error = %e, "MarkOrderPaid failed; will retry");
                    return Settle::Later;
                }
                tracing::info!(order = %payment.order_id, transaction = %payment.transaction_id, "alipay order paid");
                self.clean_cart(payment, &order).await
            }
            Ok(S::Pending) | Ok(S::Unspecified) | Err(_) => Settle::Later,
            Ok(S::Paid | S::Completed | S::Refunded)
                if order.transaction_id == payment.transaction_id =>
            {
                if payment.method == PaymentMethod::Alipay {
                    self.clean_cart(payment, &order).await
                } else {
                    Settle::Settled
                }
            }
            Ok(S::Cancelled) => self.refund_rest(payment).await,
            Ok(S::Paid | S::Completed | S::Refunded) => {
                tracing::error!(transaction = %payment.transaction_id, order = %payment.order_id, paid_by = %order.transaction_id, "order was paid by another transaction");
                self.refund_rest(payment).await
            }
        }
    }

    /// Takes what `order` bought out of its buyer's cart (once per order at cart).
    async fn clean_cart(&self, payment: &Payment, order: &order_pb::Order) -> Settle {
        match self.peers.remove_purchased(payment, order).await {
            Ok(()) => Settle::Settled,
            Err(status) => {
                tracing::warn!(order = %payment.order_id, code = ?status.code(), "RemovePurchased failed; will retry");
                Settle::Later
            }
        }
    }

    /// Refunds what is left of `payment` (through Alipay for an Alipay payment), under a
    /// request id derived from the payment, so a retry never refunds twice.
    async fn refund_rest(&self, payment: &Payment) -> Settle {
        let left = payment.amount_cents.saturating_sub(payment.refunded_cents);
        let request_id = format!("reconcile-{}", payment.transaction_id);
        let request_id: String = request_id.chars().take(64).collect();
        let refund = match Refund::parse_request(
            &payment.transaction_id,
            &payment.order_id,
            left,
            REFUND_REASON,
            stored_to_api(payment.user_id),
            &request_id,
        ) {
            Ok(refund) => refund,
            Err(e) => {
                tracing::error!(transaction = %payment.transaction_id, error = %e, "cannot refund a stored payment");
                return Settle::Later;
            }
        };
        match self.payments.refund(&refund).await {
            Ok(_) => {
                tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, amount_cents = left, method = payment.method.as_str(), "refunded a payment whose order was cancelled");
                Settle::Refunded
            }
            Err(e) => {
                tracing::warn!(transaction = %payment.transaction_id, order = %payment.order_id, error = %e, "reconciliation refund failed; will retry");
                Settle::Later
            }
        }
    }

    /// A settler over `payments`, settling card payments older than `after` in its rounds.
    pub fn new(payments: Payments, peers: Peers, after: Duration) -> Self {
        Settler {
            payments,
            peers,
            after,
        }
    }

    /// One round now.
    pub async fn run_once(&self) -> Result<Round, Error> {
        let mut round = Round::default();
        let now = unix_secs();
        if self.payments.alipay().gateway().can_call() {
            round.found_by_query = self.payments.alipay().poll_trades(now, BATCH).await?;
            self.payments.alipay().retry_pending_refunds(BATCH).await?;
        }
        let after = i64::try_from(self.after.as_secs()).unwrap_or(i64::MAX);
        let due = self
            .payments
            .ledger()
            .unreconciled(now.saturating_sub(after), BATCH)
            .await?;
        for payment in due {
            let tx = payment.transaction_id.clone();
            match self.settle(&payment).await {
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

    /// Settles one payment handed over on the queue, and records it settled.
    async fn settle_queued(&self, payment: Payment) {
        if self.settle(&payment).await != Settle::Later
            && let Err(e) = self
                .payments
                .ledger()
                .mark_reconciled(&payment.transaction_id)
                .await
        {
            tracing::warn!(transaction = %payment.transaction_id, error = %e, "cannot record the settlement; the worker will look again");
        }
    }

    /// Runs a round every `interval` in a background task until the server shuts down.
    /// Also settles each payment arriving on `queue` at once, in a task of its own.
    pub fn spawn(
        self,
        interval: Duration,
        queue: mpsc::Receiver<Payment>,
        shutdown: Shutdown,
    ) -> tokio::task::JoinHandle<()> {
        self.clone().spawn_queue(queue, shutdown.clone());
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

    /// Settles what arrives on `queue` until shutdown, each payment in a task of its own (so
    /// a slow order or cart does not hold up the next).
    fn spawn_queue(self, mut queue: mpsc::Receiver<Payment>, mut shutdown: Shutdown) {
        tokio::spawn(async move {
            loop {
                let payment = tokio::select! {
                    () = shutdown.wait() => break,
                    next = queue.recv() => match next {
                        Some(payment) => payment,
                        None => break,
                    },
                };
                let settler = self.clone();
                tokio::spawn(async move { settler.settle_queued(payment).await });
            }
        });
    }
}
