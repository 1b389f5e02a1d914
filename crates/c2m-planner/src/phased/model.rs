//! The version 2 MILP of `planning-model.md`, built with good_lp.
//!
//! As in version 1 there are two formulations of the same model:
//!
//! - [`Formulation::BigM`]: the model as the page writes it, with `x <= M y`
//!   for a large constant, the last price tier of every order bounded by
//!   `M`, MOQ and supplier cap as rows of their own, and no other rows.
//! - [`Formulation::Tight`]: the same plans, with bounds taken from the data
//!   ([`Bounds`]) and valid inequalities; each is argued valid where it is
//!   computed (it never cuts off every optimal plan). `docs/planning-time.md`
//!   lists what was measured and kept.

use good_lp::{variable, Constraint, Expression, ProblemVariables, VariableDefinition};

use crate::model::{
    split_integer, start_splits, tight_tier, Formulation, LineVars, OfferVars, Split, TierVars,
    Var, HUGE_UNITS, SPLIT_ABOVE, SPLIT_AT_MOST,
};
use crate::solve::Problem;
use crate::validate::ValidatedScenario;

use super::{backlog, Schedule};

/// A row whose dual is reported as a shadow price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Row {
    /// The flow of material `m` in period `t`: one more unit arriving at
    /// the start of `t`.
    Material(usize, usize),
    /// The hours of factory `f` in period `t`.
    Capacity(usize, usize),
}

/// What to build besides the plain model.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    pub formulation: Formulation,
    /// Dues are made elastic at a penalty that dominates every real cost:
    /// the best partial plan of an infeasible scenario.
    pub elastic: bool,
    /// Fix runs, setups and tiers to these and relax integer quantities:
    /// the LP whose duals are the shadow prices.
    pub fixed: Option<Schedule>,
    /// A probe column for each of these rows, in `[0, PROBE_STEP]` at no cost: one
    /// more unit of the material arriving, one more hour of the factory. Fixed at 0 it
    /// is the plain model; fixed at the step, the row's finite difference (shadow prices
    /// for a solver without duals, each re-solved from the base LP's basis).
    pub probes: Vec<Row>,
    /// This product may not be late (the alternative a lateness
    /// explanation prices).
    pub on_time: Option<usize>,
    /// Write large integer columns as two (for HiGHS, see `model::build_split`).
    pub split_integers: bool,
    /// Add the supply assignment rows (tight model, firm dues; measured
    /// with HiGHS only, see `docs/planning-time.md`).
    pub assign_supply: bool,
}

/// The most order tiers for which the tight model gets its supply
/// assignment rows. Measured (HiGHS, 2 cores): on the middle generated size
/// (800-960 tiers) the rows raise the bound at 20 s by 0.5 % over six seeds;
/// on the large (6,500-7,000 tiers) the larger LP slows the root's cut
/// rounds, which do not finish within 30 s, and the bound at the limit is
/// 0.2 % lower. Sizes between were not measured.
pub(crate) const ASSIGN_SUPPLY_MAX_TIERS: usize = 3000;

/// Where the decisions sit among the variables; kept to read a solution
/// back and to write a start.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub n_vars: usize,
    /// `[t][l]`
    pub lines: Vec<Vec<Option<LineVars>>>,
    /// `[t][o]`: the order placed in period `t`.
    pub orders: Vec<Vec<Option<OfferVars>>>,
    /// `[m][t]`: stock at the end of each period.
    pub stock: Vec<Vec<Var>>,
    /// `[p][t]`: late units of products with a late cost.
    pub backlog: Vec<Vec<Option<Var>>>,
    /// `[p][t]`: elastic shortfall variables.
    pub elastic: Vec<Vec<Option<Var>>>,
    pub material_rows: Vec<Vec<Option<usize>>>,
    pub capacity_rows: Vec<Vec<Option<usize>>>,
    pub splits: Vec<Split>,
    /// The probe column of each of `Options::probes`, in its order (`None`: the row is
    /// not in the model).
    pub probes: Vec<Option<Var>>,
}

/// How far a probe column moves its row: a tenth of a unit or an hour.
pub(crate) const PROBE_STEP: f64 = 0.1;

