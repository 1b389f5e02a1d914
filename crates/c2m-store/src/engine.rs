//! How a backend runs the store's calls, and the one [`Store`] implementation on top of it.
//!
//! A backend says where reads go and how a write reaches a transaction ([`Engine`]); every
//! store trait is then implemented once, for any engine: [`Store`] here, the feature
//! stores next to their features ([`crate::CatalogueStore`] in `catalogue`, ...). A store
//! call is one of three shapes:
//!
//! - a read of one statement, on a pooled connection ([`Engine::readers`]);
//! - a read of several statements, in one snapshot ([`Engine::read`]);
//! - a write, in one transaction ([`Engine::write`] with an [`Op`]): the write's [`Lane`]
//!   says which other writes it may share a transaction with (group commit,
//!   [`crate::writer`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use sqlx::{Database, Pool};

use c2m_domain::{
    Batch, BatchId, Campaign, CampaignId, CampaignMoney, CampaignProgress, LedgerEntry, Page,
    PageRequest, Preorder, PreorderId,
};

use crate::dialect::{micros, Backend, Dialect, Tx};
use crate::payment::{LedgerOnly, PaymentProvider};
use crate::pooling::{Placing, OP_CANCEL_PREORDER, OP_PLACE_PREORDER};
use crate::writer::{Op, RunFn};
use crate::Result;
use crate::{
    ledger, pooling, BalanceWindowOutcome, CancelPreorder, CreateCampaign, DeadlineOutcome,
    LedgerAudit, PayBalance, PlacePreorder, PreorderFilter, Store, StoreError,
};

