//! [`AlipayFleet`]: the whole shop with Alipay configured against `mall-testkit`'s fake Alipay
//! gateway, keys generated in the test (never a key in the repository).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use mall_proto::checkout::v1 as pb;
use mall_testkit::alipay::FakeAlipay;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::{RsaPrivateKey, RsaPublicKey};

use crate::{TestFleet, address};

/// The merchant app id the fleet is configured with.
pub const ALIPAY_APP_ID: &str = "2021000000000000";
/// The seller id the fleet checks notifications against (the fake's).
pub const ALIPAY_SELLER_ID: &str = mall_testkit::alipay::SELLER_ID;
/// The `notify_url` the pay links carry (the fake is told the real address per call).
pub const ALIPAY_NOTIFY_URL: &str = "https://mall.example/alipay/notify";

/// The merchant's and "Alipay's" key pairs, generated once per test binary.
pub struct AlipayKeys {
    /// The merchant's private key (payment signs with it).
    pub app_private: RsaPrivateKey,
    /// Its PEM (PKCS#8), as payment is configured.
    pub app_private_pem: String,
    /// The merchant's public key (the gateway verifies requests with it; tests verify pay links).
    pub app_public: RsaPublicKey,
    /// Alipay's private key (the fake gateway signs with it).
    pub alipay_private: RsaPrivateKey,
    /// Alipay's public key PEM (SubjectPublicKeyInfo), as payment is configured.
    pub alipay_public_pem: String,
}

/// The test binary's key pairs.
pub fn alipay_keys() -> &'static AlipayKeys {
    static KEYS: OnceLock<AlipayKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rsa::rand_core::OsRng;
        let app = RsaPrivateKey::new(&mut rng, 2048).expect("merchant key");
        let alipay = RsaPrivateKey::new(&mut rng, 2048).expect("alipay key");
        AlipayKeys {
            app_private_pem: app.to_pkcs8_pem(LineEnding::LF).expect("pem").to_string(),
            app_public: app.to_public_key(),
            app_private: app,
            alipay_public_pem: alipay
                .to_public_key()
                .to_public_key_pem(LineEnding::LF)
                .expect("pem"),
            alipay_private: alipay,
        }
    })
}

/// A fleet of every service with payment talking to a fake Alipay gateway.
pub struct AlipayFleet {
    /// The services.
    pub fleet: TestFleet,
    /// The fake gateway: script trades, read refunds, send notifications.
    pub gateway: FakeAlipay,
}

impl AlipayFleet {
    /// Every service, Alipay configured (app id, keys, seller id, the fake's gateway URL), the
    /// reconciliation worker every second and the first `alipay.trade.query` a second after a
    /// pay link; plus `overrides`.
    pub async fn start(overrides: &[(&str, &str)]) -> AlipayFleet {
        let keys = alipay_keys();
        let gateway = FakeAlipay::start(
            ALIPAY_APP_ID,
            keys.app_public.clone(),
            keys.alipay_private.clone(),
        )
        .await;
        let url = gateway.gateway_url();
        let mut env = vec![
            ("MALL__PAYMENT__ALIPAY_GATEWAY", url.as_str()),
            ("MALL__PAYMENT__ALIPAY_APP_ID", ALIPAY_APP_ID),
            (
                "MALL__PAYMENT__ALIPAY_PRIVATE_KEY_PEM",
                keys.app_private_pem.as_str(),
            ),
            (
                "MALL__PAYMENT__ALIPAY_PUBLIC_KEY_PEM",
                keys.alipay_public_pem.as_str(),
            ),
            ("MALL__PAYMENT__ALIPAY_NOTIFY_URL", ALIPAY_NOTIFY_URL),
            ("MALL__PAYMENT__ALIPAY_SELLER_ID", ALIPAY_SELLER_ID),
            ("MALL__PAYMENT__RECONCILE_INTERVAL", "1s"),
            ("MALL__PAYMENT__ALIPAY_QUERY_AFTER", "1s"),
        ];
        env.extend_from_slice(overrides);
        let fleet = TestFleet::start_with(mall::SERVICES, &env).await;
        AlipayFleet { fleet, gateway }
    }

    /// The notify endpoint of the running payment service (its admin port).
    pub fn notify_url(&self) -> String {
        format!(
            "http://{}/alipay/notify",
            self.fleet.endpoints("payment").admin
        )
    }

    /// Puts `lines` in `user_id`'s cart (a fresh product each, `price_cents` and 10 in
    /// stock) and checks out with Alipay under `key`; the product ids and the answer.
    pub async fn checkout(
        &self,
        user_id: u64,
        key: &str,
        lines: &[(i64, i32)],
    ) -> (Vec<u64>, pb::CheckoutResp) {
        let mut products = Vec::new();
        for (i, (price, quantity)) in lines.iter().enumerate() {
            let id = self
                .fleet
                .catalog()
                .create_product(&format!("alipay item {i} {key}"), *price, 10)
                .await;
            self.fleet
                .cart(user_id)
                .add(id, *quantity)
                .await
                .expect("add to cart");
            products.push(id);
        }
        let resp = self
            .fleet
            .checkout(user_id)
            .send(alipay_checkout_request(user_id, key))
            .await
            .unwrap_or_else(|e| panic!("alipay checkout: {e}"));
        (products, resp)
    }

    /// The buyer pays `order_id` (`total_cents`) at Alipay and Alipay notifies the endpoint;
    /// the endpoint's answer body.
    pub async fn pay_and_notify(&self, order_id: &str, total_cents: i64) -> String {
        self.gateway.pay(order_id, total_cents);
        let params = self.gateway.sign(self.gateway.notification(order_id));
        self.gateway.notify(&self.notify_url(), &params).await.1
    }

    /// Stops the fleet.
    pub async fn stop(self) {
        self.fleet.stop().await;
    }
}

/// A valid Alipay checkout request for `user_id` under idempotency `key` (no card).
pub fn alipay_checkout_request(user_id: u64, key: &str) -> pb::CheckoutReq {
    pb::CheckoutReq {
        user_id,
        firstname: "Ann".into(),
        lastname: "Lee".into(),
        email: "Ann@Example.com".into(),
        address: Some(address()),
        credit_card: None,
        idempotency_key: key.into(),
        payment_method: "alipay".into(),
        return_url: "https://mall.example/orders/paid".into(),
    }
}

/// The query parameters of a pay link.
pub fn pay_url_params(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}
