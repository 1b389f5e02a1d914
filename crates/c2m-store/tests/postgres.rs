//! The conformance suite against PostgreSQL. Runs only when `TEST_DATABASE_URL` names a
//! server and a database to administer from, for example
//! `TEST_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres`; each test
//! creates its own database `c2m_test_<random>` there and drops it afterwards. Without the
//! variable each test prints a note and passes.

async fn fixture() -> Option<c2m_store::conformance::PgFixture> {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(c2m_store::conformance::PgFixture::new(&url).await),
        _ => {
            eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL conformance tests");
            None
        }
    }
}

c2m_store::conformance_tests!(fixture());

/// The session settings that keep a stalled replica from blocking the others.
#[tokio::test]
async fn sessions_carry_the_lock_and_idle_timeouts_and_generic_plans() {
    use sqlx::{ConnectOptions, Connection};
    let Ok(admin) = std::env::var("TEST_DATABASE_URL") else {
        eprintln!("skipped: set TEST_DATABASE_URL to run the PostgreSQL tests");
        return;
    };
    let mut conn = c2m_store::postgres::connect_options(&admin)
        .expect("options")
        .connect()
        .await
        .expect("connect");
    let (lock, idle, app, plans): (String, String, String, String) = sqlx::query_as(
        "SELECT current_setting('lock_timeout'), \
         current_setting('idle_in_transaction_session_timeout'), \
         current_setting('application_name'), current_setting('plan_cache_mode')",
    )
    .fetch_one(&mut conn)
    .await
    .expect("settings");
    assert_eq!(
        (lock.as_str(), idle.as_str(), app.as_str(), plans.as_str()),
        ("10s", "1min", "c2m", "force_generic_plan")
    );
    conn.close().await.ok();
}

/// Group commit on PostgreSQL. On this current-thread runtime the 27 placements of
/// `place_together` after its first order are all queued before the campaign's writer first
/// runs, so they form one group: one transaction, one campaign lock, a savepoint each, and
/// idempotency keys looked up together (including a retry of the first order and one of an
/// order earlier in the group), and still each request
/// gets the answer it would get alone, the refused ones write nothing, each batch locks
/// once and nothing is oversold.
#[tokio::test]
async fn placements_queued_together_commit_in_one_transaction() {
    use c2m_store::conformance::{check_placed_together, place_together, run_case};
    let Some(fx) = fixture().await else { return };
    let store = fx.pg_store();
    run_case(std::sync::Arc::new(fx), move |fx| async move {
        let before = store.writer_stats();
        let (campaign, accepted) = place_together(&*fx).await;
        let after = store.writer_stats();
        assert_eq!(
            (
                after.writes - before.writes,
                after.transactions - before.transactions,
                after.groups - before.groups,
            ),
            (28, 2, 1),
            "{before:?} -> {after:?}"
        );
        check_placed_together(&*fx, &campaign, &accepted).await;
    })
    .await;
}
