//! A better warm start: the lot-for-lot runs improved by local search.
//!
//! Finished units are not kept as stock and cost no holding, so making a
//! product's dues in fewer, earlier runs saves setups and costs only the
//! holding of the materials that must arrive earlier. The search moves one
//! whole run at a time to another period or line of the same product
//! (merging it into a run already there), and, where that does not pay or
//! does not fit, the largest part of it that fits there (hours, the run's
//! bound) while leaving at least a minimum run behind; it re-buys the
//! materials the move
//! touches (each material's orders consolidated over periods by Wagner and
//! Whitin's programme, else lot-for-lot), and keeps a move when the plan's
//! total cost falls. Every plan it keeps satisfies the model and the tight
//! formulation's bounds, so the solver accepts it as a start.
//!
//! The search is bounded by work, not time ([`Effort`]): the same scenario
//! and effort give the same start on any machine, however busy, so the
//! solver starts from the same plan and a re-run gives the same answer.

use std::cell::Cell;
use std::time::Instant;

use crate::validate::ValidatedScenario;

use super::greedy::{consolidated_material, lot_for_lot_material};
use super::model::{cumulative_due, Bounds};
use super::Schedule;

/// One material's orders: `(order period, offer, tier, quantity)`.
type MaterialOrders = Vec<(usize, usize, usize, f64)>;

/// The cost of one material's orders (purchase, ordering, holding) for its
/// consumption `used`, or `None` when its stock would go negative.
fn material_cost(
    v: &ValidatedScenario,
    m: usize,
    used: &[f64],
    orders: &MaterialOrders,
) -> Option<f64> {
    let n = v.periods();
    let mat = &v.scenario().materials[m];
    let mut arriving = v.receipts(m).to_vec();
    let mut cost = 0.0;
    for &(placed, oi, k, q) in orders {
        let o = v.offers()[oi];
        let offer = v.offer(o);
        cost += offer.breaks[k].unit_price * q + offer.order_cost;
        let a = placed + o.lead_periods;
        if a < n {
            arriving[a] += q;
        }
    }
    let mut stock = mat.on_hand;
    for t in 0..n {
        stock += arriving[t] - used[t];
        if stock < -1e-6 {
            return None;
        }
        cost += mat.holding_cost * stock.max(0.0);
    }
    Some(cost)
}

/// The cheaper of the consolidated and the lot-for-lot orders of one
/// material: `(cost, orders)`.
fn buy_material(v: &ValidatedScenario, m: usize, used: &[f64]) -> Option<(f64, MaterialOrders)> {
    let mut best: Option<(f64, MaterialOrders)> = None;
    for orders in [
        consolidated_material(v, m, used),
        lot_for_lot_material(v, m, used),
    ]
    .into_iter()
    .flatten()
    {
        if let Some(c) = material_cost(v, m, used, &orders) {
            if best.as_ref().is_none_or(|(bc, _)| c < *bc) {
                best = Some((c, orders));
            }
        }
    }
    best
}

/// Production, setup and lateness of product `p` in schedule `x`, or `None`
/// when a firm due is missed or the total is not made by the end.
fn product_cost(v: &ValidatedScenario, cd: &[Vec<i64>], x: &[Vec<i64>], p: usize) -> Option<f64> {
    let prod = &v.scenario().products[p];
    let mut cost = 0.0;
    let mut made = 0i64;
    for (t, row) in x.iter().enumerate() {
        for (i, l) in v.lines().iter().enumerate() {
            if l.product == p && row[i] > 0 {
                let line = v.line(*l);
                cost += line.unit_cost * row[i] as f64 + line.setup_cost;
                made += row[i];
            }
        }
        let behind = cd[p][t] - made;
        if behind > 0 {
            match prod.late_cost {
                Some(c) if t + 1 < x.len() => cost += c * behind as f64,
                _ => return None,
            }
        }
    }
    Some(cost)
}

