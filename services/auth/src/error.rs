//! Everything that can go wrong in auth, and the gRPC code each failure reaches a caller with.
//!
//! Own errors go through `mall_common::error::to_status`; a status the platform already made
//! (token verification, revocation) is passed through as it is (see `impl From<Error> for
//! Status`).

use mall_common::cache::CacheError;
use mall_common::error::{ServiceError, ServiceErrorCode, to_status};
use mall_types::Invalid;
use tonic::Status;

/// The one message for an unknown user and a wrong password (no enumeration).
pub const BAD_CREDENTIALS: &str = "invalid username or password";

/// Everything that can go wrong in auth.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The username is taken.
    #[error("username is already taken")]
    UsernameTaken,
    /// No active account with that id.
    #[error("account not found")]
    AccountNotFound,
    /// The account is banned or deleted.
    #[error("account is disabled")]
    AccountDisabled,
    /// Unknown user or wrong password.
    #[error("{BAD_CREDENTIALS}")]
    BadCredentials,
    /// Too many failed logins for this username.
    #[error("too many failed logins; try again later")]
    LockedOut,
    /// A refresh token that is unknown, expired or revoked.
    #[error("invalid refresh token")]
    BadRefreshToken,
    /// A rotated refresh token was presented again: the session is revoked.
    #[error("refresh token reuse detected; the session was revoked")]
    RefreshTokenReused,
    /// Every password-hashing slot stayed busy for `accounts.argon2.queue_wait`.
    #[error("too many logins in progress; retry shortly")]
    HashingBusy,
    /// The shared cache refused the copy of the revocations.
    #[error("revocation copy failed: {0}")]
    RevocationCopy(CacheError),
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// The cache holding the failed-login counters and locks failed.
    #[error(transparent)]
    LoginCounter(CacheError),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A status from the platform (tokens, cache) passed through.
    #[error("{0}")]
    Status(#[from] Status),
}

mall_common::as_database_error!(Error);

impl ServiceError for Error {
    fn code(&self) -> ServiceErrorCode {
        match self {
            Error::Invalid(_) => ServiceErrorCode::InvalidArgument,
            Error::UsernameTaken => ServiceErrorCode::AlreadyExists,
            Error::AccountNotFound => ServiceErrorCode::NotFound,
            Error::AccountDisabled => ServiceErrorCode::PermissionDenied,
            Error::BadCredentials | Error::BadRefreshToken | Error::RefreshTokenReused => {
                ServiceErrorCode::Unauthenticated
            }
            Error::LockedOut | Error::HashingBusy => ServiceErrorCode::ResourceExhausted,
            Error::RevocationCopy(_) => ServiceErrorCode::Unavailable,
            Error::Hashing(_) => ServiceErrorCode::Internal,
            Error::LoginCounter(_) => ServiceErrorCode::Unavailable,
            Error::Database(e) => mall_common::store::error_code(e),
            Error::Status(status) => ServiceErrorCode::of_grpc(status.code()),
        }
    }

    fn unavailable_dependency(&self) -> &str {
        match self {
            Error::LoginCounter(_) => "login counter",
            Error::RevocationCopy(_) => "cache",
            _ => "database",
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            // Made by the platform, safe and already logged there: `to_status` would replace
            // its message and drop its details.
            Error::Status(status) => status,
            e => to_status(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn refusals_keep_their_codes_and_messages() {
        let cases = [
            (
                Error::UsernameTaken,
                Code::AlreadyExists,
                "username is already taken",
            ),
            (Error::AccountNotFound, Code::NotFound, "account not found"),
            (
                Error::AccountDisabled,
                Code::PermissionDenied,
                "account is disabled",
            ),
            (
                Error::BadCredentials,
                Code::Unauthenticated,
                BAD_CREDENTIALS,
            ),
            (
                Error::BadRefreshToken,
                Code::Unauthenticated,
                "invalid refresh token",
            ),
            (
                Error::RefreshTokenReused,
                Code::Unauthenticated,
                "refresh token reuse detected; the session was revoked",
            ),
            (
                Error::LockedOut,
                Code::ResourceExhausted,
                "too many failed logins; try again later",
            ),
            (
                Error::Invalid(Invalid::new("username", "is required")),
                Code::InvalidArgument,
                "username is required",
            ),
        ];
        for (error, code, message) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn failures_hide_their_cause_and_platform_statuses_pass_through() {
        let status = Status::from(Error::Hashing("argon2 params".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("argon2"), "{}", status.message());
        let status = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().starts_with("database unavailable"));
        let status = Status::from(Error::Status(Status::unauthenticated("token expired")));
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "token expired");
    }
}
