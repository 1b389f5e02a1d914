//! SQLite: the catalogue and planning tables ([`CatalogueStore`], [`PlanningStore`]).
//! Writes run on the writer task like every other write; reads run in a read transaction
//! on a reader connection, so a multi-statement read sees one snapshot (WAL).

use async_trait::async_trait;
use c2m_domain::{IdempotencyKey, Page, PageRequest};
use chrono::{DateTime, Utc};

use super::writer::Operation;
use super::SqliteStore;
use super::SqliteTx;
use crate::access::{NewToken, StoredToken, TokenStore};
use crate::catalogue::{Catalogue, CatalogueChanged, CatalogueCheck, ChangeCatalogue};
use crate::factory::{
    BatchProduction, FactoryPosition, ReportProgress, WorkOrderStatus, FEED_PAGE,
};
use crate::planning::{plan_not_found, NewPlan, PlanSummary, QueuedBatch, StoredPlan, WorkOrder};
use crate::{CatalogueStore, FactoryStore, PlanningStore, StoreError};
use c2m_domain::BatchId;

struct ChangeOp(ChangeCatalogue, CatalogueCheck, DateTime<Utc>);
struct StorePlanOp(NewPlan, DateTime<Utc>);
struct AckOp(String, i64, DateTime<Utc>);
struct TokenOp(NewToken, DateTime<Utc>);
struct RevokeOp(String, DateTime<Utc>);

#[async_trait]
impl Operation for TokenOp {
    type Output = ();
    async fn run(&self, tx: &mut SqliteTx) -> Result<(), StoreError> {
        use crate::access::TokenTx;
        tx.insert_token(&self.0, self.1).await
    }
}

#[async_trait]
impl Operation for RevokeOp {
    type Output = bool;
    async fn run(&self, tx: &mut SqliteTx) -> Result<bool, StoreError> {
        revoke(tx, &self.0, self.1).await
    }
}
struct ReportOp(ReportProgress, DateTime<Utc>);

#[async_trait]
impl Operation for AckOp {
    type Output = FactoryPosition;
    async fn run(&self, tx: &mut SqliteTx) -> Result<FactoryPosition, StoreError> {
        crate::factory::ack(tx, &self.0, self.1, self.2).await
    }
}

#[async_trait]
impl Operation for ReportOp {
    type Output = WorkOrderStatus;
    async fn run(&self, tx: &mut SqliteTx) -> Result<WorkOrderStatus, StoreError> {
        crate::factory::report(tx, &self.0, self.1).await
    }
}

#[async_trait]
impl Operation for ChangeOp {
    type Output = CatalogueChanged;
    async fn run(&self, tx: &mut SqliteTx) -> Result<CatalogueChanged, StoreError> {
        crate::catalogue::change_catalogue(tx, &self.0, &self.1, self.2).await
    }
}

#[async_trait]
impl Operation for StorePlanOp {
    type Output = String;
    async fn run(&self, tx: &mut SqliteTx) -> Result<String, StoreError> {
        crate::planning::store_plan(tx, &self.0, self.1).await
    }
}

impl SqliteStore {
    /// A read-only snapshot on a reader connection.
    async fn snapshot(&self) -> Result<SqliteTx, StoreError> {
        Ok(crate::dialect::Tx::snapshot(&self.readers).await?)
    }
}

#[async_trait]
impl CatalogueStore for SqliteStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn catalogue(&self) -> Result<Catalogue, StoreError> {
        use crate::catalogue::CatalogueTx;
        let mut tx = self.snapshot().await?;
        tx.read_catalogue().await
    }

    #[tracing::instrument(skip(self, check), err(level = "debug"))]
    async fn change_catalogue(
        &self,
        req: &ChangeCatalogue,
        check: CatalogueCheck,
        now: DateTime<Utc>,
    ) -> Result<CatalogueChanged, StoreError> {
        self.write(ChangeOp(req.clone(), check, now)).await
    }
}

#[async_trait]
impl PlanningStore for SqliteStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn planning_queue(&self) -> Result<Vec<QueuedBatch>, StoreError> {
        use crate::planning::PlanningTx;
        self.snapshot().await?.queued_batches().await
    }

    #[tracing::instrument(skip(self, plan), err(level = "debug"))]
    async fn store_plan(&self, plan: &NewPlan, now: DateTime<Utc>) -> Result<String, StoreError> {
        self.write(StorePlanOp(plan.clone(), now)).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn replayed_plan(&self, key: &IdempotencyKey) -> Result<Option<String>, StoreError> {
        let mut tx = self.snapshot().await?;
        crate::planning::replayed_plan(&mut tx, key).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_plan(&self, id: &str) -> Result<StoredPlan, StoreError> {
        use crate::planning::PlanningTx;
        self.snapshot()
            .await?
            .plan(id)
            .await?
            .ok_or_else(|| plan_not_found(id))
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_plans(&self, page: PageRequest) -> Result<Page<PlanSummary>, StoreError> {
        use crate::planning::PlanningTx;
        self.snapshot().await?.plans(page).await
    }
}

#[async_trait]
impl FactoryStore for SqliteStore {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn factory_position(&self, factory: &str) -> Result<FactoryPosition, StoreError> {
        let mut tx = self.snapshot().await?;
        crate::factory::known_position(&mut tx, factory).await
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
        tx.work_orders_after(factory, after, limit.clamp(1, FEED_PAGE))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ack_work_orders(
        &self,
        factory: &str,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<FactoryPosition, StoreError> {
        self.write(AckOp(factory.to_owned(), seq, now)).await
    }

    #[tracing::instrument(skip(self, req), fields(work_order = %req.work_order_id), err(level = "debug"))]
    async fn report_progress(
        &self,
        req: &ReportProgress,
        now: DateTime<Utc>,
    ) -> Result<WorkOrderStatus, StoreError> {
        self.write(ReportOp(req.clone(), now)).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batch_production(
        &self,
        batches: &[BatchId],
    ) -> Result<Vec<BatchProduction>, StoreError> {
        let mut tx = self.snapshot().await?;
        crate::factory::batch_production(&mut tx, batches).await
    }
}

/// Revokes a known token (see [`TokenStore::revoke_token`]).
async fn revoke(tx: &mut SqliteTx, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
    crate::access::revoke(tx, id, now).await
}

#[async_trait]
impl TokenStore for SqliteStore {
    #[tracing::instrument(skip(self, t), fields(id = %t.id), err(level = "debug"))]
    async fn create_token(&self, t: &NewToken, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(TokenOp(t.clone(), now)).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.write(RevokeOp(id.to_owned(), now)).await
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>, StoreError> {
        use crate::access::TokenTx;
        self.snapshot().await?.token(id).await
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>, StoreError> {
        use crate::access::TokenTx;
        self.snapshot().await?.tokens().await
    }
}
