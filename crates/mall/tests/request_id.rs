//! One request, one id: the `x-request-id` a client sends (or the one the first service
//! generates) reaches every service the request passes through, so their log lines can be
//! joined. Its own test binary: it captures the logs of the in-process fleet.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mall::testing::TestFleet;
use mall_common::client::Channel;
use mall_proto::cart::v1 as cart_pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::common::v1::CartItem;
use mall_proto::product::v1 as product_pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut out) = self.0.lock() {
            out.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_request_id_follows_the_call_from_cart_to_product() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fleet = TestFleet::start(&["auth", "product", "cart"]).await;
    let mut admin =
        fleet.client_as::<ProductCatalogServiceClient<Channel>>("product", &fleet.admin_token());
    let product = admin
        .create_product(product_pb::CreateProductReq {
            name: "traced".into(),
            price_cents: 100,
            stock: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut cart = fleet.client_as::<CartServiceClient<Channel>>("cart", &fleet.user_token(9));
    let mut request = tonic::Request::new(cart_pb::AddItemReq {
        user_id: 9,
        item: Some(CartItem {
            product_id: product.id,
            quantity: 1,
        }),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "journey-7f3a".parse().unwrap());
    cart.add_item(request).await.unwrap();
    fleet.stop().await;

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
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
}
