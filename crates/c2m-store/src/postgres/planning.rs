//! PostgreSQL: the catalogue and planning tables ([`CatalogueStore`], [`PlanningStore`]).
//!
//! Catalogue changes and stored plans serialise on the `catalogue_meta` row
//! (`FOR UPDATE`), across replicas; creating a campaign holds its product's row
//! (`FOR SHARE`) so the product cannot be removed under it. Reads run in a read-only
//! REPEATABLE READ transaction, so a multi-statement read sees one snapshot.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::{IdempotencyKey, Page, PageRequest};

use super::PgTx;
use super::{retryable, PgStore, ATTEMPTS};
use crate::access::{NewToken, StoredToken, TokenStore};
use crate::catalogue::{Catalogue, CatalogueChanged, CatalogueCheck, ChangeCatalogue};
use crate::factory::{
    BatchProduction, FactoryPosition, ReportProgress, WorkOrderStatus, FEED_PAGE,
};
use crate::planning::{plan_not_found, NewPlan, PlanSummary, QueuedBatch, StoredPlan, WorkOrder};
use crate::{CatalogueStore, FactoryStore, PlanningStore, StoreError};
use c2m_domain::BatchId;

impl PgStore {
    /// A read-only snapshot.
    async fn snapshot(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx::snapshot(&self.pool).await?)
    }
}

#[async_trait]
impl CatalogueStore for PgStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn catalogue(&self) -> Result<Catalogue, StoreError> {
        use crate::catalogue::CatalogueTx;
        let mut tx = self.snapshot().await?;
        let r = tx.read_catalogue().await;
        tx.finish(r).await
    }

    #[tracing::instrument(skip(self, check), err(level = "debug"))]
    async fn change_catalogue(
        &self,
        req: &ChangeCatalogue,
        check: CatalogueCheck,
        now: DateTime<Utc>,
    ) -> Result<CatalogueChanged, StoreError> {
        write!(self, |tx| crate::catalogue::change_catalogue(
            &mut tx, req, &check, now
        ))
    }
}

#[async_trait]
impl PlanningStore for PgStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn planning_queue(&self) -> Result<Vec<QueuedBatch>, StoreError> {
        use crate::planning::PlanningTx;
        let mut tx = self.snapshot().await?;
        let r = tx.queued_batches().await;
        tx.finish(r).await
    }

    #[tracing::instrument(skip(self, plan), err(level = "debug"))]
    async fn store_plan(&self, plan: &NewPlan, now: DateTime<Utc>) -> Result<String, StoreError> {
        write!(self, |tx| crate::planning::store_plan(&mut tx, plan, now))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn replayed_plan(&self, key: &IdempotencyKey) -> Result<Option<String>, StoreError> {
        let mut tx = self.snapshot().await?;
        let r = crate::planning::replayed_plan(&mut tx, key).await;
        tx.finish(r).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_plan(&self, id: &str) -> Result<StoredPlan, StoreError> {
        use crate::planning::PlanningTx;
        let mut tx = self.snapshot().await?;
        let r = tx.plan(id).await;
        tx.finish(r).await?.ok_or_else(|| plan_not_found(id))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_plans(&self, page: PageRequest) -> Result<Page<PlanSummary>, StoreError> {
        use crate::planning::PlanningTx;
        let mut tx = self.snapshot().await?;
        let r = tx.plans(page).await;
        tx.finish(r).await
    }
}

#[async_trait]
impl FactoryStore for PgStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn factory_position(&self, factory: &str) -> Result<FactoryPosition, StoreError> {
        let mut tx = self.snapshot().await?;
        let r = crate::factory::known_position(&mut tx, factory).await;
        tx.finish(r).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn factory_work_orders(
        &self,
        factory: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<WorkOrder>, StoreError> {
        use crate::factory::FactoryTx;
        let mut tx = self.snapshot().await?;
        let r = tx
            .work_orders_after(factory, after, limit.clamp(1, FEED_PAGE))
            .await;
        tx.finish(r).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ack_work_orders(
        &self,
        factory: &str,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<FactoryPosition, StoreError> {
        write!(self, |tx| crate::factory::ack(&mut tx, factory, seq, now))
    }

    #[tracing::instrument(skip(self, req), fields(work_order = %req.work_order_id), err(level = "debug"))]
    async fn report_progress(
        &self,
        req: &ReportProgress,
        now: DateTime<Utc>,
    ) -> Result<WorkOrderStatus, StoreError> {
        write!(self, |tx| crate::factory::report(&mut tx, req, now))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batch_production(
        &self,
        batches: &[BatchId],
    ) -> Result<Vec<BatchProduction>, StoreError> {
        let mut tx = self.snapshot().await?;
        let r = crate::factory::batch_production(&mut tx, batches).await;
        tx.finish(r).await
    }
}

#[async_trait]
impl TokenStore for PgStore {
    #[tracing::instrument(skip(self, t), fields(id = %t.id), err(level = "debug"))]
    async fn create_token(&self, t: &NewToken, now: DateTime<Utc>) -> Result<(), StoreError> {
        use crate::access::TokenTx;
        write!(self, |tx| tx.insert_token(t, now))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        write!(self, |tx| crate::access::revoke(&mut tx, id, now))
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        use crate::access::TokenTx;
        let mut tx = self.snapshot().await?;
        let r = tx.token(id).await;
        tx.finish(r).await
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        use crate::access::TokenTx;
        let mut tx = self.snapshot().await?;
        let r = tx.tokens().await;
        tx.finish(r).await
    }
}
