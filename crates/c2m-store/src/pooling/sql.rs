//! The SQL of campaigns, batches and pre-orders, written once for both backends: the
//! statements the write path runs on a [`Tx`], the reads, and turning their rows into
//! domain values.

use chrono::{DateTime, Utc};
use sqlx::Pool;

use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, CampaignProgress, CampaignTerms, ConsumerId,
    Currency, HoldState, Money, Page, PageRequest, Preorder, PreorderId, PreorderMoney,
    PreorderStatus, PriceLadder, PriceTier,
};

use super::PoolSnapshot;
use crate::dialect::{columns, one, page, page_limit, Backend, Columns, Conn, Dialect, Tx, Value};
use crate::engine::campaign_not_found;
use crate::pooling::preorder_not_found;
use crate::Result;
use crate::{BatchTransition, PreorderFilter, StoreError};

/// The columns [`campaign`] reads, plus `seq`, for `FROM campaigns`.
macro_rules! campaign_columns {
    () => {
        "id, seq, sku, title, currency, unit_price, deposit, batch_threshold, batch_cap, \
         max_per_order, max_per_consumer, total_cap, opens_at, deadline, created_at, \
         price_ladder, balance_window_secs, ships_within_days, closed_at, cancelled_at"
    };
}

/// The columns [`batch`] reads, for `FROM batches`.
macro_rules! batch_columns {
    () => {
        "id, campaign_id, seq, status, units, threshold, created_at, locked_at, failed_at, \
         final_unit_price, currency, balance_due_by, forfeited_units, ready_at, refunded_at"
    };
}

/// `SELECT` of the columns [`campaign`] reads `FROM campaigns `, for a `WHERE` to follow.
macro_rules! campaign_select {
    () => {
        concat!(
            "SELECT ",
            $crate::pooling::campaign_columns!(),
            " FROM campaigns "
        )
    };
}

/// `SELECT` of the columns [`batch`] reads `FROM batches `, for a `WHERE` to follow.
macro_rules! batch_select {
    () => {
        concat!(
            "SELECT ",
            $crate::pooling::batch_columns!(),
            " FROM batches "
        )
    };
}

/// The columns [`preorder`] reads, plus `seq`, for `FROM preorders p JOIN batches b`.
macro_rules! preorder_select {
    () => {
        "SELECT p.seq, p.id, p.campaign_id, p.consumer_id, p.batch_id, b.seq AS batch_seq, \
         b.status AS batch_status, p.quantity, p.unit_price, p.deposit_total, p.currency, \
         p.created_at, p.cancelled_at, p.hold_state, p.balance_due, p.balance_paid_at, \
         p.forfeited_at, p.refunded_at, b.final_unit_price AS batch_final_unit_price, \
         b.balance_due_by AS batch_balance_due_by \
         FROM preorders p JOIN batches b ON b.id = p.batch_id "
    };
}

pub(crate) use {batch_columns, batch_select, campaign_columns, campaign_select, preorder_select};

/// A campaign by id; PostgreSQL's writers lock its row, which is the campaign's lock.
pub(crate) const CAMPAIGN: &str = concat!(campaign_select!(), "WHERE id = $1");
const CAMPAIGN_FOR_UPDATE: &str = concat!(campaign_select!(), "WHERE id = $1 FOR UPDATE");

pub(crate) const PREORDER: &str = concat!(preorder_select!(), "WHERE p.id = $1");

