//! Idempotency keys, shared by every mutating operation of every feature: look the key up
//! first, record it with the response in the same transaction as the mutation.
//!
//! The lock that makes a key's rules safe is the feature's own (a placement's key is looked
//! up again once the campaign's lock is held, so a send that waited for the lock replays
//! its twin's answer); the database backs it with the primary key `(operation, key)`: two
//! sends racing past their locks (on PostgreSQL, different campaigns' locks) cannot both
//! record, and the loser's transaction is run again ([`crate::dialect::Dialect::retryable`]),
//! when it finds the key recorded.
//!
//! The SQL is written once ([`IdempotencyTx`] for [`Tx`]); looking several keys up in one
//! statement binds the keys as one list value, so only its SQL text differs ([`KeysSql`]).

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use sqlx::{Postgres, Sqlite};

use c2m_domain::{DomainError, Fingerprint, IdempotencyKey};

use crate::dialect::{Columns, Dialect, Tx, Value};
use crate::StoreError;

/// A recorded idempotency key: the request's fingerprint and the response's JSON.
#[derive(Clone)]
pub(crate) struct StoredResponse {
    pub fingerprint: String,
    pub response: String,
}

impl StoredResponse {
    /// From a row with the columns `fingerprint` and `response` (as text).
    pub(crate) fn from_row(r: &impl Columns) -> Result<Self, StoreError> {
        Ok(StoredResponse {
            fingerprint: r.text("fingerprint")?,
            response: r.text("response")?,
        })
    }
}

