//! Cart's calls to other services, and how their answers map: the catalog (product's
//! `GetProduct`), asked whether a product may be put in a cart. Calls carry this service's
//! token.

use mall_common::client::{Channel, Clients};
use mall_proto::product::v1::GetProductReq;
use mall_proto::product::v1::product_catalog_service_client::ProductCatalogServiceClient;
use mall_types::{ProductId, ServiceName};
use tonic::Code;

use crate::error::Error;

type CatalogClient = ProductCatalogServiceClient<Channel>;

/// The catalog, found through discovery on each call.
#[derive(Clone)]
pub struct Catalog {
    clients: Clients,
}

impl Catalog {
    /// The catalog as `clients` find it.
    pub fn new(clients: Clients) -> Self {
        Catalog { clients }
    }

    /// Asks the catalog whether `product_id` is a live product. Deleted products are
    /// `NOT_FOUND` there too, so they cannot be put in a cart.
    pub async fn ensure_product_exists(&self, product_id: ProductId) -> Result<(), Error> {
        let id = product_id.get();
        let mut catalog = self
            .clients
            .client::<CatalogClient>(ServiceName::Product)
            .map_err(Error::catalog)?;
        match catalog.get_product(GetProductReq { id }).await {
            Ok(resp) if resp.get_ref().product.is_some() => Ok(()),
            Ok(_) => Err(Error::IncompleteAnswer),
            Err(status) if status.code() == Code::NotFound => Err(Error::ProductNotFound(id)),
            Err(status) => Err(Error::catalog(status)),
        }
    }
}
