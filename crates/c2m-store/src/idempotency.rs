//! Idempotency keys, shared by every mutating operation of every feature: look the key up
//! first ([`Keyed::replay`]), record it with the response in the same transaction as the
//! write ([`Keyed::record`]). Most writes do both through [`Keyed::run`], or
//! [`Keyed::run_locked`] when they look the key up again under a lock they take; a run of
//! placements looks all its keys up at once and records them with its rows.
//!
//! The lock that makes a key's rules safe is the feature's own (a placement's key is looked
//! up again once the campaign's lock is held, so a send that waited for the lock replays
//! its twin's answer). Every write that can be refused by the state its lock guards looks
//! its key up again under that lock ([`Keyed::run_locked`]: the campaign's, the
//! catalogue's, the planning lock for plans and purchase orders, the work order's for a
//! factory's report): otherwise a send that waited while its twin committed on another
//! replica is refused by the state the twin left (the batches planned, the entry deleted,
//! the order received or cancelled, the work order shipped). The database backs it with the primary key `(operation, key)`: two
//! sends racing past their locks (on PostgreSQL, different campaigns' locks) cannot both
//! record, and the loser's transaction is run again
//! ([`crate::dialect::Dialect::retryable`]), when it finds the key recorded.
//!
//! A key belongs to its operation, and for a factory's reports to the factory as well
//! ([`Keyed::scoped`]): the operation column then names both, so one factory's keys never
//! refuse or reveal another's.
//!
//! The SQL is written once, for [`Tx`]; looking several keys up in one statement binds the
//! keys as one list value, so only its SQL text differs ([`KeysSql`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};
use sqlx::{Postgres, Sqlite};

use c2m_domain::{DomainError, Fingerprint, IdempotencyKey};

use crate::dialect::{Backend, Columns, Dialect, Tx, Value};
use crate::Result;
use crate::StoreError;

/// A recorded idempotency key: the request's fingerprint and the response's JSON.
#[derive(Clone)]
pub(crate) struct StoredResponse {
    pub fingerprint: String,
    pub response: String,
}

impl StoredResponse {
    /// From a row with the columns `fingerprint` and `response` (as text).
    pub(crate) fn from_row(r: &impl Columns) -> Result<Self> {
        Ok(StoredResponse {
            fingerprint: r.text("fingerprint")?,
            response: r.text("response")?,
        })
    }
}

/// The statements whose text differs: a list of keys is one value, a JSON array on SQLite
/// (read with `json_each`) and a `text[]` on PostgreSQL.
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

