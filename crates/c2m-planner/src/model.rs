//! The MILP of `planning-model.md`, built with good_lp.
//!
//! Two formulations of the same model are kept side by side so that the
//! benchmark can show what the tight one buys:
//!
//! - [`Formulation::BigM`] is the textbook model: `x <= M y` with a huge
//!   constant, the last price tier bounded by `M`, and MOQ and supplier caps
//!   as separate rows.
//! - [`Formulation::Tight`] bounds each run by what it can usefully make
//!   (its demand or minimum run, and the hours of its factory), bounds each
//!   tier by its own breaks, the supplier cap and the most the plan could
//!   ever need (rounded up to a pack), and folds the MOQ and pack rounding
//!   into the tier's lower bound. Each bound is argued valid where it is
//!   computed: it never cuts off an optimal plan. The most a plan could
//!   need of a material counts each product once, at the most an optimal
//!   plan makes of it over all its lines ([`max_made`]), and that total is
//!   a row too.
//!
//! For HiGHS the tight model also writes large integers (run sizes, pack
//! counts) as two small ones ([`build_split`]): the same plans, the same LP
//! relaxation, but HiGHS's root reduced-cost fixing, whose time grows with
//! the square of an integer column's range, no longer dominates the solve.
//!
//! Row indices of the material and capacity rows are kept so that the
//! shadow prices can be read from the LP duals.

use good_lp::{variable, Constraint, Expression, ProblemVariables, Variable};

use crate::plan::Decisions;
use crate::validate::ValidatedScenario;

/// Which formulation of the model to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formulation {
    /// Tight bounds from capacity, demand and the breaks (the default).
    #[default]
    Tight,
    /// The plain big-M model; kept as the benchmark's baseline.
    BigM,
}

impl Formulation {
    pub fn name(self) -> &'static str {
        match self {
            Formulation::Tight => "tight",
            Formulation::BigM => "big-m",
        }
    }
}

/// The big-M constant of the plain formulation (units and material quantities).
pub(crate) const BIG_M: f64 = 1.0e6;

/// The fallback bound of a run whose factory has no hour limit on it and
/// where over-production may pay (see [`run_bounds`]).
pub(crate) const HUGE_UNITS: f64 = 1.0e9;

/// A model variable and its position among all variables (the column
/// index the solvers use; good_lp keeps its own index private).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Var {
    pub v: Variable,
    pub i: usize,
}

/// Variables of one line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LineVars {
    pub x: Var,
    pub y: Var,
}

/// Variables of one price tier of one offer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TierVars {
    /// Index of the break.
    pub k: usize,
    pub q: Var,
    pub z: Var,
}

/// Variables of one usable offer.
#[derive(Debug, Clone)]
pub(crate) struct OfferVars {
    pub tiers: Vec<TierVars>,
    pub n: Option<Var>,
}

/// What to build besides the plain model.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildOptions {
    pub formulation: Formulation,
    /// Demand is made elastic: a shortfall variable per product at a penalty
    /// that dominates every real cost. Used to explain infeasibility.
    pub elastic: bool,
    /// Fix the run and tier decisions to these and relax the integer
    /// quantities: the LP whose duals are the shadow prices.
    pub fixed: Option<Decisions>,
    /// A probe column for each of these rows, in `[0, PROBE_STEP]` at no cost: one more
    /// unit on hand, one more hour. Fixed at 0 it is the plain model; fixed at the step,
    /// the row's finite difference (shadow prices for a solver without duals).
    pub probes: Vec<RowRef>,
}

/// A row whose dual is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RowRef {
    Material(usize),
    Capacity(usize),
}

/// Where the decisions sit among a model's variables; kept after the model
/// itself is handed to a solver, to read the solution back.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub n_vars: usize,
    pub constant: f64,
    pub material_rows: Vec<Option<usize>>,
    pub capacity_rows: Vec<Option<usize>>,
    pub lines: Vec<LineVars>,
    pub offers: Vec<Option<OfferVars>>,
    pub shortfall: Vec<Option<Var>>,
    pub splits: Vec<Split>,
    /// The probe column of each of `BuildOptions::probes`, in its order.
    pub probes: Vec<Option<Var>>,
}

