//! What can stop a saga step ([`StepError`]), and its one mapping to the client's `Status`.
//!
//! A dependency's `Status` is read once, in [`StepError::from_status`]: whether the call left
//! this process, whether the service answered, and the machine-readable reason of its refusal
//! (`mall_common::error::reason_of`). Every decision of the saga matches these variants and
//! reasons, never a status code or a message.

use mall_common::error::reason_of;
use tonic::{Code, Status};

use crate::error::Error;

/// The answer when the checkout's time budget runs out before its outcome is decided.
pub const BUDGET_MESSAGE: &str = "checkout did not finish within its time budget";
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
}