/// The reads and writes the pooling operations need, inside the write's transaction.
impl<D: Backend> Tx<'_, D> {
    pub(crate) async fn insert_campaign(&mut self, c: &Campaign) -> Result<()> {
        let t = &c.terms;
        let params = (
            c.id.as_str(),
            &t.sku,
            &t.title,
            t.unit_price.currency.as_str(),
            t.unit_price.minor,
            t.deposit.minor,
            t.batch_threshold,
            t.batch_cap,
            t.max_per_order,
            t.max_per_consumer,
            t.total_cap,
            t.opens_at,
            t.deadline,
            c.created_at,
            ladder_json(&t.price_ladder),
            t.balance_window_secs,
            t.ships_within_days,
        );
        D::query(INSERT_CAMPAIGN, params).run(self).await
    }

    /// Reads the campaign and holds it against other writers until the transaction ends
    /// (see the module docs); `None` for an unknown campaign.
    pub(crate) async fn lock_campaign(&mut self, id: &CampaignId) -> Result<Option<Campaign>> {
        if let Some(held) = self.held.as_ref().filter(|c| c.id == *id) {
            return Ok(Some(held.clone()));
        }
        let sql = D::locking(CAMPAIGN, CAMPAIGN_FOR_UPDATE);
        D::query(sql, (id.as_str(),)).optional(self, campaign).await
    }

    /// Takes the campaign's lock for the whole transaction, for a group of writes on that
    /// campaign (see [`crate::writer`]). The writes then call [`Tx::lock_campaign`] as
    /// usual and get the row read here without another round trip: the lock is already
    /// theirs, it outlives every savepoint (it was taken outside all of them), and a
    /// campaign row is never updated after it is inserted, so the copy is what a second
    /// `FOR UPDATE` would read. An unknown campaign holds nothing; each write then finds it
    /// missing itself.
    pub(crate) async fn hold_campaign(&mut self, id: &CampaignId) -> Result<()> {
        self.held = None;
        self.held = self.lock_campaign(id).await?;
        Ok(())
    }

    pub(crate) async fn open_batch(&mut self, campaign: &CampaignId) -> Result<Option<Batch>> {
        D::query(OPEN_BATCH, (campaign.as_str(),))
            .optional(self, batch)
            .await
    }

    /// The campaign's open batch, if any, the units in its open and locked batches, and
    /// the units each of `consumers` holds in it (not cancelled, not forfeited, not in a
    /// failed batch), read in one statement: what the pooling rule needs for a run of
    /// placements.
    pub(crate) async fn pool_snapshot(
        &mut self,
        campaign: &CampaignId,
        consumers: &[&ConsumerId],
    ) -> Result<PoolSnapshot> {
        let consumers: Vec<&str> = consumers.iter().map(|c| c.as_str()).collect();
        let params = (campaign.as_str(), Value::List(&consumers));
        pool_snapshot(&D::query(D::POOL_SNAPSHOT, params).fetch_one(self).await?)
    }

    /// The sequence number the campaign's next batch gets.
    pub(crate) async fn next_batch_seq(&mut self, campaign: &CampaignId) -> Result<i64> {
        let sql = "SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM batches WHERE campaign_id = $1";
        D::query(sql, (campaign.as_str(),))
            .fetch_one(self)
            .await?
            .int("seq")
    }

    /// Whether the campaign's newest batch failed. A batch fails only when the campaign
    /// stops selling (its deadline, a close, a cancel), so after that no order may open
    /// another batch, whatever moment it was sent at.
    pub(crate) async fn newest_batch_failed(&mut self, campaign: &CampaignId) -> Result<bool> {
        let sql = "SELECT status FROM batches WHERE campaign_id = $1 ORDER BY seq DESC LIMIT 1";
        let newest = D::query(sql, (campaign.as_str(),))
            .optional(self, |r| r.text("status"))
            .await?;
        Ok(newest.as_deref() == Some("failed"))
    }

    /// Inserts an open batch and its 'open' transition.
    pub(crate) async fn insert_batch(&mut self, b: &Batch) -> Result<()> {
        let params = (
            b.id.as_str(),
            b.campaign_id.as_str(),
            b.seq,
            b.units,
            b.threshold,
            b.created_at,
        );
        D::query(INSERT_BATCH, params).execute(self).await?;
        D::query(OPENED, (b.id.as_str(), b.created_at))
            .run(self)
            .await
    }

    pub(crate) async fn set_batch_units(&mut self, batch: &BatchId, units: i64) -> Result<()> {
        let sql = "UPDATE batches SET units = $2 WHERE id = $1 AND status = 'open'";
        let done = D::query(sql, (batch.as_str(), units)).execute(self).await?;
        one(done, || format!("batch {batch} is not open"))
    }

    /// Moves an open batch to `status` (locked or failed) at `at` and records the
    /// transition. Fails (as corrupt data) if the batch was not open.
    pub(crate) async fn end_batch(
        &mut self,
        batch: &BatchId,
        status: BatchStatus,
        at: DateTime<Utc>,
    ) -> Result<()> {
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
        let done = D::query(sql, (batch.as_str(), at)).execute(self).await?;
        one(done, || format!("batch {batch} is not open"))?;
        let params = (batch.as_str(), status.as_str(), at);
        D::query(ENDED, params).run(self).await
    }

    /// The pre-order with its status derived from its batch.
    pub(crate) async fn preorder(&mut self, id: &PreorderId) -> Result<Option<Preorder>> {
        D::query(PREORDER, (id.as_str(),))
            .optional(self, preorder)
            .await
    }

    pub(crate) async fn set_cancelled(&mut self, id: &PreorderId, at: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE preorders SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL";
        let done = D::query(sql, (id.as_str(), at)).execute(self).await?;
        one(done, || format!("pre-order {id} was already cancelled"))
    }
}

