//! The pooling rule: may this pre-order join the campaign's open batch, and does the batch
//! lock because of it?
//!
//! The store calls [`admit`] inside the transaction that holds the campaign's lock, with
//! the counts it read under that lock, and writes exactly what the returned [`Admission`]
//! says. Keeping the rule here (pure, synchronous) means the SQLite and PostgreSQL stores
//! cannot disagree about it, and it can be tested without a database.

use chrono::{DateTime, Utc};

use crate::{CampaignStatus, CampaignTerms, DomainError, Refusal};

/// Counts read from the store under the campaign lock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolState {
    /// Units already pooled in the open batch; 0 when there is none (one will be opened).
    pub open_batch_units: i64,
    /// Units in the campaign's open and locked batches.
    pub campaign_units: i64,
    /// Units this consumer holds in the campaign, cancelled and failed orders excluded.
    pub consumer_units: i64,
}

/// What the store must write for an admitted pre-order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// Units in the open batch once this order is in it.
    pub batch_units_after: i64,
    /// The batch reaches its threshold with this order and must lock, now, in the same
    /// transaction. The next pre-order starts a new batch.
    pub locks: bool,
}

/// Decides whether `quantity` units may be pooled now. Errors name the field or the limit
/// that refused the order; nothing is to be written when this returns an error.
pub fn admit(
    terms: &CampaignTerms,
    status: CampaignStatus,
    state: PoolState,
    quantity: i64,
) -> Result<Admission, DomainError> {
    if quantity <= 0 {
        return Err(DomainError::invalid(
            "quantity",
            format!("must be positive, got {quantity}"),
        ));
    }
    if let Some(max) = terms.max_per_order {
        if quantity > max {
            return Err(DomainError::invalid(
                "quantity",
                format!("{quantity} units is over the campaign's limit of {max} per order"),
            ));
        }
    }
    match status {
        CampaignStatus::Scheduled => {
            return Err(Refusal::CampaignNotOpen {
                opens_at: terms.opens_at,
            }
            .into())
        }
        CampaignStatus::Closed => {
            // Terms alone cannot tell a close or a cancel from the deadline; the store,
            // which has the campaign, says which (`Campaign::closed_refusal`).
            return Err(Refusal::CampaignClosed {
                deadline: terms.deadline,
                how: "passed its deadline",
                ended_at: terms.deadline,
            }
            .into());
        }
        CampaignStatus::Open => {}
    }
    if let Some(max) = terms.max_per_consumer {
        // Saturating: a quantity near `i64::MAX` must be refused here, not wrap to a
        // negative sum that passes the limit (or panic in a debug build).
        if state.consumer_units.saturating_add(quantity) > max {
            return Err(Refusal::PerConsumerLimit {
                held: state.consumer_units,
                requested: quantity,
                limit: max,
            }
            .into());
        }
    }
    if let Some(total) = terms.total_cap {
        let left = total - state.campaign_units;
        if quantity > left {
            return Err(if left <= 0 {
                Refusal::SoldOut { total_cap: total }
            } else {
                Refusal::TotalCapLeft {
                    left,
                    total_cap: total,
                }
            }
            .into());
        }
    }
    // The campaign's money stays within what its ledger can sum (a campaign without a
    // total cap is bounded here; one with a cap was bounded at creation).
    let most_units = crate::campaign::MAX_CAMPAIGN_MONEY / terms.unit_price.minor.max(1);
    if quantity > most_units {
        // No state of the campaign could take this order.
        return Err(DomainError::invalid(
            "quantity",
            format!("{quantity} units is more than a campaign may hold at this price (at most {most_units})"),
        ));
    }
    if state.campaign_units.saturating_add(quantity) > most_units {
        return Err(Refusal::TooLarge {
            what: "campaign",
            units: quantity,
        }
        .into());
    }
    // Checked: without a per-order limit a client may ask for any `i64`, and a batch's
    // count that wrapped negative would be stored.
    let after = state
        .open_batch_units
        .checked_add(quantity)
        .ok_or_else(|| DomainError::invalid("quantity", format!("{quantity} units is too many")))?;
    if let Some(cap) = terms.batch_cap {
        if after > cap {
            // An order is never split across batches, so it must fit the open batch whole.
            return Err(Refusal::BatchCap {
                fits: cap - state.open_batch_units,
                cap,
            }
            .into());
        }
    }
    Ok(Admission {
        batch_units_after: after,
        locks: after >= terms.batch_threshold,
    })
}

