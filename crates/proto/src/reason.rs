//! The machine-readable reasons a refusal carries (`google.rpc.ErrorInfo.reason`, see
//! `mall_common::error`), declared once for the service that sends them and the callers that
//! decide on them: a caller matches these constants, never a message. docs/API.md lists which RPC
//! answers which.

/// Any service: the request broke one of its rules (the message names the field); nothing was
/// done.
pub const INVALID_REQUEST: &str = "INVALID_REQUEST";

// Product.

/// Product: no such (live) product.
pub const PRODUCT_NOT_FOUND: &str = "PRODUCT_NOT_FOUND";
/// Product: a reservation line asks for more than is in stock; nothing was reserved.
pub const INSUFFICIENT_STOCK: &str = "INSUFFICIENT_STOCK";
/// Product: the reservation id was used for different items.
pub const RESERVATION_CONFLICT: &str = "RESERVATION_CONFLICT";
/// Product: the reservation was released (its order was cancelled meanwhile); its id cannot
/// reserve again.
pub const RESERVATION_RELEASED: &str = "RESERVATION_RELEASED";

// Order (and payment, for the order a payment names).

/// Order, payment: no such order (or another user's).
pub const ORDER_NOT_FOUND: &str = "ORDER_NOT_FOUND";
/// Order, payment: the order is not PENDING, so it can neither be paid nor cancelled.
pub const ORDER_NOT_PENDING: &str = "ORDER_NOT_PENDING";
/// Order: the order is not PAID, so it can neither be completed nor refunded.
pub const ORDER_NOT_PAID: &str = "ORDER_NOT_PAID";
/// Order: a move no status allows (back to PENDING).
pub const ILLEGAL_TRANSITION: &str = "ILLEGAL_TRANSITION";
/// Order: `MarkOrderPaid` for an order another transaction already paid.
pub const PAID_BY_ANOTHER_TRANSACTION: &str = "PAID_BY_ANOTHER_TRANSACTION";
/// Order: the order kept changing under a conditional update; retrying may succeed.
pub const ORDER_CONTENDED: &str = "ORDER_CONTENDED";

// Payment.

/// Payment: the card was declined (for any cause; the message says which); nothing was charged.
pub const CARD_DECLINED: &str = "CARD_DECLINED";
/// Payment: the order already has a payment that this request does not repeat.
pub const ORDER_ALREADY_PAID: &str = "ORDER_ALREADY_PAID";
/// Payment: the order was voided by checkout; nothing was charged.
pub const ORDER_VOIDED: &str = "ORDER_VOIDED";
/// Payment: no such payment.
pub const PAYMENT_NOT_FOUND: &str = "PAYMENT_NOT_FOUND";
/// Payment: a refund named an order or user the payment does not belong to.
pub const PAYMENT_MISMATCH: &str = "PAYMENT_MISMATCH";
/// Payment: a refund asked for more than what remains of the charge.
pub const REFUND_EXCEEDS_REMAINING: &str = "REFUND_EXCEEDS_REMAINING";
/// Payment: Alipay refused the refund; nothing was refunded.
pub const ALIPAY_REFUND_REFUSED: &str = "ALIPAY_REFUND_REFUSED";
/// Payment: the refund request id was used before for another amount.
pub const REFUND_REQUEST_CONFLICT: &str = "REFUND_REQUEST_CONFLICT";
/// Payment: the order is not paid with Alipay.
pub const NOT_AN_ALIPAY_ORDER: &str = "NOT_AN_ALIPAY_ORDER";
/// Payment: Alipay is not configured on this deployment.
pub const ALIPAY_NOT_CONFIGURED: &str = "ALIPAY_NOT_CONFIGURED";
/// Payment: a pay link for this order exists for a different amount.
pub const PAY_LINK_CONFLICT: &str = "PAY_LINK_CONFLICT";
/// Payment: the order belongs to another user.
pub const OTHER_USERS_ORDER: &str = "OTHER_USERS_ORDER";

// Checkout.

/// Checkout: the purchase was decided and failed (compensated: nothing charged, stock back), on
/// the first answer and on every replay of its idempotency key; a retry with the same key can
/// only repeat it, so a client starts a new purchase (a new key).
pub const CHECKOUT_FAILED: &str = "CHECKOUT_FAILED";
