//! The end-to-end tests, in one test crate (one binary to link instead of fourteen).
//!
//! Each module starts the real server: in process on a random port ([`common::TestServer`])
//! or as real `c2m` processes ([`common::ServerProcess`]), and drives it with the generated
//! tonic clients. The PostgreSQL cases run when `TEST_DATABASE_URL` names a server to
//! administer from (see `docs/testing.md`); without it they say once that they are skipped,
//! and under `CI=true` they fail instead.
//!
//! Run one module with a filter, for example `cargo test --test api mixed_crash::`.

mod common;

mod access_control;
mod architecture;
mod bench_flags;
mod deadline_e2e;
mod docs_links;
mod events_crash;
mod events_e2e;
mod factory_crash;
mod factory_e2e;
mod hostile_grpc;
mod hostile_peers;
mod ledger_e2e;
mod levers_e2e;
mod limits;
mod mixed_crash;
mod planning_e2e;
mod pooling_e2e;
mod postgres_e2e;
#[cfg(unix)]
mod private_files;
mod promise_e2e;
mod serve_flags;
mod serve_lock;
mod story_example;
mod threshold_race;
mod tls;
mod webhooks_e2e;
mod what_if_example;
