//! Who may call which RPC.
//!
//! Every service declares an [`AccessTable`]: each RPC is [`Access::Public`], [`Access::User`]
//! (a signed-in user; handlers then check ownership with `Caller::authorize`),
//! [`Access::Internal`] (service-to-service only) or [`Access::Admin`]. The server
//! ([`crate::server`]) looks the table up for every request and verifies the bearer token against
//! it (see [`super::Tokens::admit`]) before any handler runs, so no handler can forget the
//! check; an RPC missing from the table is refused (fail closed).

/// The audience of one RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, no token.
    Public,
    /// A signed-in end user (on their own data) or an admin.
    User,
    /// Another service of the fleet only.
    Internal,
    /// The `admin` role only.
    Admin,
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
