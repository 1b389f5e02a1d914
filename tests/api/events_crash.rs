//! Events under SIGKILL: a real `c2m serve` process is killed at random moments while
//! clients place orders (each retried with its idempotency key until its outcome is
//! known), a subscriber follows `EventService.Subscribe` and a webhook receiver (a real
//! HTTP server in the test) takes deliveries. The process is restarted on the same
//! database each time; the subscriber resumes from the last number it saw.
//!
//! Checked: the subscriber saw every event exactly once, in order (each event it got is
//! numbered one above the one before, across every restart, up to the last event stored);
//! every acknowledged pre-order has exactly one `preorder.placed` event; every event
//! reached the receiver at least once, each delivery with a valid signature.
//!
//! `C2M_EVENTS_CRASH_ROUNDS` (default 6) sets the number of kills; `C2M_CRASH_SEED`
//! replays the kill moments. Runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL` is
//! set (the c2m process is killed, never PostgreSQL).

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use c2m_domain::events::{Event, EventData};
use c2m_domain::webhook::verify;
use c2m_proto::v1 as pb;
use c2m_proto::v1::event_service_client::EventServiceClient;

use crate::common::*;
use crate::webhooks_e2e::{register, Receiver};

const FLAGS: [&str; 6] = [
    "--event-poll",
    "200ms",
    "--webhook-timeout",
    "1s",
    "--webhook-max-backoff",
    "200ms",
];

async fn spawn(url: &str, dir: &std::path::Path) -> ServerProcess {
    ServerProcess::spawn_with(url, dir, &FLAGS).await
}

async fn kill(server: &mut ServerProcess) {
    server.kill();
    let _ = server.child.wait().await;
}

/// Whether a failed call's outcome is still open (the server went away), so it must be
/// sent again with the same key.
fn open_outcome(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
    )
}

