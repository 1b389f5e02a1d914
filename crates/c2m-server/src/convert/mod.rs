//! Protobuf <-> domain, store and planner values: every conversion of the server lives in
//! this module, one submodule per concern beside the pooling and money ones here. Parsing
//! a request either yields a domain command that is valid as far as the request alone can
//! tell, or an INVALID_ARGUMENT status naming the field.

pub mod catalogue;
pub mod events;
pub mod factory;
pub mod levers;
pub mod planning;

use chrono::{DateTime, TimeZone, Utc};
use prost_types::Timestamp;
use tonic::Status;

use c2m_domain::{
    Batch, BatchStatus, Campaign, CampaignId, CampaignMoney, CampaignProgress, CampaignSpec,
    CampaignStatus, ConsumerId, Currency, DomainError, IdempotencyKey, LedgerEntry, Money,
    MoneyState, Preorder, PreorderId, PreorderStatus, PriceTier,
};
use c2m_proto::v1 as pb;
use c2m_store::{
    CancelPreorder, CreateCampaign, PayBalance, PlacePreorder, PreorderFilter, StoreError,
};

use crate::status::domain_status;

fn invalid(e: DomainError) -> Status {
    domain_status(&e)
}

pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// The range `google.protobuf.Timestamp` allows: 0001-01-01T00:00:00Z to
/// 9999-12-31T23:59:59Z. A time outside it cannot be written back in the protobuf JSON
/// mapping (grpcurl, grpc-gateway), so one stored campaign with such a deadline would make
/// every JSON client's `ListCampaigns` fail.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

pub fn parse_timestamp(field: &str, t: &Timestamp) -> Result<DateTime<Utc>, Status> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(DomainError::invalid(
            field,
            "nanos must be in 0..1e9",
        )));
    }
    if !TIMESTAMP_SECONDS.contains(&t.seconds) {
        return Err(invalid(DomainError::invalid(
            field,
            format!(
                "seconds {} is outside what a protobuf Timestamp allows (years 1 to 9999)",
                t.seconds
            ),
        )));
    }
    Utc.timestamp_opt(t.seconds, t.nanos as u32)
        .single()
        .ok_or_else(|| invalid(DomainError::invalid(field, "timestamp out of range")))
}

pub fn money(m: Money) -> pb::Money {
    minor_money(m.minor, m.currency.as_str())
}

/// An amount stored as minor units beside its currency's code (plans keep theirs so).
pub fn minor_money(minor: i64, currency: &str) -> pb::Money {
    pb::Money {
        minor,
        currency: currency.to_owned(),
    }
}

pub fn idempotency_key(s: &str) -> Result<IdempotencyKey, Status> {
    IdempotencyKey::parse(s).map_err(invalid)
}

/// A reference to a record c2m named (plan, work order, purchase order, webhook endpoint):
/// see [`c2m_domain::ids::parse_ref`].
pub fn reference(field: &str, s: &str) -> Result<String, Status> {
    c2m_domain::ids::parse_ref(field, s).map_err(invalid)
}

/// A catalogue id (product, material, factory, supplier): see
/// [`c2m_domain::ids::parse_name`].
pub fn name(field: &str, s: &str) -> Result<String, Status> {
    c2m_domain::ids::parse_name(field, s).map_err(invalid)
}

/// A consumer id a request may leave empty (an admin acting for no one in particular).
fn optional_consumer(s: &str) -> Result<Option<ConsumerId>, Status> {
    (!s.is_empty())
        .then(|| ConsumerId::parse(s).map_err(invalid))
        .transpose()
}

pub fn campaign_id(s: &str) -> Result<CampaignId, Status> {
    CampaignId::parse(s).map_err(invalid)
}

pub fn preorder_id(s: &str) -> Result<PreorderId, Status> {
    PreorderId::parse(s).map_err(invalid)
}

/// A refusal of `CreateCampaign` naming the request's own field: the domain's terms say
/// `unit_price`, `deposit` and `price_ladder[i].unit_price`, where the request has
/// `unit_price_minor`, `deposit_minor` and `price_ladder[i].unit_price_minor`, and a
/// client maps `field` onto its request (or its form) by that name.
pub fn campaign_request_field(e: StoreError) -> StoreError {
    match e {
        StoreError::Domain(DomainError::InvalidArgument { field, reason }) => {
            let field = match field.as_str() {
                "unit_price" | "deposit" => format!("{field}_minor"),
                f if f.starts_with("price_ladder[") && f.ends_with("].unit_price") => {
                    format!("{field}_minor")
                }
                _ => field,
            };
            StoreError::Domain(DomainError::InvalidArgument { field, reason })
        }
        other => other,
    }
}

