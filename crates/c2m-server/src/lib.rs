//! The c2m gRPC service. This is the only crate that knows protobuf.
//!
//! - [`auth`]: bearer tokens with roles, checked in one tower layer (with, under mutual
//!   TLS, the factory's client certificate).
//! - [`tls`]: the listener's TLS and client CA from `--tls-*` files, the names a client
//!   certificate gives a factory, and the client side the example binaries share.
//! - [`handshake`]: a connection's TLS handshake and HTTP/2 preface, under
//!   `--handshake-timeout`, before tonic sees it; who the peer is, for [`auth`].
//! - [`config`]: settings from flags and environment variables.
//! - [`app`]: [`app::Application`] binds a listener, opens the store and serves until a
//!   shutdown future resolves; `main` and the tests use the same path.
//! - [`services`]: one module per gRPC service, each a thin translation between protobuf
//!   and the store.
//! - [`limits`]: load shedding (RESOURCE_EXHAUSTED beyond `--max-in-flight`).
//! - [`convert`]: protobuf <-> domain conversions; request validation errors name the field.
//! - [`status`]: the one function that turns a store or domain error into a gRPC status.
//! - [`forecast`]: the open batch's fill forecast (store input, domain maths) and the
//!   advice that joins it with the planner's cost of the sku.
//! - [`planning`]: planning cycles (queue → scenario → planner → stored plan) and the
//!   catalogue ↔ scenario conversions.
//! - [`sweeper`]: the background task that fails batches at their campaign's deadline.
//! - [`tasks`]: background tasks restarted when they panic.
//! - [`store_lock`]: one `c2m serve` per SQLite store (an OS lock beside the database).
//! - [`webhooks`]: the webhook delivery worker (signed POSTs, retries with backoff and
//!   jitter, disabling after sustained failure) and its HTTP client.
//! - [`cli`]: the `c2m` command line.

// `tonic::Status` is large (it carries metadata and details); handlers and conversions
// return it by value because that is what tonic's generated traits expect, and boxing it
// at every `?` would buy nothing on a path that already allocates per request.
#![allow(clippy::result_large_err)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod convert;
pub mod forecast;
pub mod handshake;
pub mod limits;
pub mod planning;
pub mod services;
pub mod status;
pub mod store_lock;
pub mod sweeper;
pub mod tasks;
pub mod tls;
pub mod webhooks;

pub use app::{Application, SystemClock};
pub use config::Settings;
