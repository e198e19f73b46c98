//! [`Cart`]: one user's cart, through a caller of the test's choosing.

use mall_common::client::Channel;
use mall_proto::cart::v1 as pb;
use mall_proto::cart::v1::cart_service_client::CartServiceClient;
use mall_proto::common::v1::CartItem;
use tonic::Status;

use crate::TestFleet;

/// A cart service client on the fleet's client stack.
pub type CartClient = CartServiceClient<Channel>;

/// The cart of `user_id`, reached through one client (the user's own, another user's, an
/// admin's or a service's: whoever the test makes the caller).
#[derive(Clone)]
pub struct Cart {
    client: CartClient,
    user_id: u64,
}

impl TestFleet {
    /// The cart of `user_id`, called with that user's own token.
    pub fn cart(&self, user_id: u64) -> Cart {
        Cart::new(self.client_as("cart", &self.user_token(user_id)), user_id)
    }

    /// The cart of `user_id`, called as another service of the fleet (internal RPCs).
    pub fn cart_as_service(&self, user_id: u64) -> Cart {
        Cart::new(self.client("cart"), user_id)
    }
}

fn item(product_id: u64, quantity: i32) -> Option<CartItem> {
    Some(CartItem {
        product_id,
        quantity,
    })
}

impl Cart {
    /// The cart of `user_id` through `client`.
    pub fn new(client: CartClient, user_id: u64) -> Cart {
        Cart { client, user_id }
    }

    /// The same caller acting on `user_id`'s cart instead.
    pub fn of(&self, user_id: u64) -> Cart {
        Cart::new(self.client.clone(), user_id)
    }

    /// `AddItem`: `quantity` more of `product_id`.
    pub async fn add(&self, product_id: u64, quantity: i32) -> Result<(), Status> {
        self.client
            .clone()
            .add_item(pb::AddItemReq {
                user_id: self.user_id,
                item: item(product_id, quantity),
            })
            .await
            .map(|_| ())
    }

    /// `UpdateItem`: the line of `product_id` set to `quantity` (0 removes it).
    pub async fn update(&self, product_id: u64, quantity: i32) -> Result<(), Status> {
        self.client
            .clone()
            .update_item(pb::UpdateItemReq {
                user_id: self.user_id,
                item: item(product_id, quantity),
            })
            .await
            .map(|_| ())
    }

    /// `RemoveItem`.
    pub async fn remove(&self, product_id: u64) -> Result<(), Status> {
        self.client
            .clone()
            .remove_item(pb::RemoveItemReq {
                user_id: self.user_id,
                product_id,
            })
            .await
            .map(|_| ())
    }

    /// `EmptyCart`.
    pub async fn empty(&self) -> Result<(), Status> {
        self.client
            .clone()
            .empty_cart(pb::EmptyCartReq {
                user_id: self.user_id,
            })
            .await
            .map(|_| ())
    }

    /// `RemovePurchased` of `order_id`'s `(product_id, quantity)` lines; whether it removed
    /// anything (false for a repeat).
    pub async fn remove_purchased(
        &self,
        order_id: &str,
        items: &[(u64, i32)],
    ) -> Result<bool, Status> {
        self.client
            .clone()
            .remove_purchased(pb::RemovePurchasedReq {
                user_id: self.user_id,
                order_id: order_id.to_string(),
                items: items
                    .iter()
                    .map(|&(product_id, quantity)| CartItem {
                        product_id,
                        quantity,
                    })
                    .collect(),
            })
            .await
            .map(|r| r.into_inner().removed)
    }

    /// `GetCart`.
    pub async fn get(&self) -> Result<pb::Cart, Status> {
        self.client
            .clone()
            .get_cart(pb::GetCartReq {
                user_id: self.user_id,
            })
            .await
            .map(|r| r.into_inner().cart.expect("GetCart answers with a cart"))
    }

    /// `(product_id, quantity)` lines of the cart, in the order the service returns them;
    /// panics if it cannot be read.
    pub async fn lines(&self) -> Vec<(u64, i32)> {
        self.get()
            .await
            .unwrap_or_else(|e| panic!("GetCart {}: {e}", self.user_id))
            .items
            .into_iter()
            .map(|i| (i.product_id, i.quantity))
            .collect()
    }
}
