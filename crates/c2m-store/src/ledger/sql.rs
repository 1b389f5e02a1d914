//! The SQL of the ledger, written once for both backends: the statements whose text is
//! the same on both (the several-row ones are in `multirow.rs`), the reads, and turning
//! their rows into domain values.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sqlx::Pool;

use c2m_domain::{
    Account, Batch, BatchId, CampaignId, CampaignMoney, HoldState, LedgerEntry, LedgerTxn, Money,
    Page, PageRequest, Posting, Preorder, PreorderId, TxnKind,
};

use super::{one_batch, Placement, Subject};
use crate::dialect::{exactly, one, page, page_limit, Backend, Columns, Dialect, Tx};
use crate::engine::campaign_not_found;
use crate::pooling::{batch, batch_select, currency, due, preorder, preorder_select};
use crate::Result;
use crate::{LedgerAudit, StoreError};

/// The ledger's reads and writes inside the write's transaction.
///
/// Several rows at once, in a few statements whatever their number: a batch that locks or
/// fails moves the money of every pre-order in it while the campaign's lock is held, and
/// every statement then is paid by every order waiting behind the lock (one statement per
/// pre-order and kind made the lock of a 100-unit batch some 300 round trips on
/// PostgreSQL and 500 statements on SQLite). The several-row statements are each
/// backend's ([`LedgerSql`]); what both share is here.
impl<D: Backend> Tx<'_, D> {
    /// Appends the transactions and their postings, in order (their sequence numbers
    /// follow it).
    pub(crate) async fn insert_ledger_txns(
        &mut self,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        if txns.is_empty() {
            return Ok(());
        }
        D::insert_ledger_txns(self, campaign, txns, at).await
    }

    /// Moves each pre-order's hold (each named once) from `held` to its state; corrupt
    /// data if one was not held.
    pub(crate) async fn resolve_holds(&mut self, holds: &[(PreorderId, HoldState)]) -> Result<()> {
        if holds.is_empty() {
            return Ok(());
        }
        let done = D::resolve_holds(self, holds).await?;
        exactly(done, holds.len(), || {
            "a hold among the pre-orders was already resolved".to_owned()
        })
    }

    /// Captures each pre-order's deposit (`held` to `captured`; each pre-order named once)
    /// and records the balance it owes, and `paid_at` when it owes nothing: what a batch's
    /// lock does to each of its pre-orders, in one pass over their rows rather than one
    /// per change (each pass writes a new version of every row and of its index entries).
    /// Corrupt data if a hold was not held or a balance was already recorded.
    pub(crate) async fn capture_holds(
        &mut self,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<()> {
        if dues.is_empty() {
            return Ok(());
        }
        let done = D::capture_holds(self, dues).await?;
        exactly(done, dues.len(), || {
            "a pre-order among them was not held or already has a balance".to_owned()
        })
    }

    /// Writes pre-orders just placed, in order, all in one open batch: each pre-order,
    /// the hold of its deposit (already shown to the provider) and, when given, its
    /// idempotency record; the batch's units become the last one's `batch_units`. Corrupt
    /// data if the batch is not open. This is the whole write of a run of placements
    /// ([`crate::pooling::place_preorders`]), a few multi-row statements on both backends.
    pub(crate) async fn insert_placements(&mut self, placements: &[Placement<'_>]) -> Result<()> {
        let Some((first, batch_units)) = one_batch(placements)? else {
            return Ok(());
        };
        // Keys this transaction records are read again from the table if asked for.
        for k in placements.iter().filter_map(|p| p.key.as_ref()) {
            let recorded = (k.key.operation.to_owned(), k.key.key.as_str().to_owned());
            self.keys.remove(&recorded);
        }
        let batch_rows = D::insert_placements(self, placements, first, batch_units).await?;
        one(batch_rows, || {
            format!("batch {} is not open", first.batch_id)
        })
    }

    /// Records the price and balance window of a batch that just locked.
    pub(crate) async fn set_batch_price(
        &mut self,
        batch: &BatchId,
        price: Money,
        balance_due_by: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let sql = "UPDATE batches SET final_unit_price = $2, currency = $4, balance_due_by = $3 \
             WHERE id = $1 AND status = 'locked' AND final_unit_price IS NULL";
        let params = (
            batch.as_str(),
            price.minor,
            balance_due_by,
            price.currency.as_str(),
        );
        let done = D::query(sql, params).execute(self).await?;
        one(done, || {
            format!("batch {batch} is not a newly locked batch")
        })
    }

    pub(crate) async fn set_balance_paid(
        &mut self,
        preorder: &PreorderId,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE preorders SET balance_paid_at = $2 \
             WHERE id = $1 AND balance_paid_at IS NULL AND forfeited_at IS NULL";
        let done = D::query(sql, (preorder.as_str(), at)).execute(self).await?;
        one(done, || {
            format!("pre-order {preorder} was already paid or forfeited")
        })
    }

    /// Marks the pre-order forfeited and takes its units out of its batch's paid units.
    pub(crate) async fn set_forfeited(&mut self, p: &Preorder, at: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE preorders SET forfeited_at = $2 \
             WHERE id = $1 AND forfeited_at IS NULL AND balance_paid_at IS NULL";
        let done = D::query(sql, (p.id.as_str(), at)).execute(self).await?;
        one(done, || {
            format!("pre-order {} was already paid or forfeited", p.id)
        })?;
        let sql = "UPDATE batches SET forfeited_units = forfeited_units + $2 \
             WHERE id = $1 AND status = 'locked'";
        let done = D::query(sql, (p.batch_id.as_str(), p.quantity))
            .execute(self)
            .await?;
        one(done, || format!("batch {} is not locked", p.batch_id))
    }

    /// Marks a locked batch ready for planning; corrupt data if it already was.
    pub(crate) async fn set_ready(&mut self, batch: &BatchId, at: DateTime<Utc>) -> Result<()> {
        let sql = "UPDATE batches SET ready_at = $2 \
             WHERE id = $1 AND status = 'locked' AND ready_at IS NULL";
        let done = D::query(sql, (batch.as_str(), at)).execute(self).await?;
        one(done, || {
            format!("batch {batch} is not locked or already ready")
        })
    }

    /// Marks a cancelled campaign's locked batch refunded, with every pre-order still in
    /// it (not cancelled, not forfeited) cancelled and refunded at `at`; the batch's balance
    /// window is gone (nothing is owed any more).
    pub(crate) async fn set_batch_refunded(
        &mut self,
        batch: &BatchId,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE preorders SET cancelled_at = $2, refunded_at = $2 \
             WHERE batch_id = $1 AND cancelled_at IS NULL AND forfeited_at IS NULL";
        D::query(sql, (batch.as_str(), at)).execute(self).await?;
        let sql = "UPDATE batches SET refunded_at = $2, balance_due_by = NULL \
             WHERE id = $1 AND status = 'locked' AND refunded_at IS NULL";
        let done = D::query(sql, (batch.as_str(), at)).execute(self).await?;
        crate::dialect::one(done, || {
            format!("batch {batch} is not a locked batch to refund")
        })
    }

    pub(crate) async fn batch(&mut self, id: &BatchId) -> Result<Option<Batch>> {
        let sql = concat!(batch_select!(), "WHERE id = $1");
        D::query(sql, (id.as_str(),)).optional(self, batch).await
    }

    /// Every pre-order of the batch (cancelled ones included), in placement order.
    pub(crate) async fn batch_preorders(&mut self, batch: &BatchId) -> Result<Vec<Preorder>> {
        let sql = concat!(preorder_select!(), "WHERE p.batch_id = $1 ORDER BY p.seq");
        D::query(sql, (batch.as_str(),)).all(self, preorder).await
    }
}

pub(crate) async fn batches_past_balance_window<D: Dialect>(
    pool: &Pool<D>,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<BatchId>> {
    let sql = "SELECT id FROM batches \
         WHERE status = 'locked' AND ready_at IS NULL AND refunded_at IS NULL \
         AND balance_due_by <= $1 \
         ORDER BY balance_due_by, campaign_id, seq LIMIT $2";
    due(pool, sql, now, limit, BatchId::from_trusted).await
}

pub(crate) async fn batches_ready_for_planning<D: Dialect>(
    pool: &Pool<D>,
    limit: u32,
) -> Result<Vec<Batch>> {
    let sql = concat!(
        batch_select!(),
        "WHERE ready_at IS NOT NULL AND refunded_at IS NULL \
         ORDER BY ready_at, campaign_id, seq LIMIT $1"
    );
    D::query(sql, (i64::from(limit),))
        .all(&mut pool.acquire().await?, batch)
        .await
}

/// One statement, so every figure comes from the same snapshot.
/// `NotFound` for an unknown campaign.
pub(crate) async fn campaign_money<D: Dialect>(
    pool: &Pool<D>,
    campaign: &CampaignId,
) -> Result<CampaignMoney> {
    D::query(&CAMPAIGN_MONEY, (campaign.as_str(),))
        .found(&mut pool.acquire().await?, campaign_money_row, || {
            campaign_not_found(campaign)
        })
        .await
}

pub(crate) async fn list_ledger<D: Dialect>(
    pool: &Pool<D>,
    campaign: &CampaignId,
    req: PageRequest,
) -> Result<Page<LedgerEntry>> {
    let mut conn = pool.acquire().await?;
    let sql = "SELECT seq, id, campaign_id, preorder_id, batch_id, kind, currency, at \
         FROM ledger_txns WHERE campaign_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
    let params = (
        campaign.as_str(),
        req.after.unwrap_or(0),
        page_limit(req.size),
    );
    let txns = D::query(sql, params).fetch_all(&mut conn).await?;
    let (first, last) = match (txns.first(), txns.last()) {
        (Some(f), Some(l)) => (f.int("seq")?, l.int("seq")?),
        _ => return Ok(page(Vec::new(), req.size)),
    };
    // The postings of those transactions; a transaction and its postings are written in
    // one transaction and never change, so reading them second is consistent.
    let sql = "SELECT p.txn_seq, p.account, p.amount FROM ledger_postings p \
         JOIN ledger_txns t ON t.seq = p.txn_seq \
         WHERE t.campaign_id = $1 AND p.txn_seq BETWEEN $2 AND $3 ORDER BY p.txn_seq, p.amount";
    let postings = D::query(sql, (campaign.as_str(), first, last))
        .fetch_all(&mut conn)
        .await?;
    ledger_page(&txns, &postings, req.size)
}

pub(crate) async fn ledger_audit<D: Dialect>(pool: &Pool<D>) -> Result<LedgerAudit> {
    let mut conn = pool.acquire().await?;
    let transactions = D::sql("SELECT COUNT(*) AS n FROM ledger_txns")
        .fetch_one(&mut conn)
        .await?
        .int("n")?;
    let unbalanced = D::sql(UNBALANCED_SQL)
        .all(&mut conn, |r| r.int("txn_seq"))
        .await?;
    let total = |r: &D::Row| Ok((r.text("currency")?, r.int("total")?));
    let totals = D::sql(TOTALS_SQL).all(&mut conn, total).await?;
    let preorder = |r: &D::Row| Ok(PreorderId::from_trusted(r.text("id")?));
    let hold_mismatches = D::sql(HOLD_MISMATCH_SQL).all(&mut conn, preorder).await?;
    Ok(LedgerAudit {
        transactions,
        unbalanced,
        totals,
        hold_mismatches,
    })
}

/// A fresh ledger transaction id (`ltx_...`), the key a gateway would be given.
pub(crate) fn ledger_txn_id() -> String {
    c2m_domain::ids::LedgerTxnId::generate().into_string()
}

/// The money summary of campaign `$1` in one statement: a sum per kind of movement (one
/// column per [`TxnKind`], so a new kind is summed without touching this), the balance of
/// three of its accounts, and the balances still owed. `CAST(... AS BIGINT)` keeps
/// PostgreSQL's sums integers; SQLite accepts it as is. Built once, on first use.
///
/// The per-kind sums and the merchant's refunds come from one pass over the campaign's
/// transactions (conditional sums in one aggregate), not a subquery per kind: the read
/// costs one walk of `ledger_txns_by_campaign` however many kinds there are. Each
/// transaction's postings are summed by a correlated subquery (an index lookup by
/// `txn_seq` per transaction), not a join: PostgreSQL plans a prepared statement once for
/// any campaign, and with one hot campaign among a few others its average number of
/// transactions per campaign is large enough that the generic plan of the join hashed
/// the campaign's transactions against a scan of every posting in the store (57 ms for a
/// campaign of 110 transactions next to a hot one, in bench_scale's empty phase). A
/// subquery in the select list cannot be turned into that join.
static CAMPAIGN_MONEY: LazyLock<String> = LazyLock::new(|| {
    let kind = |k: TxnKind| {
        format!(
            "CAST(COALESCE(SUM(CASE WHEN x.kind = '{}' THEN x.positive END), 0) AS BIGINT) \
             AS {}",
            k.as_str(),
            kind_column(k)
        )
    };
    let account = |prefix: &str| {
        format!(
            "(SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_postings \
             WHERE account = '{prefix}:' || c.id) AS {}",
            account_column(prefix)
        )
    };
    let kinds: Vec<String> = TxnKind::ALL.map(kind).into();
    let kind_names: Vec<String> = TxnKind::ALL.map(|k| format!("m.{}", kind_column(k))).into();
    let accounts: Vec<String> = ["holds", "escrow", "merchant"].map(account).into();
    format!(
        "SELECT c.id, c.currency, {}, {}, \
         (SELECT CAST(COALESCE(SUM(balance_due), 0) AS BIGINT) FROM preorders \
          WHERE campaign_id = c.id AND hold_state = 'captured' AND balance_paid_at IS NULL \
          AND forfeited_at IS NULL AND cancelled_at IS NULL) AS outstanding, \
         m.refunded_by_merchant \
         FROM campaigns c, \
         (SELECT {}, \
          CAST(COALESCE(-SUM(x.to_merchant), 0) AS BIGINT) AS refunded_by_merchant \
          FROM (SELECT t.kind, \
                (SELECT SUM(CASE WHEN p.amount > 0 THEN p.amount END) FROM ledger_postings p \
                 WHERE p.txn_seq = t.seq) AS positive, \
                CASE WHEN t.kind = 'refund' THEN \
                 (SELECT SUM(p.amount) FROM ledger_postings p \
                  WHERE p.txn_seq = t.seq AND p.account = 'merchant:' || t.campaign_id) \
                END AS to_merchant \
                FROM ledger_txns t WHERE t.campaign_id = $1) x) m \
         WHERE c.id = $1",
        kind_names.join(", "),
        accounts.join(", "),
        kinds.join(", ")
    )
});

/// The column of [`CAMPAIGN_MONEY`] with the total of one kind of movement.
fn kind_column(kind: TxnKind) -> String {
    format!("kind_{}", kind.as_str())
}

/// The column of [`CAMPAIGN_MONEY`] with the balance of one of the campaign's accounts
/// (`holds`, `escrow`, `merchant`).
fn account_column(prefix: &str) -> String {
    format!("account_{prefix}")
}

/// A row of [`CAMPAIGN_MONEY`]; its generated columns are named here as the query names
/// them ([`kind_column`], [`account_column`]).
fn campaign_money_row(r: &impl Columns) -> Result<CampaignMoney> {
    let kind = |k: TxnKind| r.int(&kind_column(k));
    let account = |prefix: &str| r.int(&account_column(prefix));
    Ok(CampaignMoney {
        campaign_id: CampaignId::from_trusted(r.text("id")?),
        currency: currency(&r.text("currency")?)?,
        deposited: kind(TxnKind::Hold)?,
        held: account("holds")?,
        captured: kind(TxnKind::Capture)?,
        released: kind(TxnKind::Release)?,
        balances_paid: kind(TxnKind::Balance)?,
        balances_outstanding: r.int("outstanding")?,
        forfeited: kind(TxnKind::Forfeit)?,
        settled: kind(TxnKind::Settle)?,
        escrow: account("escrow")?,
        merchant: account("merchant")?,
        refunded: kind(TxnKind::Refund)?,
        refunded_by_merchant: r.int("refunded_by_merchant")?,
    })
}

/// Transactions whose postings do not sum to zero.
const UNBALANCED_SQL: &str = "SELECT txn_seq FROM ledger_postings GROUP BY txn_seq \
     HAVING SUM(amount) <> 0 ORDER BY txn_seq";

/// The sum over all accounts, per currency.
const TOTALS_SQL: &str = "SELECT t.currency, CAST(COALESCE(SUM(p.amount), 0) AS BIGINT) AS total \
     FROM ledger_postings p JOIN ledger_txns t ON t.seq = p.txn_seq \
     GROUP BY t.currency ORDER BY t.currency";

/// Pre-orders whose hold state disagrees with their ledger movements.
const HOLD_MISMATCH_SQL: &str = "SELECT p.id FROM preorders p WHERE \
     (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'hold') <> 1 \
     OR (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'capture') \
        <> CASE p.hold_state WHEN 'captured' THEN 1 ELSE 0 END \
     OR (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'release') \
        <> CASE p.hold_state WHEN 'released' THEN 1 ELSE 0 END \
     OR (SELECT COUNT(*) FROM ledger_txns t WHERE t.preorder_id = p.id AND t.kind = 'refund') \
        <> CASE WHEN p.refunded_at IS NULL THEN 0 ELSE 1 END \
     ORDER BY p.seq";

/// Builds a page of ledger entries from the transaction rows (`seq, id, campaign_id,
/// preorder_id, batch_id, kind, currency, at`, `size + 1` at most) and the postings rows
/// (`txn_seq, account, amount`) of those transactions.
fn ledger_page(
    txns: &[impl Columns],
    postings: &[impl Columns],
    size: u32,
) -> Result<Page<LedgerEntry>> {
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
