//! Time-phased planning: the version 2 model of `planning-model.md`.
//!
//! A scenario with a horizon is planned here; version 1 scenarios keep their
//! own code path (`crate::model`, `crate::greedy`), so their answers cannot
//! move. The pieces mirror version 1:
//!
//! - [`Schedule`]: the decisions in index form, period by period, and
//!   everything reported computed from them (stock, backlog, costs);
//! - [`greedy`]: lot-for-lot MRP, the warm start and the benchmark's baseline;
//! - [`model`]: the MILP (tight and plain big-M) built with good_lp;
//! - [`verify`]: the independent check of a version 2 plan;
//! - [`explain`]: explanations per period and the infeasibility diagnosis.

#[cfg(feature = "highs")]
pub(crate) mod decompose;
pub(crate) mod explain;
pub(crate) mod greedy;
pub(crate) mod improve;
pub(crate) mod model;
pub(crate) mod verify;

use crate::plan::{
    clean, round_money, tier_by_rule, Completions, ExactCosts, LateUnits, NamedSeries, NamedValues,
    Plan, PlanStatus, Purchase, Run, Shortfall,
};
use crate::validate::ValidatedScenario;

/// `orders[t][o]`: the order placed with offer `o` in period `t`, as tier
/// and quantity.
pub(crate) type Orders = Vec<Vec<Option<(usize, f64)>>>;

/// The decisions of a version 2 plan in index form, whoever made them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    /// `x[t][l]`: units made on line `l` (indexed like
    /// [`ValidatedScenario::lines`]) in period `t`.
    pub x: Vec<Vec<i64>>,
    /// `buy[t][o]`: the order placed with offer `o` (indexed like
    /// [`ValidatedScenario::offers`]) in period `t`, as tier and quantity.
    pub buy: Orders,
}

impl Schedule {
    pub fn empty(v: &ValidatedScenario) -> Self {
        let t = v.periods();
        Schedule {
            x: vec![vec![0; v.lines().len()]; t],
            buy: vec![vec![None; v.offers().len()]; t],
        }
    }

    /// `made[p][t]`: units of each product made in each period.
    pub fn made(&self, v: &ValidatedScenario) -> Vec<Vec<i64>> {
        let mut made = vec![vec![0; v.periods()]; v.scenario().products.len()];
        for (t, xs) in self.x.iter().enumerate() {
            for (l, &q) in v.lines().iter().zip(xs) {
                made[l.product][t] += q;
            }
        }
        made
    }

    /// `used[m][t]`: material consumed by the runs of each period.
    pub fn consumption(&self, v: &ValidatedScenario) -> Vec<Vec<f64>> {
        let mut used = vec![vec![0.0; v.periods()]; v.scenario().materials.len()];
        for (t, xs) in self.x.iter().enumerate() {
            for (l, &q) in v.lines().iter().zip(xs) {
                for &(m, a) in v.bom(l.product) {
                    used[m][t] += a * q as f64;
                }
            }
        }
        used
    }

    /// `arriving[m][t]`: material arriving at the start of each period,
    /// from receipts and from this plan's orders.
    pub fn arrivals(&self, v: &ValidatedScenario) -> Vec<Vec<f64>> {
        let n = v.periods();
        let mut arriving: Vec<Vec<f64>> = (0..v.scenario().materials.len())
            .map(|m| v.receipts(m).to_vec())
            .collect();
        for (t, orders) in self.buy.iter().enumerate() {
            for (o, b) in v.offers().iter().zip(orders) {
                if let Some((_, q)) = b {
                    let a = t + o.lead_periods;
                    if a < n {
                        arriving[o.material][a] += q;
                    }
                }
            }
        }
        arriving
    }

    /// `stock[m][t]`: stock at the end of each period (negative where the
    /// plan uses more than it has; a plan that keeps the rules never does).
    pub fn stock(&self, v: &ValidatedScenario) -> Vec<Vec<f64>> {
        let used = self.consumption(v);
        let arriving = self.arrivals(v);
        v.scenario()
            .materials
            .iter()
            .enumerate()
            .map(|(m, mat)| {
                let mut s = mat.on_hand;
                (0..v.periods())
                    .map(|t| {
                        s += arriving[m][t] - used[m][t];
                        s
                    })
                    .collect()
            })
            .collect()
    }

    /// Puts every order in the tier its quantity reaches by the contract's
    /// rule (see `plan::tier_by_rule`); the quantities stay as they are.
    pub fn price_by_rule(&mut self, v: &ValidatedScenario) {
        for orders in &mut self.buy {
            for (o, b) in v.offers().iter().zip(orders.iter_mut()) {
                if let Some((k, q)) = b {
                    *k = tier_by_rule(v, *o, *k, *q);
                }
            }
        }
    }

