//! The gRPC edge of the carts: check the caller may act on the cart, parse the request into
//! domain types, ask the catalog whether a product exists, call the store, map errors to
//! statuses. The server lets only signed-in callers through ([`ACCESS`]); each handler then
//! checks ownership with `Caller::authorize` before it looks at anything else.

use mall_common::auth;
use mall_common::auth::{Access, AccessTable};
use mall_common::client::Clients;
use mall_proto::cart::v1 as pb;
use mall_proto::cart::v1::cart_service_server::CartService;
use mall_proto::common::v1::CartItem;
use mall_types::ids::stored_to_api;
use mall_types::{ProductId, ServiceName};
use tonic::{Request, Response, Status};

use crate::domain::{self, Addition, LineUpdate, Purchase};
use crate::error::Error;
use crate::peers::Catalog;
use crate::store::{Carts, Removal};

/// Who may call what: every RPC needs a token. End users act on their own cart, admins on
/// anyone's, and other services (checkout) on behalf of any user; checkout takes a card
/// purchase out of a cart, payment an Alipay one (once Alipay confirmed it).
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::cart::v1::cart_service_server::SERVICE_NAME,
    rules: &[
        ("AddItem", Access::User(&[])),
        ("GetCart", Access::User(&[ServiceName::Checkout])),
        ("EmptyCart", Access::User(&[])),
        ("UpdateItem", Access::User(&[])),
        ("RemoveItem", Access::User(&[])),
        (
            "RemovePurchased",
            Access::Internal(&[ServiceName::Checkout, ServiceName::Payment]),
        ),
    ],
};

/// The `CartService` implementation.
#[derive(Clone)]
pub struct CartApi {
    carts: Carts,
    catalog: Catalog,
}

/// `(product_id, quantity)` of a request's item, `None` when it is missing.
fn item_fields(item: Option<&CartItem>) -> Option<(u64, i32)> {
    item.map(|i| (i.product_id, i.quantity))
}

impl CartApi {
    /// A service over `carts`, asking the catalog through `clients`.
    pub fn new(carts: Carts, clients: Clients) -> Self {
        CartApi {
            carts,
            catalog: Catalog::new(clients),
        }
    }
}

#[tonic::async_trait]
impl CartService for CartApi {
    async fn add_item(
        &self,
        request: Request<pb::AddItemReq>,
    ) -> Result<Response<pb::AddItemResp>, Status> {
        let req = request.get_ref();
        let addition =
            Addition::parse(req.user_id, item_fields(req.item.as_ref())).map_err(Error::from)?;
        auth::caller(&request)?.authorize(addition.user_id)?;
        self.catalog
            .ensure_product_exists(addition.product_id)
            .await?;
        self.carts.add(&addition).await?;
        tracing::debug!(
            user = addition.user_id.get(),
            product = addition.product_id.get(),
            quantity = addition.quantity.get(),
            "cart item added"
        );
        Ok(Response::new(pb::AddItemResp {}))
    }

    async fn get_cart(
        &self,
        request: Request<pb::GetCartReq>,
    ) -> Result<Response<pb::GetCartResp>, Status> {
        let user_id = domain::user_id(request.get_ref().user_id).map_err(Error::from)?;
        auth::caller(&request)?.authorize(user_id)?;
        let items = self
            .carts
            .lines(user_id)
            .await?
            .into_iter()
            .map(|line| CartItem {
                product_id: stored_to_api(line.product_id),
                quantity: i32::try_from(line.quantity).unwrap_or(i32::MAX),
            })
            .collect();
        Ok(Response::new(pb::GetCartResp {
            cart: Some(pb::Cart {
                user_id: user_id.get(),
                items,
            }),
        }))
    }

    async fn empty_cart(
        &self,
        request: Request<pb::EmptyCartReq>,
    ) -> Result<Response<pb::EmptyCartResp>, Status> {
        let user_id = domain::user_id(request.get_ref().user_id).map_err(Error::from)?;
        auth::caller(&request)?.authorize(user_id)?;
        let removed = self.carts.empty(user_id).await?;
        if removed > 0 {
            tracing::debug!(user = user_id.get(), lines = removed, "cart emptied");
        }
        Ok(Response::new(pb::EmptyCartResp {}))
    }

    async fn update_item(
        &self,
        request: Request<pb::UpdateItemReq>,
    ) -> Result<Response<pb::UpdateItemResp>, Status> {
        let req = request.get_ref();
        let update =
            LineUpdate::parse(req.user_id, item_fields(req.item.as_ref())).map_err(Error::from)?;
        auth::caller(&request)?.authorize(update.user_id())?;
        match update {
            LineUpdate::Remove {
                user_id,
                product_id,
            } => self.carts.remove(user_id, product_id).await?,
            LineUpdate::Set {
                user_id,
                product_id,
                quantity,
            } => {
                // Like AddItem: a positive quantity needs a live product, whether the line
                // exists or is about to be created.
                self.catalog.ensure_product_exists(product_id).await?;
                self.carts.set(user_id, product_id, quantity).await?;
            }
        }
        Ok(Response::new(pb::UpdateItemResp {}))
    }

    async fn remove_item(
        &self,
        request: Request<pb::RemoveItemReq>,
    ) -> Result<Response<pb::RemoveItemResp>, Status> {
        let req = request.get_ref();
        let user_id = domain::user_id(req.user_id).map_err(Error::from)?;
        let product_id = ProductId::parse(req.product_id, "product_id").map_err(Error::from)?;
        auth::caller(&request)?.authorize(user_id)?;
        self.carts.remove(user_id, product_id).await?;
        Ok(Response::new(pb::RemoveItemResp {}))
    }

    async fn remove_purchased(
        &self,
        request: Request<pb::RemovePurchasedReq>,
    ) -> Result<Response<pb::RemovePurchasedResp>, Status> {
        let req = request.into_inner();
        let items: Vec<(u64, i32)> = req
            .items
            .iter()
            .map(|i| (i.product_id, i.quantity))
            .collect();
        let purchase = Purchase::parse(req.user_id, &req.order_id, &items).map_err(Error::from)?;
        let removal = self.carts.remove_purchased(&purchase).await?;
        tracing::debug!(
            user = purchase.user_id.get(),
            order = purchase.order_id.as_str(),
            ?removal,
            "purchase removed from cart"
        );
        Ok(Response::new(pb::RemovePurchasedResp {
            removed: removal == Removal::Removed,
        }))
    }
}
