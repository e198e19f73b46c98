//! What the user service knows on its own: the profile it caches. Account rules (username,
//! email, phone, password) belong to auth, which checks them.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
