//! PostgreSQL SQL for the money ledger: the [`LedgerTx`] implementation and the read queries.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::PgPool;

use c2m_domain::{
    Batch, BatchId, CampaignId, CampaignMoney, HoldState, LedgerEntry, LedgerTxn, Money, Page,
    PageRequest, Preorder, PreorderId,
};

use super::pooling::PgTx;
use crate::ledger::{one_batch, LedgerTx, Placement, Subject};
use crate::rows::{self, batch_columns, preorder_select, Columns};
use crate::{LedgerAudit, StoreError};

#[async_trait]
impl LedgerTx for PgTx {
    async fn insert_ledger_txns(
        &mut self,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        if txns.is_empty() {
            return Ok(());
        }
        let mut t = TxnColumns::default();
        let mut legs = LegColumns::default();
        for (subject, txn) in txns {
            let id = rows::ledger_txn_id();
            legs.push(&id, txn);
            t.push(id, *subject, txn);
        }
        // One statement for every transaction and leg: the transactions in the order given
        // (their `seq` follows it), the legs joined to them by id.
        sqlx::query(
            "WITH input AS ( \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                 WITH ORDINALITY AS i (id, preorder_id, batch_id, kind, currency, ord)), \
             txns AS ( \
                 INSERT INTO ledger_txns (id, campaign_id, preorder_id, batch_id, kind, currency, at) \
                 SELECT id, $6, preorder_id, batch_id, kind, currency, $7 FROM input ORDER BY ord \
                 RETURNING id, seq) \
             INSERT INTO ledger_postings (txn_seq, account, amount) \
             SELECT txns.seq, legs.account, legs.amount \
             FROM UNNEST($8::text[], $9::text[], $10::bigint[]) AS legs (txn_id, account, amount) \
             JOIN txns ON txns.id = legs.txn_id",
        )
        .bind(t.ids)
        .bind(t.preorders)
        .bind(t.batches)
        .bind(t.kinds)
        .bind(t.currencies)
        .bind(campaign.as_str())
        .bind(at)
        .bind(legs.txn_ids)
        .bind(legs.accounts)
        .bind(legs.amounts)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn resolve_holds(&mut self, holds: &[(PreorderId, HoldState)]) -> Result<(), StoreError> {
        if holds.is_empty() {
            return Ok(());
        }
        let (ids, states): (Vec<&str>, Vec<&str>) = holds
            .iter()
            .map(|(p, to)| (p.as_str(), to.as_str()))
            .unzip();
        let done = sqlx::query(
            "UPDATE preorders p SET hold_state = v.state \
             FROM UNNEST($1::text[], $2::text[]) AS v (id, state) \
             WHERE p.id = v.id AND p.hold_state = 'held'",
        )
        .bind(ids)
        .bind(states)
        .execute(self.conn())
        .await?;
        rows::exactly(done.rows_affected(), holds.len(), || {
            "a hold among the batch's pre-orders was already resolved".to_owned()
        })
    }

    async fn capture_holds(
        &mut self,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<(), StoreError> {
        if dues.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(dues.len());
        let mut amounts = Vec::with_capacity(dues.len());
        let mut paid = Vec::with_capacity(dues.len());
        for (p, due, at) in dues {
            ids.push(p.as_str());
            amounts.push(due.minor);
            paid.push(*at);
        }
        let done = sqlx::query(
            "UPDATE preorders p \
             SET hold_state = 'captured', balance_due = v.due, balance_paid_at = v.paid_at \
             FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[]) AS v (id, due, paid_at) \
             WHERE p.id = v.id AND p.hold_state = 'held' AND p.balance_due IS NULL",
        )
        .bind(ids)
        .bind(amounts)
        .bind(paid)
        .execute(self.conn())
        .await?;
        rows::exactly(done.rows_affected(), dues.len(), || {
            "a pre-order of the batch was not held or already has a balance".to_owned()
        })
    }

    async fn insert_placements(&mut self, placements: &[Placement<'_>]) -> Result<(), StoreError> {
        let Some((first, batch_units)) = one_batch(placements)? else {
            return Ok(());
        };
        let n = placements.len();
        let mut ids = Vec::with_capacity(n);
        let mut consumers = Vec::with_capacity(n);
        let mut quantities = Vec::with_capacity(n);
        let mut prices = Vec::with_capacity(n);
        let mut deposits = Vec::with_capacity(n);
        let mut currencies = Vec::with_capacity(n);
        let mut created = Vec::with_capacity(n);
        let mut txn_ids = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut txn_currencies = Vec::with_capacity(n);
        let mut legs = LegColumns::default();
        let mut keys = KeyColumns::default();
        for placement in placements {
            let p = placement.preorder;
            ids.push(p.id.as_str());
            consumers.push(p.consumer_id.as_str());
            quantities.push(p.quantity);
            prices.push(p.unit_price.minor);
            deposits.push(p.deposit_total.minor);
            currencies.push(p.unit_price.currency.as_str());
            created.push(p.created_at);
            let txn_id = rows::ledger_txn_id();
            legs.push(&txn_id, placement.hold);
            txn_ids.push(txn_id);
            kinds.push(placement.hold.kind().as_str());
            txn_currencies.push(placement.hold.currency().as_str().to_owned());
            if let Some(k) = &placement.key {
                self.keys
                    .remove(&(k.operation.to_owned(), k.key.as_str().to_owned()));
                keys.operations.push(k.operation);
                keys.keys.push(k.key.as_str());
                keys.fingerprints.push(k.fingerprint.as_str());
                keys.responses.push(k.response);
                keys.at.push(p.created_at);
            }
        }
        // Every write of the run in one statement (one round trip under the campaign's
        // lock, however many orders). Data-modifying CTEs all run, whatever the outer query
        // reads; rows are inserted in the order given (`ORDER BY` the ordinality), so
        // sequence numbers follow placement order; foreign keys between the CTEs (a hold's
        // pre-order, a leg's transaction) are checked at the end of the statement, when
        // every row is in. The batch update reports whether the batch was still open.
        let batch_rows: i64 = sqlx::query_scalar(
            "WITH p AS ( \
                 INSERT INTO preorders (id, campaign_id, consumer_id, batch_id, quantity, \
                     unit_price, deposit_total, currency, created_at) \
                 SELECT u.id, $1, u.consumer_id, $2, u.quantity, u.unit_price, \
                     u.deposit_total, u.currency, u.created_at \
                 FROM UNNEST($3::text[], $4::text[], $5::bigint[], $6::bigint[], \
                     $7::bigint[], $8::text[], $9::timestamptz[]) WITH ORDINALITY \
                     AS u (id, consumer_id, quantity, unit_price, deposit_total, currency, \
                         created_at, n) \
                 ORDER BY u.n), \
             t AS ( \
                 INSERT INTO ledger_txns (id, campaign_id, preorder_id, kind, currency, at) \
                 SELECT u.txn_id, $1, u.preorder_id, u.kind, u.currency, u.at \
                 FROM UNNEST($10::text[], $3::text[], $11::text[], $12::text[], \
                     $9::timestamptz[]) WITH ORDINALITY \
                     AS u (txn_id, preorder_id, kind, currency, at, n) \
                 ORDER BY u.n \
                 RETURNING seq, id), \
             l AS ( \
                 INSERT INTO ledger_postings (txn_seq, account, amount) \
                 SELECT t.seq, legs.account, legs.amount \
                 FROM t JOIN UNNEST($13::text[], $14::text[], $15::bigint[]) \
                     AS legs (txn_id, account, amount) ON legs.txn_id = t.id), \
             k AS ( \
                 INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
                 SELECT u.operation, u.key, u.fingerprint, u.response::jsonb, u.at \
                 FROM UNNEST($16::text[], $17::text[], $18::text[], $19::text[], \
                     $20::timestamptz[]) AS u (operation, key, fingerprint, response, at)), \
             b AS ( \
                 UPDATE batches SET units = $21 WHERE id = $2 AND status = 'open' RETURNING id) \
             SELECT COUNT(*) FROM b",
        )
        .bind(first.campaign_id.as_str())
        .bind(first.batch_id.as_str())
        .bind(ids)
        .bind(consumers)
        .bind(quantities)
        .bind(prices)
        .bind(deposits)
        .bind(currencies)
        .bind(created)
        .bind(txn_ids)
        .bind(kinds)
        .bind(txn_currencies)
        .bind(legs.txn_ids)
        .bind(legs.accounts)
        .bind(legs.amounts)
        .bind(keys.operations)
        .bind(keys.keys)
        .bind(keys.fingerprints)
        .bind(keys.responses)
        .bind(keys.at)
        .bind(batch_units)
        .fetch_one(self.conn())
        .await?;
        rows::one(batch_rows as u64, || {
            format!("batch {} is not open", first.batch_id)
        })
    }

    async fn set_batch_price(
        &mut self,
        batch: &BatchId,
        final_unit_price: Money,
        balance_due_by: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE batches SET final_unit_price = $2, currency = $4, balance_due_by = $3 \
             WHERE id = $1 AND status = 'locked' AND final_unit_price IS NULL",
        )
        .bind(batch.as_str())
        .bind(final_unit_price.minor)
        .bind(balance_due_by)
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
            "UPDATE preorders SET balance_paid_at = $2 \
             WHERE id = $1 AND balance_paid_at IS NULL AND forfeited_at IS NULL",
        )
        .bind(preorder.as_str())
        .bind(at)
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
            "UPDATE preorders SET forfeited_at = $2 \
             WHERE id = $1 AND forfeited_at IS NULL AND balance_paid_at IS NULL",
        )
        .bind(preorder.as_str())
        .bind(at)
        .execute(self.conn())
        .await?;
        rows::one(done.rows_affected(), || {
            format!("pre-order {preorder} was already paid or forfeited")
        })?;
        let done = sqlx::query(
            "UPDATE batches SET forfeited_units = forfeited_units + $2 \
             WHERE id = $1 AND status = 'locked'",
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
            "UPDATE batches SET ready_at = $2 \
             WHERE id = $1 AND status = 'locked' AND ready_at IS NULL",
        )
        .bind(batch.as_str())
        .bind(at)
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
            " FROM batches WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(rows::batch).transpose()
    }

    async fn batch_preorders(&mut self, batch: &BatchId) -> Result<Vec<Preorder>, StoreError> {
        sqlx::query(concat!(
            preorder_select!(),
            "WHERE p.batch_id = $1 ORDER BY p.seq"
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
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<BatchId>, StoreError> {
    let ids: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM batches \
         WHERE status = 'locked' AND ready_at IS NULL AND balance_due_by <= $1 \
         ORDER BY balance_due_by, campaign_id, seq LIMIT $2",
    )
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(ids.into_iter().map(BatchId::from_trusted).collect())
}

pub(crate) async fn batches_ready_for_planning(
    pool: &PgPool,
    limit: u32,
) -> Result<Vec<Batch>, StoreError> {
    sqlx::query(concat!(
        "SELECT ",
        batch_columns!(),
        " FROM batches WHERE ready_at IS NOT NULL ORDER BY ready_at, campaign_id, seq LIMIT $1"
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
    pool: &PgPool,
    campaign: &CampaignId,
) -> Result<Option<CampaignMoney>, StoreError> {
    let row = sqlx::query(&rows::campaign_money_sql("$1"))
        .bind(campaign.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(rows::campaign_money).transpose()
}

pub(crate) async fn list_ledger(
    pool: &PgPool,
    campaign: &CampaignId,
    page: PageRequest,
) -> Result<Page<LedgerEntry>, StoreError> {
    let txns = sqlx::query(
        "SELECT seq, id, campaign_id, preorder_id, batch_id, kind, currency, at \
         FROM ledger_txns WHERE campaign_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
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
         WHERE t.campaign_id = $1 AND p.txn_seq BETWEEN $2 AND $3 ORDER BY p.txn_seq, p.amount",
    )
    .bind(campaign.as_str())
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    rows::ledger_page(&txns, &postings, page.size)
}

pub(crate) async fn ledger_audit(pool: &PgPool) -> Result<LedgerAudit, StoreError> {
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
        .map(|r: &PgRow| Ok((r.text("currency")?, r.int("total")?)))
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

/// The columns of several ledger transactions, for `UNNEST`.
#[derive(Default)]
struct TxnColumns<'a> {
    ids: Vec<String>,
    preorders: Vec<Option<&'a str>>,
    batches: Vec<Option<&'a str>>,
    kinds: Vec<&'static str>,
    currencies: Vec<String>,
}

impl<'a> TxnColumns<'a> {
    fn push(&mut self, id: String, subject: Subject<'a>, txn: &LedgerTxn) {
        let (preorder, batch) = match subject {
            Subject::Preorder(p) => (Some(p.as_str()), None),
            Subject::Batch(b) => (None, Some(b.as_str())),
        };
        self.ids.push(id);
        self.preorders.push(preorder);
        self.batches.push(batch);
        self.kinds.push(txn.kind().as_str());
        self.currencies.push(txn.currency().as_str().to_owned());
    }
}

/// Idempotency records of several placements, as columns.
#[derive(Default)]
struct KeyColumns<'a> {
    operations: Vec<&'a str>,
    keys: Vec<&'a str>,
    fingerprints: Vec<&'a str>,
    responses: Vec<&'a str>,
    at: Vec<DateTime<Utc>>,
}

/// The legs of several ledger transactions, each with its transaction's id.
#[derive(Default)]
struct LegColumns {
    txn_ids: Vec<String>,
    accounts: Vec<String>,
    amounts: Vec<i64>,
}

impl LegColumns {
    fn push(&mut self, txn_id: &str, txn: &LedgerTxn) {
        for leg in txn.postings() {
            self.txn_ids.push(txn_id.to_owned());
            self.accounts.push(leg.account.code());
            self.amounts.push(leg.amount);
        }
    }
}
