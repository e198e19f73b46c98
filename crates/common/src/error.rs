//! Turning failures into `tonic::Status` in one place.
//!
//! Each service has one error enum with a `From<Error> for Status`; its infrastructure arms call
//! the helpers here, which log the whole cause chain once (with a reference id) and give the
//! client a short, safe message: never SQL, internals or secrets.

use std::error::Error as StdError;
use std::fmt::Write as _;

use tonic::Status;

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

/// A database error: pool exhaustion or a lost connection is `UNAVAILABLE`, the rest `INTERNAL`.
pub fn database(err: &sqlx::Error) -> Status {
    if crate::store::is_unavailable(err) {
        unavailable("database", err)
    } else {
        internal(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_hide_the_cause() {
        let err = sqlx::Error::Protocol("SELECT secret_column FROM t".into());
        let status = database(&err);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(!status.message().contains("SELECT"), "{}", status.message());
        let status = database(&sqlx::Error::PoolTimedOut);
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
}
