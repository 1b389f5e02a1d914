//! The levers, the forecast, the advice and the insights: protobuf <-> store and domain.

use tonic::Status;

use c2m_domain::forecast::FillForecast;
use c2m_domain::{DomainError, Money};
use c2m_proto::v1 as pb;
use c2m_store::{
    CancelCampaign, CloseCampaign, ExtendDeadline, Insights, LeverOutcome, LowerThreshold,
    SourceCount,
};

use super::{batch, campaign, campaign_id, idempotency_key, money, parse_timestamp, timestamp};
use crate::forecast::Advice;
use crate::status::domain_status;

pub fn extend_deadline(r: pb::ExtendDeadlineRequest) -> Result<ExtendDeadline, Status> {
    let deadline = match &r.deadline {
        Some(t) => parse_timestamp("deadline", t)?,
        None => {
            return Err(domain_status(&DomainError::invalid(
                "deadline",
                "is required",
            )))
        }
    };
    Ok(ExtendDeadline {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        campaign_id: campaign_id(&r.campaign_id)?,
        deadline,
    })
}

pub fn lower_threshold(r: pb::LowerThresholdRequest) -> Result<LowerThreshold, Status> {
    Ok(LowerThreshold {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        campaign_id: campaign_id(&r.campaign_id)?,
        batch_threshold: r.batch_threshold,
    })
}

pub fn close_campaign(r: pb::CloseCampaignRequest) -> Result<CloseCampaign, Status> {
    Ok(CloseCampaign {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        campaign_id: campaign_id(&r.campaign_id)?,
    })
}

pub fn cancel_campaign(r: pb::CancelCampaignRequest) -> Result<CancelCampaign, Status> {
    Ok(CancelCampaign {
        idempotency_key: idempotency_key(&r.idempotency_key)?,
        campaign_id: campaign_id(&r.campaign_id)?,
    })
}

pub fn lever_outcome(o: &LeverOutcome, now: chrono::DateTime<chrono::Utc>) -> pb::LeverOutcome {
    let currency = o.campaign.terms.unit_price.currency;
    pb::LeverOutcome {
        campaign: Some(campaign(&o.campaign, now)),
        locked_batch: o.locked_batch.as_ref().map(batch),
        failed_batch: o.failed_batch.as_ref().map(batch),
        deposits_released: o.deposits_released,
        preorders_refunded: o.preorders_refunded,
        refunded: Some(money(Money::new(o.refunded_minor, currency))),
        batches_in_production: o.batches_in_production,
        work_orders_withdrawn: o.work_orders_withdrawn,
    }
}

pub fn fill_forecast(f: &FillForecast) -> pb::FillForecast {
    pb::FillForecast {
        lock_probability: f.lock_probability,
        units_needed: f.units_needed,
        expected_lock_at: f.expected_lock_at.map(timestamp),
        lock_by_p10: f.lock_by_p10.map(timestamp),
        lock_by_p50: f.lock_by_p50.map(timestamp),
        lock_by_p90: f.lock_by_p90.map(timestamp),
        expected_shortfall: f.expected_shortfall,
        projected_units_mean: f.projected_units_mean,
        projected_units_p10: f.projected_units_p10,
        projected_units_p50: f.projected_units_p50,
        projected_units_p90: f.projected_units_p90,
        orders_seen: f.evidence.orders_seen as i64,
        prior_campaigns: f.evidence.prior_campaigns as i64,
        order_rate_now: f.evidence.order_rate_now,
        mean_order_units: f.evidence.mean_order_units,
        cancel_fraction: f.evidence.cancel_fraction,
    }
}

