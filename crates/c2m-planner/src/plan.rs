//! The plan: what the planner decided and what it costs.
//!
//! The JSON form of [`Plan`] is the contract of `scenario-format.md`; the
//! fields after `shortfalls` are additions the contract allows ("more fields
//! may be added"). Money is computed in `f64` from the decisions and rounded
//! once, here, at the edge: each part of `cost_breakdown` is its exact value
//! rounded to whole minor units, and `total_cost` is the exact total rounded,
//! so the parts may differ from the total by at most 3 (six half-unit
//! roundings); [`crate::verify_plan`] checks exactly this rule.
//!
//! A plan of a time-phased (version 2) scenario fills the `Option` fields the
//! contract adds for version 2 (`horizon`, `stock`, `late`, `completion`, the
//! `period` of runs, purchases and shortfalls); a version 1 plan leaves them
//! `None`, and they are then left out of the JSON, so version 1 output keeps
//! its shape (`lateness` in the cost breakdown is the one addition, 0).

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::scenario::Horizon;
use crate::validate::{OfferRef, ValidatedScenario};

/// How good the plan is known to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanStatus {
    /// Proven optimal: the gap is zero.
    Optimal,
    /// A plan that meets every constraint; `gap` says how far from optimal it may be.
    Feasible,
    /// The demand cannot be met; the plan is the best partial plan and
    /// `shortfalls` says which products fall short.
    Infeasible,
}

impl fmt::Display for PlanStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlanStatus::Optimal => "optimal",
            PlanStatus::Feasible => "feasible",
            PlanStatus::Infeasible => "infeasible",
        })
    }
}

/// The six parts of the objective, in whole minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostBreakdown {
    pub production: i64,
    pub setup: i64,
    pub purchase: i64,
    pub ordering: i64,
    pub holding: i64,
    /// Version 2: `sum late_cost_p * B_pt`; always 0 in version 1.
    #[serde(default)]
    pub lateness: i64,
}

/// The same six parts before rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactCosts {
    pub production: f64,
    pub setup: f64,
    pub purchase: f64,
    pub ordering: f64,
    pub holding: f64,
    #[serde(default)]
    pub lateness: f64,
}

impl ExactCosts {
    pub fn total(&self) -> f64 {
        self.production + self.setup + self.purchase + self.ordering + self.holding + self.lateness
    }

    /// The reporting rule: each part rounded on its own.
    pub fn rounded(&self) -> CostBreakdown {
        CostBreakdown {
            production: round_money(self.production),
            setup: round_money(self.setup),
            purchase: round_money(self.purchase),
            ordering: round_money(self.ordering),
            holding: round_money(self.holding),
            lateness: round_money(self.lateness),
        }
    }
}

/// Rounds money to whole minor units, half away from zero.
pub fn round_money(v: f64) -> i64 {
    v.round() as i64
}

/// One production run: a line that runs (version 2: in one period).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub factory: String,
    pub sku: String,
    pub quantity: i64,
    /// Version 2: the period of the run (its units ship at the end of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<usize>,
}

/// One purchase order: what is bought from one offer (version 2: in one period).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    pub supplier: String,
    pub material: String,
    pub quantity: f64,
    /// The price of the tier the quantity reaches.
    pub unit_price: f64,
    /// Whole packs bought; `null` where the offer has no pack size.
    pub packs: Option<i64>,
    /// Version 2: the period the order is placed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<usize>,
    /// Version 2: the period at whose start it arrives (`period + L_o`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrives: Option<usize>,
}

/// A product the best partial plan cannot make enough of.
///
/// Version 2: for a product that may not be late, `short_by` is the largest
/// backlog over the periods (units due and not made by then) and `period`
/// the first period with a backlog; for a product with a `late_cost`,
/// `short_by` is what is not made by the end of the horizon and `period`
/// the first period from which it stays behind until the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub sku: String,
    pub short_by: i64,
    /// Version 2: the first period the product falls short.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<usize>,
}

/// Version 2: units of a product due by the end of a period and not made by
/// then (the backlog `B_pt`: a unit two periods late counts in two periods).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateUnits {
    pub sku: String,
    pub period: usize,
    pub units: i64,
}

