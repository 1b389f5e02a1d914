//! SQLite SQL for the money ledger: the [`LedgerTx`] implementation and the read queries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::SqlitePool;

use c2m_domain::{
    Batch, BatchId, CampaignId, CampaignMoney, HoldState, LedgerEntry, LedgerTxn, Money, Page,
    PageRequest, Preorder, PreorderId,
};

use super::micros_of;
use super::pooling::SqliteTx;
use crate::ledger::{one_batch, LedgerTx, Placement, Subject};
use crate::pooling::PoolingTx;
use crate::rows::{self, batch_columns, preorder_select, Columns};
use crate::{LedgerAudit, StoreError};

/// Rows for a statement that reads them with `json_each(?)`: one JSON array of rows, each
/// an array of columns. Writing several rows costs one statement, and the SQL text is the
/// same however many rows there are, so the statement stays prepared. On SQLite a
/// statement costs a hop to the connection's thread and back, and every order waiting for
/// the writer pays for each one.
fn json_rows(rows: Vec<serde_json::Value>) -> String {
    serde_json::Value::Array(rows).to_string()
}

/// Ledger transactions and their legs, gathered for [`TxnRows::insert`].
#[derive(Default)]
struct TxnRows {
    txns: Vec<serde_json::Value>,
    legs: Vec<serde_json::Value>,
}

impl TxnRows {
    fn push(&mut self, subject: Subject<'_>, txn: &LedgerTxn, at: DateTime<Utc>) {
        let (preorder, batch) = match subject {
            Subject::Preorder(p) => (Some(p.as_str()), None),
            Subject::Batch(b) => (None, Some(b.as_str())),
        };
        let id = rows::ledger_txn_id();
        for leg in txn.postings() {
            self.legs
                .push(serde_json::json!([id, leg.account.code(), leg.amount]));
        }
        self.txns.push(serde_json::json!([
            id,
            preorder,
            batch,
            txn.kind().as_str(),
            txn.currency().as_str(),
            micros_of(at),
        ]));
    }

    /// Two statements: the transactions in order (`json_each` yields rows in array order,
    /// so their `seq` follows it), then the legs joined to them by id.
    async fn insert(self, tx: &mut SqliteTx, campaign: &CampaignId) -> Result<(), StoreError> {
        if self.txns.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO ledger_txns (id, campaign_id, preorder_id, batch_id, kind, currency, at) \
             SELECT value ->> 0, ?2, value ->> 1, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5 FROM json_each(?1) ORDER BY key",
        )
        .bind(json_rows(self.txns))
        .bind(campaign.as_str())
        .execute(tx.conn())
        .await?;
        let legs = self.legs.len();
        let done = sqlx::query(
            "INSERT INTO ledger_postings (txn_seq, account, amount) \
             SELECT t.seq, l.value ->> 1, l.value ->> 2 \
             FROM json_each(?1) AS l JOIN ledger_txns t ON t.id = l.value ->> 0 \
             ORDER BY l.key",
        )
        .bind(json_rows(self.legs))
        .execute(tx.conn())
        .await?;
        rows::exactly(done.rows_affected(), legs, || {
            "a ledger posting found no transaction".to_owned()
        })
    }
}

#[async_trait]
impl LedgerTx for SqliteTx {
    async fn insert_ledger_txns(
        &mut self,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut rows = TxnRows::default();
        for (subject, txn) in txns {
            rows.push(*subject, txn, at);
        }
        rows.insert(self, campaign).await
    }

    async fn resolve_holds(&mut self, holds: &[(PreorderId, HoldState)]) -> Result<(), StoreError> {
        if holds.is_empty() {
            return Ok(());
        }
        let values: Vec<_> = holds
            .iter()
            .map(|(p, to)| serde_json::json!([p.as_str(), to.as_str()]))
            .collect();
        let done = sqlx::query(
            "UPDATE preorders SET hold_state = v.value ->> 1 FROM json_each(?1) AS v \
             WHERE preorders.id = v.value ->> 0 AND preorders.hold_state = 'held'",
        )
        .bind(json_rows(values))
        .execute(self.conn())
        .await?;
        rows::exactly(done.rows_affected(), holds.len(), || {
            "a hold among the pre-orders was already resolved".to_owned()
        })
    }

