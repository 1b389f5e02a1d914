//! The fill forecast of a campaign's open batch, and the advice built on it.
//!
//! The store reads what the forecast needs ([`c2m_store::LeversStore::forecast_input`]);
//! the maths is the domain's ([`c2m_domain::forecast`], pure, given the clock's `now`); the
//! planner prices the sku at lower volumes ([`c2m_planner::whatif::advice::advise`], the
//! what-if example's own advice, run here on the catalogue as a scenario). This module only
//! joins them.

use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, Utc};

use c2m_domain::forecast::{
    chance_text as chance, off_the_ends, FillForecast, FillModel, ForecastConfig, Prior,
};
use c2m_domain::{CampaignId, CampaignStatus, Money};
use c2m_planner::whatif::advice::{advise_by, AdviceSpec, NoPlan, VolumeRange};
use c2m_store::{ForecastInput, Store, StoreError};

use crate::limits::CallDeadline;

/// A campaign's fitted forecast model and what it was fitted on.
pub struct Fitted {
    pub input: ForecastInput,
    pub model: FillModel,
    /// The forecast, within the campaign's total cap ([`within_cap`]).
    pub forecast: FillForecast,
    /// Units the total cap still leaves for orders; `None` without a cap.
    pub room: Option<i64>,
}

impl Fitted {
    /// The chance the open batch locks at `threshold` by `deadline`: the model's, or none
    /// when the total cap leaves too little room for the units it would still need.
    pub fn lock_probability(&self, threshold: i64, deadline: DateTime<Utc>) -> f64 {
        let open = self.input.open_batch.map_or(0, |b| b.units);
        if self.room.is_some_and(|room| threshold - open > room) {
            return 0.0;
        }
        self.model.lock_probability(threshold, deadline)
    }
}

/// The forecast of a campaign with a total cap, which the demand model knows nothing of:
/// no order past the cap is taken, so the open batch holds at most its units plus `room`
/// more. When that is short of its threshold it cannot lock by orders (a lower threshold
/// can): no chance, no lock times, and at least the units the cap leaves it short as the
/// expected shortfall. Before, a sold-out campaign's batch read 0.73 to lock, with up to
/// 58 units projected where the cap allowed 4.
pub fn within_cap(mut f: FillForecast, open_units: i64, room: Option<i64>) -> FillForecast {
    let Some(room) = room else { return f };
    let most = open_units.saturating_add(room);
    if f.units_needed > room {
        f.lock_probability = 0.0;
        (
            f.expected_lock_at,
            f.lock_by_p10,
            f.lock_by_p50,
            f.lock_by_p90,
        ) = (None, None, None, None);
        f.expected_shortfall = f.expected_shortfall.max((f.units_needed - room) as f64);
    }
    f.projected_units_mean = f.projected_units_mean.min(most as f64);
    f.projected_units_p10 = f.projected_units_p10.min(most);
    f.projected_units_p50 = f.projected_units_p50.min(most);
    f.projected_units_p90 = f.projected_units_p90.min(most);
    f
}

/// Fits the forecast of the campaign's open batch at `now`: `None` when there is nothing to
/// forecast (no open batch, or the campaign does not sell now) or the history cannot be
/// fitted (logged: a forecast is never worth failing the call that shows it).
pub async fn fit(
    store: &dyn Store,
    campaign: &CampaignId,
    now: DateTime<Utc>,
) -> Result<Option<Fitted>, StoreError> {
    let input = store.forecast_input(campaign, now).await?;
    Ok(off_runtime(move || fit_input(input, now)).await)
}

/// How many forecasts (fits, and the advice's extension search) compute at once: one a
/// core. More wait their turn.
static FORECASTS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        std::sync::Arc::new(tokio::sync::Semaphore::new(cores))
    });

