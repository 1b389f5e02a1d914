//! The several-row statements of the ledger and of a run of placements, in both dialects.
//!
//! A batch that locks or fails moves the money of every pre-order in it, and a run of
//! placements writes every order of the run, while the campaign's lock is held; every
//! statement then is paid by every order waiting behind the lock. So each of these writes
//! many rows in one statement per table (or one statement in all), whatever their number,
//! with fixed SQL text so the statement stays prepared. The two backends bind many rows
//! differently, which is why this is the one place the ledger's SQL is written twice:
//!
//! - SQLite reads its rows with `json_each` from one JSON array of rows, each an array of
//!   columns (a statement costs a hop to the connection's thread and back).
//! - PostgreSQL reads them with `UNNEST` from one array per column, in data-modifying CTEs
//!   so that a whole write is one round trip; rows are inserted in the order given (`ORDER
//!   BY` the ordinality), so sequence numbers follow it, and foreign keys between the CTEs
//!   are checked at the end of the statement, when every row is in.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use sqlx::{Executor, Postgres, Sqlite};

use c2m_domain::{CampaignId, HoldState, LedgerTxn, Money, Preorder, PreorderId};

use super::sql::ledger_txn_id;
use super::{Placement, Subject};
use crate::dialect::{exactly, Conn, Dialect, Tx};
use crate::sqlite::micros_of;
use crate::Result;
use crate::StoreError;

