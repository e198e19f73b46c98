//! What can stop a saga step ([`StepError`]) and how a checkout fails for its client
//! ([`Failure`]), with the one mapping of each to the client's `Status`.
//!
//! A dependency's `Status` is read once, in [`StepError::from_status`]: whether the call left
//! this process, whether the service answered, and the machine-readable reason of its refusal
//! (`mall_common::error::reason_of`). Every decision of the saga matches these variants and
//! reasons, never a status code or a message.

use mall_common::error::reason_of;
use tonic::{Code, Status};

use crate::domain::PricingError;
use crate::error::Error;
use crate::metrics::OutcomeKind;

/// The answer when the checkout's time budget runs out before its outcome is decided.
pub const BUDGET_MESSAGE: &str = "checkout did not finish within its time budget";
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
/// The answer of a request whose instance stopped driving its saga.
pub const STOPPED_MESSAGE: &str =
    "checkout instance stopped; retry with the same idempotency_key for the outcome";

/// Why a step of the saga did not complete.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// The checkout's time budget ran out (whichever call it cut).
    #[error("the checkout's time budget ran out")]
    Budget,
    /// Another instance holds the saga's lease now; this one must not write to it again.
    #[error("lost the saga's lease; another instance drives it")]
    LostLease,
    /// This instance stopped driving the saga midway, as a crashed process would (tests
    /// simulate crashes this way): nothing more is written and the lease is left to expire, so
    /// another instance's recovery worker takes the saga over.
    #[error("this instance stopped driving the saga")]
    Stopped,
    /// The call never left this process (`mall_common::client::never_sent`): it had no effect.
    #[error("{service} not called: {}", status.message())]
    NotSent {
        /// The dependency.
        service: &'static str,
        /// What the client reported.
        status: Status,
    },
    /// The dependency could not be reached, shed the call or did not answer in time; the call
    /// may have taken effect.
    #[error("{service} unreachable: {:?}: {}", status.code(), status.message())]
    Unreachable {
        /// The dependency.
        service: &'static str,
        /// What the client reported.
        status: Status,
    },
    /// The dependency answered with an error.
    #[error("{service} refused: {:?}: {} (reason {reason:?})", status.code(), status.message())]
    Refused {
        /// The dependency.
        service: &'static str,
        /// The machine-readable reason of a business refusal (`INSUFFICIENT_STOCK`, ...).
        reason: Option<String>,
        /// Its answer.
        status: Status,
    },
    /// The dependency answered something the saga cannot act on (no order id; an order neither
    /// PENDING, CANCELLED nor paid by this saga).
    #[error("{service} answered unexpectedly: {what}")]
    Unexpected {
        /// The dependency.
        service: &'static str,
        /// What was wrong.
        what: String,
    },
    /// Checkout's own database failed, or holds a saga that breaks an invariant.
    #[error(transparent)]
    Store(#[from] Error),
}