/// Runs forecast maths on a blocking thread, holding one of [`FORECASTS`]' places until it
/// returns, also when its caller has gone away (its answer is then dropped).
///
/// Why: its cost grew with the units the batch still needs (the exact distribution was
/// computed through them: about a second at 100,000 units, ten at a million, in a debug
/// build; it now stops at a budget of work, a few tenths of a second in a debug build at
/// the most, and an advice's extension search costs up to sixty of those), and on the
/// runtime's workers it held them: `GetCampaign` on a campaign with a
/// threshold of 1.5 million answered after 12 s whatever `--request-timeout` said (no
/// timer can fire in a task that does not yield), and four such calls held every other
/// call for 18 s. Off the runtime, a deadline answers on time and other calls go on; at
/// most one such computation a core runs at once.
pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let place = FORECASTS
        .clone()
        .acquire_owned()
        .await
        .expect("the forecasts' semaphore is never closed");
    let done = tokio::task::spawn_blocking(move || {
        let _place = place;
        work()
    })
    .await;
    match done {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a forecast's blocking task was cancelled: {e}"),
    }
}

/// [`fit`] on an input already read.
pub fn fit_input(input: ForecastInput, now: DateTime<Utc>) -> Option<Fitted> {
    let batch = input.open_batch?;
    if input.progress.campaign.status(now) != CampaignStatus::Open {
        return None;
    }
    let fitted = Prior::from_campaigns(&input.earlier).and_then(|prior| {
        FillModel::fit(
            &input.history,
            batch,
            now,
            prior.as_ref(),
            &ForecastConfig::default(),
        )
    });
    let progress = &input.progress;
    let room =
        (progress.campaign.terms.total_cap).map(|cap| (cap - progress.units_committed).max(0));
    match fitted {
        Ok(model) => {
            let forecast = within_cap(model.forecast(), batch.units, room);
            Some(Fitted {
                input,
                model,
                forecast,
                room,
            })
        }
        Err(e) => {
            tracing::warn!(campaign = %input.progress.campaign.id, error = %e, "no forecast");
            None
        }
    }
}

/// When `GetAdvice`'s scan must end: a fifth of the call's budget before the call's
/// deadline (`--request-timeout`, or the client's shorter `grpc-timeout`, as the limits
/// layer gives it; `request_timeout` from now without one), so the advice is sent, with
/// what was judged, well before the call would be answered DEADLINE_EXCEEDED: the last
/// volume may overrun its share a little (the solver keeps its time limit to within its
/// own granularity), and the answer still has to be built and sent.
pub fn scan_end(call: Option<CallDeadline>, request_timeout: StdDuration) -> Instant {
    let now = Instant::now();
    let CallDeadline { at, limit } = call.unwrap_or(CallDeadline {
        at: now.checked_add(request_timeout).unwrap_or(now),
        limit: request_timeout,
    });
    at.checked_sub(limit / 5).unwrap_or(now)
}

/// The advice's defaults.
pub const DEFAULT_MARGIN: f64 = 0.15;
pub const DEFAULT_TARGET: f64 = 0.8;
/// The longest extension the advice considers, in days.
pub const MAX_EXTENSION_DAYS: i64 = 60;

/// A lower threshold that keeps the margin.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdAdvice {
    pub threshold: i64,
    pub cost_per_unit: f64,
    pub margin: f64,
    pub lock_probability: f64,
}

/// An extension of the deadline and what it gives.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionAdvice {
    pub days: i64,
    pub deadline: DateTime<Utc>,
    pub lock_probability: f64,
}

/// The advice for a campaign's open batch.
#[derive(Debug, Clone)]
pub struct Advice {
    pub forecast: FillForecast,
    pub falling_short: bool,
    pub expected_miss: f64,
    pub lower_threshold: Option<ThresholdAdvice>,
    pub extension: Option<ExtensionAdvice>,
    pub summary: String,
    pub notes: Vec<String>,
    /// Volumes below the advised threshold (below the current one when none is advised)
    /// the planner found no plan for within its time limit, in volume order, with why:
    /// neither viable nor failing, so a threshold among them was not judged.
    pub no_plan: Vec<NoPlan>,
    /// Volumes the scan did not reach by its end ([`scan_end`]), below the advised
    /// threshold (below the current one when none is advised), as ranges in volume order:
    /// not judged either.
    pub not_reached: Vec<VolumeRange>,
}

