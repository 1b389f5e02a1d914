//! A lower bound of the planner's own: the Dantzig-Wolfe relaxation of the
//! version 2 model, by factory and period or by product.
//!
//! `docs/planning-time.md` found the gap left by HiGHS to be mostly the
//! bound, and much of it production under shared factory hours: the LP runs
//! a product on its cheapest line with fractional setups. Two decompositions
//! test where that relaxation is weak ([`Decomposition`]):
//!
//! - each factory-period's run sets (its hours row with setup hours, minimum
//!   runs, the per-period run bounds, integer runs, binary setups) as a
//!   block, priced exactly by enumerating the lines switched on and a bounded
//!   knapsack for the units;
//! - each product's runs over all its lines and periods against its dues (a
//!   capacitated lot-sizing problem; the hours stay in the master), priced
//!   exactly by a dynamic programme over the units made so far.
//!
//! Everything else (material flow, orders and tiers, the hours where not in
//! a block, the tight model's valid inequalities) stays as the LP of the
//! tight model. The master is that LP with `x_lt = sum_k lambda_k x^k_lt`
//! and `y_lt = sum_k lambda_k y^k_lt` (and the backlog, by product) per block
//! and `sum_k lambda_k = 1`, solved and re-solved from its basis by HiGHS.
//!
//! The bound reported is the Lagrangian (Farley) bound of each iteration,
//! `z_master + sum of the blocks' least reduced costs`: the master's duals,
//! with each convexity dual lowered by its block's least reduced cost, are
//! feasible for the dual of the full master, so it is a lower bound whether
//! or not the column generation has converged. The restricted master's
//! value itself is not one before convergence and is not reported as a bound.
//!
//! Measured in the seventh round of `docs/planning-time.md`: neither bound
//! exceeds HiGHS's own at the benchmark's limits, so the planner does not
//! use them; they stay as measuring tools (`examples/phased_dw.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use good_lp::{IntoAffineExpression, Variable};
use highs::{HighsModelStatus, Model, RowProblem, Sense};

use crate::model::Formulation;
use crate::validate::ValidatedScenario;

use super::model::{bounds, build, Options};

/// What the decomposition found.
#[derive(Debug, Clone, PartialEq)]
pub struct DecompositionBound {
    /// The best Lagrangian bound over the iterations: a lower bound on the
    /// optimum of the tight model (and so of the scenario).
    pub bound: f64,
    /// The LP relaxation of the tight model (the HiGHS root before cuts).
    pub root_lp: f64,
    /// The last restricted master's value: the bound it converges to, from
    /// above; equal to `bound` (within the tolerance) when `converged`.
    pub master: f64,
    /// Master solves.
    pub iterations: usize,
    /// Columns generated (besides the start's and the empty run sets).
    /// A block's column is one decision of the block (a run set, or a
    /// product's runs over the horizon).
    pub columns: usize,
    /// No column with a negative reduced cost was left.
    pub converged: bool,
    pub seconds: f64,
}

/// Why no bound was computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecompositionError {
    #[error("the scenario has no horizon (the decomposition is by period)")]
    NotTimed,
    #[error("the lot-for-lot rules find no plan to start the master from")]
    NoStart,
    #[error("HiGHS failed on the master: {0}")]
    Solver(String),
    #[error("the time limit passed before the first master was solved")]
    TimeLimit,
    #[error("product {0} can be made in more units than the pricing's table holds")]
    TooManyUnits(usize),
}

/// One line's part of a factory-period subproblem: cost `a` per unit and
/// `b` per setup (the master's duals), hours `h` per unit and `s` per setup,
/// units between `lo` and `hi` when it runs.
#[derive(Debug, Clone, Copy)]
struct Item {
    a: f64,
    b: f64,
    h: f64,
    s: f64,
    lo: f64,
    hi: f64,
}

/// The least `sum a x + b y` over one factory-period's run sets, exactly:
/// every set of lines switched on whose minimum runs fit the hours, each with
/// the units beyond the minimum chosen by a bounded knapsack (only lines with
/// `a < 0` run more than their minimum). Returns the value and `(x, y)` per
/// item. The empty set (value 0) is always feasible.
fn price(items: &[Item], cap: f64) -> (f64, Vec<(f64, bool)>) {
    let n = items.len();
    let mut best = 0.0;
    let mut best_sol = vec![(0.0, false); n];
    let mut on = vec![false; n];
    fn walk(
        items: &[Item],
        i: usize,
        left: f64,
        base: f64,
        on: &mut [bool],
        best: &mut f64,
        best_sol: &mut [(f64, bool)],
    ) {
        if i == items.len() {
            leaf(items, left, base, on, best, best_sol);
            return;
        }
        on[i] = false;
        walk(items, i + 1, left, base, on, best, best_sol);
        let it = items[i];
        let need = it.s + it.h * it.lo;
        if need <= left + 1e-9 {
            on[i] = true;
            walk(
                items,
                i + 1,
                left - need,
                base + it.b + it.a * it.lo,
                on,
                best,
                best_sol,
            );
            on[i] = false;
        }
    }
    walk(items, 0, cap, 0.0, &mut on, &mut best, &mut best_sol);
    (best, best_sol)
}