pub fn create_campaign(r: pb::CreateCampaignRequest) -> Result<CreateCampaign, Status> {
    let idempotency_key = idempotency_key(&r.idempotency_key)?;
    let opens_at = r
        .opens_at
        .as_ref()
        .map(|t| parse_timestamp("opens_at", t))
        .transpose()?;
    let deadline = match &r.deadline {
        Some(t) => parse_timestamp("deadline", t)?,
        None => return Err(invalid(DomainError::invalid("deadline", "is required"))),
    };
    Ok(CreateCampaign {
        idempotency_key,
        spec: CampaignSpec {
            sku: r.sku,
            title: r.title,
            currency: r.currency,
            unit_price: r.unit_price_minor,
            deposit: r.deposit_minor,
            batch_threshold: r.batch_threshold,
            batch_cap: r.batch_cap,
            max_per_order: r.max_per_order,
            max_per_consumer: r.max_per_consumer,
            total_cap: r.total_cap,
            opens_at,
            deadline,
            price_ladder: r
                .price_ladder
                .iter()
                .map(|t| PriceTier {
                    min_units: t.min_units,
                    unit_price: t.unit_price_minor,
                })
                .collect(),
            balance_window_secs: r.balance_window_seconds,
            ships_within_days: r.ships_within_days,
        },
    })
}

/// Parses `amount`: present, a known currency, positive. Whether it is the right amount
/// is the store's question (it depends on the pre-order).
pub fn pay_balance(r: pb::PayBalanceRequest) -> Result<PayBalance, Status> {
    let amount = r
        .amount
        .ok_or_else(|| invalid(DomainError::invalid("amount", "is required")))?;
    let currency = Currency::parse(&amount.currency).map_err(|e| match e {
        DomainError::InvalidArgument { reason, .. } => {
            invalid(DomainError::invalid("amount.currency", reason))
        }
        other => invalid(other),
    })?;
    if amount.minor <= 0 {
        return Err(invalid(DomainError::invalid(
            "amount.minor",
            format!("must be positive, got {}", amount.minor),
        )));
    }
    Ok(PayBalance {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        preorder_id: preorder_id(&r.preorder_id)?,
        consumer_id: optional_consumer(&r.consumer_id)?,
        amount: Money::new(amount.minor, currency),
    })
}

pub fn place_preorder(r: pb::PlacePreorderRequest) -> Result<PlacePreorder, Status> {
    // Fields are checked in request order: key, campaign, consumer, then the source.
    let idempotency_key = idempotency_key(&r.idempotency_key)?;
    let campaign_id = campaign_id(&r.campaign_id)?;
    let consumer_id = ConsumerId::parse(&r.consumer_id).map_err(invalid)?;
    let source = c2m_domain::PreorderSource::parse(
        r.channel.as_deref(),
        r.region.as_deref(),
        r.referrer.as_deref(),
        &consumer_id,
    )
    .map_err(invalid)?;
    Ok(PlacePreorder {
        idempotency_key,
        campaign_id,
        consumer_id,
        quantity: r.quantity,
        source,
    })
}

pub fn cancel_preorder(r: pb::CancelPreorderRequest) -> Result<CancelPreorder, Status> {
    Ok(CancelPreorder {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        preorder_id: preorder_id(&r.preorder_id)?,
        consumer_id: optional_consumer(&r.consumer_id)?,
    })
}

pub fn preorder_filter(consumer_id: &str, campaign: &str) -> Result<PreorderFilter, Status> {
    let consumer = optional_consumer(consumer_id)?;
    let campaign = (!campaign.is_empty())
        .then(|| campaign_id(campaign))
        .transpose()?;
    match (consumer, campaign) {
        (Some(c), Some(k)) => Ok(PreorderFilter::ConsumerInCampaign(c, k)),
        (Some(c), None) => Ok(PreorderFilter::Consumer(c)),
        (None, Some(k)) => Ok(PreorderFilter::Campaign(k)),
        (None, None) => Err(invalid(DomainError::invalid(
            "consumer_id",
            "consumer_id or campaign_id is required",
        ))),
    }
}

fn campaign_status(s: CampaignStatus) -> pb::CampaignStatus {
    match s {
        CampaignStatus::Scheduled => pb::CampaignStatus::Scheduled,
        CampaignStatus::Open => pb::CampaignStatus::Open,
        CampaignStatus::Closed => pb::CampaignStatus::Closed,
    }
}

