//! PostgreSQL SQL for campaigns, batches and pre-orders: the [`PoolingTx`] implementation the
//! write path runs on, and the read queries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Postgres, Row};

use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, CampaignProgress, ConsumerId, Page,
    PageRequest, Preorder, PreorderId,
};

use crate::dialect::Tx;
use crate::idempotency::StoredResponse;
use crate::pooling::{PoolSnapshot, PoolingTx};
use crate::rows::{self, batch_columns, campaign_columns, preorder_select, Columns};
use crate::{BatchTransition, PreorderFilter, StoreError};

/// A pooled connection in a READ COMMITTED transaction. Writers on one campaign are
/// serialised by [`PoolingTx::lock_campaign`] (`SELECT ... FOR UPDATE`); every statement
/// after it sees what the previous holder of the lock committed.
pub(crate) type PgTx = Tx<Postgres>;

impl Tx<Postgres> {
    /// Looks up the idempotency keys a group's operations will ask for, in one query, so
    /// that each operation's replay check costs no round trip under the campaign's lock.
    /// Run after the lock is taken: every key recorded by an earlier holder of the lock is
    /// seen. A key recorded meanwhile for another campaign meets the unique index when
    /// this transaction records it, and the group is run again.
    pub(crate) async fn prefetch_keys(
        &mut self,
        wanted: &[(&'static str, String)],
    ) -> Result<(), StoreError> {
        if wanted.is_empty() {
            return Ok(());
        }
        let (ops, keys): (Vec<&str>, Vec<&str>) =
            wanted.iter().map(|(op, key)| (*op, key.as_str())).unzip();
        let found = sqlx::query(
            "SELECT k.operation, k.key, k.fingerprint, k.response::text AS response \
             FROM idempotency_keys k \
             JOIN UNNEST($1::text[], $2::text[]) AS w (operation, key) \
             ON k.operation = w.operation AND k.key = w.key",
        )
        .bind(ops)
        .bind(keys)
        .fetch_all(self.conn())
        .await?;
        for (op, key) in wanted {
            self.keys.insert(((*op).to_owned(), key.clone()), None);
        }
        for row in found {
            let op: String = row.try_get("operation")?;
            let key: String = row.try_get("key")?;
            let stored = StoredResponse::from_row(&row)?;
            if let Some(known) = self.keys.get_mut(&(op, key)) {
                *known = Some(stored);
            }
        }
        Ok(())
    }

    /// Takes the campaign's row lock for the whole transaction, for a group of operations
    /// on that campaign (see [`super::writer`]). The operations then call
    /// [`PoolingTx::lock_campaign`] as usual and get the row read here without another
    /// round trip: the lock is already theirs, it outlives every savepoint (it was taken
    /// outside all of them), and a campaign row is never updated after it is inserted, so
    /// the copy is what a second `FOR UPDATE` would read. An unknown campaign holds
    /// nothing; each operation then finds it missing itself.
    pub(crate) async fn hold_campaign(&mut self, id: &CampaignId) -> Result<(), StoreError> {
        self.held = select_campaign_for_update(self.conn(), id).await?;
        Ok(())
    }
}

#[async_trait]
impl PoolingTx for PgTx {
    async fn insert_campaign(&mut self, c: &Campaign) -> Result<(), StoreError> {
        let t = &c.terms;
        sqlx::query(
            "INSERT INTO campaigns (id, sku, title, currency, unit_price, deposit, \
             batch_threshold, batch_cap, max_per_order, max_per_consumer, total_cap, opens_at, \
             deadline, created_at, price_ladder, balance_window_secs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(c.id.as_str())
        .bind(&t.sku)
        .bind(&t.title)
        .bind(t.unit_price.currency.as_str())
        .bind(t.unit_price.minor)
        .bind(t.deposit.minor)
        .bind(t.batch_threshold)
        .bind(t.batch_cap)
        .bind(t.max_per_order)
        .bind(t.max_per_consumer)
        .bind(t.total_cap)
        .bind(t.opens_at)
        .bind(t.deadline)
        .bind(c.created_at)
        .bind(rows::ladder_json(&t.price_ladder))
        .bind(t.balance_window_secs)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn lock_campaign(&mut self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        if let Some(held) = self.held.as_ref().filter(|c| c.id == *id) {
            return Ok(Some(held.clone()));
        }
        select_campaign_for_update(self.conn(), id).await
    }

    async fn open_batch(&mut self, campaign: &CampaignId) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            batch_columns!(),
            " FROM batches WHERE campaign_id = $1 AND status = 'open'"
        ))
        .bind(campaign.as_str())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(rows::batch).transpose()
    }

    async fn pool_snapshot(
        &mut self,
        campaign: &CampaignId,
        consumers: &[&ConsumerId],
    ) -> Result<PoolSnapshot, StoreError> {
        let consumers: Vec<&str> = consumers.iter().map(|c| c.as_str()).collect();
        let row = sqlx::query(
            "SELECT b.id, b.campaign_id, b.seq, b.status, b.units, b.threshold, b.created_at, \
             b.locked_at, b.failed_at, b.final_unit_price, b.balance_due_by, b.forfeited_units, \
             b.ready_at, \
             (SELECT COALESCE(SUM(units - forfeited_units), 0)::BIGINT FROM batches \
              WHERE campaign_id = $1 AND status IN ('open', 'locked')) AS campaign_units, \
             (SELECT COALESCE(json_object_agg(s.consumer_id, s.units), '{}')::text FROM ( \
                 SELECT p.consumer_id, SUM(p.quantity)::BIGINT AS units FROM preorders p \
                 JOIN batches pb ON pb.id = p.batch_id \
                 WHERE p.campaign_id = $1 AND p.consumer_id = ANY($2::text[]) \
                 AND p.cancelled_at IS NULL AND p.forfeited_at IS NULL \
                 AND pb.status <> 'failed' \
                 GROUP BY p.consumer_id) AS s) AS consumer_units \
             FROM (SELECT 1) AS one \
             LEFT JOIN batches b ON b.campaign_id = $1 AND b.status = 'open'",
        )
        .bind(campaign.as_str())
        .bind(consumers)
        .fetch_one(self.conn())
        .await?;
        rows::pool_snapshot(&row)
    }

    async fn next_batch_seq(&mut self, campaign: &CampaignId) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM batches WHERE campaign_id = $1",
        )
        .bind(campaign.as_str())
        .fetch_one(self.conn())
        .await?)
    }

    async fn insert_batch(&mut self, b: &Batch) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batches (id, campaign_id, seq, status, units, threshold, created_at) \
             VALUES ($1, $2, $3, 'open', $4, $5, $6)",
        )
        .bind(b.id.as_str())
        .bind(b.campaign_id.as_str())
        .bind(b.seq)
        .bind(b.units)
        .bind(b.threshold)
        .bind(b.created_at)
        .execute(self.conn())
        .await?;
        sqlx::query("INSERT INTO batch_transitions (batch_id, status, at) VALUES ($1, 'open', $2)")
            .bind(b.id.as_str())
            .bind(b.created_at)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn set_batch_units(&mut self, batch: &BatchId, units: i64) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE batches SET units = $2 WHERE id = $1 AND status = 'open'")
            .bind(batch.as_str())
            .bind(units)
            .execute(self.conn())
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!("batch {batch} is not open")));
        }
        Ok(())
    }

    async fn end_batch(
        &mut self,
        batch: &BatchId,
        status: BatchStatus,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = match status {
            BatchStatus::Locked => {
                "UPDATE batches SET status = 'locked', locked_at = $2 WHERE id = $1 AND status = 'open'"
            }
            BatchStatus::Failed => {
                "UPDATE batches SET status = 'failed', failed_at = $2 WHERE id = $1 AND status = 'open'"
            }
            BatchStatus::Open => {
                return Err(StoreError::Corrupt("a batch cannot end as open".into()))
            }
        };
        let done = sqlx::query(sql)
            .bind(batch.as_str())
            .bind(at)
            .execute(self.conn())
            .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!("batch {batch} is not open")));
        }
        sqlx::query("INSERT INTO batch_transitions (batch_id, status, at) VALUES ($1, $2, $3)")
            .bind(batch.as_str())
            .bind(status.as_str())
            .bind(at)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn preorder(&mut self, id: &PreorderId) -> Result<Option<Preorder>, StoreError> {
        let row = sqlx::query(concat!(preorder_select!(), "WHERE p.id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(rows::preorder).transpose()
    }

    async fn set_cancelled(
        &mut self,
        id: &PreorderId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE preorders SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(self.conn())
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Corrupt(format!(
                "pre-order {id} was already cancelled"
            )));
        }
        Ok(())
    }
}