/// Advises on the fitted campaign: the expected miss, the lowest threshold (below the
/// current one) whose planned cost per unit keeps `margin` of the unit price, with its lock
/// probability, and the shortest extension (whole days, up to [`MAX_EXTENSION_DAYS`]) that
/// brings the lock probability to `target`. The planner runs on a blocking thread, with
/// `time_limit` for each volume it plans, and ends its scan by `scan_end`: the volumes it
/// did not reach by then are listed (`not_reached`), with a note, and the advice is what
/// it judged. The sku is priced as one period's plan, in periods of `period_days`.
pub async fn advice(
    store: &dyn Store,
    fitted: Fitted,
    margin: f64,
    target: f64,
    time_limit: StdDuration,
    scan_end: Instant,
    period_days: i64,
) -> Result<Advice, StoreError> {
    let terms = fitted.input.progress.campaign.terms.clone();
    let threshold = (fitted.input.open_batch).map_or(terms.batch_threshold, |b| b.threshold);
    let deadline = fitted.model.deadline();
    let mut notes = Vec::new();
    let mut no_plan = Vec::new();
    let mut not_reached = Vec::new();

    // No extension when the campaign is already on course: one would only move the
    // deadline (and could even read a hair lower than now, the forecast being a fit). Up
    // to sixty forecasts: off the runtime, as the fit ([`off_runtime`]).
    let (fitted, now_p, extension) = off_runtime(move || {
        let now_p = fitted.lock_probability(threshold, deadline);
        let extension = (now_p < target)
            .then(|| {
                (1..=MAX_EXTENSION_DAYS).find_map(|days| {
                    let later = deadline + Duration::days(days);
                    let p = fitted.lock_probability(threshold, later);
                    (p >= target && p > now_p).then_some(ExtensionAdvice {
                        days,
                        deadline: later,
                        lock_probability: p,
                    })
                })
            })
            .flatten();
        (fitted, now_p, extension)
    })
    .await;
    let open = fitted.input.open_batch.map_or(0, |b| b.units);
    let capped = fitted.room.filter(|&room| threshold - open > room);
    if let Some(room) = capped {
        notes.push(format!(
            "the total cap leaves room for {room} more units and the open batch needs {}: no \
             order can lock it and no extension helps; a threshold of at most {} can",
            threshold - open,
            open + room
        ));
    } else if now_p >= target {
        notes.push(format!(
            "already a {}% chance to lock by the deadline: no extension needed",
            computed_percent(now_p)
        ));
    } else if extension.is_none() {
        notes.push(format!(
            "no extension of up to {MAX_EXTENSION_DAYS} days reaches a {}% chance to lock",
            given_percent(target)
        ));
    }

    let catalogue = store.catalogue().await?;
    let mut lower_threshold = None;
    match crate::planning::scenario_of(&catalogue, None) {
        Err(e) => notes.push(format!("the catalogue cannot price the sku: {e}")),
        Ok(mut base) if threshold > 1 => {
            // Priced as a cycle would buy: pieces whole, and a period's hours of this
            // server's periods.
            crate::planning::whole_piece_orders(&mut base);
            crate::planning::hours_per_period(&mut base, &catalogue, period_days);
            // No larger than the planner takes: a threshold may be larger (a cheap sku).
            let max = (threshold - 1).min(c2m_planner::validate::MAX_UNITS);
            let spec = AdviceSpec {
                sku: terms.sku.clone(),
                price: terms.unit_price.minor as f64,
                deposit: terms.deposit.minor as f64,
                margin,
                max,
                step: (max / 20).max(1),
            };
            let mut opts = c2m_planner::whatif::scan_options();
            opts.time_limit = time_limit;
            let solved = tokio::task::spawn_blocking(move || {
                advise_by(&base, &spec, &opts, Some(scan_end), &mut |_, _| {})
            })
            .await;
            match solved {
                Ok(Ok(a)) => {
                    // The scan goes on past volumes the planner found no plan for. Those
                    // below the advised threshold (all of them when none is advised) might
                    // have kept the margin: the merchant is told they were not judged. The
                    // others were planned only for the price ladder, which is not shown.
                    let advised = a.minimum_viable.as_ref().map(|v| v.volume);
                    no_plan = a
                        .no_plan
                        .into_iter()
                        .filter(|n| advised.is_none_or(|v| n.volume < v))
                        .collect();
                    if let Some(first) = no_plan.first() {
                        notes.push(format!(
                            "the planner found no plan at {} of the volumes it priced below {} \
                             (the first at {} units: {}); a threshold among them was not judged",
                            no_plan.len(),
                            advised.unwrap_or(threshold),
                            first.volume,
                            first.reason
                        ));
                    }
                    // Likewise the volumes the scan did not reach before its end.
                    let below = advised.unwrap_or(threshold);
                    not_reached = (a.not_reached.into_iter())
                        .filter(|r| r.first < below)
                        .map(|r| VolumeRange {
                            first: r.first,
                            last: r.last.min(below - 1),
                        })
                        .collect();
                    if !not_reached.is_empty() {
                        let ranges: Vec<String> = (not_reached.iter())
                            .map(|r| match r.last - r.first {
                                0 => r.first.to_string(),
                                _ => format!("{} to {}", r.first, r.last),
                            })
                            .collect();
                        notes.push(format!(
                            "the planner's scan ran out of time before it reached these \
                             volumes below {below}: {} (it ends before the call's deadline, \
                             and each volume may take up to {time_limit:?}); a threshold among \
                             them was not judged",
                            ranges.join(", "),
                        ));
                    }
                    match a.minimum_viable {
                        Some(v) => {
                            let p = fitted.lock_probability(v.volume, deadline);
                            lower_threshold = Some(ThresholdAdvice {
                                threshold: v.volume,
                                cost_per_unit: v.cost_per_unit,
                                margin: 1.0 - v.cost_per_unit / terms.unit_price.minor as f64,
                                lock_probability: p,
                            });
                        }
                        // Not even the smallest volume can be made: that is what to say,
                        // not that no threshold keeps the margin (QA 13: a sku no factory
                        // makes read as a pricing question).
                        None if a.infeasible_from.is_some_and(|v| v <= a.step) => {
                            notes.push(format!(
                                "the planner cannot make {} at any volume (not even {} \
                                 units): no factory line makes it, or its materials cannot be \
                                 had; no threshold can be advised until the catalogue can",
                                terms.sku,
                                a.infeasible_from.unwrap_or(1)
                            ))
                        }
                        None => notes.push(format!(
                            "no threshold below {threshold} {}keeps a {}% margin at the \
                             planned cost",
                            if no_plan.is_empty() && not_reached.is_empty() {
                                ""
                            } else {
                                "that the planner planned "
                            },
                            given_percent(margin)
                        )),
                    }
                }
                Ok(Err(e)) => notes.push(format!("the planner could not price the sku: {e}")),
                Err(e) => notes.push(format!("the planner's task failed: {e}")),
            }
        }
        Ok(_) => notes.push("the threshold is 1 unit and cannot be lowered".into()),
    }

    let forecast = &fitted.forecast;
    let falling_short = forecast.lock_probability < target;
    let currency = terms.unit_price.currency;
    let mut summary = if falling_short {
        // The expected shortfall averages over every outcome, the locking ones included
        // (as 0): "misses by about 124 units" read as the likely outcome of a batch with a
        // 0.71 chance to lock. Said per miss, it is what a miss would leave.
        let p = forecast.lock_probability;
        let short_if_missed = forecast.expected_shortfall / (1.0 - p).max(1e-9);
        let unit_word = if short_if_missed.round() == 1.0 {
            "unit"
        } else {
            "units"
        };
        if p < 0.5 {
            format!(
                "at the current rate the batch is likely to miss: {} chance to lock by the deadline, about {short_if_missed:.0} {unit_word} short if it does",
                chance(p)
            )
        } else {
            format!(
                "the batch may miss: {} chance to lock by the deadline (the target is {}), about {short_if_missed:.0} {unit_word} short if it does",
                below(p, target),
                given(target)
            )
        }
    } else {
        format!(
            "the batch is on course: {} chance to lock by the deadline",
            chance(forecast.lock_probability)
        )
    };
    if let Some(t) = &lower_threshold {
        summary.push_str(&format!(
            "; lowering the threshold to {} keeps cost per unit at {} (margin {}%) and its chance to lock is {}",
            t.threshold,
            Money::new(t.cost_per_unit.round() as i64, currency),
            computed_percent(t.margin),
            chance(t.lock_probability)
        ));
    }
    if let Some(x) = &extension {
        let days = if x.days == 1 {
            "1 day".to_owned()
        } else {
            format!("{} days", x.days)
        };
        summary.push_str(&format!(
            "; extending by {days} gives {}",
            chance(x.lock_probability)
        ));
    }
    Ok(Advice {
        expected_miss: fitted.forecast.expected_shortfall,
        forecast: fitted.forecast,
        falling_short,
        lower_threshold,
        extension,
        summary,
        notes,
        no_plan,
        not_reached,
    })
}

