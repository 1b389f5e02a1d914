//! The merchant's levers on a running campaign: extend its deadline, lower its threshold,
//! close it early, cancel it. These are the rules (pure: the store reads the campaign under
//! its lock, asks here, and writes what is allowed); what each lever then does to the open
//! batch and the money is the store's (`c2m-store`'s `levers` feature), through the same
//! lock and ledger paths a placement or a deadline uses.
//!
//! | lever | allowed when | refused with |
//! | --- | --- | --- |
//! | extend the deadline | the campaign still sells, the new deadline is later | `CAMPAIGN_ENDED`, `DEADLINE_NOT_LATER` (both name `deadline`) |
//! | lower the threshold | the campaign still sells, the new threshold is lower and positive | `CAMPAIGN_ENDED`, `THRESHOLD_NOT_LOWER` (both name `batch_threshold`), `INVALID_FIELD` |
//! | close | the campaign still sells (or has not opened yet) | `CAMPAIGN_ENDED` (names `campaign_id`) |
//! | cancel | the campaign was not cancelled before (a closed campaign may be cancelled) | `CAMPAIGN_ENDED` (names `campaign_id`) |
//!
//! "Still sells" is [`Campaign::status`] not `Closed` at `now`: before its (current)
//! deadline and neither closed nor cancelled.

use chrono::{DateTime, Utc};

use crate::{Campaign, DomainError, Refusal};

fn running(
    campaign: &Campaign,
    now: DateTime<Utc>,
    field: &'static str,
    refused: &'static str,
) -> Result<(), DomainError> {
    match campaign.ended(now) {
        Some((how, ended_at)) => Err(Refusal::CampaignEnded {
            field,
            how,
            ended_at,
            refused,
        }
        .into()),
        None => Ok(()),
    }
}

/// May the deadline move to `deadline`? Only later, and only while the campaign sells (so a
/// deadline in the past is refused either way: it is not after the current one, which is
/// still ahead).
pub fn may_extend_deadline(
    campaign: &Campaign,
    deadline: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    running(
        campaign,
        now,
        "deadline",
        "its deadline can no longer be extended",
    )?;
    if deadline <= campaign.terms.deadline {
        return Err(Refusal::DeadlineNotLater {
            field: "deadline",
            current: campaign.terms.deadline,
            requested: deadline,
        }
        .into());
    }
    Ok(())
}

/// May the threshold become `threshold`? Only lower (and positive), and only while the
/// campaign sells. Whether the open batch then locks is [`locks_at`]'s answer.
pub fn may_lower_threshold(
    campaign: &Campaign,
    threshold: i64,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    if threshold <= 0 {
        return Err(DomainError::invalid(
            "batch_threshold",
            format!("must be positive, got {threshold}"),
        ));
    }
    running(
        campaign,
        now,
        "batch_threshold",
        "its threshold can no longer be lowered",
    )?;
    if threshold >= campaign.terms.batch_threshold {
        return Err(Refusal::ThresholdNotLower {
            field: "batch_threshold",
            current: campaign.terms.batch_threshold,
            requested: threshold,
        }
        .into());
    }
    Ok(())
}

/// Whether an open batch of `units` locks at `threshold`: the pooling rule's own test
/// ([`crate::pooling::admit`] locks a batch whose units reach its threshold).
pub fn locks_at(units: i64, threshold: i64) -> bool {
    units > 0 && units >= threshold
}

/// May the campaign be closed now? Only while it sells (or before it opens).
pub fn may_close(campaign: &Campaign, now: DateTime<Utc>) -> Result<(), DomainError> {
    running(campaign, now, "campaign_id", "it can no longer be closed")
}

/// May the campaign be cancelled now? Once: a closed campaign (or one past its deadline)
/// may still be cancelled, to refund what is not yet in production.
pub fn may_cancel(campaign: &Campaign) -> Result<(), DomainError> {
    match campaign.cancelled_at {
        Some(at) => Err(Refusal::CampaignEnded {
            field: "campaign_id",
            how: "was cancelled",
            ended_at: at,
            refused: "it cannot be cancelled again",
        }
        .into()),
        None => Ok(()),
    }
}