/// A constraint that holds with equality in the plan, i.e. that limits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binding {
    /// The factory uses all its hours.
    Capacity {
        factory: String,
        used_hours: f64,
        capacity_hours: f64,
    },
    /// The plan buys all a supplier will sell of a material.
    SupplierCap {
        supplier: String,
        material: String,
        max_qty: f64,
    },
    /// All stock of a material (on hand and bought) is used up.
    Stock { material: String, on_hand: f64 },
    /// A run makes more than needed because of its minimum run.
    MinRun {
        factory: String,
        sku: String,
        min_run: i64,
    },
    /// A purchase buys more than needed because of a pack size, an MOQ or a
    /// price break (buying up to the break is cheaper).
    RoundUp {
        supplier: String,
        material: String,
        reason: String,
    },
}

/// Marginal values from the LP with the run and tier decisions fixed: how
/// much the total would fall with one more unit of a resource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowPrices {
    /// Money per unit of material on hand.
    pub materials: NamedValues,
    /// Money per factory hour.
    pub factory_hours: NamedValues,
}

/// Why shadow prices are missing from a plan that asked for them. They take
/// solves of their own after the plan's (one LP with HiGHS; with microlp one
/// LP, then a re-solve from its basis per binding row), and those are held to the explanations' time
/// ([`explanation_budget`]) so that `--time-limit` bounds the whole call.
/// Prices cut short are left out rather than shown with zeros for the rows not
/// reached: a zero says "one more unit is worth nothing".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ExplanationMissing {
    /// The explanations' time ran out before every price was computed.
    OutOfTime { budget_seconds: f64 },
    /// A solve the prices need failed or ended without a solution.
    SolverFailed { message: String },
}

impl std::fmt::Display for ExplanationMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExplanationMissing::OutOfTime { budget_seconds } => write!(
                f,
                "not computed within the explanations' {} s (a quarter of the time limit, at \
                 most 30 s): a longer time limit gives them",
                // Three significant digits, no trailing zeros: 0.00005, 1.25, 30.
                format!("{:.3e}", budget_seconds)
                    .parse::<f64>()
                    .unwrap_or(*budget_seconds)
            ),
            ExplanationMissing::SolverFailed { message } => {
                write!(f, "not computed: a solve they need failed ({message})")
            }
        }
    }
}

/// How long the explanations that solve again (shadow prices, and what a late
/// product would cost on time) may take after the plan's own solve: a quarter of
/// the time limit, at most 30 s. The time limit is the plan's; this keeps the
/// whole call within 1.25 times it.
pub fn explanation_budget(time_limit: std::time::Duration) -> std::time::Duration {
    (time_limit / 4).min(std::time::Duration::from_secs(30))
}

/// A factory and some of its periods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactoryPeriods {
    pub factory: String,
    pub periods: Vec<usize>,
}

/// Why demand cannot be met.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// One sentence per cause, for people.
    pub reasons: Vec<String>,
    /// Factories whose hours are all used in the best partial plan.
    pub capacity_bound: Vec<String>,
    /// Offers bought up to their `max_qty`, as `supplier/material`.
    pub supplier_caps: Vec<String>,
    /// Offers that cannot be used because of the material deadline, as `supplier/material`.
    pub excluded_offers: Vec<String>,
    /// Products that no factory has a line for.
    pub missing_lines: Vec<String>,
    /// Materials needed but with no usable offer and not enough on hand.
    pub missing_offers: Vec<String>,
    /// Version 2: per factory, the periods whose hours the best partial
    /// plan uses in full.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_bound_periods: Vec<FactoryPeriods>,
    /// Version 2: per factory, the periods it has no hours at all (closed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub closed_periods: Vec<FactoryPeriods>,
    /// Version 2: offers too slow for a shortfall, as `supplier/material:
    /// first arrival in period N` (or `never within the horizon`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_offers: Vec<String>,
}

