//! A campaign's terms: what is sold, at what price and deposit, and when a batch is made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::text;
use crate::pricing::{PriceLadder, PriceTier, TierPosition};
use crate::{CampaignId, Currency, DomainError, Money};

/// The balance window when a campaign with a balance to pay does not set one: seven days
/// from the moment its batch locks.
pub const DEFAULT_BALANCE_WINDOW_SECS: i64 = 7 * 24 * 3600;
/// The longest balance window a campaign may set (90 days): the factory waits for it.
pub const MAX_BALANCE_WINDOW_SECS: i64 = 90 * 24 * 3600;

/// A balance window as people read it: whole days when it is whole days, else days and
/// the rest in hours, minutes and seconds (`6 days 0:00:01`).
fn window_text(secs: i64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let day_word = if days == 1 { "day" } else { "days" };
    if rest == 0 {
        format!("{days} {day_word}")
    } else {
        let (h, m, s) = (rest / 3600, rest % 3600 / 60, rest % 60);
        format!("{days} {day_word} {h}:{m:02}:{s:02}")
    }
}

/// Whole days a batch expected to ship at `expected` is late on its promise `due`, by date
/// (UTC): a promise is a day ("ships by 24 December"), kept through the end of that day,
/// so a run that ends minutes after the instant of the lock plus the promise, on the same
/// date, is on time. 0 when on time.
pub fn days_late(expected: DateTime<Utc>, due: DateTime<Utc>) -> i64 {
    (expected.date_naive() - due.date_naive()).num_days().max(0)
}

/// The end of the day (UTC) a promise falls on: the latest a batch due at `due` may ship
/// and still be on time ([`days_late`]).
pub fn promised_day_end(due: DateTime<Utc>) -> DateTime<Utc> {
    let next = due.date_naive() + chrono::Days::new(1);
    next.and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or(due)
}

/// The delivery promise when a campaign does not state one: six weeks from the moment a
/// batch locks, or the balance window and four weeks when that is later (the factory
/// cannot start before the balance window closes).
pub const DEFAULT_SHIPS_WITHIN_DAYS: i64 = 42;
/// The longest delivery promise a campaign may make (two years).
pub const MAX_SHIPS_WITHIN_DAYS: i64 = 730;

/// The highest unit price a campaign may ask, in minor units (ten billion major units).
pub const MAX_UNIT_PRICE: i64 = 1_000_000_000_000;

/// The most money one campaign may commit, in minor units: its committed units (open and
/// locked batches) times its unit price may not pass it. Every sum the ledger and the
/// money summary compute for a campaign (a batch's settlement, the campaign's deposits,
/// captures and balances) is bounded by a small multiple of this, so it fits a 64-bit
/// integer with room to spare, on both stores, and sums over thousands of campaigns at
/// the bound still fit. Caps and thresholds are checked against it at creation; a
/// campaign without a total cap is refused further orders once it reaches it.
pub const MAX_CAMPAIGN_MONEY: i64 = 1_000_000_000_000_000;