/// The most time buckets one insights answer holds: a month of minutes (about 1.5 MB as
/// protobuf, within the default message size).
pub const MAX_INSIGHT_BUCKETS: i64 = 50_000;

/// May the units over time, `span_secs` from the opening to the last pre-order, be told in
/// buckets of `bucket_secs` (positive)? At most [`MAX_INSIGHT_BUCKETS`] of them; otherwise
/// [`DomainError::TooManyBuckets`] (`INVALID_FIELD` naming `bucket_seconds`), with the
/// narrowest width that fits.
pub fn check_insight_buckets(span_secs: i64, bucket_secs: i64) -> Result<(), DomainError> {
    let span = span_secs.max(0);
    let buckets = span / bucket_secs.max(1) + 1;
    if buckets <= MAX_INSIGHT_BUCKETS {
        return Ok(());
    }
    // `span / w + 1 <= MAX` holds exactly when `w > span / MAX`.
    let narrowest = span / MAX_INSIGHT_BUCKETS + 1;
    Err(DomainError::TooManyBuckets {
        bucket_secs,
        buckets,
        max: MAX_INSIGHT_BUCKETS,
        narrowest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CampaignId, CampaignSpec, CampaignStatus};
    use chrono::{Duration, TimeZone};

    fn campaign(now: DateTime<Utc>) -> Campaign {
        let spec = CampaignSpec {
            sku: "kettle".into(),
            title: "Kettle".into(),
            currency: "CNY".into(),
            unit_price: 10_000,
            deposit: 2_000,
            batch_threshold: 100,
            batch_cap: None,
            max_per_order: None,
            max_per_consumer: None,
            total_cap: None,
            opens_at: Some(now),
            deadline: now + Duration::days(10),
            price_ladder: vec![],
            balance_window_secs: None,
            ships_within_days: None,
        };
        Campaign {
            id: CampaignId::generate(),
            terms: spec.validate(now).expect("valid"),
            created_at: now,
            closed_at: None,
            cancelled_at: None,
        }
    }

    fn reason(e: DomainError) -> (&'static str, Vec<(&'static str, String)>) {
        (e.reason(), e.metadata())
    }

    #[test]
    fn insight_buckets_are_bounded_and_the_refusal_names_a_width_that_fits() {
        assert!(check_insight_buckets(0, 60).is_ok());
        assert!(check_insight_buckets(-5, 60).is_ok());
        assert!(check_insight_buckets(60 * (MAX_INSIGHT_BUCKETS - 1), 60).is_ok());
        let span = 60 * MAX_INSIGHT_BUCKETS;
        let e = check_insight_buckets(span, 60).expect_err("one too many");
        let (reason, meta) = reason(e.clone());
        assert_eq!(reason, "INVALID_FIELD");
        assert!(
            meta.contains(&("field", "bucket_seconds".to_owned())),
            "{meta:?}"
        );
        assert!(e.to_string().contains("at least 61 seconds"), "{e}");
        // The width that fits is there for a program too, not only in the message.
        assert!(
            meta.contains(&("minBucketSeconds", "61".to_owned()))
                && meta.contains(&("maxBuckets", MAX_INSIGHT_BUCKETS.to_string())),
            "{meta:?}"
        );
        assert!(check_insight_buckets(span, 61).is_ok());
        assert!(check_insight_buckets(span, 60 * 60).is_ok());
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
            .single()
            .expect("t0")
    }

    #[test]
    fn a_deadline_moves_only_later_and_only_while_selling() {
        let now = t0();
        let c = campaign(now);
        let later = c.terms.deadline + Duration::days(3);
        assert!(may_extend_deadline(&c, later, now + Duration::days(1)).is_ok());
        let (r, m) =
            reason(may_extend_deadline(&c, now - Duration::days(1), now).expect_err("past"));
        assert_eq!(r, "DEADLINE_NOT_LATER");
        assert!(m.contains(&("field", "deadline".into())));
        let same = may_extend_deadline(&c, c.terms.deadline, now).expect_err("same");
        assert_eq!(same.reason(), "DEADLINE_NOT_LATER");
        let (r, m) = reason(may_extend_deadline(&c, later, c.terms.deadline).expect_err("passed"));
        assert_eq!(r, "CAMPAIGN_ENDED");
        assert!(m.contains(&("field", "deadline".into())));
        assert!(m.contains(&("how", "passed its deadline".into())));
        let mut closed = c.clone();
        closed.closed_at = Some(now + Duration::hours(1));
        let e = may_extend_deadline(&closed, later, now + Duration::hours(2)).expect_err("closed");
        assert!(e.metadata().contains(&("how", "was closed".into())));
    }

    #[test]
    fn a_threshold_moves_only_down_and_stays_positive() {
        let now = t0();
        let c = campaign(now);
        assert!(may_lower_threshold(&c, 80, now).is_ok());
        assert!(may_lower_threshold(&c, 1, now).is_ok());
        assert_eq!(
            may_lower_threshold(&c, 100, now)
                .expect_err("same")
                .reason(),
            "THRESHOLD_NOT_LOWER"
        );
        assert_eq!(
            may_lower_threshold(&c, 120, now).expect_err("up").reason(),
            "THRESHOLD_NOT_LOWER"
        );
        let e = may_lower_threshold(&c, 0, now).expect_err("zero");
        assert_eq!(e.reason(), "INVALID_FIELD");
        assert!(e.metadata().contains(&("field", "batch_threshold".into())));
        let e = may_lower_threshold(&c, 50, c.terms.deadline).expect_err("ended");
        assert_eq!(e.reason(), "CAMPAIGN_ENDED");
    }

    #[test]
    fn closing_twice_is_refused_but_a_closed_campaign_may_be_cancelled_once() {
        let now = t0();
        let mut c = campaign(now);
        assert!(may_close(&c, now).is_ok());
        c.closed_at = Some(now);
        let e = may_close(&c, now).expect_err("closed");
        assert_eq!(e.reason(), "CAMPAIGN_ENDED");
        assert!(e.metadata().contains(&("field", "campaign_id".into())));
        // The message says what cannot be done, not that the field cannot change.
        assert_eq!(
            e.to_string(),
            "the campaign was closed at 2030-01-01T00:00:00+00:00; it can no longer be closed"
        );
        assert!(may_cancel(&c).is_ok());
        c.cancelled_at = Some(now);
        let e = may_cancel(&c).expect_err("twice");
        assert_eq!(e.reason(), "CAMPAIGN_ENDED");
        assert!(
            e.to_string().ends_with("; it cannot be cancelled again"),
            "{e}"
        );
        assert_eq!(c.status(now), CampaignStatus::Closed);
    }

    #[test]
    fn a_batch_locks_when_its_units_reach_the_threshold() {
        assert!(locks_at(80, 80));
        assert!(locks_at(81, 80));
        assert!(!locks_at(79, 80));
        assert!(!locks_at(0, 1));
    }

    #[test]
    fn a_campaign_stops_selling_at_the_earliest_of_its_ends() {
        let now = t0();
        let mut c = campaign(now);
        assert_eq!(c.selling_ends(), c.terms.deadline);
        c.closed_at = Some(now + Duration::days(2));
        c.cancelled_at = Some(now + Duration::days(3));
        assert_eq!(c.selling_ends(), now + Duration::days(2));
        assert_eq!(c.status(now + Duration::days(2)), CampaignStatus::Closed);
        assert_eq!(
            c.status(now + Duration::days(1)),
            CampaignStatus::Closed,
            "closed is closed whatever the caller's clock says"
        );
    }
}
