//! Idempotency keys, shared by every mutating operation of every concern (pooling now; the
//! ledger and planning later): look the key up first, record it with the response in the
//! same transaction as the mutation.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{de::DeserializeOwned, Serialize};

use c2m_domain::{DomainError, Fingerprint, IdempotencyKey};

use crate::rows::Columns;
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

/// The `idempotency_keys` table, inside a backend's transaction.
#[async_trait]
pub(crate) trait IdempotencyTx: Send {
    async fn idempotency_get(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError>;

    /// The recorded keys among `keys` for `operation`, by key: for a run of placements,
    /// which looks all its keys up at once. The default asks one at a time.
    async fn idempotency_get_many(
        &mut self,
        operation: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, StoredResponse>, StoreError> {
        let mut found = HashMap::new();
        for key in keys {
            if let Some(stored) = self.idempotency_get(operation, key).await? {
                found.insert((*key).to_owned(), stored);
            }
        }
        Ok(found)
    }

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
