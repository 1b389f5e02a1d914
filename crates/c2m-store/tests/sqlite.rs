//! The conformance suite against SQLite: each test gets a fresh database file in its own
//! temporary folder. It runs twice: with group commit (the default) and without.

c2m_store::conformance_tests!(async { Some(c2m_store::conformance::SqliteFixture::new().await) });

mod without_group_commit {
    c2m_store::conformance_tests!(async {
        Some(
            c2m_store::conformance::SqliteFixture::with_options(c2m_store::sqlite::SqliteOptions {
                max_group: 1,
            })
            .await,
        )
    });
}