/// Version 2 explanations, period by period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeExplanation {
    /// Factory periods whose hours the plan uses in full.
    pub capacity: Vec<PeriodCapacity>,
    /// Purchases that arrive in the period their material would otherwise
    /// run out: ordered at the last moment their lead time allows.
    pub just_in_time: Vec<JustInTime>,
    /// For each product with late units: what lateness costs and what
    /// making it on time would cost instead.
    pub lateness: Vec<LatenessChoice>,
    /// Shadow prices per period (runs, setups and tiers fixed).
    pub shadow_prices: Option<PeriodShadowPrices>,
    /// Why `shadow_prices` is missing when they were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_prices_missing: Option<ExplanationMissing>,
    /// Buying across periods compared with buying each period's need
    /// separately, for the plan's own production.
    pub consolidation: Option<Consolidation>,
}

/// A factory's hours in one period, used in full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodCapacity {
    pub factory: String,
    pub period: usize,
    pub used_hours: f64,
    pub capacity_hours: f64,
}

/// A purchase without which its material would run short in the period it
/// arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JustInTime {
    pub supplier: String,
    pub material: String,
    pub ordered: usize,
    pub arrives: usize,
    pub quantity: f64,
    /// How much of the material the plan's runs use in the arrival period,
    /// beyond the stock carried into it.
    pub needed_on_arrival: f64,
}

/// Lateness of one product, and why it was cheaper than the alternative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatenessChoice {
    pub sku: String,
    /// `sum_t B_pt`: units late, counted once per period late.
    pub unit_periods: i64,
    /// `late_cost * unit_periods`, in minor units.
    pub cost: f64,
    /// Making every unit of the product on time instead.
    pub on_time: OnTime,
}

/// What making a late product on time would cost (every other rule kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OnTime {
    /// No plan makes it on time.
    Impossible,
    /// The cheapest on-time plan costs at least `extra` more in total
    /// (exactly `extra` when `proven`).
    CostsMore { extra: f64, proven: bool },
    /// Not checked (the time limit ran out first).
    Unknown,
}

/// Marginal values per period, from the LP with runs, setups and tiers fixed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeriodShadowPrices {
    /// Per material, the saving from one more unit arriving at the start of
    /// each period.
    pub materials: NamedSeries,
    /// Per factory, the saving from one more hour in each period.
    pub factory_hours: NamedSeries,
}

/// The saving from buying across periods.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Consolidation {
    /// Purchase, ordering and holding cost of the plan (minor units).
    pub plan_material_cost: f64,
    /// The same for the plan's production with each period's net need
    /// bought separately, from the cheapest offer that arrives in time;
    /// `None` when that cannot cover the plan's production.
    pub separate_material_cost: Option<f64>,
    /// `separate - plan`.
    pub saving: Option<f64>,
}

/// A plan for one cycle. See the module docs for the rounding rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub status: PlanStatus,
    /// Minor units, the exact total rounded once.
    pub total_cost: i64,
    pub cost_breakdown: CostBreakdown,
    /// Relative MIP gap; 0 when proven optimal.
    #[serde(serialize_with = "finite_or_null", deserialize_with = "null_as_inf")]
    pub gap: f64,
    pub solve_seconds: f64,
    pub runs: Vec<Run>,
    pub purchases: Vec<Purchase>,
    /// Per material, in file order: stock left after the cycle.
    pub leftover: NamedValues,
    pub shortfalls: Vec<Shortfall>,

    // --- Version 2 (`None` for a version 1 plan). ---
    /// The scenario's horizon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub horizon: Option<Horizon>,
    /// Per material, in file order: stock at the end of each period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<NamedSeries>,
    /// Every product and period with late units.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<Vec<LateUnits>>,
    /// Per product: the first period at which its cumulative production
    /// reaches its total due; `None` when nothing is due (or, in an
    /// infeasible plan, it never does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion: Option<Completions>,

    // --- Additions to the contract. ---
    /// Best proven lower bound on the total (minor units), when the solver gives one.
    pub best_bound: Option<f64>,
    /// `highs`, `microlp` or `greedy`.
    pub solver: String,
    pub currency: String,
    /// The unrounded parts, so tools can check the rounding.
    pub exact_costs: ExactCosts,
    /// Full cost per demanded unit of each sku: its runs and setups plus its
    /// share of material cost (purchase, ordering, holding of bought stock)
    /// in proportion to the material it consumes.
    pub cost_per_unit: NamedValues,
    pub binding: Vec<Binding>,
    pub shadow_prices: Option<ShadowPrices>,
    /// Why `shadow_prices` is missing when they were asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_prices_missing: Option<ExplanationMissing>,
    pub diagnosis: Option<Diagnosis>,
    /// Version 2: explanations period by period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeExplanation>,
}

