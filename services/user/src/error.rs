//! Everything that can go wrong in the user service, and how each failure reaches a caller.
//!
//! Most of this service's answers are auth's: an [`Error::Upstream`] status is passed through
//! with its code and message (see `impl From<Error> for Status`), the rest go through
//! `mall_common::error::to_status` like every service's errors.

use mall_common::error::{ServiceError, ServiceErrorCode, to_status};
use mall_types::Invalid;
use tonic::{Code, Status};

/// Everything that can go wrong in the user service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input. The account fields are auth's to check (it owns their rules), so this
    /// service passes them on; the variant keeps its edge speaking the fleet's one vocabulary.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Auth has no live account for a valid token (deleted a moment ago).
    #[error("account {0} not found")]
    AccountNotFound(u64),
    /// Auth answered without the data its contract promises.
    #[error("auth answered {0} without its data")]
    IncompleteAnswer(&'static str),
    /// Auth refused the call, or token verification failed. Both statuses are already
    /// client-safe (auth's messages name the field or reason; transport failures are
    /// `UNAVAILABLE`), so they are passed through.
    #[error("{}: {}", .0.code(), .0.message())]
    Upstream(#[from] Status),
}

impl ServiceError for Error {
    fn code(&self) -> ServiceErrorCode {
        match self {
            Error::Invalid(_) => ServiceErrorCode::InvalidArgument,
            Error::AccountNotFound(_) => ServiceErrorCode::NotFound,
            Error::IncompleteAnswer(_) => ServiceErrorCode::Internal,
            Error::Upstream(status) => ServiceErrorCode::of_grpc(status.code()),
        }
    }

    fn unavailable_dependency(&self) -> &str {
        "auth"
    }
}

/// Auth's status as this service's answer: code and message only, since auth's response
/// metadata is not ours to echo. Auth already made the message client-safe (an internal error
/// there carries only its reference), so it is not replaced here; failures that point at auth's
/// health are logged. Auth's own `INTERNAL` or `UNKNOWN` is auth's bug, not this service's:
/// the caller hears `UNAVAILABLE` with auth's message (and reference).
fn pass_through(status: Status) -> Status {
    let code = status.code();
    if matches!(
        code,
        Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Unknown
    ) {
        tracing::warn!(code = ?code, message = status.message(), "auth call failed");
    }
    let code = match code {
        Code::Internal | Code::Unknown | Code::DataLoss => Code::Unavailable,
        code => code,
    };
    Status::new(code, status.message())
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            // Not `to_status`: it would replace auth's message (and its reference id) with one
            // of ours, and it cannot express codes such as `UNKNOWN` that auth may answer with.
            Error::Upstream(status) => pass_through(status),
            e => to_status(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_statuses_keep_their_code_and_message() {
        let status: Status = Error::from(Status::already_exists("username taken")).into();
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status.message(), "username taken");
        // An internal error in auth keeps auth's reference, so the two logs can be matched, but
        // it is auth's failure, not this service's: UNAVAILABLE here.
        let status: Status = Error::from(Status::internal("internal error (ref abc)")).into();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(status.message(), "internal error (ref abc)");
        let status: Status = Error::from(Status::unknown("odd")).into();
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[test]
    fn invalid_input_is_invalid_argument_naming_the_field() {
        let status = Status::from(Error::from(Invalid::new("token", "is required")));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "token is required");
    }

    #[test]
    fn own_errors_map_to_auth_codes() {
        assert_eq!(
            Status::from(Error::AccountNotFound(7)).code(),
            Code::NotFound
        );
        assert_eq!(
            Status::from(Error::AccountNotFound(7)).message(),
            "account 7 not found"
        );
        let internal = Status::from(Error::IncompleteAnswer("Login"));
        assert_eq!(internal.code(), Code::Internal);
        assert!(
            !internal.message().contains("Login"),
            "{}",
            internal.message()
        );
    }
}