/// The units beyond the minimum runs of one set of lines switched on.
fn leaf(
    items: &[Item],
    left: f64,
    base: f64,
    on: &[bool],
    best: &mut f64,
    best_sol: &mut [(f64, bool)],
) {
    // Profitable extras: (profit per unit, hours per unit, most units, item).
    let mut gain_free = 0.0;
    let mut free: Vec<(usize, f64)> = Vec::new();
    let mut extras: Vec<(f64, f64, f64, usize)> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        if !on[i] || it.a >= 0.0 || it.hi <= it.lo {
            continue;
        }
        if it.h <= 0.0 {
            gain_free += -it.a * (it.hi - it.lo);
            free.push((i, it.hi - it.lo));
        } else {
            extras.push((-it.a, it.h, it.hi - it.lo, i));
        }
    }
    extras.sort_by(|x, y| (y.0 / y.1).total_cmp(&(x.0 / x.1)));
    let fixed = base - gain_free;
    if fixed - lp_gain(&extras, 0, left) >= *best - 1e-9 {
        return;
    }
    let mut cur = vec![0.0; extras.len()];
    let mut kbest = -1.0;
    let mut kbest_e = cur.clone();
    knap(&extras, 0, left, 0.0, &mut cur, &mut kbest, &mut kbest_e);
    let value = fixed - kbest;
    if value < *best - 1e-9 {
        *best = value;
        for (i, it) in items.iter().enumerate() {
            best_sol[i] = if on[i] { (it.lo, true) } else { (0.0, false) };
        }
        for &(i, e) in &free {
            best_sol[i].0 += e;
        }
        for (k, &(_, _, _, i)) in extras.iter().enumerate() {
            best_sol[i].0 += kbest_e[k];
        }
    }
}

/// The fractional knapsack's gain from `j` on with `left` hours: an upper
/// bound on the integer gain (items sorted by profit per hour).
fn lp_gain(extras: &[(f64, f64, f64, usize)], j: usize, mut left: f64) -> f64 {
    let mut g = 0.0;
    for &(p, h, ub, _) in &extras[j..] {
        if left <= 0.0 {
            break;
        }
        let e = ub.min(left / h);
        g += p * e;
        left -= h * e;
    }
    g
}

/// Bounded integer knapsack by branch and bound, largest counts first.
fn knap(
    extras: &[(f64, f64, f64, usize)],
    j: usize,
    left: f64,
    value: f64,
    cur: &mut [f64],
    best: &mut f64,
    best_e: &mut [f64],
) {
    if j == extras.len() {
        if value > *best {
            *best = value;
            best_e.copy_from_slice(cur);
        }
        return;
    }
    let (p, h, ub, _) = extras[j];
    let most = ub.min((left / h + 1e-9).floor()).max(0.0);
    let mut e = most;
    loop {
        let rest = left - h * e;
        // Fewer units here never raise the bound (the rest earn less per hour).
        if value + p * e + lp_gain(extras, j + 1, rest) <= *best + 1e-9 {
            break;
        }
        cur[j] = e;
        knap(extras, j + 1, rest, value + p * e, cur, best, best_e);
        cur[j] = 0.0;
        if e < 1.0 {
            break;
        }
        e -= 1.0;
    }
}

/// How the model is cut into subproblems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decomposition {
    /// One block per factory and period: its run sets under its hours.
    #[default]
    FactoryPeriod,
    /// One block per product over the horizon: its runs on all its lines
    /// and periods against its dues (a capacitated lot-sizing problem; the
    /// factories' hours stay in the master).
    Product,
}

/// A line and period of a product block: the master's columns of the run
/// and setup are linked through `links[x]`, `links[x + 1]`.
#[derive(Debug, Clone, Copy)]
struct Slot {
    t: usize,
    /// Index of the `x` link in the block's links.
    x: usize,
    a: f64,
    b: f64,
    lo: f64,
    hi: f64,
}

