//! The deadline sweeper: fails the open batch of every campaign whose deadline has passed
//! (releasing every deposit hold in it), and closes the balance window of every locked
//! batch whose balance deadline has passed (forfeiting unpaid deposits, settling the paid
//! units and marking the batch ready for planning).
//!
//! It keeps no state of its own. Each pass asks the store which campaigns are past their
//! deadline with an open batch and fails them one campaign per transaction, so a sweeper
//! killed mid-pass leaves every campaign either done or untouched, and the next pass (in
//! this process after a restart, or in another replica) finishes the rest. The store makes
//! each failure happen exactly once however many sweepers race.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use c2m_domain::Clock;
use c2m_store::{BalanceWindowOutcome, DeadlineOutcome, Store, StoreError};

/// Campaigns handled per store query; a pass loops until none are left.
const PAGE: u32 = 100;

pub struct Sweeper {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Sweeper {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Sweeper { store, clock }
    }

    /// Fails at most `limit` campaigns' open batches; returns what it did. `limit` exists so
    /// tests can stop a pass part-way, as a crash would.
    #[tracing::instrument(skip(self))]
    pub async fn sweep(&self, limit: usize) -> Result<Vec<DeadlineOutcome>, StoreError> {
        let store = &*self.store;
        self.drain(
            limit,
            |now, want| store.campaigns_past_deadline(now, want),
            |id, now| Box::pin(async move {
                let outcome = store.fail_open_batch_at_deadline(&id, now).await?;
                if let Some(b) = &outcome.failed_batch {
                    tracing::info!(campaign = %id, batch = %b.id, refunds_due = outcome.refunds_due, "batch failed at deadline");
                }
                let progressed = outcome.failed_batch.is_some();
                Ok((outcome, progressed))
            }),
        )
        .await
    }

    /// Closes at most `limit` balance windows that are due; returns what it did. Each batch
    /// is closed in its own transaction, exactly once however many sweepers race, so a
    /// sweeper stopped part-way leaves each batch closed or untouched.
    #[tracing::instrument(skip(self))]
    pub async fn close_balance_windows(
        &self,
        limit: usize,
    ) -> Result<Vec<BalanceWindowOutcome>, StoreError> {
        let store = &*self.store;
        self.drain(
            limit,
            |now, want| store.batches_past_balance_window(now, want),
            |id, now| Box::pin(async move {
                let outcome = store.close_balance_window(&id, now).await?;
                if let Some(b) = &outcome.batch {
                    tracing::info!(batch = %b.id, forfeited = outcome.forfeited, paid_units = b.paid_units(), "balance window closed; batch ready for planning");
                }
                let progressed = outcome.batch.is_some();
                Ok((outcome, progressed))
            }),
        )
        .await
    }

    /// One pass of a sweep: asks the store for a page of what is `due` at the time, `act`s on
    /// each item (its own transaction), and goes on until `limit` items are done, nothing is
    /// due, or a whole page made no progress (another replica got there first: nothing
    /// more for us this pass, and asking again would return the same page).
    async fn drain<'a, I, O>(
        &self,
        limit: usize,
        due: impl Fn(DateTime<Utc>, u32) -> BoxFuture<'a, Result<Vec<I>, StoreError>>,
        act: impl Fn(I, DateTime<Utc>) -> BoxFuture<'a, Result<(O, bool), StoreError>>,
    ) -> Result<Vec<O>, StoreError> {
        let mut done = Vec::new();
        while done.len() < limit {
            let now = self.clock.now();
            let want = PAGE.min((limit - done.len()) as u32);
            let page = due(now, want).await?;
            if page.is_empty() {
                break;
            }
            let mut progressed = false;
            for item in page {
                let (outcome, moved) = act(item, now).await?;
                progressed |= moved;
                done.push(outcome);
                if done.len() >= limit {
                    break;
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(done)
    }

    /// Sweeps every `interval` until `shutdown` resolves. Store errors are logged and
    /// retried on the next tick: a database blip must not stop deadlines for good.
    pub async fn run(self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {
                    if let Err(e) = self.sweep(usize::MAX).await {
                        tracing::warn!(error = %e, "deadline sweep failed; retrying next tick");
                    }
                    if let Err(e) = self.close_balance_windows(usize::MAX).await {
                        tracing::warn!(error = %e, "balance window sweep failed; retrying next tick");
                    }
                }
            }
        }
    }
}
