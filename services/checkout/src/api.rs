//! The gRPC edge of checkout: check the caller may act for the user, parse the request into
//! domain types, run the saga, answer. Access rules are in [`ACCESS`].

use mall_common::auth;
use mall_common::auth::{Access, AccessTable};
use mall_common::config::Features;
use mall_proto::checkout::v1 as pb;
use mall_proto::checkout::v1::checkout_service_server::CheckoutService;
use mall_types::{Address, IdempotencyKey, Invalid, PaymentMethod, UserId};
use tonic::{Request, Response, Status};

use crate::domain::{CardFields, CheckoutInput, Contact, Pay};
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
        // Parsed before ownership is checked, so a bad request is INVALID_ARGUMENT for everyone.
        let input = CheckoutInput::try_from(request.get_ref()).map_err(Error::from)?;
        auth::caller(&request)?.authorize(input.user_id)?;
        if matches!(input.pay, Pay::Alipay { .. }) && !self.features.enabled(ALIPAY_FLAG, true) {
            return Err(Error::MethodDisabled("alipay").into());
        }
        let done = self.engine.checkout(input).await?;
        Ok(Response::new(pb::CheckoutResp {
            order_id: done.order_id.into_string(),
            transaction_id: done.transaction_id.map(String::from).unwrap_or_default(),
            pay_url: done.pay_url,
        }))
    }
}

impl TryFrom<&pb::CheckoutReq> for CheckoutInput {
    type Error = Invalid;

    /// Parses a `Checkout` request; the first broken rule names its field (the method first,
    /// then the user, names, email, address, key, and how it pays).
    fn try_from(req: &pb::CheckoutReq) -> Result<Self, Invalid> {
        let method = PaymentMethod::parse(&req.payment_method)?;
        let user_id = UserId::parse(req.user_id, "user_id")?;
        let contact = Contact::parse(&req.firstname, &req.lastname, &req.email, || {
            let a = req
                .address
                .as_ref()
                .ok_or_else(|| Invalid::new("address", "is required"))?;
            Address::parse(
                &a.street_address,
                &a.city,
                &a.state,
                &a.country,
                &a.zip_code,
            )
        })?;
        let idempotency_key = IdempotencyKey::optional(&req.idempotency_key)?;
        let card = req.credit_card.as_ref().map(|c| CardFields {
            number: &c.credit_card_number,
            cvv: &c.credit_card_cvv,
            year: c.credit_card_expiration_year,
            month: c.credit_card_expiration_month,
        });
        Ok(CheckoutInput {
            user_id,
            contact,
            pay: Pay::parse(method, card, &req.return_url)?,
            idempotency_key,
        })
    }
}

#[cfg(test)]
mod tests {
    use mall_proto::common::v1 as common;

    use super::*;
    use crate::domain::fingerprint;

    const CARD: (&str, &str, i32, i32) = ("4111111111111111", "123", 2099, 12);

    fn card((number, cvv, year, month): (&str, &str, i32, i32)) -> Option<common::CreditCardInfo> {
        Some(common::CreditCardInfo {
            credit_card_number: number.into(),
            credit_card_cvv: cvv.into(),
            credit_card_expiration_year: year,
            credit_card_expiration_month: month,
        })
    }

    /// A valid card request, for each case to break one rule of.
    fn req() -> pb::CheckoutReq {
        pb::CheckoutReq {
            user_id: 7,
            firstname: "Ann".into(),
            lastname: "Lee".into(),
            email: "A@b.co".into(),
            address: Some(common::Address {
                street_address: "1 Main St".into(),
                city: "Springfield".into(),
                state: "IL".into(),
                country: "US".into(),
                zip_code: "62701".into(),
            }),
            credit_card: card(CARD),
            ..Default::default()
        }
    }

    fn parse(req: pb::CheckoutReq) -> Result<CheckoutInput, Invalid> {
        CheckoutInput::try_from(&req)
    }

    fn with(change: impl FnOnce(&mut pb::CheckoutReq)) -> Result<CheckoutInput, Invalid> {
        let mut r = req();
        change(&mut r);
        parse(r)
    }

