//! Group commit on PostgreSQL: one writer per campaign.
//!
//! Every write on a campaign takes the campaign's row lock, so writes on one campaign run
//! one after another whatever else happens. A placement or cancel for campaign C is queued
//! on C's queue; if no writer is running for C in this process, one is spawned; it exits
//! when the queue is empty, so an idle campaign costs nothing and the map of queues only
//! holds campaigns with work waiting. The writer takes the first write waiting and,
//! without waiting for more, every further one already queued (up to
//! [`super::PgOptions::max_group`]), and hands them to the group-commit core
//! ([`crate::writer::run`]), which takes the campaign's row lock once for the group.
//!
//! Several processes on one database stay correct because nothing here replaces a
//! database rule: the queue only decides which writes share a transaction, while the row
//! lock still orders the writers of all processes and the constraints still hold.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::{PgPool, Postgres};

use c2m_domain::CampaignId;

use crate::writer::{writer_gone, Counters, Job, Op, Queued, WriterStats};
use crate::Result;

/// The writes waiting for one campaign's writer, oldest first.
type Queue = VecDeque<Box<dyn Queued<Postgres>>>;

/// The per-campaign queues of one store, and the writers that drain them.
pub(crate) struct Writers {
    pool: PgPool,
    max_group: usize,
    /// Operations waiting, per campaign. A campaign has an entry exactly while a writer
    /// task runs for it; the task removes the entry, under this mutex, when it finds the
    /// queue empty, so an operation is never queued where no writer will see it.
    queues: Mutex<HashMap<CampaignId, Queue>>,
    counters: Counters,
}

impl Writers {
    pub(crate) fn new(pool: PgPool, max_group: usize) -> Self {
        Writers {
            pool,
            max_group: max_group.max(1),
            queues: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        }
    }

    pub(crate) fn stats(&self) -> WriterStats {
        self.counters.snapshot()
    }

    /// Queues `op` on `campaign`'s writer and waits for its (durable) result.
    pub(crate) async fn write<A, T>(
        self: &Arc<Self>,
        campaign: &CampaignId,
        op: Op<Postgres, A, T>,
    ) -> Result<T>
    where
        A: Send + Sync + 'static,
        T: Send + 'static,
    {
        let (job, answer) = Job::new(op);
        self.submit(campaign, Box::new(job));
        answer.await.map_err(|_| writer_gone())?
    }

    fn submit(self: &Arc<Self>, campaign: &CampaignId, job: Box<dyn Queued<Postgres>>) {
        let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
        match queues.entry(campaign.clone()) {
            Entry::Occupied(mut waiting) => waiting.get_mut().push_back(job),
            Entry::Vacant(none) => {
                none.insert(VecDeque::from([job]));
                tokio::spawn(self.clone().drain(campaign.clone()));
            }
        }
    }

    /// The writer of one campaign: runs groups until its queue is empty.
    async fn drain(self: Arc<Self>, campaign: CampaignId) {
        // If this task dies (a panic in an operation, the runtime shutting down), the
        // entry goes with it: the operations still queued are dropped, their callers hear
        // `writer_gone`, and the next operation for the campaign starts a new writer.
        let mut leave = Leave {
            writers: &self,
            campaign: &campaign,
            armed: true,
        };
        loop {
            let mut group: Vec<Box<dyn Queued<Postgres>>> = {
                let mut queues = self.queues.lock().unwrap_or_else(PoisonError::into_inner);
                let waiting = queues.get_mut(&campaign).map_or(0, |q| q.len());
                if waiting == 0 {
                    queues.remove(&campaign);
                    leave.armed = false;
                    return;
                }
                let take = waiting.min(self.max_group);
                queues
                    .get_mut(&campaign)
                    .map(|q| q.drain(..take).collect())
                    .unwrap_or_default()
            };
            let mut pool = self.pool.clone();
            crate::writer::run(&mut pool, Some(&campaign), &mut group, &self.counters).await;
        }
    }
}

/// Removes a campaign's queue when its writer task ends without emptying it.
struct Leave<'a> {
    writers: &'a Writers,
    campaign: &'a CampaignId,
    armed: bool,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut queues = self
                .writers
                .queues
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queues.remove(self.campaign);
        }
    }
}