/// What a block decides and how it is priced.
enum Kind {
    /// `items[j]` is linked through `links[2 j]` (run) and `links[2 j + 1]` (setup).
    FactoryPeriod { items: Vec<Item>, hours: f64 },
    Product {
        slots: Vec<Slot>,
        /// Cumulative due by each period.
        cd: Vec<i64>,
        firm: bool,
        /// `[t]`: the link of the master's backlog in `t` and its dual.
        backlog: Vec<Option<(usize, f64)>>,
        most: i64,
    },
}

/// One subproblem: its link rows (`var - sum lambda value^k = 0`), its
/// convexity row (`sum lambda = 1`), and what it decides.
struct Block {
    links: Vec<(highs::Row, usize)>,
    convexity: (highs::Row, usize),
    kind: Kind,
}

impl Block {
    /// The least reduced cost part `sum dual * value` over the block's
    /// feasible set (exactly), with the values of the link columns.
    fn price(&mut self, duals: &[f64]) -> (f64, Vec<f64>) {
        let d: Vec<f64> = self.links.iter().map(|&(_, r)| duals[r]).collect();
        match &mut self.kind {
            Kind::FactoryPeriod { items, hours } => {
                for (j, it) in items.iter_mut().enumerate() {
                    it.a = d[2 * j];
                    it.b = d[2 * j + 1];
                }
                let (value, run) = price(items, *hours);
                let vals = run
                    .iter()
                    .flat_map(|&(x, y)| [x, if y { 1.0 } else { 0.0 }])
                    .collect();
                (value, vals)
            }
            Kind::Product {
                slots,
                cd,
                firm,
                backlog,
                most,
            } => {
                for sl in slots.iter_mut() {
                    sl.a = d[sl.x];
                    sl.b = d[sl.x + 1];
                }
                for (idx, dual) in backlog.iter_mut().flatten() {
                    *dual = d[*idx];
                }
                price_product(slots, cd, *firm, backlog, *most, self.links.len())
            }
        }
    }
}

/// The least cost of making exactly `q` units in one period on the given
/// slots (each off, or between `lo` and `hi` at `a` a unit and `b` a setup),
/// for every `q` up to `most`; `INFINITY` where no split makes `q`. With the
/// chosen units per slot for each `q`.
fn period_costs(slots: &[Slot], most: usize) -> Vec<(f64, Vec<(f64, bool)>)> {
    let mut out = vec![(f64::INFINITY, vec![(0.0, false); slots.len()]); most + 1];
    out[0] = (0.0, vec![(0.0, false); slots.len()]);
    let n = slots.len();
    for mask in 1u32..(1 << n) {
        let on: Vec<usize> = (0..n).filter(|&j| mask & (1 << j) != 0).collect();
        let base: f64 = on
            .iter()
            .map(|&j| slots[j].b + slots[j].a * slots[j].lo)
            .sum();
        let lo: f64 = on.iter().map(|&j| slots[j].lo).sum();
        let hi: f64 = on.iter().map(|&j| slots[j].hi).sum();
        let mut by_cost = on.clone();
        by_cost.sort_by(|&i, &j| slots[i].a.total_cmp(&slots[j].a));
        let first = lo.max(0.0) as usize;
        let last = (hi.min(most as f64)) as usize;
        for (q, slot) in out.iter_mut().enumerate().take(last + 1).skip(first) {
            // Fill beyond the minimums, cheapest unit first (costs are linear).
            let mut extra = q as f64 - lo;
            let mut cost = base;
            let mut x = vec![(0.0, false); n];
            for &j in &on {
                x[j] = (slots[j].lo, true);
            }
            for &j in &by_cost {
                let e = extra.min(slots[j].hi - slots[j].lo);
                x[j].0 += e;
                cost += slots[j].a * e;
                extra -= e;
            }
            if cost < slot.0 {
                *slot = (cost, x);
            }
        }
    }
    out
}