const INSERT_CAMPAIGN: &str = "INSERT INTO campaigns (id, sku, title, currency, unit_price, \
     deposit, batch_threshold, batch_cap, max_per_order, max_per_consumer, total_cap, \
     opens_at, deadline, created_at, price_ladder, balance_window_secs, ships_within_days) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)";

const OPEN_BATCH: &str = concat!(
    batch_select!(),
    "WHERE campaign_id = $1 AND status = 'open'"
);

const INSERT_BATCH: &str = "INSERT INTO batches (id, campaign_id, seq, status, units, \
     threshold, created_at) VALUES ($1, $2, $3, 'open', $4, $5, $6)";

const OPENED: &str = "INSERT INTO batch_transitions (batch_id, status, at) VALUES ($1, 'open', $2)";

const ENDED: &str = "INSERT INTO batch_transitions (batch_id, status, at) VALUES ($1, $2, $3)";

/// One statement, so every figure comes from the same snapshot.
/// `NotFound` for an unknown campaign.
pub(crate) async fn campaign_progress<D: Dialect>(
    pool: &Pool<D>,
    id: &CampaignId,
) -> Result<CampaignProgress> {
    let mut conn = pool.acquire().await?;
    campaign_progress_on::<D>(&mut conn, id)
        .await?
        .ok_or_else(|| campaign_not_found(id))
}

/// [`campaign_progress`] on a connection or in a transaction (the fill forecast reads it in
/// its own snapshot, so that what it shows agrees with the forecast); `None` for an unknown
/// campaign.
pub(crate) async fn campaign_progress_on<D: Dialect>(
    on: &mut impl Conn<D>,
    id: &CampaignId,
) -> Result<Option<CampaignProgress>> {
    let progress = |r: &D::Row| {
        Ok(CampaignProgress {
            campaign: campaign(r)?,
            open_batch_units: r.int_opt("open_units")?.unwrap_or(0),
            open_batch_seq: r.int_opt("open_seq")?,
            batches_locked: r.int("locked")?,
            batches_failed: r.int("failed")?,
            units_committed: r.int("committed")?,
        })
    };
    D::query(PROGRESS, (id.as_str(),))
        .optional(on, progress)
        .await
}

const PROGRESS: &str = concat!(
    "SELECT ",
    campaign_columns!(),
    ", (SELECT units FROM batches b WHERE b.campaign_id = c.id AND b.status = 'open') AS open_units, \
     (SELECT seq FROM batches b WHERE b.campaign_id = c.id AND b.status = 'open') AS open_seq, \
     (SELECT COUNT(*) FROM batches b WHERE b.campaign_id = c.id AND b.status = 'locked') AS locked, \
     (SELECT COUNT(*) FROM batches b WHERE b.campaign_id = c.id AND b.status = 'failed') AS failed, \
     (SELECT CAST(COALESCE(SUM(units - forfeited_units), 0) AS BIGINT) FROM batches b \
      WHERE b.campaign_id = c.id AND b.status IN ('open', 'locked')) AS committed \
     FROM campaigns c WHERE c.id = $1"
);

pub(crate) async fn list_campaigns<D: Dialect>(
    pool: &Pool<D>,
    req: PageRequest,
) -> Result<Page<Campaign>> {
    let sql = concat!(campaign_select!(), "WHERE seq > $1 ORDER BY seq LIMIT $2");
    let params = (req.after.unwrap_or(0), page_limit(req.size));
    let rows = D::query(sql, params)
        .fetch_all(&mut pool.acquire().await?)
        .await?;
    paged(&rows, req, campaign)
}

/// `NotFound` for an unknown pre-order.
pub(crate) async fn get_preorder<D: Dialect>(pool: &Pool<D>, id: &PreorderId) -> Result<Preorder> {
    D::query(PREORDER, (id.as_str(),))
        .found(&mut pool.acquire().await?, preorder, || {
            preorder_not_found(id)
        })
        .await
}

pub(crate) async fn list_preorders<D: Dialect>(
    pool: &Pool<D>,
    filter: &PreorderFilter,
    req: PageRequest,
) -> Result<Page<Preorder>> {
    let after = req.after.unwrap_or(0);
    let limit = page_limit(req.size);
    let query = match filter {
        PreorderFilter::Consumer(consumer) => D::query(
            concat!(
                preorder_select!(),
                "WHERE p.consumer_id = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3"
            ),
            (consumer.as_str(), after, limit),
        ),
        PreorderFilter::Campaign(campaign) => D::query(
            concat!(
                preorder_select!(),
                "WHERE p.campaign_id = $1 AND p.seq > $2 ORDER BY p.seq LIMIT $3"
            ),
            (campaign.as_str(), after, limit),
        ),
        PreorderFilter::ConsumerInCampaign(consumer, campaign) => D::query(
            concat!(
                preorder_select!(),
                "WHERE p.campaign_id = $1 AND p.consumer_id = $2 AND p.seq > $3 \
                 ORDER BY p.seq LIMIT $4"
            ),
            (campaign.as_str(), consumer.as_str(), after, limit),
        ),
    };
    let rows = query.fetch_all(&mut pool.acquire().await?).await?;
    paged(&rows, req, preorder)
}