/// What a merchant asks for when creating a campaign, as received. Nothing here is
/// trusted until [`CampaignSpec::validate`] turns it into [`CampaignTerms`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub sku: String,
    pub title: String,
    pub currency: String,
    /// Price per unit in minor units.
    pub unit_price: i64,
    /// Deposit per unit in minor units, held when the pre-order is placed.
    pub deposit: i64,
    /// Units that must be pre-ordered before a batch is produced.
    pub batch_threshold: i64,
    /// Most units one batch may hold; absent means a batch locks at its threshold anyway,
    /// so the cap only matters for the order that crosses the threshold.
    pub batch_cap: Option<i64>,
    /// Most units one pre-order may ask for.
    pub max_per_order: Option<i64>,
    /// Most units one consumer may hold across the campaign (cancelled orders excluded).
    pub max_per_consumer: Option<i64>,
    /// Most units the campaign sells across all its batches.
    pub total_cap: Option<i64>,
    /// When pre-orders open; absent means at creation. Kept optional in the request (not
    /// filled in by the server) so that a retried request fingerprints the same.
    pub opens_at: Option<DateTime<Utc>>,
    pub deadline: DateTime<Utc>,
    /// Volume price breaks on `unit_price` (see [`crate::pricing`]); empty for one price.
    /// Omitted from the fingerprint when empty, so requests made before ladders existed
    /// fingerprint as they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub price_ladder: Vec<PriceTier>,
    /// Seconds a consumer has, from the moment their batch locks, to pay the balance; an
    /// unpaid balance then forfeits the deposit. Must be absent when the deposit is the
    /// full price (nothing is left to pay); absent otherwise means
    /// [`DEFAULT_BALANCE_WINDOW_SECS`]. A window relative to the lock (rather than one
    /// date for the campaign) gives every batch the same time to pay, however early it
    /// locked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance_window_secs: Option<i64>,
    /// The delivery promise: a locked batch ships within this many days of its lock (its
    /// due date). Absent means [`DEFAULT_SHIPS_WITHIN_DAYS`], or the balance window and
    /// four weeks when that is later. Omitted from the fingerprint when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ships_within_days: Option<i64>,
}

/// Validated campaign terms: every invariant the pooling rule relies on holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignTerms {
    pub sku: String,
    pub title: String,
    pub unit_price: Money,
    pub deposit: Money,
    pub batch_threshold: i64,
    pub batch_cap: Option<i64>,
    pub max_per_order: Option<i64>,
    pub max_per_consumer: Option<i64>,
    pub total_cap: Option<i64>,
    pub opens_at: DateTime<Utc>,
    pub deadline: DateTime<Utc>,
    /// Empty when the campaign has one price.
    #[serde(default)]
    pub price_ladder: PriceLadder,
    /// `None` exactly when the deposit is the full price: batches are then ready for
    /// production at lock.
    #[serde(default)]
    pub balance_window_secs: Option<i64>,
    /// The delivery promise in days from a batch's lock (always set once validated).
    #[serde(default = "default_ships_within_days")]
    pub ships_within_days: i64,
}

fn default_ships_within_days() -> i64 {
    DEFAULT_SHIPS_WITHIN_DAYS
}

impl CampaignTerms {
    /// Whether the deposit is the whole price, so no balance is ever due.
    pub fn deposit_is_full_price(&self) -> bool {
        self.deposit == self.unit_price
    }

    /// The unit price a batch holding `units` locks at.
    pub fn price_for(&self, units: i64) -> Money {
        self.price_ladder.price_for(units, self.unit_price)
    }

    /// Where a batch of `units` stands on the price ladder.
    pub fn tier_position(&self, units: i64) -> TierPosition {
        self.price_ladder.position(units, self.unit_price)
    }

    /// The date a batch that locked at `locked_at` is promised to ship by.
    pub fn due_at(&self, locked_at: DateTime<Utc>) -> DateTime<Utc> {
        locked_at + chrono::Duration::days(self.ships_within_days)
    }

    /// The balance window, when there is one.
    pub fn balance_window(&self) -> Option<chrono::Duration> {
        self.balance_window_secs.map(chrono::Duration::seconds)
    }

    /// What happens to the money, in words a consumer reads before ordering (shown by
    /// GetCampaign).
    pub fn money_policy(&self) -> String {
        match self.balance_window_secs {
            None => format!(
                "The deposit of {} per unit is the full price. It is held when you order, \
                 released in full if you cancel while the batch is open or if the batch fails \
                 at the deadline, and taken when the batch locks.",
                self.deposit
            ),
            Some(secs) => format!(
                "A deposit of {} per unit is held when you order and released in full if you \
                 cancel while the batch is open or if the batch fails at the deadline. When the \
                 batch locks the deposit is taken and the balance (the batch's final unit price \
                 times your units, minus the deposit) is due within {}. A balance not \
                 paid in time forfeits the deposit to the merchant, and the units leave the \
                 batch.",
                self.deposit,
                span(secs)
            ),
        }
    }
}

