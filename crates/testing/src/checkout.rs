//! [`Checkout`]: one user paying for their cart, and the requests it sends.

use mall_common::client::Channel;
use mall_proto::checkout::v1 as pb;
use mall_proto::checkout::v1::checkout_service_client::CheckoutServiceClient;
use mall_proto::common::v1::{Address, CreditCardInfo};
use tonic::Status;

use crate::TestFleet;

/// A checkout service client on the fleet's client stack.
pub type CheckoutClient = CheckoutServiceClient<Channel>;

/// A card number the payment service approves.
pub const GOOD_CARD: &str = "4111111111111111";
/// A card number the payment service declines (a test card).
pub const DECLINED_CARD: &str = "4000000000000002";

/// `user_id` checking out through one checkout client.
#[derive(Clone)]
pub struct Checkout {
    client: CheckoutClient,
    user_id: u64,
}

impl TestFleet {
    /// `user_id` checking out with their own token (the fleet must run `checkout`).
    pub fn checkout(&self, user_id: u64) -> Checkout {
        Checkout::new(
            self.client_as("checkout", &self.user_token(user_id)),
            user_id,
        )
    }
}

impl Checkout {
    /// `user_id` checking out through `client` (e.g. one built by [`crate::client_at`] for an
    /// instance the test started itself).
    pub fn new(client: CheckoutClient, user_id: u64) -> Checkout {
        Checkout { client, user_id }
    }

    /// Checks the cart out with [`checkout_request`]`(user, card, key)`.
    pub async fn pay(&self, card: &str, key: &str) -> Result<pb::CheckoutResp, Status> {
        self.send(checkout_request(self.user_id, card, key)).await
    }

    /// Sends `req` as it is (a bad one, or one for another user).
    pub async fn send(&self, req: pb::CheckoutReq) -> Result<pb::CheckoutResp, Status> {
        self.client
            .clone()
            .checkout(req)
            .await
            .map(|r| r.into_inner())
    }
}

/// A valid shipping address.
pub fn address() -> Address {
    Address {
        street_address: "1 Main St".into(),
        city: "Springfield".into(),
        state: "IL".into(),
        country: "US".into(),
        zip_code: "62701".into(),
    }
}

/// A complete, valid checkout request for `user_id` paying with `card` under idempotency `key`
/// (the card expires next year).
pub fn checkout_request(user_id: u64, card: &str, key: &str) -> pb::CheckoutReq {
    // A year is 31,556,952 s on average: good enough for "next year" without a date library.
    let next_year =
        i32::try_from(1970 + mall_types::time::unix_secs() / 31_556_952 + 1).unwrap_or(2100);
    pb::CheckoutReq {
        user_id,
        firstname: "Ann".into(),
        lastname: "Lee".into(),
        email: "Ann@Example.com".into(),
        address: Some(address()),
        credit_card: Some(CreditCardInfo {
            credit_card_number: card.into(),
            credit_card_cvv: "123".into(),
            credit_card_expiration_year: next_year,
            credit_card_expiration_month: 6,
        }),
        idempotency_key: key.into(),
        ..Default::default()
    }
}