/// How far a probe column moves its row: a tenth of a unit or an hour.
pub(crate) const PROBE_STEP: f64 = 0.1;

/// An integer quantity written as `whole = step * high + low` with two
/// integer columns of small range (`low < step`), `whole` itself continuous.
/// The same set of values, so the same model; see [`split_integer`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Split {
    pub whole: Var,
    pub high: Var,
    pub low: Var,
    pub step: f64,
}

/// Integer columns of a range above this are split (see [`build_split`]).
pub(crate) const SPLIT_ABOVE: f64 = 64.0;

/// ... and up to this (a larger bound is a "no bound" stand-in).
pub(crate) const SPLIT_AT_MOST: f64 = 1.0e7;

/// Writes the integer `whole` in `[0, ub]` (a continuous column) as
/// `step * high + low` with integer `high` in `[0, ub / step]` and `low` in
/// `[0, step - 1]`, `step` about the square root of the range: every
/// integer in `[0, ub]` has exactly one such form, so the model keeps its
/// plans, and its LP relaxation (`whole` still ranges over `[0, ub]`).
pub(crate) fn split_integer(
    add: &mut impl FnMut(&mut ProblemVariables, good_lp::VariableDefinition) -> Var,
    vars: &mut ProblemVariables,
    constraints: &mut Vec<Constraint>,
    whole: Var,
    ub: f64,
) -> Split {
    let ub = (ub + 1e-9).floor();
    let step = (ub + 1.0).sqrt().ceil();
    let high = add(vars, variable().integer().min(0.0).max((ub / step).floor()));
    let low = add(vars, variable().integer().min(0.0).max(step - 1.0));
    constraints.push(Expression::from(whole.v).eq(step * high.v + low.v));
    Split {
        whole,
        high,
        low,
        step,
    }
}

/// A built model, ready to hand to a solver.
pub(crate) struct Model {
    pub vars: ProblemVariables,
    /// Every variable in creation order: `all[i].index() == i`.
    pub all: Vec<Variable>,
    pub objective: Expression,
    /// The part of the objective that no decision changes (holding of
    /// stock already on hand), left out of the solver's objective.
    pub constant: f64,
    pub constraints: Vec<Constraint>,
    pub material_rows: Vec<Option<usize>>,
    pub capacity_rows: Vec<Option<usize>>,
    pub lines: Vec<LineVars>,
    /// Per offer of the scenario; `None` for an offer that cannot be used.
    pub offers: Vec<Option<OfferVars>>,
    pub shortfall: Vec<Option<Var>>,
    /// Integer columns written as two (only from [`build_split`]). HiGHS's
    /// presolve merges them back, so the HiGHS back end turns presolve off
    /// when there are any.
    pub splits: Vec<Split>,
    /// The probe column of each of `BuildOptions::probes`, in its order.
    pub probes: Vec<Option<Var>>,
    pub has_integers: bool,
    /// Demand no line can meet: infeasible before any solver looks.
    pub trivially_infeasible: bool,
}

/// Upper bounds of runs, in units, for the given formulation.
///
/// Tight: a run never needs to make more than `max(demand, min_run)`:
/// making one unit fewer saves its unit cost and leaves at most
/// `sum_m a_pm * holding_m` more leftover, so when the unit cost is at least
/// that, cutting back never costs more. When it is less, over-producing to
/// use up leftover stock can pay, and only the factory's hours bound the run.
pub(crate) fn run_bounds(v: &ValidatedScenario, formulation: Formulation) -> Vec<f64> {
    let s = v.scenario();
    v.lines()
        .iter()
        .map(|l| {
            let line = v.line(*l);
            let demand = s.products[l.product].demand as f64;
            if formulation == Formulation::BigM {
                return BIG_M.max(10.0 * demand.max(line.min_run as f64));
            }
            let f = &s.factories[l.factory];
            let by_hours = if line.hours_per_unit > 0.0 {
                ((f.capacity_hours - line.setup_hours) / line.hours_per_unit + 1e-9).floor()
            } else if f.capacity_hours + 1e-9 >= line.setup_hours {
                f64::INFINITY
            } else {
                -1.0
            };
            let hold: f64 = v
                .bom(l.product)
                .iter()
                .map(|&(m, a)| a * s.materials[m].holding_cost)
                .sum();
            let by_demand = if line.unit_cost >= hold {
                demand.max(line.min_run as f64)
            } else {
                f64::INFINITY
            };
            let u = by_hours.min(by_demand);
            if u.is_infinite() {
                HUGE_UNITS
            } else {
                u.max(-1.0)
            }
        })
        .collect()
}

