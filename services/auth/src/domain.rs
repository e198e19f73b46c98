//! Identity rules: what a valid username, password, email and phone are, and password hashing
//! (Argon2id). No I/O: the use cases that need the store or the cache are in `app.rs`.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use mall_types::{Email, Invalid};

use crate::error::Error;

/// The one message for an unknown user and a wrong password (no enumeration).
pub const BAD_CREDENTIALS: &str = "invalid username or password";

/// A username: 4–31 characters of `[A-Za-z0-9_]`.
pub fn username(value: &str) -> Result<String, Invalid> {
    let ok = (4..=31).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(value.to_string())
    } else {
        Err(Invalid::new(
            "username",
            "must be 4-31 characters of letters, digits and _",
        ))
    }
}

/// The canonical form of a valid username: ASCII lower case (usernames are ASCII). Accounts
/// are unique by it and logins look it up exactly.
pub fn canonical_username(valid: &str) -> String {
    valid.to_ascii_lowercase()
}

/// The canonical username a login names: surrounding whitespace trimmed, the registration rule
/// checked, then [`canonical_username`]. Every spelling of one account (`Victim`, `victim `)
/// is one lookup key and one lockout counter.
pub fn login_username(value: &str) -> Result<String, Invalid> {
    Ok(canonical_username(&username(value.trim())?))
}

/// A password: 8–128 characters.
pub fn password(value: &str) -> Result<&str, Invalid> {
    let chars = value.chars().count();
    if (8..=128).contains(&chars) {
        Ok(value)
    } else {
        Err(Invalid::new("password", "must be 8-128 characters"))
    }
}

/// A phone number: empty, a mainland-China mobile (`1[3-9]` + 9 digits) or E.164 (`+` then
/// 7–15 digits, not starting with 0).
pub fn phone(value: &str) -> Result<String, Invalid> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = value.is_empty()
        || (value.len() == 11
            && digits(value)
            && value.starts_with('1')
            && matches!(value.as_bytes()[1], b'3'..=b'9'))
        || value.strip_prefix('+').is_some_and(|rest| {
            digits(rest) && (7..=15).contains(&rest.len()) && !rest.starts_with('0')
        });
    if valid {
        Ok(value.to_string())
    } else {
        Err(Invalid::new(
            "phone",
            "must be a mobile number like 13800138000 or E.164 like +4915112345678",
        ))
    }
}

/// A valid registration.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Username.
    pub username: String,
    /// Email (lower-cased).
    pub email: Email,
    /// Phone or empty.
    pub phone: String,
}

impl Registration {
    /// Validates the request fields (the password separately, see [`password`]).
    pub fn parse(user: &str, mail: &str, tel: &str) -> Result<Self, Invalid> {
        Ok(Registration {
            username: username(user)?,
            email: Email::parse(mail)?,
            phone: phone(tel)?,
        })
    }
}

/// A valid account update: `None` leaves a field unchanged.
#[derive(Debug, Clone, Default)]
pub struct AccountPatch {
    /// New username.
    pub username: Option<String>,
    /// New email.
    pub email: Option<Email>,
    /// New phone.
    pub phone: Option<String>,
}

impl AccountPatch {
    /// Validates the request; empty fields mean "unchanged".
    pub fn parse(user: &str, mail: &str, tel: &str) -> Result<Self, Invalid> {
        Ok(AccountPatch {
            username: (!user.is_empty()).then(|| username(user)).transpose()?,
            email: (!mail.is_empty()).then(|| Email::parse(mail)).transpose()?,
            phone: (!tel.is_empty()).then(|| phone(tel)).transpose()?,
        })
    }
}

/// Argon2id with the configured cost.
#[derive(Clone)]
pub struct PasswordHashing {
    params: Params,
    /// A hash of a random password, verified against when the user does not exist so both
    /// paths take the same time.
    decoy: String,
}

impl PasswordHashing {
    /// Hashing with memory `memory_kib`, `iterations` passes and `parallelism` lanes.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, Error> {
        let params = Params::new(memory_kib, iterations, parallelism, None)
            .map_err(|e| Error::Hashing(e.to_string()))?;
        let mut hashing = PasswordHashing {
            params,
            decoy: String::new(),
        };
        hashing.decoy = hashing.hash(&uuid::Uuid::new_v4().to_string())?;
        Ok(hashing)
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// A PHC string for `password` with a fresh salt.
    pub fn hash(&self, password: &str) -> Result<String, Error> {
        self.argon2()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::Hashing(e.to_string()))
    }

    /// True when `password` matches `hash`; with no hash, spends the same effort and says no.
    pub fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let target = hash.unwrap_or(&self.decoy);
        let ok = self
            .argon2()
            .verify_password(password.as_bytes(), target)
            .is_ok();
        ok && hash.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_rules() {
        assert!(username("alice_01").is_ok());
        for bad in [
            "abc",
            "has space",
            "way_too_long_username_over_31chars",
            "ümlaut",
        ] {
            assert!(username(bad).is_err(), "{bad}");
        }
        assert_eq!(login_username("  Victim_1 ").unwrap(), "victim_1");
        assert_eq!(login_username("VICTIM_1").unwrap(), "victim_1");
        for bad in ["vic tim", "", "   ", "victim\u{0}", "vïctim"] {
            assert_eq!(login_username(bad).unwrap_err().field(), "username", "{bad}");
        }
        assert!(password("12345678").is_ok());
        assert!(password("1234567").is_err());
        assert!(password(&"x".repeat(129)).is_err());
        let email = |value: &str| Registration::parse("alice_01", value, "").map(|r| r.email);
        assert_eq!(
            email(" Alice@Example.COM ").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@.com",
            "a@b..com",
        ] {
            assert_eq!(email(bad).unwrap_err().field(), "email", "{bad}");
        }
        assert_eq!(
            username("abc").unwrap_err().to_string(),
            "username must be 4-31 characters of letters, digits and _"
        );
        assert!(username(&"u".repeat(31)).is_ok());
        assert!(username(&"u".repeat(32)).is_err());
        assert!(password(&"p".repeat(128)).is_ok());
        assert_eq!(
            password("short").unwrap_err().to_string(),
            "password must be 8-128 characters"
        );
        assert_eq!(phone("phone").unwrap_err().field(), "phone");
        for good in ["", "13800138000", "+4915112345678", "+1234567"] {
            assert!(phone(good).is_ok(), "{good}");
        }
        for bad in [
            "12800138000",
            "1380013800",
            "+0123456789",
            "+12345",
            "phone",
        ] {
            assert!(phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hashes_verify_and_decoys_never_do() {
        let h = PasswordHashing::new(256, 1, 1).unwrap();
        let hash = h.hash("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(h.verify("correct horse", Some(&hash)));
        assert!(!h.verify("wrong horse", Some(&hash)));
        assert!(!h.verify("correct horse", None));
    }
}
