//! Fix-and-optimize on a plan: the tight model with every decision fixed
//! to the plan's but those of one neighbourhood (the runs of the products
//! one factory makes, on all their lines, and the orders of their
//! materials), solved by HiGHS from the plan within a short limit; a
//! cheaper plan it finds replaces the plan, and the next neighbourhood is
//! tried, until a round over every factory finds nothing or the time is
//! spent. The plan it returns is never dearer than the one it was given,
//! and is a plan of the tight model (the restricted model's plans are
//! plans of the whole), so it can be the full model's start.

use std::time::{Duration, Instant};

use crate::model::Formulation;
use crate::solve::{solve_model, Outcome, SolverKind};
use crate::validate::ValidatedScenario;

use super::model::{build, Keep, Options};
use super::{plan_from_schedule, verify, Schedule};
use crate::plan::PlanStatus;

/// What the search did, for the log.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Refined {
    pub solves: usize,
    pub improved: usize,
}

/// The neighbourhoods: per product, it and the `k - 1` products closest to
/// it (most factories and materials shared with the group), with their
/// lines and materials.
fn neighbourhoods(v: &ValidatedScenario, k: usize) -> Vec<(Vec<bool>, Vec<bool>)> {
    let s = v.scenario();
    let np = s.products.len();
    let mut fac = vec![vec![false; s.factories.len()]; np];
    for l in v.lines() {
        fac[l.product][l.factory] = true;
    }
    let mut mat = vec![vec![false; s.materials.len()]; np];
    for (p, row) in mat.iter_mut().enumerate() {
        for &(m, _) in v.bom(p) {
            row[m] = true;
        }
    }
    let mut out = Vec::new();
    for p0 in 0..np {
        if v.total_due(p0) == 0 {
            continue;
        }
        let mut group = vec![p0];
        while group.len() < k.min(np) {
            let score = |q: usize| -> usize {
                group
                    .iter()
                    .map(|&g| {
                        let f = (0..s.factories.len())
                            .filter(|&f| fac[g][f] && fac[q][f])
                            .count();
                        let m = (0..s.materials.len())
                            .filter(|&m| mat[g][m] && mat[q][m])
                            .count();
                        2 * f + m
                    })
                    .sum()
            };
            let best = (0..np)
                .filter(|q| !group.contains(q))
                .max_by_key(|&q| (score(q), std::cmp::Reverse(q)));
            match best {
                Some(q) => group.push(q),
                None => break,
            }
        }
        let free_line = v
            .lines()
            .iter()
            .map(|l| group.contains(&l.product))
            .collect();
        let mut free_material = vec![false; s.materials.len()];
        for &g in &group {
            for &(m, _) in v.bom(g) {
                free_material[m] = true;
            }
        }
        out.push((free_line, free_material));
    }
    out
}

