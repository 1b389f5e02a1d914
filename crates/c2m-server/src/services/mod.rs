//! One module per gRPC service. Handlers parse the request (see [`crate::convert`]), call
//! the store once, and convert the answer; they hold no state of their own beyond the
//! shared [`Ctx`].

use std::sync::Arc;

use c2m_domain::Clock;
use c2m_store::Store;

pub mod campaign;
pub mod catalogue;
pub mod events;
pub mod factory;
pub(crate) mod feed;
pub mod ledger;
pub mod levers;
pub mod planning;
pub mod preorder;
pub mod purchasing;
pub mod tail;
pub mod webhooks;

/// What every service needs: the store and the clock (injectable so tests control time).
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    /// The planning horizon, which factory calendars in the catalogue must match.
    pub plan_horizon: crate::config::PlanHorizon,
    /// The solver's time limit on each volume `GetAdvice` prices (`--advice-time-limit`).
    pub advice_time_limit: std::time::Duration,
    /// `--request-timeout`: a call's budget when the limits layer did not give one.
    pub request_timeout: std::time::Duration,
}