/// Rounds `q` up to a whole number of packs.
pub(crate) fn ceil_pack(q: f64, pack: Option<f64>) -> f64 {
    match pack {
        Some(p) => (q / p - 1e-9).ceil().max(0.0) * p,
        None => q,
    }
}

/// Rounds `q` down to a whole number of packs.
pub(crate) fn floor_pack(q: f64, pack: Option<f64>) -> f64 {
    match pack {
        Some(p) if q.is_finite() => (q / p + 1e-9).floor() * p,
        _ => q,
    }
}

/// Per product, the most an optimal plan needs to make over all its lines,
/// given the (tight) run bounds.
///
/// Where every line of the product costs at least the holding cost of the
/// materials a unit frees (as in [`run_bounds`]), production beyond demand
/// can be cut back without costing more: a unit fewer on a line above its
/// minimum run, or a whole line switched off when the others still meet
/// demand (setup and unit costs are not negative, and hours and materials
/// are only freed). What is left over demand is then below the minimum run
/// of every running line: at most `demand - 1 + max min_run`. Otherwise only
/// the sum of the run bounds holds.
pub(crate) fn max_made(v: &ValidatedScenario, run_ub: &[f64]) -> Vec<f64> {
    let s = v.scenario();
    let n = s.products.len();
    let mut sum_u = vec![0.0; n];
    let mut max_min_run = vec![0.0f64; n];
    let mut cuts_back = vec![true; n];
    for (l, &u) in v.lines().iter().zip(run_ub) {
        let line = v.line(*l);
        let min_run = line.min_run as f64;
        if u < min_run.max(1.0) {
            continue; // never runs (see `build`)
        }
        let p = l.product;
        sum_u[p] += u;
        max_min_run[p] = max_min_run[p].max(min_run);
        let hold: f64 = v
            .bom(p)
            .iter()
            .map(|&(m, a)| a * s.materials[m].holding_cost)
            .sum();
        if line.unit_cost < hold {
            cuts_back[p] = false;
        }
    }
    (0..n)
        .map(|p| {
            let d = s.products[p].demand as f64;
            if cuts_back[p] {
                sum_u[p].min(d.max(d - 1.0 + max_min_run[p]))
            } else {
                sum_u[p]
            }
        })
        .collect()
}

/// Per material, the most an optimal plan within the run bounds could need
/// to buy: what the most it makes of each product uses ([`max_made`]),
/// less what is on hand.
pub(crate) fn max_need(v: &ValidatedScenario, run_ub: &[f64]) -> Vec<f64> {
    let s = v.scenario();
    let mut need = vec![0.0; s.materials.len()];
    for (p, &made) in max_made(v, run_ub).iter().enumerate() {
        for &(m, a) in v.bom(p) {
            need[m] += a * made;
        }
    }
    for (m, mat) in s.materials.iter().enumerate() {
        need[m] = (need[m] - mat.on_hand).max(0.0);
    }
    need
}