    /// The six cost parts, exactly as the model's objective defines them.
    pub fn costs(&self, v: &ValidatedScenario) -> ExactCosts {
        let s = v.scenario();
        let mut c = ExactCosts::default();
        for xs in &self.x {
            for (l, &q) in v.lines().iter().zip(xs) {
                if q > 0 {
                    let line = v.line(*l);
                    c.production += line.unit_cost * q as f64;
                    c.setup += line.setup_cost;
                }
            }
        }
        for orders in &self.buy {
            for (o, b) in v.offers().iter().zip(orders) {
                if let Some((k, q)) = b {
                    let offer = v.offer(*o);
                    c.purchase += offer.breaks[*k].unit_price * q;
                    c.ordering += offer.order_cost;
                }
            }
        }
        for (m, row) in self.stock(v).iter().enumerate() {
            let h = s.materials[m].holding_cost;
            c.holding += row.iter().map(|&q| h * q.max(0.0)).sum::<f64>();
        }
        let made = self.made(v);
        for (p, prod) in s.products.iter().enumerate() {
            if let Some(late) = prod.late_cost {
                let units: i64 = backlog(v.due(p), &made[p]).iter().sum();
                c.lateness += late * units as f64;
            }
        }
        c
    }
}

/// `B_t`: units due by the end of each period and not made by then.
pub(crate) fn backlog(due: &[i64], made: &[i64]) -> Vec<i64> {
    let (mut cd, mut cm) = (0i64, 0i64);
    due.iter()
        .zip(made)
        .map(|(d, m)| {
            cd += d;
            cm += m;
            (cd - cm).max(0)
        })
        .collect()
}

/// The first period at which cumulative production reaches the total due;
/// `None` when nothing is due or it never does.
pub(crate) fn completion(due: &[i64], made: &[i64]) -> Option<usize> {
    let total: i64 = due.iter().sum();
    if total == 0 {
        return None;
    }
    let mut cm = 0;
    made.iter().position(|m| {
        cm += m;
        cm >= total
    })
}

/// The shortfall of one product in a plan, by the rule on [`Shortfall`]:
/// `(short_by, first period)`, or `None` when it is not short.
pub(crate) fn shortfall(due: &[i64], made: &[i64], may_be_late: bool) -> Option<(i64, usize)> {
    let b = backlog(due, made);
    if may_be_late {
        let short = *b.last()?;
        if short <= 0 {
            return None;
        }
        // The first period from which the backlog never clears.
        let from = b.iter().rposition(|&x| x == 0).map_or(0, |t| t + 1);
        Some((short, from))
    } else {
        let first = b.iter().position(|&x| x > 0)?;
        Some((b.iter().copied().max().unwrap_or(0), first))
    }
}

/// Builds the reported plan from a schedule (everything but the explanations).
pub(crate) fn plan_from_schedule(
    v: &ValidatedScenario,
    d: &Schedule,
    status: PlanStatus,
    solver: &str,
) -> Plan {
    let s = v.scenario();
    let mut priced = d.clone();
    priced.price_by_rule(v);
    let d = &priced;
    let mut runs = Vec::new();
    for (t, xs) in d.x.iter().enumerate() {
        for (l, &q) in v.lines().iter().zip(xs) {
            if q > 0 {
                runs.push(Run {
                    factory: s.factories[l.factory].id.clone(),
                    sku: s.products[l.product].sku.clone(),
                    quantity: q,
                    period: Some(t),
                });
            }
        }
    }
    let mut purchases = Vec::new();
    for (t, orders) in d.buy.iter().enumerate() {
        for (o, b) in v.offers().iter().zip(orders) {
            let Some((k, q)) = *b else { continue };
            let offer = v.offer(*o);
            purchases.push(Purchase {
                supplier: s.suppliers[o.supplier].id.clone(),
                material: s.materials[o.material].id.clone(),
                quantity: clean(q),
                unit_price: offer.breaks[k].unit_price,
                packs: offer.pack().map(|p| (q / p).round() as i64),
                period: Some(t),
                arrives: Some(t + o.lead_periods),
            });
        }
    }
    let stock = d.stock(v);
    let stock_named = NamedSeries(
        s.materials
            .iter()
            .zip(&stock)
            .map(|(mat, row)| (mat.id.clone(), row.iter().map(|&q| clean(q)).collect()))
            .collect(),
    );
    let leftover = NamedValues(
        s.materials
            .iter()
            .zip(&stock)
            .map(|(mat, row)| {
                (
                    mat.id.clone(),
                    clean(row.last().copied().unwrap_or(mat.on_hand)).max(0.0),
                )
            })
            .collect(),
    );
    let made = d.made(v);
    let mut late = Vec::new();
    let mut shortfalls = Vec::new();
    let mut completion_of = Vec::new();
    for (p, prod) in s.products.iter().enumerate() {
        for (t, &units) in backlog(v.due(p), &made[p]).iter().enumerate() {
            if units > 0 {
                late.push(LateUnits {
                    sku: prod.sku.clone(),
                    period: t,
                    units,
                });
            }
        }
        if let Some((short_by, period)) = shortfall(v.due(p), &made[p], prod.late_cost.is_some()) {
            shortfalls.push(Shortfall {
                sku: prod.sku.clone(),
                short_by,
                period: Some(period),
            });
        }
        completion_of.push((prod.sku.clone(), completion(v.due(p), &made[p])));
    }
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
        horizon: s.horizon,
        stock: Some(stock_named),
        late: Some(late),
        completion: Some(Completions(completion_of)),
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
