//! Who may call which RPC.
//!
//! Every service declares an [`AccessTable`]: each RPC is [`Access::Public`], [`Access::User`]
//! (an end user acting on their own data), [`Access::Internal`] (service-to-service only) or
//! [`Access::Admin`]. The server ([`crate::server`]) looks the table up for every request and asks
//! the installed [`Gate`] to admit it, so no handler can forget the check; an RPC missing from the
//! table is refused (fail closed).
//!
//! The only gate today is [`OpenGate`], which admits everything. It is the single hook the
//! identity work replaces with JWT and service-token verification; until then the `online`
//! profile refuses to start with it (see [`Gate::is_open`]), so admin and internal RPCs are never
//! open in production.

use std::sync::Arc;

use tonic::Status;

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

/// Admits or refuses a request for an RPC of a given [`Access`].
pub trait Gate: Send + Sync + 'static {
    /// `Ok` to let the call through; otherwise the status to answer with
    /// (`UNAUTHENTICATED` / `PERMISSION_DENIED`).
    fn admit(&self, access: Access, headers: &http::HeaderMap) -> Result<(), Status>;

    /// True when the gate admits non-public RPCs without credentials; the `online` profile
    /// refuses to start with such a gate.
    fn is_open(&self) -> bool;
}

/// Admits every request. For development and tests until token verification is installed; the
/// `online` profile refuses it.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenGate;

impl Gate for OpenGate {
    fn admit(&self, _: Access, _: &http::HeaderMap) -> Result<(), Status> {
        Ok(())
    }

    fn is_open(&self) -> bool {
        true
    }
}

/// The gate a server uses when none is set.
pub fn default_gate() -> Arc<dyn Gate> {
    Arc::new(OpenGate)
}
