//! The gRPC edge of the catalog: parse the request into domain types, call the store (through
//! the cache for reads by id), map errors to statuses. Access rules are in [`ACCESS`] and are
//! enforced by the server before any handler runs.

use std::sync::Arc;
use std::time::Duration;

use mall_common::auth::{Access, AccessTable};
use mall_common::cache::{self, SharedCache};
use mall_common::paging::Page;
use mall_proto::product::v1 as pb;
use mall_proto::product::v1::product_catalog_service_server::ProductCatalogService;
use mall_types::ids::stored_to_api;
use mall_types::{ProductId, ReservationId, ServiceName};
use tonic::{Request, Response, Status};

use crate::domain::{
    NewProduct, Product, ProductPatch, Reservation, Search, batch_ids, category_filter,
};
use crate::error::Error;
use crate::near::NearCache;
use crate::store::{Catalog, Reserved};

/// Who may call what: browsing (batch reads and categories too) is public, writes are
/// admin-only; reservations are checkout's, releases checkout's and order's (its sweeper of
/// expired orders).
pub const ACCESS: AccessTable = AccessTable {
    service: mall_proto::product::v1::product_catalog_service_server::SERVICE_NAME,
    rules: &[
        ("ListProducts", Access::Public),
        ("GetProduct", Access::Public),
        ("SearchProducts", Access::Public),
        ("BatchGetProducts", Access::Public),
        ("ListCategories", Access::Public),
        ("CreateProduct", Access::Admin),
        ("UpdateProduct", Access::Admin),
        ("DeleteProduct", Access::Admin),
        ("ReserveStock", Access::Internal(&[ServiceName::Checkout])),
        (
            "ReleaseStock",
            Access::Internal(&[ServiceName::Checkout, ServiceName::Order]),
        ),
    ],
};

/// The `ProductCatalogService` implementation.
#[derive(Clone)]
pub struct CatalogApi {
    catalog: Catalog,
    cache: SharedCache,
    cache_ttl: Duration,
    near: Option<Arc<NearCache>>,
}

fn cache_key(id: ProductId) -> String {
    format!("product:v1:{id}")
}

fn to_pb(p: Product) -> pb::Product {
    pb::Product {
        id: stored_to_api(p.id),
        name: p.name,
        description: p.description,
        picture: p.picture,
        price_cents: p.price_cents,
        stock: u32::try_from(p.stock.max(0)).unwrap_or(u32::MAX),
        categories: p.categories,
    }
}

impl CatalogApi {
    /// A service over `catalog`, caching products by id for `cache_ttl` in `cache` and, when
    /// given, in the `near` cache in front of it.
    pub fn new(
        catalog: Catalog,
        cache: SharedCache,
        cache_ttl: Duration,
        near: Option<Arc<NearCache>>,
    ) -> Self {
        CatalogApi {
            catalog,
            cache,
            cache_ttl,
            near,
        }
    }

    /// Drops cached copies of products after a write, here and (through the near cache's
    /// change log) in every instance. A failure is logged, not returned: the write is committed
    /// and cached entries expire after `catalog.cache_ttl` anyway.
    async fn invalidate(&self, ids: &[ProductId]) {
        for id in ids {
            if let Err(e) = cache::invalidate(self.cache.as_ref(), &cache_key(*id)).await {
                tracing::error!(product = id.get(), error = %e, "cache invalidation failed");
            }
        }
        if let Some(near) = &self.near
            && let Err(e) = near.changed(ids).await
        {
            tracing::error!(error = %e, "near-cache change log not written");
        }
    }

    /// The product `id` from the near cache, else the shared cache, else the database.
    async fn product(&self, id: ProductId) -> Result<Option<Product>, Error> {
        if let Some(product) = self.near.as_ref().and_then(|n| n.get(id)) {
            return Ok(Some(product));
        }
        let stamp = self.near.as_ref().map(|n| n.stamp());
        let catalog = self.catalog.clone();
        let product = cache::read_through(
            self.cache.as_ref(),
            &cache_key(id),
            self.cache_ttl,
            || async move { catalog.get(id).await },
        )
        .await?;
        if let (Some(near), Some(stamp), Some(product)) = (&self.near, stamp, &product) {
            near.fill(stamp, product);
        }
        Ok(product)
    }
}

#[tonic::async_trait]
impl ProductCatalogService for CatalogApi {
    async fn list_products(
        &self,
        request: Request<pb::ListProductsReq>,
    ) -> Result<Response<pb::ListProductsResp>, Status> {
        let req = request.into_inner();
        let page = Page::parse(req.page, req.page_size)?;
        let category = category_filter(&req.category_name).map_err(Error::from)?;
        let (products, total) = self.catalog.list(category.as_deref(), page).await?;
        Ok(Response::new(pb::ListProductsResp {
            products: products.into_iter().map(to_pb).collect(),
            total,
        }))
    }