async fn select_campaign_for_update(
    conn: &mut PgConnection,
    id: &CampaignId,
) -> Result<Option<Campaign>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE id = $1 FOR UPDATE"
    ))
    .bind(id.as_str())
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(rows::campaign).transpose()
}

/// One statement, so PostgreSQL reads every figure from the same snapshot.
pub(crate) async fn campaign_progress(
    pool: &PgPool,
    id: &CampaignId,
) -> Result<Option<CampaignProgress>, StoreError> {
    let row = sqlx::query(concat!(
        "SELECT ",
        campaign_columns!(),
        ", (SELECT units FROM batches b WHERE b.campaign_id = c.id AND b.status = 'open') AS open_units, \
         (SELECT seq FROM batches b WHERE b.campaign_id = c.id AND b.status = 'open') AS open_seq, \
         (SELECT COUNT(*) FROM batches b WHERE b.campaign_id = c.id AND b.status = 'locked') AS locked, \
         (SELECT COUNT(*) FROM batches b WHERE b.campaign_id = c.id AND b.status = 'failed') AS failed, \
         (SELECT COALESCE(SUM(units - forfeited_units), 0)::BIGINT FROM batches b \
          WHERE b.campaign_id = c.id AND b.status IN ('open', 'locked')) AS committed \
         FROM campaigns c WHERE c.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(CampaignProgress {
        campaign: rows::campaign(&r)?,
        open_batch_units: r.int_opt("open_units")?.unwrap_or(0),
        open_batch_seq: r.int_opt("open_seq")?,
        batches_locked: r.int("locked")?,
        batches_failed: r.int("failed")?,
        units_committed: r.int("committed")?,
    }))
}

