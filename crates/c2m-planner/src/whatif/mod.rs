//! What-if analysis for planners: variants of a scenario compared side by
//! side, sweeps of one quantity, and threshold advice for a campaign.
//!
//! Layout:
//! - [`overlay`]: the overlay file (named variants of small changes) and
//!   applying it to a scenario, with errors naming the variant and the field;
//! - [`compare`]: plans of the base and each variant, rendered as a table,
//!   JSON or CSV;
//! - [`sweep`]: one quantity varied over a range, and the price-break
//!   volumes to mark on a chart;
//! - [`chart`]: the sweep drawn as SVG text;
//! - [`advice`]: the minimum viable batch and the price-ladder step-downs;
//! - [`tools`]: validate, summarise and convert scenarios;
//! - [`cli`]: the `what_if` example's command line, over an [`cli::Env`] that
//!   does the I/O, so tests run exactly what the binary runs.
//!
//! Like the rest of the crate, nothing here touches files or the terminal.
//! Plans that do not depend on each other (the points of a sweep, the
//! variants of a comparison, a block of volumes of the advice scan) are
//! solved on several threads at once, one per core ([`par_map`]); results
//! come back in input order, so output does not depend on the thread count.

pub mod advice;
pub mod chart;
pub mod cli;
pub mod compare;
pub mod overlay;
pub mod sweep;
pub mod tools;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::{plan, Plan, PlanError, Scenario, SolveOptions, SolverError};

/// Validates and plans one scenario; errors carry the scenario's name.
pub fn plan_scenario(s: &Scenario, opts: &SolveOptions) -> Result<Plan, String> {
    plan_point(s, opts)?.map_err(|e| format!("{}: no plan: {e}", s.name))
}

/// Validates and plans one scenario of a scan (a point of a sweep, a volume
/// of the advice scan), telling apart the two ways it can fail.
///
/// The inner error is a scenario the planner found no plan for: none within
/// the time limit (near a capacity limit, where even the greedy rules fail),
/// or a solver failing on this one model (microlp's "Singular matrix"). The
/// next point's model differs, so a scan reports the point and goes on. The
/// outer error is one every point would meet alike (a scenario that is not
/// valid, a solver this build lacks), so the scan stops; it carries the
/// scenario's name.
pub fn plan_point(s: &Scenario, opts: &SolveOptions) -> Result<Result<Plan, PlanError>, String> {
    let name = &s.name;
    let v = s
        .clone()
        .validate()
        .map_err(|e| format!("{name}: invalid scenario:\n{e}"))?;
    match plan(&v, opts) {
        Err(e @ PlanError::Solver(SolverError::NotAvailable(_))) => {
            Err(format!("{name}: no plan: {e}"))
        }
        r => Ok(r),
    }
}

/// Units of `sku` the scenario asks for: its demand, or in version 2 its total due; 0 for
/// an sku it lacks. With none, the sku has no cost per unit (the planner's 0.00 for it is
/// no price, and what-if output shows none).
pub(crate) fn units_asked(s: &Scenario, sku: &str) -> i64 {
    s.products.iter().find(|p| p.sku == sku).map_or(0, |p| {
        if s.horizon.is_some() {
            p.total_due()
        } else {
            p.demand
        }
    })
}

/// A number as a person reads it in a message: as written up to a billion billion, else
/// in exponent form (`1e300` was echoed as three hundred digits).
pub(crate) fn shown(x: f64) -> String {
    if x.abs() < 1e15 {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// The options the what-if tools solve with: the defaults without shadow
/// prices, which they never show and which cost LPs of their own.
pub fn default_options() -> SolveOptions {
    SolveOptions {
        shadow_prices: false,
        ..SolveOptions::default()
    }
}

/// The time limit of each plan in a sweep or an advice scan, which solve
/// many plans. Points near a capacity limit are the slow ones: demand cannot
/// be met there, and finding the best partial plan (for the shortfalls) is
/// a hard MILP; within this limit it is the best partial plan found. Plans
/// that meet demand on scenarios of the examples' size take milliseconds.
pub const SCAN_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`default_options`] with the time limit of [`SCAN_TIME_LIMIT`].
pub fn scan_options() -> SolveOptions {
    SolveOptions {
        time_limit: SCAN_TIME_LIMIT,
        ..default_options()
    }
}

/// Threads [`par_map`] uses: one per core the process may use.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Maps `f` over `items` on up to `threads` scoped threads, results in input
/// order. `progress(done)` is called on the calling thread after each item
/// finishes (in finishing order). After the first error, no new item is
/// started and the error of the earliest failing item is returned.
pub fn par_map<T, R, F>(
    items: &[T],
    threads: usize,
    f: F,
    progress: &mut dyn FnMut(usize),
) -> Result<Vec<R>, String>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> Result<R, String> + Sync,
{
    let n = items.len();
    let workers = threads.clamp(1, n.max(1));
    if workers == 1 {
        let mut out = Vec::with_capacity(n);
        for (i, item) in items.iter().enumerate() {
            out.push(f(item)?);
            progress(i + 1);
        }
        return Ok(out);
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let mut slots: Vec<Option<Result<R, String>>> = (0..n).map(|_| None).collect();
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, Result<R, String>)>();
        for _ in 0..workers {
            let tx = tx.clone();
            let (next, failed, f) = (&next, &failed, &f);
            scope.spawn(move || loop {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let r = f(&items[i]);
                if r.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                if tx.send((i, r)).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, r) in rx {
            let ok = r.is_ok();
            slots[i] = Some(r);
            if ok {
                done += 1;
                progress(done);
            }
        }
    });
    let mut out = Vec::with_capacity(n);
    for slot in slots {
        match slot {
            Some(Ok(r)) => out.push(r),
            Some(Err(e)) => return Err(e),
            // Not started because an earlier-started item failed; that
            // error is in a later slot.
            None => continue,
        }
    }
    if out.len() < n {
        return Err("stopped after an error".to_string());
    }
    Ok(out)
}
