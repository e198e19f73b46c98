//! Everything that can go wrong with a payment, in one enum, and its one mapping to a `Status`
//! (through `mall_common::error::ServiceError`): refusals keep their message and carry a
//! machine-readable [`reason`]; signing and database failures are logged and hidden.

use mall_types::Invalid;

use crate::domain::{Decline, RefundRefusal};

/// Everything that can go wrong with a payment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The card was declined.
    #[error("{0}")]
    Declined(Decline),
    /// The order already has a payment that this request does not repeat.
    #[error("order {0} already has a payment")]
    OrderAlreadyPaid(String),
    /// Checkout gave up on the order (it voided it), so it is not charged any more.
    #[error("order {0} was abandoned by checkout and can no longer be charged")]
    OrderVoided(String),
    /// No payment with that transaction id.
    #[error("payment {0} not found")]
    PaymentNotFound(String),
    /// A refund named an order or user the payment does not belong to.
    #[error("the transaction does not belong to this order and user")]
    NotThisPayment,
    /// A refund asked for more than what remains of the charge.
    #[error("refund exceeds the remaining amount")]
    RefundExceedsRemaining,
    /// Alipay refused a refund (a business error; nothing was refunded): its `sub_code`.
    #[error("alipay refused the refund: {0}")]
    AlipayRefused(String),
    /// The same refund request id was used before for another amount.
    #[error("refund request {0} was made before for another amount")]
    RefundRequestConflict(String),
    /// The order does not exist, or is another user's (the same answer, so ids cannot be probed).
    #[error("order {0} not found")]
    OrderNotFound(String),
    /// The order is not waiting for a payment.
    #[error("order {order} is {status}, not PENDING")]
    OrderNotPending {
        /// The order.
        order: String,
        /// Its status.
        status: String,
    },
    /// The order is not paid with Alipay.
    #[error("order {0} is not an alipay order")]
    NotAlipayOrder(String),
    /// The order service failed (or refused in a way this service cannot act on).
    #[error("order service: {0}")]
    Order(String),
    /// Alipay's gateway gave no verified answer.
    #[error("alipay gateway: {0}")]
    Gateway(String),
    /// AlipayCharge without the app id and key.
    #[error("alipay is not configured")]
    AlipayNotConfigured,
    /// A pay link for this order exists for a different amount.
    #[error("order {0} already has an Alipay payment link for a different amount")]
    PayLinkConflict(String),
    /// A pay link for this order was made for another user.
    #[error("order {0} belongs to another user")]
    OtherUsersOrder(String),
    /// A stored row breaks an invariant the schema should guarantee.
    #[error("stored payment data is corrupt: {0}")]
    Corrupt(String),
    /// Signing the Alipay request failed.
    #[error("signing the alipay request: {0}")]
    Signing(String),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

mall_common::as_database_error!(Error);

/// The machine-readable reasons payment's refusals carry, declared with the contract.
pub use mall_proto::reason;

impl mall_common::error::ServiceError for Error {
    fn code(&self) -> mall_common::error::ServiceErrorCode {
        use mall_common::error::ServiceErrorCode as Code;
        match self {
            Error::Invalid(_) => Code::InvalidArgument,
            Error::Declined(_)
            | Error::NotThisPayment
            | Error::RefundExceedsRemaining
            | Error::AlipayRefused(_)
            | Error::AlipayNotConfigured
            | Error::OrderNotPending { .. }
            | Error::NotAlipayOrder(_)
            | Error::OrderVoided(_) => Code::FailedPrecondition,
            Error::OrderAlreadyPaid(_)
            | Error::PayLinkConflict(_)
            | Error::RefundRequestConflict(_) => Code::AlreadyExists,
            Error::PaymentNotFound(_) | Error::OrderNotFound(_) => Code::NotFound,
            Error::Order(_) | Error::Gateway(_) => Code::Unavailable,
            Error::OtherUsersOrder(_) => Code::PermissionDenied,
            Error::Signing(_) | Error::Corrupt(_) => Code::Internal,
            Error::Database(e) => mall_common::store::error_code(e),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Error::Invalid(_) => reason::INVALID_REQUEST,
            Error::Declined(_) => reason::CARD_DECLINED,
            Error::OrderAlreadyPaid(_) => reason::ORDER_ALREADY_PAID,
            Error::OrderVoided(_) => reason::ORDER_VOIDED,
            Error::PaymentNotFound(_) => reason::PAYMENT_NOT_FOUND,
            Error::NotThisPayment => reason::PAYMENT_MISMATCH,
            Error::RefundExceedsRemaining => reason::REFUND_EXCEEDS_REMAINING,
            Error::AlipayRefused(_) => reason::ALIPAY_REFUND_REFUSED,
            Error::RefundRequestConflict(_) => reason::REFUND_REQUEST_CONFLICT,
            Error::OrderNotFound(_) => reason::ORDER_NOT_FOUND,
            Error::OrderNotPending { .. } => reason::ORDER_NOT_PENDING,
            Error::NotAlipayOrder(_) => reason::NOT_AN_ALIPAY_ORDER,
            Error::AlipayNotConfigured => reason::ALIPAY_NOT_CONFIGURED,
            Error::PayLinkConflict(_) => reason::PAY_LINK_CONFLICT,
            Error::OtherUsersOrder(_) => reason::OTHER_USERS_ORDER,
            Error::Signing(_)
            | Error::Corrupt(_)
            | Error::Database(_)
            | Error::Order(_)
            | Error::Gateway(_) => {
                return None;
            }
        })
    }

    fn unavailable_dependency(&self) -> &str {
        match self {
            Error::Order(_) => "order",
            Error::Gateway(_) => "alipay",
            _ => "database",
        }
    }
}