/// The ledger's several-row writes (see the module docs). Each backend's rows are checked
/// by the caller ([`Tx::insert_placements`], ...) where a count is returned.
#[async_trait]
pub(crate) trait LedgerSql: Dialect {
    /// Appends the transactions and their legs, in order (their sequence numbers follow
    /// it); `txns` is not empty.
    async fn insert_ledger_txns(
        tx: &mut Tx<'_, Self>,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<()>;

    /// Moves each hold from `held` to its state; returns how many moved.
    async fn resolve_holds(tx: &mut Tx<'_, Self>, holds: &[(PreorderId, HoldState)])
        -> Result<u64>;

    /// Captures each held deposit and records its balance (and when it was paid, when
    /// nothing is owed); returns how many were captured.
    async fn capture_holds(
        tx: &mut Tx<'_, Self>,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<u64>;

    /// Writes a run of placements in `first`'s batch (pre-orders, holds, idempotency
    /// records) and sets the batch's units to `batch_units` if it is still open; returns
    /// how many batches that update changed.
    async fn insert_placements(
        tx: &mut Tx<'_, Self>,
        placements: &[Placement<'_>],
        first: &Preorder,
        batch_units: i64,
    ) -> Result<u64>;
}

// ---------------------------------------------------------------------------------------
// SQLite: rows as one JSON array, read with `json_each`.

/// Rows for a statement that reads them with `json_each($n)`.
fn json_rows(rows: Vec<serde_json::Value>) -> String {
    serde_json::Value::Array(rows).to_string()
}

/// The ledger transactions of a JSON array of rows (`rows`, in order: `json_each` yields
/// rows in array order, so their `seq` follows it) in campaign `campaign`; the parameters'
/// numbers are the caller's ([`TxnRows::insert`], [`PLACEMENTS`]).
macro_rules! txns_sql {
    ($rows:literal, $campaign:literal) => {
        concat!(
            "INSERT INTO ledger_txns (id, campaign_id, preorder_id, batch_id, kind, currency, at) \
             SELECT value ->> 0, ",
            $campaign,
            ", value ->> 1, value ->> 2, value ->> 3, \
             value ->> 4, value ->> 5 FROM json_each(",
            $rows,
            ") ORDER BY key"
        )
    };
}

/// The legs of a JSON array of rows (`rows`), joined to their transactions by id.
macro_rules! legs_sql {
    ($rows:literal) => {
        concat!(
            "INSERT INTO ledger_postings (txn_seq, account, amount) \
             SELECT t.seq, l.value ->> 1, l.value ->> 2 \
             FROM json_each(",
            $rows,
            ") AS l JOIN ledger_txns t ON t.id = l.value ->> 0 \
             ORDER BY l.key"
        )
    };
}

/// Ledger transactions and their legs, gathered for [`TxnRows::insert`].
#[derive(Default)]
struct TxnRows {
    txns: Vec<serde_json::Value>,
    legs: Vec<serde_json::Value>,
}

impl TxnRows {
    fn push(&mut self, subject: Subject<'_>, txn: &LedgerTxn, at: DateTime<Utc>) {
        let (preorder, batch) = subject.columns();
        let id = ledger_txn_id();
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
    async fn insert(self, tx: &mut Tx<'_, Sqlite>, campaign: &CampaignId) -> Result<()> {
        if self.txns.is_empty() {
            return Ok(());
        }
        sqlx::query(txns_sql!("$1", "$2"))
            .bind(json_rows(self.txns))
            .bind(campaign.as_str())
            .execute(tx.conn())
            .await?;
        let legs = self.legs.len();
        let done = sqlx::query(legs_sql!("$1"))
            .bind(json_rows(self.legs))
            .execute(tx.conn())
            .await?;
        exactly(done.rows_affected(), legs, || {
            "a ledger posting found no transaction".to_owned()
        })
    }
}

#[async_trait]
impl LedgerSql for Sqlite {
    async fn insert_ledger_txns(
        tx: &mut Tx<'_, Sqlite>,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut rows = TxnRows::default();
        for (subject, txn) in txns {
            rows.push(*subject, txn, at);
        }
        rows.insert(tx, campaign).await
    }

    async fn resolve_holds(
        tx: &mut Tx<'_, Sqlite>,
        holds: &[(PreorderId, HoldState)],
    ) -> Result<u64> {
        let values: Vec<_> = holds
            .iter()
            .map(|(p, to)| serde_json::json!([p.as_str(), to.as_str()]))
            .collect();
        let done = sqlx::query(
            "UPDATE preorders SET hold_state = v.value ->> 1 FROM json_each($1) AS v \
             WHERE preorders.id = v.value ->> 0 AND preorders.hold_state = 'held'",
        )
        .bind(json_rows(values))
        .execute(tx.conn())
        .await?;
        Ok(done.rows_affected())
    }

    async fn capture_holds(
        tx: &mut Tx<'_, Sqlite>,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<u64> {
        let values: Vec<_> = dues
            .iter()
            .map(|(p, due, paid_at)| {
                serde_json::json!([p.as_str(), due.minor, paid_at.map(micros_of)])
            })
            .collect();
        let done = sqlx::query(
            "UPDATE preorders SET hold_state = 'captured', balance_due = v.value ->> 1, \
             balance_paid_at = v.value ->> 2 FROM json_each($1) AS v \
             WHERE preorders.id = v.value ->> 0 AND preorders.hold_state = 'held' \
             AND preorders.balance_due IS NULL",
        )
        .bind(json_rows(values))
        .execute(tx.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Five statements for the whole run however many orders, sent as one: sqlx runs
    /// them one after another on the connection's thread in one hand-off (each statement
    /// sent alone was a hop to that thread and back, while the writer holds the one write
    /// lock), and reports each one's count.
    async fn insert_placements(
        tx: &mut Tx<'_, Sqlite>,
        placements: &[Placement<'_>],
        first: &Preorder,
        batch_units: i64,
    ) -> Result<u64> {
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
                    k.key.operation,
                    k.key.key.as_str(),
                    k.key.fingerprint.as_str(),
                    k.response,
                    micros_of(p.created_at),
                ]));
            }
        }
        let legs = txns.legs.len();
        let query = sqlx::query(PLACEMENTS)
            .bind(json_rows(orders))
            .bind(first.campaign_id.as_str())
            .bind(first.batch_id.as_str())
            .bind(json_rows(txns.txns))
            .bind(json_rows(txns.legs))
            .bind(json_rows(keys))
            .bind(batch_units);
        let counts: Vec<u64> = tx
            .conn()
            .fetch_many(query)
            .try_filter_map(|step| async move { Ok(step.left().map(|done| done.rows_affected())) })
            .try_collect()
            .await?;
        let [_, _, postings, _, batch_rows] = counts[..] else {
            return Err(StoreError::Corrupt(format!(
                "the placements' statements reported {} results, not 5",
                counts.len()
            )));
        };
        exactly(postings, legs, || {
            "a ledger posting found no transaction".to_owned()
        })?;
        Ok(batch_rows)
    }
}

/// A run of placements on SQLite ([`LedgerSql::insert_placements`]): the pre-orders
/// (`$1`, in campaign `$2` and batch `$3`), their holds' transactions (`$4`, in order, so
/// their `seq` follows it) and legs (`$5`, joined to them by id), the idempotency records
/// (`$6`, possibly none), and the batch's units (`$7`) if it is still open. Rows are JSON
/// arrays read with `json_each`, as in [`TxnRows::insert`].
const PLACEMENTS: &str = concat!(
    "INSERT INTO preorders (id, campaign_id, consumer_id, batch_id, quantity, unit_price, \
     deposit_total, currency, created_at) \
     SELECT value ->> 0, $2, value ->> 1, $3, value ->> 2, value ->> 3, value ->> 4, \
     value ->> 5, value ->> 6 FROM json_each($1) ORDER BY key; ",
    txns_sql!("$4", "$2"),
    "; ",
    legs_sql!("$5"),
    "; INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
     SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
     FROM json_each($6) ORDER BY key; \
     UPDATE batches SET units = $7 WHERE id = $3 AND status = 'open'"
);

// ---------------------------------------------------------------------------------------
// PostgreSQL: one array per column, read with `UNNEST`.

#[async_trait]
impl LedgerSql for Postgres {
    /// One statement for every transaction and leg: the transactions in the order given
    /// (their `seq` follows it), the legs joined to them by id.
    async fn insert_ledger_txns(
        tx: &mut Tx<'_, Postgres>,
        campaign: &CampaignId,
        txns: &[(Subject<'_>, LedgerTxn)],
        at: DateTime<Utc>,
    ) -> Result<()> {
        let mut t = TxnColumns::default();
        let mut legs = LegColumns::default();
        for (subject, txn) in txns {
            let id = ledger_txn_id();
            legs.push(&id, txn);
            t.push(id, *subject, txn);
        }
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
        .execute(tx.conn())
        .await?;
        Ok(())
    }

    async fn resolve_holds(
        tx: &mut Tx<'_, Postgres>,
        holds: &[(PreorderId, HoldState)],
    ) -> Result<u64> {
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
        .execute(tx.conn())
        .await?;
        Ok(done.rows_affected())
    }

    async fn capture_holds(
        tx: &mut Tx<'_, Postgres>,
        dues: &[(PreorderId, Money, Option<DateTime<Utc>>)],
    ) -> Result<u64> {
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
        .execute(tx.conn())
        .await?;
        Ok(done.rows_affected())
    }

    /// Every write of the run in one statement (one round trip under the campaign's lock,
    /// however many orders); the batch update reports whether the batch was still open.
    async fn insert_placements(
        tx: &mut Tx<'_, Postgres>,
        placements: &[Placement<'_>],
        first: &Preorder,
        batch_units: i64,
    ) -> Result<u64> {
        let mut orders = OrderColumns::default();
        let mut legs = LegColumns::default();
        let mut keys = KeyColumns::default();
        for placement in placements {
            let p = placement.preorder;
            let txn_id = ledger_txn_id();
            legs.push(&txn_id, placement.hold);
            orders.push(p, txn_id, placement.hold);
            if let Some(k) = &placement.key {
                keys.operations.push(k.key.operation);
                keys.keys.push(k.key.key.as_str());
                keys.fingerprints.push(k.key.fingerprint.as_str());
                keys.responses.push(k.response);
                keys.at.push(p.created_at);
            }
        }
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
        .bind(orders.ids)
        .bind(orders.consumers)
        .bind(orders.quantities)
        .bind(orders.prices)
        .bind(orders.deposits)
        .bind(orders.currencies)
        .bind(orders.created)
        .bind(orders.txn_ids)
        .bind(orders.kinds)
        .bind(orders.txn_currencies)
        .bind(legs.txn_ids)
        .bind(legs.accounts)
        .bind(legs.amounts)
        .bind(keys.operations)
        .bind(keys.keys)
        .bind(keys.fingerprints)
        .bind(keys.responses)
        .bind(keys.at)
        .bind(batch_units)
        .fetch_one(tx.conn())
        .await?;
        Ok(batch_rows as u64)
    }
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
        let (preorder, batch) = subject.columns();
        self.ids.push(id);
        self.preorders.push(preorder);
        self.batches.push(batch);
        self.kinds.push(txn.kind().as_str());
        self.currencies.push(txn.currency().as_str().to_owned());
    }
}

/// Pre-orders just placed and the holds of their deposits, as columns.
#[derive(Default)]
struct OrderColumns<'a> {
    ids: Vec<&'a str>,
    consumers: Vec<&'a str>,
    quantities: Vec<i64>,
    prices: Vec<i64>,
    deposits: Vec<i64>,
    currencies: Vec<&'a str>,
    created: Vec<DateTime<Utc>>,
    txn_ids: Vec<String>,
    kinds: Vec<&'static str>,
    txn_currencies: Vec<String>,
}

impl<'a> OrderColumns<'a> {
    fn push(&mut self, p: &'a Preorder, txn_id: String, hold: &LedgerTxn) {
        self.ids.push(p.id.as_str());
        self.consumers.push(p.consumer_id.as_str());
        self.quantities.push(p.quantity);
        self.prices.push(p.unit_price.minor);
        self.deposits.push(p.deposit_total.minor);
        self.currencies.push(p.unit_price.currency.as_str());
        self.created.push(p.created_at);
        self.txn_ids.push(txn_id);
        self.kinds.push(hold.kind().as_str());
        self.txn_currencies
            .push(hold.currency().as_str().to_owned());
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
