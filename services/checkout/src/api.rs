//! The gRPC edge of checkout: check the caller may act for the user, parse the request into
//! domain types, run the saga, answer. Access rules are in [`ACCESS`].

use mall_common::auth;
use mall_common::auth::{Access, AccessTable};
use mall_common::config::Features;
use mall_proto::checkout::v1 as pb;
use mall_proto::checkout::v1::checkout_service_server::CheckoutService;
use mall_types::UserId;
use tonic::{Request, Response, Status};

use crate::domain::{CheckoutInput, Pay};
use crate::error::Error;
use crate::saga::Engine;

/// Who may call what: a signed-in user checks out their own cart (admins and services may act
/// for anyone).
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::checkout::v1::checkout_service_server::SERVICE_NAME,
    rules: &[("Checkout", Access::User(&[]))],
};

/// The `CheckoutService` implementation.
#[derive(Clone)]
pub struct CheckoutApi {
    engine: Engine,
    features: Features,
}

/// The feature flag that offers Alipay (`features.alipay`, on by default): off, an Alipay
/// checkout is refused before anything is written, card checkouts go on.
pub const ALIPAY_FLAG: &str = "alipay";

impl CheckoutApi {
    /// A service running sagas with `engine`, offering the payment methods `features` allow.
    pub fn new(engine: Engine, features: Features) -> Self {
        CheckoutApi { engine, features }
    }
}

#[tonic::async_trait]
impl CheckoutService for CheckoutApi {
    async fn checkout(
        &self,
        request: Request<pb::CheckoutReq>,
    ) -> Result<Response<pb::CheckoutResp>, Status> {
        // The id is checked before ownership, so a bad one is INVALID_ARGUMENT for everyone.
        let user = UserId::parse(request.get_ref().user_id, "user_id").map_err(Error::from)?;
        auth::caller(&request)?.authorize(user.get())?;
        let req = request.into_inner();
        let input = CheckoutInput::parse_paid(
            req.user_id,
            &req.firstname,
            &req.lastname,
            &req.email,
            req.address.as_ref().map(|a| {
                (
                    a.street_address.as_str(),
                    a.city.as_str(),
                    a.state.as_str(),
                    a.country.as_str(),
                    a.zip_code.as_str(),
                )
            }),
            req.credit_card.as_ref().map(|c| {
                (
                    c.credit_card_number.as_str(),
                    c.credit_card_cvv.as_str(),
                    c.credit_card_expiration_year,
                    c.credit_card_expiration_month,
                )
            }),
            &req.idempotency_key,
            (&req.payment_method, &req.return_url),
        )
        .map_err(Error::from)?;
        if matches!(input.pay, Pay::Alipay { .. }) && !self.features.enabled(ALIPAY_FLAG, true) {
            return Err(Error::MethodDisabled("alipay").into());
        }
        let done = self.engine.checkout(input).await?;
        Ok(Response::new(pb::CheckoutResp {
            order_id: done.order_id,
            transaction_id: done.transaction_id,
            pay_url: done.pay_url,
        }))
    }
}