    async fn capture_holds(
        &mut self,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<(), StoreError> {
        if dues.is_empty() {
            return Ok(());
        }
        let values: Vec<_> = dues
            .iter()
            .map(|(p, due, paid_at)| {
                serde_json::json!([p.as_str(), due.minor, paid_at.map(micros_of)])
            })
            .collect();
        let done = sqlx::query(
            "UPDATE preorders SET hold_state = 'captured', balance_due = v.value ->> 1, \
             balance_paid_at = v.value ->> 2 FROM json_each(?1) AS v \
             WHERE preorders.id = v.value ->> 0 AND preorders.hold_state = 'held' \
             AND preorders.balance_due IS NULL",
        )
        .bind(json_rows(values))
        .execute(self.conn())
        .await?;
        rows::exactly(done.rows_affected(), dues.len(), || {
            "a pre-order among them was not held or already has a balance".to_owned()
        })
    }

    async fn insert_placements(&mut self, placements: &[Placement<'_>]) -> Result<(), StoreError> {
        let Some((first, batch_units)) = one_batch(placements)? else {
            return Ok(());
        };
        // Four statements for the whole run however many orders, each reading its rows
        // from one JSON array (see `json_rows`).
        let mut orders = Vec::with_capacity(placements.len());
        let mut txns = TxnRows::default();
        let mut keys = Vec::with_capacity(placements.len());
        for placement in placements {
            let p = placement.preorder;
            orders.push(serde_json::json!([
                p.id.as_str(),
                p.consumer_id.as_str(),
                p.quantity,
                p.unit_price.minor,
                p.deposit_total.minor,
                p.unit_price.currency.as_str(),
                micros_of(p.created_at),
            ]));
            txns.push(Subject::Preorder(&p.id), placement.hold, p.created_at);
            if let Some(k) = &placement.key {
                keys.push(serde_json::json!([
                    k.operation,
                    k.key.as_str(),
                    k.fingerprint.as_str(),
                    k.response,
                    micros_of(p.created_at),
                ]));
            }
        }
        sqlx::query(
            "INSERT INTO preorders (id, campaign_id, consumer_id, batch_id, quantity, unit_price, \
             deposit_total, currency, created_at) \
             SELECT value ->> 0, ?2, value ->> 1, ?3, value ->> 2, value ->> 3, value ->> 4, \
             value ->> 5, value ->> 6 FROM json_each(?1) ORDER BY key",
        )
        .bind(json_rows(orders))
        .bind(first.campaign_id.as_str())
        .bind(first.batch_id.as_str())
        .execute(self.conn())
        .await?;
        txns.insert(self, &first.campaign_id).await?;
        if !keys.is_empty() {
            sqlx::query(
                "INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
                 SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
                 FROM json_each(?1) ORDER BY key",
            )
            .bind(json_rows(keys))
            .execute(self.conn())
            .await?;
        }
        self.set_batch_units(&first.batch_id, batch_units).await
    }

    async fn set_batch_price(
        &mut self,
        batch: &BatchId,
        final_unit_price: Money,
        balance_due_by: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE batches SET final_unit_price = ?2, currency = ?4, balance_due_by = ?3 \
             WHERE id = ?1 AND status = 'locked' AND final_unit_price IS NULL",
        )
        .bind(batch.as_str())
        .bind(final_unit_price.minor)
        .bind(balance_due_by.map(micros_of))
        .bind(final_unit_price.currency.as_str())
        .execute(self.conn())
        .await?;
        rows::one(done.rows_affected(), || {
            format!("batch {batch} is not a newly locked batch")
        })
    }

    async fn set_balance_paid(
        &mut self,
        preorder: &PreorderId,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE preorders SET balance_paid_at = ?2 \
             WHERE id = ?1 AND balance_paid_at IS NULL AND forfeited_at IS NULL",
        )
        .bind(preorder.as_str())
        .bind(micros_of(at))
        .execute(self.conn())
        .await?;
        rows::one(done.rows_affected(), || {
            format!("pre-order {preorder} was already paid or forfeited")
        })
    }

