//! Webhook endpoints and their delivery log: where events are POSTed, how far each
//! endpoint has got, and every attempt made.
//!
//! An endpoint's `cursor` is the last event sequence number it is done with (delivered, or
//! not of a kind it asked for), so delivery resumes from it after a crash or a restart:
//! delivery is at least once, and the event id lets receivers drop a duplicate. The server
//! makes and signs the requests (`c2m_server::webhooks`); this module keeps the state.
//!
//! # Claims, and why each event reaches each endpoint once with several replicas
//!
//! A delivery worker claims one endpoint at a time ([`WebhookStore::claim_endpoint`]): it
//! picks an enabled endpoint that is due (no retry pending, or its time has come), has
//! events after its cursor, and is not leased, and leases it (`lease_owner`,
//! `lease_until`) in the same transaction. On PostgreSQL the pick is `FOR UPDATE SKIP
//! LOCKED`, so two replicas claiming at once take different endpoints instead of waiting
//! for each other; on SQLite the one writer already serialises claims. Every later write
//! of the worker (the cursor after a delivery, a failure) is guarded by `lease_owner`, so a
//! worker whose lease expired (it hung longer than the lease) or was taken away (an admin
//! replayed the endpoint) stops at its next write instead of moving the cursor. A lease is
//! renewed by every delivery, and lasts longer than a delivery's timeout.
//!
//! # Deletion
//!
//! [`WebhookStore::delete_endpoint`] marks the endpoint deleted (`deleted_at`), takes its
//! lease away and clears its pending retry and its secret, in one transaction. Every claim
//! skips a deleted endpoint, so no retry already scheduled is ever attempted, and a worker
//! that held the lease stops at its next write (as after a replay). The row stays so that
//! its delivery log stays listable and its id is never given again; every other call about
//! it answers `NotFound`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use c2m_domain::{DomainError, IdempotencyKey};
use serde::{Deserialize, Serialize};

use crate::dialect::{columns, micros, Backend, Columns, Dialect, Tx};
use crate::engine::{Call, Engine, Lane};
use crate::idempotency::Keyed;
use crate::writer::Op;
use crate::Result;
use crate::StoreError;

/// An endpoint to register (its URL and kinds checked by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    /// A retry with the same key and the same URL and kinds gets the first registration
    /// back (its id and secret); the same key with another URL or kinds is
    /// `IdempotencyConflict`.
    pub idempotency_key: IdempotencyKey,
    pub id: String,
    pub url: String,
    /// Event kinds (`*` for all).
    pub kinds: Vec<String>,
    /// The signing secret, shown to the admin once.
    pub secret: String,
}

/// A registered endpoint and its signing secret: the answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    pub endpoint: Endpoint,
    pub secret: String,
}

/// An endpoint as listed (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: String,
    pub url: String,
    pub kinds: Vec<String>,
    /// The last event sequence number the endpoint is done with.
    pub cursor: i64,
    pub created_at: DateTime<Utc>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed (none since then succeeded).
    pub failing_since: Option<DateTime<Utc>>,
    /// Failed attempts in a row.
    pub failures: i64,
    /// When the next attempt is due, after a failure.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When an admin deleted it (nothing is sent to it from then on). Absent in the
    /// registration answers stored before deletion existed, hence the default.
    #[serde(default)]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// An endpoint leased to a worker, with what it needs to sign: the handle through which
/// the worker moves the endpoint past events and gives the lease up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub endpoint: Endpoint,
    pub secret: String,
    pub owner: String,
}

/// One attempt to deliver one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub seq: i64,
    pub endpoint_id: String,
    pub event_seq: i64,
    pub event_id: String,
    /// 1 for the first attempt at this event, 2 for the first retry, ...
    pub attempt: i64,
    /// The HTTP status, when the endpoint answered.
    pub status_code: Option<i64>,
    /// Why it failed without a status (timeout, connection refused), or what the status
    /// meant.
    pub error: Option<String>,
    pub latency_ms: i64,
    pub delivered: bool,
    pub at: DateTime<Utc>,
}

/// What happened to the last of the attempts given to [`WebhookStore::record_attempts`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the cursor moves to the event; the lease is renewed until `lease_until`.
    Delivered { lease_until: DateTime<Utc> },
    /// Anything else: the next attempt is due at `retry_at` and the lease is given up;
    /// with `disable`, the endpoint is disabled (sustained failure).
    Failed {
        retry_at: DateTime<Utc>,
        disable: Option<String>,
    },
}

