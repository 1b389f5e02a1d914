//! The SQL of campaigns, batches and pre-orders, written once for both backends: the
//! [`PoolingTx`] implementation the write path runs on, the reads, and turning their rows
//! into domain values.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Pool;

use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, CampaignProgress, CampaignTerms, ConsumerId,
    Currency, HoldState, Money, Page, PageRequest, Preorder, PreorderId, PreorderMoney,
    PreorderStatus, PriceLadder, PriceTier,
};

use super::{PoolSnapshot, PoolingTx};
use crate::dialect::{one, page, page_limit, Backend, Columns, Dialect, Tx, Value};
use crate::{BatchTransition, PreorderFilter, StoreError};

/// The columns [`campaign`] reads, plus `seq`, for `FROM campaigns`.
macro_rules! campaign_columns {
    () => {
        "id, seq, sku, title, currency, unit_price, deposit, batch_threshold, batch_cap, \
         max_per_order, max_per_consumer, total_cap, opens_at, deadline, created_at, \
         price_ladder, balance_window_secs"
    };
}

/// The columns [`batch`] reads, for `FROM batches`.
macro_rules! batch_columns {
    () => {
        "id, campaign_id, seq, status, units, threshold, created_at, locked_at, failed_at, \
         final_unit_price, currency, balance_due_by, forfeited_units, ready_at"
    };
}

/// The columns [`preorder`] reads, plus `seq`, for `FROM preorders p JOIN batches b`.
macro_rules! preorder_select {
    () => {
        "SELECT p.seq, p.id, p.campaign_id, p.consumer_id, p.batch_id, b.seq AS batch_seq, \
         b.status AS batch_status, p.quantity, p.unit_price, p.deposit_total, p.currency, \
         p.created_at, p.cancelled_at, p.hold_state, p.balance_due, p.balance_paid_at, \
         p.forfeited_at, b.final_unit_price AS batch_final_unit_price, \
         b.balance_due_by AS batch_balance_due_by \
         FROM preorders p JOIN batches b ON b.id = p.batch_id "
    };
}

pub(crate) use {batch_columns, preorder_select};

/// A campaign by id; PostgreSQL's writers lock its row, which is the campaign's lock.
const CAMPAIGN: &str = concat!(
    "SELECT ",
    campaign_columns!(),
    " FROM campaigns WHERE id = $1"
);
const CAMPAIGN_FOR_UPDATE: &str = concat!(
    "SELECT ",
    campaign_columns!(),
    " FROM campaigns WHERE id = $1 FOR UPDATE"
);

pub(crate) const PREORDER: &str = concat!(preorder_select!(), "WHERE p.id = $1");