    async fn list_categories(
        &self,
        _: Request<pb::ListCategoriesReq>,
    ) -> Result<Response<pb::ListCategoriesResp>, Status> {
        let categories = self
            .catalog
            .categories()
            .await?
            .into_iter()
            .map(|(name, count)| pb::Category {
                name,
                product_count: u64::try_from(count).unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(pb::ListCategoriesResp { categories }))
    }

    async fn get_product(
        &self,
        request: Request<pb::GetProductReq>,
    ) -> Result<Response<pb::GetProductResp>, Status> {
        let id = ProductId::parse(request.into_inner().id, "id").map_err(Error::from)?;
        let product = self
            .product(id)
            .await?
            .ok_or(Error::ProductNotFound(id.get()))?;
        Ok(Response::new(pb::GetProductResp {
            product: Some(to_pb(product)),
        }))
    }

    async fn search_products(
        &self,
        request: Request<pb::SearchProductsReq>,
    ) -> Result<Response<pb::SearchProductsResp>, Status> {
        let req = request.into_inner();
        let search = Search::parse(&req.query).map_err(Error::from)?;
        let page = Page::parse(req.page, req.page_size)?;
        let (results, total) = self.catalog.search(&search, page).await?;
        Ok(Response::new(pb::SearchProductsResp {
            results: results.into_iter().map(to_pb).collect(),
            total,
        }))
    }

    async fn batch_get_products(
        &self,
        request: Request<pb::BatchGetProductsReq>,
    ) -> Result<Response<pb::BatchGetProductsResp>, Status> {
        let ids = batch_ids(&request.into_inner().ids).map_err(Error::from)?;
        let products = self.catalog.batch_get(&ids).await?;
        let missing_ids = ids
            .iter()
            .filter(|id| !products.iter().any(|p| p.id == id.db()))
            .map(|id| id.get())
            .collect();
        Ok(Response::new(pb::BatchGetProductsResp {
            products: products.into_iter().map(to_pb).collect(),
            missing_ids,
        }))
    }

    async fn create_product(
        &self,
        request: Request<pb::CreateProductReq>,
    ) -> Result<Response<pb::Product>, Status> {
        let req = request.into_inner();
        let new = NewProduct::parse(
            &req.name,
            &req.description,
            &req.picture,
            req.price_cents,
            req.stock,
            &req.categories,
        )
        .map_err(Error::from)?;
        let product = self.catalog.create(&new).await?;
        tracing::info!(product = product.id, "product created");
        Ok(Response::new(to_pb(product)))
    }

    async fn update_product(
        &self,
        request: Request<pb::UpdateProductReq>,
    ) -> Result<Response<pb::Product>, Status> {
        let req = request.into_inner();
        let patch = ProductPatch::parse(
            req.id,
            &req.name,
            &req.description,
            &req.picture,
            req.price_cents,
            &req.categories,
        )
        .map_err(Error::from)?;
        let updated = self.catalog.update(&patch).await;
        // Invalidate even when the write failed half-way: a stale entry is worse than a miss.
        self.invalidate(&[patch.id]).await;
        let product = updated?.ok_or(Error::ProductNotFound(req.id))?;
        tracing::info!(product = product.id, "product updated");
        Ok(Response::new(to_pb(product)))
    }

    async fn delete_product(
        &self,
        request: Request<pb::DeleteProductReq>,
    ) -> Result<Response<pb::DeleteProductResp>, Status> {
        let id = ProductId::parse(request.into_inner().id, "id").map_err(Error::from)?;
        let deleted = self.catalog.delete(id).await;
        self.invalidate(&[id]).await;
        if !deleted? {
            return Err(Error::ProductNotFound(id.get()).into());
        }
        tracing::info!(product = id.get(), "product deleted");
        Ok(Response::new(pb::DeleteProductResp {}))
    }

    async fn reserve_stock(
        &self,
        request: Request<pb::ReserveStockReq>,
    ) -> Result<Response<pb::ReserveStockResp>, Status> {
        let req = request.into_inner();
        let items: Vec<(u64, i32)> = req
            .items
            .iter()
            .map(|i| (i.product_id, i.quantity))
            .collect();
        let reservation = Reservation::parse(&req.reservation_id, &items).map_err(Error::from)?;
        let outcome = self.catalog.reserve(&reservation).await?;
        if outcome == Reserved::Now {
            let ids: Vec<ProductId> = reservation.lines.iter().map(|(id, _)| *id).collect();
            self.invalidate(&ids).await;
            tracing::info!(reservation = %reservation.id, lines = ids.len(), "stock reserved");
        }
        Ok(Response::new(pb::ReserveStockResp {}))
    }

    async fn release_stock(
        &self,
        request: Request<pb::ReleaseStockReq>,
    ) -> Result<Response<pb::ReleaseStockResp>, Status> {
        let id = ReservationId::parse(&request.into_inner().reservation_id, "reservation_id")
            .map_err(Error::from)?;
        let touched = self.catalog.release(&id).await?;
        if !touched.is_empty() {
            self.invalidate(&touched).await;
            tracing::info!(reservation = %id, "stock released");
        }
        Ok(Response::new(pb::ReleaseStockResp {}))
    }
}