/// A page of rows that each carry their `seq`, read into items with `item`.
pub(crate) fn paged<R: Columns, T>(
    rows: &[R],
    req: PageRequest,
    item: impl Fn(&R) -> Result<T>,
) -> Result<Page<T>> {
    let items = rows
        .iter()
        .map(|r| Ok((r.int("seq")?, item(r)?)))
        .collect::<Result<Vec<_>>>()?;
    Ok(page(items, req.size))
}

pub(crate) async fn list_batches<D: Dialect>(
    pool: &Pool<D>,
    campaign: &CampaignId,
) -> Result<Vec<Batch>> {
    let sql = concat!(batch_select!(), "WHERE campaign_id = $1 ORDER BY seq");
    D::query(sql, (campaign.as_str(),))
        .all(&mut pool.acquire().await?, batch)
        .await
}

/// The campaign a pre-order belongs to, if the pre-order exists.
pub(crate) async fn campaign_of<D: Dialect>(
    pool: &Pool<D>,
    preorder: &PreorderId,
) -> Result<Option<CampaignId>> {
    let sql = "SELECT campaign_id FROM preorders WHERE id = $1";
    let campaign = |r: &D::Row| Ok(CampaignId::from_trusted(r.text("campaign_id")?));
    let mut conn = pool.acquire().await?;
    D::query(sql, (preorder.as_str(),))
        .optional(&mut conn, campaign)
        .await
}

pub(crate) async fn campaign_exists<D: Dialect>(pool: &Pool<D>, id: &CampaignId) -> Result<bool> {
    let sql = "SELECT COUNT(*) AS n FROM campaigns WHERE id = $1";
    let row = D::query(sql, (id.as_str(),))
        .fetch_one(&mut pool.acquire().await?)
        .await?;
    Ok(row.int("n")? > 0)
}

pub(crate) async fn campaigns_past_deadline<D: Dialect>(
    pool: &Pool<D>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<CampaignId>> {
    let sql = "SELECT c.id FROM campaigns c \
         JOIN batches b ON b.campaign_id = c.id AND b.status = 'open' \
         WHERE c.deadline <= $1 ORDER BY c.deadline, c.seq LIMIT $2";
    due(pool, sql, now, limit, CampaignId::from_trusted).await
}

/// What a sweep is due to handle at `now`: the ids (column `id`) `sql` selects with `now`
/// as `$1` and at most `limit` as `$2`.
pub(crate) async fn due<D: Dialect, Id>(
    pool: &Pool<D>,
    sql: &str,
    now: DateTime<Utc>,
    limit: u32,
    id: fn(String) -> Id,
) -> Result<Vec<Id>> {
    let mut conn = pool.acquire().await?;
    D::query(sql, (now, i64::from(limit)))
        .all(&mut conn, |r| Ok(id(r.text("id")?)))
        .await
}

pub(crate) async fn batch_transitions<D: Dialect>(
    pool: &Pool<D>,
    batch: &BatchId,
) -> Result<Vec<BatchTransition>> {
    let sql = "SELECT batch_id, status, at FROM batch_transitions WHERE batch_id = $1 \
         ORDER BY at, CASE status WHEN 'open' THEN 0 ELSE 1 END";
    let transition = |r: &D::Row| {
        Ok(BatchTransition {
            batch_id: BatchId::from_trusted(r.text("batch_id")?),
            status: batch_status(&r.text("status")?)?,
            at: r.ts("at")?,
        })
    };
    let mut conn = pool.acquire().await?;
    D::query(sql, (batch.as_str(),))
        .all(&mut conn, transition)
        .await
}

pub(crate) fn currency(code: &str) -> Result<Currency> {
    Currency::parse(code).map_err(|e| StoreError::Corrupt(format!("stored currency: {e}")))
}

fn batch_status(s: &str) -> Result<BatchStatus> {
    BatchStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("batch status {s:?}")))
}