#[async_trait]
impl<D: Backend> PoolingTx for Tx<D> {
    async fn insert_campaign(&mut self, c: &Campaign) -> Result<(), StoreError> {
        let t = &c.terms;
        D::sql(
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
        .bind(ladder_json(&t.price_ladder))
        .bind(t.balance_window_secs)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn lock_campaign(&mut self, id: &CampaignId) -> Result<Option<Campaign>, StoreError> {
        if let Some(held) = self.held.as_ref().filter(|c| c.id == *id) {
            return Ok(Some(held.clone()));
        }
        let row = D::sql(D::locking(CAMPAIGN, CAMPAIGN_FOR_UPDATE))
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(campaign).transpose()
    }

    async fn hold_campaign(&mut self, id: &CampaignId) -> Result<(), StoreError> {
        self.held = None;
        self.held = self.lock_campaign(id).await?;
        Ok(())
    }

    async fn open_batch(&mut self, campaign: &CampaignId) -> Result<Option<Batch>, StoreError> {
        let row = D::sql(concat!(
            "SELECT ",
            batch_columns!(),
            " FROM batches WHERE campaign_id = $1 AND status = 'open'"
        ))
        .bind(campaign.as_str())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(batch).transpose()
    }

    async fn pool_snapshot(
        &mut self,
        campaign: &CampaignId,
        consumers: &[&ConsumerId],
    ) -> Result<PoolSnapshot, StoreError> {
        let consumers: Vec<&str> = consumers.iter().map(|c| c.as_str()).collect();
        let row = D::sql(D::POOL_SNAPSHOT)
            .bind(campaign.as_str())
            .bind(Value::List(&consumers))
            .fetch_one(self.conn())
            .await?;
        pool_snapshot(&row)
    }

    async fn next_batch_seq(&mut self, campaign: &CampaignId) -> Result<i64, StoreError> {
        D::sql("SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM batches WHERE campaign_id = $1")
            .bind(campaign.as_str())
            .fetch_one(self.conn())
            .await?
            .int("seq")
    }

    async fn insert_batch(&mut self, b: &Batch) -> Result<(), StoreError> {
        D::sql(
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
        D::sql("INSERT INTO batch_transitions (batch_id, status, at) VALUES ($1, 'open', $2)")
            .bind(b.id.as_str())
            .bind(b.created_at)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn set_batch_units(&mut self, batch: &BatchId, units: i64) -> Result<(), StoreError> {
        let done = D::sql("UPDATE batches SET units = $2 WHERE id = $1 AND status = 'open'")
            .bind(batch.as_str())
            .bind(units)
            .execute(self.conn())
            .await?;
        one(done, || format!("batch {batch} is not open"))
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
        let done = D::sql(sql)
            .bind(batch.as_str())
            .bind(at)
            .execute(self.conn())
            .await?;
        one(done, || format!("batch {batch} is not open"))?;
        D::sql("INSERT INTO batch_transitions (batch_id, status, at) VALUES ($1, $2, $3)")
            .bind(batch.as_str())
            .bind(status.as_str())
            .bind(at)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn preorder(&mut self, id: &PreorderId) -> Result<Option<Preorder>, StoreError> {
        let row = D::sql(PREORDER)
            .bind(id.as_str())
            .fetch_optional(self.conn())
            .await?;
        row.as_ref().map(preorder).transpose()
    }

    async fn set_cancelled(
        &mut self,
        id: &PreorderId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done =
            D::sql("UPDATE preorders SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL")
                .bind(id.as_str())
                .bind(at)
                .execute(self.conn())
                .await?;
        one(done, || format!("pre-order {id} was already cancelled"))
    }
}

/// One statement, so every figure comes from the same snapshot.
pub(crate) async fn campaign_progress<D: Dialect>(
    pool: &Pool<D>,
    id: &CampaignId,
) -> Result<Option<CampaignProgress>, StoreError> {
    let row = D::sql(concat!(
        "SELECT ",
        campaign_columns!(),
        ", (SELECT units FROM batches b WHERE b.campaign_id = c.id AND b.status = 'open') AS open_units, \
         (SELECT seq FROM batches b WHERE b.campaign_id = c.id AND b.status = 'open') AS open_seq, \
         (SELECT COUNT(*) FROM batches b WHERE b.campaign_id = c.id AND b.status = 'locked') AS locked, \
         (SELECT COUNT(*) FROM batches b WHERE b.campaign_id = c.id AND b.status = 'failed') AS failed, \
         (SELECT CAST(COALESCE(SUM(units - forfeited_units), 0) AS BIGINT) FROM batches b \
          WHERE b.campaign_id = c.id AND b.status IN ('open', 'locked')) AS committed \
         FROM campaigns c WHERE c.id = $1"
    ))
    .bind(id.as_str())
    .fetch_optional(&mut *pool.acquire().await?)
    .await?;
    let Some(r) = row else { return Ok(None) };
    Ok(Some(CampaignProgress {
        campaign: campaign(&r)?,
        open_batch_units: r.int_opt("open_units")?.unwrap_or(0),
        open_batch_seq: r.int_opt("open_seq")?,
        batches_locked: r.int("locked")?,
        batches_failed: r.int("failed")?,
        units_committed: r.int("committed")?,
    }))
}

pub(crate) async fn list_campaigns<D: Dialect>(
    pool: &Pool<D>,
    req: PageRequest,
) -> Result<Page<Campaign>, StoreError> {
    let found = D::sql(concat!(
        "SELECT ",
        campaign_columns!(),
        " FROM campaigns WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(req.after.unwrap_or(0))
    .bind(page_limit(req.size))
    .fetch_all(&mut *pool.acquire().await?)
    .await?;
    let items = found
        .iter()
        .map(|r| Ok((r.int("seq")?, campaign(r)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(page(items, req.size))
}

pub(crate) async fn get_preorder<D: Dialect>(
    pool: &Pool<D>,
    id: &PreorderId,
) -> Result<Option<Preorder>, StoreError> {
    let row = D::sql(PREORDER)
        .bind(id.as_str())
        .fetch_optional(&mut *pool.acquire().await?)
        .await?;
    row.as_ref().map(preorder).transpose()
}

pub(crate) async fn list_preorders<D: Dialect>(
    pool: &Pool<D>,
    filter: &PreorderFilter,
    req: PageRequest,
) -> Result<Page<Preorder>, StoreError> {
    let (sql, first, second) = match filter {
        PreorderFilter::Consumer(consumer) => (
            concat!(
                preorder_select!(),
                "WHERE p.consumer_id = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3"
            ),
            consumer.as_str(),
            None,
        ),
        PreorderFilter::Campaign(campaign) => (
            concat!(
                preorder_select!(),
                "WHERE p.campaign_id = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3"
            ),
            campaign.as_str(),
            None,
        ),
        PreorderFilter::ConsumerInCampaign(consumer, campaign) => (
            concat!(
                preorder_select!(),
                "WHERE p.campaign_id = $1 AND p.consumer_id = $2 AND p.seq > $3 \
                 ORDER BY p.seq LIMIT $4"
            ),
            campaign.as_str(),
            Some(consumer.as_str()),
        ),
    };
    let mut query = D::sql(sql).bind(first);
    if let Some(second) = second {
        query = query.bind(second);
    }
    let found = query
        .bind(req.after.unwrap_or(0))
        .bind(page_limit(req.size))
        .fetch_all(&mut *pool.acquire().await?)
        .await?;
    let items = found
        .iter()
        .map(|r| Ok((r.int("seq")?, preorder(r)?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(page(items, req.size))
}

pub(crate) async fn list_batches<D: Dialect>(
    pool: &Pool<D>,
    campaign: &CampaignId,
) -> Result<Vec<Batch>, StoreError> {
    D::sql(concat!(
        "SELECT ",
        batch_columns!(),
        " FROM batches WHERE campaign_id = $1 ORDER BY seq"
    ))
    .bind(campaign.as_str())
    .fetch_all(&mut *pool.acquire().await?)
    .await?
    .iter()
    .map(batch)
    .collect()
}

/// The campaign a pre-order belongs to, if the pre-order exists.
pub(crate) async fn campaign_of<D: Dialect>(
    pool: &Pool<D>,
    preorder: &PreorderId,
) -> Result<Option<CampaignId>, StoreError> {
    let row = D::sql("SELECT campaign_id FROM preorders WHERE id = $1")
        .bind(preorder.as_str())
        .fetch_optional(&mut *pool.acquire().await?)
        .await?;
    row.map(|r| Ok(CampaignId::from_trusted(r.text("campaign_id")?)))
        .transpose()
}

pub(crate) async fn campaign_exists<D: Dialect>(
    pool: &Pool<D>,
    id: &CampaignId,
) -> Result<bool, StoreError> {
    let row = D::sql("SELECT COUNT(*) AS n FROM campaigns WHERE id = $1")
        .bind(id.as_str())
        .fetch_one(&mut *pool.acquire().await?)
        .await?;
    Ok(row.int("n")? > 0)
}

pub(crate) async fn campaigns_past_deadline<D: Dialect>(
    pool: &Pool<D>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<CampaignId>, StoreError> {
    D::sql(
        "SELECT c.id FROM campaigns c JOIN batches b ON b.campaign_id = c.id AND b.status = 'open' \
         WHERE c.deadline <= $1 ORDER BY c.deadline, c.seq LIMIT $2",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(&mut *pool.acquire().await?)
    .await?
    .iter()
    .map(|r| Ok(CampaignId::from_trusted(r.text("id")?)))
    .collect()
}

pub(crate) async fn batch_transitions<D: Dialect>(
    pool: &Pool<D>,
    batch: &BatchId,
) -> Result<Vec<BatchTransition>, StoreError> {
    D::sql("SELECT batch_id, status, at FROM batch_transitions WHERE batch_id = $1 ORDER BY at, CASE status WHEN 'open' THEN 0 ELSE 1 END")
        .bind(batch.as_str())
        .fetch_all(&mut *pool.acquire().await?)
        .await?
        .iter()
        .map(|r| {
            Ok(BatchTransition {
                batch_id: BatchId::from_trusted(r.text("batch_id")?),
                status: batch_status(&r.text("status")?)?,
                at: r.ts("at")?,
            })
        })
        .collect()
}

pub(crate) fn currency(code: &str) -> Result<Currency, StoreError> {
    Currency::parse(code).map_err(|e| StoreError::Corrupt(format!("stored currency: {e}")))
}

fn batch_status(s: &str) -> Result<BatchStatus, StoreError> {
    BatchStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("batch status {s:?}")))
}

/// The stored form of a price ladder: a JSON array of `{min_units, unit_price}`.
fn ladder_json(ladder: &PriceLadder) -> String {
    // Serializing plain structs of integers cannot fail.
    serde_json::to_string(ladder.tiers()).unwrap_or_else(|_| "[]".to_owned())
}

fn ladder(json: &str) -> Result<PriceLadder, StoreError> {
    let tiers: Vec<PriceTier> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("stored price ladder: {e}")))?;
    Ok(PriceLadder::from_trusted(tiers))
}

fn hold_state(s: &str) -> Result<HoldState, StoreError> {
    HoldState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("hold state {s:?}")))
}

/// Columns: `id, sku, title, currency, unit_price, deposit, batch_threshold, batch_cap,
/// max_per_order, max_per_consumer, total_cap, opens_at, deadline, created_at,
/// price_ladder, balance_window_secs`.
pub(crate) fn campaign(r: &impl Columns) -> Result<Campaign, StoreError> {
    let cur = currency(&r.text("currency")?)?;
    Ok(Campaign {
        id: CampaignId::from_trusted(r.text("id")?),
        terms: CampaignTerms {
            sku: r.text("sku")?,
            title: r.text("title")?,
            unit_price: Money::new(r.int("unit_price")?, cur),
            deposit: Money::new(r.int("deposit")?, cur),
            batch_threshold: r.int("batch_threshold")?,
            batch_cap: r.int_opt("batch_cap")?,
            max_per_order: r.int_opt("max_per_order")?,
            max_per_consumer: r.int_opt("max_per_consumer")?,
            total_cap: r.int_opt("total_cap")?,
            opens_at: r.ts("opens_at")?,
            deadline: r.ts("deadline")?,
            price_ladder: ladder(&r.text("price_ladder")?)?,
            balance_window_secs: r.int_opt("balance_window_secs")?,
        },
        created_at: r.ts("created_at")?,
    })
}

/// A [`PoolSnapshot`]: the open batch's columns (all null when there is none),
/// `campaign_units`, and `consumer_units` as a JSON object of units by consumer id.
fn pool_snapshot(r: &impl Columns) -> Result<PoolSnapshot, StoreError> {
    let open = match r.text_opt("id")? {
        Some(_) => Some(batch(r)?),
        None => None,
    };
    let consumers = r.text_opt("consumer_units")?;
    let consumer_units = match consumers.as_deref() {
        None | Some("") => Default::default(),
        Some(json) => serde_json::from_str(json)
            .map_err(|e| StoreError::Corrupt(format!("consumer units {json:?}: {e}")))?,
    };
    Ok(PoolSnapshot {
        open,
        campaign_units: r.int("campaign_units")?,
        consumer_units,
    })
}

/// Columns: `id, campaign_id, seq, status, units, threshold, created_at, locked_at,
/// failed_at, final_unit_price, currency, balance_due_by, forfeited_units, ready_at`
/// (`currency` is read only when `final_unit_price` is set).
pub(crate) fn batch(r: &impl Columns) -> Result<Batch, StoreError> {
    let final_unit_price = match r.int_opt("final_unit_price")? {
        Some(minor) => Some(Money::new(minor, currency(&r.text("currency")?)?)),
        None => None,
    };
    Ok(Batch {
        id: BatchId::from_trusted(r.text("id")?),
        campaign_id: CampaignId::from_trusted(r.text("campaign_id")?),
        seq: r.int("seq")?,
        status: batch_status(&r.text("status")?)?,
        units: r.int("units")?,
        threshold: r.int("threshold")?,
        created_at: r.ts("created_at")?,
        locked_at: r.ts_opt("locked_at")?,
        failed_at: r.ts_opt("failed_at")?,
        final_unit_price,
        balance_due_by: r.ts_opt("balance_due_by")?,
        forfeited_units: r.int("forfeited_units")?,
        ready_at: r.ts_opt("ready_at")?,
    })
}

/// Columns: `id, campaign_id, consumer_id, batch_id, batch_seq, batch_status, quantity,
/// unit_price, deposit_total, currency, created_at, cancelled_at, hold_state, balance_due,
/// balance_paid_at, forfeited_at, batch_final_unit_price, batch_balance_due_by` (the
/// batch's columns joined in, so the status is derived from the batch it belongs to).
pub(crate) fn preorder(r: &impl Columns) -> Result<Preorder, StoreError> {
    let cur = currency(&r.text("currency")?)?;
    let cancelled_at = r.ts_opt("cancelled_at")?;
    let forfeited_at = r.ts_opt("forfeited_at")?;
    let batch = batch_status(&r.text("batch_status")?)?;
    let money = PreorderMoney {
        hold: hold_state(&r.text("hold_state")?)?,
        final_unit_price: r
            .int_opt("batch_final_unit_price")?
            .map(|m| Money::new(m, cur)),
        balance_due: r.int_opt("balance_due")?.map(|m| Money::new(m, cur)),
        balance_due_by: r.ts_opt("batch_balance_due_by")?,
        balance_paid_at: r.ts_opt("balance_paid_at")?,
        forfeited_at,
    };
    Ok(Preorder {
        id: PreorderId::from_trusted(r.text("id")?),
        campaign_id: CampaignId::from_trusted(r.text("campaign_id")?),
        consumer_id: ConsumerId::from_trusted(r.text("consumer_id")?),
        batch_id: BatchId::from_trusted(r.text("batch_id")?),
        batch_seq: r.int("batch_seq")?,
        quantity: r.int("quantity")?,
        unit_price: Money::new(r.int("unit_price")?, cur),
        deposit_total: Money::new(r.int("deposit_total")?, cur),
        status: PreorderStatus::derive(cancelled_at.is_some(), forfeited_at.is_some(), batch),
        created_at: r.ts("created_at")?,
        cancelled_at,
        money,
    })
}
