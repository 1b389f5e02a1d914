//! The conformance suite against SQLite: each test gets a fresh database file in its own
//! temporary folder.

c2m_store::conformance_tests!(async { Some(c2m_store::conformance::SqliteFixture::new().await) });
