//! SQLite SQL for the `idempotency_keys` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Row;

use c2m_domain::Fingerprint;

use super::micros_of;
use super::pooling::SqliteTx;
use crate::idempotency::{IdempotencyTx, StoredResponse};
use crate::StoreError;

#[async_trait]
impl IdempotencyTx for SqliteTx<'_> {
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
        row.map(|r| {
            Ok(StoredResponse {
                fingerprint: r.try_get("fingerprint")?,
                response: r.try_get("response")?,
            })
        })
        .transpose()
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