/// Bounds from the data, per period.
#[derive(Debug, Clone)]
pub(crate) struct Bounds {
    /// `[t][l]`: the most a run can usefully make; below `max(min_run, 1)`
    /// the line cannot run in that period.
    pub run: Vec<Vec<f64>>,
    /// Per product: the most an optimal plan makes over the horizon.
    pub max_made: Vec<f64>,
    /// `[m][a]`: the most material `m` an optimal plan uses in periods `a..T`.
    pub need_from: Vec<Vec<f64>>,
}

/// `cd[p][t]`: units of product `p` due by the end of period `t`.
pub(crate) fn cumulative_due(v: &ValidatedScenario) -> Vec<Vec<i64>> {
    (0..v.scenario().products.len())
        .map(|p| {
            let mut acc = 0;
            v.due(p)
                .iter()
                .map(|d| {
                    acc += d;
                    acc
                })
                .collect()
        })
        .collect()
}

/// Per material, the first period an order of it can arrive in (`T` when none can).
pub(crate) fn first_arrival(v: &ValidatedScenario) -> Vec<usize> {
    let mut first = vec![v.periods(); v.scenario().materials.len()];
    for o in v.offers().iter().filter(|o| o.usable) {
        first[o.material] = first[o.material].min(o.lead_periods);
    }
    first
}

/// Whether product `p` must have made `cd[p][t]` by each period `t` in
/// every plan the model allows.
fn firm(v: &ValidatedScenario, opts: &Options, p: usize) -> bool {
    !opts.elastic && (v.scenario().products[p].late_cost.is_none() || opts.on_time == Some(p))
}

/// The bounds of the tight formulation.
///
/// - Hours: a run in period `t` fits the factory's hours of `t` after its
///   setup.
/// - Materials: before the first period any order of a material can arrive,
///   a run can use only the stock on hand and received so far.
/// - Over-production: making one unit fewer in the last period a product is
///   made keeps every due met (the total still covers the total due) and
///   saves its unit cost, and leaves at most `a_pm` more of each material in
///   stock for at most `T` periods; when the unit cost of every line of the
///   product is at least `sum_m a_pm * holding_m * T`, cutting back never
///   costs more, so some optimal plan makes at most
///   `max(D, D - 1 + largest min_run)` (as in version 1).
/// - Remaining due: a firm product (see [`firm`]) has made `cd[t-1]` before
///   `t`, so from `t` on it makes at most `max_made - cd[t-1]`.
pub(crate) fn bounds(v: &ValidatedScenario, opts: &Options) -> Bounds {
    let s = v.scenario();
    let n = v.periods();
    let cd = cumulative_due(v);
    if opts.formulation == Formulation::BigM {
        // The plain model's M: ten times what the dues need, the bound a
        // modeller writes without thinking about the data (a constant of
        // 1e6 as in version 1 makes HiGHS's presolve call feasible
        // time-phased models infeasible, or stop at a plan it wrongly
        // calls optimal).
        let run = vec![
            v.lines()
                .iter()
                .map(|l| {
                    let d = v.total_due(l.product) as f64;
                    10.0 * d.max(v.line(*l).min_run as f64).max(1.0)
                })
                .collect();
            n
        ];
        let mut need = vec![0.0; s.materials.len()];
        for p in 0..s.products.len() {
            for &(m, a) in v.bom(p) {
                need[m] += 10.0 * a * v.total_due(p) as f64;
            }
        }
        return Bounds {
            run,
            max_made: vec![f64::INFINITY; s.products.len()],
            need_from: need.into_iter().map(|q| vec![q.max(1.0); n]).collect(),
        };
    }
    let first = first_arrival(v);
    let mut run = vec![vec![0.0; v.lines().len()]; n];
    for (t, row) in run.iter_mut().enumerate() {
        for (i, l) in v.lines().iter().enumerate() {
            let line = v.line(*l);
            let h = v.hours(l.factory)[t];
            let by_hours = if line.hours_per_unit > 0.0 {
                ((h - line.setup_hours) / line.hours_per_unit + 1e-9).floor()
            } else if h + 1e-9 >= line.setup_hours {
                f64::INFINITY
            } else {
                -1.0
            };
            let mut by_material = f64::INFINITY;
            for &(m, a) in v.bom(l.product) {
                if first[m] > t {
                    let have: f64 =
                        s.materials[m].on_hand + v.receipts(m)[..=t].iter().sum::<f64>();
                    by_material = by_material.min((have / a + 1e-9).floor());
                }
            }
            row[i] = by_hours.min(by_material);
        }
    }
    // The most each product can be made over the horizon, and whether
    // cutting back never costs more.
    let mut sum_u = vec![0.0f64; s.products.len()];
    let mut largest_min_run = vec![0.0f64; s.products.len()];
    let mut cuts_back = vec![true; s.products.len()];
    for (i, l) in v.lines().iter().enumerate() {
        let line = v.line(*l);
        let min_run = (line.min_run as f64).max(1.0);
        for row in &run {
            if row[i] >= min_run {
                sum_u[l.product] += row[i];
            }
        }
        largest_min_run[l.product] = largest_min_run[l.product].max(line.min_run as f64);
        let hold: f64 = v
            .bom(l.product)
            .iter()
            .map(|&(m, a)| a * s.materials[m].holding_cost)
            .sum();
        if line.unit_cost < hold * n as f64 {
            cuts_back[l.product] = false;
        }
    }
    let max_made: Vec<f64> = (0..s.products.len())
        .map(|p| {
            let d = v.total_due(p) as f64;
            let u = sum_u[p].min(HUGE_UNITS);
            if cuts_back[p] {
                u.min(d.max(d - 1.0 + largest_min_run[p]))
            } else {
                u
            }
        })
        .collect();
    for (t, row) in run.iter_mut().enumerate() {
        for (i, l) in v.lines().iter().enumerate() {
            let p = l.product;
            let before = if t > 0 && firm(v, opts, p) {
                cd[p][t - 1] as f64
            } else {
                0.0
            };
            let u = row[i].min(max_made[p] - before);
            row[i] = if u.is_infinite() {
                HUGE_UNITS
            } else {
                u.max(-1.0)
            };
        }
    }
    // Material from period `a` on: each product at most what is left of its
    // `max_made` after what it must have made before `a`, and at most what
    // its runs from `a` on can make.
    let mut need_from = vec![vec![0.0; n]; s.materials.len()];
    for a in 0..n {
        for p in 0..s.products.len() {
            let mut from_runs = 0.0;
            for (i, l) in v.lines().iter().enumerate() {
                if l.product != p {
                    continue;
                }
                let min_run = (v.line(*l).min_run as f64).max(1.0);
                for row in &run[a..] {
                    if row[i] >= min_run {
                        from_runs += row[i];
                    }
                }
            }
            let before = if a > 0 && firm(v, opts, p) {
                cd[p][a - 1] as f64
            } else {
                0.0
            };
            let most = from_runs.min(max_made[p] - before).max(0.0);
            for &(m, q) in v.bom(p) {
                need_from[m][a] += q * most;
            }
        }
    }
    Bounds {
        run,
        max_made,
        need_from,
    }
}

