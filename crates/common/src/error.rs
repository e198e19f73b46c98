//! The error vocabulary every service speaks, and the one place failures become `tonic::Status`.
//!
//! Each service has one error enum and implements [`ServiceError`] for it: which
//! [`ServiceErrorCode`] each variant is, and for business refusals a machine-readable
//! [`ServiceError::reason`] (`INSUFFICIENT_STOCK`, `CARD_DECLINED`, ...). [`to_status`] turns it
//! into a `Status`: it logs the whole cause chain of internal and unavailable errors once (with
//! a reference id) and gives the client a short, safe message, never SQL, internals or secrets.
//! A reason travels as a `google.rpc.ErrorInfo` detail (domain [`ERROR_DOMAIN`]), so callers
//! match on [`reason_of`], never on message text.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::Arc;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every reason this fleet sends.
pub const ERROR_DOMAIN: &str = "tiktokmall";

/// What kind of failure an error is; decides its gRPC code and how it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceErrorCode {
    /// The request broke a rule (`INVALID_ARGUMENT`).
    InvalidArgument,
    /// The thing asked for does not exist (`NOT_FOUND`).
    NotFound,
    /// It exists already, differently (`ALREADY_EXISTS`).
    AlreadyExists,
    /// The system is not in a state that allows it (`FAILED_PRECONDITION`).
    FailedPrecondition,
    /// A conflict with a concurrent change; trying again may succeed (`ABORTED`).
    Aborted,
    /// No or a bad token (`UNAUTHENTICATED`).
    Unauthenticated,
    /// The caller may not do this (`PERMISSION_DENIED`).
    PermissionDenied,
    /// A limit was hit (`RESOURCE_EXHAUSTED`).
    ResourceExhausted,
    /// Time ran out (`DEADLINE_EXCEEDED`).
    DeadlineExceeded,
    /// A dependency is down or overloaded (`UNAVAILABLE`); the message says only which one.
    Unavailable,
    /// A bug in the service answering (`INTERNAL`); the client sees only a reference.
    Internal,
}

impl ServiceErrorCode {
    /// The kind of a status another service answered with, for errors that pass it on; codes
    /// outside the vocabulary (`UNKNOWN`, `CANCELLED`, `DATA_LOSS`, ...) count as internal.
    pub fn of_grpc(code: Code) -> Self {
        match code {
            Code::InvalidArgument => ServiceErrorCode::InvalidArgument,
            Code::NotFound => ServiceErrorCode::NotFound,
            Code::AlreadyExists => ServiceErrorCode::AlreadyExists,
            Code::FailedPrecondition => ServiceErrorCode::FailedPrecondition,
            Code::Aborted => ServiceErrorCode::Aborted,
            Code::Unauthenticated => ServiceErrorCode::Unauthenticated,
            Code::PermissionDenied => ServiceErrorCode::PermissionDenied,
            Code::ResourceExhausted => ServiceErrorCode::ResourceExhausted,
            Code::DeadlineExceeded => ServiceErrorCode::DeadlineExceeded,
            Code::Unavailable => ServiceErrorCode::Unavailable,
            _ => ServiceErrorCode::Internal,
        }
    }

    /// The gRPC code.
    pub fn grpc(self) -> Code {
        match self {
            ServiceErrorCode::InvalidArgument => Code::InvalidArgument,
            ServiceErrorCode::NotFound => Code::NotFound,
            ServiceErrorCode::AlreadyExists => Code::AlreadyExists,
            ServiceErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ServiceErrorCode::Aborted => Code::Aborted,
            ServiceErrorCode::Unauthenticated => Code::Unauthenticated,
            ServiceErrorCode::PermissionDenied => Code::PermissionDenied,
            ServiceErrorCode::ResourceExhausted => Code::ResourceExhausted,
            ServiceErrorCode::DeadlineExceeded => Code::DeadlineExceeded,
            ServiceErrorCode::Unavailable => Code::Unavailable,
            ServiceErrorCode::Internal => Code::Internal,
        }
    }
}

/// An error a service answers with. Implement it once per service error enum; the edge calls
/// [`to_status`].
pub trait ServiceError: StdError + 'static {
    /// The kind of failure.
    fn code(&self) -> ServiceErrorCode;

    /// A machine-readable reason (`SCREAMING_SNAKE_CASE`) for a business refusal callers may
    /// act on; `None` for the rest.
    fn reason(&self) -> Option<&'static str> {
        None
    }

    /// For [`ServiceErrorCode::Unavailable`]: the dependency to name in the message
    /// (`"database"`, `"payment"`).
    fn unavailable_dependency(&self) -> &str {
        "dependency"
    }
}

/// The status for `err`: see the module docs.
pub fn to_status<E: ServiceError>(err: &E) -> Status {
    match err.code() {
        ServiceErrorCode::Internal => internal(err),
        ServiceErrorCode::Unavailable => unavailable(err.unavailable_dependency(), err),
        code => match err.reason() {
            Some(reason) => with_reason(code.grpc(), err.to_string(), reason),
            None => Status::new(code.grpc(), err.to_string()),
        },
    }
}

