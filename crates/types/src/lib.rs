//! The validated values every TikTokMall service speaks: ids, money, text, addresses, keys,
//! service names and roles, and the one invalid-input error, [`Invalid`].
//!
//! A request is parsed into these types once, at the gRPC edge; past the edge nothing checks a
//! string again, because a value of one of these types cannot break its rule. Every limit
//! exists once, here or beside the one service that owns it. This crate is the leaf of the
//! workspace: it depends on `serde` and `thiserror` only, so `mall-common` and every service
//! can use it.
//!
//! - [`invalid`]: [`Invalid`] `{ field, reason }`, whose message names the field;
//! - [`ids`]: [`UserId`], [`ProductId`] (the API's `uint64` and the stored `BIGINT` in one
//!   place), [`OrderId`], [`TransactionId`], [`ReservationId`];
//! - [`money`]: [`Cents`] with checked arithmetic, [`Quantity`] (1..=999), the line limits;
//! - [`text`]: bounded [`Text`] (single line or multiline) and [`Email`];
//! - [`address`]: the one shipping [`Address`];
//! - [`card`]: the digits a card number and CVV have, for checkout and payment alike;
//! - [`idempotency`]: a client's [`IdempotencyKey`];
//! - [`service`]: [`ServiceName`], the eight services and their ports;
//! - [`role`]: [`Role`] and [`TokenKind`] as tokens carry them;
//! - [`payment`]: [`PaymentMethod`], how an order is paid;
//! - [`time`]: unix seconds and milliseconds.

mod macros;

pub mod address;
pub mod card;
pub mod idempotency;
pub mod ids;
pub mod invalid;
pub mod money;
pub mod payment;
pub mod role;
pub mod service;
pub mod text;
pub mod time;

pub use address::Address;
pub use idempotency::IdempotencyKey;
pub use ids::{OrderId, ProductId, ReservationId, TransactionId, UserId};
pub use invalid::Invalid;
pub use money::{Cents, Quantity};
pub use payment::PaymentMethod;
pub use role::{Role, TokenKind};
pub use service::ServiceName;
pub use text::{Email, Text, TextRule};