/// A number the merchant gave (a target chance or margin, as a fraction) as a percentage
/// with the digits it has, up to three decimals: 20%, 99.9%, 12.5%. Whole percents
/// printed a margin of 0.999 as "keeps a 100% margin".
fn given_percent(x: f64) -> String {
    given(x * 100.0)
}

/// `x` with the decimals it has, at most three: 0.8, 12.5, 20.
fn given(x: f64) -> String {
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_owned()
}

/// A computed chance (a fraction) as whole percents, with decimals only where whole
/// percents would say 0% or 100% of a chance that is neither.
fn computed_percent(x: f64) -> String {
    off_the_ends(x * 100.0, 100.0, 0)
}

/// A chance `p` below `target` with the digits that show it below (two, or more where
/// two would print them alike: "0.80 chance (the target is 0.8)" for 0.7996).
fn below(p: f64, target: f64) -> String {
    for d in 2..6 {
        let s = format!("{p:.d$}");
        if s.parse::<f64>().is_ok_and(|shown| shown < target) {
            return s;
        }
    }
    format!("{p:.6}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary's numbers say what they are: a margin of 0.999 is not "100%", a chance
    /// of 0.7996 under a target of 0.8 is not "0.80 (the target is 0.80)", a chance of
    /// 0.996 is not "100%".
    #[test]
    fn percentages_and_chances_keep_the_digits_that_matter() {
        assert_eq!(given_percent(0.2), "20");
        assert_eq!(given_percent(0.999), "99.9");
        assert_eq!(given_percent(0.125), "12.5");
        assert_eq!(given(0.8), "0.8");
        assert_eq!(given(0.85), "0.85");
        assert_eq!(computed_percent(0.42), "42");
        assert_eq!(computed_percent(0.996), "99.6");
        assert_eq!(computed_percent(0.99996), "99.996");
        assert_eq!(computed_percent(1.0), "100");
        assert_eq!(computed_percent(0.001), "0.1");
        assert_eq!(below(0.71, 0.8), "0.71");
        assert_eq!(below(0.7996, 0.8), "0.7996");
        assert_eq!(below(0.79951, 0.8), "0.7995");
        assert_eq!(chance(0.42), "0.42");
        assert_eq!(chance(0.996), "0.996");
        assert_eq!(chance(1.0), "1.00");
        assert_eq!(chance(0.0), "0.00");
        assert_eq!(chance(0.0004), "0.0004");
        // Past six decimals, what a chance is not, in words (six zeros read as none).
        assert_eq!(chance(3e-9), "under 0.000001");
        assert_eq!(chance(1.0 - 3e-9), "over 0.999999");
        assert_eq!(computed_percent(0.9999996), "over 99.9999");
        assert_eq!(computed_percent(2e-9), "under 0.0001");
    }
}