/// `(lower, upper)` of the quantity of tier `k` of an order of offer `oi`
/// arriving in period `a`, when that tier is chosen; `None` for a tier the
/// order can never use. Tight: as version 1's `model::tier_bounds`, with the
/// need counted from the arrival on (more than that is never used, and
/// cutting an order back a pack at a time keeps every later period
/// covered and never costs more).
fn order_tiers(
    v: &ValidatedScenario,
    oi: usize,
    need: f64,
    formulation: Formulation,
) -> Vec<Option<(f64, f64)>> {
    let o = v.offer(v.offers()[oi]);
    let pack = o.pack();
    let cap = o.max_qty.unwrap_or(f64::INFINITY);
    (0..o.breaks.len())
        .map(|k| {
            let min_k = o.breaks[k].min_qty;
            let next = o.breaks.get(k + 1).map_or(f64::INFINITY, |b| b.min_qty);
            match formulation {
                Formulation::BigM => {
                    let m = need + o.moq + pack.unwrap_or(0.0) + min_k;
                    Some((min_k, next.min(cap).min(m)))
                }
                Formulation::Tight => tight_tier(min_k, next.min(cap), o.moq, pack, need),
            }
        })
        .collect()
}

/// A penalty per unit of elastic shortfall above every real cost of a unit
/// over the whole horizon.
fn penalty(v: &ValidatedScenario) -> f64 {
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
    for m in &s.materials {
        scale += m.holding_cost * v.periods() as f64;
    }
    for p in &s.products {
        scale += p.late_cost.unwrap_or(0.0) * v.periods() as f64;
    }
    10.0 * scale
}

