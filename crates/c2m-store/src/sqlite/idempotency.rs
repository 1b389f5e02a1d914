//! SQLite SQL for the `idempotency_keys` table.

use std::collections::HashMap;

use crate::rows::Columns;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::Fingerprint;

use super::micros_of;
use super::pooling::SqliteTx;
use crate::idempotency::{IdempotencyTx, StoredResponse};
use crate::StoreError;

#[async_trait]
impl IdempotencyTx for SqliteTx {
    async fn idempotency_get(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<Option<StoredResponse>, StoreError> {
        let row = sqlx::query(
            "SELECT fingerprint, response FROM idempotency_keys WHERE operation = ?1 AND key = ?2",
        )
        .bind(operation)
        .bind(key)
        .fetch_optional(self.conn())
        .await?;
        row.as_ref().map(StoredResponse::from_row).transpose()
    }

    /// In one query, the keys passed as a JSON array.
    async fn idempotency_get_many(
        &mut self,
        operation: &str,
        keys: &[&str],
    ) -> Result<HashMap<String, StoredResponse>, StoreError> {
        let keys = serde_json::to_string(keys)
            .map_err(|e| StoreError::Corrupt(format!("idempotency keys as JSON: {e}")))?;
        let rows = sqlx::query(
            "SELECT key, fingerprint, response FROM idempotency_keys \
             WHERE operation = ?1 AND key IN (SELECT value FROM json_each(?2))",
        )
        .bind(operation)
        .bind(keys)
        .fetch_all(self.conn())
        .await?;
        let mut found = HashMap::new();
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
        sqlx::query(
            "INSERT INTO idempotency_keys (operation, key, fingerprint, response, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .bind(operation)
        .bind(key)
        .bind(fingerprint.as_str())
        .bind(response)
        .bind(micros_of(now))
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