impl StepError {
    /// Classifies a failed call to `service`: the one place a dependency's status is read.
    pub fn from_status(service: &'static str, status: Status) -> StepError {
        if mall_common::client::never_sent(&status) {
            return StepError::NotSent { service, status };
        }
        match status.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled => StepError::Unreachable { service, status },
            _ => StepError::Refused {
                service,
                reason: reason_of(&status),
                status,
            },
        }
    }

    /// The reason of a refusal, if the dependency gave one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            StepError::Refused { reason, .. } => reason.as_deref(),
            _ => None,
        }
    }

    /// The dependency's answer if it refused with one of `reasons`.
    pub fn refusal(&self, reasons: &[&str]) -> Option<&Status> {
        match self {
            StepError::Refused {
                reason: Some(reason),
                status,
                ..
            } if reasons.contains(&reason.as_str()) => Some(status),
            _ => None,
        }
    }

    /// Whether this instance must stop driving the saga at once, writing nothing more.
    pub fn ends_drive(&self) -> bool {
        matches!(self, StepError::LostLease | StepError::Stopped)
    }

    /// Whether a dependency failed (rather than the budget, the lease or the store).
    pub fn is_dependency(&self) -> bool {
        matches!(
            self,
            StepError::NotSent { .. }
                | StepError::Unreachable { .. }
                | StepError::Refused { .. }
                | StepError::Unexpected { .. }
        )
    }

    /// The client's answer: `UNAVAILABLE` for a down or slow dependency and for one that
    /// failed (its `INTERNAL` is its own bug, counted there); a business refusal the saga does
    /// not act on (`FAILED_PRECONDITION`, `NOT_FOUND`, `ALREADY_EXISTS`, `ABORTED`) as the
    /// dependency gave it; `INTERNAL` (logged) only when the fault is checkout's — a request the
    /// dependency found invalid, credentials it refused, an answer the saga cannot act on, its
    /// own store; `DEADLINE_EXCEEDED` for the budget; `ABORTED` "in progress" when another
    /// instance drives the saga.
    pub fn into_status(self) -> Status {
        match self {
            StepError::Budget => Status::deadline_exceeded(BUDGET_MESSAGE),
            StepError::LostLease => Error::InProgress.into(),
            StepError::Stopped => Status::unavailable(STOPPED_MESSAGE),
            StepError::NotSent {
                service,
                ref status,
            }
            | StepError::Unreachable {
                service,
                ref status,
            } => {
                tracing::warn!(dependency = service, code = ?status.code(), message = status.message(), "dependency failed");
                Status::unavailable(format!("{service} service unavailable"))
            }
            StepError::Refused {
                service,
                ref status,
                ..
            } => match status.code() {
                Code::Internal | Code::Unknown | Code::DataLoss | Code::Unimplemented => {
                    tracing::warn!(dependency = service, code = ?status.code(), message = status.message(), "dependency failed");
                    Status::unavailable(format!("{service} service failed"))
                }
                Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists | Code::Aborted => {
                    Status::new(status.code(), status.message())
                }
                _ => {
                    tracing::error!(dependency = service, error = %self, "dependency refused a saga step");
                    Status::internal(format!("{service} refused checkout's request"))
                }
            },
            StepError::Unexpected { service, .. } => {
                tracing::error!(dependency = service, error = %self, "dependency answered unexpectedly");
                Status::internal(format!("{service} service failed"))
            }
            StepError::Store(e) => e.into(),
        }
    }
}

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
    use mall_common::error::with_reason;

    use super::*;

    #[test]
    fn a_refusal_is_classified_by_its_reason_whatever_its_text() {
        let status = with_reason(
            Code::FailedPrecondition,
            "no units left",
            "INSUFFICIENT_STOCK",
        );
        let e = StepError::from_status("product", status);
        assert_eq!(e.reason(), Some("INSUFFICIENT_STOCK"));
        let refused = e.refusal(&["INSUFFICIENT_STOCK"]).expect("a stock refusal");
        assert_eq!(refused.message(), "no units left");
        assert!(e.refusal(&["CARD_DECLINED"]).is_none());

        // The words alone decide nothing: a refusal without a reason reaches the client as
        // the dependency gave it.
        let e = StepError::from_status(
            "product",
            Status::failed_precondition("insufficient stock for product 1"),
        );
        assert_eq!(e.reason(), None);
        assert!(e.refusal(&["INSUFFICIENT_STOCK"]).is_none());
        let answer = e.into_status();
        assert_eq!(
            (answer.code(), answer.message()),
            (Code::FailedPrecondition, "insufficient stock for product 1")
        );
    }

    #[test]
    fn a_dependency_s_bug_is_unavailable_and_checkout_s_own_is_internal() {
        for code in [
            Code::Internal,
            Code::Unknown,
            Code::DataLoss,
            Code::Unimplemented,
        ] {
            let answer =
                StepError::from_status("product", Status::new(code, "SELECT boom")).into_status();
            assert_eq!(answer.code(), Code::Unavailable, "{code:?}");
            assert_eq!(answer.message(), "product service failed");
        }
        for code in [Code::NotFound, Code::AlreadyExists, Code::Aborted] {
            let answer = StepError::from_status("order", Status::new(code, "no")).into_status();
            assert_eq!((answer.code(), answer.message()), (code, "no"));
        }
        for code in [
            Code::InvalidArgument,
            Code::PermissionDenied,
            Code::Unauthenticated,
        ] {
            let answer = StepError::from_status(
                "product",
                Status::new(code, "ids must hold at most 100 ids"),
            )
            .into_status();
            assert_eq!(answer.code(), Code::Internal, "{code:?}");
            assert!(!answer.message().contains("100"), "{}", answer.message());
        }
        let cancelled = StepError::from_status("cart", Status::cancelled("server going away"));
        assert!(
            matches!(cancelled, StepError::Unreachable { .. }),
            "{cancelled:?}"
        );
    }

    #[test]
    fn unreachable_dependencies_answer_unavailable_and_name_the_service() {
        for status in [
            Status::unavailable("connection refused"),
            Status::deadline_exceeded("product did not answer in time"),
            Status::resource_exhausted("shed"),
        ] {
            let e = StepError::from_status("product", status);
            assert!(matches!(e, StepError::Unreachable { .. }), "{e:?}");
            assert!(e.is_dependency() && !e.ends_drive());
            let answer = e.into_status();
            assert_eq!(answer.code(), Code::Unavailable);
            assert_eq!(answer.message(), "product service unavailable");
        }
    }

    #[test]
    fn the_saga_s_own_failures_have_their_own_answers() {
        let budget = StepError::Budget.into_status();
        assert_eq!(
            (budget.code(), budget.message()),
            (Code::DeadlineExceeded, BUDGET_MESSAGE)
        );
        assert!(StepError::LostLease.ends_drive() && StepError::Stopped.ends_drive());
        let lost = StepError::LostLease.into_status();
        assert_eq!(
            (lost.code(), lost.message()),
            (Code::Aborted, "checkout in progress")
        );
        assert_eq!(StepError::Stopped.into_status().code(), Code::Unavailable);
        let corrupt = StepError::Store(Error::Corrupt("saga s1 has no ids".into())).into_status();
        assert_eq!(corrupt.code(), Code::Internal);
        assert!(!corrupt.message().contains("s1"), "{}", corrupt.message());
    }

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
