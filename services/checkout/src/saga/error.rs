//! How a checkout fails for its client ([`Failure`]), with the one mapping to the client's
//! `Status`. What can stop a single step is [`StepError`], beside the calls that raise it.

use tonic::{Code, Status};

use crate::domain::PricingError;
use crate::downstream::StepError;
use crate::metrics::OutcomeKind;

/// The message of a checkout whose charge was refunded because the order could not be paid.
pub const REFUNDED_MESSAGE: &str = "payment refunded: order could not be completed";
/// The message of a checkout that was interrupted before anything was charged.
pub const INTERRUPTED_MESSAGE: &str = "checkout was interrupted; nothing was charged";
/// The answer while a charged checkout cannot be settled yet (paid, or cancelled and refunded).
pub const UNSETTLED_MESSAGE: &str = "checkout in progress: the payment is being settled; \
     retry with the same idempotency_key for the outcome";
/// The answer when payment could not be reached and so charged nothing.
pub const NOT_CHARGED_MESSAGE: &str = "payment service unavailable; nothing was charged";
/// The answer while nobody can tell yet whether the card was charged.
pub const CHARGE_UNKNOWN_MESSAGE: &str =
    "payment outcome unknown; the checkout will be completed or refunded automatically";

/// How a checkout fails, as its client is told (and its outcome records).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A step failed: see [`StepError::into_status`].
    #[error(transparent)]
    Step(#[from] StepError),
    /// The cart could not be priced (empty, a product gone, ...).
    #[error(transparent)]
    Pricing(PricingError),
    /// Product refused the reservation (out of stock, or the reservation was released under the
    /// saga): its message.
    #[error("stock refused: {0}")]
    Stock(String),
    /// Payment refused the charge (declined, an invalid card): its code and message reach the
    /// client as they are.
    #[error("charge refused: {code:?}: {message}")]
    Declined {
        /// Payment's code.
        code: Code,
        /// Payment's message.
        message: String,
    },
    /// Payment could not be reached, so nothing was charged.
    #[error("{NOT_CHARGED_MESSAGE}")]
    NotCharged,
    /// Charged, but the order could not be paid: the charge was refunded.
    #[error("{REFUNDED_MESSAGE}")]
    Refunded,
    /// A saga abandoned before its charge and ended by the recovery worker without compensation
    /// (nothing was written elsewhere), or found at `charging` without an order.
    #[error("{INTERRUPTED_MESSAGE}")]
    Interrupted,
    /// A saga abandoned before its charge and compensated by the recovery worker.
    #[error("{INTERRUPTED_MESSAGE} (compensated)")]
    Abandoned,
    /// Charged, compensating, and the order may yet turn out PAID: not recorded, so retries
    /// hear "in progress" until the worker settles it.
    #[error("{UNSETTLED_MESSAGE}")]
    Unsettled,
    /// Nobody can tell yet whether the card was charged: not recorded; the worker finds out.
    #[error("{CHARGE_UNKNOWN_MESSAGE}")]
    ChargeUnknown,
}

impl Failure {
    /// The refusal of a charge: payment's code and message as they are.
    pub fn declined(status: &Status) -> Failure {
        Failure::Declined {
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// How the outcome is counted in `checkout_outcomes_total`.
    pub fn kind(&self) -> OutcomeKind {
        match self {
            Failure::Pricing(PricingError::EmptyCart) => OutcomeKind::EmptyCart,
            Failure::Stock(_) => OutcomeKind::InsufficientStock,
            Failure::Declined { .. } => OutcomeKind::Declined,
            _ => OutcomeKind::Error,
        }
    }

    /// The client's answer.
    pub fn into_status(self) -> Status {
        match self {
            Failure::Step(e) => e.into_status(),
            Failure::Pricing(e) => Status::failed_precondition(e.to_string()),
            Failure::Stock(message) => Status::failed_precondition(message),
            Failure::Declined { code, message } => Status::new(code, message),
            Failure::NotCharged => Status::unavailable(NOT_CHARGED_MESSAGE),
            Failure::Refunded => Status::aborted(REFUNDED_MESSAGE),
            Failure::Interrupted => Status::unavailable(INTERRUPTED_MESSAGE),
            Failure::Abandoned => Status::aborted(INTERRUPTED_MESSAGE),
            Failure::Unsettled => Status::aborted(UNSETTLED_MESSAGE),
            Failure::ChargeUnknown => Status::unavailable(CHARGE_UNKNOWN_MESSAGE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_answer_as_before_and_count_by_kind() {
        let declined = Failure::declined(&Status::failed_precondition("card declined"));
        assert_eq!(declined.kind(), OutcomeKind::Declined);
        let answer = declined.into_status();
        assert_eq!(
            (answer.code(), answer.message()),
            (Code::FailedPrecondition, "card declined")
        );
        let empty = Failure::Pricing(PricingError::EmptyCart);
        assert_eq!(empty.kind(), OutcomeKind::EmptyCart);
        assert_eq!(empty.into_status().message(), "cart is empty");
        let stock = Failure::Stock("insufficient stock for product 3".into());
        assert_eq!(stock.kind(), OutcomeKind::InsufficientStock);
        assert_eq!(stock.into_status().code(), Code::FailedPrecondition);
        for (failure, code, message) in [
            (Failure::NotCharged, Code::Unavailable, NOT_CHARGED_MESSAGE),
            (Failure::Refunded, Code::Aborted, REFUNDED_MESSAGE),
            (Failure::Interrupted, Code::Unavailable, INTERRUPTED_MESSAGE),
            (Failure::Abandoned, Code::Aborted, INTERRUPTED_MESSAGE),
            (Failure::Unsettled, Code::Aborted, UNSETTLED_MESSAGE),
            (
                Failure::ChargeUnknown,
                Code::Unavailable,
                CHARGE_UNKNOWN_MESSAGE,
            ),
        ] {
            assert_eq!(failure.kind(), OutcomeKind::Error);
            let answer = failure.into_status();
            assert_eq!((answer.code(), answer.message()), (code, message));
        }
    }
}
