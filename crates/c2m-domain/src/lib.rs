//! The language of c2m, with no I/O.
//!
//! Everything the service decides about money and pooling is decided here, in plain
//! functions over plain values, so that the store (which persists) and the server (which
//! speaks gRPC) only carry decisions out. The layout:
//!
//! - [`access`]: roles and the principal a bearer token stands for.
//! - [`money`]: [`Currency`] and [`Money`], integer minor units, never floats.
//! - [`ids`]: newtypes for campaign, batch, pre-order and consumer ids.
//! - [`campaign`]: a campaign's terms ([`CampaignSpec`], validated into [`CampaignTerms`]).
//! - [`pooling`]: the admission rule that pools a pre-order into a batch and says when the
//!   batch locks.
//! - [`preorder`]: pre-orders and batches as stored and shown.
//! - [`ledger`]: the chart of accounts, balanced transactions, deposit holds that resolve
//!   exactly once, the balance rule.
//! - [`pricing`]: volume price ladders; a batch pays the tier it reached at lock.
//! - [`production`]: a work order's life at its factory: which progress report is
//!   allowed when.
//! - [`idempotency`]: request fingerprints for idempotency keys.
//! - [`events`]: what consumers and merchants hear about (the outbox's events).
//! - [`webhook`]: the signature of a webhook delivery (HMAC-SHA256 over time and body).
//! - [`clock`]: an injectable clock, so deadlines can be tested without waiting.
//! - [`forecast`]: the fill forecast: will the open batch reach its threshold by the
//!   deadline, and what if the threshold or deadline changed.
//! - [`error`]: [`DomainError`], each variant saying what the caller did wrong.

pub mod access;
pub mod campaign;
pub mod clock;
pub mod error;
pub mod events;
pub mod forecast;
pub mod idempotency;
pub mod ids;
pub mod ledger;
pub mod levers;
pub mod material;
pub mod money;
pub mod page;
pub mod pooling;
pub mod preorder;
pub mod pricing;
pub mod production;
pub mod webhook;

pub use access::{Principal, Role};
pub use campaign::{
    days_late, promised_day_end, Campaign, CampaignProgress, CampaignSpec, CampaignStatus,
    CampaignTerms,
};
pub use clock::{Clock, ManualClock};
pub use error::{DomainError, Refusal};
pub use idempotency::{Fingerprint, IdempotencyKey};
pub use ids::{BatchId, CampaignId, ConsumerId, EventId, PreorderId, WebhookEndpointId};
pub use ledger::{
    Account, CampaignMoney, HoldState, LedgerEntry, LedgerTxn, MoneyState, Posting, TxnKind,
};
pub use money::{Currency, Money};
pub use page::{Page, PageQuery, PageRequest};
pub use pooling::{Admission, PoolState};
pub use preorder::{Batch, BatchStatus, Preorder, PreorderMoney, PreorderSource, PreorderStatus};
pub use pricing::{PriceLadder, PriceTier, TierPosition};
pub use production::{Progress, Tally, WorkOrderState};
