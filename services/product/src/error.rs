//! Everything that can go wrong in the catalog, and how each failure reaches a caller: its
//! gRPC code and, for business refusals, the machine-readable [`reason`] checkout acts on.

use mall_types::Invalid;

/// Everything that can go wrong in the catalog.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// No such (live) product.
    #[error("product {0} not found")]
    ProductNotFound(u64),
    /// A reservation line asks for more than is in stock.
    #[error("insufficient stock for product {0}")]
    InsufficientStock(u64),
    /// The reservation id was used for different items.
    #[error("reservation {0} already exists with different items")]
    ReservationConflict(String),
    /// The reservation was released; its id cannot reserve again.
    #[error("reservation {0} was released")]
    ReservationReleased(String),
    /// A stored row cannot be read back (a bug, or a hand-edited database).
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

mall_common::as_database_error!(Error);

/// The machine-readable reasons the catalog's refusals carry, declared with the contract.
pub use mall_proto::reason;

impl mall_common::error::ServiceError for Error {
    fn code(&self) -> mall_common::error::ServiceErrorCode {
        use mall_common::error::ServiceErrorCode as Code;
        match self {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::ProductNotFound(_) => Code::NotFound,
            Error::InsufficientStock(_) | Error::ReservationReleased(_) => Code::FailedPrecondition,
            Error::ReservationConflict(_) => Code::AlreadyExists,
            Error::Corrupt(_) => Code::Internal,
            Error::Database(e) => mall_common::store::error_code(e),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            Error::Invalid(_) => Some(reason::INVALID_REQUEST),
            Error::ProductNotFound(_) => Some(reason::PRODUCT_NOT_FOUND),
            Error::InsufficientStock(_) => Some(reason::INSUFFICIENT_STOCK),
            Error::ReservationConflict(_) => Some(reason::RESERVATION_CONFLICT),
            Error::ReservationReleased(_) => Some(reason::RESERVATION_RELEASED),
            Error::Corrupt(_) | Error::Database(_) => None,
        }
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

    use super::{Error, reason};

    #[test]
    fn refusals_keep_their_code_and_message_and_carry_a_reason() {
        let too_many = vec!["tag".to_string(); crate::domain::MAX_CATEGORIES + 1];
        let invalid = crate::domain::categories(&too_many).expect_err("too many categories");
        let invalid_message = invalid.to_string();
        let cases = [
            (
                Error::Invalid(invalid),
                Code::InvalidArgument,
                invalid_message.as_str(),
                reason::INVALID_REQUEST,
            ),
            (
                Error::ProductNotFound(7),
                Code::NotFound,
                "product 7 not found",
                reason::PRODUCT_NOT_FOUND,
            ),
            (
                Error::InsufficientStock(7),
                Code::FailedPrecondition,
                "insufficient stock for product 7",
                reason::INSUFFICIENT_STOCK,
            ),
            (
                Error::ReservationConflict("r1".into()),
                Code::AlreadyExists,
                "reservation r1 already exists with different items",
                reason::RESERVATION_CONFLICT,
            ),
            (
                Error::ReservationReleased("r1".into()),
                Code::FailedPrecondition,
                "reservation r1 was released",
                reason::RESERVATION_RELEASED,
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
    fn database_failures_carry_no_reason_and_hide_the_cause() {
        let status = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("database unavailable"),
            "{}",
            status.message()
        );
        assert_eq!(reason_of(&status), None);
        let status = Status::from(Error::Database(sqlx::Error::Protocol("SELECT x".into())));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("SELECT"), "{}", status.message());
        assert_eq!(reason_of(&status), None);
    }
}