/// Fix-and-optimize from `start` until `deadline`, each solve within
/// `per_solve` (and the time left). `start` must be a plan of the tight
/// model (the start search's plans are).
pub(crate) fn refine(
    v: &ValidatedScenario,
    start: &Schedule,
    deadline: Instant,
    per_solve: Duration,
) -> (Schedule, Refined) {
    let mut best = start.clone();
    let mut best_cost = best.costs(v).total();
    let mut stats = Refined::default();
    let k: usize = std::env::var("C2M_FO_K")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let hoods = neighbourhoods(v, k);
    if hoods.is_empty() {
        return (best, stats);
    }
    let mut fruitless = 0;
    let mut i = 0;
    while fruitless < hoods.len() {
        let now = Instant::now();
        if now + Duration::from_millis(200) >= deadline {
            break;
        }
        let limit = per_solve.min(deadline - now);
        let (free_line, free_material) = hoods[i % hoods.len()].clone();
        i += 1;
        let opts = Options {
            formulation: Formulation::Tight,
            keep: Some(Keep {
                plan: best.clone(),
                free_line,
                free_material,
                keep_tiers: std::env::var("C2M_FO_TIERS").is_ok(),
            }),
            ..Default::default()
        };
        let t0 = Instant::now();
        let (mut problem, layout) = build(v, &opts);
        if let Some(tol) = std::env::var("C2M_FO_TOL")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            problem.feasibility_tolerance = tol;
        }
        let built = t0.elapsed().as_secs_f64();
        let start_values = layout.start_values(v, &best);
        stats.solves += 1;
        let found = match solve_model(problem, SolverKind::Highs, limit, 1e-4, Some(start_values)) {
            Ok(Outcome::Solved(raw)) => Some(layout.schedule(v, &raw.values)),
            _ => None,
        };
        fruitless += 1;
        eprintln!(
            "  hood {} build {:.2} s solve {:.2} s -> {:?}",
            (i - 1) % hoods.len(),
            built,
            t0.elapsed().as_secs_f64(),
            found
                .as_ref()
                .map(|d| (d.costs(v).total() - best_cost).round())
        );
        let Some(d) = found else { continue };
        let cost = d.costs(v).total();
        if cost < best_cost - 1e-6 * best_cost.abs().max(1.0) {
            let plan = plan_from_schedule(v, &d, PlanStatus::Feasible, "highs");
            if verify::verify(v, &plan).is_ok() {
                tracing::debug!(
                    neighbourhood = (i - 1) % hoods.len(),
                    before = best_cost,
                    after = cost,
                    "fix-and-optimize"
                );
                best = d;
                best_cost = cost;
                stats.improved += 1;
                fruitless = 0;
            }
        }
    }
    (best, stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{random_timed_scenario, TimedSize};
    use crate::phased::greedy::greedy_schedule;
    use crate::phased::model::bounds;
    use crate::verify_plan;

    /// From lot-for-lot, a poor start, fix-and-optimize never returns a
    /// dearer plan, every plan it returns passes `verify_plan` and keeps
    /// the tight bounds (so the full model takes it as a start), and it is
    /// cheaper on most small and middle scenarios.
    #[test]
    fn refined_plans_are_valid_and_never_dearer() {
        let (mut checked, mut cheaper) = (0, 0);
        for (size, seeds) in [(TimedSize::SMALL, 1..=6), (TimedSize::MEDIUM, 1..=2)] {
            for seed in seeds {
                let v = random_timed_scenario(seed, size).validate().unwrap();
                let Some(d) = greedy_schedule(&v) else {
                    continue;
                };
                let deadline = Instant::now() + Duration::from_secs(20);
                let (e, stats) = refine(&v, &d, deadline, Duration::from_secs(5));
                let (before, after) = (d.costs(&v).total(), e.costs(&v).total());
                assert!(after <= before + 1e-6, "seed {seed}: {after} > {before}");
                assert!(stats.solves > 0, "seed {seed}: nothing solved");
                let plan = plan_from_schedule(&v, &e, PlanStatus::Feasible, "highs");
                assert_eq!(verify_plan(&v, &plan), Ok(()), "seed {seed}");
                let b = bounds(&v, &Options::default());
                for (t, xs) in e.x.iter().enumerate() {
                    for (i, &q) in xs.iter().enumerate() {
                        let min_run = v.line(v.lines()[i]).min_run.max(1);
                        assert!(q == 0 || (q >= min_run && q as f64 <= b.run[t][i]));
                    }
                }
                for (p, row) in e.made(&v).iter().enumerate() {
                    assert!(row.iter().sum::<i64>() as f64 <= b.max_made[p] + 1e-9);
                }
                checked += 1;
                cheaper += usize::from(after < before - 1.0);
            }
        }
        assert!(checked >= 5, "only {checked} lot-for-lot plans");
        assert!(
            2 * cheaper >= checked,
            "cheaper on only {cheaper} of {checked}"
        );
    }

    /// A neighbourhood that frees everything is the whole model: from
    /// lot-for-lot it reaches the optimum the full model proves.
    #[test]
    fn freeing_everything_finds_the_optimum() {
        let mut compared = 0;
        for seed in 1..=6 {
            let v = random_timed_scenario(seed, TimedSize::SMALL)
                .validate()
                .unwrap();
            let Some(d) = greedy_schedule(&v) else {
                continue;
            };
            let solve = |keep: Option<Keep>| {
                let opts = Options {
                    formulation: Formulation::Tight,
                    keep,
                    ..Default::default()
                };
                let (problem, layout) = build(&v, &opts);
                let start = layout.start_values(&v, &d);
                match solve_model(
                    problem,
                    SolverKind::Highs,
                    Duration::from_secs(60),
                    0.0,
                    Some(start),
                ) {
                    Ok(Outcome::Solved(raw)) => {
                        assert!(raw.finished, "seed {seed}: not proven");
                        layout.schedule(&v, &raw.values).costs(&v).total()
                    }
                    other => panic!("seed {seed}: {other:?}"),
                }
            };
            let s = v.scenario();
            let all = Keep {
                plan: d.clone(),
                free_line: vec![true; v.lines().len()],
                free_material: vec![true; s.materials.len()],
                keep_tiers: false,
            };
            let (whole, freed) = (solve(None), solve(Some(all)));
            assert!(
                (whole - freed).abs() <= 1e-6 * whole.abs().max(1.0),
                "seed {seed}: optimum {whole}, with everything free {freed}"
            );
            // Nothing free: the plan itself.
            let none = Keep {
                plan: d.clone(),
                free_line: vec![false; v.lines().len()],
                free_material: vec![false; s.materials.len()],
                keep_tiers: false,
            };
            let fixed = solve(Some(none));
            let own = d.costs(&v).total();
            assert!(
                (fixed - own).abs() <= 1e-6 * own.abs().max(1.0),
                "seed {seed}: the plan costs {own}, fixed to it {fixed}"
            );
            compared += 1;
        }
        assert!(compared >= 3, "only {compared} seeds compared");
    }
}
