//! [`Role`] and [`TokenKind`], spelled as the tokens carry them (the `role` and `typ` claims).

use serde::{Deserialize, Serialize};

/// Who a token speaks for: the `role` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An end user: acts on their own data.
    User,
    /// An administrator: acts on anyone's data and may call admin RPCs.
    Admin,
    /// Another service of the fleet (service tokens).
    Service,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 3] = [Role::User, Role::Admin, Role::Service];

    /// The claim value (`"user"`, `"admin"`, `"service"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

crate::macros::named_enum!(Role, "role");

/// What a token is for: the `typ` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// An end user's access token (issued by auth at login, refresh and registration).
    Access,
    /// A service token (minted by each service for its outgoing calls).
    Service,
}

impl TokenKind {
    /// Every kind.
    pub const ALL: [TokenKind; 2] = [TokenKind::Access, TokenKind::Service];

    /// The claim value (`"access"`, `"service"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::Access => "access",
            TokenKind::Service => "service",
        }
    }
}

crate::macros::named_enum!(TokenKind, "typ");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_spelled_as_the_claims_carry_them() {
        for (role, name) in [
            (Role::User, "user"),
            (Role::Admin, "admin"),
            (Role::Service, "service"),
        ] {
            assert_eq!(role.as_str(), name);
            assert_eq!(name.parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{name}\""));
        }
        assert_eq!("Admin".parse::<Role>().unwrap_err().field(), "role");
        assert!("".parse::<Role>().is_err());
    }

    #[test]
    fn token_kinds_are_spelled_as_the_claims_carry_them() {
        for (kind, name) in [
            (TokenKind::Access, "access"),
            (TokenKind::Service, "service"),
        ] {
            assert_eq!(kind.to_string(), name);
            assert_eq!(name.parse::<TokenKind>(), Ok(kind));
        }
        assert_eq!("refresh".parse::<TokenKind>().unwrap_err().field(), "typ");
    }
}
