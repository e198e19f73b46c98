//! [`Catalog`]: the product catalog as tests set it up and read it back.

use mall_common::client::Channel;
use mall_proto::common::v1::CartItem;
use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use tonic::Status;

use crate::TestFleet;

/// A product catalog client on the fleet's client stack.
pub type ProductClient = ProductCatalogServiceClient<Channel>;

/// The catalog of a fleet running `product`: writes as an admin, stock reads and reservations
/// as a service (they are internal RPCs). Methods take `&self`: tonic clients are cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    admin: ProductClient,
    service: ProductClient,
}

impl TestFleet {
    /// The catalog of this fleet (it must run `product`).
    pub fn catalog(&self) -> Catalog {
        Catalog {
            admin: self.client_as("product", &self.admin_token()),
            service: self.client("product"),
        }
    }
}

/// A product to create: `name`, described as "`name`, described", pictured at
/// `/img/<name>.png`, in no category.
pub fn new_product(name: &str, price_cents: i64, stock: u32) -> pb::CreateProductReq {
    pb::CreateProductReq {
        name: name.into(),
        description: format!("{name}, described"),
        picture: format!("/img/{name}.png"),
        price_cents,
        stock,
        categories: vec![],
    }
}

/// `(product_id, quantity)` lines as the cart items the product and order APIs take.
pub fn cart_items(lines: &[(u64, i32)]) -> Vec<CartItem> {
    lines
        .iter()
        .map(|(product_id, quantity)| CartItem {
            product_id: *product_id,
            quantity: *quantity,
        })
        .collect()
}

impl Catalog {
    /// Creates `product`; panics (naming it) if the catalog refuses.
    pub async fn create(&self, product: pb::CreateProductReq) -> pb::Product {
        let name = product.name.clone();
        self.admin
            .clone()
            .create_product(product)
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"))
            .into_inner()
    }

    /// Creates [`new_product`]`(name, price_cents, stock)` and returns its id.
    pub async fn create_product(&self, name: &str, price_cents: i64, stock: u32) -> u64 {
        self.create(new_product(name, price_cents, stock)).await.id
    }

    /// Product `id` as the catalog serves it.
    pub async fn get(&self, id: u64) -> Result<pb::Product, Status> {
        self.service
            .clone()
            .get_product(pb::GetProductReq { id })
            .await
            .map(|r| {
                r.into_inner()
                    .product
                    .expect("GetProduct answers with a product")
            })
    }

    /// The units of product `id` in stock; panics if it cannot be read.
    pub async fn stock_of(&self, id: u64) -> u32 {
        self.get(id)
            .await
            .unwrap_or_else(|e| panic!("get product {id}: {e}"))
            .stock
    }

    /// Reserves `(product_id, quantity)` lines the way checkout does (the reservation id is the
    /// order id).
    pub async fn reserve(&self, reservation_id: &str, lines: &[(u64, i32)]) -> Result<(), Status> {
        self.service
            .clone()
            .reserve_stock(pb::ReserveStockReq {
                reservation_id: reservation_id.into(),
                items: cart_items(lines),
            })
            .await
            .map(|_| ())
    }

    /// Deletes product `id`.
    pub async fn delete(&self, id: u64) -> Result<(), Status> {
        self.admin
            .clone()
            .delete_product(pb::DeleteProductReq { id })
            .await
            .map(|_| ())
    }
}
