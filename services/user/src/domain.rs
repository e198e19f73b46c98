//! What the user service knows on its own: the profile it caches and the ways a request can
//! fail. Account rules (username, email, phone, password) belong to auth, which checks them.

use mall_types::Invalid;
use serde::{Deserialize, Serialize};
use tonic::{Code, Status};

/// A user's profile as cached between `Info` calls: what `Info` returns and nothing more — no
/// role, no password hash, no session data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Account id.
    pub user_id: u64,
    /// Current username.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Phone number, empty when none was given.
    pub phone: String,
}

/// The cache key of `user_id`'s profile; the `v1` changes whenever [`Profile`] does, so old
/// entries are never decoded as the new shape.
pub fn profile_cache_key(user_id: u64) -> String {
    format!("user:profile:v1:{user_id}")
}

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

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(e) => Status::invalid_argument(e.to_string()),
            Error::AccountNotFound(_) => Status::not_found(e.to_string()),
            Error::IncompleteAnswer(_) => mall_common::error::internal(&e),
            Error::Upstream(status) => {
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::Unknown
                ) {
                    tracing::warn!(code = ?status.code(), message = status.message(), "auth call failed");
                }
                // Code and message only: auth's response metadata is not ours to echo.
                Status::new(status.code(), status.message())
            }
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
        let internal = Status::from(Error::IncompleteAnswer("Login"));
        assert_eq!(internal.code(), Code::Internal);
        assert!(
            !internal.message().contains("Login"),
            "{}",
            internal.message()
        );
    }

    #[test]
    fn profiles_are_cached_without_secrets() {
        let profile = Profile {
            user_id: 7,
            username: "alice".into(),
            email: "alice@example.com".into(),
            phone: String::new(),
        };
        let json = serde_json::to_string(&profile).unwrap();
        assert_eq!(
            json,
            r#"{"user_id":7,"username":"alice","email":"alice@example.com","phone":""}"#
        );
        assert_eq!(profile_cache_key(7), "user:profile:v1:7");
    }
}