/// The stored form of a price ladder: a JSON array of `{min_units, unit_price}`.
fn ladder_json(ladder: &PriceLadder) -> String {
    // Serializing plain structs of integers cannot fail.
    serde_json::to_string(ladder.tiers()).unwrap_or_else(|_| "[]".to_owned())
}

fn ladder(json: &str) -> Result<PriceLadder> {
    let tiers: Vec<PriceTier> = serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("stored price ladder: {e}")))?;
    Ok(PriceLadder::from_trusted(tiers))
}

fn hold_state(s: &str) -> Result<HoldState> {
    HoldState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("hold state {s:?}")))
}

/// Columns: `id, sku, title, currency, unit_price, deposit, batch_threshold, batch_cap,
/// max_per_order, max_per_consumer, total_cap, opens_at, deadline, created_at,
/// price_ladder, balance_window_secs, ships_within_days, closed_at, cancelled_at`.
pub(crate) fn campaign(r: &impl Columns) -> Result<Campaign> {
    let cur = currency(&r.text("currency")?)?;
    let terms = columns!(r => CampaignTerms {
        sku: text, title: text, batch_threshold: int, ships_within_days: int,
        batch_cap: int_opt, max_per_order: int_opt, max_per_consumer: int_opt,
        total_cap: int_opt, balance_window_secs: int_opt, opens_at: ts, deadline: ts;
        unit_price: Money::new(r.int("unit_price")?, cur),
        deposit: Money::new(r.int("deposit")?, cur),
        price_ladder: ladder(&r.text("price_ladder")?)?,
    });
    Ok(columns!(r => Campaign {
        created_at: ts, closed_at: ts_opt, cancelled_at: ts_opt;
        id: CampaignId::from_trusted(r.text("id")?),
        terms,
    }))
}

/// A [`PoolSnapshot`]: the open batch's columns (all null when there is none),
/// `campaign_units`, and `consumer_units` as a JSON object of units by consumer id.
fn pool_snapshot(r: &impl Columns) -> Result<PoolSnapshot> {
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
pub(crate) fn batch(r: &impl Columns) -> Result<Batch> {
    let final_unit_price = match r.int_opt("final_unit_price")? {
        Some(minor) => Some(Money::new(minor, currency(&r.text("currency")?)?)),
        None => None,
    };
    Ok(columns!(r => Batch {
        seq: int, units: int, threshold: int, forfeited_units: int, created_at: ts,
        locked_at: ts_opt, failed_at: ts_opt, balance_due_by: ts_opt, ready_at: ts_opt,
        refunded_at: ts_opt;
        id: BatchId::from_trusted(r.text("id")?),
        campaign_id: CampaignId::from_trusted(r.text("campaign_id")?),
        status: batch_status(&r.text("status")?)?,
        final_unit_price,
    }))
}

/// Columns: `id, campaign_id, consumer_id, batch_id, batch_seq, batch_status, quantity,
/// unit_price, deposit_total, currency, created_at, cancelled_at, hold_state, balance_due,
/// balance_paid_at, forfeited_at, batch_final_unit_price, batch_balance_due_by` (the
/// batch's columns joined in, so the status is derived from the batch it belongs to).
pub(crate) fn preorder(r: &impl Columns) -> Result<Preorder> {
    let cur = currency(&r.text("currency")?)?;
    let cancelled_at = r.ts_opt("cancelled_at")?;
    let forfeited_at = r.ts_opt("forfeited_at")?;
    let batch = batch_status(&r.text("batch_status")?)?;
    let money = columns!(r => PreorderMoney {
        balance_paid_at: ts_opt, refunded_at: ts_opt;
        hold: hold_state(&r.text("hold_state")?)?,
        final_unit_price: r
            .int_opt("batch_final_unit_price")?
            .map(|m| Money::new(m, cur)),
        balance_due: r.int_opt("balance_due")?.map(|m| Money::new(m, cur)),
        balance_due_by: r.ts_opt("batch_balance_due_by")?,
        forfeited_at,
    });
    Ok(columns!(r => Preorder {
        batch_seq: int, quantity: int, created_at: ts;
        id: PreorderId::from_trusted(r.text("id")?),
        campaign_id: CampaignId::from_trusted(r.text("campaign_id")?),
        consumer_id: ConsumerId::from_trusted(r.text("consumer_id")?),
        batch_id: BatchId::from_trusted(r.text("batch_id")?),
        unit_price: Money::new(r.int("unit_price")?, cur),
        deposit_total: Money::new(r.int("deposit_total")?, cur),
        status: PreorderStatus::derive(cancelled_at.is_some(), forfeited_at.is_some(), batch),
        cancelled_at,
        money,
    }))
}
