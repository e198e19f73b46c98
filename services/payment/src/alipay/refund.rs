//! Alipay refunds: a refund recorded as pending is sent as `alipay.trade.refund` (its request
//! id as `out_request_no`, so a repeat never refunds twice) and marked done or given back.

use mall_types::TransactionId;

use super::{Alipay, RefundOutcome};
use crate::error::Error;
use crate::store::refunds::StoredRefund;

impl Alipay {
    /// Sends a pending Alipay refund to Alipay and records what came of it.
    pub async fn push_refund(&self, order_id: &str, refund: &StoredRefund) -> Result<(), Error> {
        let outcome = self
            .gateway
            .refund_trade(
                order_id,
                refund.amount_cents,
                &refund.out_request_no,
                &refund.reason,
            )
            .await;
        match outcome {
            Ok(RefundOutcome::Refunded) => {
                self.ledger.finish_refund(&refund.refund_id).await?;
                tracing::info!(order = %order_id, refund = %refund.refund_id, amount_cents = refund.amount_cents, "alipay refund done");
                Ok(())
            }
            Ok(RefundOutcome::Refused(code)) => {
                self.ledger.fail_refund(refund).await?;
                tracing::warn!(order = %order_id, refund = %refund.refund_id, sub_code = %code, "alipay refused the refund");
                Err(Error::AlipayRefused(code))
            }
            Err(e) => {
                tracing::warn!(order = %order_id, refund = %refund.refund_id, error = %e, "alipay refund outcome unknown; stays pending");
                Err(e.into())
            }
        }
    }

    /// Re-sends Alipay refunds whose outcome is unknown (for the reconciliation worker).
    pub async fn retry_pending_refunds(&self, limit: i64) -> Result<usize, Error> {
        let mut done = 0;
        for refund in self.ledger.pending_refunds(limit).await? {
            let id = TransactionId::parse(&refund.transaction_id, "transaction_id")?;
            let Some(payment) = self.ledger.get(&id).await? else {
                continue;
            };
            if self.push_refund(&payment.order_id, &refund).await.is_ok() {
                done += 1;
            }
        }
        Ok(done)
    }
}
