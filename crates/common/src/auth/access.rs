//! Who may call which RPC.
//!
//! Every service declares an [`AccessTable`]: each RPC is [`Access::Public`], [`Access::User`]
//! (a signed-in user, handlers then check ownership with `Caller::authorize`; or one of the
//! services it names acting for a user),
//! [`Access::Internal`] (only the services it names) or [`Access::Admin`]. The server
//! ([`crate::server`]) looks the table up for every request and verifies the bearer token against
//! it (see [`super::Tokens::admit`]) before any handler runs, so no handler can forget the
//! check; an RPC missing from its table is refused (fail closed).
//!
//! The calling service of an internal RPC is the subject of its service token, which must be
//! addressed to the answering service (`aud`); with mutual TLS on it is the name in the caller's
//! client certificate instead (see [`crate::tls`]). Any other service is `PERMISSION_DENIED`.

use mall_types::service::ServiceName;

/// The audience of one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token.
    Public,
    /// A signed-in end user (on their own data), an admin, or one of these services acting for
    /// a user (the saga reading the cart, say); any other service is `PERMISSION_DENIED`.
    User(&'static [ServiceName]),
    /// Only these services of the fleet (everyone else is `PERMISSION_DENIED`).
    Internal(&'static [ServiceName]),
    /// The `admin` role only.
    Admin,
}

impl Access {
    /// Whether the service called `caller` may call an RPC of this audience.
    pub fn admits_service(&self, caller: &str) -> bool {
        match self {
            Access::Internal(allowed) | Access::User(allowed) => {
                allowed.iter().any(|s| s.as_str() == caller)
            }
            Access::Public => true,
            Access::Admin => false,
        }
    }
}

/// The access rules of one gRPC service.
#[derive(Debug, Clone, Copy)]
pub struct AccessTable {
    /// Fully-qualified service name, e.g. `tiktokmall.product.v1.ProductCatalogService`.
    pub service: &'static str,
    /// RPC name → audience.
    pub rules: &'static [(&'static str, Access)],
}

impl AccessTable {
    /// The audience of `method`, `None` when the table has no rule for it.
    pub fn access(&self, method: &str) -> Option<Access> {
        self.rules
            .iter()
            .find(|(name, _)| *name == method)
            .map(|(_, access)| *access)
    }
}
