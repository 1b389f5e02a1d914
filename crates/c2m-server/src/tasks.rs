//! Background tasks that live as long as the server: the deadline sweeper and the planning
//! schedule. A bug that panics inside one of them must not silently stop deadlines from
//! being enforced or batches from being planned, so each runs under [`supervise`]: a
//! panic is logged at error level with its message and the task is started again after a
//! growing pause. Both tasks hold no state of their own (everything is in the store), so
//! a restart loses nothing.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// The first pause before a panicked task is started again; it doubles up to
/// [`MAX_RESTART_PAUSE`] while the task keeps panicking.
pub const FIRST_RESTART_PAUSE: Duration = Duration::from_millis(100);
pub const MAX_RESTART_PAUSE: Duration = Duration::from_secs(60);

/// Runs the task `make` builds until it returns (it returns when `stop` turns true),
/// starting it again each time it panics. Returns how many times it was restarted.
pub async fn supervise<F, Fut>(
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    mut make: F,
) -> u32
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = FIRST_RESTART_PAUSE;
    let mut restarts = 0;
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return restarts,
            Err(e) if e.is_panic() => {
                let message = panic_message(e.into_panic());
                tracing::error!(
                    task = name,
                    panic = %message,
                    restart_in = ?pause,
                    "background task panicked; starting it again"
                );
            }
            Err(e) => {
                tracing::error!(task = name, error = %e, "background task was cancelled");
                return restarts;
            }
        }
        if *stop.borrow() {
            return restarts;
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return restarts,
        }
        restarts += 1;
        pause = (pause * 2).min(MAX_RESTART_PAUSE);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A task that panics twice is started three times and ends normally; the panics
    /// do not reach the caller.
    #[tokio::test]
    async fn a_panicking_task_is_started_again() {
        let (_tx, rx) = watch::channel(false);
        let runs = Arc::new(AtomicU32::new(0));
        let counter = runs.clone();
        let restarts = supervise("test", rx, move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    panic!("sweep {n} failed");
                }
            }
        })
        .await;
        assert_eq!((runs.load(Ordering::SeqCst), restarts), (3, 2));
    }

    /// A task that always panics stops being restarted once the server stops.
    #[tokio::test]
    async fn stopping_ends_the_restarts() {
        let (tx, rx) = watch::channel(false);
        let supervisor = tokio::spawn(supervise("test", rx, || async { panic!("always") }));
        // Pauses of 0.1, 0.2 and 0.4 s: at least three restarts in a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send(true).unwrap();
        let restarts = supervisor
            .await
            .expect("the supervisor itself does not panic");
        assert!(restarts >= 3, "{restarts}");
    }
}
