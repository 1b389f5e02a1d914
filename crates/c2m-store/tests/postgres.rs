//! The conformance suite against PostgreSQL. Runs only when `TEST_DATABASE_URL` names a
//! server and a database to administer from, for example
//! `TEST_DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres`; each test
//! creates its own database `c2m_test_<random>` there and drops it afterwards. Without the
//! variable each test prints a note and passes.

async fn fixture() -> Option<c2m_store::conformance::PgFixture> {
    match c2m_store::conformance::test_database_url() {
        Some(url) => Some(c2m_store::conformance::PgFixture::new(&url).await),
        None => None,
    }
}

c2m_store::conformance_tests!(fixture());

/// The session settings that keep a stalled replica from blocking the others.
#[tokio::test]
async fn sessions_carry_the_lock_and_idle_timeouts_and_generic_plans() {
    use sqlx::{ConnectOptions, Connection};
    let Some(admin) = c2m_store::conformance::test_database_url() else {
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
/// runs, so they form one group: one transaction, one campaign lock, the placements
/// admitted together, and idempotency keys looked up together (including a retry of the
/// first order and one of an order earlier in the group), and still each request
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

/// The ledger's balance rule (migration 0006): an INSERT on `ledger_postings` whose legs
/// leave a transaction unbalanced fails with a check violation, whether it is that
/// transaction's first statement or a later one adding legs; balanced legs go in.
#[tokio::test]
async fn every_statement_leaves_each_ledger_transaction_balanced() {
    use sqlx::{ConnectOptions, Connection};
    let Some(fx) = fixture().await else { return };
    let mut conn = c2m_store::postgres::connect_options(fx.url())
        .expect("options")
        .connect()
        .await
        .expect("connect");
    // A campaign for the transactions to belong to, written as the store writes one.
    let mut tx = conn.begin().await.expect("begin");
    sqlx::raw_sql(
        "INSERT INTO campaigns (id, sku, title, currency, unit_price, deposit, batch_threshold, \
         opens_at, deadline, created_at) VALUES ('cmp_t', 'sku', 't', 'CNY', 100, 10, 1, \
         now(), now() + interval '1 day', now()); \
         INSERT INTO ledger_txns (id, campaign_id, batch_id, kind, currency, at) \
         VALUES ('ltx_a', 'cmp_t', NULL, 'hold', 'CNY', now()), \
                ('ltx_b', 'cmp_t', NULL, 'hold', 'CNY', now());",
    )
    .execute(&mut *tx)
    .await
    .expect("a campaign and two transactions");
    let seq = |id: &str| format!("(SELECT seq FROM ledger_txns WHERE id = '{id}')");
    let insert = |legs: &[(&str, &str, i64)]| {
        let values: Vec<String> = legs
            .iter()
            .map(|(id, account, amount)| format!("({}, '{account}', {amount})", seq(id)))
            .collect();
        format!(
            "INSERT INTO ledger_postings (txn_seq, account, amount) VALUES {}",
            values.join(", ")
        )
    };
    let refused = |e: sqlx::Error| match e {
        sqlx::Error::Database(db) => {
            assert_eq!(db.code().as_deref(), Some("23514"), "{db}");
            assert!(db.message().contains("does not balance"), "{db}");
        }
        other => panic!("expected a check violation, got {other}"),
    };
    for (name, legs) in [
        ("one leg alone", vec![("ltx_a", "consumer:c", -5)]),
        (
            "one balanced and one not",
            vec![
                ("ltx_a", "consumer:c", -5),
                ("ltx_a", "holds:cmp_t", 5),
                ("ltx_b", "consumer:d", -7),
                ("ltx_b", "holds:cmp_t", 6),
            ],
        ),
    ] {
        let mut sp = tx.begin().await.expect("savepoint");
        let e = sqlx::query(&insert(&legs))
            .execute(&mut *sp)
            .await
            .expect_err(name);
        refused(e);
        sp.rollback().await.expect("rollback to the savepoint");
    }
    sqlx::query(&insert(&[
        ("ltx_a", "consumer:c", -5),
        ("ltx_a", "holds:cmp_t", 5),
    ]))
    .execute(&mut *tx)
    .await
    .expect("balanced legs go in");
    // A later statement adding one unbalanced leg to the balanced transaction.
    let mut sp = tx.begin().await.expect("savepoint");
    let e = sqlx::query(&insert(&[("ltx_a", "escrow:cmp_t", 1)]))
        .execute(&mut *sp)
        .await
        .expect_err("a leg added later");
    refused(e);
    sp.rollback().await.expect("rollback to the savepoint");
    tx.rollback().await.expect("rollback");
    conn.close().await.ok();
    c2m_store::conformance::Fixture::teardown(&fx).await;
}