/// The `idempotency_keys` table.
impl<D: Backend> Tx<'_, D> {
    pub(crate) async fn idempotency_get(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>> {
        if let Some(known) = self.keys.get(&(operation.to_owned(), key.to_owned())) {
            return Ok(known.clone());
        }
        D::query(
            "SELECT fingerprint, CAST(response AS TEXT) AS response FROM idempotency_keys \
                 WHERE operation = $1 AND key = $2",
            (operation, key),
        )
        .optional(self, StoredResponse::from_row)
        .await
    }

    /// The recorded keys among `keys` for `operation`, by key (for a run of placements,
    /// which looks all its keys up at once): from the keys a group looked up ahead
    /// ([`Tx::prefetch_keys`]) where it can, the rest in one statement.
    pub(crate) async fn idempotency_get_many(
        &mut self,
        operation: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, StoredResponse>> {
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
        let rows = D::query(D::KEYS_AMONG, (operation, Value::List(&missing)))
            .fetch_all(self)
            .await?;
        for r in &rows {
            found.insert(r.text("key")?, StoredResponse::from_row(r)?);
        }
        Ok(found)
    }

    /// Looks up the keys a group's writes will ask for (operation name, key), in one
    /// statement, so that each write's replay check costs no round trip under the
    /// campaign's lock. Run after the lock is taken: every key recorded by an earlier
    /// holder of the lock is seen. A key recorded meanwhile for another campaign meets the
    /// primary key when this transaction records it, and the group is run again.
    pub(crate) async fn prefetch_keys(&mut self, wanted: &[(&'static str, String)]) -> Result<()> {
        let Some(sql) = D::KEY_PAIRS_AMONG.filter(|_| !wanted.is_empty()) else {
            return Ok(());
        };
        let (ops, keys): (Vec<&str>, Vec<&str>) =
            wanted.iter().map(|(op, key)| (*op, key.as_str())).unzip();
        let found = D::query(sql, (Value::List(&ops), Value::List(&keys)))
            .fetch_all(self)
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

    /// Records the key. On PostgreSQL a concurrent use of the same key surfaces here as a
    /// unique violation, which the store retries (the retry then replays or conflicts).
    pub(crate) async fn idempotency_put(
        &mut self,
        key: &Keyed<'_>,
        response: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let operation = key.recorded_operation();
        self.keys
            .remove(&(operation.to_owned(), key.key.as_str().to_owned()));
        let row = |operation| {
            (
                operation,
                key.key.as_str(),
                key.fingerprint.as_str(),
                Value::Json(response),
                now,
            )
        };
        D::query(INSERT_KEY, row(operation.as_str()))
            .run(self)
            .await?;
        if key.scope.is_some() {
            // Recorded the old way too, under the bare operation, unless another caller's
            // key already holds that place: an older replica of a rolling upgrade looks
            // only there, and would apply a retry of this request a second time (QA 15: a
            // part shipment and a quality check counted twice). This replica reads that
            // place only as a caller's own older key (`Keyed::replay`).
            D::query(INSERT_KEY_UNLESS_HELD, row(key.operation))
                .run(self)
                .await?;
        }
        Ok(())
    }
}

macro_rules! insert_key {
    () => {
        "INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    };
}

/// Records a key: operation, key, fingerprint, response, moment.
const INSERT_KEY: &str = insert_key!();

/// The same where no key holds the place yet (a scoped key's record the old way).
const INSERT_KEY_UNLESS_HELD: &str =
    concat!(insert_key!(), " ON CONFLICT (operation, key) DO NOTHING");

/// A request's idempotency key under its operation's name, with the request's
/// fingerprint: what a write looks up first and records with its answer.
pub(crate) struct Keyed<'a> {
    pub operation: &'static str,
    /// Whose keys these are, for an operation whose callers each keep their own (a
    /// factory's reports: [`Keyed::scoped`]), with the field of a recorded answer that
    /// names them; `None` where every caller allowed the operation shares its keys (the
    /// merchant's and the storefront's writes).
    pub scope: Option<(&'a str, &'static str)>,
    pub key: &'a IdempotencyKey,
    pub fingerprint: Fingerprint,
}

/// Between an operation's name and the scope it is recorded under: a control character,
/// which no operation name has and no scope (a catalogue id) may contain, so no two
/// scopes' names meet.
const SCOPE_SEPARATOR: char = '\u{1f}';

impl<'a> Keyed<'a> {
    pub(crate) fn new(
        operation: &'static str,
        key: &'a IdempotencyKey,
        request: &impl Serialize,
    ) -> Self {
        Keyed {
            operation,
            scope: None,
            key,
            fingerprint: Fingerprint::of(operation, request),
        }
    }

    /// [`Keyed::new`] for a caller with keys of its own: recorded under the operation and
    /// `scope`, so one caller's key neither refuses another's request that happens to use
    /// the same key, nor tells it the key was used. Two factories that each numbered their
    /// reports by their own stream's `seq` had the second refused `ALREADY_EXISTS`, and a
    /// factory could probe for another's keys (QA 14).
    ///
    /// `owner_field` is the field of the answer that names the caller (a report's
    /// `factory_id`): a key recorded before keys had scopes, under the bare operation, is
    /// this caller's when its answer names it, and then replays or conflicts as any of its
    /// keys; one naming another caller is no concern of this one.
    pub(crate) fn scoped(
        operation: &'static str,
        scope: &'a str,
        owner_field: &'static str,
        key: &'a IdempotencyKey,
        request: &impl Serialize,
    ) -> Self {
        Keyed {
            scope: Some((scope, owner_field)),
            ..Keyed::new(operation, key, request)
        }
    }

    /// The `operation` column the key is recorded under.
    pub(crate) fn recorded_operation(&self) -> String {
        match self.scope {
            Some((scope, _)) => format!("{}{SCOPE_SEPARATOR}{scope}", self.operation),
            None => self.operation.to_owned(),
        }
    }

    /// Whether a key recorded under the bare operation, before keys had scopes, is this
    /// caller's: its answer names this caller (or names none that can be read, which is
    /// taken as this caller's, so that a retry is replayed or refused, never applied
    /// twice).
    fn owns_legacy(&self, stored: &StoredResponse) -> bool {
        let Some((scope, field)) = self.scope else {
            return true;
        };
        let answer: Option<serde_json::Value> = serde_json::from_str(&stored.response).ok();
        match answer
            .as_ref()
            .and_then(|a| a.get(field))
            .and_then(|v| v.as_str())
        {
            Some(owner) => owner == scope,
            None => true,
        }
    }

    /// The shape of a write idempotent by key: the answer recorded for the key if it was
    /// used before ([`Keyed::replay`]), or else `write`'s answer, recorded for the key in
    /// the same transaction. A write that must look its key up again under a lock it takes
    /// (a pre-order's change, a lever) replays and records itself.
    pub(crate) async fn run<D: Backend, T: Serialize + DeserializeOwned>(
        &self,
        tx: &mut Tx<'_, D>,
        now: DateTime<Utc>,
        write: impl AsyncFnOnce(&mut Tx<'_, D>) -> Result<T>,
    ) -> Result<T> {
        if let Some(done) = self.replay(tx).await? {
            return Ok(done);
        }
        let done = write(tx).await?;
        self.record(tx, &done, now).await?;
        Ok(done)
    }

    /// [`Keyed::run`] for a write that takes a lock first (its campaign's): the key is looked
    /// up before anything that could refuse the request, and again once `lock` holds the
    /// lock (a send of the key may have committed while this one waited, on another
    /// replica, or, for writes that are not grouped, on this one, and must be replayed
    /// rather than refused as a second one); then `write` is given what `lock` found.
    pub(crate) async fn run_locked<D: Backend, L, T: Serialize + DeserializeOwned>(
        &self,
        tx: &mut Tx<'_, D>,
        now: DateTime<Utc>,
        lock: impl AsyncFnOnce(&mut Tx<'_, D>) -> Result<L>,
        write: impl AsyncFnOnce(&mut Tx<'_, D>, L) -> Result<T>,
    ) -> Result<T> {
        if let Some(done) = self.replay(tx).await? {
            return Ok(done);
        }
        let locked = lock(tx).await?;
        self.run(tx, now, async move |tx| write(tx, locked).await)
            .await
    }

    /// If the key was used before: the recorded response when the fingerprint matches,
    /// [`DomainError::IdempotencyConflict`] when it does not.
    pub(crate) async fn replay<D: Backend, T: DeserializeOwned>(
        &self,
        tx: &mut Tx<'_, D>,
    ) -> Result<Option<T>> {
        let stored = tx
            .idempotency_get(&self.recorded_operation(), self.key.as_str())
            .await?;
        if stored.is_none() && self.scope.is_some() {
            // Recorded before keys had scopes: this caller's (its answer names it) replays
            // the same request and refuses another, as any of its keys, so a retry across
            // the upgrade is neither applied twice nor, after a different request under
            // its key, refused (QA 15: a legacy key ignored when the request differed let
            // the other request through, and the true retry was then refused). Another
            // caller's is no concern of this one.
            let legacy = tx
                .idempotency_get(self.operation, self.key.as_str())
                .await?;
            if let Some(legacy) = legacy.filter(|l| self.owns_legacy(l)) {
                return self.replay_stored(Some(&legacy));
            }
        }
        self.replay_stored(stored.as_ref())
    }

    /// [`Keyed::replay`] on a record already read (`None`: the key is not recorded).
    pub(crate) fn replay_stored<T: DeserializeOwned>(
        &self,
        stored: Option<&StoredResponse>,
    ) -> Result<Option<T>> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        if stored.fingerprint != self.fingerprint.as_str() {
            return Err(DomainError::IdempotencyConflict {
                key: self.key.as_str().to_owned(),
            }
            .into());
        }
        serde_json::from_str(&stored.response)
            .map(Some)
            .map_err(|e| StoreError::Corrupt(format!("stored {} response: {e}", self.operation)))
    }

    /// Records `response` as the answer to the key.
    pub(crate) async fn record<D: Backend, T: Serialize>(
        &self,
        tx: &mut Tx<'_, D>,
        response: &T,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let json = self.response_json(response)?;
        tx.idempotency_put(self, &json, now).await
    }

    /// A response as recorded for the key.
    pub(crate) fn response_json<T: Serialize>(&self, response: &T) -> Result<String> {
        serde_json::to_string(response).map_err(|e| {
            StoreError::Corrupt(format!("serializing {} response: {e}", self.operation))
        })
    }

    /// The recorded form of the key with `response`, for writing it with other rows.
    pub(crate) fn stored(&self, response: String) -> StoredResponse {
        StoredResponse {
            fingerprint: self.fingerprint.as_str().to_owned(),
            response,
        }
    }
}