impl From<RefundRefusal> for Error {
    fn from(r: RefundRefusal) -> Self {
        match r {
            RefundRefusal::NotThisPayment => Error::NotThisPayment,
            RefundRefusal::ExceedsRemaining => Error::RefundExceedsRemaining,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        mall_common::error::to_status(&e)
    }
}

#[cfg(test)]
mod tests {
    use mall_common::error::reason_of;
    use tonic::{Code, Status};

    use super::{Error, reason};
    use crate::alipay::Notice;
    use crate::domain::Decline;

    /// Each refusal keeps its code and message and carries its reason.
    fn assert_refusals(cases: Vec<(Error, Code, &str, &str)>) {
        for (error, code, message, why) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
            assert_eq!(reason_of(&status).as_deref(), Some(why), "{message}");
        }
    }

    /// Bad requests and declined cards.
    #[test]
    fn card_refusals_keep_their_code_and_message_and_carry_a_reason() {
        let notice = [("trade_status".to_string(), "TRADE_SUCCESS".to_string())].into();
        let invalid = Notice::parse(&notice).expect_err("a notice without an order");
        let invalid_message = invalid.to_string();
        assert_refusals(vec![
            (
                Error::Invalid(invalid),
                Code::InvalidArgument,
                &invalid_message,
                reason::INVALID_REQUEST,
            ),
            (
                Error::Declined(Decline::Declined),
                Code::FailedPrecondition,
                "card declined",
                reason::CARD_DECLINED,
            ),
            (
                Error::Declined(Decline::InsufficientFunds),
                Code::FailedPrecondition,
                "card declined: insufficient funds",
                reason::CARD_DECLINED,
            ),
        ]);
    }

    /// Charges and refunds against existing payments.
    #[test]
    fn charge_and_refund_refusals_keep_their_code_and_message_and_carry_a_reason() {
        assert_refusals(vec![
            (
                Error::OrderAlreadyPaid("o1".into()),
                Code::AlreadyExists,
                "order o1 already has a payment",
                reason::ORDER_ALREADY_PAID,
            ),
            (
                Error::OrderVoided("o1".into()),
                Code::FailedPrecondition,
                "order o1 was abandoned by checkout and can no longer be charged",
                reason::ORDER_VOIDED,
            ),
            (
                Error::PaymentNotFound("t1".into()),
                Code::NotFound,
                "payment t1 not found",
                reason::PAYMENT_NOT_FOUND,
            ),
            (
                Error::NotThisPayment,
                Code::FailedPrecondition,
                "the transaction does not belong to this order and user",
                reason::PAYMENT_MISMATCH,
            ),
            (
                Error::RefundExceedsRemaining,
                Code::FailedPrecondition,
                "refund exceeds the remaining amount",
                reason::REFUND_EXCEEDS_REMAINING,
            ),
        ]);
    }

    /// Orders a payment names, and Alipay.
    #[test]
    fn order_and_alipay_refusals_keep_their_code_and_message_and_carry_a_reason() {
        assert_refusals(vec![
            (
                Error::AlipayRefused("ACQ.TRADE_STATUS_ERROR".into()),
                Code::FailedPrecondition,
                "alipay refused the refund: ACQ.TRADE_STATUS_ERROR",
                reason::ALIPAY_REFUND_REFUSED,
            ),
            (
                Error::OrderNotPending {
                    order: "o1".into(),
                    status: "PAID".into(),
                },
                Code::FailedPrecondition,
                "order o1 is PAID, not PENDING",
                reason::ORDER_NOT_PENDING,
            ),
            (
                Error::OrderNotFound("o1".into()),
                Code::NotFound,
                "order o1 not found",
                reason::ORDER_NOT_FOUND,
            ),
            (
                Error::AlipayNotConfigured,
                Code::FailedPrecondition,
                "alipay is not configured",
                reason::ALIPAY_NOT_CONFIGURED,
            ),
            (
                Error::PayLinkConflict("o1".into()),
                Code::AlreadyExists,
                "order o1 already has an Alipay payment link for a different amount",
                reason::PAY_LINK_CONFLICT,
            ),
            (
                Error::OtherUsersOrder("o1".into()),
                Code::PermissionDenied,
                "order o1 belongs to another user",
                reason::OTHER_USERS_ORDER,
            ),
        ]);
    }

    #[test]
    fn internal_failures_carry_no_reason_and_hide_the_cause() {
        let status = Status::from(Error::Signing("key material".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("key"), "{}", status.message());
        assert_eq!(reason_of(&status), None);
        let status = Status::from(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(
            status.message().starts_with("database unavailable"),
            "{}",
            status.message()
        );
        assert_eq!(reason_of(&status), None);
    }
}
