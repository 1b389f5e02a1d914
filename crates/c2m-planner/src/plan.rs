//! The plan: what the planner decided and what it costs.
//!
//! The JSON form of [`Plan`] is the contract of `scenario-format.md`; the
//! fields after `shortfalls` are additions the contract allows ("more fields
//! may be added"). Money is computed in `f64` from the decisions and rounded
//! once, here, at the edge: each part of `cost_breakdown` is its exact value
//! rounded to whole minor units, and `total_cost` is the exact total rounded,
//! so the parts may differ from the total by at most 2 (five half-unit
//! roundings); [`crate::verify_plan`] checks exactly this rule.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::validate::ValidatedScenario;

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

/// The five parts of the objective, in whole minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostBreakdown {
    pub production: i64,
    pub setup: i64,
    pub purchase: i64,
    pub ordering: i64,
    pub holding: i64,
}

/// The same five parts before rounding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExactCosts {
    pub production: f64,
    pub setup: f64,
    pub purchase: f64,
    pub ordering: f64,
    pub holding: f64,
}

impl ExactCosts {
    pub fn total(&self) -> f64 {
        self.production + self.setup + self.purchase + self.ordering + self.holding
    }

    /// The reporting rule: each part rounded on its own.
    pub fn rounded(&self) -> CostBreakdown {
        CostBreakdown {
            production: round_money(self.production),
            setup: round_money(self.setup),
            purchase: round_money(self.purchase),
            ordering: round_money(self.ordering),
            holding: round_money(self.holding),
        }
    }
}

/// Rounds money to whole minor units, half away from zero.
pub fn round_money(v: f64) -> i64 {
    v.round() as i64
}

/// One production run: a line that runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub factory: String,
    pub sku: String,
    pub quantity: i64,
}

/// One purchase order: what is bought from one offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Purchase {
    pub supplier: String,
    pub material: String,
    pub quantity: f64,
    /// The price of the tier the quantity reaches.
    pub unit_price: f64,
    /// Whole packs bought; `null` where the offer has no pack size.
    pub packs: Option<i64>,
}

/// A product the best partial plan cannot make enough of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shortfall {
    pub sku: String,
    pub short_by: i64,
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
    pub diagnosis: Option<Diagnosis>,
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
    let runs = v
        .lines()
        .iter()
        .zip(&d.x)
        .filter(|(_, &q)| q > 0)
        .map(|(l, &q)| Run {
            factory: s.factories[l.factory].id.clone(),
            sku: s.products[l.product].sku.clone(),
            quantity: q,
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
        best_bound: None,
        solver: solver.to_string(),
        currency: s.currency.clone(),
        exact_costs: exact,
        cost_per_unit: NamedValues::default(),
        binding: Vec::new(),
        shadow_prices: None,
        diagnosis: None,
    }
}
