//! The loop behind both resumable streams, the storefront events and a factory's work
//! orders: read a page after the cursor, send it, and once caught up wait for a sign that
//! more may exist (a wake-up, the poll interval), sending a heartbeat when the stream has
//! been quiet for a while. One loop, so both streams end the same way: when the client
//! goes, when the server shuts down (`SHUTTING_DOWN`), when the store fails (its status),
//! or when the source says so (a factory's stream replaced by a newer one).

use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, sleep_until, Instant};
use tonic::Status;

use crate::status::{edge_status, Edge};

/// What a stream reads: pages of rows after a cursor, and its heartbeat.
pub(crate) trait Source: Send {
    type Msg: Send + 'static;

    /// At most `limit` rows after `cursor`, in order, each with its sequence number.
    async fn page(&mut self, cursor: i64, limit: u32) -> Result<Vec<(i64, Self::Msg)>, Status>;

    /// The message a quiet stream sends (where the store stands, where the cursor is).
    async fn heartbeat(&mut self, cursor: i64) -> Result<Self::Msg, Status>;

    /// Forgets the wake-ups seen so far. Called before each read, so a commit between the
    /// read and the wait still wakes the loop.
    fn mark_unchanged(&mut self);

    /// Resolves when new rows may have been committed, or with the status that ends the
    /// stream.
    async fn woken(&mut self) -> Result<(), Status>;
}

/// What a caught-up stream does next.
enum Next {
    /// Read again: something may have been committed, or the poll interval passed.
    Read,
    /// Send a heartbeat: nothing was sent for a while.
    Beat,
}

/// How a stream runs, whatever it reads.
pub(crate) struct Feed<M> {
    pub tx: mpsc::Sender<Result<M, Status>>,
    /// Becomes true when the server shuts down.
    pub stop: watch::Receiver<bool>,
    /// A heartbeat is sent when nothing was sent for this long.
    pub heartbeat: Duration,
    /// How often a caught-up stream reads without a wake-up (one may have been missed).
    pub poll: Duration,
    /// Rows read at a time; a full page is followed by the next without waiting.
    pub page: u32,
}

impl<M: Send + 'static> Feed<M> {
    /// Sends `first` (the stream is up, and where it stands), then the rows after
    /// `cursor` as they come, until the stream ends.
    pub(crate) async fn run<S: Source<Msg = M>>(self, mut source: S, mut cursor: i64, first: M) {
        let Feed {
            tx,
            mut stop,
            heartbeat,
            poll,
            page: limit,
        } = self;
        if !send(&tx, &mut stop, Ok(first)).await {
            return;
        }
        let mut last_sent = Instant::now();
        loop {
            source.mark_unchanged();
            let page = match source.page(cursor, limit).await {
                Ok(p) => p,
                Err(s) => {
                    send(&tx, &mut stop, Err(s)).await;
                    return;
                }
            };
            let full = page.len() as u32 == limit;
            for (seq, msg) in page {
                if !send(&tx, &mut stop, Ok(msg)).await {
                    return;
                }
                cursor = seq;
                last_sent = Instant::now();
            }
            if full {
                continue;
            }
            let next = tokio::select! {
                _ = tx.closed() => return,
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    Err(edge_status(Edge::ShuttingDown))
                }
                woken = source.woken() => woken.map(|()| Next::Read),
                _ = sleep(poll) => Ok(Next::Read),
                _ = sleep_until(last_sent + heartbeat) => Ok(Next::Beat),
            };
            let beat = match next {
                Ok(Next::Read) => continue,
                Ok(Next::Beat) => source.heartbeat(cursor).await,
                Err(end) => Err(end),
            };
            let ended = beat.is_err();
            if !send(&tx, &mut stop, beat).await || ended {
                return;
            }
            last_sent = Instant::now();
        }
    }
}

/// Sends `msg` on the stream unless the server stops first (false then, or when the
/// client has gone). A client that stops reading fills the stream's queue, and a send
/// waiting on that queue held the shutdown for as long as the client kept the
/// connection; a message that fits the queue is still sent when the server is stopping
/// (the stream's last word, `SHUTTING_DOWN`).
async fn send<M>(
    tx: &mpsc::Sender<Result<M, Status>>,
    stop: &mut watch::Receiver<bool>,
    msg: Result<M, Status>,
) -> bool {
    tokio::select! {
        biased;
        sent = tx.send(msg) => sent.is_ok(),
        _ = stop.wait_for(|s| *s) => false,
    }
}