    fn alipay(
        card: Option<common::CreditCardInfo>,
        method: &str,
        url: &str,
    ) -> Result<CheckoutInput, Invalid> {
        with(|r| {
            r.credit_card = card;
            r.payment_method = method.into();
            r.return_url = url.into();
            r.idempotency_key = "k".into();
        })
    }

    #[test]
    fn valid_requests_parse() {
        let input = parse(req()).unwrap();
        assert_eq!(input.user_id, UserId::parse(7, "user_id").unwrap());
        assert_eq!(input.contact.email, "a@b.co");
        assert_eq!(input.idempotency_key, None);
        assert!(!format!("{:?}", input.pay).contains("4111"));
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases: [(Result<CheckoutInput, Invalid>, &str); 10] = [
            (with(|r| r.user_id = 0), "user_id"),
            (with(|r| r.firstname = String::new()), "firstname"),
            (with(|r| r.lastname = " ".into()), "lastname"),
            (with(|r| r.email = "nope".into()), "email"),
            (with(|r| r.address = None), "address"),
            (
                with(|r| {
                    let a = r.address.as_mut().unwrap();
                    a.street_address = String::new();
                    a.state = String::new();
                }),
                "address.street_address",
            ),
            (
                with(|r| r.credit_card = card(("4111", "123", 2099, 1))),
                "credit_card_number",
            ),
            (
                with(|r| r.credit_card = card(("4111111111111111", "12", 2099, 1))),
                "credit_card_cvv",
            ),
            (
                with(|r| r.credit_card = card(("4111111111111111", "123", 2099, 13))),
                "credit_card_expiration_month",
            ),
            (
                with(|r| r.idempotency_key = "k".repeat(129)),
                "idempotency_key",
            ),
        ];
        for (result, field) in cases {
            let err = result.expect_err(field);
            assert!(err.field().contains(field), "{field}: {err}");
            assert!(err.to_string().starts_with(err.field()), "{err}");
        }
    }

    #[test]
    fn alipay_requests_take_no_card_and_an_optional_http_return_url() {
        let input = alipay(None, "alipay", " https://shop.example/back ").unwrap();
        assert_eq!(
            input.pay,
            Pay::Alipay {
                return_url: "https://shop.example/back".into()
            }
        );
        assert!(
            alipay(card(("", "", 0, 0)), "alipay", "").is_ok(),
            "an empty card"
        );
        assert!(matches!(
            alipay(card(CARD), "credit_card", "").unwrap().pay,
            Pay::Card(_)
        ));
        for (what, bad, field) in [
            (
                "a card with alipay",
                alipay(card(CARD), "alipay", ""),
                "credit_card",
            ),
            (
                "unknown method",
                alipay(card(CARD), "paypal", ""),
                "payment_method",
            ),
            (
                "not http",
                alipay(None, "alipay", "javascript:alert(1)"),
                "return_url",
            ),
            (
                "too long",
                alipay(None, "alipay", &format!("https://{}", "a".repeat(250))),
                "return_url",
            ),
            (
                "return url with a card",
                alipay(card(CARD), "", "https://shop.example/back"),
                "return_url",
            ),
            ("no card, no alipay", alipay(None, "", ""), "credit_card"),
        ] {
            let err = bad.expect_err(what);
            assert!(err.to_string().starts_with(field), "{what}: {err}");
        }
        // An Alipay request never fingerprints like a card one, nor with another return URL.
        let a = alipay(None, "alipay", "").unwrap();
        let b = alipay(None, "alipay", "https://shop.example/back").unwrap();
        let card = alipay(card(CARD), "", "").unwrap();
        assert_ne!(fingerprint("p", &a), fingerprint("p", &b));
        assert_ne!(fingerprint("p", &a), fingerprint("p", &card));
    }

    #[test]
    fn fingerprints_cover_the_card_and_depend_on_the_pepper() {
        let a = parse(req()).unwrap();
        let b = with(|r| r.credit_card = card(("4000000000000002", "123", 2099, 12))).unwrap();
        assert_eq!(fingerprint("p", &a), fingerprint("p", &a));
        assert_ne!(fingerprint("p", &a), fingerprint("p", &b));
        assert_ne!(fingerprint("p", &a), fingerprint("q", &a));
        assert_eq!(fingerprint("p", &a).len(), 64);
    }
}
