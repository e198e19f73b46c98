//! Per-service identity: an internal RPC admits only the services it names, a service token is
//! accepted only by the service it is addressed to, and with mutual TLS the calling service is
//! the one its certificate names (not the token's subject); the whole purchase works both ways.

use std::time::Duration;

use mall_common::client::Channel;
use mall_proto::auth::v1 as auth_pb;
use mall_proto::auth::v1::auth_service_client::AuthServiceClient;
use mall_proto::common::v1::CreditCardInfo;
use mall_proto::order::v1 as order_pb;
use mall_proto::payment::v1 as pb;
use mall_testing::{GOOD_CARD, OrderClient, PaymentClient, TestFleet, checkout_request};
use tonic::Code;

type AuthClient = AuthServiceClient<Channel>;

fn card() -> CreditCardInfo {
    checkout_request(1, GOOD_CARD, "k").credit_card.unwrap()
}

fn charge_req(order: &str) -> pb::ChargeReq {
    pb::ChargeReq {
        amount_cents: 500,
        credit_card: Some(card()),
        payment_method: "credit_card".into(),
        order_id: order.into(),
        user_id: 7,
    }
}

fn refund_req(transaction_id: &str, order: &str) -> pb::RefundReq {
    pb::RefundReq {
        transaction_id: transaction_id.into(),
        order_id: order.into(),
        amount_cents: 100,
        reason: "identity test".into(),
        user_id: 7,
        ..Default::default()
    }
}

/// Charges `order` as checkout; returns the transaction id.
async fn charge_as_checkout(fleet: &TestFleet, order: &str) -> String {
    fleet
        .client_from::<PaymentClient>("checkout", "payment")
        .charge(charge_req(order))
        .await
        .unwrap_or_else(|e| panic!("charge as checkout: {e}"))
        .into_inner()
        .transaction_id
}

/// Asserts `result` failed with `code` and a message containing `needle`.
fn denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("refused");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(status.message().contains(needle), "{status:?}");
}

/// Buys one product through checkout as user 21: the saga calls cart, product, order and
/// payment as checkout.
async fn purchase_works(fleet: &TestFleet) {
    let product = fleet.catalog().create_product("identity", 250, 3).await;
    fleet.cart(21).add(product, 2).await.expect("add to cart");
    let resp = fleet
        .checkout(21)
        .pay(GOOD_CARD, "identity-purchase")
        .await
        .expect("checkout");
    assert!(!resp.order_id.is_empty(), "{resp:?}");
    assert_eq!(fleet.catalog().stock_of(product).await, 1);
    assert!(fleet.cart(21).lines().await.is_empty());
}

