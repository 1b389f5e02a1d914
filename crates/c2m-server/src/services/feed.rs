//! The loop behind both resumable streams, the storefront events and a factory's work
//! orders: read a page after the cursor, send it, and once caught up wait for a sign that
//! more may exist (a wake-up, the poll interval), sending a heartbeat when the stream has
//! been quiet for a while. One loop, so both streams end the same way: when the client
//! goes, when the server shuts down (`SHUTTING_DOWN`), when the store fails (its status),
//! or when the source says so (a factory's stream replaced by a newer one).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
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

/// The bytes a stream's queue holds at most (two messages of the default
/// `--max-message-bytes`; a larger message waits alone).
pub(crate) const QUEUE_BYTES: usize = 8 << 20;

/// A stream's queue between its loop and the connection, bounded in messages and in
/// bytes. Bounded in messages alone, a client that stopped reading held up to that many
/// messages of up to `--max-message-bytes` each in memory (64 of 4 MiB: 256 MiB for one
/// stream of large events); now what waits is at most `bytes` (a message larger than that
/// waits alone).
pub(crate) fn queue<M>(messages: usize, bytes: usize) -> (Queue<M>, QueueRx<M>) {
    let (tx, rx) = mpsc::channel(messages);
    let budget = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
    let bytes = Arc::new(Semaphore::new(budget as usize));
    (
        Queue {
            tx,
            bytes: bytes.clone(),
            budget,
        },
        QueueRx { rx, bytes, budget },
    )
}

/// The sending side of [`queue`].
pub(crate) struct Queue<M> {
    tx: mpsc::Sender<Result<M, Status>>,
    bytes: Arc<Semaphore>,
    budget: u32,
}

impl<M> Queue<M> {
    /// Resolves when the receiving side is gone.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The receiving side of [`queue`]: each message taken gives its bytes back.
pub(crate) struct QueueRx<M> {
    rx: mpsc::Receiver<Result<M, Status>>,
    bytes: Arc<Semaphore>,
    budget: u32,
}

impl<M: prost::Message> QueueRx<M> {
    pub(crate) async fn recv(&mut self) -> Option<Result<M, Status>> {
        let item = self.rx.recv().await?;
        if let Ok(m) = &item {
            self.bytes.add_permits(cost(m, self.budget) as usize);
        }
        Some(item)
    }
}

/// The bytes a message holds of a queue's budget: its encoded size, at most the whole
/// budget (so a message larger than the budget waits alone rather than forever).
fn cost<M: prost::Message>(m: &M, budget: u32) -> u32 {
    u32::try_from(m.encoded_len())
        .unwrap_or(u32::MAX)
        .clamp(1, budget)
}

/// How a stream runs, whatever it reads.
pub(crate) struct Feed<M> {
    pub tx: Queue<M>,
    /// Becomes true when the server shuts down.
    pub stop: watch::Receiver<bool>,
    /// A heartbeat is sent when nothing was sent for this long.
    pub heartbeat: Duration,
    /// How often a caught-up stream reads without a wake-up (one may have been missed).
    pub poll: Duration,
    /// Rows read at a time; a full page is followed by the next without waiting.
    pub page: u32,
}

impl<M: prost::Message + Send + 'static> Feed<M> {
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
async fn send<M: prost::Message>(
    tx: &Queue<M>,
    stop: &mut watch::Receiver<bool>,
    msg: Result<M, Status>,
) -> bool {
    let cost = msg.as_ref().map_or(0, |m| cost(m, tx.budget));
    tokio::select! {
        biased;
        sent = async {
            // The bytes first, then the message's place in the queue; the receiver gives
            // the bytes back when it takes the message.
            let Ok(permit) = tx.bytes.acquire_many(cost).await else {
                return false;
            };
            let sent = tx.tx.send(msg).await.is_ok();
            if sent {
                permit.forget();
            }
            sent
        } => sent,
        _ = stop.wait_for(|s| *s) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message of about `n` bytes.
    fn of(n: usize) -> prost_types::Any {
        prost_types::Any {
            type_url: String::new(),
            value: vec![0; n],
        }
    }

    /// A client that does not read holds at most the queue's bytes: with 10,000 bytes,
    /// three messages of 3,000 wait and the fourth does not get in until one is taken; a
    /// message larger than the budget waits alone.
    #[tokio::test]
    async fn a_queue_holds_its_bytes_and_no_more() {
        let (_stop_tx, mut stop) = watch::channel(false);
        let (tx, mut rx) = queue::<prost_types::Any>(64, 10_000);
        for _ in 0..3 {
            assert!(send(&tx, &mut stop, Ok(of(3_000))).await);
        }
        let fourth = tokio::time::timeout(Duration::from_millis(200), async {
            send(&tx, &mut stop, Ok(of(3_000))).await
        });
        assert!(fourth.await.is_err(), "the fourth waits for room");
        assert!(rx.recv().await.expect("first").is_ok());
        assert!(send(&tx, &mut stop, Ok(of(3_000))).await, "room again");
        for _ in 0..3 {
            rx.recv().await.expect("queued").expect("a message");
        }
        assert!(
            send(&tx, &mut stop, Ok(of(50_000))).await,
            "a large one, alone"
        );
        let next = tokio::time::timeout(Duration::from_millis(200), async {
            send(&tx, &mut stop, Ok(of(10))).await
        });
        assert!(
            next.await.is_err(),
            "nothing beside a message of the whole budget"
        );
        // A status costs nothing.
        let (tx, _rx) = queue::<prost_types::Any>(64, 10);
        assert!(send(&tx, &mut stop, Ok(of(100))).await);
        assert!(send(&tx, &mut stop, Err(Status::aborted("x"))).await);
    }
}