/// `(lower, upper)` of the quantity bought in each tier of an offer when
/// that tier is chosen; `None` for a tier that can never be used.
///
/// Tight: the lower bound is `max(min_qty_k, moq)` rounded up to a pack; the
/// upper bound is the next break, the supplier cap (both rounded down to a
/// pack) and `max(min_qty_k, moq, need)` rounded up to a pack: buying more
/// than that in tier `k` can be cut back a pack at a time without leaving
/// the tier or the MOQ and without running short, and never costs more.
pub(crate) fn tier_bounds(
    v: &ValidatedScenario,
    offer_index: usize,
    need: f64,
    formulation: Formulation,
) -> Vec<Option<(f64, f64)>> {
    let o = v.offer(v.offers()[offer_index]);
    let pack = o.pack();
    let cap = o.max_qty.unwrap_or(f64::INFINITY);
    (0..o.breaks.len())
        .map(|k| {
            let min_k = o.breaks[k].min_qty;
            let next = o.breaks.get(k + 1).map_or(f64::INFINITY, |b| b.min_qty);
            match formulation {
                Formulation::BigM => {
                    let hi = next.min(cap).min(BIG_M.max(10.0 * need.min(BIG_M)));
                    Some((min_k, hi))
                }
                Formulation::Tight => tight_tier(min_k, next.min(cap), o.moq, pack, need),
            }
        })
        .collect()
}

/// The tight `(lower, upper)` of a tier starting at `min_k` and ending below
/// `end` (the next break or the cap, whichever is lower), as [`tier_bounds`]
/// argues it; version 2 uses it with the need counted from an order's arrival.
pub(crate) fn tight_tier(
    min_k: f64,
    end: f64,
    moq: f64,
    pack: Option<f64>,
    need: f64,
) -> Option<(f64, f64)> {
    let lo = ceil_pack(min_k.max(moq), pack);
    let useful = ceil_pack(min_k.max(moq).max(need), pack);
    let hi = floor_pack(end, pack).min(useful);
    (hi >= lo - 1e-9 && hi > 0.0).then_some((lo, hi.max(lo)))
}

/// Per material, what every plan that meets demand must buy at least.
pub(crate) fn min_need(v: &ValidatedScenario) -> Vec<f64> {
    let s = v.scenario();
    let mut need = vec![0.0; s.materials.len()];
    for (p, prod) in s.products.iter().enumerate() {
        for &(m, a) in v.bom(p) {
            need[m] += a * prod.demand as f64;
        }
    }
    for (m, mat) in s.materials.iter().enumerate() {
        need[m] -= mat.on_hand;
    }
    need
}

/// Shortfall penalty per unit: more than everything a unit could ever cost,
/// so that the elastic model first makes as much as it can.
fn shortfall_penalty(v: &ValidatedScenario) -> f64 {
    let s = v.scenario();
    let mut scale = 1.0;
    for f in &s.factories {
        for l in &f.lines {
            scale += l.setup_cost + l.unit_cost * (l.min_run.max(1) as f64);
        }
    }
    for sup in &s.suppliers {
        for o in &sup.offers {
            let max_price = o.breaks.iter().map(|b| b.unit_price).fold(0.0, f64::max);
            scale += o.order_cost + max_price * (1.0 + o.moq + o.pack().unwrap_or(0.0));
        }
    }
    let mut per_unit = 0.0;
    for p in 0..s.products.len() {
        let mat: f64 = v
            .bom(p)
            .iter()
            .map(|&(m, a)| {
                let max_price = v
                    .offers()
                    .iter()
                    .filter(|o| o.material == m)
                    .flat_map(|o| v.offer(*o).breaks.iter().map(|b| b.unit_price))
                    .fold(0.0, f64::max);
                a * (max_price + s.materials[m].holding_cost)
            })
            .sum();
        per_unit = f64::max(per_unit, mat);
    }
    10.0 * (scale + per_unit)
}

/// Builds the model.
pub(crate) fn build(v: &ValidatedScenario, opts: &BuildOptions) -> Model {
    build_split(v, opts, false)
}