/// The `idempotency_keys` table, inside a transaction.
#[async_trait]
pub(crate) trait IdempotencyTx: Send {
    async fn idempotency_get(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError>;

    /// The recorded keys among `keys` for `operation`, by key: for a run of placements,
    /// which looks all its keys up at once.
    async fn idempotency_get_many(
        &mut self,
        operation: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, StoredResponse>, StoreError>;

    /// Looks up the keys a group's operations will ask for (operation name, key), in one
    /// statement, so that each operation's replay check costs no round trip under the
    /// campaign's lock. Run after the lock is taken: every key recorded by an earlier
    /// holder of the lock is seen. A key recorded meanwhile for another campaign meets the
    /// primary key when this transaction records it, and the group is run again.
    async fn prefetch_keys(&mut self, wanted: &[(&'static str, String)]) -> Result<(), StoreError>;

    /// Records the key. On PostgreSQL a concurrent use of the same key surfaces here as a
    /// unique violation, which the store retries (the retry then replays or conflicts).
    async fn idempotency_put(
        &mut self,
        operation: &str,
        key: &str,
        fingerprint: &Fingerprint,
        response: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;
}

/// The statements of [`IdempotencyTx`] whose text differs: a list of keys is one value, a
/// JSON array on SQLite (read with `json_each`) and a `text[]` on PostgreSQL.
pub(crate) trait KeysSql: Dialect {
    /// The recorded keys of operation `$1` among the list `$2`: `key, fingerprint, response`.
    const KEYS_AMONG: &'static str;
    /// The recorded keys among the pairs of the lists `$1` (operations) and `$2` (keys):
    /// `operation, key, fingerprint, response`; `None` where no writer looks a group's keys
    /// up ahead (SQLite's writer groups every campaign's writes, and a run of placements
    /// looks its keys up itself).
    const KEY_PAIRS_AMONG: Option<&'static str>;
}

impl KeysSql for Sqlite {
    const KEYS_AMONG: &'static str = "SELECT key, fingerprint, response FROM idempotency_keys \
         WHERE operation = $1 AND key IN (SELECT value FROM json_each($2))";
    const KEY_PAIRS_AMONG: Option<&'static str> = None;
}

impl KeysSql for Postgres {
    const KEYS_AMONG: &'static str =
        "SELECT key, fingerprint, response::text AS response FROM idempotency_keys \
         WHERE operation = $1 AND key = ANY($2::text[])";
    const KEY_PAIRS_AMONG: Option<&'static str> = Some(
        "SELECT k.operation, k.key, k.fingerprint, k.response::text AS response \
         FROM idempotency_keys k \
         JOIN UNNEST($1::text[], $2::text[]) AS w (operation, key) \
         ON k.operation = w.operation AND k.key = w.key",
    );
}

#[async_trait]
impl<D: KeysSql> IdempotencyTx for Tx<D> {
    async fn idempotency_get(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        if let Some(known) = self.keys.get(&(operation.to_owned(), key.to_owned())) {
            return Ok(known.clone());
        }
        let row = D::sql(
            "SELECT fingerprint, CAST(response AS TEXT) AS response FROM idempotency_keys \
             WHERE operation = $1 AND key = $2",
        )
        .bind(operation)
        .bind(key)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(StoredResponse::from_row).transpose()
    }

    /// From the keys a group looked up ahead ([`IdempotencyTx::prefetch_keys`]) where it
    /// can, the rest in one statement.
    async fn idempotency_get_many(
        &mut self,
        operation: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, StoredResponse>, StoreError> {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        for key in keys {
            match self.keys.get(&(operation.to_owned(), (*key).to_owned())) {
                Some(Some(stored)) => {
                    found.insert((*key).to_owned(), stored.clone());
                }
                Some(None) => {}
                None => missing.push(*key),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let rows = D::sql(D::KEYS_AMONG)
            .bind(operation)
            .bind(Value::List(&missing))
            .fetch_all(self.conn())
            .await?;
        for r in &rows {
            found.insert(r.text("key")?, StoredResponse::from_row(r)?);
        }
        Ok(found)
    }

    async fn prefetch_keys(&mut self, wanted: &[(&'static str, String)]) -> Result<(), StoreError> {
        let Some(sql) = D::KEY_PAIRS_AMONG.filter(|_| !wanted.is_empty()) else {
            return Ok(());
        };
        let (ops, keys): (Vec<&str>, Vec<&str>) =
            wanted.iter().map(|(op, key)| (*op, key.as_str())).unzip();
        let found = D::sql(sql)
            .bind(Value::List(&ops))
            .bind(Value::List(&keys))
            .fetch_all(self.conn())
            .await?;
        for (op, key) in wanted {
            self.keys.insert(((*op).to_owned(), key.clone()), None);
        }
        for row in &found {
            let wanted = (row.text("operation")?, row.text("key")?);
            if let Some(known) = self.keys.get_mut(&wanted) {
                *known = Some(StoredResponse::from_row(row)?);
            }
        }
        Ok(())
    }

    async fn idempotency_put(
        &mut self,
        operation: &str,
        key: &str,
        fingerprint: &Fingerprint,
        response: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.keys.remove(&(operation.to_owned(), key.to_owned()));
        D::sql(
            "INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(operation)
        .bind(key)
        .bind(fingerprint.as_str())
        .bind(Value::Json(response))
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

/// If `key` was used before for `operation`: the recorded response when the fingerprint
/// matches, [`DomainError::IdempotencyConflict`] when it does not.
pub(crate) async fn replay<T: DeserializeOwned>(
    tx: &mut (impl IdempotencyTx + ?Sized),
    operation: &str,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Result<Option<T>, StoreError> {
    let stored = tx.idempotency_get(operation, key.as_str()).await?;
    replay_stored(operation, key, fingerprint, stored.as_ref())
}

/// [`replay`] on a record already read (`None`: the key is not recorded).
pub(crate) fn replay_stored<T: DeserializeOwned>(
    operation: &str,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    stored: Option<&StoredResponse>,
) -> Result<Option<T>, StoreError> {
    let Some(stored) = stored else {
        return Ok(None);
    };
    if stored.fingerprint != fingerprint.as_str() {
        return Err(DomainError::IdempotencyConflict {
            key: key.as_str().to_owned(),
        }
        .into());
    }
    serde_json::from_str(&stored.response)
        .map(Some)
        .map_err(|e| StoreError::Corrupt(format!("stored {operation} response: {e}")))
}

/// Records `response` as the answer to `key` for `operation`.
pub(crate) async fn record<T: Serialize>(
    tx: &mut (impl IdempotencyTx + ?Sized),
    operation: &str,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
    response: &T,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json = response_json(operation, response)?;
    tx.idempotency_put(operation, key.as_str(), fingerprint, &json, now)
        .await
}

/// A response as recorded for an idempotency key.
pub(crate) fn response_json<T: Serialize>(
    operation: &str,
    response: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(response)
        .map_err(|e| StoreError::Corrupt(format!("serializing {operation} response: {e}")))
}