/// A span of seconds as people say it: "7 days", "36 hours", "1 hour 30 minutes",
/// "45 minutes", "20 seconds" (never "0 hours").
pub fn span(secs: i64) -> String {
    fn n(v: i64, one: &str) -> String {
        if v == 1 {
            format!("1 {one}")
        } else {
            format!("{v} {one}s")
        }
    }
    let (days, minutes, seconds) = (secs / 86_400, secs % 3_600 / 60, secs % 60);
    let parts: Vec<String> = if secs >= 2 * 86_400 && secs % 86_400 == 0 {
        vec![n(days, "day")]
    } else if secs >= 3_600 {
        let mut p = vec![n(secs / 3_600, "hour")];
        if minutes > 0 {
            p.push(n(minutes, "minute"));
        }
        p
    } else if secs >= 60 {
        let mut p = vec![n(secs / 60, "minute")];
        if seconds > 0 {
            p.push(n(seconds, "second"));
        }
        p
    } else {
        vec![n(secs, "second")]
    };
    parts.join(" ")
}

fn positive(field: &str, v: i64) -> Result<i64, DomainError> {
    if v <= 0 {
        return Err(DomainError::invalid(
            field,
            format!("must be positive, got {v}"),
        ));
    }
    Ok(v)
}

impl CampaignSpec {
    /// Checks the spec against `now`. Errors name the offending field, so a client can
    /// point at the exact input.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<CampaignTerms, DomainError> {
        let sku = text("sku", &self.sku, 64)?;
        if !sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(DomainError::invalid(
                "sku",
                "may contain only ASCII letters, digits, '-', '_' and '.'",
            ));
        }
        let title = text("title", &self.title, 200)?;
        let currency = Currency::parse(&self.currency)?;
        let unit_price = positive("unit_price", self.unit_price)?;
        if unit_price > MAX_UNIT_PRICE {
            return Err(DomainError::invalid(
                "unit_price",
                format!(
                    "{unit_price} is over the highest unit price, {MAX_UNIT_PRICE} minor units"
                ),
            ));
        }
        // Every unit count a campaign names must be sellable without its money passing
        // MAX_CAMPAIGN_MONEY, or a batch could fill and then fail to settle.
        let most_units = MAX_CAMPAIGN_MONEY / unit_price;
        let affordable = |field: &str, units: i64| {
            if units > most_units {
                Err(DomainError::invalid(
                    field,
                    format!(
                        "{units} units at {unit_price} minor units each is more money than a campaign may hold (at most {most_units} units at this price)"
                    ),
                ))
            } else {
                Ok(())
            }
        };
        let deposit = positive("deposit", self.deposit)?;
        if deposit > unit_price {
            return Err(DomainError::invalid(
                "deposit",
                format!("deposit {deposit} is larger than the unit price {unit_price}"),
            ));
        }
        let batch_threshold = positive("batch_threshold", self.batch_threshold)?;
        affordable("batch_threshold", batch_threshold)?;
        let batch_cap = self
            .batch_cap
            .map(|v| positive("batch_cap", v))
            .transpose()?;
        if let Some(cap) = batch_cap {
            affordable("batch_cap", cap)?;
            if batch_threshold > cap {
                return Err(DomainError::invalid(
                    "batch_threshold",
                    format!("threshold {batch_threshold} is above the batch cap {cap}"),
                ));
            }
        }
        let max_per_order = self
            .max_per_order
            .map(|v| positive("max_per_order", v))
            .transpose()?;
        if let Some(per_order) = max_per_order {
            affordable("max_per_order", per_order)?;
        }
        if let (Some(per_order), Some(cap)) = (max_per_order, batch_cap) {
            if per_order > cap {
                return Err(DomainError::invalid(
                    "max_per_order",
                    format!("{per_order} units could never fit a batch capped at {cap}"),
                ));
            }
        }
        let max_per_consumer = self
            .max_per_consumer
            .map(|v| positive("max_per_consumer", v))
            .transpose()?;
        let total_cap = self
            .total_cap
            .map(|v| positive("total_cap", v))
            .transpose()?;
        if let Some(total) = total_cap {
            affordable("total_cap", total)?;
            if total < batch_threshold {
                return Err(DomainError::invalid(
                    "total_cap",
                    format!("total cap {total} is below the batch threshold {batch_threshold}, so no batch could ever lock"),
                ));
            }
        }
        if self.deadline <= now {
            return Err(DomainError::invalid(
                "deadline",
                format!(
                    "deadline {} is not in the future",
                    self.deadline.to_rfc3339()
                ),
            ));
        }
        let opens_at = self.opens_at.unwrap_or(now);
        if self.deadline <= opens_at {
            return Err(DomainError::invalid(
                "deadline",
                "deadline must be after opens_at",
            ));
        }
        // Guard the money arithmetic of the largest possible order up front.
        let biggest_order = max_per_order.or(batch_cap).unwrap_or(1);
        Money::new(unit_price, currency).times(biggest_order, "unit_price")?;
        let price_ladder = PriceLadder::new(
            &self.price_ladder,
            Money::new(unit_price, currency),
            Money::new(deposit, currency),
            batch_cap,
        )?;
        let balance_window_secs = match (deposit == unit_price, self.balance_window_secs) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(DomainError::invalid(
                    "balance_window_seconds",
                    "must be absent: the deposit is the full price, so no balance is ever due",
                ))
            }
            (false, None) => Some(DEFAULT_BALANCE_WINDOW_SECS),
            (false, Some(secs)) if secs <= 0 || secs > MAX_BALANCE_WINDOW_SECS => {
                return Err(DomainError::invalid(
                    "balance_window_seconds",
                    format!("must be between 1 and {MAX_BALANCE_WINDOW_SECS} seconds, got {secs}"),
                ))
            }
            (false, Some(secs)) => Some(secs),
        };
        let window_days = balance_window_secs.map_or(0, |s| (s + 86_399) / 86_400);
        let ships_within_days = match self.ships_within_days {
            None => DEFAULT_SHIPS_WITHIN_DAYS.max(window_days + 28),
            Some(days) if days <= 0 || days > MAX_SHIPS_WITHIN_DAYS => {
                return Err(DomainError::invalid(
                    "ships_within_days",
                    format!("must be between 1 and {MAX_SHIPS_WITHIN_DAYS} days, got {days}"),
                ))
            }
            Some(days) if days <= window_days => {
                return Err(DomainError::invalid(
                    "ships_within_days",
                    format!(
                        "{days} days is not longer than the balance window ({}, so the promise \
                         needs at least {} days): production starts only once the window closes",
                        window_text(balance_window_secs.unwrap_or(0)),
                        window_days + 1
                    ),
                ))
            }
            Some(days) => days,
        };
        Ok(CampaignTerms {
            sku,
            title,
            unit_price: Money::new(unit_price, currency),
            deposit: Money::new(deposit, currency),
            batch_threshold,
            batch_cap,
            max_per_order,
            max_per_consumer,
            total_cap,
            opens_at,
            deadline: self.deadline,
            price_ladder,
            balance_window_secs,
            ships_within_days,
        })
    }
}

