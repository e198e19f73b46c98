//! Everything that can go wrong in the order service, in one enum, and its one mapping to a
//! `Status` (through `mall_common::error::ServiceError`): refusals keep their message and carry a
//! machine-readable [`reason`]; database and product-service failures are logged and hidden.

use mall_types::Invalid;

use crate::domain::{IllegalTransition, OrderStatus};

/// Everything that can go wrong in the order service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such order for this user (someone else's order looks the same).
    #[error("order {0} not found")]
    OrderNotFound(String),
    /// A move the state machine does not allow.
    #[error("order is {from}; it cannot become {to}")]
    IllegalTransition {
        /// The order's current status.
        from: OrderStatus,
        /// The status asked for.
        to: OrderStatus,
    },
    /// `MarkOrderPaid` for an order another transaction already paid.
    #[error("order {0} is already paid by another transaction")]
    PaidByAnotherTransaction(String),
    /// The order kept changing under a conditional update (the retries ran out).
    #[error("order {0} changed concurrently; retry")]
    Contended(String),
    /// A stored row breaks an invariant the schema should guarantee.
    #[error("stored order is corrupt: {0}")]
    Corrupt(String),
    /// The product service refused or failed a call.
    #[error("product service: {}: {}", .0.code(), .0.message())]
    Product(tonic::Status),
    /// The payment service failed a call (the sweeper's question about an Alipay order).
    #[error("payment service: {}: {}", .0.code(), .0.message())]
    Payment(tonic::Status),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

mall_common::as_database_error!(Error);

/// The machine-readable reasons the order service's refusals carry, declared with the contract.
pub use mall_proto::reason;

impl From<IllegalTransition> for Error {
    fn from(t: IllegalTransition) -> Self {
        Error::IllegalTransition {
            from: t.from,
            to: t.to,
        }
    }
}

impl mall_common::error::ServiceError for Error {
    fn code(&self) -> mall_common::error::ServiceErrorCode {
        use mall_common::error::ServiceErrorCode as Code;
        match self {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::OrderNotFound(_) => Code::NotFound,
            Error::IllegalTransition { .. } | Error::PaidByAnotherTransaction(_) => {
                Code::FailedPrecondition
            }
            Error::Contended(_) => Code::Aborted,
            Error::Corrupt(_) => Code::Internal,
            Error::Product(status) | Error::Payment(status) => match status.code() {
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => Code::Unavailable,
                _ => Code::Internal,
            },
            Error::Database(e) => mall_common::store::error_code(e),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Error::Invalid(_) => reason::INVALID_REQUEST,
            Error::OrderNotFound(_) => reason::ORDER_NOT_FOUND,
            // Only PENDING moves to PAID or CANCELLED, only PAID to COMPLETED or REFUNDED.
            Error::IllegalTransition { to, .. } => match to {
                OrderStatus::Paid | OrderStatus::Cancelled => reason::ORDER_NOT_PENDING,
                OrderStatus::Completed | OrderStatus::Refunded => reason::ORDER_NOT_PAID,
                OrderStatus::Pending => reason::ILLEGAL_TRANSITION,
            },
            Error::PaidByAnotherTransaction(_) => reason::PAID_BY_ANOTHER_TRANSACTION,
            Error::Contended(_) => reason::ORDER_CONTENDED,
            Error::Corrupt(_) | Error::Product(_) | Error::Payment(_) | Error::Database(_) => {
                return None;
            }
        })
    }

    fn unavailable_dependency(&self) -> &str {
        match self {
            Error::Product(_) => "product service",
            Error::Payment(_) => "payment service",
            _ => "database",
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        mall_common::error::to_status(&e)
    }
}

#[cfg(test)]
mod tests {
    use mall_common::error::reason_of;
    use tonic::{Code, Status};

    use super::{Error, reason};
    use crate::domain::{self, OrderStatus};

    #[test]
    fn refusals_keep_their_code_and_message_and_carry_a_reason() {
        let invalid = domain::cancel_reason(&"r".repeat(10_000)).expect_err("a reason too long");
        let invalid_message = invalid.to_string();
        let moved = |from, to| Error::IllegalTransition { from, to };
        let cases = [
            (
                Error::Invalid(invalid),
                Code::InvalidArgument,
                invalid_message.as_str(),
                reason::INVALID_REQUEST,
            ),
            (
                Error::OrderNotFound("o1".into()),
                Code::NotFound,
                "order o1 not found",
                reason::ORDER_NOT_FOUND,
            ),
            (
                moved(OrderStatus::Paid, OrderStatus::Cancelled),
                Code::FailedPrecondition,
                "order is PAID; it cannot become CANCELLED",
                reason::ORDER_NOT_PENDING,
            ),
            (
                moved(OrderStatus::Cancelled, OrderStatus::Paid),
                Code::FailedPrecondition,
                "order is CANCELLED; it cannot become PAID",
                reason::ORDER_NOT_PENDING,
            ),
            (
                moved(OrderStatus::Pending, OrderStatus::Refunded),
                Code::FailedPrecondition,
                "order is PENDING; it cannot become REFUNDED",
                reason::ORDER_NOT_PAID,
            ),
            (
                moved(OrderStatus::Paid, OrderStatus::Pending),
                Code::FailedPrecondition,
                "order is PAID; it cannot become PENDING",
                reason::ILLEGAL_TRANSITION,
            ),
            (
                Error::PaidByAnotherTransaction("o1".into()),
                Code::FailedPrecondition,
                "order o1 is already paid by another transaction",
                reason::PAID_BY_ANOTHER_TRANSACTION,
            ),
            (
                Error::Contended("o1".into()),
                Code::Aborted,
                "order o1 changed concurrently; retry",
                reason::ORDER_CONTENDED,
            ),
        ];
        for (error, code, message, why) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
            assert_eq!(reason_of(&status).as_deref(), Some(why), "{message}");
        }
    }

    #[test]
    fn failures_of_dependencies_carry_no_reason_and_hide_the_cause() {
        let status = Status::from(Error::Product(Status::unavailable("product down")));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("product service unavailable"),
            "{}",
            status.message()
        );
        assert_eq!(reason_of(&status), None);
        let status = Status::from(Error::Product(Status::internal("secret detail")));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"), "{}", status.message());
        let status = Status::from(Error::Corrupt("order o1 has status 9".into()));
        assert_eq!(status.code(), Code::Internal);
        assert_eq!(reason_of(&status), None);
        let status = Status::from(Error::Database(sqlx::Error::PoolClosed));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("database unavailable"),
            "{}",
            status.message()
        );
    }
}
