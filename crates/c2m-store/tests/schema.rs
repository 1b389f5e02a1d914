//! A database migrated by a newer c2m is refused by an older one, by name: the store says
//! which migration it does not know and which is its own latest, and leaves the database as
//! it was. (sqlx alone says "migration N was previously applied but is missing in the
//! resolved migrations", which does not tell an operator that the binary is the old one.)

use c2m_store::StoreError;

/// The newest migration in `migrations/<backend>`, read from the files: the number the
/// refusal must name as this build's latest.
fn latest_migration(backend: &str) -> i64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../migrations")
        .join(backend);
    std::fs::read_dir(&dir)
        .expect("migrations folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.split('_').next()?.parse::<i64>().ok()
        })
        .max()
        .expect("at least one migration")
}

/// What a newer c2m leaves in sqlx's table: one more migration, applied.
const FUTURE: &str = "INSERT INTO _sqlx_migrations \
     (version, description, installed_on, success, checksum, execution_time) \
     VALUES (9999, 'from a newer c2m', CURRENT_TIMESTAMP, TRUE, $1, 1)";

fn assert_newer_schema(err: StoreError, known: i64) {
    match &err {
        StoreError::NewerSchema { applied, known: k } => assert_eq!((*applied, *k), (9999, known)),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let text = err.to_string();
    for part in ["newer c2m", "migration 9999", &format!("up to {known}")] {
        assert!(text.contains(part), "{text:?} does not say {part:?}");
    }
}

/// What `c2m_store::schema` says of a store: its newest migration against this build's.
fn schema(applied: i64, known: i64) -> c2m_store::Schema {
    c2m_store::Schema { applied, known }
}

#[tokio::test]
async fn sqlite_refuses_a_database_a_newer_c2m_migrated() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("c2m.db");
    c2m_store::sqlite::SqliteStore::open(&path)
        .await
        .expect("a fresh store")
        .close()
        .await;
    let url = format!("sqlite://{}", path.display());
    let latest = latest_migration("sqlite");
    let read = || async { c2m_store::schema(&url).await.expect("schema") };
    assert_eq!(read().await, schema(latest, latest));
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .expect("connect");
    sqlx::query(FUTURE)
        .bind(vec![0u8])
        .execute(&mut conn)
        .await
        .expect("insert");
    conn.close().await.expect("close");
    assert_eq!(read().await, schema(9999, latest));

    let err = match c2m_store::sqlite::SqliteStore::open(&path).await {
        Ok(_) => panic!("an older c2m opened a newer database"),
        Err(e) => e,
    };
    assert_newer_schema(err, latest);
}

#[tokio::test]
async fn postgres_refuses_a_database_a_newer_c2m_migrated() {
    use sqlx::Connection;
    let Some(admin) = c2m_store::conformance::test_database_url() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let outcome = async {
        c2m_store::postgres::PgStore::connect(&url)
            .await
            .expect("a fresh store")
            .close()
            .await;
        let before = c2m_store::schema(&url).await.expect("schema");
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        sqlx::query(FUTURE)
            .bind(vec![0u8])
            .execute(&mut conn)
            .await
            .expect("insert");
        conn.close().await.expect("close");
        let after = c2m_store::schema(&url).await.expect("schema");
        let opened = c2m_store::postgres::PgStore::connect(&url).await;
        (before, after, opened)
    }
    .await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
    let (before, after, opened) = outcome;
    let latest = latest_migration("postgres");
    assert_eq!(before, schema(latest, latest));
    assert_eq!(after, schema(9999, latest));
    let err = match opened {
        Ok(_) => panic!("an older c2m opened a newer database"),
        Err(e) => e,
    };
    assert_newer_schema(err, latest);
}