fn finite_or_null<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(*v)
    } else {
        s.serialize_none()
    }
}

fn null_as_inf<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// Name-to-number pairs that keep the scenario's order and serialize as a
/// JSON object (the contract's `leftover` is one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedValues(pub Vec<(String, f64)>);

impl NamedValues {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, f64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

impl Serialize for NamedValues {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for NamedValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, f64>::deserialize(d)?;
        Ok(NamedValues(map.into_iter().collect()))
    }
}

/// Name-to-series pairs (one number per period) that keep the scenario's
/// order and serialize as a JSON object of lists (the contract's `stock`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamedSeries(pub Vec<(String, Vec<f64>)>);

impl NamedSeries {
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[f64])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

impl Serialize for NamedSeries {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for NamedSeries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, Vec<f64>>::deserialize(d)?;
        Ok(NamedSeries(map.into_iter().collect()))
    }
}

/// Per product, the completion period (the contract's `completion`: a JSON
/// object of sku to period or `null`), in the scenario's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completions(pub Vec<(String, Option<usize>)>);

impl Completions {
    pub fn get(&self, sku: &str) -> Option<Option<usize>> {
        self.0.iter().find(|(n, _)| n == sku).map(|(_, v)| *v)
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<usize>)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }
}

impl Serialize for Completions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Completions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = std::collections::BTreeMap::<String, Option<usize>>::deserialize(d)?;
        Ok(Completions(map.into_iter().collect()))
    }
}

/// The decisions of a plan in index form, whoever made them (solver or
/// greedy). Everything reported is computed from these.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decisions {
    /// Units per line, indexed like [`ValidatedScenario::lines`].
    pub x: Vec<i64>,
    /// Per offer, indexed like [`ValidatedScenario::offers`]: the tier used
    /// and the quantity, if the offer is ordered.
    pub buy: Vec<Option<(usize, f64)>>,
}

impl Decisions {
    pub fn empty(v: &ValidatedScenario) -> Self {
        Decisions {
            x: vec![0; v.lines().len()],
            buy: vec![None; v.offers().len()],
        }
    }

    /// Units of each product made.
    pub fn made(&self, v: &ValidatedScenario) -> Vec<i64> {
        let mut made = vec![0; v.scenario().products.len()];
        for (l, &q) in v.lines().iter().zip(&self.x) {
            made[l.product] += q;
        }
        made
    }

    /// Per material: consumption by the runs.
    pub fn consumption(&self, v: &ValidatedScenario) -> Vec<f64> {
        let mut used = vec![0.0; v.scenario().materials.len()];
        for (l, &q) in v.lines().iter().zip(&self.x) {
            for &(m, a) in v.bom(l.product) {
                used[m] += a * q as f64;
            }
        }
        used
    }

    /// Per material: bought quantity.
    pub fn bought(&self, v: &ValidatedScenario) -> Vec<f64> {
        let mut bought = vec![0.0; v.scenario().materials.len()];
        for (o, b) in v.offers().iter().zip(&self.buy) {
            if let Some((_, q)) = b {
                bought[o.material] += q;
            }
        }
        bought
    }

    /// Puts every order in the tier its quantity reaches by the contract's
    /// rule (see [`tier_by_rule`]); the quantities stay as they are.
    pub fn price_by_rule(&mut self, v: &ValidatedScenario) {
        for (o, b) in v.offers().iter().zip(self.buy.iter_mut()) {
            if let Some((k, q)) = b {
                *k = tier_by_rule(v, *o, *k, *q);
            }
        }
    }