pub(crate) async fn list_campaigns(
    pool: &PgPool,
    page: PageRequest,
) -> Result<Page<Campaign>, StoreError> {
    let found = sqlx::query(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(page.after.unwrap_or(0))
    .bind(rows::page_limit(page.size))
    .fetch_all(pool)
    .await?;
    let items = found
        .iter()
        .map(|r| Ok((r.int("seq")?, rows::campaign(r)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(rows::page(items, page.size))
}

pub(crate) async fn get_preorder(
    pool: &PgPool,
    id: &PreorderId,
) -> Result<Option<Preorder>, StoreError> {
    let row = sqlx::query(concat!(preorder_select!(), "WHERE p.id = $1"))
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::preorder).transpose()
}

pub(crate) async fn list_preorders(
    pool: &PgPool,
    filter: &PreorderFilter,
    page: PageRequest,
) -> Result<Page<Preorder>, StoreError> {
    let after = page.after.unwrap_or(0);
    let limit = rows::page_limit(page.size);
    let found = match filter {
        PreorderFilter::Consumer(consumer) => {
            sqlx::query(concat!(
                preorder_select!(),
                "WHERE p.consumer_id = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3"
            ))
            .bind(consumer.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        PreorderFilter::Campaign(campaign) => {
            sqlx::query(concat!(
                preorder_select!(),
                "WHERE p.campaign_id = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3"
            ))
            .bind(campaign.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
        PreorderFilter::ConsumerInCampaign(consumer, campaign) => {
            sqlx::query(concat!(
                preorder_select!(),
                "WHERE p.campaign_id = $1 AND p.consumer_id = $2 AND p.seq > $3 \
                 ORDER BY p.seq LIMIT $4"
            ))
            .bind(campaign.as_str())
            .bind(consumer.as_str())
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?
        }
    };
    let items = found
        .iter()
        .map(|r| Ok((r.int("seq")?, rows::preorder(r)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(rows::page(items, page.size))
}

pub(crate) async fn list_batches(
    pool: &PgPool,
    campaign: &CampaignId,
) -> Result<Vec<Batch>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        batch_columns!(),
        " FROM batches WHERE campaign_id = $1 ORDER BY seq"
    ))
    .bind(campaign.as_str())
    .fetch_all(pool)
    .await?
    .iter()
    .map(rows::batch)
    .collect()
}

/// The campaign a pre-order belongs to, if the pre-order exists.
pub(crate) async fn campaign_of(
    pool: &PgPool,
    preorder: &PreorderId,
) -> Result<Option<CampaignId>, StoreError> {
    let id: Option<String> = sqlx::query_scalar("SELECT campaign_id FROM preorders WHERE id = $1")
        .bind(preorder.as_str())
        .fetch_optional(pool)
        .await?;
    Ok(id.map(CampaignId::from_trusted))
}

pub(crate) async fn campaign_exists(pool: &PgPool, id: &CampaignId) -> Result<bool, StoreError> {
    Ok(
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM campaigns WHERE id = $1")
            .bind(id.as_str())
            .fetch_one(pool)
            .await?
            > 0,
    )
}

pub(crate) async fn campaigns_past_deadline(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<CampaignId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT c.id FROM campaigns c JOIN batches b ON b.campaign_id = c.id AND b.status = 'open' \
         WHERE c.deadline <= $1 ORDER BY c.deadline, c.seq LIMIT $2",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(CampaignId::from_trusted).collect())
}

pub(crate) async fn batch_transitions(
    pool: &PgPool,
    batch: &BatchId,
) -> Result<Vec<BatchTransition>, StoreError> {
    sqlx::query("SELECT batch_id, status, at FROM batch_transitions WHERE batch_id = $1 ORDER BY at, CASE status WHEN 'open' THEN 0 ELSE 1 END")
        .bind(batch.as_str())
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| {
            let status = r.text("status")?;
            Ok(BatchTransition {
                batch_id: BatchId::from_trusted(r.text("batch_id")?),
                status: BatchStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("transition status {status:?}")))?,
                at: r.ts("at")?,
            })
        })
        .collect()
}
