//! [`ServiceName`]: the eight services of the fleet, each with its well-known port, so no code
//! spells a service as a string literal.

use serde::{Deserialize, Serialize};

/// One of the eight services. Its [`as_str`](Self::as_str) is the name used in configuration,
/// discovery, database URLs and service tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceName {
    /// Accounts, sessions and tokens.
    Auth,
    /// The public profile API in front of auth.
    User,
    /// The catalog and stock reservations.
    Product,
    /// Shopping carts.
    Cart,
    /// Orders and their state machine.
    Order,
    /// Card and Alipay payments.
    Payment,
    /// The checkout saga.
    Checkout,
    /// Customer mail from the event stream.
    Notification,
}

impl ServiceName {
    /// Every service, in port order.
    pub const ALL: [ServiceName; 8] = [
        ServiceName::Auth,
        ServiceName::User,
        ServiceName::Cart,
        ServiceName::Product,
        ServiceName::Order,
        ServiceName::Payment,
        ServiceName::Checkout,
        ServiceName::Notification,
    ];

    /// The name (`"product"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceName::Auth => "auth",
            ServiceName::User => "user",
            ServiceName::Product => "product",
            ServiceName::Cart => "cart",
            ServiceName::Order => "order",
            ServiceName::Payment => "payment",
            ServiceName::Checkout => "checkout",
            ServiceName::Notification => "notification",
        }
    }

    /// The well-known gRPC port (auth 8000 up to notification 8007).
    pub const fn port(self) -> u16 {
        match self {
            ServiceName::Auth => 8000,
            ServiceName::User => 8001,
            ServiceName::Cart => 8002,
            ServiceName::Product => 8003,
            ServiceName::Order => 8004,
            ServiceName::Payment => 8005,
            ServiceName::Checkout => 8006,
            ServiceName::Notification => 8007,
        }
    }
}

crate::macros::named_enum!(ServiceName, "service");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ports_are_the_fleets() {
        let table: Vec<(&str, u16)> = ServiceName::ALL
            .iter()
            .map(|s| (s.as_str(), s.port()))
            .collect();
        assert_eq!(
            table,
            [
                ("auth", 8000),
                ("user", 8001),
                ("cart", 8002),
                ("product", 8003),
                ("order", 8004),
                ("payment", 8005),
                ("checkout", 8006),
                ("notification", 8007),
            ]
        );
    }

    #[test]
    fn names_round_trip() {
        for s in ServiceName::ALL {
            assert_eq!(s.as_str().parse::<ServiceName>(), Ok(s));
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
        }
        for bad in ["", "Product", "products", " auth"] {
            let err = bad.parse::<ServiceName>().unwrap_err();
            assert_eq!(err.field(), "service", "{bad}");
        }
    }
}