/// Exact pricing of a product block by dynamic programming over the
/// cumulative units made (`0..=most`).
fn price_product(
    slots: &[Slot],
    cd: &[i64],
    firm: bool,
    backlog: &[Option<(usize, f64)>],
    most: i64,
    n_links: usize,
) -> (f64, Vec<f64>) {
    let periods = cd.len();
    let most = most.max(0) as usize;
    let mut value = vec![f64::INFINITY; most + 1];
    value[0] = 0.0;
    let mut choice: Vec<Vec<usize>> = Vec::with_capacity(periods);
    let mut stage_costs = Vec::with_capacity(periods);
    for t in 0..periods {
        let here: Vec<Slot> = slots.iter().copied().filter(|s| s.t == t).collect();
        let costs = period_costs(&here, most);
        let finite: Vec<usize> = (0..=most).filter(|&q| costs[q].0.is_finite()).collect();
        let mut next = vec![f64::INFINITY; most + 1];
        let mut arg = vec![0usize; most + 1];
        for (c, best) in next.iter_mut().enumerate() {
            for &q in &finite {
                if q > c {
                    break;
                }
                let v = value[c - q] + costs[q].0;
                if v < *best {
                    *best = v;
                    arg[c] = q;
                }
            }
        }
        // Dues and backlog at the end of `t`.
        let last = t + 1 == periods;
        for (c, v) in next.iter_mut().enumerate() {
            let short = (cd[t] - c as i64).max(0) as f64;
            if (firm || last) && short > 0.0 {
                *v = f64::INFINITY;
            } else if let Some((_, dual)) = backlog[t] {
                // The backlog column is at least the shortfall and at most the due.
                let b = if dual >= 0.0 { short } else { cd[t] as f64 };
                *v += dual * b;
            }
        }
        value = next;
        choice.push(arg);
        stage_costs.push((here, costs));
    }
    let (mut c, best) = value
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(c, &v)| (c, v))
        .unwrap_or((0, f64::INFINITY));
    let mut vals = vec![0.0; n_links];
    let mut cum = vec![0usize; periods];
    for t in (0..periods).rev() {
        cum[t] = c;
        let q = choice[t][c];
        let (here, costs) = &stage_costs[t];
        for (sl, &(x, y)) in here.iter().zip(&costs[q].1) {
            vals[sl.x] = x;
            vals[sl.x + 1] = if y { 1.0 } else { 0.0 };
        }
        c -= q;
    }
    for (t, bl) in backlog.iter().enumerate() {
        if let Some((idx, dual)) = *bl {
            let short = (cd[t] - cum[t] as i64).max(0) as f64;
            vals[idx] = if dual >= 0.0 { short } else { cd[t] as f64 };
        }
    }
    (best, vals)
}

/// The tight model as a HiGHS row problem, with integrality only where
/// `integer(column)` says so.
struct Translated {
    pb: RowProblem,
    cols: Vec<highs::Col>,
    layout: super::model::Layout,
    bounds: super::model::Bounds,
    constant: f64,
}

fn translate(v: &ValidatedScenario, integer: impl Fn(usize) -> bool) -> Translated {
    let opts = Options {
        formulation: Formulation::Tight,
        assign_supply: true,
        ..Default::default()
    };
    let (problem, layout) = build(v, &opts);
    let b = bounds(v, &opts);
    // good_lp's rows are `expression <= 0` (or `= 0`) with the constant inside.
    let index: HashMap<Variable, usize> = problem
        .all
        .iter()
        .enumerate()
        .map(|(i, &var)| (var, i))
        .collect();
    let mut defs = vec![(0.0, 0.0, false); problem.all.len()];
    for (var, def) in problem.vars.iter_variables_with_def() {
        defs[index[&var]] = (def.get_min(), def.get_max(), def.is_integer());
    }
    let mut cost = vec![0.0; problem.all.len()];
    for (var, c) in (&problem.objective).linear_coefficients() {
        cost[index[&var]] += c;
    }
    let constant = problem.objective.constant();
    let mut pb = RowProblem::default();
    let cols: Vec<highs::Col> = defs
        .iter()
        .zip(&cost)
        .enumerate()
        .map(|(i, (&(lo, hi, int), &c))| {
            if int && integer(i) {
                pb.add_integer_column(c, lo..=hi)
            } else {
                pb.add_column(c, lo..=hi)
            }
        })
        .collect();
    for c in &problem.constraints {
        let e = c.expression();
        let rhs = -e.constant();
        let factors: Vec<(highs::Col, f64)> = e
            .linear_coefficients()
            .map(|(var, a)| (cols[index[&var]], a))
            .collect();
        if c.is_equality() {
            pb.add_row(rhs..=rhs, factors);
        } else {
            pb.add_row(..=rhs, factors);
        }
    }
    Translated {
        pb,
        cols,
        layout,
        bounds: b,
        constant,
    }
}

/// Which integers a partial relaxation keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepIntegers {
    /// Runs and setups integer, orders (tiers, packs) continuous.
    Production,
    /// Tiers and packs integer, runs and setups continuous.
    Purchasing,
}

