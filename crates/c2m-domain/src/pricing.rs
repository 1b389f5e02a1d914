//! Price ladders: volume price breaks on a campaign's unit price.
//!
//! The campaign's `unit_price` is the base price; a tier lowers it for a batch that holds
//! at least `min_units` units. The price every consumer of a batch pays is the tier the
//! whole batch reached when it locked, fixed at that moment, so the latest buyer never pays
//! less than the earliest and units that leave later (forfeits) do not change it.
//!
//! Rules checked by [`PriceLadder::new`]: at most [`MAX_TIERS`] tiers; `min_units` positive
//! and strictly increasing; prices non-increasing, at most the base price and at least the
//! deposit per unit (so a balance is never negative); with a batch cap, every tier must be
//! reachable (`min_units <= batch_cap`).

use serde::{Deserialize, Serialize};

use crate::{DomainError, Money};

/// Most tiers one campaign may define.
pub const MAX_TIERS: usize = 20;

/// One price break, as requested: from `min_units` units in a batch, `unit_price` minor
/// units per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceTier {
    pub min_units: i64,
    pub unit_price: i64,
}

/// A validated ladder over a base price; empty means the base price always applies.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceLadder(Vec<PriceTier>);

/// Where a batch of some size stands on the ladder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierPosition {
    /// The unit price a batch of this size would lock at.
    pub unit_price: Money,
    /// Units still needed to reach the next, cheaper tier, and its price; `None` at the
    /// last tier.
    pub next: Option<(i64, Money)>,
}

impl PriceLadder {
    /// Validates `tiers` against the campaign's base price, deposit and batch cap. Errors
    /// name the field `price_ladder[i].min_units` or `price_ladder[i].unit_price`.
    pub fn new(
        tiers: &[PriceTier],
        base: Money,
        deposit: Money,
        batch_cap: Option<i64>,
    ) -> Result<PriceLadder, DomainError> {
        if tiers.len() > MAX_TIERS {
            return Err(DomainError::invalid(
                "price_ladder",
                format!("at most {MAX_TIERS} tiers"),
            ));
        }
        for (i, t) in tiers.iter().enumerate() {
            let units_field = format!("price_ladder[{i}].min_units");
            let price_field = format!("price_ladder[{i}].unit_price");
            if t.min_units <= 0 {
                return Err(DomainError::invalid(
                    units_field,
                    format!("must be positive, got {}", t.min_units),
                ));
            }
            if let Some(cap) = batch_cap {
                if t.min_units > cap {
                    return Err(DomainError::invalid(
                        units_field,
                        format!(
                            "{} units can never be reached by a batch capped at {cap}",
                            t.min_units
                        ),
                    ));
                }
            }
            if t.unit_price > base.minor {
                return Err(DomainError::invalid(
                    price_field,
                    format!(
                        "{} is above the base unit price {}",
                        t.unit_price, base.minor
                    ),
                ));
            }
            if t.unit_price < deposit.minor {
                return Err(DomainError::invalid(
                    price_field,
                    format!(
                        "{} is below the deposit per unit {}, so the balance would be negative",
                        t.unit_price, deposit.minor
                    ),
                ));
            }
            if let Some(prev) = i.checked_sub(1).map(|j| tiers[j]) {
                if t.min_units <= prev.min_units {
                    return Err(DomainError::invalid(
                        units_field,
                        format!(
                            "tiers must be in strictly increasing order of units ({} after {})",
                            t.min_units, prev.min_units
                        ),
                    ));
                }
                if t.unit_price > prev.unit_price {
                    return Err(DomainError::invalid(
                        price_field,
                        format!(
                            "a larger batch may not cost more per unit ({} after {})",
                            t.unit_price, prev.unit_price
                        ),
                    ));
                }
            }
        }
        Ok(PriceLadder(tiers.to_vec()))
    }

    /// A ladder read back from the store, trusted because only [`PriceLadder::new`] wrote it.
    pub fn from_trusted(tiers: Vec<PriceTier>) -> PriceLadder {
        PriceLadder(tiers)
    }

    pub fn tiers(&self) -> &[PriceTier] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The unit price of a batch holding `units`: the last tier reached, else the base.
    pub fn price_for(&self, units: i64, base: Money) -> Money {
        self.position(units, base).unit_price
    }