/// Whether a pre-order placed at `now` in a batch of status `batch_open` may be cancelled.
/// Once the batch locks, the units are promised to the factory and cannot be withdrawn.
pub fn may_cancel(
    batch_open: bool,
    campaign_closed_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    if !batch_open {
        return Err(Refusal::BatchNotOpen.into());
    }
    if now >= campaign_closed_at {
        return Err(Refusal::PastDeadline {
            deadline: campaign_closed_at,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CampaignSpec;
    use chrono::Duration;
    use proptest::prelude::*;

    fn terms(threshold: i64, cap: Option<i64>, per_order: Option<i64>) -> CampaignTerms {
        let now = Utc::now();
        CampaignSpec {
            sku: "s".into(),
            title: "t".into(),
            currency: "EUR".into(),
            unit_price: 1000,
            deposit: 100,
            batch_threshold: threshold,
            batch_cap: cap,
            max_per_order: per_order,
            max_per_consumer: Some(8),
            total_cap: Some(100),
            opens_at: Some(now),
            deadline: now + Duration::days(1),
            price_ladder: vec![],
            balance_window_secs: None,
            ships_within_days: None,
        }
        .validate(now)
        .unwrap()
    }

    #[test]
    fn crossing_the_threshold_locks() {
        let t = terms(10, Some(12), Some(5));
        let s = PoolState {
            open_batch_units: 8,
            campaign_units: 8,
            consumer_units: 0,
        };
        assert_eq!(
            admit(&t, CampaignStatus::Open, s, 1).unwrap(),
            Admission {
                batch_units_after: 9,
                locks: false
            }
        );
        assert_eq!(
            admit(&t, CampaignStatus::Open, s, 4).unwrap(),
            Admission {
                batch_units_after: 12,
                locks: true
            }
        );
        assert!(matches!(
            admit(&t, CampaignStatus::Open, s, 5),
            Err(DomainError::Refused(Refusal::BatchCap { fits: 4, cap: 12 }))
        ));
    }

    #[test]
    fn limits_and_status_refuse() {
        let t = terms(10, None, Some(5));
        let s = PoolState::default();
        assert!(matches!(
            admit(&t, CampaignStatus::Open, s, 0),
            Err(DomainError::InvalidArgument { .. })
        ));
        assert!(matches!(
            admit(&t, CampaignStatus::Open, s, 6),
            Err(DomainError::InvalidArgument { .. })
        ));
        assert!(matches!(
            admit(&t, CampaignStatus::Closed, s, 1),
            Err(DomainError::Refused(Refusal::CampaignClosed { .. }))
        ));
        assert!(matches!(
            admit(&t, CampaignStatus::Scheduled, s, 1),
            Err(DomainError::Refused(Refusal::CampaignNotOpen { .. }))
        ));
        let heavy = PoolState {
            consumer_units: 7,
            ..s
        };
        assert_eq!(
            admit(&t, CampaignStatus::Open, heavy, 2)
                .unwrap_err()
                .reason(),
            "PER_CONSUMER_LIMIT"
        );
        let sold = PoolState {
            campaign_units: 99,
            ..s
        };
        assert_eq!(
            admit(&t, CampaignStatus::Open, sold, 2),
            Err(Refusal::TotalCapLeft {
                left: 1,
                total_cap: 100
            }
            .into())
        );
        assert!(admit(&t, CampaignStatus::Open, sold, 1).is_ok());
    }

    proptest! {
        /// Feeding any sequence of order sizes through the rule, as the store does, never
        /// overfills a batch and locks each batch exactly when it first reaches the threshold.
        #[test]
        fn batches_never_exceed_cap_and_lock_at_threshold(
            threshold in 1i64..20, extra in 0i64..10, orders in proptest::collection::vec(1i64..6, 1..200)
        ) {
            let t = CampaignTerms { max_per_consumer: None, total_cap: None, ..terms(threshold, Some(threshold + extra), None) };
            let mut open = 0;
            let mut locked_batches = vec![];
            for q in orders {
                match admit(&t, CampaignStatus::Open, PoolState { open_batch_units: open, campaign_units: 0, consumer_units: 0 }, q) {
                    Ok(a) => {
                        prop_assert!(a.batch_units_after <= threshold + extra);
                        if a.locks {
                            prop_assert!(a.batch_units_after >= threshold);
                            locked_batches.push(a.batch_units_after);
                            open = 0;
                        } else {
                            prop_assert!(a.batch_units_after < threshold);
                            open = a.batch_units_after;
                        }
                    }
                    Err(_) => prop_assert!(open + q > threshold + extra),
                }
            }
        }
    }
}
