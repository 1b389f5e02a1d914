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

/// What a newer c2m leaves in sqlx's table: one more migration, applied (`CHECKSUM`: a
/// byte string in the backend's SQL).
const FUTURE: &str = "INSERT INTO _sqlx_migrations \
     (version, description, installed_on, success, checksum, execution_time) \
     VALUES (9999, 'from a newer c2m', CURRENT_TIMESTAMP, TRUE, CHECKSUM, 1)";

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

/// A store made at `url`, then given a migration this build lacks: `c2m_store::schema`
/// says so, and opening it is refused by name.
async fn a_newer_database_is_refused(url: String, backend: &str, checksum: &str) {
    drop(c2m_store::open(&url).await.expect("a fresh store"));
    let latest = latest_migration(backend);
    let schema = |applied| c2m_store::Schema {
        applied,
        known: latest,
    };
    let read = || async { c2m_store::schema(&url).await.expect("schema") };
    assert_eq!(read().await, schema(latest));
    let future = FUTURE.replace("CHECKSUM", checksum);
    c2m_store::conformance::run_script(&url, &future).await;
    assert_eq!(read().await, schema(9999));
    let err = match c2m_store::open(&url).await {
        Ok(_) => panic!("an older c2m opened a newer database"),
        Err(e) => e,
    };
    assert_newer_schema(err, latest);
}

#[tokio::test]
async fn sqlite_refuses_a_database_a_newer_c2m_migrated() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("c2m.db").display());
    a_newer_database_is_refused(url, "sqlite", "X'00'").await;
}

#[tokio::test]
async fn postgres_refuses_a_database_a_newer_c2m_migrated() {
    let Some(admin) = c2m_store::conformance::test_database_url() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let case = tokio::spawn(a_newer_database_is_refused(
        url.clone(),
        "postgres",
        "'\\x00'::bytea",
    ));
    let outcome = case.await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
