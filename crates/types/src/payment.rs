//! [`PaymentMethod`]: how an order is paid, as checkout, order and payment all name it.

use crate::Invalid;

/// How an order is paid. Stored and sent by [`PaymentMethod::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PaymentMethod {
    /// A card charged by checkout (the default).
    #[default]
    CreditCard,
    /// Paid by the buyer on Alipay's page; payment marks the order paid.
    Alipay,
}

impl PaymentMethod {
    /// Every method.
    pub const ALL: [PaymentMethod; 2] = [PaymentMethod::CreditCard, PaymentMethod::Alipay];

    /// The stored and API name.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::CreditCard => "credit_card",
            PaymentMethod::Alipay => "alipay",
        }
    }

    /// A request's `payment_method`: empty or `credit_card`, or `alipay`.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        match name {
            "" => Ok(PaymentMethod::CreditCard),
            name => PaymentMethod::from_stored(name)
                .ok_or_else(|| Invalid::new("payment_method", "must be credit_card or alipay")),
        }
    }

    /// The method stored (or answered by another service) as `name`; `None` for anything else.
    pub fn from_stored(name: &str) -> Option<Self> {
        PaymentMethod::ALL.into_iter().find(|m| m.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_empty_means_card() {
        for method in PaymentMethod::ALL {
            assert_eq!(PaymentMethod::from_stored(method.as_str()), Some(method));
            assert_eq!(PaymentMethod::parse(method.as_str()), Ok(method));
        }
        assert_eq!(PaymentMethod::parse(""), Ok(PaymentMethod::CreditCard));
        assert_eq!(PaymentMethod::from_stored(""), None);
        let err = PaymentMethod::parse("paypal").unwrap_err();
        assert_eq!(err.field(), "payment_method");
        assert_eq!(
            err.to_string(),
            "payment_method must be credit_card or alipay"
        );
    }
}