/// Builds the model; with `split_integers`, each integer quantity of a large
/// range (run sizes, pack counts) is written as two integers of small range
/// ([`split_integer`]). That is for HiGHS: its reduced-cost fixing at the
/// root takes time quadratic in an integer column's range (up to 1024
/// steps) after every root LP, and on the medium benchmark that was most of
/// the solve. The solver must then not presolve the split away.
pub(crate) fn build_split(
    v: &ValidatedScenario,
    opts: &BuildOptions,
    split_integers: bool,
) -> Model {
    let s = v.scenario();
    let f = opts.formulation;
    let mut vars = ProblemVariables::new();
    let mut all = Vec::new();
    let mut has_integers = false;
    let mut add = |vars: &mut ProblemVariables, def: good_lp::VariableDefinition| {
        let var = vars.add(def);
        all.push(var);
        Var {
            v: var,
            i: all.len() - 1,
        }
    };
    let fixed = opts.fixed.as_ref();

    let mut splits: Vec<Split> = Vec::new();
    let run_ub = run_bounds(v, f);
    let need = max_need(v, &run_bounds(v, Formulation::Tight));

    let mut objective = Expression::default();
    let mut constraints = Vec::new();
    let mut lines = Vec::with_capacity(v.lines().len());
    for (i, l) in v.lines().iter().enumerate() {
        let line = v.line(*l);
        let mut u = run_ub[i];
        let mut min_run = line.min_run as f64;
        if u < min_run.max(1.0) {
            // The line can never run: its minimum run does not fit its factory.
            u = 0.0;
            min_run = 0.0;
        }
        let (x, y) = match fixed {
            Some(d) => {
                let on = d.x[i] > 0;
                let y = add(&mut vars, variable().min(on as u8).max(on as u8));
                let x = add(&mut vars, variable().min(0.0).max(if on { u } else { 0.0 }));
                (x, y)
            }
            None => {
                has_integers = true;
                let y = add(&mut vars, variable().binary());
                let x = if split_integers && u > SPLIT_ABOVE && u <= SPLIT_AT_MOST {
                    let x = add(&mut vars, variable().min(0.0).max(u));
                    splits.push(split_integer(&mut add, &mut vars, &mut constraints, x, u));
                    x
                } else {
                    add(&mut vars, variable().integer().min(0.0).max(u))
                };
                (x, y)
            }
        };
        objective += line.unit_cost * x.v + line.setup_cost * y.v;
        constraints.push(Expression::from(x.v).leq(u * y.v));
        if min_run > 0.0 {
            constraints.push(Expression::from(x.v).geq(min_run * y.v));
        }
        lines.push(LineVars { x, y });
    }

    // What every plan must buy of each material: demand is at least met, so
    // at least `sum_p a_pm d_p - on_hand_m`. Where that is positive some
    // offer must be ordered; with a single usable offer, that offer must be
    // ordered and its tiers that cannot cover the need are useless.
    let min_need = min_need(v);
    // Only where demand is firm: the elastic model may make less, and the
    // fixed LP must keep the plan it was given.
    let strengthen = f == Formulation::Tight && fixed.is_none() && !opts.elastic;
    let mut usable_offers = vec![0usize; s.materials.len()];
    for o in v.offers().iter().filter(|o| o.usable) {
        usable_offers[o.material] += 1;
    }
    let mut orders = vec![Expression::default(); s.materials.len()];
    let mut offers = Vec::with_capacity(v.offers().len());
    for (oi, o) in v.offers().iter().enumerate() {
        if !o.usable {
            offers.push(None);
            continue;
        }
        let offer = v.offer(*o);
        let mut bounds = tier_bounds(v, oi, need[o.material], f);
        if strengthen && usable_offers[o.material] == 1 {
            // The only offer buys at least the need, whichever tier it uses.
            let must = ceil_pack(min_need[o.material].max(0.0), offer.pack());
            for b in bounds.iter_mut() {
                *b = match *b {
                    Some((_, hi)) if hi < must - 1e-9 => None,
                    Some((lo, hi)) => Some((lo.max(must), hi)),
                    None => None,
                };
            }
        }
        let fixed_tier = fixed.map(|d| d.buy[oi].map(|(k, _)| k));
        let mut tiers = Vec::new();
        let mut total_q = Expression::default();
        let mut total_z = Expression::default();
        let mut max_hi: f64 = 0.0;
        for (k, b) in bounds.iter().enumerate() {
            let Some((lo, hi)) = *b else { continue };
            let z = match fixed_tier {
                Some(t) => {
                    let on = t == Some(k);
                    add(&mut vars, variable().min(on as u8).max(on as u8))
                }
                None => {
                    has_integers = true;
                    add(&mut vars, variable().binary())
                }
            };
            let q = add(
                &mut vars,
                if hi.is_finite() {
                    variable().min(0.0).max(hi)
                } else {
                    variable().min(0.0)
                },
            );
            max_hi = max_hi.max(hi);
            objective += offer.breaks[k].unit_price * q.v + offer.order_cost * z.v;
            if hi.is_finite() {
                constraints.push(Expression::from(q.v).leq(hi * z.v));
            }
            if lo > 0.0 {
                constraints.push(Expression::from(q.v).geq(lo * z.v));
            }
            total_q += q.v;
            total_z += z.v;
            orders[o.material] += z.v;
            tiers.push(TierVars { k, q, z });
        }
        if tiers.is_empty() {
            offers.push(Some(OfferVars { tiers, n: None }));
            continue;
        }
        if tiers.len() > 1 {
            constraints.push(total_z.clone().leq(1.0));
        }
        if f == Formulation::BigM {
            if offer.moq > 0.0 {
                constraints.push(total_q.clone().geq(offer.moq * total_z.clone()));
            }
            if let Some(cap) = offer.max_qty {
                constraints.push(total_q.clone().leq(cap));
            }
        }
        let n = offer.pack().map(|p| {
            let max_n = (max_hi / p + 1e-9).floor();
            let def = variable().min(0.0);
            let def = if max_n.is_finite() {
                def.max(max_n)
            } else {
                def
            };
            let n = if fixed.is_some() {
                add(&mut vars, def)
            } else if split_integers && max_n > SPLIT_ABOVE && max_n <= SPLIT_AT_MOST {
                has_integers = true;
                let n = add(&mut vars, def);
                splits.push(split_integer(
                    &mut add,
                    &mut vars,
                    &mut constraints,
                    n,
                    max_n,
                ));
                n
            } else {
                has_integers = true;
                add(&mut vars, def.integer())
            };
            constraints.push(total_q.clone().eq(p * n.v));
            n
        });
        offers.push(Some(OfferVars { tiers, n }));
    }

    if strengthen {
        for (m, expr) in orders.into_iter().enumerate() {
            if min_need[m] > 1e-9 && usable_offers[m] > 0 {
                if usable_offers[m] == 1 {
                    constraints.push(expr.eq(1.0));
                } else {
                    constraints.push(expr.geq(1.0));
                }
            }
        }
        // No product is made beyond the most an optimal plan needs to make
        // of it (see `max_made`), where that says more than the run bounds.
        let made_ub = max_made(v, &run_ub);
        for (p, &most) in made_ub.iter().enumerate() {
            let of_p: Vec<&LineVars> = v
                .lines()
                .iter()
                .zip(&lines)
                .filter(|(l, _)| l.product == p)
                .map(|(_, lv)| lv)
                .collect();
            let sum_u: f64 = v
                .lines()
                .iter()
                .zip(&run_ub)
                .filter(|(l, _)| l.product == p)
                .map(|(_, &u)| u.max(0.0))
                .sum();
            if of_p.len() > 1 && most < sum_u - 0.5 {
                let xs: Expression = of_p.iter().map(|lv| Expression::from(lv.x.v)).sum();
                constraints.push(xs.leq(most));
            }
        }
        // Every product with demand runs on at least one line.
        for (p, prod) in s.products.iter().enumerate() {
            if prod.demand > 0 {
                let ys: Expression = v
                    .lines()
                    .iter()
                    .zip(&lines)
                    .filter(|(l, _)| l.product == p)
                    .map(|(_, lv)| Expression::from(lv.y.v))
                    .sum();
                constraints.push(ys.geq(1.0));
            }
        }
    }

    // Materials: consumption <= on hand + bought. Leftover is priced by
    // holding cost: h * (on_hand + bought - used); the on-hand part is constant.
    let mut consumption = vec![Expression::default(); s.materials.len()];
    let mut touched = vec![false; s.materials.len()];
    for (i, l) in v.lines().iter().enumerate() {
        for &(m, a) in v.bom(l.product) {
            consumption[m] += a * lines[i].x.v;
            touched[m] = true;
        }
    }
    let mut bought = vec![Expression::default(); s.materials.len()];
    for (o, ov) in v.offers().iter().zip(&offers) {
        if let Some(ov) = ov {
            for t in &ov.tiers {
                bought[o.material] += t.q.v;
                touched[o.material] = true;
            }
        }
    }
    let mut constant = 0.0;
    let mut material_rows = vec![None; s.materials.len()];
    let mut probes = vec![None; opts.probes.len()];
    for (m, mat) in s.materials.iter().enumerate() {
        constant += mat.holding_cost * mat.on_hand;
        if mat.holding_cost != 0.0 {
            objective += mat.holding_cost * (bought[m].clone() - consumption[m].clone());
        }
        if touched[m] {
            let mut lhs = consumption[m].clone() - bought[m].clone();
            if let Some(i) = opts.probes.iter().position(|r| *r == RowRef::Material(m)) {
                let e = add(&mut vars, variable().min(0.0).max(PROBE_STEP));
                lhs -= e.v;
                probes[i] = Some(e);
            }
            material_rows[m] = Some(constraints.len());
            constraints.push(lhs.leq(mat.on_hand));
        }
    }

    // Capacity per factory.
    let mut capacity_rows = vec![None; s.factories.len()];
    for (fi, fac) in s.factories.iter().enumerate() {
        let mut hours = Expression::default();
        let mut any = false;
        for (i, l) in v.lines().iter().enumerate() {
            if l.factory == fi {
                let line = v.line(*l);
                hours += line.hours_per_unit * lines[i].x.v + line.setup_hours * lines[i].y.v;
                any = true;
            }
        }
        if any {
            if let Some(i) = opts.probes.iter().position(|r| *r == RowRef::Capacity(fi)) {
                let e = add(&mut vars, variable().min(0.0).max(PROBE_STEP));
                hours -= e.v;
                probes[i] = Some(e);
            }
            capacity_rows[fi] = Some(constraints.len());
            constraints.push(hours.leq(fac.capacity_hours));
        }
    }

    // Demand, optionally elastic.
    let penalty = if opts.elastic {
        shortfall_penalty(v)
    } else {
        0.0
    };
    let mut shortfall = vec![None; s.products.len()];
    let mut trivially_infeasible = false;
    for (p, prod) in s.products.iter().enumerate() {
        if prod.demand == 0 {
            continue;
        }
        let mut made = Expression::default();
        let mut any_line = false;
        for (i, l) in v.lines().iter().enumerate() {
            if l.product == p {
                made += lines[i].x.v;
                any_line = true;
            }
        }
        if !any_line && !opts.elastic {
            // No line can make it: a row without variables, which some
            // solvers reject as an empty model rather than call infeasible.
            trivially_infeasible = true;
            continue;
        }
        if opts.elastic {
            let sv = add(&mut vars, variable().min(0.0).max(prod.demand as f64));
            objective += penalty * sv.v;
            made += sv.v;
            shortfall[p] = Some(sv);
        }
        constraints.push(made.geq(prod.demand as f64));
    }

    Model {
        vars,
        all,
        objective,
        constant,
        constraints,
        material_rows,
        capacity_rows,
        lines,
        offers,
        shortfall,
        splits,
        probes,
        has_integers,
        trivially_infeasible,
    }
}