    /// The five cost parts, exactly as the model's objective defines them.
    pub fn costs(&self, v: &ValidatedScenario) -> ExactCosts {
        let s = v.scenario();
        let mut c = ExactCosts::default();
        for (l, &q) in v.lines().iter().zip(&self.x) {
            if q > 0 {
                let line = v.line(*l);
                c.production += line.unit_cost * q as f64;
                c.setup += line.setup_cost;
            }
        }
        for (o, b) in v.offers().iter().zip(&self.buy) {
            if let Some((k, q)) = b {
                let offer = v.offer(*o);
                c.purchase += offer.breaks[*k].unit_price * q;
                c.ordering += offer.order_cost;
            }
        }
        let used = self.consumption(v);
        let bought = self.bought(v);
        for (m, mat) in s.materials.iter().enumerate() {
            let left = (mat.on_hand + bought[m] - used[m]).max(0.0);
            c.holding += mat.holding_cost * left;
        }
        c
    }
}

/// The tier of an order of `q` from offer `o` that the solver or the rules
/// put in tier `k`, by the contract's rule (`planning-model.md`, constraint
/// 5): the tier whose break `q` reaches, so that `q` exactly at a break is
/// priced at that break's tier. The MILP's closure `Q_ok <= next_min_qty *
/// z_ok` lets a solver leave such a `q` in the tier below, at that tier's
/// price: the same price where the prices do not rise at the break, a lower
/// one where they do, and a plan is checked (and reported) by the rule.
pub(crate) fn tier_by_rule(v: &ValidatedScenario, o: OfferRef, k: usize, q: f64) -> usize {
    crate::verify::reached_tier(v.offer(o), q).unwrap_or(k)
}

/// Removes float noise from a quantity read back from a solver or summed:
/// tiny negatives become 0 and values are kept to 9 decimals.
pub(crate) fn clean(v: f64) -> f64 {
    let r = (v * 1e9).round() / 1e9;
    if r.abs() < 1e-9 {
        0.0
    } else {
        r
    }
}

/// Builds the reported plan from decisions (everything but the explanations).
pub(crate) fn plan_from_decisions(
    v: &ValidatedScenario,
    d: &Decisions,
    status: PlanStatus,
    solver: &str,
) -> Plan {
    let s = v.scenario();
    let mut priced = d.clone();
    priced.price_by_rule(v);
    let d = &priced;
    let runs = v
        .lines()
        .iter()
        .zip(&d.x)
        .filter(|(_, &q)| q > 0)
        .map(|(l, &q)| Run {
            factory: s.factories[l.factory].id.clone(),
            sku: s.products[l.product].sku.clone(),
            quantity: q,
            period: None,
        })
        .collect();
    let purchases = v
        .offers()
        .iter()
        .zip(&d.buy)
        .filter_map(|(o, b)| {
            let (k, q) = (*b)?;
            let offer = v.offer(*o);
            Some(Purchase {
                supplier: s.suppliers[o.supplier].id.clone(),
                material: s.materials[o.material].id.clone(),
                quantity: clean(q),
                unit_price: offer.breaks[k].unit_price,
                packs: offer.pack().map(|p| (q / p).round() as i64),
                period: None,
                arrives: None,
            })
        })
        .collect();
    let used = d.consumption(v);
    let bought = d.bought(v);
    let leftover = NamedValues(
        s.materials
            .iter()
            .enumerate()
            .map(|(m, mat)| {
                (
                    mat.id.clone(),
                    clean(mat.on_hand + bought[m] - used[m]).max(0.0),
                )
            })
            .collect(),
    );
    let made = d.made(v);
    let shortfalls = s
        .products
        .iter()
        .enumerate()
        .filter(|(p, prod)| made[*p] < prod.demand)
        .map(|(p, prod)| Shortfall {
            sku: prod.sku.clone(),
            short_by: prod.demand - made[p],
            period: None,
        })
        .collect();
    let exact = d.costs(v);
    Plan {
        status,
        total_cost: round_money(exact.total()),
        cost_breakdown: exact.rounded(),
        gap: 0.0,
        solve_seconds: 0.0,
        runs,
        purchases,
        leftover,
        shortfalls,
        horizon: None,
        stock: None,
        late: None,
        completion: None,
        best_bound: None,
        solver: solver.to_string(),
        currency: s.currency.clone(),
        exact_costs: exact,
        cost_per_unit: NamedValues::default(),
        binding: Vec::new(),
        shadow_prices: None,
        shadow_prices_missing: None,
        diagnosis: None,
        time: None,
    }
}