/// The best bound HiGHS proves within `time_limit` for the tight model with
/// only one side's integers kept (each a relaxation, so a lower bound):
/// where the gap lies, production under shared hours or purchasing.
/// Returns `(bound, finished)`.
pub fn partial_integrality_bound(
    v: &ValidatedScenario,
    keep: KeepIntegers,
    time_limit: Duration,
) -> Result<(f64, bool), DecompositionError> {
    let opts = Options {
        formulation: Formulation::Tight,
        ..Default::default()
    };
    let (_, layout) = build(v, &opts);
    let mut production = vec![false; layout.n_vars];
    for lv in layout.lines.iter().flatten().flatten() {
        production[lv.x.i] = true;
        production[lv.y.i] = true;
    }
    let t = translate(v, |i| production[i] == (keep == KeepIntegers::Production));
    let fail = |e: highs::HighsStatus| DecompositionError::Solver(format!("{e:?}"));
    let mut m = t.pb.try_optimise(Sense::Minimise).map_err(fail)?;
    m.make_quiet();
    let set = |m: &mut Model, name: &str, value: f64| {
        m.try_set_option(name, value)
            .map_err(|e| DecompositionError::Solver(format!("{e:?}")))
    };
    set(&mut m, "time_limit", time_limit.as_secs_f64())?;
    set(&mut m, "mip_rel_gap", 1e-6)?;
    set(
        &mut m,
        "mip_feasibility_tolerance",
        crate::solve::TIGHT_TOLERANCE,
    )?;
    let s = m.try_solve().map_err(fail)?;
    let bound = s.double_info_value(c"mip_dual_bound").map_err(fail)?;
    Ok((bound + t.constant, s.status() == HighsModelStatus::Optimal))
}

