//! Generated protobuf messages and tonic gRPC clients/servers for the `TikTokMall` API contract
//! (`proto/tiktokmall/**`, see `design/API.md`).
//!
//! Each protobuf package `tiktokmall.<svc>.v1` becomes the module `mall_proto::<svc>::v1`
//! (also reachable as `mall_proto::tiktokmall::<svc>::v1`), e.g.
//! `mall_proto::product::v1::product_catalog_service_server::ProductCatalogServiceServer` and
//! `mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient`.
//! Shared messages live in [`common::v1`].
//!
//! [`FILE_DESCRIPTOR_SET`] holds the encoded descriptor set of every file, for server reflection;
//! [`reason`] the refusal reasons of the contract, for the services that send them and the
//! callers that decide on them.

/// Modules generated from the `tiktokmall.*` protobuf packages.
pub mod tiktokmall {
    /// `tiktokmall.common.v1`: shared messages.
    pub mod common {
        /// `tiktokmall.common.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.common.v1");
        }
    }

    /// `tiktokmall.auth.v1`: `AuthService`.
    pub mod auth {
        /// `tiktokmall.auth.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.auth.v1");
        }
    }

    /// `tiktokmall.user.v1`: `UserService`.
    pub mod user {
        /// `tiktokmall.user.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.user.v1");
        }
    }

    /// `tiktokmall.product.v1`: `ProductCatalogService`.
    pub mod product {
        /// `tiktokmall.product.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.product.v1");
        }
    }

    /// `tiktokmall.cart.v1`: `CartService`.
    pub mod cart {
        /// `tiktokmall.cart.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.cart.v1");
        }
    }

    /// `tiktokmall.order.v1`: `OrderService`.
    pub mod order {
        /// `tiktokmall.order.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.order.v1");
        }
    }

    /// `tiktokmall.payment.v1`: `PaymentService`.
    pub mod payment {
        /// `tiktokmall.payment.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.payment.v1");
        }
    }

    /// `tiktokmall.checkout.v1`: `CheckoutService`.
    pub mod checkout {
        /// `tiktokmall.checkout.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.checkout.v1");
        }
    }

    /// `tiktokmall.events.v1`: the asynchronous event envelope and its payloads.
    pub mod events {
        /// `tiktokmall.events.v1`.
        #[allow(
            clippy::all,
            clippy::pedantic,
            clippy::nursery,
            missing_docs,
            rustdoc::all
        )]
        pub mod v1 {
            tonic::include_proto!("tiktokmall.events.v1");
        }
    }
}

pub use tiktokmall::*;

/// Encoded `google.protobuf.FileDescriptorSet` of all `TikTokMall` proto files
/// (feed it to `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tiktokmall_descriptor");

pub mod reason;
pub mod reference;

/// Fully-qualified names of the seven gRPC services of the contract.
pub const SERVICE_NAMES: [&str; 7] = [
    "tiktokmall.auth.v1.AuthService",
    "tiktokmall.user.v1.UserService",
    "tiktokmall.cart.v1.CartService",
    "tiktokmall.product.v1.ProductCatalogService",
    "tiktokmall.order.v1.OrderService",
    "tiktokmall.payment.v1.PaymentService",
    "tiktokmall.checkout.v1.CheckoutService",
];

/// The RPCs of the contract, read once from [`FILE_DESCRIPTOR_SET`]: the protos are the source
/// of truth for what exists and what may be retried.
pub mod rpcs {
    use std::collections::BTreeMap;
    use std::sync::OnceLock;

    use prost::Message;
    use prost_types::method_options::IdempotencyLevel;

    /// One RPC of the contract.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Rpc {
        /// Fully-qualified service, e.g. `tiktokmall.product.v1.ProductCatalogService`.
        pub service: String,
        /// Method name, e.g. `GetProduct`.
        pub method: String,
        /// Marked `idempotency_level = IDEMPOTENT` or `NO_SIDE_EFFECTS`: safe to send twice.
        pub idempotent: bool,
    }

    /// Every RPC of every service, keyed by its path `/package.Service/Method`.
    pub fn all() -> &'static BTreeMap<String, Rpc> {
        static RPCS: OnceLock<BTreeMap<String, Rpc>> = OnceLock::new();
        RPCS.get_or_init(|| {
            // The set is generated at build time from our own protos; it always decodes.
            let set = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
                .unwrap_or_default();
            let mut rpcs = BTreeMap::new();
            for file in set.file {
                let package = file.package();
                for service in &file.service {
                    let service_name = format!("{package}.{}", service.name());
                    for method in &service.method {
                        let level = method
                            .options
                            .as_ref()
                            .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
                                o.idempotency_level()
                            });
                        let rpc = Rpc {
                            service: service_name.clone(),
                            method: method.name().to_string(),
                            idempotent: matches!(
                                level,
                                IdempotencyLevel::Idempotent | IdempotencyLevel::NoSideEffects
                            ),
                        };
                        rpcs.insert(format!("/{}/{}", rpc.service, rpc.method), rpc);
                    }
                }
            }
            rpcs
        })
    }

    /// Whether the RPC at `path` (`/package.Service/Method`) is marked idempotent.
    pub fn is_idempotent(path: &str) -> bool {
        all().get(path).is_some_and(|rpc| rpc.idempotent)
    }

    /// The method names of `service`.
    pub fn methods_of(service: &str) -> Vec<&'static str> {
        all()
            .values()
            .filter(|rpc| rpc.service == service)
            .map(|rpc| rpc.method.as_str())
            .collect()
    }
}