/// Where a campaign stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CampaignStatus {
    /// Before `opens_at`: visible, not yet taking pre-orders.
    Scheduled,
    /// Taking pre-orders.
    Open,
    /// At or past the deadline, closed or cancelled by the merchant.
    Closed,
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub terms: CampaignTerms,
    pub created_at: DateTime<Utc>,
    /// When the merchant closed it early (stopped selling before the deadline); see
    /// [`crate::levers`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<DateTime<Utc>>,
    /// When the merchant cancelled it (every pre-order not in production refunded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
}

impl Campaign {
    /// The moment it stopped (or will stop) selling: its deadline, or earlier when the
    /// merchant closed or cancelled it.
    pub fn selling_ends(&self) -> DateTime<Utc> {
        [self.closed_at, self.cancelled_at]
            .into_iter()
            .flatten()
            .fold(self.terms.deadline, DateTime::min)
    }

    /// Where the campaign stands at `now`. A campaign the merchant closed or cancelled is
    /// closed from then on whatever `now` a caller brings (a replica's clock a little
    /// behind must not sell past a close).
    /// How the campaign stopped selling, and when, if it has at `now`: `was cancelled`,
    /// `was closed` (by the merchant) or `passed its deadline`. What a refusal says
    /// (`CAMPAIGN_CLOSED` to an order, `CAMPAIGN_ENDED` to a lever), so that an order on
    /// a campaign the merchant closed is not told a deadline still weeks away has passed.
    pub fn ended(&self, now: DateTime<Utc>) -> Option<(&'static str, DateTime<Utc>)> {
        if let Some(at) = self.cancelled_at {
            return Some(("was cancelled", at));
        }
        if let Some(at) = self.closed_at {
            return Some(("was closed", at));
        }
        (now >= self.terms.deadline).then_some(("passed its deadline", self.terms.deadline))
    }

