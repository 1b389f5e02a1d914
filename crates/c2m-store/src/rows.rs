//! Turning rows into domain values, shared by both backends.
//!
//! Each backend implements [`Columns`] for its row type (the only difference is how a
//! timestamp is stored); the builders below then read the same column names from either.

use chrono::{DateTime, SubsecRound, Utc};

use c2m_domain::{
    Batch, BatchId, BatchStatus, Campaign, CampaignId, CampaignTerms, ConsumerId, Currency,
    HoldState, Money, Preorder, PreorderId, PreorderMoney, PreorderStatus, PriceLadder, PriceTier,
};

use crate::pooling::PoolSnapshot;
use crate::StoreError;

pub(crate) use crate::dialect::Columns;

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

/// The stored form of a price ladder: a JSON array of `{min_units, unit_price}`.
pub(crate) fn ladder_json(ladder: &PriceLadder) -> String {
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

/// Columns: `id, campaign_id, seq, status, units, threshold, created_at, locked_at,
/// failed_at, final_unit_price, currency, balance_due_by, forfeited_units, ready_at`
/// (`currency` is read only when `final_unit_price` is set).
/// A [`PoolSnapshot`]: the open batch's columns (all null when there is none),
/// `campaign_units`, and `consumer_units` as a JSON object of units by consumer id.
pub(crate) fn pool_snapshot(r: &impl Columns) -> Result<PoolSnapshot, StoreError> {
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

/// `Ok` when an update touched exactly one row; otherwise the state was not what the
/// caller read under the lock, which is corrupt data (or a bug), never a client error.
pub(crate) fn one(rows_affected: u64, what: impl FnOnce() -> String) -> Result<(), StoreError> {
    if rows_affected == 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(what()))
    }
}

/// As [`one`], for a statement meant to change `expected` rows.
pub(crate) fn exactly(
    rows_affected: u64,
    expected: usize,
    what: impl FnOnce() -> String,
) -> Result<(), StoreError> {
    if rows_affected == expected as u64 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(what()))
    }
}

/// A fresh ledger transaction id (`ltx_...`), the key a gateway would be given.
pub(crate) fn ledger_txn_id() -> String {
    format!("ltx_{}", uuid::Uuid::now_v7().simple())
}

/// The money summary of one campaign in one statement (the campaign id is `param`).
/// `CAST(... AS BIGINT)` keeps PostgreSQL's sums integers; SQLite accepts it as is.
pub(crate) fn campaign_money_sql(param: &str) -> String {
    let kind = |k: &str| {
        format!(
            "(SELECT CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) FROM ledger_txns t \
             JOIN ledger_postings p ON p.txn_seq = t.seq \
             WHERE t.campaign_id = c.id AND t.kind = '{k}' AND p.amount > 0) AS kind_{k}"
        )
    };
    let account = |prefix: &str| {
        format!(
            "(SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_postings \
             WHERE account = '{prefix}:' || c.id) AS account_{prefix}"
        )
    };
    let columns: Vec<String> = c2m_domain::TxnKind::ALL
        .iter()
        .map(|k| kind(k.as_str()))
        .chain(["holds", "escrow", "merchant"].map(account))
        .collect();
    format!(
        "SELECT c.id, c.currency, {}, \
         (SELECT CAST(COALESCE(SUM(balance_due), 0) AS BIGINT) FROM preorders \
          WHERE campaign_id = c.id AND hold_state = 'captured' AND balance_paid_at IS NULL \
          AND forfeited_at IS NULL) AS outstanding \
         FROM campaigns c WHERE c.id = {param}",
        columns.join(", ")
    )
}

pub(crate) fn campaign_money(r: &impl Columns) -> Result<c2m_domain::CampaignMoney, StoreError> {
    Ok(c2m_domain::CampaignMoney {
        campaign_id: CampaignId::from_trusted(r.text("id")?),
        currency: currency(&r.text("currency")?)?,
        deposited: r.int("kind_hold")?,
        held: r.int("account_holds")?,
        captured: r.int("kind_capture")?,
        released: r.int("kind_release")?,
        balances_paid: r.int("kind_balance")?,
        balances_outstanding: r.int("outstanding")?,
        forfeited: r.int("kind_forfeit")?,
        settled: r.int("kind_settle")?,
        escrow: r.int("account_escrow")?,
        merchant: r.int("account_merchant")?,
    })
}

/// Transactions whose postings do not sum to zero.
pub(crate) const UNBALANCED_SQL: &str = "SELECT txn_seq FROM ledger_postings GROUP BY txn_seq \
     HAVING SUM(amount) <> 0 ORDER BY txn_seq";

/// The sum over all accounts, per currency.
pub(crate) const TOTALS_SQL: &str =
    "SELECT t.currency, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) AS total \
     FROM ledger_postings p JOIN ledger_txns t ON t.seq = p.txn_seq \
     GROUP BY t.currency ORDER BY t.currency";

/// Pre-orders whose hold state disagrees with their ledger movements.
pub(crate) const HOLD_MISMATCH_SQL: &str = "SELECT p.id FROM preorders p WHERE \
     (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'hold') <> 1 \
     OR (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'capture') \
        <> CASE p.hold_state WHEN 'captured' THEN 1 ELSE 0 END \
     OR (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'release') \
        <> CASE p.hold_state WHEN 'released' THEN 1 ELSE 0 END \
     ORDER BY p.seq";

/// Builds a page of ledger entries from the transaction rows (`seq, id, campaign_id,
/// preorder_id, batch_id, kind, currency, at`, `size + 1` at most) and the postings rows
/// (`txn_seq, account, amount`) of those transactions.
pub(crate) fn ledger_page(
    txns: &[impl Columns],
    postings: &[impl Columns],
    size: u32,
) -> Result<c2m_domain::Page<c2m_domain::LedgerEntry>, StoreError> {
    use c2m_domain::{Account, LedgerEntry, LedgerTxn, Posting, TxnKind};
    let mut by_txn: std::collections::HashMap<i64, Vec<Posting>> = Default::default();
    for p in postings {
        let code = p.text("account")?;
        let account = Account::parse(&code)
            .ok_or_else(|| StoreError::Corrupt(format!("ledger account {code:?}")))?;
        by_txn.entry(p.int("txn_seq")?).or_default().push(Posting {
            account,
            amount: p.int("amount")?,
        });
    }
    let mut items = Vec::with_capacity(txns.len());
    for t in txns {
        let seq = t.int("seq")?;
        let kind_text = t.text("kind")?;
        let kind = TxnKind::parse(&kind_text)
            .ok_or_else(|| StoreError::Corrupt(format!("ledger kind {kind_text:?}")))?;
        let txn = LedgerTxn::new(
            kind,
            currency(&t.text("currency")?)?,
            by_txn.remove(&seq).unwrap_or_default(),
        )
        .map_err(|e| StoreError::Corrupt(format!("ledger transaction {seq}: {e}")))?;
        items.push((
            seq,
            LedgerEntry {
                id: t.text("id")?,
                campaign_id: CampaignId::from_trusted(t.text("campaign_id")?),
                preorder_id: t.text_opt("preorder_id")?.map(PreorderId::from_trusted),
                batch_id: t.text_opt("batch_id")?.map(BatchId::from_trusted),
                txn,
                at: t.ts("at")?,
            },
        ));
    }
    Ok(page(items, size))
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

pub(crate) use {batch_columns, campaign_columns, preorder_select};