/// Which writes a write may share a transaction with. A backend that groups all its writes
/// (SQLite's one writer) ignores it; PostgreSQL groups the writes of one campaign, under
/// that campaign's lock, and runs the others alone.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lane<'a> {
    /// A write with a transaction of its own.
    Alone,
    /// A write on this campaign.
    Campaign(&'a CampaignId),
    /// A write on this pre-order's campaign (an unknown pre-order runs alone).
    Preorder(&'a PreorderId),
}

/// What every store holds whatever its backend.
pub(crate) struct Base<D: Database> {
    /// The pool reads run on (on PostgreSQL, writes too).
    pub(crate) pool: Pool<D>,
    /// Shown every money movement inside its transaction (see [`crate::payment`]).
    pub(crate) provider: Arc<dyn PaymentProvider>,
    /// Ticked after every write that committed (and, on PostgreSQL, on a notification of
    /// another replica's events): what event readers wait on
    /// ([`crate::events::EventStore::event_commits`]).
    pub(crate) commits: tokio::sync::watch::Sender<u64>,
}

impl<D: Database> Base<D> {
    /// With the built-in [`LedgerOnly`] provider.
    pub(crate) fn new(pool: Pool<D>) -> Self {
        Base {
            pool,
            provider: Arc::new(LedgerOnly),
            commits: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Says that a write committed (see [`Base::commits`]).
    pub(crate) fn committed(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What a write's arguments and answer must be to wait in a writer's queue.
pub(crate) trait Owned: Send + Sync + 'static {}

impl<T: Send + Sync + 'static> Owned for T {}

/// What a backend provides for the store traits to be implemented on it.
#[async_trait]
pub(crate) trait Engine: Send + Sync + 'static {
    type D: Backend;

    /// Runs `op` in a write transaction (its own, or its group's) and answers once that
    /// transaction has committed.
    async fn write<A: Owned, T: Owned>(&self, lane: Lane<'_>, op: Op<Self::D, A, T>) -> Result<T>;

    fn base(&self) -> &Base<Self::D>;

    /// The pool reads run on.
    fn readers(&self) -> &Pool<Self::D> {
        &self.base().pool
    }

    /// Shown every money movement inside its transaction (see [`crate::payment`]).
    fn provider(&self) -> &Arc<dyn PaymentProvider> {
        &self.base().provider
    }

    /// Makes sure the backend hears of other processes' commits while anyone waits on
    /// [`Base::commits`] (PostgreSQL's `LISTEN`); nothing for a backend that has none.
    fn listen(&self) {}

    /// A transaction for a read of several statements that must see one snapshot.
    async fn snapshot(&self) -> Result<Tx<'static, Self::D>> {
        Ok(Tx::snapshot(self.readers()).await?)
    }

    /// Runs `read` in a snapshot of its own ([`Engine::snapshot`], [`Tx::read`]): the
    /// shape of every read of several statements. `args` is what it needs besides the
    /// transaction.
    async fn read<A, T, F>(&self, args: &A, read: F) -> Result<T>
    where
        A: ?Sized + Sync,
        T: Send,
        F: for<'t> FnOnce(&'t mut Tx<'static, Self::D>, &'t A) -> BoxFuture<'t, Result<T>> + Send,
    {
        self.snapshot().await?.read(args, read).await
    }

    /// The shape of nearly every write: `run` is given the request, the time of the call
    /// and the store's payment provider ([`Call`]), in `lane`. A write that needs more
    /// (an idempotency key looked up ahead, a placement) builds its [`Op`] from
    /// [`Engine::call_of`] and goes through [`Engine::write`].
    async fn call<R: Owned, T: Owned>(
        &self,
        lane: Lane<'_>,
        req: R,
        now: DateTime<Utc>,
        run: RunFn<Self::D, Call<R>, T>,
    ) -> Result<T> {
        self.write(lane, Op::new(self.call_of(req, now), run)).await
    }

    /// [`Engine::call`] in a transaction of its own ([`Lane::Alone`]): every write but a
    /// campaign's placements, cancels and levers.
    async fn alone<R: Owned, T: Owned>(
        &self,
        req: R,
        now: DateTime<Utc>,
        run: RunFn<Self::D, Call<R>, T>,
    ) -> Result<T> {
        self.call(Lane::Alone, req, now, run).await
    }

    /// The arguments of a write of `req` made at `now`.
    fn call_of<R>(&self, req: R, now: DateTime<Utc>) -> Call<R> {
        Call {
            req,
            now: micros(now),
            provider: self.provider().clone(),
        }
    }
}

/// What a write runs on besides its transaction: its request, owned so that the write can
/// wait in a writer's queue, the time of the call, and the provider its money movements
/// are shown to (which the writes that move no money leave alone). A write function takes
/// it whole, `(tx, c: &Call<R>)`, and takes out what it uses.
pub(crate) struct Call<R> {
    pub(crate) req: R,
    /// The time of the call, to the microsecond (what the store keeps of a time).
    pub(crate) now: DateTime<Utc>,
    provider: Arc<dyn PaymentProvider>,
}

impl<R> Call<R> {
    pub(crate) fn provider(&self) -> &dyn PaymentProvider {
        &*self.provider
    }
}

pub(crate) fn campaign_not_found(id: &CampaignId) -> StoreError {
    StoreError::not_found("campaign", id.as_str())
}

/// Whether a list of a campaign's rows that came back `empty` is an answer: `NotFound`
/// when it is empty because the campaign does not exist (looked up only then).
async fn of_campaign<D: Backend>(
    readers: &Pool<D>,
    campaign: &CampaignId,
    empty: bool,
) -> Result<()> {
    if empty && !pooling::campaign_exists(readers, campaign).await? {
        return Err(campaign_not_found(campaign));
    }
    Ok(())
}

#[async_trait]
impl<E: Engine> Store for E {
    fn backend(&self) -> &'static str {
        E::D::BACKEND
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn create_campaign(&self, req: &CreateCampaign, now: DateTime<Utc>) -> Result<Campaign> {
        self.alone(req.clone(), now, |tx, c| {
            Box::pin(pooling::create_campaign(tx, c))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_campaign(&self, id: &CampaignId) -> Result<CampaignProgress> {
        pooling::campaign_progress(self.readers(), id).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_campaigns(&self, page: PageRequest) -> Result<Page<Campaign>> {
        pooling::list_campaigns(self.readers(), page).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn place_preorder(&self, req: &PlacePreorder, now: DateTime<Utc>) -> Result<Preorder> {
        let op = Op::new(self.call_of(req.clone(), now), |tx, c| {
            Box::pin(pooling::place_preorder(tx, c))
        })
        .key(OP_PLACE_PREORDER, req.idempotency_key.as_str())
        .placement(Placing::of, |answer| answer);
        self.write(Lane::Campaign(&req.campaign_id), op).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn get_preorder(&self, id: &PreorderId) -> Result<Preorder> {
        pooling::get_preorder(self.readers(), id).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_preorders(
        &self,
        filter: &PreorderFilter,
        page: PageRequest,
    ) -> Result<Page<Preorder>> {
        pooling::list_preorders(self.readers(), filter, page).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn cancel_preorder(&self, req: &CancelPreorder, now: DateTime<Utc>) -> Result<Preorder> {
        let op = Op::new(self.call_of(req.clone(), now), |tx, c| {
            Box::pin(pooling::cancel_preorder(tx, c))
        })
        .key(OP_CANCEL_PREORDER, req.idempotency_key.as_str());
        self.write(Lane::Preorder(&req.preorder_id), op).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_batches(&self, campaign_id: &CampaignId) -> Result<Vec<Batch>> {
        let batches = pooling::list_batches(self.readers(), campaign_id).await?;
        of_campaign(self.readers(), campaign_id, batches.is_empty()).await?;
        Ok(batches)
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn campaigns_past_deadline(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<CampaignId>> {
        pooling::campaigns_past_deadline(self.readers(), now, limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn fail_open_batch_at_deadline(
        &self,
        campaign_id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<DeadlineOutcome> {
        self.alone(campaign_id.clone(), now, |tx, c| {
            Box::pin(pooling::fail_open_batch_at_deadline(tx, c))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn pay_balance(&self, req: &PayBalance, now: DateTime<Utc>) -> Result<Preorder> {
        self.alone(req.clone(), now, |tx, c| {
            Box::pin(ledger::pay_balance(tx, c))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batches_past_balance_window(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<BatchId>> {
        ledger::batches_past_balance_window(self.readers(), now, limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn close_balance_window(
        &self,
        batch: &BatchId,
        now: DateTime<Utc>,
    ) -> Result<BalanceWindowOutcome> {
        self.alone(batch.clone(), now, |tx, c| {
            Box::pin(ledger::close_balance_window(tx, c))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn batches_ready_for_planning(&self, limit: u32) -> Result<Vec<Batch>> {
        ledger::batches_ready_for_planning(self.readers(), limit).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn campaign_money(&self, campaign: &CampaignId) -> Result<CampaignMoney> {
        ledger::campaign_money(self.readers(), campaign).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn list_ledger(
        &self,
        campaign: &CampaignId,
        page: PageRequest,
    ) -> Result<Page<LedgerEntry>> {
        let entries = ledger::list_ledger(self.readers(), campaign, page).await?;
        of_campaign(self.readers(), campaign, entries.items.is_empty()).await?;
        Ok(entries)
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ledger_audit(&self) -> Result<LedgerAudit> {
        ledger::ledger_audit(self.readers()).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn ping(&self) -> Result<()> {
        E::D::sql("SELECT 1")
            .execute(&mut self.readers().acquire().await?)
            .await?;
        Ok(())
    }
}