    async fn set_forfeited(
        &mut self,
        preorder: &PreorderId,
        batch: &BatchId,
        quantity: i64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE preorders SET forfeited_at = ?2 \
             WHERE id = ?1 AND forfeited_at IS NULL AND balance_paid_at IS NULL",
        )
        .bind(preorder.as_str())
        .bind(micros_of(at))
        .execute(self.conn())
        .await?;
        rows::one(done.rows_affected(), || {
            format!("pre-order {preorder} was already paid or forfeited")
        })?;
        let done = sqlx::query(
            "UPDATE batches SET forfeited_units = forfeited_units + ?2 \
             WHERE id = ?1 AND status = 'locked'",
        )
        .bind(batch.as_str())
        .bind(quantity)
        .execute(self.conn())
        .await?;
        rows::one(done.rows_affected(), || {
            format!("batch {batch} is not locked")
        })
    }

    async fn set_ready(&mut self, batch: &BatchId, at: DateTime<Utc>) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE batches SET ready_at = ?2 \
             WHERE id = ?1 AND status = 'locked' AND ready_at IS NULL",
        )
        .bind(batch.as_str())
        .bind(micros_of(at))
        .execute(self.conn())
        .await?;
        rows::one(done.rows_affected(), || {
            format!("batch {batch} is not locked or already ready")
        })
    }

    async fn batch(&mut self, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            batch_columns!(),
            " FROM batches WHERE id = ?1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(rows::batch).transpose()
    }

    async fn batch_preorders(&mut self, batch: &BatchId) -> Result<Vec<Preorder>, StoreError> {
        sqlx::query(concat!(
            preorder_select!(),
            "WHERE p.batch_id = ?1 ORDER BY p.seq"
        ))
        .bind(batch.as_str())
        .fetch_all(self.conn())
        .await?
        .iter()
        .map(rows::preorder)
        .collect()
    }
}

pub(crate) async fn batches_past_balance_window(
    pool: &SqlitePool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<BatchId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM batches \
         WHERE status = 'locked' AND ready_at IS NULL AND balance_due_by <= ?1 \
         ORDER BY balance_due_by, campaign_id, seq LIMIT ?2",
    )
    .bind(micros_of(now))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(BatchId::from_trusted).collect())
}

pub(crate) async fn batches_ready_for_planning(
    pool: &SqlitePool,
    limit: u32,
) -> Result<Vec<Batch>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        batch_columns!(),
        " FROM batches WHERE ready_at IS NOT NULL ORDER BY ready_at, campaign_id, seq LIMIT ?1"
    ))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?
    .iter()
    .map(rows::batch)
    .collect()
}

/// One statement, so every figure comes from the same snapshot.
pub(crate) async fn campaign_money(
    pool: &SqlitePool,
    campaign: &CampaignId,
) -> Result<Option<CampaignMoney>, StoreError> {
    let row = sqlx::query(&rows::campaign_money_sql("?1"))
        .bind(campaign.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::campaign_money).transpose()
}

pub(crate) async fn list_ledger(
    pool: &SqlitePool,
    campaign: &CampaignId,
    page: PageRequest,
) -> Result<Page<LedgerEntry>, StoreError> {
    let txns = sqlx::query(
        "SELECT seq, id, campaign_id, preorder_id, batch_id, kind, currency, at \
         FROM ledger_txns WHERE campaign_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )
    .bind(campaign.as_str())
    .bind(page.after.unwrap_or(0))
    .bind(rows::page_limit(page.size))
    .fetch_all(pool)
    .await?;
    let (first, last) = match (txns.first(), txns.last()) {
        (Some(f), Some(l)) => (f.int("seq")?, l.int("seq")?),
        _ => return Ok(rows::page(Vec::new(), page.size)),
    };
    // The postings of those transactions; a transaction and its postings are written in
    // one transaction and never change, so reading them second is consistent.
    let postings = sqlx::query(
        "SELECT p.txn_seq, p.account, p.amount FROM ledger_postings p \
         JOIN ledger_txns t ON t.seq = p.txn_seq \
         WHERE t.campaign_id = ?1 AND p.txn_seq BETWEEN ?2 AND ?3 ORDER BY p.txn_seq, p.amount",
    )
    .bind(campaign.as_str())
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    rows::ledger_page(&txns, &postings, page.size)
}

pub(crate) async fn ledger_audit(pool: &SqlitePool) -> Result<LedgerAudit, StoreError> {
    let transactions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger_txns")
        .fetch_one(pool)
        .await?;
    let unbalanced: Vec<i64> = sqlx::query_scalar(rows::UNBALANCED_SQL)
        .fetch_all(pool)
        .await?;
    let totals = sqlx::query(rows::TOTALS_SQL)
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r: &SqliteRow| Ok((r.text("currency")?, r.int("total")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let hold_mismatches: Vec<String> = sqlx::query_scalar(rows::HOLD_MISMATCH_SQL)
        .fetch_all(pool)
        .await?;
    Ok(LedgerAudit {
        transactions,
        unbalanced,
        totals,
        hold_mismatches: hold_mismatches
            .into_iter()
            .map(PreorderId::from_trusted)
            .collect(),
    })
}