async fn crash_run(url: String, dir: std::path::PathBuf) {
    let rounds: usize = std::env::var("C2M_EVENTS_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let seed: u64 = std::env::var("C2M_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("events crash test: {rounds} rounds, C2M_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);

    let receiver = Receiver::start(&[]).await;
    let mut server = spawn(&url, &dir).await;
    let addr = Arc::new(Mutex::new(server.addr));
    let mut c = Clients::connect(server.addr).await;
    let secret = register(&c, &receiver.url(), &["*"])
        .await
        .expect("register")
        .secret;
    let cmp = c
        .campaigns
        .create_campaign(campaign_request("events-crash", 7))
        .await
        .expect("campaign")
        .into_inner()
        .id;

    let stop = Arc::new(AtomicBool::new(false));
    let current = |addr: &Arc<Mutex<SocketAddr>>| *addr.lock().expect("lock");

    // Placers: every order is sent until its outcome is known.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut placers = Vec::new();
    for t in 0..3 {
        let (addr, stop, acked, cmp) = (
            addr.clone(),
            stop.clone(),
            acknowledged.clone(),
            cmp.clone(),
        );
        placers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let key = format!("crash-{t}-{i}");
                loop {
                    let Ok(mut c) = Clients::try_connect_addr(current(&addr)).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    match c
                        .preorders
                        .place_preorder(place(&key, &cmp, &format!("consumer-{t}-{i}"), 1))
                        .await
                    {
                        Ok(p) => {
                            acked.lock().expect("lock").push(p.into_inner().id);
                            break;
                        }
                        Err(s) if open_outcome(&s) => {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(s) => panic!("order {key} refused: {s:?}"),
                    }
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    // The subscriber: resumes from the last number it saw, and checks each event is the
    // next one.
    let seen = Arc::new(Mutex::new(Vec::<Event>::new()));
    let subscriber = {
        let (addr, seen) = (addr.clone(), seen.clone());
        tokio::spawn(async move {
            let mut cursor = 0i64;
            loop {
                let Ok(c) = Clients::try_connect_addr(current(&addr)).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut client = EventServiceClient::new(c.channel.clone());
                let Ok(stream) = client
                    .subscribe(pb::SubscribeEventsRequest {
                        after_seq: Some(cursor),
                        campaign_id: String::new(),
                    })
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut stream = stream.into_inner();
                while let Ok(Some(m)) = stream.message().await {
                    if let Some(pb::event_stream_message::Message::Event(e)) = m.message {
                        let e: Event = serde_json::from_str(&e.json).expect("event JSON");
                        assert_eq!(e.seq, cursor + 1, "the stream skipped or repeated");
                        cursor = e.seq;
                        seen.lock().expect("lock").push(e);
                    }
                }
            }
        })
    };

    for round in 0..rounds {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(200..900))).await;
        kill(&mut server).await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
        server = spawn(&url, &dir).await;
        *addr.lock().expect("lock") = server.addr;
        eprintln!("events crash: round {round} restarted on {}", server.addr);
    }
    stop.store(true, Ordering::SeqCst);
    for p in placers {
        p.await.expect("placer");
    }

    // Everything stored reaches the subscriber and the receiver.
    c = Clients::connect(server.addr).await;
    let mut live = EventServiceClient::new(c.channel.clone())
        .subscribe(pb::SubscribeEventsRequest {
            after_seq: None,
            campaign_id: String::new(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let last = match live
        .message()
        .await
        .expect("first message")
        .and_then(|m| m.message)
    {
        Some(pb::event_stream_message::Message::Heartbeat(h)) => h.last_seq,
        other => panic!("a heartbeat first, got {other:?}"),
    };
    let started = std::time::Instant::now();
    while seen.lock().expect("lock").len() < last as usize {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the subscriber caught up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    subscriber.abort();
    let events = seen.lock().expect("lock").clone();
    assert_eq!(events.len() as i64, last);
    let mut placed: HashMap<String, usize> = HashMap::new();
    for e in &events {
        if let EventData::PreorderPlaced { preorder, .. } = &e.data {
            *placed
                .entry(preorder.preorder_id.as_str().to_owned())
                .or_default() += 1;
        }
    }
    for p in acknowledged.lock().expect("lock").iter() {
        assert_eq!(placed.get(p), Some(&1), "pre-order {p}: one placed event");
    }
    assert!(placed.values().all(|n| *n == 1));

    // Deliveries are at least once: wait for every number, not for a count.
    let all: BTreeSet<i64> = (1..=last).collect();
    let started = std::time::Instant::now();
    let seqs = loop {
        let seqs: BTreeSet<i64> = receiver
            .got()
            .iter()
            .filter(|g| g.answer == crate::webhooks_e2e::Answer::Status(200))
            .map(|g| serde_json::from_slice::<Event>(&g.body).expect("event").seq)
            .collect();
        if seqs == all || started.elapsed() > Duration::from_secs(60) {
            break seqs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        all.difference(&seqs).collect::<Vec<_>>(),
        Vec::<&i64>::new(),
        "every event reached the receiver"
    );
    let now = chrono::Utc::now().timestamp();
    for g in receiver.got() {
        assert_eq!(
            verify(&g.signature, secret.as_bytes(), &g.body, now, 3600),
            Ok(())
        );
    }
    eprintln!(
        "events crash: {last} events, {} deliveries ({} duplicates), {} orders acknowledged",
        receiver.got().len(),
        receiver.got().len() - seqs.len(),
        acknowledged.lock().expect("lock").len()
    );
    kill(&mut server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_events_survive_sigkill_exactly_once_by_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("c2m.db").display());
    crash_run(url, dir.path().to_path_buf()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_events_survive_sigkill_exactly_once_by_sequence() {
    let Some(admin) = pg_admin_url() else { return };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let dir = tempfile::tempdir().expect("tempdir");
    crash_run(url.clone(), dir.path().to_path_buf()).await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}
