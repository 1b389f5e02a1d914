//! One module per gRPC service. Handlers parse the request (see [`crate::convert`]), call
//! the store once, and convert the answer; they hold no state of their own beyond the
//! shared [`Ctx`].

use std::sync::Arc;

use c2m_domain::Clock;
use c2m_store::Store;

pub mod campaign;
pub mod catalogue;
pub mod factory;
pub mod ledger;
pub mod levers;
pub mod planning;
pub mod preorder;

/// What every service needs: the store and the clock (injectable so tests control time).
#[derive(Clone)]
pub struct Ctx {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
}
