//! SQLite: the catalogue and planning tables ([`CatalogueStore`], [`PlanningStore`]).
//! Writes run on the writer task like every other write; reads run in a read transaction
//! on a reader connection, so a multi-statement read sees one snapshot (WAL).

use async_trait::async_trait;
use c2m_domain::{IdempotencyKey, Page, PageRequest};
use chrono::{DateTime, Utc};

use super::pooling::SqliteTx;
use super::writer::Operation;
use super::SqliteStore;
use crate::catalogue::{Catalogue, CatalogueChanged, CatalogueCheck, ChangeCatalogue};
use crate::planning::{plan_not_found, NewPlan, PlanSummary, QueuedBatch, StoredPlan};
use crate::{CatalogueStore, PlanningStore, StoreError};

mod sql {
    use super::super::micros_of;
    use super::super::pooling::SqliteTx;
    use sqlx::sqlite::SqliteRow;

    crate::planning_sql::catalogue_planning_sql!(
        tx = SqliteTx<'_>,
        row = SqliteRow,
        ts = micros_of,
        for_update = "",
        for_share = "",
    );
}

struct ChangeOp(ChangeCatalogue, CatalogueCheck, DateTime<Utc>);
struct StorePlanOp(NewPlan, DateTime<Utc>);

#[async_trait]
impl Operation for ChangeOp {
    type Output = CatalogueChanged;
    async fn run(&self, tx: &mut SqliteTx<'_>) -> Result<CatalogueChanged, StoreError> {
        crate::catalogue::change_catalogue(tx, &self.0, &self.1, self.2).await
    }
}

#[async_trait]
impl Operation for StorePlanOp {
    type Output = String;
    async fn run(&self, tx: &mut SqliteTx<'_>) -> Result<String, StoreError> {
        crate::planning::store_plan(tx, &self.0, self.1).await
    }
}

impl SqliteStore {
    /// A read-only snapshot on a reader connection.
    async fn snapshot(&self) -> Result<SqliteTx<'static>, StoreError> {
        Ok(SqliteTx(self.readers.begin().await?))
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