/// Builds the version 2 model.
pub(crate) fn build(v: &ValidatedScenario, opts: &Options) -> (Problem, Layout) {
    let s = v.scenario();
    let n = v.periods();
    let f = opts.formulation;
    let tight = f == Formulation::Tight;
    let fixed = opts.fixed.as_ref();
    let mut vars = ProblemVariables::new();
    let mut all = Vec::new();
    let mut has_integers = false;
    let mut add = |vars: &mut ProblemVariables, def: VariableDefinition| {
        let var = vars.add(def);
        all.push(var);
        Var {
            v: var,
            i: all.len() - 1,
        }
    };
    let mut splits: Vec<Split> = Vec::new();
    let mut objective = Expression::default();
    let mut constraints: Vec<Constraint> = Vec::new();
    let b = bounds(v, opts);
    let cd = cumulative_due(v);

    // Runs.
    let mut lines: Vec<Vec<Option<LineVars>>> = vec![vec![None; v.lines().len()]; n];
    for (t, row) in lines.iter_mut().enumerate() {
        for (i, l) in v.lines().iter().enumerate() {
            let line = v.line(*l);
            let u = b.run[t][i];
            let min_run = line.min_run as f64;
            if u < min_run.max(1.0) {
                continue; // cannot run in this period
            }
            let (x, y) = match fixed {
                Some(d) => {
                    let on = d.x[t][i] > 0;
                    let y = add(&mut vars, variable().min(on as u8).max(on as u8));
                    let x = add(&mut vars, variable().min(0.0).max(if on { u } else { 0.0 }));
                    (x, y)
                }
                None => {
                    has_integers = true;
                    let y = add(&mut vars, variable().binary());
                    let x = if opts.split_integers && u > SPLIT_ABOVE && u <= SPLIT_AT_MOST {
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
            row[i] = Some(LineVars { x, y });
        }
    }

    // Orders.
    let mut orders: Vec<Vec<Option<OfferVars>>> = vec![vec![None; v.offers().len()]; n];
    // `arrive[m][t]`: quantity of material m arriving at the start of t.
    let mut arrive = vec![vec![Expression::default(); n]; s.materials.len()];
    // `arriving_z[m][t]`: order binaries of material m arriving at the start of t.
    let mut arriving_z = vec![vec![Expression::default(); n]; s.materials.len()];
    let mut has_order = vec![vec![false; n]; s.materials.len()];
    for (oi, o) in v.offers().iter().enumerate() {
        let Some(last) = v.last_order_period(*o).filter(|_| o.usable) else {
            continue;
        };
        let offer = v.offer(*o);
        for (t, row) in orders.iter_mut().enumerate().take(last + 1) {
            let a = t + o.lead_periods;
            let bounds = order_tiers(v, oi, b.need_from[o.material][a], f);
            let fixed_tier = fixed.map(|d| d.buy[t][oi].map(|(k, _)| k));
            let mut tiers = Vec::new();
            let mut total_q = Expression::default();
            let mut total_z = Expression::default();
            let mut max_hi: f64 = 0.0;
            for (k, bk) in bounds.iter().enumerate() {
                let Some((lo, hi)) = *bk else { continue };
                let z = match fixed_tier {
                    Some(ft) => {
                        let on = ft == Some(k);
                        add(&mut vars, variable().min(on as u8).max(on as u8))
                    }
                    None => {
                        has_integers = true;
                        add(&mut vars, variable().binary())
                    }
                };
                let q = add(&mut vars, variable().min(0.0).max(hi));
                max_hi = max_hi.max(hi);
                objective += offer.breaks[k].unit_price * q.v + offer.order_cost * z.v;
                constraints.push(Expression::from(q.v).leq(hi * z.v));
                if lo > 0.0 {
                    constraints.push(Expression::from(q.v).geq(lo * z.v));
                }
                total_q += q.v;
                total_z += z.v;
                arrive[o.material][a] += q.v;
                arriving_z[o.material][a] += z.v;
                has_order[o.material][a] = true;
                tiers.push(TierVars { k, q, z });
            }
            if tiers.is_empty() {
                continue;
            }
            if tiers.len() > 1 {
                constraints.push(total_z.clone().leq(1.0));
            }
            if !tight {
                if offer.moq > 0.0 {
                    constraints.push(total_q.clone().geq(offer.moq * total_z.clone()));
                }
                if let Some(cap) = offer.max_qty {
                    constraints.push(total_q.clone().leq(cap));
                }
            }
            let pack_var = offer.pack().map(|p| {
                let max_n = (max_hi / p + 1e-9).floor();
                let def = variable().min(0.0).max(max_n);
                let nv = if fixed.is_some() {
                    add(&mut vars, def)
                } else if opts.split_integers && max_n > SPLIT_ABOVE && max_n <= SPLIT_AT_MOST {
                    has_integers = true;
                    let nv = add(&mut vars, def);
                    splits.push(split_integer(
                        &mut add,
                        &mut vars,
                        &mut constraints,
                        nv,
                        max_n,
                    ));
                    nv
                } else {
                    has_integers = true;
                    add(&mut vars, def.integer())
                };
                constraints.push(total_q.clone().eq(p * nv.v));
                nv
            });
            row[oi] = Some(OfferVars { tiers, n: pack_var });
        }
    }

    // Supply assigned to need, per price tier (facility location): the
    // material the firm dues of period `s` need (a late product's at the
    // end) is consumed by `s`, so it comes from stock, receipts and orders
    // that arrive by `s`; `w <= need_s * z` for each tier of each order.
    // Valid: in any plan, hand out each period's arrivals to the dues in
    // due order. What it adds to the relaxation: an LP that buys a period's
    // need at a large tier's price must open that tier's order for the
    // whole need, with its order cost, its minimum and the stock it then
    // holds, instead of a sliver of an order as large as the horizon's
    // need. Built where the model is small enough for the solver's root to
    // finish within the limit (see `ASSIGN_SUPPLY_MAX_TIERS`).
    let n_tiers: usize = orders
        .iter()
        .flatten()
        .flatten()
        .map(|o| o.tiers.len())
        .sum();
    if tight
        && opts.assign_supply
        && fixed.is_none()
        && !opts.elastic
        && n_tiers <= ASSIGN_SUPPLY_MAX_TIERS
    {
        for (m, mat) in s.materials.iter().enumerate() {
            let mut need = vec![0.0; n];
            for p in 0..s.products.len() {
                for &(mm, a) in v.bom(p) {
                    if mm != m {
                        continue;
                    }
                    if firm(v, opts, p) {
                        for (t, &d) in v.due(p).iter().enumerate() {
                            need[t] += a * d as f64;
                        }
                    } else {
                        need[n - 1] += a * v.total_due(p) as f64;
                    }
                }
            }
            if need.iter().all(|&q| q <= 1e-9) {
                continue;
            }
            let mut cover = vec![Expression::default(); n];
            // Stock on hand and receipts.
            for r in 0..n {
                let amount = v.receipts(m)[r] + if r == 0 { mat.on_hand } else { 0.0 };
                if amount <= 0.0 {
                    continue;
                }
                let mut used = Expression::default();
                for due_t in r..n {
                    if need[due_t] > 1e-9 {
                        let w = add(&mut vars, variable().min(0.0).max(need[due_t]));
                        cover[due_t] += w.v;
                        used += w.v;
                    }
                }
                constraints.push(used.leq(amount));
            }
            for (oi, o) in v.offers().iter().enumerate() {
                if o.material != m {
                    continue;
                }
                for (t, row) in orders.iter().enumerate() {
                    let Some(ov) = &row[oi] else { continue };
                    let a = t + o.lead_periods;
                    for tv in &ov.tiers {
                        let mut used = Expression::default();
                        let mut any = false;
                        for due_t in a..n {
                            if need[due_t] > 1e-9 {
                                let w = add(&mut vars, variable().min(0.0).max(need[due_t]));
                                constraints.push(Expression::from(w.v).leq(need[due_t] * tv.z.v));
                                cover[due_t] += w.v;
                                used += w.v;
                                any = true;
                            }
                        }
                        if any {
                            constraints.push(used.leq(tv.q.v));
                        }
                    }
                }
            }
            for (due_t, c) in cover.into_iter().enumerate() {
                if need[due_t] > 1e-9 {
                    constraints.push(c.geq(need[due_t] - 1e-6));
                }
            }
        }
    }

    // Material flow and holding: S_t = S_{t-1} + receipts + arrivals - use.
    let mut consumption = vec![vec![Expression::default(); n]; s.materials.len()];
    for (t, row) in lines.iter().enumerate() {
        for (i, l) in v.lines().iter().enumerate() {
            if let Some(lv) = row[i] {
                for &(m, a) in v.bom(l.product) {
                    consumption[m][t] += a * lv.x.v;
                }
            }
        }
    }
    let mut stock = Vec::with_capacity(s.materials.len());
    let mut material_rows = vec![vec![None; n]; s.materials.len()];
    let mut probes = vec![None; opts.probes.len()];
    for (m, mat) in s.materials.iter().enumerate() {
        let mut row_vars: Vec<Var> = Vec::with_capacity(n);
        for t in 0..n {
            let st = add(&mut vars, variable().min(0.0));
            if mat.holding_cost != 0.0 {
                objective += mat.holding_cost * st.v;
            }
            // S_t - S_{t-1} - arrivals + use = receipts (+ on_hand at t = 0).
            let mut lhs = Expression::from(st.v) - arrive[m][t].clone() + consumption[m][t].clone();
            let mut rhs = v.receipts(m)[t];
            if t == 0 {
                rhs += mat.on_hand;
            } else {
                lhs -= row_vars[t - 1].v;
            }
            if let Some(i) = opts.probes.iter().position(|r| *r == Row::Material(m, t)) {
                let e = add(&mut vars, variable().min(0.0).max(PROBE_STEP));
                lhs -= e.v;
                probes[i] = Some(e);
            }
            material_rows[m][t] = Some(constraints.len());
            constraints.push(lhs.eq(rhs));
            row_vars.push(st);
        }
        stock.push(row_vars);
    }

    // Capacity per factory and period.
    let mut capacity_rows = vec![vec![None; n]; s.factories.len()];
    for (fi, _) in s.factories.iter().enumerate() {
        for t in 0..n {
            let mut hours = Expression::default();
            let mut any = false;
            for (i, l) in v.lines().iter().enumerate() {
                if let (true, Some(lv)) = (l.factory == fi, lines[t][i]) {
                    let line = v.line(*l);
                    hours += line.hours_per_unit * lv.x.v + line.setup_hours * lv.y.v;
                    any = true;
                }
            }
            if any {
                let rhs = v.hours(fi)[t];
                if let Some(i) = opts.probes.iter().position(|r| *r == Row::Capacity(fi, t)) {
                    let e = add(&mut vars, variable().min(0.0).max(PROBE_STEP));
                    hours -= e.v;
                    probes[i] = Some(e);
                }
                capacity_rows[fi][t] = Some(constraints.len());
                constraints.push(hours.leq(rhs));
            }
        }
    }

    // Dues: cumulative production against cumulative due.
    let pen = if opts.elastic { penalty(v) } else { 0.0 };
    let mut backlog_vars = vec![vec![None; n]; s.products.len()];
    let mut elastic = vec![vec![None; n]; s.products.len()];
    let mut trivially_infeasible = false;
    for (p, prod) in s.products.iter().enumerate() {
        let total = v.total_due(p);
        if total == 0 {
            continue;
        }
        let made_by = |t: usize| -> (Expression, bool) {
            let mut e = Expression::default();
            let mut any = false;
            for row in &lines[..=t] {
                for (i, l) in v.lines().iter().enumerate() {
                    if let (true, Some(lv)) = (l.product == p, row[i]) {
                        e += lv.x.v;
                        any = true;
                    }
                }
            }
            (e, any)
        };
        let may_be_late = prod.late_cost.is_some() && opts.on_time != Some(p);
        for t in 0..n {
            let last = t == n - 1;
            let due_now = v.due(p)[t] > 0;
            // Rows where they bind: a firm product at each due period, a
            // product that may be late in every period with a backlog
            // (and at the end, where nothing may be left).
            if !(due_now || (may_be_late && cd[p][t] > 0) || last) {
                continue;
            }
            let (mut made, any) = made_by(t);
            let need = cd[p][t] as f64;
            if !any && !opts.elastic && (!may_be_late || last) {
                trivially_infeasible = true;
                continue;
            }
            if opts.elastic && (last || !may_be_late) {
                let e = add(&mut vars, variable().min(0.0).max(need));
                // The best partial plan meets the firm dues first, then makes as much
                // as it can of the rest. A unit never made (short at the end) costs the
                // same for every product, more than any lateness; a firm product's unit
                // short at one of its due periods costs `n + 1` such units more. So a
                // partial plan keeps a never-late product's promise while it can and
                // names as short the products the firm ones leave no room for. (A unit of
                // a product that may be late weighed nine firm units here, and a partial
                // plan gave a shared material to those, leaving a never-late product
                // short that could be made in full.)
                let unmade = pen * (n as f64 + 1.0);
                let mut weight = 0.0;
                if last {
                    weight += unmade;
                }
                if !may_be_late && due_now {
                    weight += unmade * (n as f64 + 1.0);
                }
                objective += weight * e.v;
                made += e.v;
                elastic[p][t] = Some(e);
            }
            if may_be_late && !last {
                let bv = add(&mut vars, variable().min(0.0).max(need));
                objective += prod.late_cost.unwrap_or(0.0) * bv.v;
                made += bv.v;
                backlog_vars[p][t] = Some(bv);
            }
            constraints.push(made.geq(need));
        }
    }

    // Valid inequalities of the tight model (firm dues only).
    if tight && fixed.is_none() && !opts.elastic {
        // A firm product runs at least once by its first due period; any
        // product with something due runs at least once.
        for p in 0..s.products.len() {
            if v.total_due(p) == 0 {
                continue;
            }
            let by = if firm(v, opts, p) {
                v.due(p).iter().position(|&d| d > 0).unwrap_or(n - 1)
            } else {
                n - 1
            };
            let mut ys = Expression::default();
            let mut any = false;
            for row in &lines[..=by] {
                for (i, l) in v.lines().iter().enumerate() {
                    if let (true, Some(lv)) = (l.product == p, row[i]) {
                        ys += lv.y.v;
                        any = true;
                    }
                }
            }
            if any {
                constraints.push(ys.geq(1.0));
            }
        }
        // A material whose firm dues by period t need more than the stock
        // and receipts by t is ordered at least once to arrive by t.
        for (m, mat) in s.materials.iter().enumerate() {
            let mut have = mat.on_hand;
            let mut zs = Expression::default();
            let mut any = false;
            for t in 0..n {
                have += v.receipts(m)[t];
                zs += arriving_z[m][t].clone();
                any |= has_order[m][t];
                let need: f64 = (0..s.products.len())
                    .filter(|&p| firm(v, opts, p))
                    .map(|p| {
                        v.bom(p)
                            .iter()
                            .filter(|&&(mm, _)| mm == m)
                            .map(|&(_, a)| a * cd[p][t] as f64)
                            .sum::<f64>()
                    })
                    .sum();
                if need > have + 1e-6 && any {
                    constraints.push(zs.geq(1.0));
                    break;
                }
            }
        }
        // No product made beyond `max_made`, where that says more than
        // its run bounds.
        for p in 0..s.products.len() {
            let most = b.max_made[p];
            let mut xs = Expression::default();
            let mut sum_u = 0.0;
            let mut count = 0;
            for (t, row) in lines.iter().enumerate() {
                for (i, l) in v.lines().iter().enumerate() {
                    if let (true, Some(lv)) = (l.product == p, row[i]) {
                        xs += lv.x.v;
                        sum_u += b.run[t][i];
                        count += 1;
                    }
                }
            }
            if count > 1 && most < sum_u - 0.5 {
                constraints.push(xs.leq(most));
            }
        }
    }

    let layout = Layout {
        n_vars: all.len(),
        lines,
        orders,
        stock,
        backlog: backlog_vars,
        elastic,
        material_rows,
        capacity_rows,
        splits: splits.clone(),
        probes,
    };
    let problem = Problem {
        vars,
        all,
        objective,
        constraints,
        has_integers,
        split: !splits.is_empty(),
        trivially_infeasible,
        feasibility_tolerance: crate::solve::TIGHT_TOLERANCE,
        root_reduced_cost: false,
    };
    (problem, layout)
}

impl Layout {
    /// Solver start values for a schedule (a warm start).
    pub(crate) fn start_values(&self, v: &ValidatedScenario, d: &Schedule) -> Vec<f64> {
        let mut vals = vec![0.0; self.n_vars];
        for (t, row) in self.lines.iter().enumerate() {
            for (i, lv) in row.iter().enumerate() {
                if let Some(lv) = lv {
                    let q = d.x[t][i];
                    vals[lv.x.i] = q as f64;
                    vals[lv.y.i] = if q > 0 { 1.0 } else { 0.0 };
                }
            }
        }
        for (t, row) in self.orders.iter().enumerate() {
            for (oi, ov) in row.iter().enumerate() {
                if let (Some(ov), Some((k, q))) = (ov, d.buy[t][oi]) {
                    ov.start(v.offer(v.offers()[oi]).pack(), k, q, &mut vals);
                }
            }
        }
        for (m, row) in d.stock(v).iter().enumerate() {
            for (t, &q) in row.iter().enumerate() {
                vals[self.stock[m][t].i] = q.max(0.0);
            }
        }
        let made = d.made(v);
        for (p, row) in self.backlog.iter().enumerate() {
            let b = backlog(v.due(p), &made[p]);
            for (t, bv) in row.iter().enumerate() {
                if let Some(bv) = bv {
                    vals[bv.i] = b[t] as f64;
                }
            }
            for (t, e) in self.elastic[p].iter().enumerate() {
                if let Some(e) = e {
                    vals[e.i] = b[t] as f64;
                }
            }
        }
        start_splits(&self.splits, &mut vals);
        vals
    }

    /// Reads a schedule back from solver values, removing float noise as
    /// version 1 does (`model::Layout::decisions`), each order in the tier
    /// its quantity reaches by the contract's rule (`Schedule::price_by_rule`).
    pub(crate) fn schedule(&self, v: &ValidatedScenario, vals: &[f64]) -> Schedule {
        let mut d = Schedule::empty(v);
        for (t, row) in self.lines.iter().enumerate() {
            for (i, lv) in row.iter().enumerate() {
                if let Some(lv) = lv {
                    d.x[t][i] = vals[lv.x.i].round().max(0.0) as i64;
                }
            }
        }
        for (t, row) in self.orders.iter().enumerate() {
            for (oi, ov) in row.iter().enumerate() {
                if let Some(ov) = ov {
                    d.buy[t][oi] = ov.read(v.offer(v.offers()[oi]).pack(), vals);
                }
            }
        }
        d.price_by_rule(v);
        d
    }
}

#[cfg(all(test, feature = "highs"))]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::generate::{random_timed_scenario, TimedSize};
    use crate::solve::{solve_model, Outcome, SolverKind};

    /// The supply assignment rows are built, and cut off no optimum: the
    /// tight model with and without them has the same optimal cost on
    /// small generated scenarios, each solved to a proof.
    #[test]
    fn supply_assignment_rows_keep_the_optimum() {
        let size = TimedSize {
            products: 3,
            factories: 2,
            materials: 4,
            periods: 4,
            max_breaks: 3,
        };
        let mut compared = 0;
        for seed in 1..=8 {
            let v = random_timed_scenario(seed, size).validate().unwrap();
            let solve = |assign_supply: bool| {
                let opts = Options {
                    formulation: Formulation::Tight,
                    split_integers: true,
                    assign_supply,
                    ..Default::default()
                };
                let (problem, _) = build(&v, &opts);
                let rows = problem.constraints.len();
                let out = solve_model(
                    problem,
                    SolverKind::Highs,
                    Duration::from_secs(60),
                    0.0,
                    None,
                )
                .expect("solves");
                (rows, out)
            };
            let ((rows_without, without), (rows_with, with)) = (solve(false), solve(true));
            match (without, with) {
                (Outcome::Solved(a), Outcome::Solved(b)) => {
                    assert!(a.finished && b.finished, "seed {seed}: not proven");
                    assert!(rows_with > rows_without, "seed {seed}: no rows added");
                    let (a, b) = (a.best_bound.unwrap(), b.best_bound.unwrap());
                    assert!(
                        (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                        "seed {seed}: optimum {a} without the rows, {b} with them"
                    );
                    compared += 1;
                }
                (Outcome::Infeasible, Outcome::Infeasible) => {}
                (a, b) => panic!("seed {seed}: {a:?} without the rows, {b:?} with them"),
            }
        }
        assert!(compared >= 4, "only {compared} feasible seeds");
    }
}
