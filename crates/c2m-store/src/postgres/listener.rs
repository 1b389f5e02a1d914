//! `LISTEN c2m_events`: how a replica hears that another replica committed events.
//!
//! The insert of a transaction's events sends `NOTIFY c2m_events` (`crate::events`), which
//! PostgreSQL delivers when, and only if, the transaction commits. While anyone in this
//! process waits for events ([`crate::events::EventStore::event_commits`]), one task holds
//! a connection of the store's pool listening on the channel and ticks the store's commit
//! watch at each notification; it stops when the last waiter is gone (so an idle store
//! holds no connection for it) or when the pool closes. A lost connection is re-established
//! and counted as a tick, since notifications sent meanwhile are lost; readers also poll, so
//! a missed notification costs latency, never an event.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres};
use tokio::sync::watch;

use crate::engine::Base;
use crate::events::EVENTS_CHANNEL;

/// The listener task of one store, while it runs.
#[derive(Default)]
pub(crate) struct Listener {
    running: Arc<Mutex<bool>>,
}

impl Listener {
    /// Starts the listener task unless it runs.
    pub(crate) fn ensure(&self, base: &Base<Postgres>) {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if *running {
            return;
        }
        *running = true;
        tokio::spawn(listen(
            base.pool.clone(),
            base.commits.clone(),
            self.running.clone(),
        ));
    }
}

async fn listen(pool: PgPool, commits: watch::Sender<u64>, running: Arc<Mutex<bool>>) {
    let tick = || commits.send_modify(|n| *n = n.wrapping_add(1));
    let mut backoff = Duration::from_millis(100);
    'connect: loop {
        if pool.is_closed() {
            break;
        }
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(mut l) => match l.listen(EVENTS_CHANNEL).await {
                Ok(()) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
            Err(e) => {
                if pool.is_closed() {
                    break;
                }
                tracing::warn!(error = %e, "no connection to LISTEN on; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        tick();
        loop {
            tokio::select! {
                got = listener.try_recv() => match got {
                    Ok(_) => tick(),
                    Err(sqlx::Error::PoolClosed) => break 'connect,
                    Err(e) => {
                        tracing::warn!(error = %e, "the events listener failed; reconnecting");
                        continue 'connect;
                    }
                },
                () = commits.closed() => {
                    // Nobody waits; stop unless someone subscribed meanwhile.
                    let mut r = running.lock().unwrap_or_else(PoisonError::into_inner);
                    if commits.receiver_count() == 0 {
                        *r = false;
                        return;
                    }
                }
            }
        }
    }
    *running.lock().unwrap_or_else(PoisonError::into_inner) = false;
}