    /// The refusal of an order on a campaign that no longer sells at `now` (one that
    /// has not ended yet reads as past its deadline: the store refuses so only once a
    /// deadline or a close has failed the open batch).
    pub fn closed_refusal(&self, now: DateTime<Utc>) -> crate::Refusal {
        let (how, ended_at) = self
            .ended(now)
            .unwrap_or(("passed its deadline", self.terms.deadline));
        crate::Refusal::CampaignClosed {
            deadline: self.terms.deadline,
            how,
            ended_at,
        }
    }

    pub fn status(&self, now: DateTime<Utc>) -> CampaignStatus {
        if self.closed_at.is_some() || self.cancelled_at.is_some() || now >= self.terms.deadline {
            CampaignStatus::Closed
        } else if now < self.terms.opens_at {
            CampaignStatus::Scheduled
        } else {
            CampaignStatus::Open
        }
    }
}

/// What a consumer sees of a campaign's progress: numbers they can check against their
/// own pre-order, all read in one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampaignProgress {
    pub campaign: Campaign,
    /// Units pooled in the open batch (0 when no batch is open).
    pub open_batch_units: i64,
    /// Sequence number of the open batch, if there is one.
    pub open_batch_seq: Option<i64>,
    pub batches_locked: i64,
    pub batches_failed: i64,
    /// Units in open and locked batches, the figure the total cap applies to.
    pub units_committed: i64,
}

