//! Protobuf <-> domain. Parsing a request either yields a domain command that is valid as
//! far as the request alone can tell, or an INVALID_ARGUMENT status naming the field.

use chrono::{DateTime, TimeZone, Utc};
use prost_types::Timestamp;
use tonic::Status;

use c2m_domain::{
    Batch, BatchStatus, Campaign, CampaignId, CampaignProgress, CampaignSpec, CampaignStatus,
    ConsumerId, DomainError, IdempotencyKey, Money, Preorder, PreorderId, PreorderStatus,
};
use c2m_proto::v1 as pb;
use c2m_store::{CancelPreorder, CreateCampaign, PlacePreorder, PreorderFilter};

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

pub fn parse_timestamp(field: &str, t: &Timestamp) -> Result<DateTime<Utc>, Status> {
    if !(0..1_000_000_000).contains(&t.nanos) {
        return Err(invalid(DomainError::invalid(
            field,
            "nanos must be in 0..1e9",
        )));
    }
    Utc.timestamp_opt(t.seconds, t.nanos as u32)
        .single()
        .ok_or_else(|| invalid(DomainError::invalid(field, "timestamp out of range")))
}

fn money(m: Money) -> pb::Money {
    pb::Money {
        minor: m.minor,
        currency: m.currency.to_string(),
    }
}

pub fn idempotency_key(s: &str) -> Result<IdempotencyKey, Status> {
    IdempotencyKey::parse(s).map_err(invalid)
}

pub fn campaign_id(s: &str) -> Result<CampaignId, Status> {
    CampaignId::parse(s).map_err(invalid)
}

pub fn preorder_id(s: &str) -> Result<PreorderId, Status> {
    PreorderId::parse(s).map_err(invalid)
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
        },
    })
}

pub fn place_preorder(r: pb::PlacePreorderRequest) -> Result<PlacePreorder, Status> {
    Ok(PlacePreorder {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        campaign_id: campaign_id(&r.campaign_id)?,
        consumer_id: ConsumerId::parse(&r.consumer_id).map_err(invalid)?,
        quantity: r.quantity,
    })
}

pub fn cancel_preorder(r: pb::CancelPreorderRequest) -> Result<CancelPreorder, Status> {
    Ok(CancelPreorder {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        preorder_id: preorder_id(&r.preorder_id)?,
        consumer_id: if r.consumer_id.is_empty() {
            None
        } else {
            Some(ConsumerId::parse(&r.consumer_id).map_err(invalid)?)
        },
    })
}

pub fn preorder_filter(consumer_id: &str, campaign: &str) -> Result<PreorderFilter, Status> {
    let consumer = (!consumer_id.is_empty())
        .then(|| ConsumerId::parse(consumer_id).map_err(invalid))
        .transpose()?;
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
    }
}

pub fn progress(p: &CampaignProgress, now: DateTime<Utc>) -> pb::CampaignProgress {
    let threshold = p.campaign.terms.batch_threshold;
    pb::CampaignProgress {
        campaign: Some(campaign(&p.campaign, now)),
        open_batch_units: p.open_batch_units,
        units_to_threshold: (threshold - p.open_batch_units).max(0),
        open_batch_seq: p.open_batch_seq.unwrap_or(0),
        batches_locked: p.batches_locked,
        batches_failed: p.batches_failed,
        units_committed: p.units_committed,
        remaining_seconds: (p.campaign.terms.deadline - now).num_seconds().max(0),
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
    }
}

fn preorder_status(s: PreorderStatus) -> pb::PreorderStatus {
    match s {
        PreorderStatus::Pooled => pb::PreorderStatus::Pooled,
        PreorderStatus::Locked => pb::PreorderStatus::Locked,
        PreorderStatus::Cancelled => pb::PreorderStatus::Cancelled,
        PreorderStatus::RefundDue => pb::PreorderStatus::RefundDue,
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
    }
}
