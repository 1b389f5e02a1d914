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

/// A production PostgreSQL usually wants TLS. The store speaks it (sqlx with rustls, the
/// system's root certificates, `sslrootcert` for a private CA): with `sslmode=verify-full`
/// and the test server's CA the store opens, migrates, and every session of its pool is
/// encrypted (PostgreSQL's own `pg_stat_ssl` says so); `sslmode=require` encrypts without
/// verifying. A CA that did not sign the server's certificate is refused at once, naming
/// the certificate: before, sqlx had no TLS at all, and `sslmode=require` was retried for
/// 30 seconds as a database not up yet, then failed with "built without TLS support".
#[tokio::test]
async fn the_store_speaks_tls_to_postgres_and_verifies_the_server() {
    use sqlx::{ConnectOptions, Connection};
    let Some(admin) = c2m_store::conformance::test_database_url() else {
        return;
    };
    let Some(ca) = c2m_store::conformance::test_database_tls_ca() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let name = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let with = |params: &str| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{params}")
    };
    let encrypted_sessions = async |admin: &str| -> (i64, i64) {
        let mut conn = c2m_store::postgres::connect_options(admin)
            .expect("options")
            .connect()
            .await
            .expect("admin connection");
        let row: (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
        )
        .bind(&name)
        .fetch_one(&mut conn)
        .await
        .expect("pg_stat_ssl");
        conn.close().await.ok();
        row
    };

    for params in [
        format!("sslmode=verify-full&sslrootcert={ca}"),
        "sslmode=require".to_owned(),
    ] {
        let store = c2m_store::open(&with(&params))
            .await
            .unwrap_or_else(|e| panic!("open with {params}: {e}"));
        store.ping().await.expect("ping");
        let (sessions, encrypted) = encrypted_sessions(&admin).await;
        assert!(sessions >= 1, "{params}: no session of the store");
        assert_eq!(encrypted, sessions, "{params}: a session in plain text");
        drop(store);
    }

    // Another CA: refused at once (not retried as a database starting up).
    let other = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = params.self_signed(&other).expect("a CA of nobody's");
    let dir = tempfile::tempdir().expect("dir");
    let other_path = dir.path().join("other-ca.pem");
    std::fs::write(&other_path, other_ca.pem()).expect("write");
    let started = std::time::Instant::now();
    let err = match c2m_store::open(&with(&format!(
        "sslmode=verify-full&sslrootcert={}",
        other_path.display()
    )))
    .await
    {
        Ok(_) => panic!("a server certificate that CA did not sign was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "retried for {:?}: {err}",
        started.elapsed()
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}