    /// The price at `units` and the distance to the next tier.
    pub fn position(&self, units: i64, base: Money) -> TierPosition {
        let reached = self.0.iter().rev().find(|t| t.min_units <= units);
        let unit_price = reached.map_or(base, |t| Money::new(t.unit_price, base.currency));
        let next = self
            .0
            .iter()
            .find(|t| t.min_units > units)
            .map(|t| (t.min_units - units, Money::new(t.unit_price, base.currency)));
        TierPosition { unit_price, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;
    use proptest::prelude::*;

    fn cny(minor: i64) -> Money {
        Money::new(minor, Currency::parse("CNY").unwrap())
    }

    fn tier(min_units: i64, unit_price: i64) -> PriceTier {
        PriceTier {
            min_units,
            unit_price,
        }
    }

    fn field(e: DomainError) -> String {
        match e {
            DomainError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn the_issue_example_prices_each_size() {
        let l = PriceLadder::new(
            &[tier(100, 39_900), tier(300, 36_900), tier(1000, 34_900)],
            cny(42_900),
            cny(5_000),
            None,
        )
        .unwrap();
        assert_eq!(l.price_for(1, cny(42_900)), cny(42_900));
        assert_eq!(l.price_for(99, cny(42_900)), cny(42_900));
        assert_eq!(l.price_for(100, cny(42_900)), cny(39_900));
        assert_eq!(l.price_for(299, cny(42_900)), cny(39_900));
        assert_eq!(l.price_for(300, cny(42_900)), cny(36_900));
        assert_eq!(l.price_for(5000, cny(42_900)), cny(34_900));
        assert_eq!(
            l.position(250, cny(42_900)),
            TierPosition {
                unit_price: cny(39_900),
                next: Some((50, cny(36_900)))
            }
        );
        assert_eq!(l.position(1000, cny(42_900)).next, None);
        assert_eq!(
            PriceLadder::default().position(7, cny(100)),
            TierPosition {
                unit_price: cny(100),
                next: None
            }
        );
    }

    #[test]
    fn bad_ladders_name_the_tier_and_field() {
        let base = cny(1000);
        let dep = cny(100);
        let bad =
            |tiers: &[PriceTier], cap| field(PriceLadder::new(tiers, base, dep, cap).unwrap_err());
        assert_eq!(bad(&[tier(0, 900)], None), "price_ladder[0].min_units");
        assert_eq!(
            bad(&[tier(5, 900), tier(5, 800)], None),
            "price_ladder[1].min_units"
        );
        assert_eq!(
            bad(&[tier(5, 800), tier(6, 900)], None),
            "price_ladder[1].unit_price"
        );
        assert_eq!(bad(&[tier(5, 1001)], None), "price_ladder[0].unit_price");
        assert_eq!(bad(&[tier(5, 99)], None), "price_ladder[0].unit_price");
        assert_eq!(bad(&[tier(11, 900)], Some(10)), "price_ladder[0].min_units");
        let many: Vec<_> = (1..=21).map(|i| tier(i, 900)).collect();
        assert_eq!(bad(&many, None), "price_ladder");
        assert!(PriceLadder::new(&[tier(5, 1000), tier(6, 1000)], base, dep, None).is_ok());
    }

    proptest! {
        /// A bigger batch never pays more per unit, and every price is between the deposit
        /// and the base price.
        #[test]
        fn price_never_rises_with_units(
            steps in proptest::collection::vec((1i64..50, 0i64..100), 0..8),
            a in 0i64..500, b in 0i64..500,
        ) {
            let mut tiers = vec![];
            let (mut units, mut price) = (0, 1000);
            for (du, dp) in steps {
                units += du;
                price = (price - dp).max(100);
                tiers.push(tier(units, price));
            }
            let l = PriceLadder::new(&tiers, cny(1000), cny(100), None).unwrap();
            let (lo, hi) = (a.min(b), a.max(b));
            let (p_lo, p_hi) = (l.price_for(lo, cny(1000)), l.price_for(hi, cny(1000)));
            prop_assert!(p_hi.minor <= p_lo.minor);
            prop_assert!(p_hi.minor >= 100 && p_lo.minor <= 1000);
            if let Some((need, next)) = l.position(lo, cny(1000)).next {
                prop_assert!(need > 0);
                prop_assert_eq!(l.price_for(lo + need, cny(1000)), next);
            }
        }
    }
}