impl CampaignProgress {
    /// Units that can still be ordered at `now`, when the campaign has a total cap: the cap
    /// less the units committed (0 when it is sold out, or no longer sells). `None` without
    /// a total cap. A campaign at its cap stays open rather than becoming "sold out" for
    /// good: a consumer's cancel frees room, and this figure shows it.
    pub fn units_available(&self, now: DateTime<Utc>) -> Option<i64> {
        let cap = self.campaign.terms.total_cap?;
        Some(match self.campaign.status(now) {
            CampaignStatus::Closed => 0,
            _ => (cap - self.units_committed).max(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    pub(crate) fn spec(now: DateTime<Utc>) -> CampaignSpec {
        CampaignSpec {
            sku: "kettle-17-white".into(),
            title: "Kettle 1.7 l".into(),
            currency: "CNY".into(),
            unit_price: 39900,
            deposit: 5000,
            batch_threshold: 50,
            batch_cap: Some(60),
            max_per_order: Some(5),
            max_per_consumer: Some(10),
            total_cap: None,
            opens_at: Some(now),
            deadline: now + Duration::days(7),
            price_ladder: vec![],
            balance_window_secs: None,
            ships_within_days: None,
        }
    }

    fn field_of(err: DomainError) -> String {
        match err {
            DomainError::InvalidArgument { field, .. } => field,
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    /// What is left under the total cap: the cap less what is committed, never below 0,
    /// 0 once the campaign no longer sells, none without a cap.
    #[test]
    fn units_available_are_the_cap_less_what_is_committed() {
        let now = Utc::now();
        let mut s = spec(now);
        s.total_cap = Some(100);
        let campaign = Campaign {
            id: CampaignId::generate(),
            terms: s.validate(now).unwrap(),
            created_at: now,
            closed_at: None,
            cancelled_at: None,
        };
        let progress = |committed| CampaignProgress {
            campaign: campaign.clone(),
            open_batch_units: 0,
            open_batch_seq: None,
            batches_locked: 0,
            batches_failed: 0,
            units_committed: committed,
        };
        assert_eq!(progress(40).units_available(now), Some(60));
        assert_eq!(progress(100).units_available(now), Some(0), "sold out");
        let later = campaign.terms.deadline + Duration::seconds(1);
        assert_eq!(
            progress(40).units_available(later),
            Some(0),
            "past the deadline"
        );
        let mut uncapped = progress(40);
        uncapped.campaign.terms.total_cap = None;
        assert_eq!(uncapped.units_available(now), None);
    }

    #[test]
    fn spans_read_as_people_say_them() {
        assert_eq!(span(7 * 86_400), "7 days");
        assert_eq!(span(86_400), "24 hours");
        assert_eq!(span(36 * 3_600), "36 hours");
        assert_eq!(span(5_400), "1 hour 30 minutes");
        assert_eq!(span(3_600), "1 hour");
        assert_eq!(span(45 * 60), "45 minutes");
        assert_eq!(span(90), "1 minute 30 seconds");
        assert_eq!(span(20), "20 seconds");
        assert_eq!(span(1), "1 second");
    }

    #[test]
    fn a_short_balance_window_is_not_zero_hours() {
        let now = Utc::now();
        let mut s = spec(now);
        s.balance_window_secs = Some(30 * 60);
        let policy = s.validate(now).unwrap().money_policy();
        assert!(policy.contains("due within 30 minutes."), "{policy}");
        assert!(!policy.contains("0 hours"), "{policy}");
    }

    #[test]
    fn money_that_would_not_fit_the_ledger_is_refused_at_creation() {
        let now = Utc::now();
        // The independent client's two campaigns: price = deposit = 2^62, threshold 2;
        // and price 5e18 with a deposit of 1.
        let mut huge = spec(now);
        (huge.unit_price, huge.deposit, huge.batch_threshold) = (1 << 62, 1 << 62, 2);
        (huge.batch_cap, huge.max_per_order) = (None, None);
        assert_eq!(field_of(huge.validate(now).unwrap_err()), "unit_price");
        let mut huge = spec(now);
        (huge.unit_price, huge.deposit) = (5_000_000_000_000_000_000, 1);
        assert_eq!(field_of(huge.validate(now).unwrap_err()), "unit_price");
        // At the highest price, 1000 units is the most a campaign may commit.
        let mut top = spec(now);
        (top.unit_price, top.deposit) = (MAX_UNIT_PRICE, MAX_UNIT_PRICE);
        (top.batch_threshold, top.batch_cap, top.max_per_order) = (1_000, Some(1_000), None);
        assert!(top.validate(now).is_ok());
        for (field, change) in [
            ("batch_threshold", (1_001, Some(1_001), None)),
            ("batch_cap", (10, Some(1_001), None)),
            ("total_cap", (10, Some(10), Some(1_001))),
        ] {
            let mut s = top.clone();
            (s.batch_threshold, s.batch_cap, s.total_cap) = change;
            assert_eq!(field_of(s.validate(now).unwrap_err()), field);
        }
        // A per-order limit no campaign could hold is refused naming that limit, not the
        // price (an outside client's 2^63 - 1 and 10^15 were blamed on `unit_price`).
        for per_order in [i64::MAX, 1_000_000_000_000_000, 1_001] {
            let mut s = top.clone();
            (s.batch_cap, s.max_per_order) = (None, Some(per_order));
            assert_eq!(field_of(s.validate(now).unwrap_err()), "max_per_order");
        }
        let mut ordinary = spec(now);
        (ordinary.batch_cap, ordinary.max_per_order) = (None, Some(1_000_000_000_000_000));
        assert_eq!(
            field_of(ordinary.validate(now).unwrap_err()),
            "max_per_order"
        );
    }

    #[test]
    fn valid_spec_validates() {
        let now = Utc::now();
        let terms = spec(now).validate(now).unwrap();
        assert_eq!(terms.unit_price.minor, 39900);
        assert_eq!(terms.deposit.currency.as_str(), "CNY");
        assert_eq!(terms.balance_window_secs, Some(DEFAULT_BALANCE_WINDOW_SECS));
        let mut full = spec(now);
        full.deposit = full.unit_price;
        assert_eq!(full.validate(now).unwrap().balance_window_secs, None);
        assert_eq!(terms.ships_within_days, DEFAULT_SHIPS_WITHIN_DAYS);
        let mut long = spec(now);
        long.balance_window_secs = Some(30 * 86_400 + 1);
        assert_eq!(long.validate(now).unwrap().ships_within_days, 31 + 28);
        // A promise must outlast the window; the refusal says the window as it was given.
        let mut short = spec(now);
        (short.balance_window_secs, short.ships_within_days) = (Some(6 * 86_400 + 1), Some(7));
        let e = short.validate(now).unwrap_err().to_string();
        assert!(
            e.contains("(6 days 0:00:01, so the promise needs at least 8 days)"),
            "{e}"
        );
        short.ships_within_days = Some(8);
        assert!(short.validate(now).is_ok());
        let mut promised = spec(now);
        promised.ships_within_days = Some(10);
        let t = promised.validate(now).unwrap();
        assert_eq!(t.due_at(now), now + Duration::days(10));
    }

    #[test]
    fn a_spec_without_money_fields_fingerprints_as_before() {
        let now = Utc::now();
        let json = serde_json::to_string(&spec(now)).unwrap();
        assert!(!json.contains("price_ladder") && !json.contains("balance_window"));
        assert!(!json.contains("ships_within_days"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let now = Utc::now();
        type Mutation = Box<dyn Fn(&mut CampaignSpec)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("deposit", Box::new(|s| s.deposit = s.unit_price + 1)),
            ("batch_threshold", Box::new(|s| s.batch_threshold = 61)),
            (
                "deadline",
                Box::new(move |s| s.deadline = now - Duration::seconds(1)),
            ),
            ("currency", Box::new(|s| s.currency = "yuan".into())),
            ("unit_price", Box::new(|s| s.unit_price = 0)),
            ("sku", Box::new(|s| s.sku = " ".into())),
            ("max_per_order", Box::new(|s| s.max_per_order = Some(61))),
            ("total_cap", Box::new(|s| s.total_cap = Some(10))),
            (
                "ships_within_days",
                Box::new(|s| s.ships_within_days = Some(0)),
            ),
            (
                "ships_within_days",
                Box::new(|s| s.ships_within_days = Some(-3)),
            ),
            // Not longer than the default seven-day balance window.
            (
                "ships_within_days",
                Box::new(|s| s.ships_within_days = Some(7)),
            ),
            (
                "balance_window_seconds",
                Box::new(|s| s.balance_window_secs = Some(0)),
            ),
            (
                "balance_window_seconds",
                Box::new(|s| {
                    s.deposit = s.unit_price;
                    s.balance_window_secs = Some(3600);
                }),
            ),
            (
                "price_ladder[0].unit_price",
                Box::new(|s| {
                    s.price_ladder = vec![PriceTier {
                        min_units: 10,
                        unit_price: 4000,
                    }]
                }),
            ),
        ];
        for (field, mutate) in cases {
            let mut s = spec(now);
            mutate(&mut s);
            assert_eq!(field_of(s.validate(now).unwrap_err()), field);
        }
    }
}