impl Model {
    pub(crate) fn layout(&self) -> Layout {
        Layout {
            n_vars: self.all.len(),
            constant: self.constant,
            material_rows: self.material_rows.clone(),
            capacity_rows: self.capacity_rows.clone(),
            lines: self.lines.clone(),
            offers: self.offers.clone(),
            shortfall: self.shortfall.clone(),
            splits: self.splits.clone(),
            probes: self.probes.clone(),
        }
    }
}

impl Layout {
    /// Solver start values for the given decisions (a warm start).
    pub(crate) fn start_values(&self, v: &ValidatedScenario, d: &Decisions) -> Vec<f64> {
        let mut vals = vec![0.0; self.n_vars];
        for (lv, &q) in self.lines.iter().zip(&d.x) {
            vals[lv.x.i] = q as f64;
            vals[lv.y.i] = if q > 0 { 1.0 } else { 0.0 };
        }
        for (oi, ov) in self.offers.iter().enumerate() {
            if let (Some(ov), Some((k, q))) = (ov, d.buy[oi]) {
                ov.start(v.offer(v.offers()[oi]).pack(), k, q, &mut vals);
            }
        }
        let made = d.made(v);
        for (p, sv) in self.shortfall.iter().enumerate() {
            if let Some(sv) = sv {
                let demand = v.scenario().products[p].demand;
                vals[sv.i] = (demand - made[p]).max(0) as f64;
            }
        }
        start_splits(&self.splits, &mut vals);
        vals
    }