/// The Dantzig-Wolfe bound of a version 2 scenario, within `time_limit`
/// (the bound of the last finished iteration when it runs out).
pub fn decomposition_bound(
    v: &ValidatedScenario,
    by: Decomposition,
    time_limit: Duration,
) -> Result<DecompositionBound, DecompositionError> {
    let started = Instant::now();
    if !v.is_timed() {
        return Err(DecompositionError::NotTimed);
    }
    let start = super::greedy::greedy_production(v)
        .or_else(|| super::greedy::repaired_schedule(v))
        .ok_or(DecompositionError::NoStart)?;
    let Translated {
        pb,
        cols,
        layout,
        bounds: b,
        constant,
        ..
    } = translate(v, |_| false);
    let fail = |e: highs::HighsStatus| DecompositionError::Solver(format!("{e:?}"));
    let mut model = pb.try_optimise(Sense::Minimise).map_err(fail)?;
    model.make_quiet();
    let remaining = |started: Instant| time_limit.saturating_sub(started.elapsed());
    let solve = |mut m: Model, left: Duration| -> Result<highs::SolvedModel, DecompositionError> {
        if left.is_zero() {
            return Err(DecompositionError::TimeLimit);
        }
        m.try_set_option("time_limit", left.as_secs_f64())
            .map_err(|e| DecompositionError::Solver(format!("{e:?}")))?;
        let s = m.try_solve().map_err(fail)?;
        match s.status() {
            HighsModelStatus::Optimal => Ok(s),
            HighsModelStatus::ReachedTimeLimit => Err(DecompositionError::TimeLimit),
            other => Err(DecompositionError::Solver(format!("status {other:?}"))),
        }
    };
    let root = solve(model, remaining(started))?;
    let root_lp = root.objective_value() + constant;
    let mut model = Model::from(root);

    // The blocks, their linking and convexity rows, the empty run set (a
    // factory-period) and the start's decisions of each.
    let s = v.scenario();
    let n = v.periods();
    let mut blocks: Vec<Block> = Vec::new();
    let link = |model: &mut Model, col: highs::Col| {
        let r = model.add_row(0.0..=0.0, [(col, 1.0)]);
        (r, model.num_rows() - 1)
    };
    let start_made = start.made(v);
    match by {
        Decomposition::FactoryPeriod => {
            for t in 0..n {
                for fi in 0..s.factories.len() {
                    let mut links = Vec::new();
                    let mut items = Vec::new();
                    let mut run = Vec::new();
                    for (i, l) in v.lines().iter().enumerate() {
                        let Some(lv) = layout.lines[t][i] else {
                            continue;
                        };
                        if l.factory != fi {
                            continue;
                        }
                        let line = v.line(*l);
                        links.push(link(&mut model, cols[lv.x.i]));
                        links.push(link(&mut model, cols[lv.y.i]));
                        items.push(Item {
                            a: 0.0,
                            b: 0.0,
                            h: line.hours_per_unit,
                            s: line.setup_hours,
                            lo: line.min_run as f64,
                            hi: b.run[t][i].floor(),
                        });
                        let q = start.x[t][i] as f64;
                        run.extend([q, if q > 0.0 { 1.0 } else { 0.0 }]);
                    }
                    if links.is_empty() {
                        continue;
                    }
                    let convexity = (model.add_row(1.0..=1.0, []), model.num_rows() - 1);
                    let blk = Block {
                        links,
                        convexity,
                        kind: Kind::FactoryPeriod {
                            items,
                            hours: v.hours(fi)[t],
                        },
                    };
                    add_column(&mut model, &blk, &vec![0.0; run.len()]);
                    if run.iter().any(|&q| q > 0.0) {
                        add_column(&mut model, &blk, &run);
                    }
                    blocks.push(blk);
                }
            }
        }
        Decomposition::Product => {
            let cd = super::model::cumulative_due(v);
            for (p, prod) in s.products.iter().enumerate() {
                let mut links = Vec::new();
                let mut slots = Vec::new();
                let mut run = Vec::new();
                for t in 0..n {
                    for (i, l) in v.lines().iter().enumerate() {
                        let Some(lv) = layout.lines[t][i] else {
                            continue;
                        };
                        if l.product != p {
                            continue;
                        }
                        slots.push(Slot {
                            t,
                            x: links.len(),
                            a: 0.0,
                            b: 0.0,
                            lo: v.line(*l).min_run as f64,
                            hi: b.run[t][i].floor(),
                        });
                        links.push(link(&mut model, cols[lv.x.i]));
                        links.push(link(&mut model, cols[lv.y.i]));
                        let q = start.x[t][i] as f64;
                        run.extend([q, if q > 0.0 { 1.0 } else { 0.0 }]);
                    }
                }
                let firm = prod.late_cost.is_none();
                let mut backlog = vec![None; n];
                let behind = super::backlog(v.due(p), &start_made[p]);
                for (t, bv) in layout.backlog[p].iter().enumerate() {
                    if let Some(bv) = bv {
                        backlog[t] = Some((links.len(), 0.0));
                        links.push(link(&mut model, cols[bv.i]));
                        run.push(behind[t] as f64);
                    }
                }
                if links.is_empty() {
                    continue;
                }
                let hi_sum: f64 = slots.iter().map(|s| s.hi).sum();
                // The pricing's table has a row per unit made: refuse
                // rather than cut a block short.
                let most = b.max_made[p].min(hi_sum).floor();
                if most > MOST_UNITS {
                    return Err(DecompositionError::TooManyUnits(p));
                }
                let most = most as i64;
                let convexity = (model.add_row(1.0..=1.0, []), model.num_rows() - 1);
                let blk = Block {
                    links,
                    convexity,
                    kind: Kind::Product {
                        slots,
                        cd: cd[p].clone(),
                        firm,
                        backlog,
                        most,
                    },
                };
                add_column(&mut model, &blk, &run);
                blocks.push(blk);
            }
        }
    }

    let mut best = root_lp;
    let mut master = f64::INFINITY;
    let mut iterations = 0;
    let mut columns = 0;
    let mut converged = false;
    loop {
        let solved = match solve(model, remaining(started)) {
            Ok(s) => s,
            Err(DecompositionError::TimeLimit) if iterations > 0 => break,
            Err(e) => return Err(e),
        };
        iterations += 1;
        let z = solved.objective_value() + constant;
        master = z;
        let sol = solved.get_solution();
        let duals = sol.dual_rows();
        let mut total_rc = 0.0;
        let mut new_cols = Vec::new();
        for (k, blk) in blocks.iter_mut().enumerate() {
            let mu = duals[blk.convexity.1];
            let (value, run) = blk.price(duals);
            let rc = value - mu;
            total_rc += rc.min(0.0);
            if rc < -REDUCED_COST_TOLERANCE * (1.0 + z.abs()) {
                new_cols.push((k, run));
            }
        }
        best = best.max(z + total_rc);
        if new_cols.is_empty() || started.elapsed() >= time_limit {
            converged = new_cols.is_empty();
            break;
        }
        model = Model::from(solved);
        for (k, run) in new_cols {
            add_column(&mut model, &blocks[k], &run);
            columns += 1;
        }
    }
    Ok(DecompositionBound {
        bound: best,
        root_lp,
        master,
        iterations,
        columns,
        converged,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The most units of one product the product pricing tabulates.
const MOST_UNITS: f64 = 1e6;

/// A column is added when its reduced cost is below minus this times the
/// master's value: smaller ones are HiGHS's tolerances, not a better bound.
const REDUCED_COST_TOLERANCE: f64 = 1e-10;

/// Adds `lambda` for one decision of a block (`vals` per link row).
fn add_column(model: &mut Model, blk: &Block, vals: &[f64]) {
    let mut factors = vec![(blk.convexity.0, 1.0)];
    for (&(row, _), &q) in blk.links.iter().zip(vals) {
        if q != 0.0 {
            factors.push((row, -q));
        }
    }
    model.add_col(0.0, 0.0.., factors);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over every integer point of a small block.
    fn brute(items: &[Item], cap: f64) -> f64 {
        fn go(items: &[Item], i: usize, left: f64, v: f64, best: &mut f64) {
            if i == items.len() {
                *best = best.min(v);
                return;
            }
            go(items, i + 1, left, v, best);
            let it = items[i];
            let mut x = it.lo;
            while x <= it.hi {
                let need = it.s + it.h * x;
                if need > left + 1e-9 {
                    break;
                }
                go(items, i + 1, left - need, v + it.b + it.a * x, best);
                x += 1.0;
            }
        }
        let mut best = 0.0;
        go(items, 0, cap, 0.0, &mut best);
        best
    }

    /// The product pricing is exact: it matches brute force over every
    /// integer point of random small product blocks.
    #[test]
    fn product_pricing_matches_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..300 {
            let periods = rng.gen_range(1..=3);
            let mut slots = Vec::new();
            for t in 0..periods {
                for _ in 0..rng.gen_range(0..=2) {
                    let lo = rng.gen_range(0..3) as f64;
                    slots.push(Slot {
                        t,
                        x: 2 * slots.len(),
                        a: rng.gen_range(-5.0..5.0),
                        b: rng.gen_range(-10.0..10.0),
                        lo,
                        hi: lo + rng.gen_range(0..4) as f64,
                    });
                }
            }
            let mut cd = Vec::new();
            let mut acc = 0;
            for _ in 0..periods {
                acc += rng.gen_range(0..3);
                cd.push(acc);
            }
            let firm = rng.gen_bool(0.5);
            let n_links = 2 * slots.len() + periods;
            let backlog: Vec<Option<(usize, f64)>> = (0..periods)
                .map(|t| {
                    (!firm && t + 1 < periods)
                        .then(|| (2 * slots.len() + t, rng.gen_range(-2.0..4.0)))
                })
                .collect();
            let most = rng.gen_range(0..12);
            let (value, vals) = price_product(&slots, &cd, firm, &backlog, most, n_links);
            // Brute force: every choice of units per slot.
            let mut want = f64::INFINITY;
            let mut x = vec![0.0; slots.len()];
            fn go(
                j: usize,
                slots: &[Slot],
                x: &mut Vec<f64>,
                eval: &dyn Fn(&[f64]) -> f64,
                want: &mut f64,
            ) {
                if j == slots.len() {
                    *want = want.min(eval(x));
                    return;
                }
                x[j] = 0.0;
                go(j + 1, slots, x, eval, want);
                let mut q = slots[j].lo;
                while q <= slots[j].hi {
                    x[j] = q;
                    go(j + 1, slots, x, eval, want);
                    q += 1.0;
                }
                x[j] = 0.0;
            }
            let eval = |x: &[f64]| -> f64 {
                let mut cost = 0.0;
                let mut made = vec![0.0; periods];
                for (sl, &q) in slots.iter().zip(x) {
                    made[sl.t] += q;
                    cost += sl.a * q;
                }
                // Setups: on when units are made, or a zero run with a
                // negative setup cost and no minimum.
                for (sl, &q) in slots.iter().zip(x) {
                    if q > 0.0 || (sl.lo == 0.0 && sl.b < 0.0) {
                        cost += sl.b;
                    }
                }
                let mut c = 0.0;
                for t in 0..periods {
                    c += made[t];
                    let short = (cd[t] as f64 - c).max(0.0);
                    if (firm || t + 1 == periods) && short > 0.0 {
                        return f64::INFINITY;
                    }
                    if let Some((_, d)) = backlog[t] {
                        cost += d * if d >= 0.0 { short } else { cd[t] as f64 };
                    }
                }
                if c > most as f64 {
                    return f64::INFINITY;
                }
                cost
            };
            go(0, &slots, &mut x, &eval, &mut want);
            assert!(
                (value - want).abs() < 1e-6 || (value.is_infinite() && want.is_infinite()),
                "{value} against {want}"
            );
            if value.is_finite() {
                // The column returned has that value.
                let mut got = 0.0;
                for sl in &slots {
                    got += sl.a * vals[sl.x] + sl.b * vals[sl.x + 1];
                }
                for &(i, d) in backlog.iter().flatten() {
                    got += d * vals[i];
                }
                assert!((got - value).abs() < 1e-6, "column {got} against {value}");
            }
        }
    }

    /// The pricing is exact: it matches brute force on random small blocks.
    #[test]
    fn pricing_matches_brute_force() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..400 {
            let n = rng.gen_range(1..=4);
            let items: Vec<Item> = (0..n)
                .map(|_| {
                    let lo = rng.gen_range(0..4) as f64;
                    Item {
                        a: rng.gen_range(-10.0..5.0),
                        b: rng.gen_range(-30.0..20.0),
                        h: if rng.gen_bool(0.1) {
                            0.0
                        } else {
                            rng.gen_range(0.5..3.0)
                        },
                        s: rng.gen_range(0.0..4.0),
                        lo,
                        hi: lo + rng.gen_range(0..8) as f64,
                    }
                })
                .collect();
            let cap = rng.gen_range(0.0..25.0);
            let (value, run) = price(&items, cap);
            let want = brute(&items, cap);
            assert!(
                (value - want).abs() < 1e-6,
                "{value} against {want}: {items:?} cap {cap}"
            );
            // The run set returned is feasible and has that value.
            let mut hours = 0.0;
            let mut got = 0.0;
            for (it, &(x, y)) in items.iter().zip(&run) {
                if y {
                    assert!(x >= it.lo && x <= it.hi);
                    hours += it.s + it.h * x;
                    got += it.b + it.a * x;
                } else {
                    assert_eq!(x, 0.0);
                }
            }
            assert!(hours <= cap + 1e-6);
            assert!((got - value).abs() < 1e-6);
        }
    }
}

#[cfg(test)]
mod against_optima {
    use std::time::Duration;

    use super::*;
    use crate::generate::{random_timed_scenario, TimedSize};
    use crate::solve::{solve_model, Outcome, SolverKind};

    /// The bound is a lower bound: on small generated scenarios solved to a
    /// proof it never exceeds the optimum, and it is never below the LP.
    #[test]
    fn the_bound_never_exceeds_a_proven_optimum() {
        let sizes = [
            TimedSize::SMALL,
            TimedSize {
                products: 5,
                factories: 2,
                materials: 6,
                periods: 5,
                max_breaks: 3,
            },
        ];
        let mut compared = 0;
        let mut raised = 0;
        for (size, seeds) in sizes.into_iter().zip([10, 4]) {
            for seed in 1..=seeds {
                let v = random_timed_scenario(seed, size).validate().unwrap();
                let mut found = Vec::new();
                for by in [Decomposition::FactoryPeriod, Decomposition::Product] {
                    match decomposition_bound(&v, by, Duration::from_secs(30)) {
                        Ok(d) => found.push(d),
                        Err(DecompositionError::NoStart) => {}
                        Err(e) => panic!("seed {seed}: {e}"),
                    }
                }
                if found.is_empty() {
                    continue;
                }
                let opts = Options {
                    formulation: Formulation::Tight,
                    split_integers: true,
                    assign_supply: true,
                    ..Default::default()
                };
                let (problem, _) = build(&v, &opts);
                let out = solve_model(
                    problem,
                    SolverKind::Highs,
                    Duration::from_secs(60),
                    0.0,
                    None,
                )
                .expect("solves");
                let Outcome::Solved(opt) = out else {
                    panic!("seed {seed}: {out:?} with a start plan");
                };
                assert!(opt.finished, "seed {seed}: not proven");
                let opt = opt.best_bound.unwrap();
                let tol = 1e-7 * opt.abs().max(1.0);
                for d in found {
                    assert!(d.converged, "seed {seed}: not converged");
                    assert!(
                        d.bound <= opt + tol,
                        "seed {seed}: bound {} above the optimum {opt}",
                        d.bound
                    );
                    assert!(
                        d.bound >= d.root_lp - tol,
                        "seed {seed}: bound {} below the LP {}",
                        d.bound,
                        d.root_lp
                    );
                    assert!((d.master - d.bound).abs() <= tol, "seed {seed}: {d:?}");
                    compared += 1;
                    if d.bound > d.root_lp + tol {
                        raised += 1;
                    }
                }
            }
        }
        assert!(compared >= 12, "only {compared} scenarios compared");
        assert!(raised >= 6, "the bound rose above the LP on only {raised}");
    }
}
