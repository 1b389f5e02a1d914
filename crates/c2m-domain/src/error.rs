//! Errors a caller can act on. Each variant maps to exactly one gRPC status in the server
//! (see `c2m_server::status`), so the variant is chosen by what the caller must do next:
//! fix the request, wait for a state change, or look elsewhere.
//!
//! Every error also has a stable machine-readable **reason** (`UPPER_SNAKE_CASE`, see
//! [`DomainError::reason`]) and **metadata** (the numbers and names behind it, see
//! [`DomainError::metadata`]). The server sends both as a `google.rpc.ErrorInfo` detail,
//! so a client acts on the reason ("only 3 units still fit the batch": offer 3) without
//! parsing the message, which stays for people and may be reworded at any time. The
//! reasons are part of the API (listed in `docs/api.md`); a new refusal is a new
//! [`Refusal`] variant, never a new sentence.

use chrono::{DateTime, Utc};
use thiserror::Error;

use crate::Money;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    /// The request itself is malformed; retrying it unchanged can never succeed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// A quantity of a material counted in pieces (`crate::material`) that is not a whole
    /// number: malformed like any invalid field (the same reason, `INVALID_FIELD`), with
    /// the material, its unit and the value named for a program as well as a person.
    #[error(
        "invalid {field}: material {material} is counted in pieces ({unit}), \
         so {value} must be a whole number"
    )]
    NotWholePieces {
        field: String,
        material: String,
        unit: String,
        value: String,
    },
    /// Insights asked for in time buckets too narrow for the campaign's span: malformed
    /// like any invalid field (`INVALID_FIELD`, field `bucket_seconds`), with the
    /// narrowest width that fits for a program to ask again with (it was in the message
    /// only; QA 13-B).
    #[error(
        "invalid bucket_seconds: {bucket_secs}-second buckets from the opening to the last \
         pre-order are {buckets}, more than {max}: ask for buckets of at least {narrowest} \
         seconds"
    )]
    TooManyBuckets {
        bucket_secs: i64,
        buckets: i64,
        max: i64,
        narrowest: i64,
    },
    /// The request is well formed but the current state forbids it (closed campaign,
    /// locked batch, sold out); it may succeed later or with other values. The
    /// [`Refusal`] says which rule refused it.
    #[error("{0}")]
    Refused(Refusal),
    /// The thing named does not exist.
    #[error("{entity} {id} not found")]
    NotFound { entity: &'static str, id: String },
    /// A position (a delivery cursor, an acknowledged sequence number) is beyond what
    /// exists: the caller's idea of the state is ahead of the server's, which retrying will
    /// not fix; it must resynchronise from `last` or lower.
    #[error(
        "{what} sequence number {seq} is ahead of factory {factory}'s last work order ({last}); \
         the factory's cursor does not belong to this server's data: resubscribe from {last} or lower"
    )]
    Ahead {
        what: &'static str,
        factory: String,
        seq: i64,
        last: i64,
    },
    /// An event cursor (a subscription's, a webhook replay's) is beyond the last event
    /// stored: the caller's position does not belong to this server's data.
    #[error(
        "event sequence number {seq} is ahead of the last event ({last}); resume from {last} or lower"
    )]
    EventCursorAhead { seq: i64, last: i64 },
    /// The caller is known but may not act for this factory: a factory token naming
    /// another factory (`own` is its own), or a token of a role that acts for none.
    #[error("{}", match own {
        Some(own) => format!("this token is bound to factory {own}; it cannot act for factory {requested}"),
        None => format!("a {role} token cannot act for a factory"),
    })]
    PermissionDenied {
        role: String,
        own: Option<String>,
        requested: String,
    },
    /// An idempotency key was reused for a different request.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyConflict { key: String },
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The stable name of this error for machines (`ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            DomainError::InvalidArgument { .. }
            | DomainError::NotWholePieces { .. }
            | DomainError::TooManyBuckets { .. } => "INVALID_FIELD",
            DomainError::Refused(r) => r.reason(),
            DomainError::NotFound { .. } => "NOT_FOUND",
            DomainError::Ahead { .. } => "CURSOR_AHEAD",
            DomainError::EventCursorAhead { .. } => "EVENT_CURSOR_AHEAD",
            DomainError::PermissionDenied { .. } => "NOT_PERMITTED",
            DomainError::IdempotencyConflict { .. } => "IDEMPOTENCY_KEY_REUSED",
        }
    }

    /// The values behind the error, by name (`ErrorInfo.metadata`; keys in lowerCamelCase
    /// as Google's API guidelines ask).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            DomainError::InvalidArgument { field, .. } => vec![("field", field.clone())],
            DomainError::NotWholePieces {
                field,
                material,
                unit,
                value,
            } => vec![
                ("field", field.clone()),
                ("material", material.clone()),
                ("unit", unit.clone()),
                ("value", value.clone()),
            ],
            DomainError::TooManyBuckets {
                bucket_secs,
                buckets,
                max,
                narrowest,
            } => vec![
                ("field", "bucket_seconds".to_owned()),
                ("bucketSeconds", bucket_secs.to_string()),
                ("buckets", buckets.to_string()),
                ("maxBuckets", max.to_string()),
                ("minBucketSeconds", narrowest.to_string()),
            ],
            DomainError::Refused(r) => r.metadata(),
            DomainError::NotFound { entity, id } => {
                vec![("entity", (*entity).to_owned()), ("id", id.clone())]
            }
            DomainError::Ahead {
                what,
                factory,
                seq,
                last,
            } => vec![
                ("what", (*what).to_owned()),
                ("factoryId", factory.clone()),
                ("seq", seq.to_string()),
                ("last", last.to_string()),
            ],
            DomainError::EventCursorAhead { seq, last } => {
                vec![("seq", seq.to_string()), ("last", last.to_string())]
            }
            DomainError::PermissionDenied {
                role,
                own,
                requested,
            } => {
                let mut m = vec![("role", role.clone())];
                m.extend(own.iter().map(|f| ("factoryId", f.clone())));
                m.push(("requestedFactoryId", requested.clone()));
                m
            }
            DomainError::IdempotencyConflict { key } => vec![("idempotencyKey", key.clone())],
        }
    }

    /// The refusal, when this is one.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            DomainError::Refused(r) => Some(r),
            _ => None,
        }
    }
}

impl From<Refusal> for DomainError {
    fn from(r: Refusal) -> Self {
        DomainError::Refused(r)
    }
}

/// Why the current state refuses a well-formed request (gRPC `FAILED_PRECONDITION`). The
/// message ([`std::fmt::Display`]) is for people; [`Refusal::reason`] and
/// [`Refusal::metadata`] are for programs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    // --- Placing a pre-order ---------------------------------------------------------
    /// The campaign has not opened yet.
    #[error("campaign opens at {}", .opens_at.to_rfc3339())]
    CampaignNotOpen { opens_at: DateTime<Utc> },
    /// The campaign takes no more orders: it passed its deadline, or the merchant closed
    /// or cancelled it (`how`, at `ended_at`; see [`crate::Campaign::ended`]).
    #[error("campaign {how} at {}; it takes no more orders", .ended_at.to_rfc3339())]
    CampaignClosed {
        deadline: DateTime<Utc>,
        how: &'static str,
        ended_at: DateTime<Utc>,
    },
    /// The consumer would hold more than the campaign allows one consumer.
    #[error(
        "consumer already holds {held} {}; {requested} more would pass the limit of {limit} per consumer",
        units(*.held)
    )]
    PerConsumerLimit {
        held: i64,
        requested: i64,
        limit: i64,
    },
    /// The campaign's total cap is reached: nothing more can be sold.
    #[error("campaign is sold out at its total cap of {total_cap} units")]
    SoldOut { total_cap: i64 },
    /// Fewer units are left under the total cap than were asked for.
    #[error(
        "only {left} {} left under the campaign's total cap of {total_cap}",
        units_are(*.left)
    )]
    TotalCapLeft { left: i64, total_cap: i64 },
    /// The order does not fit the open batch whole (orders are never split across batches).
    #[error(
        "only {fits} {} in the open batch (cap {cap}); order at most that many",
        units_fit(*.fits)
    )]
    BatchCap { fits: i64, cap: i64 },
    /// The units would make a campaign or batch total too large to account for in the
    /// ledger (the sum of money would overflow).
    #[error("{units} more units would make the {what} too large to account for")]
    TooLarge { what: &'static str, units: i64 },

    // --- Cancelling -------------------------------------------------------------------
    /// The pre-order's batch locked or failed; its units are no longer withdrawable.
    #[error("the pre-order's batch is no longer open (locked or failed); it cannot be cancelled")]
    BatchNotOpen,
    /// The campaign has passed its deadline; its open batch is being failed and refunded.
    #[error(
        "the campaign has passed its deadline {}; its open batch is being failed and refunded",
        .deadline.to_rfc3339()
    )]
    PastDeadline { deadline: DateTime<Utc> },
    /// The pre-order was already cancelled (under another key).
    #[error("the pre-order is already cancelled")]
    AlreadyCancelled,

    // --- Paying the balance -----------------------------------------------------------
    /// The pre-order was cancelled; there is nothing to pay.
    #[error("the pre-order was cancelled; there is no balance to pay")]
    PreorderCancelled,
    /// The batch has not locked yet; the balance is due once it locks.
    #[error("the pre-order's batch has not locked yet; the balance is due once it locks")]
    BatchNotLocked,
    /// The batch failed; the deposit was released and nothing is due.
    #[error("the pre-order's batch failed; its deposit was released and nothing is due")]
    BatchFailed,
    /// The balance window closed unpaid; the deposit was forfeited.
    #[error("the balance window closed unpaid; the deposit was forfeited")]
    DepositForfeited,
    /// The balance is already paid.
    #[error("the balance of this pre-order is already paid")]
    BalanceAlreadyPaid,
    /// The balance window has closed.
    #[error("the balance window closed at {}", .closed_at.to_rfc3339())]
    BalanceWindowClosed { closed_at: DateTime<Utc> },
    /// A deposit hold was already captured or released.
    #[error("the deposit hold was already {was}; it cannot be {to} as well")]
    HoldAlreadyResolved { was: &'static str, to: &'static str },
    /// The deposit paid exceeds the price the batch locked at.
    #[error("the deposit {deposit} exceeds the full price {full}")]
    DepositExceedsPrice { deposit: Money, full: Money },

    // --- Production at a factory ------------------------------------------------------
    /// The work order's state does not allow this report.
    #[error("work order {work_order} is {state}: cannot report {report}")]
    WorkOrderState {
        work_order: String,
        state: String,
        report: String,
    },
    /// The last quality check of the work order failed units that are not yet accounted
    /// for: a shipment needs a passing check first.
    #[error(
        "work order {work_order}'s last quality check failed ({failed} failed {} so far); report a passing check before shipping",
        units(*.failed)
    )]
    QualityCheckFailed { work_order: String, failed: i64 },

    // --- Catalogue and campaigns ------------------------------------------------------
    /// A product some campaign sells cannot leave the catalogue.
    #[error("product `{sku}` is sold by a campaign and cannot be removed from the catalogue")]
    SkuInUse { sku: String },
    /// A campaign's sku must be a product of the catalogue.
    #[error("sku `{sku}` is not in the catalogue; add the product first")]
    SkuNotInCatalogue { sku: String },
    /// A campaign's currency must be the catalogue's: costs and prices are compared.
    #[error(
        "the campaign's currency {campaign} is not the catalogue's {catalogue}; prices and costs must be in one currency"
    )]
    CurrencyMismatch { campaign: String, catalogue: String },
    /// A factory named for a token is not in the catalogue.
    #[error("factory `{factory}` is not in the catalogue; import it first")]
    FactoryNotInCatalogue { factory: String },
    /// The catalogue is empty.
    #[error("the catalogue is empty: import a scenario first")]
    CatalogueEmpty,

    // --- The merchant's levers (extend, lower, close, cancel) ---------------------------
    /// The campaign no longer sells (its deadline passed, or it was closed or cancelled),
    /// so the lever cannot apply; `field` is the request field that cannot be honoured.
    #[error("the campaign {how} at {}; {refused}", .ended_at.to_rfc3339())]
    CampaignEnded {
        field: &'static str,
        how: &'static str,
        ended_at: DateTime<Utc>,
        /// What cannot be done, in words ("it cannot be closed"): the field alone read as
        /// if the request had tried to change it ("campaign_id cannot be changed", QA 16).
        refused: &'static str,
    },
    /// A deadline may only move later (and so never into the past).
    #[error(
        "{field} {} is not after the current deadline {}; a deadline can only be extended",
        .requested.to_rfc3339(),
        .current.to_rfc3339()
    )]
    DeadlineNotLater {
        field: &'static str,
        current: DateTime<Utc>,
        requested: DateTime<Utc>,
    },
    /// A threshold may only be lowered.
    #[error("{field} {requested} is not below the current threshold {current}; a threshold can only be lowered")]
    ThresholdNotLower {
        field: &'static str,
        current: i64,
        requested: i64,
    },

    /// Advice needs a forecast, and there is none: no batch is open, or the campaign does
    /// not sell now.
    #[error("the campaign has no open batch to forecast (it does not sell now, or no order opened a batch yet)")]
    NothingToForecast,

    // --- Planning ---------------------------------------------------------------------
    /// No batch can be planned now: none waits, or those that wait are due after the
    /// planning horizon (a later cycle takes them) or no factory may make them (no factory
    /// in the catalogue has a line for the sku, or every one with a line rejected them).
    #[error("{}", nothing_to_plan(*due_later, *no_factory))]
    NothingToPlan { due_later: i64, no_factory: i64 },
    /// A batch the plan covers is no longer waiting (planned meanwhile).
    #[error("batch {batch} is no longer waiting for planning; run the cycle again")]
    BatchNotWaiting { batch: String },
    /// A plan gives a batch more units than wait for planning.
    #[error("batch {batch} has {waiting} units waiting for planning, not {planned}; run the cycle again")]
    UnitsNotWaiting {
        batch: String,
        waiting: i64,
        planned: i64,
    },
    /// The stock a plan reserves changed since its scenario was built.
    #[error("stock of `{material}` changed since the scenario was built; run the cycle again")]
    StockChanged { material: String },
    /// A sku waits for planning but is no longer in the catalogue.
    #[error("sku `{sku}` waits for planning but is not in the catalogue")]
    WaitingSkuNotInCatalogue { sku: String },
    /// A factory's calendar was written for another planning horizon than the server's
    /// (`--plan-horizon-days`, `--plan-period-days` changed since it was imported): which
    /// week it closes is no longer known, so planning over it would guess.
    #[error(
        "factory {factory}'s calendar has {calendar_periods} periods, but planning uses \
         {periods} periods of {period_days} days (--plan-horizon-days, --plan-period-days): \
         import the catalogue with a calendar of {periods} periods, or serve with the horizon \
         the calendar was written for"
    )]
    CalendarHorizonMismatch {
        factory: String,
        calendar_periods: i64,
        periods: i64,
        period_days: i64,
    },
    /// Factory calendars too far apart for one scenario: the version 2 scenario that keeps
    /// every calendar on its dates would have more periods than a scenario may, so it could
    /// not be imported back. `ExportScenario` refuses to write it, and a catalogue change
    /// (`ImportScenario`) refuses to leave the calendars so. Nothing is written; the
    /// calendars that span it are named.
    #[error(
        "the factories' calendars span {periods} periods of {period_days} days, from factory \
         {first_factory}'s start at {starts_at} to factory {last_factory}'s end at {ends_at}; \
         a scenario has at most {max_periods} periods, so an export of them could not be \
         imported back: import one of these factories again with a calendar nearer the \
         others, or without one"
    )]
    CalendarsSpanTooLong {
        first_factory: String,
        starts_at: DateTime<Utc>,
        last_factory: String,
        ends_at: DateTime<Utc>,
        periods: i64,
        max_periods: i64,
        period_days: i64,
    },
    /// A catalogue change that would leave the catalogue with both `material_deadline_days`
    /// (a version 1 rule: offers slower than the deadline are not used) and a factory
    /// calendar (version 2). No scenario holds both, so its export would lose one of them
    /// without a word (it wrote version 1 without the calendars). Nothing is written.
    #[error(
        "this import would leave the catalogue with material_deadline_days = \
         {material_deadline_days} (version 1 only) and a calendar for factory {factory} \
         (version 2); no scenario holds both, so an export would lose one: import the whole \
         catalogue as a version 2 scenario with REPLACE (lead times per period replace the \
         deadline), or leave material_deadline_days out of a version 1 file"
    )]
    DeadlineWithCalendars {
        material_deadline_days: i64,
        factory: String,
    },

    // --- Purchase orders ---------------------------------------------------------------
    /// Receiving more than is still to arrive on a purchase order.
    #[error("purchase order {purchase_order} has {outstanding} still to arrive, not {receiving}")]
    OverReceived {
        purchase_order: String,
        /// Quantities as decimal text (material quantities are decimals).
        outstanding: String,
        receiving: String,
    },
    /// Receiving or cancelling a cancelled purchase order.
    #[error("purchase order {purchase_order} is cancelled")]
    PurchaseOrderCancelled { purchase_order: String },
    /// Cancelling a purchase order that is no longer open (something was received).
    #[error("purchase order {purchase_order} is {state}; only an open order can be cancelled")]
    PurchaseOrderNotOpen {
        purchase_order: String,
        state: String,
    },
    /// Receiving on a purchase order whose material was removed from the catalogue since
    /// the order was placed: the stock it frees would have no material to count under (and
    /// whether it is counted in pieces is unknown), so the merchant adds it back first.
    #[error(
        "material `{material}` of purchase order {purchase_order} is no longer in the catalogue; \
         add it back (ImportScenario, merge) before receiving, so the stock is counted"
    )]
    MaterialNotInCatalogue {
        purchase_order: String,
        material: String,
    },
    /// A material a work order takes from stock cannot leave the catalogue while its
    /// factory may still reject the work order (issued or accepted): the rejection puts
    /// the stock back, and there would be no material to count it under.
    #[error(
        "material `{material}` is taken from stock by work order {work_order}, which its \
         factory may still reject and return it; remove the material once the work order \
         is in production or rejected"
    )]
    MaterialInUse {
        material: String,
        work_order: String,
    },
    /// An entry other entries of the catalogue name cannot be deleted alone: a product a
    /// factory's line makes, a material a product's bill of materials takes or a supplier
    /// offers. The delete is well formed and succeeds once those entries no longer name
    /// it, so this is the catalogue's state refusing it, not a malformed request.
    #[error(
        "{kind} `{id}` is named by {used_by_kind} `{used_by}`{}; import {} again without it \
         (a merge replaces just that entry), then delete the {kind}",
        match .uses - 1 { 0 => String::new(), 1 => " and one more entry".into(), n => format!(" and {n} more entries") },
        if *.uses > 1 { "those entries" } else { "that entry" }
    )]
    EntryInUse {
        /// `product` or `material`.
        kind: &'static str,
        id: String,
        /// `factory`, `product` or `supplier`: what names it first.
        used_by_kind: &'static str,
        used_by: String,
        /// How many entries name it.
        uses: i64,
    },
}

/// "1 unit", "2 units".
fn units(n: i64) -> String {
    if n == 1 {
        "unit".into()
    } else {
        "units".into()
    }
}

fn units_are(n: i64) -> &'static str {
    if n == 1 {
        "unit is"
    } else {
        "units are"
    }
}

fn units_fit(n: i64) -> &'static str {
    if n == 1 {
        "unit fits"
    } else {
        "units fit"
    }
}

impl Refusal {
    /// The stable name of the rule that refused (`ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        use Refusal::*;
        match self {
            CampaignNotOpen { .. } => "CAMPAIGN_NOT_OPEN",
            CampaignClosed { .. } => "CAMPAIGN_CLOSED",
            PerConsumerLimit { .. } => "PER_CONSUMER_LIMIT",
            SoldOut { .. } => "SOLD_OUT",
            TotalCapLeft { .. } => "TOTAL_CAP",
            BatchCap { .. } => "BATCH_CAP",
            TooLarge { .. } => "TOO_LARGE",
            BatchNotOpen => "BATCH_NOT_OPEN",
            PastDeadline { .. } => "PAST_DEADLINE",
            AlreadyCancelled => "ALREADY_CANCELLED",
            PreorderCancelled => "PREORDER_CANCELLED",
            BatchNotLocked => "BATCH_NOT_LOCKED",
            BatchFailed => "BATCH_FAILED",
            DepositForfeited => "DEPOSIT_FORFEITED",
            BalanceAlreadyPaid => "BALANCE_ALREADY_PAID",
            BalanceWindowClosed { .. } => "BALANCE_WINDOW_CLOSED",
            HoldAlreadyResolved { .. } => "HOLD_ALREADY_RESOLVED",
            DepositExceedsPrice { .. } => "DEPOSIT_EXCEEDS_PRICE",
            WorkOrderState { .. } => "WORK_ORDER_STATE",
            QualityCheckFailed { .. } => "QUALITY_CHECK_FAILED",
            SkuInUse { .. } => "SKU_IN_USE",
            SkuNotInCatalogue { .. } => "SKU_NOT_IN_CATALOGUE",
            CurrencyMismatch { .. } => "CURRENCY_MISMATCH",
            FactoryNotInCatalogue { .. } => "FACTORY_NOT_IN_CATALOGUE",
            CatalogueEmpty => "CATALOGUE_EMPTY",
            NothingToPlan { .. } => "NOTHING_TO_PLAN",
            BatchNotWaiting { .. } => "BATCH_NOT_WAITING",
            UnitsNotWaiting { .. } => "UNITS_NOT_WAITING",
            StockChanged { .. } => "STOCK_CHANGED",
            WaitingSkuNotInCatalogue { .. } => "WAITING_SKU_NOT_IN_CATALOGUE",
            CalendarHorizonMismatch { .. } => "CALENDAR_HORIZON_MISMATCH",
            CalendarsSpanTooLong { .. } => "CALENDARS_SPAN_TOO_LONG",
            DeadlineWithCalendars { .. } => "DEADLINE_WITH_CALENDARS",
            OverReceived { .. } => "OVER_RECEIVED",
            PurchaseOrderCancelled { .. } => "PURCHASE_ORDER_CANCELLED",
            PurchaseOrderNotOpen { .. } => "PURCHASE_ORDER_NOT_OPEN",
            MaterialNotInCatalogue { .. } => "MATERIAL_NOT_IN_CATALOGUE",
            MaterialInUse { .. } => "MATERIAL_IN_USE",
            EntryInUse { .. } => "ENTRY_IN_USE",
            CampaignEnded { .. } => "CAMPAIGN_ENDED",
            DeadlineNotLater { .. } => "DEADLINE_NOT_LATER",
            ThresholdNotLower { .. } => "THRESHOLD_NOT_LOWER",
            NothingToForecast => "NOTHING_TO_FORECAST",
        }
    }

    /// The values behind the refusal, by name (`ErrorInfo.metadata`).
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        use Refusal::*;
        let n = |v: &i64| v.to_string();
        let t = |v: &DateTime<Utc>| v.to_rfc3339();
        match self {
            CampaignNotOpen { opens_at } => vec![("opensAt", t(opens_at))],
            CampaignClosed {
                deadline,
                how,
                ended_at,
            } => vec![
                ("deadline", t(deadline)),
                ("how", (*how).to_owned()),
                ("endedAt", t(ended_at)),
            ],
            PastDeadline { deadline } => vec![("deadline", t(deadline))],
            PerConsumerLimit {
                held,
                requested,
                limit,
            } => vec![
                ("held", n(held)),
                ("requested", n(requested)),
                ("limit", n(limit)),
                ("unitsLeft", n(&(limit - held).max(0))),
            ],
            SoldOut { total_cap } => vec![("totalCap", n(total_cap)), ("unitsLeft", n(&0))],
            TotalCapLeft { left, total_cap } => {
                vec![("totalCap", n(total_cap)), ("unitsLeft", n(left))]
            }
            BatchCap { fits, cap } => vec![("batchCap", n(cap)), ("unitsFit", n(fits))],
            TooLarge { what, units } => {
                vec![("what", (*what).to_owned()), ("units", n(units))]
            }
            BatchNotOpen | AlreadyCancelled | PreorderCancelled | BatchNotLocked | BatchFailed
            | DepositForfeited | BalanceAlreadyPaid | CatalogueEmpty | NothingToForecast => vec![],
            NothingToPlan {
                due_later,
                no_factory,
            } => vec![
                ("dueAfterHorizon", n(due_later)),
                ("noFactory", n(no_factory)),
            ],
            BalanceWindowClosed { closed_at } => vec![("closedAt", t(closed_at))],
            HoldAlreadyResolved { was, to } => {
                vec![("was", (*was).to_owned()), ("to", (*to).to_owned())]
            }
            DepositExceedsPrice { deposit, full } => {
                vec![
                    ("deposit", deposit.minor.to_string()),
                    ("fullPrice", full.minor.to_string()),
                    ("currency", deposit.currency.to_string()),
                ]
            }
            WorkOrderState {
                work_order,
                state,
                report,
            } => vec![
                ("workOrderId", work_order.clone()),
                ("state", state.clone()),
                ("report", report.clone()),
            ],
            QualityCheckFailed { work_order, failed } => vec![
                ("workOrderId", work_order.clone()),
                ("failedUnits", n(failed)),
            ],
            SkuInUse { sku } | SkuNotInCatalogue { sku } | WaitingSkuNotInCatalogue { sku } => {
                vec![("sku", sku.clone())]
            }
            CalendarHorizonMismatch {
                factory,
                calendar_periods,
                periods,
                period_days,
            } => vec![
                ("factoryId", factory.clone()),
                ("calendarPeriods", n(calendar_periods)),
                ("periods", n(periods)),
                ("periodDays", n(period_days)),
            ],
            CalendarsSpanTooLong {
                first_factory,
                starts_at,
                last_factory,
                ends_at,
                periods,
                max_periods,
                period_days,
            } => vec![
                ("firstFactoryId", first_factory.clone()),
                ("startsAt", t(starts_at)),
                ("lastFactoryId", last_factory.clone()),
                ("endsAt", t(ends_at)),
                ("periods", n(periods)),
                ("maxPeriods", n(max_periods)),
                ("periodDays", n(period_days)),
            ],
            DeadlineWithCalendars {
                material_deadline_days,
                factory,
            } => vec![
                ("materialDeadlineDays", n(material_deadline_days)),
                ("factoryId", factory.clone()),
            ],
            CurrencyMismatch {
                campaign,
                catalogue,
            } => vec![
                ("currency", campaign.clone()),
                ("catalogueCurrency", catalogue.clone()),
            ],
            FactoryNotInCatalogue { factory } => vec![("factoryId", factory.clone())],
            BatchNotWaiting { batch } => vec![("batchId", batch.clone())],
            UnitsNotWaiting {
                batch,
                waiting,
                planned,
            } => vec![
                ("batchId", batch.clone()),
                ("unitsWaiting", n(waiting)),
                ("unitsPlanned", n(planned)),
            ],
            StockChanged { material } => vec![("material", material.clone())],
            OverReceived {
                purchase_order,
                outstanding,
                receiving,
            } => vec![
                ("purchaseOrderId", purchase_order.clone()),
                ("outstanding", outstanding.clone()),
                ("receiving", receiving.clone()),
            ],
            MaterialNotInCatalogue {
                purchase_order,
                material,
            } => vec![
                ("purchaseOrderId", purchase_order.clone()),
                ("material", material.clone()),
            ],
            MaterialInUse {
                material,
                work_order,
            } => vec![
                ("material", material.clone()),
                ("workOrderId", work_order.clone()),
            ],
            EntryInUse {
                kind,
                id,
                used_by_kind,
                used_by,
                uses,
            } => vec![
                ("kind", (*kind).to_owned()),
                ("id", id.clone()),
                ("usedByKind", (*used_by_kind).to_owned()),
                ("usedBy", used_by.clone()),
                ("uses", n(uses)),
            ],
            PurchaseOrderCancelled { purchase_order } => {
                vec![("purchaseOrderId", purchase_order.clone())]
            }
            PurchaseOrderNotOpen {
                purchase_order,
                state,
            } => vec![
                ("purchaseOrderId", purchase_order.clone()),
                ("state", state.clone()),
            ],
            CampaignEnded {
                field,
                how,
                ended_at,
                ..
            } => vec![
                ("field", (*field).to_owned()),
                ("how", (*how).to_owned()),
                ("endedAt", t(ended_at)),
            ],
            DeadlineNotLater {
                field,
                current,
                requested,
            } => vec![
                ("field", (*field).to_owned()),
                ("deadline", t(current)),
                ("requested", t(requested)),
            ],
            ThresholdNotLower {
                field,
                current,
                requested,
            } => vec![
                ("field", (*field).to_owned()),
                ("threshold", n(current)),
                ("requested", n(requested)),
            ],
        }
    }
}

