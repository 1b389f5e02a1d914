//! Value parsers for the benchmarks' numeric flags (`#[arg(value_parser = ...)]`), so a
//! value the benchmark cannot use is refused by clap naming the flag (`error: invalid
//! value 'NaN' for '--duration <DURATION>': ...`, exit 2) before anything starts.
//! Included with `#[path = "common/flags.rs"] mod flags;`.
//!
//! Without them a NaN, negative or zero reached `Duration::from_secs_f64` (a panic), an
//! infinite rate made an open loop of `u64::MAX` orders (a hang), and a zero count of
//! clients or campaigns was quietly taken as one (or indexed an empty list) while the
//! report printed the zero.

#![allow(dead_code)] // each benchmark uses some of them

/// The longest phase, warm-up, probe or call deadline a benchmark takes: a day. A run is
/// meant to take seconds or minutes; a longer value is a slip (`--duration 20000000`).
pub const MAX_SECONDS: f64 = 86_400.0;

/// The highest offered rate, orders a second: well above what one machine serves, and low
/// enough that a phase's orders (rate x seconds) stay countable.
pub const MAX_RATE: f64 = 1_000_000.0;

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if !v.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok(v)
}

/// `s` as a finite number that `ok` accepts, else what it `must` be.
fn within(s: &str, ok: impl Fn(f64) -> bool, must: impl FnOnce() -> String) -> Result<f64, String> {
    let v = number(s)?;
    if ok(v) {
        Ok(v)
    } else {
        Err(must())
    }
}

/// Seconds in (0, 1 day].
pub fn seconds(s: &str) -> Result<f64, String> {
    within(
        s,
        |v| v > 0.0 && v <= MAX_SECONDS,
        || format!("must be more than 0 and at most {MAX_SECONDS} seconds"),
    )
}

/// Seconds in [0, 1 day] (0 turns the step off).
pub fn seconds_or_zero(s: &str) -> Result<f64, String> {
    within(
        s,
        |v| (0.0..=MAX_SECONDS).contains(&v),
        || format!("must be between 0 and {MAX_SECONDS} seconds"),
    )
}

/// Orders a second in (0, 1,000,000].
pub fn rate(s: &str) -> Result<f64, String> {
    within(
        s,
        |v| v > 0.0 && v <= MAX_RATE,
        || format!("must be more than 0 and at most {MAX_RATE} orders a second"),
    )
}

/// A finite number above 0 (a factor, a shape).
pub fn positive(s: &str) -> Result<f64, String> {
    within(s, |v| v > 0.0, || "must be more than 0".into())
}

/// A finite number, 0 or more (a scale, a standard deviation).
pub fn non_negative(s: &str) -> Result<f64, String> {
    within(s, |v| v >= 0.0, || "must be 0 or more".into())
}

/// A fraction in [0, 1).
pub fn fraction(s: &str) -> Result<f64, String> {
    within(
        s,
        |v| (0.0..1.0).contains(&v),
        || "must be at least 0 and less than 1".into(),
    )
}

/// A count of at least 1 (orders, clients, connections, campaigns, samples).
pub fn count(s: &str) -> Result<usize, String> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number"))?;
    if v >= 1 {
        Ok(v)
    } else {
        Err("must be at least 1".into())
    }
}
