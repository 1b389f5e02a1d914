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
