//! Group commit on SQLite: concurrent writes share transactions, and the results are the
//! same as one transaction each (the conformance suite checks the semantics both ways).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use c2m_domain::{CampaignSpec, ConsumerId, IdempotencyKey, PreorderStatus};
use c2m_store::sqlite::{SqliteOptions, SqliteStore};
use c2m_store::{CreateCampaign, PlacePreorder, Store};
use chrono::{Duration, TimeZone, Utc};

async fn place_many(max_group: usize) -> (c2m_store::sqlite::WriterStats, std::time::Duration) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let store = Arc::new(
        SqliteStore::open_with(&dir.path().join("c2m.db"), SqliteOptions { max_group })
            .await
            .expect("open"),
    );
    let elapsed = place_200(&store).await;
    (store.writer_stats(), elapsed)
}

/// 200 single-unit orders on a new campaign from 40 tasks at once; checks that its 8
/// batches locked once each, and returns how long the orders took.
async fn place_200(store: &Arc<SqliteStore>) -> std::time::Duration {
    let now = Utc
        .with_ymd_and_hms(2030, 3, 1, 9, 0, 0)
        .single()
        .expect("time");
    c2m_store::conformance::ensure_products(&**store, &["mug"]).await;
    let campaign = store
        .create_campaign(
            &CreateCampaign {
                idempotency_key: IdempotencyKey::parse("create-1").expect("key"),
                spec: CampaignSpec {
                    sku: "mug".into(),
                    title: "Mug".into(),
                    currency: "CNY".into(),
                    unit_price: 1200,
                    deposit: 300,
                    batch_threshold: 25,
                    batch_cap: None,
                    max_per_order: None,
                    max_per_consumer: None,
                    total_cap: None,
                    opens_at: Some(now),
                    deadline: now + Duration::days(3),
                    price_ladder: vec![],
                    balance_window_secs: None,
                    ships_within_days: None,
                },
            },
            now,
        )
        .await
        .expect("create");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..40 {
        let (store, id) = (store.clone(), campaign.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut locked = 0;
            for i in 0..5 {
                let p = store
                    .place_preorder(
                        &PlacePreorder {
                            idempotency_key: IdempotencyKey::parse(&format!("k-{t}-{i}"))
                                .expect("key"),
                            campaign_id: id.clone(),
                            consumer_id: ConsumerId::parse(&format!("con_{t}")).expect("id"),
                            quantity: 1,
                            source: Default::default(),
                        },
                        now + Duration::hours(1),
                    )
                    .await
                    .expect("place");
                locked += usize::from(p.status == PreorderStatus::Locked);
            }
            locked
        }));
    }
    let mut locked = 0;
    for t in tasks {
        locked += t.await.expect("task");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        locked, 8,
        "200 units lock 8 batches of 25, each exactly once"
    );
    let progress = store.get_campaign(&campaign.id).await.expect("get");
    assert_eq!(
        (progress.batches_locked, progress.units_committed),
        (8, 200)
    );
    elapsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_transactions() {
    let (grouped, grouped_time) = place_many(64).await;
    let (alone, alone_time) = place_many(1).await;
    eprintln!("grouped: {grouped:?} in {grouped_time:?}; one by one: {alone:?} in {alone_time:?}");
    // 200 orders, the campaign and the product it sells.
    assert_eq!(grouped.writes, 202);
    assert!(grouped.transactions < grouped.writes, "{grouped:?}");
    assert_eq!(alone.transactions, alone.writes);
}

/// The database file's length: it grows only when a checkpoint copies pages from the
/// write-ahead log into it.
fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).expect("the database file").len()
}

/// Committed pages reach the database file from the store's checkpointer, with no commit
/// of the writer's doing it (200 orders are far below the writer's own checkpoint, 10,000
/// pages; SQLite's default of 1,000 would not copy them either), and `close` closes the
/// checkpointer's connection too, so the last connection to close removes the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpointer_copies_commits_and_close_removes_the_log() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("c2m.db");
    let wal = dir.path().join("c2m.db-wal");
    let store = Arc::new(SqliteStore::open(&path).await.expect("open"));
    let opened = file_len(&path);
    place_200(&store).await;
    // Under SQLite's default backstop (1,000 pages of 4,096 bytes and a 24-byte header)
    // the writer's own commits would copy nothing either: the log is shorter than that.
    let log = file_len(&wal);
    assert!(
        log < 1_000 * 4_120,
        "the log is {log} bytes: the test needs fewer orders"
    );
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while file_len(&path) <= opened && Instant::now() < deadline {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(
        file_len(&path) > opened,
        "the file stayed at {opened} bytes: nothing copied the log's pages into it"
    );
    assert!(wal.exists(), "the store is open, so its log is there");
    let store = Arc::try_unwrap(store).unwrap_or_else(|_| panic!("the store is still shared"));
    store.close().await;
    // sqlx finishes a closed connection on its own thread, so the last one to close (the
    // one that removes the log) may finish just after `close` returns.
    let deadline = Instant::now() + StdDuration::from_secs(5);
    while wal.exists() && Instant::now() < deadline {
        tokio::time::sleep(StdDuration::from_millis(20)).await;
    }
    assert!(!wal.exists(), "close left the write-ahead log behind");
}