/// [`Refusal::NothingToPlan`]'s message: what waits, and why it is not planned now. The
/// verb agrees with the count ("1 batch waits"; it read "1 batch wait"), and a batch no
/// factory may make is told both ways that happens: no factory in the catalogue has a line
/// for its sku (a factory was removed), or every one with a line rejected it (the message
/// named only the second, also when the catalogue had no factory left).
fn nothing_to_plan(due_later: i64, no_factory: i64) -> String {
    let batches = |n: i64| {
        if n == 1 {
            "1 batch waits".to_owned()
        } else {
            format!("{n} batches wait")
        }
    };
    let them = |n: i64| if n == 1 { "it" } else { "them" };
    const NO_FACTORY: &str =
        "no factory in the catalogue has a line for the sku, or every one with a line rejected";
    match (due_later, no_factory) {
        (0, 0) => "no batches are waiting for planning".to_owned(),
        (l, 0) => format!(
            "{}, due after the planning horizon: a later cycle plans {}",
            batches(l),
            them(l)
        ),
        (0, f) => format!(
            "{}, but no factory may make {} ({NO_FACTORY} {})",
            batches(f),
            them(f),
            them(f)
        ),
        (l, f) => format!(
            "{} due after the planning horizon (a later cycle plans {}), and {} that no \
             factory may make ({NO_FACTORY} {})",
            batches(l),
            them(l),
            batches(f),
            them(f)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_to_plan_agrees_in_number_and_names_both_causes() {
        let msg = |l, f| {
            Refusal::NothingToPlan {
                due_later: l,
                no_factory: f,
            }
            .to_string()
        };
        assert_eq!(
            msg(1, 0),
            "1 batch waits, due after the planning horizon: a later cycle plans it"
        );
        assert_eq!(
            msg(2, 0),
            "2 batches wait, due after the planning horizon: a later cycle plans them"
        );
        assert_eq!(
            msg(0, 1),
            "1 batch waits, but no factory may make it (no factory in the catalogue has a line \
             for the sku, or every one with a line rejected it)"
        );
        assert!(msg(0, 3).starts_with("3 batches wait, but no factory may make them ("));
        assert_eq!(
            msg(1, 2),
            "1 batch waits due after the planning horizon (a later cycle plans it), and 2 \
             batches wait that no factory may make (no factory in the catalogue has a line for \
             the sku, or every one with a line rejected them)"
        );
    }

    #[test]
    fn one_unit_is_singular_in_messages() {
        let r = Refusal::BatchCap { fits: 1, cap: 10 };
        assert_eq!(
            r.to_string(),
            "only 1 unit fits in the open batch (cap 10); order at most that many"
        );
        let r = Refusal::BatchCap { fits: 3, cap: 10 };
        assert!(r.to_string().starts_with("only 3 units fit"));
        let r = Refusal::PerConsumerLimit {
            held: 1,
            requested: 2,
            limit: 2,
        };
        assert!(r.to_string().starts_with("consumer already holds 1 unit;"));
    }

    #[test]
    fn reasons_are_upper_snake_case_and_metadata_keys_lower_camel_case() {
        let samples = [
            DomainError::invalid("quantity", "must be positive"),
            Refusal::BatchCap { fits: 2, cap: 5 }.into(),
            Refusal::PerConsumerLimit {
                held: 1,
                requested: 5,
                limit: 3,
            }
            .into(),
            DomainError::Ahead {
                what: "cursor",
                factory: "f".into(),
                seq: 9,
                last: 3,
            },
            DomainError::IdempotencyConflict { key: "k".into() },
            DomainError::TooManyBuckets {
                bucket_secs: 60,
                buckets: 50_001,
                max: 50_000,
                narrowest: 61,
            },
        ];
        for e in samples {
            let reason = e.reason();
            assert!(
                reason.chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{reason}"
            );
            for (k, _) in e.metadata() {
                assert!(k.chars().next().unwrap().is_ascii_lowercase(), "{k}");
                assert!(!k.contains('_'), "{k}");
            }
        }
    }

    #[test]
    fn per_consumer_metadata_says_how_many_still_fit() {
        let e: DomainError = Refusal::PerConsumerLimit {
            held: 1,
            requested: 5,
            limit: 3,
        }
        .into();
        assert!(e.metadata().contains(&("unitsLeft", "2".to_owned())));
    }
}
