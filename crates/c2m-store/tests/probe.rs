//! The write-rate probe runs against both backends and leaves no tables behind.

use c2m_store::probe::raw_write_rate;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_measures_sqlite_and_cleans_up() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("probe").join("probe.db");
    let report = raw_write_rate(path.to_str().expect("utf-8 path"), 200, 8)
        .await
        .expect("probe");
    eprintln!("{report:?}");
    assert_eq!(
        (report.backend, report.orders, report.concurrency),
        ("sqlite", 200, 8)
    );
    assert!(report.orders_per_sec > 0.0);
    assert!(report.p50 <= report.p99);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .expect("reopen");
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'probe_%'")
            .fetch_one(&mut conn)
            .await
            .expect("query");
    assert_eq!(left, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_measures_postgres_and_cleans_up() {
    let Some(admin) = c2m_store::conformance::test_database_url() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let report = raw_write_rate(&url, 200, 8).await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
    let report = report.expect("probe");
    eprintln!("{report:?}");
    assert_eq!((report.backend, report.orders), ("postgres", 200));
    assert!(report.p50 <= report.p99);
}
