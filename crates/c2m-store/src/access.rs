//! Bearer tokens, as stored: an id, a hash of the secret, a role, and for factory tokens
//! the factory. The server makes and checks tokens (`c2m_server::auth`); the store only
//! keeps them, so the secret itself never reaches the database.
//!
//! The types, [`TokenStore`] (implemented once, here) and the SQL (one text for both
//! backends) are all in this module. No lock is needed: each write is one statement on one
//! row (an insert under the token's primary key, or under a bootstrap admin's unique
//! `bootstrap_seq`; a revocation guarded by `revoked_at IS NULL`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::Role;

use crate::dialect::{columns, Backend, Columns, Tx};
use crate::engine::{Call, Engine};
use crate::Result;
use crate::StoreError;

/// A token to store (its secret already hashed by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub id: String,
    pub secret_hash: String,
    pub role: Role,
    pub factory: Option<String>,
    pub label: String,
}

/// A stored token: the token as it was given to [`TokenStore::create_token`], and when it
/// was stored and revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub token: NewToken,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Bearer tokens (see [`crate::access`]).
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn create_token(&self, t: &NewToken, now: DateTime<Utc>) -> Result<()>;
    /// Stores the admin token a server makes when the store has no active admin, as the
    /// `seq`th such decision (`seq`: the number of admin tokens the store had, revoked ones
    /// included); false, storing nothing, when another server already stored one with the
    /// same `seq`. Replicas that start together on one database all see no admin and make
    /// a token each; only the first is kept, so the store has one admin token that someone
    /// holds rather than several whose secrets were written nowhere.
    async fn create_bootstrap_admin(
        &self,
        t: &NewToken,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Revokes a token; `NotFound` if there is none with that id. Revoking twice is
    /// harmless (false the second time).
    async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool>;
    /// The token with this id, revoked or not.
    async fn token(&self, id: &str) -> Result<Option<StoredToken>>;
    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<StoredToken>>;
}

/// The columns [`stored_token`] reads, for `FROM api_tokens`.
macro_rules! token_select {
    () => {
        "SELECT id, secret_hash, role, factory_id, label, created_at, revoked_at FROM api_tokens "
    };
}

/// The token table.
impl<D: Backend> Tx<'_, D> {
    /// Inserts `t`; with `bootstrap_seq`, as that bootstrap admin (false, inserting
    /// nothing, when another server took the seq: `api_tokens_bootstrap`, migration 0013).
    pub(crate) async fn insert_token(
        &mut self,
        t: &NewToken,
        bootstrap_seq: Option<i64>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let sql = "INSERT INTO api_tokens \
             (id, secret_hash, role, factory_id, label, created_at, bootstrap_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (bootstrap_seq) DO NOTHING";
        let params = (
            &t.id,
            &t.secret_hash,
            t.role.as_str(),
            &t.factory,
            &t.label,
            now,
            bootstrap_seq,
        );
        Ok(D::query(sql, params).execute(self).await? == 1)
    }

    /// Marks the token revoked; false if there is no such token or it already was.
    pub(crate) async fn revoke_token(&mut self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let sql = "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        Ok(D::query(sql, (id, now)).execute(self).await? == 1)
    }

    pub(crate) async fn token(&mut self, id: &str) -> Result<Option<StoredToken>> {
        let sql = concat!(token_select!(), "WHERE id = $1");
        D::query(sql, (id,)).optional(self, stored_token).await
    }

    pub(crate) async fn tokens(&mut self) -> Result<Vec<StoredToken>> {
        let sql = concat!(token_select!(), "ORDER BY created_at, id");
        D::query(sql, ()).all(self, stored_token).await
    }
}

fn stored_token(r: &impl Columns) -> Result<StoredToken> {
    let token = columns!(r => NewToken {
        id: text, secret_hash: text, label: text;
        role: role(&r.text("role")?)?,
        factory: r.text_opt("factory_id")?,
    });
    Ok(columns!(r => StoredToken { created_at: ts, revoked_at: ts_opt; token }))
}

fn role(s: &str) -> Result<Role> {
    Role::parse(s).map_err(|_| StoreError::Corrupt(format!("token role {s:?}")))
}

#[async_trait]
impl<E: Engine> TokenStore for E {
    #[tracing::instrument(skip(self, t), fields(id = %t.id), err(level = "debug"))]
    async fn create_token(&self, t: &NewToken, now: DateTime<Utc>) -> Result<()> {
        // Without a bootstrap seq nothing conflicts but the id, which is an error.
        self.alone((t.clone(), None), now, |tx, c| Box::pin(insert(tx, c)))
            .await
            .map(drop)
    }

    #[tracing::instrument(skip(self, t), fields(id = %t.id), err(level = "debug"))]
    async fn create_bootstrap_admin(
        &self,
        t: &NewToken,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.alone((t.clone(), Some(seq)), now, |tx, c| Box::pin(insert(tx, c)))
            .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn revoke_token(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        self.alone(id.to_owned(), now, |tx, c| Box::pin(revoke(tx, c)))
            .await
    }

    async fn token(&self, id: &str) -> Result<Option<StoredToken>> {
        self.read(id, |tx, id| Box::pin(tx.token(id))).await
    }

    async fn tokens(&self) -> Result<Vec<StoredToken>> {
        self.read(&(), |tx, _| Box::pin(tx.tokens())).await
    }
}

/// Stores a token, as a bootstrap admin when a seq is given ([`Tx::insert_token`]).
async fn insert<D: Backend>(tx: &mut Tx<'_, D>, c: &Call<(NewToken, Option<i64>)>) -> Result<bool> {
    tx.insert_token(&c.req.0, c.req.1, c.now).await
}

/// Revokes a token that exists (`NotFound` otherwise); false if it already was revoked.
async fn revoke<D: Backend>(tx: &mut Tx<'_, D>, c: &Call<String>) -> Result<bool> {
    let (id, now) = (&c.req, c.now);
    if tx.token(id).await?.is_none() {
        return Err(StoreError::not_found("token", id.as_str()));
    }
    tx.revoke_token(id, now).await
}