/// The search state: runs, material use, hours, and the cost parts.
#[derive(Clone)]
struct State {
    x: Vec<Vec<i64>>,
    used: Vec<Vec<f64>>,
    hours: Vec<Vec<f64>>,
    /// Production, setup and lateness per product.
    pc: Vec<f64>,
    /// Purchase, ordering and holding per material, and its orders.
    mc: Vec<f64>,
    orders: Vec<MaterialOrders>,
}

impl State {
    fn total(&self) -> f64 {
        self.pc.iter().sum::<f64>() + self.mc.iter().sum::<f64>()
    }
}

/// The search stops after this many kicks in a row that found nothing
/// better (small scenarios end long before their effort is spent). With
/// 100, the middle generated size stopped after 20-70 M units of work of
/// the 150 M a 20-s limit allows; with 1,000 it uses them all and its starts
/// are 0.06 % cheaper over six seeds (`docs/planning-time.md`, fifth
/// round). The large size spends its work before 100 fruitless kicks either way.
const PATIENCE: usize = 1000;

/// How much the search may do.
///
/// `work` counts evaluations (a product's runs re-costed, a material bought
/// again for a move) times the periods squared, which is what makes the search's result depend on
/// the scenario alone. `deadline` is a guard for a machine much slower than
/// the one `work` was sized on (or a debug build): reaching it first gives
/// a plan that depends on the machine's speed, as any time limit does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Effort {
    pub work: u64,
    pub deadline: Instant,
}

/// What the search reads: the scenario, the bounds it keeps, the dues; and
/// the work it has done against its effort.
struct Search<'a> {
    v: &'a ValidatedScenario,
    b: &'a Bounds,
    cd: Vec<Vec<i64>>,
    lines_of: Vec<Vec<usize>>,
    effort: Effort,
    done: Cell<u64>,
}