pub fn campaign(c: &Campaign, now: DateTime<Utc>) -> pb::Campaign {
    let t = &c.terms;
    pb::Campaign {
        id: c.id.to_string(),
        sku: t.sku.clone(),
        title: t.title.clone(),
        unit_price: Some(money(t.unit_price)),
        deposit: Some(money(t.deposit)),
        batch_threshold: t.batch_threshold,
        batch_cap: t.batch_cap,
        max_per_order: t.max_per_order,
        max_per_consumer: t.max_per_consumer,
        total_cap: t.total_cap,
        opens_at: Some(timestamp(t.opens_at)),
        deadline: Some(timestamp(t.deadline)),
        created_at: Some(timestamp(c.created_at)),
        status: campaign_status(c.status(now)) as i32,
        price_ladder: t
            .price_ladder
            .tiers()
            .iter()
            .map(|t| pb::PriceTier {
                min_units: t.min_units,
                unit_price_minor: t.unit_price,
            })
            .collect(),
        balance_window_seconds: t.balance_window_secs,
        ships_within_days: t.ships_within_days,
        money_policy: t.money_policy(),
        closed_at: c.closed_at.map(timestamp),
        cancelled_at: c.cancelled_at.map(timestamp),
    }
}

pub fn progress(p: &CampaignProgress, now: DateTime<Utc>) -> pb::CampaignProgress {
    let threshold = p.campaign.terms.batch_threshold;
    let tier = p.campaign.terms.tier_position(p.open_batch_units);
    // A campaign that no longer sells (closed, cancelled, past its deadline) needs no
    // units: more orders could not lock anything. One that sells needs them whether or not
    // a batch row exists yet: a new campaign, and one whose last batch just locked, have no
    // open batch until the next order opens one, and that order needs the whole threshold.
    let open = p.campaign.status(now) != CampaignStatus::Closed;
    pb::CampaignProgress {
        campaign: Some(campaign(&p.campaign, now)),
        open_batch_units: p.open_batch_units,
        units_to_threshold: if open {
            (threshold - p.open_batch_units).max(0)
        } else {
            0
        },
        open_batch_seq: p.open_batch_seq.unwrap_or(0),
        batches_locked: p.batches_locked,
        batches_failed: p.batches_failed,
        units_committed: p.units_committed,
        remaining_seconds: if p.campaign.status(now) == CampaignStatus::Closed {
            0
        } else {
            (p.campaign.terms.deadline - now).num_seconds().max(0)
        },
        current_unit_price: Some(money(tier.unit_price)),
        units_to_next_tier: tier.next.filter(|_| open).map_or(0, |(units, _)| units),
        next_tier_unit_price: tier.next.filter(|_| open).map(|(_, price)| money(price)),
        forecast: None,
        units_available: p.units_available(now),
    }
}

fn batch_status(s: BatchStatus) -> pb::BatchStatus {
    match s {
        BatchStatus::Open => pb::BatchStatus::Open,
        BatchStatus::Locked => pb::BatchStatus::Locked,
        BatchStatus::Failed => pb::BatchStatus::Failed,
    }
}

pub fn batch(b: &Batch) -> pb::Batch {
    pb::Batch {
        id: b.id.to_string(),
        campaign_id: b.campaign_id.to_string(),
        seq: b.seq,
        status: batch_status(b.status) as i32,
        units: b.units,
        threshold: b.threshold,
        created_at: Some(timestamp(b.created_at)),
        locked_at: b.locked_at.map(timestamp),
        failed_at: b.failed_at.map(timestamp),
        units_forfeited: b.forfeited_units,
        balance_due_by: b.balance_due_by.map(timestamp),
        ready_at: b.ready_at.map(timestamp),
        refunded_at: b.refunded_at.map(timestamp),
    }
}

fn preorder_status(s: PreorderStatus) -> pb::PreorderStatus {
    match s {
        PreorderStatus::Pooled => pb::PreorderStatus::Pooled,
        PreorderStatus::Locked => pb::PreorderStatus::Locked,
        PreorderStatus::Cancelled => pb::PreorderStatus::Cancelled,
        PreorderStatus::RefundDue => pb::PreorderStatus::RefundDue,
        PreorderStatus::Forfeited => pb::PreorderStatus::Forfeited,
    }
}

fn money_state(s: MoneyState) -> pb::MoneyState {
    match s {
        MoneyState::DepositHeld => pb::MoneyState::DepositHeld,
        MoneyState::DepositReleased => pb::MoneyState::DepositReleased,
        MoneyState::BalanceDue => pb::MoneyState::BalanceDue,
        MoneyState::Paid => pb::MoneyState::Paid,
        MoneyState::Forfeited => pb::MoneyState::Forfeited,
        MoneyState::Refunded => pb::MoneyState::Refunded,
    }
}

