//! Test support for TikTokMall's black-box tests (a dev-dependency only: `publish = false`).
//!
//! Read in this order:
//! - [`TestFleet`] (`fleet.rs`): the services a test needs on port 0, each with a fresh database
//!   and cache namespace, plus clients and tokens to call them with;
//! - the fixtures, as methods of the fleet: [`TestFleet::catalog`] ([`Catalog`]),
//!   [`TestFleet::cart`] ([`Cart`]), [`TestFleet::orders`] ([`Orders`]),
//!   [`TestFleet::payments`] ([`Payments`]) and [`TestFleet::checkout`] ([`Checkout`]): the
//!   setup and read-back steps tests of one service take through the others;
//! - [`AlipayFleet`] (`alipay.rs`): every service with Alipay configured against the fake
//!   Alipay gateway of `mall-testkit`, with keys generated per test binary;
//! - [`assert_code!`] and [`eventually`] (`assert.rs`);
//! - [`logs`]: the fleet's logs on the test output when `TEST_LOG` is set, and log capture for
//!   the tests that assert on log lines;
//! - [`http_get`] for the admin port, and [`KillOnDrop`] for tests that run a service binary.
//!
//! The fake Consul, scripted gRPC stub, latency proxy and OTLP collector stay in `mall-testkit`: the platform's
//! own tests use them, and those must not compile the fleet.

mod alipay;
mod assert;
mod cart;
mod catalog;
mod checkout;
mod fleet;
mod http;
pub mod logs;
mod orders;
mod payments;
mod process;

pub use alipay::{
    ALIPAY_APP_ID, ALIPAY_NOTIFY_URL, ALIPAY_SELLER_ID, AlipayFleet, AlipayKeys,
    alipay_checkout_request, alipay_keys, pay_url_params,
};
pub use assert::{check_code, eventually};
pub use cart::{Cart, CartClient};
pub use catalog::{Catalog, ProductClient, cart_items, new_product};
pub use checkout::{Checkout, CheckoutClient, DECLINED_CARD, GOOD_CARD, address, checkout_request};
pub use fleet::{ADMIN_USER_ID, MYSQL_ENV, NATS_ENV, REDIS_ENV, TestFleet, client_at};
pub use http::http_get;
pub use orders::{OrderClient, Orders, order_status};
pub use payments::{PaymentClient, Payments};
pub use process::{KillOnDrop, assert_cli_answers};