/// Webhook endpoints and deliveries (see the [module docs](self)).
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Registers an endpoint; it gets the events committed from now on (its cursor is the
    /// last event's number). A retry of the same registration (its idempotency key) gets
    /// the first answer and registers nothing.
    async fn create_endpoint(&self, e: &NewEndpoint, now: DateTime<Utc>) -> Result<Registered>;

    /// Every endpoint not deleted, oldest first.
    async fn list_endpoints(&self) -> Result<Vec<Endpoint>>;

    /// Enables (clearing its failures, due at once) or disables an endpoint; `NotFound` for
    /// an unknown id. Idempotent by `key`: a retry answers the first change and changes
    /// nothing (a late retry of a disable switched off an endpoint another admin had
    /// enabled since: QA 14).
    async fn set_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Endpoint>;

    /// Delivers again every event after `after_seq`: the cursor moves there (back or
    /// forward) and any lease is taken away. A number beyond the last event is
    /// `EventCursorAhead`; `NotFound` for an unknown id. Idempotent by `key`: a retry
    /// answers the first and moves nothing (a retried replay sent the range again, a
    /// whole history for a replay from 0: QA 14).
    async fn replay_endpoint(
        &self,
        id: &str,
        after_seq: i64,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Endpoint>;

    /// Deletes an endpoint for good: nothing more is delivered to it, including a retry
    /// already scheduled, and a worker holding its lease loses it. Deleting it again
    /// answers the same (the endpoint as deleted); `NotFound` for an unknown id. Its
    /// delivery log stays listable. Idempotent by `key`, as every admin change.
    async fn delete_endpoint(
        &self,
        id: &str,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Endpoint>;

    /// The endpoint's attempts numbered above `after`, oldest first, at most `limit`
    /// (a deleted endpoint's too).
    async fn list_deliveries(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Delivery>>;

    /// Leases one endpoint that is due and has events to deliver to `owner` until
    /// `lease_until`; `None` when there is none.
    async fn claim_endpoint(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Claim>>;

    /// Logs attempts at one endpoint's events, in order, in one write, and applies
    /// `outcome` (that of the last) to the endpoint: the worker records the events a
    /// receiver took in runs rather than one write each. Every attempt but the last must
    /// be delivered, all at one endpoint, and there must be one at least (else
    /// `InvalidArgument`, nothing written); false if `owner` no longer holds the lease
    /// (the attempts are logged, the endpoint left alone).
    async fn record_attempts(
        &self,
        owner: &str,
        deliveries: &[Delivery],
        outcome: &Outcome,
    ) -> Result<bool>;

    /// Moves the claimed endpoint's cursor to `seq` past events it did not ask for and
    /// renews the lease until `lease_until`; false if the claim's owner no longer holds
    /// the lease.
    async fn skip_events(
        &self,
        claim: &Claim,
        seq: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;

    /// Gives the claim's lease up (nothing more to deliver for now); nothing if its owner
    /// no longer holds it.
    async fn release_endpoint(&self, claim: &Claim) -> Result<()>;

    /// Gives the claim's lease up with events still to deliver, at the end of the
    /// worker's turn: the endpoint is due again at `now`, behind every due endpoint that
    /// has waited longer (see the claim's order); nothing if its owner no longer holds it.
    async fn pass_endpoint(&self, claim: &Claim, now: DateTime<Utc>) -> Result<()>;
}

const ENDPOINT: &str = "SELECT id, url, kinds, secret, cursor, created_at, disabled_at, \
     disabled_reason, failing_since, failures, next_attempt_at, deleted_at FROM webhook_endpoints ";

/// The next endpoint to deliver to: one that is due, not leased, with events after its
/// cursor. Endpoints with no attempt scheduled come first, then the others by how long
/// they have been due (a retry, or an endpoint whose worker passed it on with events
/// left, [`WebhookStore::pass_endpoint`]), so a slow endpoint with a long backlog takes
/// turns with the rest instead of holding a worker loop until it is through.
const DUE: &str = "SELECT id FROM webhook_endpoints \
     WHERE disabled_at IS NULL AND deleted_at IS NULL \
     AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
     AND (lease_until IS NULL OR lease_until < $1) \
     AND cursor < (SELECT last_seq FROM event_counter WHERE id = 1) \
     ORDER BY next_attempt_at IS NOT NULL, next_attempt_at, id LIMIT 1";

const DUE_SKIP_LOCKED: &str = "SELECT id FROM webhook_endpoints \
     WHERE disabled_at IS NULL AND deleted_at IS NULL \
     AND (next_attempt_at IS NULL OR next_attempt_at <= $1) \
     AND (lease_until IS NULL OR lease_until < $1) \
     AND cursor < (SELECT last_seq FROM event_counter WHERE id = 1) \
     ORDER BY next_attempt_at IS NOT NULL, next_attempt_at, id LIMIT 1 FOR UPDATE SKIP LOCKED";

fn endpoint(r: &impl Columns) -> Result<Endpoint> {
    let kinds: Vec<String> = serde_json::from_str(&r.text("kinds")?)
        .map_err(|e| StoreError::Corrupt(format!("webhook kinds: {e}")))?;
    Ok(columns!(r => Endpoint {
        id: text, url: text, cursor: int, created_at: ts, disabled_at: ts_opt,
        disabled_reason: text_opt, failing_since: ts_opt, failures: int,
        next_attempt_at: ts_opt, deleted_at: ts_opt;
        kinds,
    }))
}

fn delivery(r: &impl Columns) -> Result<Delivery> {
    Ok(columns!(r => Delivery {
        seq: int, endpoint_id: text, event_seq: int, event_id: text, attempt: int,
        status_code: int_opt, error: text_opt, latency_ms: int, at: ts;
        delivered: r.int("delivered")? != 0,
    }))
}

fn endpoint_not_found(id: &str) -> StoreError {
    StoreError::not_found("webhook endpoint", id)
}

/// The webhook tables.
impl<D: Backend> Tx<'_, D> {
    async fn endpoint_row(&mut self, id: &str) -> Result<Option<(Endpoint, String)>> {
        let sql = format!("{ENDPOINT}WHERE id = $1");
        D::query(&sql, (id,))
            .optional(self, |r| Ok((endpoint(r)?, r.text("secret")?)))
            .await
    }

    /// An endpoint that is not deleted (a deleted one is `NotFound`, as if it never was).
    async fn endpoint(&mut self, id: &str) -> Result<Endpoint> {
        self.endpoint_row(id)
            .await?
            .map(|(e, _)| e)
            .filter(|e| e.deleted_at.is_none())
            .ok_or_else(|| endpoint_not_found(id))
    }

    async fn last_seq(&mut self) -> Result<i64> {
        let sql = "SELECT last_seq FROM event_counter WHERE id = 1";
        D::query(sql, ()).fetch_one(self).await?.int("last_seq")
    }
}

/// The operation name of a registration's idempotency key.
pub(crate) const OP_REGISTER_ENDPOINT: &str = "register_webhook_endpoint";

async fn create<D: Backend>(tx: &mut Tx<'_, D>, c: &Call<NewEndpoint>) -> Result<Registered> {
    let (e, now) = (&c.req, c.now);
    // The request is the URL and the kinds; the id and secret are made for it.
    let key = Keyed::new(
        OP_REGISTER_ENDPOINT,
        &e.idempotency_key,
        &(&e.url, &e.kinds),
    );
    key.run(tx, now, async |tx| {
        let kinds = serde_json::to_string(&e.kinds)
            .map_err(|err| StoreError::Corrupt(format!("webhook kinds: {err}")))?;
        let cursor = tx.last_seq().await?;
        let sql = "INSERT INTO webhook_endpoints (id, url, kinds, secret, cursor, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)";
        D::query(sql, (&e.id, &e.url, kinds, &e.secret, cursor, now))
            .execute(tx)
            .await?;
        Ok(Registered {
            endpoint: tx.endpoint(&e.id).await?,
            secret: e.secret.clone(),
        })
    })
    .await
}

/// The operation names of the admin changes' idempotency keys.
pub(crate) const OP_SET_ENDPOINT_ENABLED: &str = "set_webhook_endpoint_enabled";
pub(crate) const OP_REPLAY_ENDPOINT: &str = "replay_webhook_endpoint";
pub(crate) const OP_DELETE_ENDPOINT: &str = "delete_webhook_endpoint";

async fn set_enabled<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<(String, bool, IdempotencyKey)>,
) -> Result<Endpoint> {
    let ((id, enabled, key), now) = (&c.req, c.now);
    let keyed = Keyed::new(OP_SET_ENDPOINT_ENABLED, key, &(id, enabled));
    keyed
        .run(tx, now, async |tx| {
            tx.endpoint(id).await?;
            if *enabled {
                let sql = "UPDATE webhook_endpoints SET disabled_at = NULL, \
                     disabled_reason = NULL, failures = 0, failing_since = NULL, \
                     next_attempt_at = NULL WHERE id = $1";
                D::query(sql, (id,)).execute(tx).await?;
            } else {
                let sql = "UPDATE webhook_endpoints SET disabled_at = $2, \
                     disabled_reason = 'disabled by an admin', lease_owner = NULL, \
                     lease_until = NULL WHERE id = $1 AND disabled_at IS NULL";
                D::query(sql, (id, now)).execute(tx).await?;
            }
            tx.endpoint(id).await
        })
        .await
}

async fn delete<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<(String, IdempotencyKey)>,
) -> Result<Endpoint> {
    let ((id, key), now) = (&c.req, c.now);
    Keyed::new(OP_DELETE_ENDPOINT, key, id)
        .run(tx, now, async |tx| delete_now(tx, id, now).await)
        .await
}

async fn delete_now<D: Backend>(
    tx: &mut Tx<'_, D>,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Endpoint> {
    let (e, _) = tx
        .endpoint_row(id)
        .await?
        .ok_or_else(|| endpoint_not_found(id))?;
    if e.deleted_at.is_some() {
        return Ok(e);
    }
    // Disabled too, so that every reader that only knows `disabled_at` leaves it alone; the
    // lease and the pending retry go, so no worker writes to it again; the secret goes,
    // since nothing will ever be signed with it.
    let sql = "UPDATE webhook_endpoints SET deleted_at = $2, \
         disabled_at = COALESCE(disabled_at, $2), disabled_reason = 'deleted by an admin', \
         next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL, secret = '' \
         WHERE id = $1";
    D::query(sql, (id, now)).execute(tx).await?;
    tx.endpoint_row(id)
        .await?
        .map(|(e, _)| e)
        .ok_or_else(|| endpoint_not_found(id))
}

async fn replay<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<(String, i64, IdempotencyKey)>,
) -> Result<Endpoint> {
    let ((id, after, key), now) = (&c.req, c.now);
    Keyed::new(OP_REPLAY_ENDPOINT, key, &(id, after))
        .run(tx, now, async |tx| replay_now(tx, id, *after).await)
        .await
}

async fn replay_now<D: Backend>(tx: &mut Tx<'_, D>, id: &str, after: i64) -> Result<Endpoint> {
    tx.endpoint(id).await?;
    if after < 0 {
        return Err(DomainError::invalid(
            "after_seq",
            format!("must not be negative, got {after}"),
        )
        .into());
    }
    let last = tx.last_seq().await?;
    if after > last {
        return Err(DomainError::EventCursorAhead { seq: after, last }.into());
    }
    let sql = "UPDATE webhook_endpoints SET cursor = $2, next_attempt_at = NULL, \
         lease_owner = NULL, lease_until = NULL WHERE id = $1";
    D::query(sql, (id, after)).execute(tx).await?;
    tx.endpoint(id).await
}

async fn claim<D: Backend>(
    tx: &mut Tx<'_, D>,
    owner: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Option<Claim>> {
    let now = micros(now);
    let due = D::locking(DUE, DUE_SKIP_LOCKED);
    let Some(id) = D::query(due, (now,)).optional(tx, |r| r.text("id")).await? else {
        return Ok(None);
    };
    let sql = "UPDATE webhook_endpoints SET lease_owner = $2, lease_until = $3 WHERE id = $1";
    D::query(sql, (id.as_str(), owner, micros(lease_until)))
        .execute(tx)
        .await?;
    let (endpoint, secret) = tx
        .endpoint_row(&id)
        .await?
        .ok_or_else(|| endpoint_not_found(&id))?;
    Ok(Some(Claim {
        endpoint,
        secret,
        owner: owner.to_owned(),
    }))
}

/// Refuses a run of attempts [`WebhookStore::record_attempts`] cannot apply as one:
/// none, attempts at two endpoints, or a failure before the last.
fn check_run(deliveries: &[Delivery]) -> Result<()> {
    let Some((last, before)) = deliveries.split_last() else {
        return Err(StoreError::Domain(DomainError::invalid(
            "deliveries",
            "no attempt to record",
        )));
    };
    if let Some(d) = before.iter().find(|d| d.endpoint_id != last.endpoint_id) {
        return Err(StoreError::Domain(DomainError::invalid(
            "deliveries",
            format!(
                "attempts at {} and {} in one run",
                d.endpoint_id, last.endpoint_id
            ),
        )));
    }
    if let Some(d) = before.iter().find(|d| !d.delivered) {
        return Err(StoreError::Domain(DomainError::invalid(
            "deliveries",
            format!(
                "the failed attempt at event {} is not the last",
                d.event_seq
            ),
        )));
    }
    Ok(())
}

async fn record<D: Backend>(
    tx: &mut Tx<'_, D>,
    owner: &str,
    deliveries: &[Delivery],
    outcome: &Outcome,
) -> Result<bool> {
    let Some(d) = deliveries.last() else {
        return Ok(true); // refused before: `check_run`
    };
    let sql = "INSERT INTO webhook_deliveries (endpoint_id, event_seq, event_id, attempt, \
         status_code, error, latency_ms, delivered, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
    for d in deliveries {
        let params = (
            &d.endpoint_id,
            d.event_seq,
            &d.event_id,
            d.attempt,
            d.status_code,
            &d.error,
            d.latency_ms,
            i64::from(d.delivered),
            micros(d.at),
        );
        D::query(sql, params).execute(tx).await?;
    }
    let held = match outcome {
        Outcome::Delivered { lease_until } => {
            let sql = "UPDATE webhook_endpoints SET \
                 cursor = CASE WHEN cursor < $3 THEN $3 ELSE cursor END, failures = 0, \
                 failing_since = NULL, next_attempt_at = NULL, lease_until = $4 \
                 WHERE id = $1 AND lease_owner = $2";
            let params = (&d.endpoint_id, owner, d.event_seq, micros(*lease_until));
            D::query(sql, params).execute(tx).await?
        }
        Outcome::Failed { retry_at, disable } => {
            let sql = "UPDATE webhook_endpoints SET failures = failures + 1, \
                 failing_since = COALESCE(failing_since, $3), next_attempt_at = $4, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $1 AND lease_owner = $2";
            let params = (&d.endpoint_id, owner, micros(d.at), micros(*retry_at));
            let held = D::query(sql, params).execute(tx).await?;
            if let (Some(why), 1) = (disable, held) {
                let sql = "UPDATE webhook_endpoints SET disabled_at = $2, disabled_reason = $3 \
                     WHERE id = $1";
                D::query(sql, (&d.endpoint_id, micros(d.at), why.as_str()))
                    .execute(tx)
                    .await?;
            }
            held
        }
    };
    Ok(held == 1)
}

async fn skip<D: Backend>(
    tx: &mut Tx<'_, D>,
    endpoint: &str,
    owner: &str,
    seq: i64,
    lease_until: DateTime<Utc>,
) -> Result<bool> {
    let sql = "UPDATE webhook_endpoints SET \
         cursor = CASE WHEN cursor < $3 THEN $3 ELSE cursor END, lease_until = $4 \
         WHERE id = $1 AND lease_owner = $2";
    let params = (endpoint, owner, seq, micros(lease_until));
    Ok(D::query(sql, params).execute(tx).await? == 1)
}

async fn release<D: Backend>(tx: &mut Tx<'_, D>, endpoint: &str, owner: &str) -> Result<()> {
    let sql = "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL \
         WHERE id = $1 AND lease_owner = $2";
    D::query(sql, (endpoint, owner)).run(tx).await
}

async fn pass<D: Backend>(
    tx: &mut Tx<'_, D>,
    endpoint: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let sql = "UPDATE webhook_endpoints SET lease_owner = NULL, lease_until = NULL, \
         next_attempt_at = $3 WHERE id = $1 AND lease_owner = $2";
    D::query(sql, (endpoint, owner, micros(now))).run(tx).await
}

#[async_trait]
impl<E: Engine> WebhookStore for E {
    #[tracing::instrument(skip(self, e), fields(id = %e.id, url = %e.url), err(level = "debug"))]
    async fn create_endpoint(&self, e: &NewEndpoint, now: DateTime<Utc>) -> Result<Registered> {
        self.alone(e.clone(), now, |tx, c| Box::pin(create(tx, c)))
            .await
    }

    async fn list_endpoints(&self) -> Result<Vec<Endpoint>> {
        let sql = format!("{ENDPOINT}WHERE deleted_at IS NULL ORDER BY created_at, id");
        let mut conn = self.readers().acquire().await?;
        E::D::query(&sql, ()).all(&mut conn, endpoint).await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn set_endpoint_enabled(
        &self,
        id: &str,
        enabled: bool,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Endpoint> {
        self.alone((id.to_owned(), enabled, key.clone()), now, |tx, c| {
            Box::pin(set_enabled(tx, c))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn replay_endpoint(
        &self,
        id: &str,
        after_seq: i64,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Endpoint> {
        self.alone((id.to_owned(), after_seq, key.clone()), now, |tx, c| {
            Box::pin(replay(tx, c))
        })
        .await
    }

    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn delete_endpoint(
        &self,
        id: &str,
        key: &IdempotencyKey,
        now: DateTime<Utc>,
    ) -> Result<Endpoint> {
        self.alone((id.to_owned(), key.clone()), now, |tx, c| {
            Box::pin(delete(tx, c))
        })
        .await
    }

    async fn list_deliveries(&self, id: &str, after: i64, limit: u32) -> Result<Vec<Delivery>> {
        let mut conn = self.readers().acquire().await?;
        let sql = format!("{ENDPOINT}WHERE id = $1");
        let known = E::D::query(&sql, (id,)).fetch_optional(&mut conn).await?;
        if known.is_none() {
            return Err(endpoint_not_found(id));
        }
        let sql = "SELECT seq, endpoint_id, event_seq, event_id, attempt, status_code, error, \
             latency_ms, delivered, at FROM webhook_deliveries \
             WHERE endpoint_id = $1 AND seq > $2 ORDER BY seq LIMIT $3";
        let limit = i64::from(limit.clamp(1, 1000));
        E::D::query(sql, (id, after, limit))
            .all(&mut conn, delivery)
            .await
    }

    async fn claim_endpoint(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<Claim>> {
        // Every commit that appends events wakes the delivery workers, and most wake-ups
        // find nothing due (no endpoint, or all caught up). A claim is a write, queued
        // behind the writer's groups (three claims a group under a burst of placements
        // with no endpoint at all), so a read on a reader connection answers "nothing"
        // first. It is as current as the claim would be: the wake-up follows the commit.
        let mut conn = self.readers().acquire().await?;
        let due = E::D::query(DUE, (micros(now),))
            .optional(&mut conn, |r| r.text("id"))
            .await?;
        drop(conn);
        if due.is_none() {
            return Ok(None);
        }
        let op = Op::new(
            (owner.to_owned(), now, lease_until),
            |tx, (owner, now, until)| Box::pin(claim(tx, owner, *now, *until)),
        );
        self.write(Lane::Alone, op.quiet()).await
    }

    async fn record_attempts(
        &self,
        owner: &str,
        deliveries: &[Delivery],
        outcome: &Outcome,
    ) -> Result<bool> {
        check_run(deliveries)?;
        let args = (owner.to_owned(), deliveries.to_vec(), outcome.clone());
        let op = Op::new(args, |tx, (owner, d, outcome)| {
            Box::pin(record(tx, owner, d, outcome))
        });
        self.write(Lane::Alone, op.quiet()).await
    }

    async fn skip_events(
        &self,
        claim: &Claim,
        seq: i64,
        lease_until: DateTime<Utc>,
    ) -> Result<bool> {
        let args = (
            claim.endpoint.id.clone(),
            claim.owner.clone(),
            seq,
            lease_until,
        );
        let op = Op::new(args, |tx, (endpoint, owner, seq, until)| {
            Box::pin(skip(tx, endpoint, owner, *seq, *until))
        });
        self.write(Lane::Alone, op.quiet()).await
    }

    async fn release_endpoint(&self, claim: &Claim) -> Result<()> {
        let args = (claim.endpoint.id.clone(), claim.owner.clone());
        let op = Op::new(args, |tx, (endpoint, owner)| {
            Box::pin(release(tx, endpoint, owner))
        });
        self.write(Lane::Alone, op.quiet()).await
    }

    async fn pass_endpoint(&self, claim: &Claim, now: DateTime<Utc>) -> Result<()> {
        let args = (claim.endpoint.id.clone(), claim.owner.clone(), now);
        let op = Op::new(args, |tx, (endpoint, owner, now)| {
            Box::pin(pass(tx, endpoint, owner, *now))
        });
        self.write(Lane::Alone, op.quiet()).await
    }
}