pub fn preorder(p: &Preorder) -> pb::Preorder {
    pb::Preorder {
        id: p.id.to_string(),
        campaign_id: p.campaign_id.to_string(),
        consumer_id: p.consumer_id.to_string(),
        batch_id: p.batch_id.to_string(),
        batch_seq: p.batch_seq,
        quantity: p.quantity,
        unit_price: Some(money(p.unit_price)),
        deposit_total: Some(money(p.deposit_total)),
        status: preorder_status(p.status) as i32,
        created_at: Some(timestamp(p.created_at)),
        cancelled_at: p.cancelled_at.map(timestamp),
        money_state: money_state(p.money_state()) as i32,
        deposit_held: Some(money(p.deposit_held())),
        deposit_captured: Some(money(p.deposit_captured())),
        deposit_released: Some(money(p.deposit_released())),
        deposit_forfeited: Some(money(p.deposit_forfeited())),
        final_unit_price: p.money.final_unit_price.map(money),
        balance_due: p.money.balance_due.map(money),
        balance_paid: Some(money(p.balance_paid())),
        balance_due_by: p.money.balance_due_by.map(timestamp),
        balance_paid_at: p.money.balance_paid_at.map(timestamp),
        forfeited_at: p.money.forfeited_at.map(timestamp),
        production: None,
        ship_date: None,
        refunded_at: p.money.refunded_at.map(timestamp),
        refunded: Some(money(p.refunded())),
    }
}

/// A batch's production as shown on its pre-orders.
pub fn batch_production(b: &c2m_store::BatchProduction) -> pb::BatchProduction {
    use c2m_store::ProductionStage as S;
    let stage = match b.stage {
        S::AwaitingPlan => pb::ProductionStage::AwaitingPlan,
        S::Planned => pb::ProductionStage::Planned,
        S::Accepted => pb::ProductionStage::Accepted,
        S::InProduction => pb::ProductionStage::InProduction,
        S::QualityCheck => pb::ProductionStage::QualityCheck,
        S::Shipped => pb::ProductionStage::Shipped,
    };
    pb::BatchProduction {
        stage: stage as i32,
        units_shipped: b.units_shipped,
        units_awaiting_plan: b.units_awaiting_plan,
    }
}

/// A locked batch's ship date: the promise until every unit is planned, then the plan's,
/// then, once every unit has shipped, when the last one did.
pub fn ship_date(b: &c2m_store::BatchProduction) -> Option<pb::ShipDate> {
    let due = b.due_at?;
    let expected = b.expected_ship_at().unwrap_or(due);
    let days_late = b.days_late();
    let late = days_late > 0;
    Some(pb::ShipDate {
        promised_by: Some(timestamp(due)),
        expected_at: Some(timestamp(expected)),
        planned: b.planned_ship_at.is_some(),
        late,
        days_late,
        late_reason: b.why_late().unwrap_or_default(),
        shipped: b.shipped_at.is_some(),
    })
}

pub fn campaign_money(m: &CampaignMoney) -> pb::CampaignMoney {
    let at = |minor| Some(money(Money::new(minor, m.currency)));
    pb::CampaignMoney {
        campaign_id: m.campaign_id.to_string(),
        deposited: at(m.deposited),
        held: at(m.held),
        captured: at(m.captured),
        released: at(m.released),
        balances_paid: at(m.balances_paid),
        balances_outstanding: at(m.balances_outstanding),
        forfeited: at(m.forfeited),
        settled: at(m.settled),
        escrow: at(m.escrow),
        merchant: at(m.merchant),
        refunded: at(m.refunded),
        refunded_by_merchant: at(m.refunded_by_merchant),
    }
}

pub fn ledger_entry(e: &LedgerEntry) -> pb::LedgerEntry {
    let currency = e.txn.currency();
    pb::LedgerEntry {
        id: e.id.clone(),
        campaign_id: e.campaign_id.to_string(),
        kind: e.txn.kind().as_str().to_owned(),
        preorder_id: e
            .preorder_id
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        batch_id: e
            .batch_id
            .as_ref()
            .map(|b| b.to_string())
            .unwrap_or_default(),
        at: Some(timestamp(e.at)),
        postings: e
            .txn
            .postings()
            .iter()
            .map(|p| pb::Posting {
                account: p.account.code(),
                amount: Some(money(Money::new(p.amount, currency))),
            })
            .collect(),
    }
}