    /// Reads the decisions back from solver values, removing float noise:
    /// runs are rounded to whole units, a tier counts as chosen when its
    /// binary is set, and pack quantities are made exact multiples. An
    /// order is then in the tier its quantity reaches by the contract's rule
    /// (`Decisions::price_by_rule`): at a break exactly, the break's tier.
    pub(crate) fn decisions(&self, v: &ValidatedScenario, vals: &[f64]) -> Decisions {
        let mut d = Decisions::empty(v);
        for (i, lv) in self.lines.iter().enumerate() {
            let q = vals[lv.x.i].round().max(0.0) as i64;
            d.x[i] = q;
        }
        for (oi, ov) in self.offers.iter().enumerate() {
            if let Some(ov) = ov {
                d.buy[oi] = ov.read(v.offer(v.offers()[oi]).pack(), vals);
            }
        }
        d.price_by_rule(v);
        d
    }
}

impl OfferVars {
    /// Start values of one order: tier `k`, quantity `q`.
    pub(crate) fn start(&self, pack: Option<f64>, k: usize, q: f64, vals: &mut [f64]) {
        if let Some(t) = self.tiers.iter().find(|t| t.k == k) {
            vals[t.q.i] = q;
            vals[t.z.i] = 1.0;
        }
        if let (Some(n), Some(p)) = (self.n, pack) {
            vals[n.i] = (q / p).round();
        }
    }

