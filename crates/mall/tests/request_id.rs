//! One request, one id: the `x-request-id` a client sends (or the one the first service
//! generates) reaches every service the request passes through, so their log lines can be
//! joined — from cart to product, and through a whole checkout saga. Its own test binary: it
//! captures the logs of the in-process fleet.

use mall_proto::cart::v1 as cart_pb;
use mall_proto::common::v1::CartItem;
use mall_testing::logs::{self, Format};
use mall_testing::{CartClient, CheckoutClient, GOOD_CARD, TestFleet, checkout_request};

#[tokio::test(flavor = "current_thread")]
async fn a_request_id_follows_a_purchase_through_every_service() {
    let capture = logs::capture(Format::Json, tracing::Level::INFO);

    let fleet = TestFleet::start(mall::SERVICES).await;
    let product = fleet.catalog().create_product("traced", 100, 5).await;
    let mut cart = fleet.client_as::<CartClient>("cart", &fleet.user_token(9));
    let mut request = tonic::Request::new(cart_pb::AddItemReq {
        user_id: 9,
        item: Some(CartItem {
            product_id: product,
            quantity: 1,
        }),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "journey-7f3a".parse().unwrap());
    cart.add_item(request).await.unwrap();

    // A 200 ms deadline set by the client reaches the second hop as at most 200 ms.
    let mut request = tonic::Request::new(cart_pb::AddItemReq {
        user_id: 9,
        item: Some(CartItem {
            product_id: product,
            quantity: 1,
        }),
    });
    request.set_timeout(std::time::Duration::from_millis(200));
    request
        .metadata_mut()
        .insert("x-request-id", "deadline-200".parse().unwrap());
    cart.add_item(request).await.unwrap();

    let mut checkout = fleet.client_as::<CheckoutClient>("checkout", &fleet.user_token(9));
    let mut request = tonic::Request::new(checkout_request(9, GOOD_CARD, "traced-purchase"));
    request
        .metadata_mut()
        .insert("x-request-id", "purchase-51c9".parse().unwrap());
    checkout.checkout(request).await.unwrap();
    fleet.stop().await;

    let logs = capture.finish();
    let tagged: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("journey-7f3a"))
        .collect();
    assert!(
        tagged
            .iter()
            .any(|l| l.contains("tiktokmall.cart.v1.CartService")),
        "no cart log line carries the id:\n{logs}"
    );
    assert!(
        tagged.iter().any(
            |l| l.contains("tiktokmall.product.v1.ProductCatalogService")
                && l.contains("GetProduct")
        ),
        "the id did not reach product:\n{logs}"
    );

    let hop: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("deadline-200") && l.contains("GetProduct"))
        .collect();
    let timeouts: Vec<i64> = hop
        .iter()
        .filter_map(|l| {
            let rest = l.split("\"grpc.timeout_ms\":").nth(1)?;
            rest.split(|c: char| !c.is_ascii_digit() && c != '-')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert!(
        !timeouts.is_empty(),
        "product saw no deadline:\n{}",
        hop.join("\n")
    );
    assert!(
        timeouts.iter().all(|t| (1..=200).contains(t)),
        "the second hop's deadline is not within 200 ms: {timeouts:?}"
    );

    // One checkout: every service of the saga logs under the client's id.
    let purchase: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("purchase-51c9"))
        .collect();
    for (service, method) in [
        ("tiktokmall.checkout.v1.CheckoutService", "Checkout"),
        ("tiktokmall.cart.v1.CartService", "GetCart"),
        (
            "tiktokmall.product.v1.ProductCatalogService",
            "BatchGetProducts",
        ),
        ("tiktokmall.order.v1.OrderService", "PlaceOrder"),
        (
            "tiktokmall.product.v1.ProductCatalogService",
            "ReserveStock",
        ),
        ("tiktokmall.payment.v1.PaymentService", "Charge"),
        ("tiktokmall.order.v1.OrderService", "MarkOrderPaid"),
        ("tiktokmall.cart.v1.CartService", "RemovePurchased"),
    ] {
        assert!(
            purchase
                .iter()
                .any(|l| l.contains(service) && l.contains(method)),
            "no {service}/{method} log line carries the purchase's id:\n{}",
            purchase.join("\n")
        );
    }
}