/// A status with `code`, `message` and `reason` as an `ErrorInfo` detail.
pub fn with_reason(code: Code, message: impl Into<String>, reason: &str) -> Status {
    let details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, HashMap::new());
    Status::with_error_details(code, message, details)
}

/// The reason a status carries (see [`with_reason`]), if it carries one of this fleet's.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_details_error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.reason)
}

/// Why a call failed before its request left this process. The mark travels as the status's
/// source, which stays in this process (a source is never sent over the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// No instance of the service is known.
    NoInstance,
    /// The target's circuit breaker is open.
    CircuitOpen,
    /// The deadline was gone before the call.
    NoTimeLeft,
    /// No connection could be made to the instance picked.
    Unreachable,
}

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request was not sent")
    }
}

impl StdError for NotSent {}

/// Marks `status` as a failure before sending, for `why`.
pub fn not_sent(why: NotSent, mut status: Status) -> Status {
    status.set_source(Arc::new(why));
    status
}

/// Why a call never left this process, if it did not.
pub fn not_sent_reason(status: &Status) -> Option<NotSent> {
    StdError::source(status).and_then(|s| s.downcast_ref::<NotSent>().copied())
}

/// Whether a failed call is known never to have reached the service: no instance was known,
/// the circuit was open, no connection could be made, or the deadline was gone before the call.
/// Any other failure (a connection lost mid-call, a timeout, the service's own error) may have
/// been acted on, which is what a non-idempotent call like `Charge` must assume.
pub fn never_sent(status: &Status) -> bool {
    not_sent_reason(status).is_some()
}

/// The error and its sources joined with `: `.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

fn reference() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// A bug or unexpected failure: logs the chain, returns `INTERNAL "internal error (ref …)"`.
pub fn internal(err: &(dyn StdError + 'static)) -> Status {
    let reference = reference();
    tracing::error!(error.reference = %reference, error = %cause_chain(err), "internal error");
    Status::internal(format!("internal error (ref {reference})"))
}

/// A dependency is down or overloaded: logs the chain, returns `UNAVAILABLE "<what> unavailable"`.
pub fn unavailable(what: &str, err: &(dyn StdError + 'static)) -> Status {
    let reference = reference();
    tracing::warn!(error.reference = %reference, error = %cause_chain(err), "{what} unavailable");
    Status::unavailable(format!("{what} unavailable (ref {reference})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_on_codes_keep_their_kind() {
        for kind in [
            ServiceErrorCode::InvalidArgument,
            ServiceErrorCode::NotFound,
            ServiceErrorCode::AlreadyExists,
            ServiceErrorCode::FailedPrecondition,
            ServiceErrorCode::Aborted,
            ServiceErrorCode::Unauthenticated,
            ServiceErrorCode::PermissionDenied,
            ServiceErrorCode::ResourceExhausted,
            ServiceErrorCode::DeadlineExceeded,
            ServiceErrorCode::Unavailable,
            ServiceErrorCode::Internal,
        ] {
            assert_eq!(ServiceErrorCode::of_grpc(kind.grpc()), kind);
        }
        for code in [
            Code::Unknown,
            Code::Cancelled,
            Code::DataLoss,
            Code::Unimplemented,
        ] {
            assert_eq!(ServiceErrorCode::of_grpc(code), ServiceErrorCode::Internal);
        }
    }

    #[derive(Debug, thiserror::Error)]
    enum Sample {
        #[error("out of stock")]
        OutOfStock,
        #[error("broken: {0}")]
        Broken(&'static str),
    }

    impl ServiceError for Sample {
        fn code(&self) -> ServiceErrorCode {
            match self {
                Sample::OutOfStock => ServiceErrorCode::FailedPrecondition,
                Sample::Broken(_) => ServiceErrorCode::Internal,
            }
        }
        fn reason(&self) -> Option<&'static str> {
            matches!(self, Sample::OutOfStock).then_some("INSUFFICIENT_STOCK")
        }
    }

    #[test]
    fn reasons_travel_as_error_info_and_internals_stay_hidden() {
        let status = to_status(&Sample::OutOfStock);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "out of stock");
        assert_eq!(reason_of(&status).as_deref(), Some("INSUFFICIENT_STOCK"));
        // The reason survives the wire encoding of the status.
        let wire = status.clone().into_http::<tonic::body::Body>();
        let decoded = Status::from_header_map(wire.headers()).unwrap();
        assert_eq!(reason_of(&decoded).as_deref(), Some("INSUFFICIENT_STOCK"));

        let status = to_status(&Sample::Broken("secret detail"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"), "{}", status.message());
        assert_eq!(reason_of(&status), None);
        assert_eq!(reason_of(&Status::failed_precondition("x")), None);
    }
}
