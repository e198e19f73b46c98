//! Everything that can go wrong in the cart service, and the gRPC code each failure reaches a
//! caller with (through `mall_common::error::to_status`).

use mall_common::error::{ServiceError, ServiceErrorCode, to_status};
use mall_types::Invalid;
use mall_types::money::{MAX_ORDER_LINES, MAX_QUANTITY};
use tonic::{Code, Status};

/// Everything that can go wrong in the cart service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The catalog has no (live) product with this id.
    #[error("product {0} not found")]
    ProductNotFound(u64),
    /// Adding would take the line past [`MAX_QUANTITY`].
    #[error("cart line for product {0} would exceed {MAX_QUANTITY}")]
    LineFull(u64),
    /// A new line in a cart that holds [`MAX_ORDER_LINES`] lines already.
    #[error("cart already holds {MAX_ORDER_LINES} lines; remove one before adding another product")]
    CartFull,
    /// A writer that bypassed the cart's lock created the line meanwhile; the client may retry.
    #[error("cart line for product {0} is changing concurrently; retry")]
    Contended(u64),
    /// The catalog refused or failed the existence check (any code but `DEADLINE_EXCEEDED`;
    /// build it with [`Error::catalog`]).
    #[error("product catalog answered {}: {}", .0.code(), .0.message())]
    Catalog(Status),
    /// The catalog did not answer the existence check in time.
    #[error("product catalog did not answer in time")]
    CatalogTimedOut(#[source] Status),
    /// The catalog answered without the data its contract promises.
    #[error("product catalog answered GetProduct without a product")]
    IncompleteAnswer,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

mall_common::as_database_error!(Error);

impl Error {
    /// The error for a failed call to the catalog: a timeout is its own variant, so the client
    /// hears `DEADLINE_EXCEEDED` with our message rather than the catalog's.
    pub fn catalog(status: Status) -> Self {
        if status.code() == Code::DeadlineExceeded {
            // `to_status` logs only internal and unavailable causes; a slow catalog is worth a
            // warning too, with what the catalog (or the client stack) said.
            tracing::warn!(error = %status.message(), "product catalog timed out");
            Error::CatalogTimedOut(status)
        } else {
            Error::Catalog(status)
        }
    }
}

impl ServiceError for Error {
    fn code(&self) -> ServiceErrorCode {
        match self {
            Error::Invalid(_) => ServiceErrorCode::InvalidArgument,
            Error::ProductNotFound(_) => ServiceErrorCode::NotFound,
            Error::LineFull(_) | Error::CartFull => ServiceErrorCode::FailedPrecondition,
            // A concurrency conflict, not an unhealthy instance: ABORTED tells the client to retry
            // the call without balancers ejecting the instance or breakers counting a failure.
            Error::Contended(_) => ServiceErrorCode::Aborted,
            // Down, shedding load, or failing on its own (the catalog's INTERNAL is the
            // catalog's bug, counted there): to our caller the catalog is unavailable.
            Error::Catalog(status)
                if matches!(
                    status.code(),
                    Code::Unavailable
                        | Code::ResourceExhausted
                        | Code::Cancelled
                        | Code::Internal
                        | Code::Unknown
                        | Code::DataLoss
                ) =>
            {
                ServiceErrorCode::Unavailable
            }
            Error::CatalogTimedOut(_) => ServiceErrorCode::DeadlineExceeded,
            // Anything else (the catalog found our request invalid, refused our credentials, or
            // answered without a product) is a bug on this side; its message is not ours to
            // echo.
            Error::Catalog(_) | Error::IncompleteAnswer => ServiceErrorCode::Internal,
            Error::Database(e) => mall_common::store::error_code(e),
        }
    }

    fn unavailable_dependency(&self) -> &str {
        match self {
            Error::Catalog(_) => "product catalog",
            _ => "database",
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        to_status(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_contract_codes() {
        assert_eq!(
            Status::from(Error::ProductNotFound(5)).code(),
            Code::NotFound
        );
        let full = Status::from(Error::LineFull(5));
        assert_eq!(full.code(), Code::FailedPrecondition);
        assert_eq!(full.message(), "cart line for product 5 would exceed 999");
        assert_eq!(Status::from(Error::Contended(5)).code(), Code::Aborted);
        let full = Status::from(Error::CartFull);
        assert_eq!(full.code(), Code::FailedPrecondition);
        assert_eq!(
            full.message(),
            "cart already holds 100 lines; remove one before adding another product"
        );
        let down = Status::from(Error::Catalog(Status::unavailable("connection refused")));
        assert_eq!(down.code(), Code::Unavailable);
        assert!(!down.message().contains("refused"), "{}", down.message());
        for failing in [
            Status::internal("internal error (ref x)"),
            Status::resource_exhausted("shed"),
            Status::unknown("odd"),
        ] {
            let answer = Status::from(Error::Catalog(failing));
            assert_eq!(answer.code(), Code::Unavailable, "{answer:?}");
            assert!(answer.message().starts_with("product catalog unavailable"));
        }
        let odd = Status::from(Error::Catalog(Status::invalid_argument("SELECT ...")));
        assert_eq!(odd.code(), Code::Internal);
        assert!(!odd.message().contains("SELECT"), "{}", odd.message());
    }

    #[test]
    fn catalog_failures_keep_their_codes_and_messages() {
        let down = Status::from(Error::catalog(Status::unavailable("connection refused")));
        assert_eq!(down.code(), Code::Unavailable);
        assert!(
            down.message().starts_with("product catalog unavailable"),
            "{}",
            down.message()
        );
        let slow = Status::from(Error::catalog(Status::deadline_exceeded("timeout 5ms")));
        assert_eq!(slow.code(), Code::DeadlineExceeded);
        assert_eq!(slow.message(), "product catalog did not answer in time");
        let empty = Status::from(Error::IncompleteAnswer);
        assert_eq!(empty.code(), Code::Internal);
        assert!(empty.message().starts_with("internal error (ref "));
        let db = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(db.code(), Code::Unavailable);
        assert!(db.message().starts_with("database unavailable"));
        let invalid = Status::from(Error::Invalid(Invalid::new("user_id", "is required")));
        assert_eq!(invalid.code(), Code::InvalidArgument);
        assert_eq!(invalid.message(), "user_id is required");
    }
}
