//! Everything that can go wrong at the checkout edge, in one enum, and its one mapping to a
//! `Status` (through `mall_common::error::ServiceError`). The saga's own outcomes are
//! `downstream::StepError` and `saga::Failure`, which map to statuses themselves.

use mall_common::error::{ServiceError, ServiceErrorCode};
use mall_types::Invalid;

/// Everything that can go wrong at the checkout edge (the saga's own outcomes are statuses).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A checkout with this key is still running.
    #[error("checkout in progress")]
    InProgress,
    /// The client reused an idempotency key for a different request.
    #[error("idempotency_key was already used for a different checkout")]
    KeyReused,
    /// The operator switched the payment method off (`features.<method> = false`).
    #[error("payment method {0} is switched off; pay by another method")]
    MethodDisabled(&'static str),
    /// A stored row breaks an invariant the schema should guarantee.
    #[error("stored saga is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

mall_common::as_database_error!(Error);

impl ServiceError for Error {
    fn code(&self) -> ServiceErrorCode {
        match self {
            Error::Invalid(_) | Error::KeyReused => ServiceErrorCode::InvalidArgument,
            Error::InProgress => ServiceErrorCode::Aborted,
            Error::MethodDisabled(_) => ServiceErrorCode::FailedPrecondition,
            Error::Corrupt(_) => ServiceErrorCode::Internal,
            Error::Database(e) => mall_common::store::error_code(e),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        matches!(self, Error::MethodDisabled(_)).then_some("PAYMENT_METHOD_DISABLED")
    }

    fn unavailable_dependency(&self) -> &str {
        "database"
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

    use super::Error;
    use crate::domain::NAME_TEXT;

    #[test]
    fn refusals_keep_their_code_and_message() {
        let invalid = NAME_TEXT.parse("", "firstname").expect_err("an empty name");
        let invalid_message = invalid.to_string();
        let cases = [
            (
                Error::Invalid(invalid),
                Code::InvalidArgument,
                invalid_message.as_str(),
            ),
            (Error::InProgress, Code::Aborted, "checkout in progress"),
            (
                Error::KeyReused,
                Code::InvalidArgument,
                "idempotency_key was already used for a different checkout",
            ),
        ];
        for (error, code, message) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
            assert_eq!(reason_of(&status), None, "{message}");
        }
    }

    #[test]
    fn store_failures_hide_the_cause() {
        let status = Status::from(Error::Corrupt("saga s1 has step 9".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("s1"), "{}", status.message());
        let status = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("database unavailable"),
            "{}",
            status.message()
        );
        let status = Status::from(Error::Database(sqlx::Error::Protocol("SELECT x".into())));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"), "{}", status.message());
    }
}
