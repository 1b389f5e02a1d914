//! Turning rows into domain values, shared by both backends.
//!
//! Each backend implements [`Columns`] for its row type (the only difference is how a
//! timestamp is stored); the builders below then read the same column names from either.

use chrono::{DateTime, SubsecRound, Utc};

use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, CampaignTerms, ConsumerId, Currency, Money,
    Preorder, PreorderId, PreorderStatus,
};

use crate::StoreError;

/// Typed access to a row's columns, with decoding failures reported as [`StoreError`].
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn int_opt(&self, col: &str) -> Result<Option<i64>, StoreError>;
    fn ts(&self, col: &str) -> Result<DateTime<Utc>, StoreError>;
    fn ts_opt(&self, col: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// Both backends keep timestamps to the microsecond. Every time the store writes is cut to
/// that precision first, so what an operation returns equals what a later read returns.
pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

fn currency(code: &str) -> Result<Currency, StoreError> {
    Currency::parse(code).map_err(|e| StoreError::Corrupt(format!("stored currency: {e}")))
}

fn batch_status(s: &str) -> Result<BatchStatus, StoreError> {
    BatchStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("batch status {s:?}")))
}

/// Columns: `id, sku, title, currency, unit_price, deposit, batch_threshold, batch_cap,
/// max_per_order, max_per_consumer, total_cap, opens_at, deadline, created_at`.
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
        },
        created_at: r.ts("created_at")?,
    })
}

/// Columns: `id, campaign_id, seq, status, units, threshold, created_at, locked_at,
/// failed_at`.
pub(crate) fn batch(r: &impl Columns) -> Result<Batch, StoreError> {
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
    })
}

/// Columns: `id, campaign_id, consumer_id, batch_id, batch_seq, batch_status, quantity,
/// unit_price, deposit_total, currency, created_at, cancelled_at` (the batch's columns
/// joined in, so the status is derived from the batch it belongs to).
pub(crate) fn preorder(r: &impl Columns) -> Result<Preorder, StoreError> {
    let cur = currency(&r.text("currency")?)?;
    let cancelled_at = r.ts_opt("cancelled_at")?;
    let batch = batch_status(&r.text("batch_status")?)?;
    Ok(Preorder {
        id: PreorderId::from_trusted(r.text("id")?),
        campaign_id: CampaignId::from_trusted(r.text("campaign_id")?),
        consumer_id: ConsumerId::from_trusted(r.text("consumer_id")?),
        batch_id: BatchId::from_trusted(r.text("batch_id")?),
        batch_seq: r.int("batch_seq")?,
        quantity: r.int("quantity")?,
        unit_price: Money::new(r.int("unit_price")?, cur),
        deposit_total: Money::new(r.int("deposit_total")?, cur),
        status: PreorderStatus::derive(cancelled_at.is_some(), batch),
        created_at: r.ts("created_at")?,
        cancelled_at,
    })
}

/// Cuts a fetched `size + 1` rows (each with its `seq`) down to a page: the extra row, if
/// present, only says that a further page exists.
pub(crate) fn page<T>(mut rows: Vec<(i64, T)>, size: u32) -> c2m_domain::Page<T> {
    let size = size.max(1) as usize;
    let more = rows.len() > size;
    rows.truncate(size);
    let next_after = if more {
        rows.last().map(|(seq, _)| *seq)
    } else {
        None
    };
    c2m_domain::Page {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next_after,
    }
}

/// The SQL `LIMIT` for a page: one more than its size.
pub(crate) fn page_limit(size: u32) -> i64 {
    i64::from(size.max(1)) + 1
}

/// The columns [`campaign`] reads, plus `seq`, for `FROM campaigns`.
macro_rules! campaign_columns {
    () => {
        "id, seq, sku, title, currency, unit_price, deposit, batch_threshold, batch_cap, \
         max_per_order, max_per_consumer, total_cap, opens_at, deadline, created_at"
    };
}

/// The columns [`batch`] reads, for `FROM batches`.
macro_rules! batch_columns {
    () => {
        "id, campaign_id, seq, status, units, threshold, created_at, locked_at, failed_at"
    };
}

/// The columns [`preorder`] reads, plus `seq`, for `FROM preorders p JOIN batches b`.
macro_rules! preorder_select {
    () => {
        "SELECT p.seq, p.id, p.campaign_id, p.consumer_id, p.batch_id, b.seq AS batch_seq, \
         b.status AS batch_status, p.quantity, p.unit_price, p.deposit_total, p.currency, \
         p.created_at, p.cancelled_at \
         FROM preorders p JOIN batches b ON b.id = p.batch_id "
    };
}

pub(crate) use {batch_columns, campaign_columns, preorder_select};
