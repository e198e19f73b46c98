//! Generated protobuf messages and tonic gRPC clients/servers for the `TikTokMall` API contract
//! (`proto/tiktokmall/**`, see `design/API.md`).
//!
//! Each protobuf package `tiktokmall.<svc>.v1` becomes the module `mall_proto::<svc>::v1`
//! (also reachable as `mall_proto::tiktokmall::<svc>::v1`), e.g.
//! `mall_proto::product::v1::product_catalog_service_server::ProductCatalogServiceServer` and
//! `mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient`.
//! Shared messages live in [`common::v1`].
//!
//! [`FILE_DESCRIPTOR_SET`] holds the encoded descriptor set of every file, for server reflection.

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
}

pub use tiktokmall::*;

/// Encoded `google.protobuf.FileDescriptorSet` of all `TikTokMall` proto files
/// (feed it to `tonic_reflection::server::Builder::register_encoded_file_descriptor_set`).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tiktokmall_descriptor");

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
