//! PostgreSQL SQL for the `idempotency_keys` table.

use std::collections::HashMap;

use crate::rows::Columns;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::Fingerprint;

use super::pooling::PgTx;
use crate::idempotency::{IdempotencyTx, StoredResponse};
use crate::StoreError;

#[async_trait]
impl IdempotencyTx for PgTx {
    async fn idempotency_get(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        if let Some(known) = self.keys.get(&(operation.to_owned(), key.to_owned())) {
            return Ok(known.clone());
        }
        let row = sqlx::query(
            "SELECT fingerprint, response::text AS response FROM idempotency_keys WHERE operation = $1 AND key = $2",
        )
        .bind(operation)
        .bind(key)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(StoredResponse::from_row).transpose()
    }

    /// From the keys a group looked up ahead ([`PgTx::prefetch_keys`]) where it can, the
    /// rest in one query.
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
        let rows = sqlx::query(
            "SELECT key, fingerprint, response::text AS response FROM idempotency_keys \
             WHERE operation = $1 AND key = ANY($2::text[])",
        )
        .bind(operation)
        .bind(missing)
        .fetch_all(self.conn())
        .await?;
        for r in &rows {
            found.insert(r.text("key")?, StoredResponse::from_row(r)?);
        }
        Ok(found)
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
        sqlx::query(
            "INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
             VALUES ($1, $2, $3, $4::jsonb, $5)",
        )
        .bind(operation)
        .bind(key)
        .bind(fingerprint.as_str())
        .bind(response)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