impl Search<'_> {
    /// Counts `n` evaluations.
    fn work(&self, n: u64) {
        self.done.set(self.done.get() + n);
    }

    /// Whether the effort is spent.
    fn spent(&self) -> bool {
        self.done.get() >= self.effort.work || Instant::now() > self.effort.deadline
    }

    /// Moves the whole run `(t, i)` to `(t2, i2)` (a line of the same
    /// product), merging it into a run there, when the move keeps every
    /// rule and bound and `accept` takes its cost change. Returns whether
    /// it moved.
    fn try_move(
        &self,
        st: &mut State,
        (t, i): (usize, usize),
        (t2, i2): (usize, usize),
        accept: impl Fn(f64) -> bool,
    ) -> bool {
        self.try_shift(st, (t, i), (t2, i2), st.x[t][i], accept)
    }

    /// The largest part of run `(t, i)` that fits at `(t2, i2)` (hours and the
    /// run bound there) and leaves at least the line's minimum run behind, so
    /// never the whole run; `None` when that is nothing.
    fn part_that_fits(
        &self,
        st: &State,
        (t, i): (usize, usize),
        (t2, i2): (usize, usize),
    ) -> Option<i64> {
        let v = self.v;
        let (l, l2) = (v.lines()[i], v.lines()[i2]);
        let (line, line2) = (v.line(l), v.line(l2));
        if (l.factory, t) == (l2.factory, t2) || line2.hours_per_unit <= 0.0 {
            return None;
        }
        let q = st.x[t][i];
        let setup = if st.x[t2][i2] == 0 {
            line2.setup_hours
        } else {
            0.0
        };
        let room = v.hours(l2.factory)[t2] - st.hours[l2.factory][t2] - setup;
        let by_hours = ((room / line2.hours_per_unit) + 1e-9).floor() as i64;
        let by_bound = (self.b.run[t2][i2] + 1e-9).floor() as i64 - st.x[t2][i2];
        let part = by_hours.min(by_bound).min(q - line.min_run.max(1));
        (part >= 1 && part < q).then_some(part)
    }

    /// Moves `q` units of run `(t, i)` to `(t2, i2)` (a line of the same
    /// product), merging them into a run there; what stays behind must be
    /// nothing or at least the line's minimum run. Done when the move keeps
    /// every rule and bound and `accept` takes its cost change; returns
    /// whether it moved.
    fn try_shift(
        &self,
        st: &mut State,
        (t, i): (usize, usize),
        (t2, i2): (usize, usize),
        q: i64,
        accept: impl Fn(f64) -> bool,
    ) -> bool {
        let v = self.v;
        let had = st.x[t][i];
        if q <= 0 || q > had || (t2, i2) == (t, i) {
            return false;
        }
        let left = had - q;
        let target = st.x[t2][i2] + q;
        let (l, l2) = (v.lines()[i], v.lines()[i2]);
        let (line, line2) = (v.line(l), v.line(l2));
        if (left > 0 && left < line.min_run.max(1))
            || target < line2.min_run.max(1)
            || target as f64 > self.b.run[t2][i2] + 1e-9
        {
            return false;
        }
        let new_run = st.x[t2][i2] == 0;
        // Hours freed at the source: the units, and the setup if the run goes.
        let freed = line.hours_per_unit * q as f64 + if left == 0 { line.setup_hours } else { 0.0 };
        let added = line2.hours_per_unit * q as f64 + if new_run { line2.setup_hours } else { 0.0 };
        let mut h2 = st.hours[l2.factory][t2] + added;
        if (l.factory, t) == (l2.factory, t2) {
            h2 -= freed;
        }
        if h2 > v.hours(l2.factory)[t2] + 1e-9 {
            return false;
        }
        let p = l.product;
        st.x[t][i] = left;
        st.x[t2][i2] = target;
        let undo = |st: &mut State| {
            st.x[t2][i2] -= q;
            st.x[t][i] = had;
        };
        // An evaluation's cost grows with the square of the periods (a material's
        // orders are consolidated by a programme over pairs of periods), so work is
        // counted in evaluations times periods squared: the same count then takes
        // about the same time on the benchmark's middle and large sizes.
        let n = v.periods() as u64;
        self.work((1 + v.bom(p).len() as u64) * n * n);
        let Some(new_pc) = product_cost(v, &self.cd, &st.x, p) else {
            undo(st);
            return false;
        };
        let mut delta = new_pc - st.pc[p];
        let mut changed = Vec::new();
        for &(m, a) in v.bom(p) {
            let mut u = st.used[m].clone();
            u[t] -= a * q as f64;
            u[t2] += a * q as f64;
            let Some((c, o)) = buy_material(v, m, &u) else {
                undo(st);
                return false;
            };
            delta += c - st.mc[m];
            changed.push((m, u, c, o));
        }
        if !accept(delta) {
            undo(st);
            return false;
        }
        st.hours[l.factory][t] -= freed;
        st.hours[l2.factory][t2] += added;
        st.pc[p] = new_pc;
        for (m, u, c, o) in changed {
            st.used[m] = u;
            st.mc[m] = c;
            st.orders[m] = o;
        }
        true
    }

    /// First-improvement descent over run moves (whole, else the part that
    /// fits) until none pays;
    /// `false` when the effort ran out first.
    fn descend(&self, st: &mut State) -> bool {
        let n = self.v.periods();
        let mut improved = true;
        while improved {
            improved = false;
            for lines in &self.lines_of {
                for t in 0..n {
                    for &i in lines {
                        'targets: for t2 in 0..n {
                            for &i2 in lines {
                                if self.spent() {
                                    return false;
                                }
                                if self.try_move(st, (t, i), (t2, i2), |d| d < -1e-6) {
                                    improved = true;
                                    break 'targets;
                                }
                                // Where moving the whole run does not pay or does not fit,
                                // the largest part that fits and leaves a minimum run.
                                if let Some(q) = self.part_that_fits(st, (t, i), (t2, i2)) {
                                    if self.try_shift(st, (t, i), (t2, i2), q, |d| d < -1e-6) {
                                        improved = true;
                                        break 'targets;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        true
    }
}

/// Improves the runs of `start` (and buys again for them): descent over
/// whole-run moves, then, while effort is left, random kicks of two or three
/// moves followed by descent, keeping the best plan (iterated local
/// search, seeded, and bounded by work, so the same effort gives the same
/// plan). Returns `start` unchanged when it breaks a bound the search
/// keeps, and the evaluations done.
pub(crate) fn improve(
    v: &ValidatedScenario,
    b: &Bounds,
    start: &Schedule,
    effort: Effort,
) -> (Schedule, u64) {
    let s = v.scenario();
    let n = v.periods();
    let cd = cumulative_due(v);
    let mut hours: Vec<Vec<f64>> = vec![vec![0.0; n]; s.factories.len()];
    for (t, row) in start.x.iter().enumerate() {
        for (i, l) in v.lines().iter().enumerate() {
            if row[i] > 0 {
                let line = v.line(*l);
                hours[l.factory][t] += line.hours_per_unit * row[i] as f64 + line.setup_hours;
            }
        }
    }
    let Some(pc) = (0..s.products.len())
        .map(|p| product_cost(v, &cd, &start.x, p))
        .collect::<Option<Vec<f64>>>()
    else {
        return (start.clone(), 0);
    };
    let used = start.consumption(v);
    let Some(bought) = (0..s.materials.len())
        .map(|m| buy_material(v, m, &used[m]))
        .collect::<Option<Vec<_>>>()
    else {
        return (start.clone(), 0);
    };
    let (mc, orders): (Vec<f64>, Vec<MaterialOrders>) = bought.into_iter().unzip();
    let search = Search {
        v,
        b,
        cd,
        lines_of: (0..s.products.len())
            .map(|p| {
                (0..v.lines().len())
                    .filter(|&i| v.lines()[i].product == p)
                    .collect()
            })
            .collect(),
        effort,
        done: Cell::new(0),
    };
    let mut st = State {
        x: start.x.clone(),
        used,
        hours,
        pc,
        mc,
        orders,
    };
    let finished = search.descend(&mut st);
    let mut best = st.clone();
    if finished {
        // A small xorshift generator: the search must not depend on
        // anything but the scenario and the effort.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |k: usize| -> usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % k.max(1) as u64) as usize
        };
        let n_lines = v.lines().len();
        let mut fruitless = 0;
        while !search.spent() && fruitless < PATIENCE {
            fruitless += 1;
            st = best.clone();
            let mut kicks = 0;
            for _ in 0..50 {
                if kicks == 2 + next(2) {
                    break;
                }
                let (t, i) = (next(n), next(n_lines));
                if st.x[t][i] == 0 {
                    continue;
                }
                let lines = &search.lines_of[v.lines()[i].product];
                let (t2, i2) = (next(n), lines[next(lines.len())]);
                if search.try_move(&mut st, (t, i), (t2, i2), |_| true) {
                    kicks += 1;
                }
            }
            let finished = search.descend(&mut st);
            if st.total() < best.total() - 1e-6 {
                best = st.clone();
                fruitless = 0;
            }
            if !finished {
                break;
            }
        }
    }
    let mut d = Schedule::empty(v);
    d.x = best.x;
    for os in best.orders {
        for (placed, oi, k, q) in os {
            d.buy[placed][oi] = Some((k, q));
        }
    }
    (d, search.done.get())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::generate::{random_timed_scenario, TimedSize};
    use crate::phased::greedy::greedy_schedule;
    use crate::phased::model::{bounds, Options};
    use crate::phased::plan_from_schedule;
    use crate::plan::PlanStatus;
    use crate::verify_plan;

    /// The improved start costs no more than lot-for-lot, is a plan of the
    /// model (checked by `verify_plan`, which shares no code with the
    /// search) and keeps the tight bounds, so HiGHS takes it as a start;
    /// and it is cheaper on most generated scenarios.
    #[test]
    fn improved_starts_are_valid_and_cheaper() {
        let (mut checked, mut cheaper) = (0, 0);
        for (size, seeds) in [(TimedSize::SMALL, 1..=6), (TimedSize::MEDIUM, 1..=4)] {
            for seed in seeds {
                let v = random_timed_scenario(seed, size).validate().unwrap();
                let Some(d) = greedy_schedule(&v) else {
                    continue;
                };
                let b = bounds(&v, &Options::default());
                let effort = Effort {
                    work: u64::MAX,
                    deadline: Instant::now() + Duration::from_secs(2),
                };
                let (e, _) = improve(&v, &b, &d, effort);
                let (before, after) = (d.costs(&v).total(), e.costs(&v).total());
                assert!(after <= before + 1e-6, "seed {seed}: {after} > {before}");
                let plan = plan_from_schedule(&v, &e, PlanStatus::Feasible, "greedy");
                assert_eq!(verify_plan(&v, &plan), Ok(()), "seed {seed}");
                for (t, xs) in e.x.iter().enumerate() {
                    for (i, &q) in xs.iter().enumerate() {
                        let min_run = v.line(v.lines()[i]).min_run.max(1);
                        assert!(q == 0 || (q >= min_run && q as f64 <= b.run[t][i]));
                    }
                }
                for (p, row) in e.made(&v).iter().enumerate() {
                    assert!(row.iter().sum::<i64>() as f64 <= b.max_made[p]);
                }
                checked += 1;
                cheaper += usize::from(after < before - 1.0);
            }
        }
        assert!(checked >= 6, "only {checked} greedy plans");
        assert!(
            2 * cheaper >= checked,
            "cheaper on only {cheaper} of {checked}"
        );
    }

    /// On the middle size the search goes on until its work is spent:
    /// kicks that find nothing a hundred times in a row do not end it (with
    /// a patience of 100, medium seed 1 stopped after 19.5 M units).
    #[test]
    fn the_search_spends_its_work_on_the_middle_size() {
        let v = random_timed_scenario(1, TimedSize::MEDIUM)
            .validate()
            .unwrap();
        let d = greedy_schedule(&v).expect("lot-for-lot plan");
        let b = bounds(&v, &Options::default());
        let effort = Effort {
            work: 30_000_000,
            deadline: Instant::now() + Duration::from_secs(600),
        };
        let (e, work) = improve(&v, &b, &d, effort);
        assert!(work >= effort.work, "stopped after {work} units");
        assert!(e.costs(&v).total() < d.costs(&v).total());
    }

    /// The search is bounded by work, not time: with an effort small
    /// enough to stop it part-way, two runs give the same plan, even when
    /// the second runs on a machine kept busy by other threads.
    #[test]
    fn the_same_effort_gives_the_same_start() {
        let v = random_timed_scenario(1, TimedSize::MEDIUM)
            .validate()
            .unwrap();
        let d = greedy_schedule(&v).expect("a lot-for-lot plan");
        let b = bounds(&v, &Options::default());
        let run = || {
            improve(
                &v,
                &b,
                &d,
                Effort {
                    work: 2_000_000,
                    deadline: Instant::now() + Duration::from_secs(600),
                },
            )
        };
        let (first, work) = run();
        assert!(work >= 2_000_000, "the effort did not bind: {work}");
        let busy = std::sync::atomic::AtomicBool::new(true);
        let (second, again) = std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while busy.load(std::sync::atomic::Ordering::Relaxed) {
                        std::hint::black_box((0..1000u64).sum::<u64>());
                    }
                });
            }
            let out = run();
            busy.store(false, std::sync::atomic::Ordering::Relaxed);
            out
        });
        assert_eq!(work, again);
        assert_eq!(first.x, second.x);
        assert_eq!(first.buy, second.buy);
        assert!(first.costs(&v).total() < d.costs(&v).total());
    }
}
