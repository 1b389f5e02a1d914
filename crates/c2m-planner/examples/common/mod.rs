//! What the planner's measuring programs share: their first three arguments.

use c2m_planner::generate::{random_timed_scenario, TimedSize};
use c2m_planner::ValidatedScenario;

/// `SIZE SEEDS LIMIT` from the command line (`medium 1-6 20`): the generated size
/// (`small`, `medium` or `large`; medium otherwise), the seeds (`N` or `A-B`; 1-3 when
/// unreadable) and the seconds per scenario (20 by default).
pub fn size_seeds_limit(args: &[String]) -> (TimedSize, u64, u64, f64) {
    let size = match args.first().map(String::as_str) {
        Some("large") => TimedSize::LARGE,
        Some("small") => TimedSize::SMALL,
        _ => TimedSize::MEDIUM,
    };
    let (from, to) = match args.get(1).and_then(|s| s.split_once('-')) {
        Some((a, b)) => (a.parse().unwrap_or(1), b.parse().unwrap_or(3)),
        None => {
            let one = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
            (one, one)
        }
    };
    let limit: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20.0);
    (size, from, to, limit)
}

/// The generated scenarios of `size` for seeds `from..=to`, validated; a seed whose
/// scenario is not valid is named on standard output and skipped.
pub fn scenarios(
    size: TimedSize,
    from: u64,
    to: u64,
) -> impl Iterator<Item = (u64, ValidatedScenario)> {
    (from..=to).filter_map(
        move |seed| match random_timed_scenario(seed, size).validate() {
            Ok(v) => Some((seed, v)),
            Err(e) => {
                println!("seed {seed}: invalid scenario: {e}");
                None
            }
        },
    )
}