#[tokio::test]
async fn internal_rpcs_admit_only_the_services_they_name() {
    let fleet = TestFleet::start(&["auth", "order", "payment"]).await;
    let tx = charge_as_checkout(&fleet, "order-ident-1").await;

    let mut as_cart = fleet.client_from::<PaymentClient>("cart", "payment");
    denied(
        as_cart.refund(refund_req(&tx, "order-ident-1")).await,
        Code::PermissionDenied,
        "`cart` may not call tiktokmall.payment.v1.PaymentService/Refund",
    );
    denied(
        as_cart.charge(charge_req("order-ident-2")).await,
        Code::PermissionDenied,
        "`cart`",
    );
    // Checkout's own refund goes through.
    fleet
        .client_from::<PaymentClient>("checkout", "payment")
        .refund(refund_req(&tx, "order-ident-1"))
        .await
        .expect("refund as checkout");

    // A session for anyone is user's to ask for, nobody else's.
    denied(
        fleet
            .client_from::<AuthClient>("cart", "auth")
            .deliver_token(auth_pb::DeliverTokenReq { user_id: 1 })
            .await,
        Code::PermissionDenied,
        "`cart` may not call tiktokmall.auth.v1.AuthService/DeliverToken",
    );
    // Checkout marks card orders paid, payment Alipay ones; nobody else does.
    let mark_paid = || order_pb::MarkOrderPaidReq {
        user_id: 7,
        order_id: "order-ident-1".into(),
        transaction_id: tx.clone(),
    };
    denied(
        fleet
            .client_from::<OrderClient>("cart", "order")
            .mark_order_paid(mark_paid())
            .await,
        Code::PermissionDenied,
        "`cart` may not call tiktokmall.order.v1.OrderService/MarkOrderPaid",
    );
    let by_payment = fleet
        .client_from::<OrderClient>("payment", "order")
        .mark_order_paid(mark_paid())
        .await;
    assert_eq!(
        by_payment.unwrap_err().code(),
        Code::NotFound,
        "payment may mark an order paid (this one does not exist)"
    );
    // A service acting for users only where the RPC names it: payment and checkout may read
    // an order, cart may not; nobody but checkout cancels one.
    let get = || order_pb::GetOrderReq {
        user_id: 7,
        order_id: "order-ident-1".into(),
    };
    denied(
        fleet
            .client_from::<OrderClient>("cart", "order")
            .get_order(get())
            .await,
        Code::PermissionDenied,
        "`cart` may not call tiktokmall.order.v1.OrderService/GetOrder",
    );
    for reader in ["payment", "checkout"] {
        let answer = fleet
            .client_from::<OrderClient>(reader, "order")
            .get_order(get())
            .await;
        assert_eq!(
            answer.unwrap_err().code(),
            Code::NotFound,
            "{reader} may read"
        );
    }
    denied(
        fleet
            .client_from::<OrderClient>("payment", "order")
            .cancel_order(order_pb::CancelOrderReq {
                user_id: 7,
                order_id: "order-ident-1".into(),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "`payment` may not call tiktokmall.order.v1.OrderService/CancelOrder",
    );
    fleet.stop().await;
}

#[tokio::test]
async fn a_service_token_is_accepted_only_by_the_service_it_is_addressed_to() {
    let fleet = TestFleet::start(&["order", "payment"]).await;
    let (for_payment, _) = fleet.tokens().issue_service("checkout", "payment").unwrap();
    // Accepted where it was meant to go...
    let mut payment = fleet.client_as::<PaymentClient>("payment", &for_payment);
    payment
        .charge(charge_req("order-aud-1"))
        .await
        .expect("charge with a token for payment");
    // ...refused when replayed at order.
    let mut order = fleet.client_as::<OrderClient>("order", &for_payment);
    denied(
        order
            .mark_order_paid(order_pb::MarkOrderPaidReq {
                user_id: 7,
                order_id: "order-aud-1".into(),
                transaction_id: "t".into(),
            })
            .await,
        Code::Unauthenticated,
        "addressed to `payment`, not to `order`",
    );
    fleet.stop().await;
}

#[tokio::test]
async fn the_whole_purchase_works_with_per_caller_rules() {
    let fleet = TestFleet::start(mall::SERVICES).await;
    purchase_works(&fleet).await;
    fleet.stop().await;
}

#[tokio::test]
async fn with_mutual_tls_the_certificate_names_the_caller_and_the_purchase_works() {
    let fleet = TestFleet::start_tls(mall::SERVICES).await;
    purchase_works(&fleet).await;
    let tx = charge_as_checkout(&fleet, "order-mtls-1").await;

    // Cart's certificate, with a (validly signed) token claiming to be checkout: the
    // certificate decides.
    let (claims_checkout, _) = fleet.tokens().issue_service("checkout", "payment").unwrap();
    let mut cart = fleet.client_from_as::<PaymentClient>("cart", "payment", &claims_checkout);
    denied(
        cart.refund(refund_req(&tx, "order-mtls-1")).await,
        Code::PermissionDenied,
        "`cart` may not call tiktokmall.payment.v1.PaymentService/Refund",
    );
    fleet
        .client_from::<PaymentClient>("checkout", "payment")
        .refund(refund_req(&tx, "order-mtls-1"))
        .await
        .expect("refund with checkout's certificate");
    fleet.stop().await;
}

#[tokio::test]
async fn with_mutual_tls_a_client_without_a_certificate_cannot_connect() {
    let fleet = TestFleet::start_tls(&["payment"]).await;
    let addr = fleet.endpoints("payment").grpc;
    let ca = std::fs::read(fleet.certs_dir().join("ca.pem")).unwrap();
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(ca))
        .domain_name(mall_common::tls::certificate_name("payment"));
    let channel = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    // TLS 1.3: the client's side of the handshake completes, then the server's alert ends it.
    let status = answer.expect_err("refused without a client certificate");
    assert!(
        format!("{status:?}").contains("CertificateRequired"),
        "{status:?}"
    );

    // Nor can a plain-TCP client.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy();
    let answer = tonic_health::pb::health_client::HealthClient::new(plain)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await;
    assert!(answer.is_err(), "{answer:?}");
    fleet.stop().await;
}