/// The advice's margin and target: 0 means the default; otherwise a fraction in [0, 1)
/// and (0, 1) naming the field.
pub fn advice_params(r: &pb::GetAdviceRequest) -> Result<(f64, f64), Status> {
    let margin = if r.margin == 0.0 {
        crate::forecast::DEFAULT_MARGIN
    } else {
        r.margin
    };
    if !(0.0..1.0).contains(&margin) {
        return Err(domain_status(&DomainError::invalid(
            "margin",
            format!("must be a fraction in [0, 1), got {margin}"),
        )));
    }
    let target = if r.target_probability == 0.0 {
        crate::forecast::DEFAULT_TARGET
    } else {
        r.target_probability
    };
    if !(target > 0.0 && target < 1.0) {
        return Err(domain_status(&DomainError::invalid(
            "target_probability",
            format!("must be a probability in (0, 1), got {target}"),
        )));
    }
    Ok((margin, target))
}

pub fn advice(campaign_id: &str, a: &Advice) -> pb::Advice {
    pb::Advice {
        campaign_id: campaign_id.to_owned(),
        forecast: Some(fill_forecast(&a.forecast)),
        falling_short: a.falling_short,
        expected_miss_units: a.expected_miss,
        lower_threshold: a.lower_threshold.as_ref().map(|t| pb::ThresholdAdvice {
            batch_threshold: t.threshold,
            cost_per_unit_minor: t.cost_per_unit,
            margin: t.margin,
            lock_probability: t.lock_probability,
        }),
        extension: a.extension.as_ref().map(|x| pb::ExtensionAdvice {
            days: x.days,
            deadline: Some(timestamp(x.deadline)),
            lock_probability: x.lock_probability,
        }),
        summary: a.summary.clone(),
        notes: a.notes.clone(),
        no_plan: a
            .no_plan
            .iter()
            .map(|n| pb::NoPlanVolume {
                volume: n.volume,
                reason: n.reason.clone(),
            })
            .collect(),
        not_reached: (a.not_reached.iter())
            .map(|r| pb::VolumeRange {
                first: r.first,
                last: r.last,
            })
            .collect(),
    }
}

fn source(s: &SourceCount) -> pb::SourceCount {
    pb::SourceCount {
        key: s.key.clone(),
        preorders: s.preorders,
        units: s.units,
    }
}

/// Bucket width and top count: 0 means the defaults (a day, 10); otherwise at least 60
/// seconds and 1 to 100 referrers.
pub fn insights_params(r: &pb::GetInsightsRequest) -> Result<(i64, i64), Status> {
    let bucket = if r.bucket_seconds == 0 {
        86_400
    } else {
        r.bucket_seconds
    };
    if !(60..=366 * 86_400).contains(&bucket) {
        return Err(domain_status(&DomainError::invalid(
            "bucket_seconds",
            format!("must be between 60 seconds and a year, got {bucket}"),
        )));
    }
    let top = if r.top == 0 { 10 } else { r.top };
    if !(1..=100).contains(&top) {
        return Err(domain_status(&DomainError::invalid(
            "top",
            format!("must be 1 to 100, got {top}"),
        )));
    }
    Ok((bucket, top))
}

pub fn insights(i: &Insights, forecast: Option<&FillForecast>, open_units: i64) -> pb::Insights {
    pb::Insights {
        campaign_id: i.campaign.id.to_string(),
        preorders: i.preorders,
        units: i.units,
        cancelled_units: i.cancelled_units,
        bucket_seconds: i.bucket_secs,
        units_over_time: i
            .units_over_time
            .iter()
            .map(|u| pb::UnitsAt {
                at: Some(timestamp(u.at)),
                preorders: u.preorders,
                units: u.units,
                cumulative_units: u.cumulative_units,
            })
            .collect(),
        by_channel: i.sources.by_channel.iter().map(source).collect(),
        by_region: i.sources.by_region.iter().map(source).collect(),
        by_referrer: i.sources.by_referrer.iter().map(source).collect(),
        top_referrers: i.sources.top_referrers.iter().map(source).collect(),
        consumers: i.consumers,
        returning_consumers: i.returning_consumers,
        forecast: forecast.map(fill_forecast),
        opens_at: Some(timestamp(i.campaign.terms.opens_at)),
        deadline: Some(timestamp(i.campaign.terms.deadline)),
        open_batch_units: open_units,
    }
}