    /// One order read back from solver values, float noise removed: the
    /// tier that carries the quantity, whole packs, quantities snapped to
    /// 1e-6; `None` when nothing is ordered.
    pub(crate) fn read(&self, pack: Option<f64>, vals: &[f64]) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        // The tier is the one that carries the quantity. Its binary is
        // not trusted alone: with a big M, a solver may keep `z` within
        // its integrality tolerance of 0 (1e-6 * M = 1 unit) while buying.
        for t in &self.tiers {
            let z = vals[t.z.i];
            let q = vals[t.q.i];
            let carries = q > 1e-7 || (z > 0.5 && q >= 0.0);
            if carries && best.is_none_or(|(_, bq)| q > bq) {
                best = Some((t.k, q));
            }
        }
        let (k, q) = best?;
        let q = match (pack, self.n) {
            (Some(p), Some(n)) => vals[n.i].round().max(0.0) * p,
            // Solvers meet rows to about 1e-7: snap to 1e-6 so that
            // 2.9999997 reads as the 3 it stands for.
            _ => (q.max(0.0) * 1e6).round() / 1e6,
        };
        (q > 0.0).then_some((k, q))
    }
}

/// Start values of the two halves of each split integer, from the whole.
pub(crate) fn start_splits(splits: &[Split], vals: &mut [f64]) {
    for sp in splits {
        let whole = vals[sp.whole.i].round().max(0.0);
        let high = (whole / sp.step).floor();
        vals[sp.high.i] = high;
        vals[sp.low.i] = whole - sp.step * high;
    }
}
