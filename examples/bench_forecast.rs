//! Is the fill forecast calibrated? A benchmark over simulated campaigns, not a test.
//!
//! ```text
//! cargo run --release --example bench_forecast -- [--seed 1] [--campaigns 1000] [--json]
//! ```
//!
//! For each of five arrival processes (steady Poisson; a launch rush decaying after
//! launch; bursty, Markov-modulated arrivals; a late surge before the deadline; a flash of
//! orders in the first minute, then steady) it
//! simulates `--campaigns` campaigns, each with its merchant's earlier campaigns of the
//! same sku (0 to 4 of them, which build the forecast's prior), order sizes from a skewed
//! distribution, and cancellations that take units out of the open batch. Batches lock at
//! the threshold and later orders start the next batch, exactly as the pooling rule does.
//! At several moments of each campaign it forecasts whether the then open batch locks by
//! the deadline, and afterwards checks. It prints, per process, the Brier score of the
//! forecast next to two naive baselines in the same run, and a calibration table: of the
//! forecasts in each 10% bucket, how many batches locked.
//!
//! The baselines extrapolate the campaign's net units so far linearly to the deadline:
//! "naive" says 1 if the open batch's units plus that extrapolation reach the threshold,
//! else 0; "naive smoothed" turns the same gap into a probability with a normal
//! approximation whose variance is that of a Poisson stream of the observed order sizes.
//! The process generators are deliberately not the forecast's own functional forms (a
//! power-law decay, a quadratic ramp, a two-state Markov switch), so the model is
//! scored on demand it does not describe exactly.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use c2m_domain::forecast::{
    Arrival, ArrivalHistory, Cancellation, FillModel, ForecastConfig, OpenBatch, Prior,
};
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::Parser;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[path = "common/flags.rs"]
mod flags;

#[derive(Parser)]
struct Args {
    /// Seed of the simulation; the same seed prints the same figures.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Campaigns simulated per process.
    #[arg(long, default_value_t = 2000, value_parser = flags::count)]
    campaigns: usize,
    /// Most earlier campaigns a merchant has (each campaign draws `--min-past ..=` this
    /// many).
    #[arg(long, default_value_t = 4)]
    max_past: usize,
    /// Fewest earlier campaigns a merchant has.
    #[arg(long, default_value_t = 1)]
    min_past: usize,
    /// Scale of the cancellation probability (0 turns cancellations off).
    #[arg(long, default_value_t = 1.0, value_parser = cancel_scale)]
    cancel_scale: f64,
    /// Override the forecast's half-life (fraction of the campaign; 0 means no decay).
    #[arg(long, value_parser = flags::non_negative)]
    half_life: Option<f64>,
    /// Override the forecast's trend prior (change of log demand over the campaign).
    #[arg(long, value_parser = flags::non_negative)]
    trend_sd: Option<f64>,
    /// Override the forecast's trend damping (fraction of the campaign).
    #[arg(long, value_parser = flags::positive)]
    trend_damping: Option<f64>,
    /// Run only the processes named (steady, decaying, bursty, late-surge, flash); all by
    /// default.
    #[arg(long, value_delimiter = ',', value_parser = ["steady", "decaying", "bursty", "late-surge", "flash"])]
    only: Vec<String>,
    /// Moments of each campaign at which it is forecast, as fractions of its length
    /// (default 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97). Early ones (0.01) show how the
    /// forecast starts, when a first campaign leans on the default prior.
    #[arg(long, value_delimiter = ',')]
    moments: Vec<f64>,
    /// Override the forecast's default prior shape (its weight in orders without earlier
    /// campaigns).
    #[arg(long, value_parser = flags::positive)]
    prior_shape: Option<f64>,
    /// Override the weight of the robust part of the level's prior (0: a plain Gamma).
    #[arg(long, value_parser = flags::fraction)]
    robust_weight: Option<f64>,
    /// How far merchants set thresholds from their demand: the standard deviation of the
    /// log of demand over the threshold's worth (0.6 by default).
    #[arg(long, default_value_t = 0.6, value_parser = mismatch)]
    mismatch: f64,
    /// Scale of thresholds and demand: thresholds are drawn from 50..=300 times this, with
    /// demand to match (the same order sizes, so this many times the orders). At 100 and
    /// more the forecasts pass their exact range and are smoothed (docs/forecast.md); a
    /// smaller `--campaigns` keeps such a run short.
    #[arg(long, default_value_t = 1, value_parser = scale)]
    scale: usize,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `--cancel-scale`: a campaign's cancellation probability is drawn between 0.02 and 0.15
/// and multiplied by this, so above 6 it could pass 0.9 (and 1, which is no probability).
fn cancel_scale(s: &str) -> Result<f64, String> {
    let v = flags::non_negative(s)?;
    if v <= 6.0 {
        Ok(v)
    } else {
        Err("must be at most 6 (cancellation probabilities of 0.02-0.15 times it)".into())
    }
}

/// `--scale`: at 10,000 a threshold is up to three million units, about a million orders
/// simulated per campaign; more would run for hours.
fn scale(s: &str) -> Result<usize, String> {
    let v = flags::count(s)?;
    if v <= 10_000 {
        Ok(v)
    } else {
        Err("must be at most 10000 (thresholds of up to 3 million units)".into())
    }
}

/// `--mismatch`: a standard deviation of the log of demand. At 3 one merchant in six
/// already sells twenty times its threshold or a twentieth of it; at 100 the simulated
/// demand ran to astronomical numbers of orders, and the run never ended.
fn mismatch(s: &str) -> Result<f64, String> {
    let v = flags::non_negative(s)?;
    if v <= 3.0 {
        Ok(v)
    } else {
        Err("must be at most 3 (a standard deviation of the log of demand)".into())
    }
}

/// Moments of each campaign, as fractions of its length, at which it is forecast, unless
/// `--moments` says otherwise.
const MOMENTS: [f64; 8] = [0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97];

/// Order sizes: mostly single units, a tail of bulk buyers.
const SIZES: [(i64, f64); 7] = [
    (1, 0.50),
    (2, 0.20),
    (3, 0.10),
    (4, 0.07),
    (6, 0.06),
    (10, 0.05),
    (20, 0.02),
];

#[derive(Clone, Copy, Debug)]
enum Process {
    Steady,
    Decaying,
    Bursty,
    LateSurge,
    Flash,
}

impl Process {
    const ALL: [Process; 5] = [
        Process::Steady,
        Process::Decaying,
        Process::Bursty,
        Process::LateSurge,
        Process::Flash,
    ];

    fn name(self) -> &'static str {
        match self {
            Process::Steady => "steady",
            Process::Decaying => "decaying",
            Process::Bursty => "bursty",
            Process::LateSurge => "late-surge",
            Process::Flash => "flash",
        }
    }

    /// The mean demand shape (relative intensity) at `t` days in a campaign `d` days
    /// long; for the bursty process its long-run mean; for the flash process without its
    /// flash (see [`mean_shape`]).
    fn shape(self, t: f64, d: f64) -> f64 {
        match self {
            Process::Steady | Process::Flash => 1.0,
            Process::Decaying => 0.35 + 2.5 * (1.0 + t / 1.5).powf(-1.5),
            Process::Bursty => QUIET + (BURST - QUIET) * BURST_SHARE,
            Process::LateSurge => {
                let start = d - SURGE_DAYS;
                if t < start {
                    1.0
                } else {
                    1.0 + SURGE_GAIN * ((t - start) / SURGE_DAYS).powi(2)
                }
            }
        }
    }

    fn max_shape(self) -> f64 {
        match self {
            Process::Steady | Process::Flash => 1.0,
            Process::Decaying => 2.85,
            Process::Bursty => BURST,
            Process::LateSurge => 1.0 + SURGE_GAIN,
        }
    }
}

const QUIET: f64 = 1.0;
const BURST: f64 = 8.0;
/// Mean days in each state of the bursty process.
const QUIET_DAYS: f64 = 4.0;
const BURST_DAYS: f64 = 0.6;
const BURST_SHARE: f64 = BURST_DAYS / (QUIET_DAYS + BURST_DAYS);
const SURGE_DAYS: f64 = 4.0;
const SURGE_GAIN: f64 = 5.0;
/// The flash process: this share of a campaign's steady demand arrives on top of it in the
/// first `FLASH_DAYS` (a minute: a post, a mailing, a script), as one Poisson rush.
const FLASH_SHARE: f64 = 0.15;
const FLASH_DAYS: f64 = 1.0 / 1440.0;

fn mean_size() -> f64 {
    SIZES.iter().map(|(u, p)| *u as f64 * p).sum()
}

fn draw_size(rng: &mut StdRng) -> i64 {
    let mut x: f64 = rng.gen();
    for (u, p) in SIZES {
        if x < p {
            return u;
        }
        x -= p;
    }
    SIZES[SIZES.len() - 1].0
}

fn exp_draw(rng: &mut StdRng, mean: f64) -> f64 {
    -mean * (1.0 - rng.gen::<f64>()).ln()
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box-Muller; one of the pair is enough here.
    let u1: f64 = 1.0 - rng.gen::<f64>();
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The mean of `shape` over a campaign, by the midpoint rule.
fn mean_shape(p: Process, d: f64) -> f64 {
    if let Process::Flash = p {
        return 1.0 + FLASH_SHARE;
    }
    let n = 2000;
    (0..n)
        .map(|i| p.shape((i as f64 + 0.5) * d / n as f64, d))
        .sum::<f64>()
        / n as f64
}

/// Arrival times (days since opening) of one campaign at `level` pre-orders per day where
/// the shape is 1.
fn arrival_times(rng: &mut StdRng, p: Process, level: f64, d: f64) -> Vec<f64> {
    let mut out = Vec::new();
    if let Process::Flash = p {
        let rate = level * d * FLASH_SHARE / FLASH_DAYS;
        let mut s = exp_draw(rng, 1.0 / rate);
        while s < FLASH_DAYS {
            out.push(s);
            s += exp_draw(rng, 1.0 / rate);
        }
    }
    match p {
        Process::Bursty => {
            // Two-state Markov switch, starting in its stationary distribution.
            let mut burst = rng.gen::<f64>() < BURST_SHARE;
            let mut t = 0.0;
            while t < d {
                let stay = exp_draw(rng, if burst { BURST_DAYS } else { QUIET_DAYS });
                let end = (t + stay).min(d);
                let rate = level * if burst { BURST } else { QUIET };
                let mut s = t + exp_draw(rng, 1.0 / rate);
                while s < end {
                    out.push(s);
                    s += exp_draw(rng, 1.0 / rate);
                }
                t = end;
                burst = !burst;
            }
        }
        _ => {
            // Thinning (Lewis-Shedler) of a stream at the peak rate.
            let peak = level * p.max_shape();
            let mut t = exp_draw(rng, 1.0 / peak);
            while t < d {
                if rng.gen::<f64>() * p.max_shape() < p.shape(t, d) {
                    out.push(t);
                }
                t += exp_draw(rng, 1.0 / peak);
            }
        }
    }
    // The flash and the stream overlap in the first minute.
    out.sort_by(f64::total_cmp);
    out
}

/// One simulated campaign: its arrivals and cancellations as the store would have them,
/// and each batch's lock time.
struct Campaign {
    opens_at: DateTime<Utc>,
    length: f64,
    /// `(days since opening, units, batch)` per pre-order.
    orders: Vec<(f64, i64, usize)>,
    /// `(days since opening, units, batch)` per cancellation that took effect.
    cancels: Vec<(f64, i64, usize)>,
    /// Lock time of each batch that locked, by batch number.
    locks: Vec<f64>,
}

fn simulate(
    rng: &mut StdRng,
    p: Process,
    level: f64,
    d: f64,
    threshold: i64,
    cancel_prob: f64,
) -> Campaign {
    let times = arrival_times(rng, p, level, d);
    // Events: (time, kind 0 = order / 1 = cancel, order index).
    let mut sizes = Vec::with_capacity(times.len());
    let mut events: Vec<(f64, u8, usize)> = Vec::with_capacity(times.len() * 2);
    for (i, &t) in times.iter().enumerate() {
        sizes.push(draw_size(rng));
        events.push((t, 0, i));
        if rng.gen::<f64>() < cancel_prob {
            let at = t + exp_draw(rng, 1.5);
            if at < d {
                events.push((at, 1, i));
            }
        }
    }
    events.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut batch_of = vec![0usize; times.len()];
    let (mut batch, mut units) = (0usize, 0i64);
    let mut c = Campaign {
        opens_at: Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap(),
        length: d,
        orders: Vec::with_capacity(times.len()),
        cancels: Vec::new(),
        locks: Vec::new(),
    };
    for (t, kind, i) in events {
        if kind == 0 {
            batch_of[i] = batch;
            units += sizes[i];
            c.orders.push((t, sizes[i], batch));
            if units >= threshold {
                c.locks.push(t);
                batch += 1;
                units = 0;
            }
        } else if batch_of[i] == batch {
            // Only an order whose batch is still open can be cancelled.
            units -= sizes[i];
            c.cancels.push((t, sizes[i], batch));
        }
    }
    c
}

impl Campaign {
    fn at(&self, t: f64) -> DateTime<Utc> {
        self.opens_at + Duration::milliseconds((t * 86_400_000.0) as i64)
    }

    fn history(&self, until: f64) -> ArrivalHistory {
        ArrivalHistory {
            opens_at: self.opens_at,
            deadline: self.at(self.length),
            first_deadline: None,
            first_threshold: None,
            arrivals: self
                .orders
                .iter()
                .filter(|o| o.0 <= until)
                .map(|o| Arrival {
                    at: self.at(o.0),
                    units: o.1,
                })
                .collect(),
            cancellations: self
                .cancels
                .iter()
                .filter(|o| o.0 <= until)
                .map(|o| Cancellation {
                    at: self.at(o.0),
                    units: o.1,
                })
                .collect(),
        }
    }

    /// The open batch's number and units at `t`.
    fn open_batch(&self, t: f64) -> (usize, i64) {
        let batch = self.locks.iter().filter(|&&l| l <= t).count();
        let placed: i64 = self
            .orders
            .iter()
            .filter(|o| o.0 <= t && o.2 == batch)
            .map(|o| o.1)
            .sum();
        let cancelled: i64 = self
            .cancels
            .iter()
            .filter(|o| o.0 <= t && o.2 == batch)
            .map(|o| o.1)
            .sum();
        (batch, placed - cancelled)
    }
}

/// Who is forecasting: a merchant with earlier campaigns of the sku (the forecast leans on
/// them), or the same campaign seen as the merchant's first (no prior).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Population {
    Repeat,
    First,
}

impl Population {
    const ALL: [Population; 2] = [Population::Repeat, Population::First];

    fn name(self) -> &'static str {
        match self {
            Population::Repeat => "with prior",
            Population::First => "first campaign",
        }
    }
}

/// One forecast and what happened.
struct Scored {
    population: Population,
    /// Index into [`MOMENTS`].
    moment: usize,
    forecast: f64,
    naive: f64,
    smoothed: f64,
    locked: bool,
    /// For the forecast's lock-by moments (10%, 50%, 90%) that exist: whether the batch
    /// had locked by then.
    locked_by: [Option<bool>; 3],
}

fn standard_normal_cdf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 on erf; plenty for a baseline.
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

fn run_process(args: &Args, p: Process, rng: &mut StdRng, config: &ForecastConfig) -> Vec<Scored> {
    let mut out = Vec::new();
    for _ in 0..args.campaigns {
        // The merchant: how they set thresholds against their demand, how often their
        // buyers cancel, and how many campaigns of this sku they ran before.
        let threshold = rng.gen_range(50..=300) * args.scale as i64;
        let cancel_prob = rng.gen_range(0.02..0.15) * args.cancel_scale;
        let past = rng.gen_range(args.min_past..=args.max_past);
        let merchant_mismatch = (args.mismatch * normal(rng)).exp();
        let level_for = |d: f64| threshold as f64 / (mean_size() * d * mean_shape(p, d));
        let mut histories = Vec::with_capacity(past);
        for _ in 0..past {
            let d = rng.gen_range(14.0..35.0);
            let level = level_for(d) * merchant_mismatch * (0.3 * normal(rng)).exp();
            let c = simulate(rng, p, level, d, threshold, cancel_prob);
            histories.push(c.history(d));
        }
        let prior = Prior::from_campaigns(&histories).expect("simulated campaigns are valid");
        let d = rng.gen_range(14.0..35.0);
        let level = level_for(d) * merchant_mismatch * (0.3 * normal(rng)).exp();
        let c = simulate(rng, p, level, d, threshold, cancel_prob);
        for (moment, m) in args.moments().into_iter().enumerate() {
            let now = m * d;
            let (batch, units) = c.open_batch(now);
            let lock_at = c.locks.get(batch).copied();
            let history = c.history(now);
            // Baselines: the campaign's net units so far, extrapolated linearly.
            let net: i64 = history.arrivals.iter().map(|a| a.units).sum::<i64>()
                - history.cancellations.iter().map(|x| x.units).sum::<i64>();
            let ahead = net as f64 / now * (d - now);
            let gap = units as f64 + ahead - threshold as f64;
            let naive = if gap >= 0.0 { 1.0 } else { 0.0 };
            let n = history.arrivals.len().max(1) as f64;
            let s1 = history.arrivals.iter().map(|a| a.units as f64).sum::<f64>() / n;
            let s2 = history
                .arrivals
                .iter()
                .map(|a| (a.units * a.units) as f64)
                .sum::<f64>()
                / n;
            // A Poisson stream of the observed order sizes: variance mean·E[S²]/E[S].
            let sd = (ahead.max(0.0) * s2 / s1.max(1.0)).sqrt().max(1.0);
            let smoothed = standard_normal_cdf(gap / sd);
            for population in Population::ALL {
                let prior = match population {
                    Population::Repeat => prior.as_ref(),
                    Population::First => None,
                };
                let forecast = FillModel::fit(
                    &history,
                    OpenBatch { units, threshold },
                    c.at(now),
                    prior,
                    config,
                )
                .expect("simulated state is valid")
                .forecast();
                let by =
                    |t: Option<DateTime<Utc>>| t.map(|t| lock_at.is_some_and(|l| c.at(l) <= t));
                out.push(Scored {
                    population,
                    moment,
                    forecast: forecast.lock_probability,
                    naive,
                    smoothed,
                    locked: lock_at.is_some(),
                    locked_by: [
                        by(forecast.lock_by_p10),
                        by(forecast.lock_by_p50),
                        by(forecast.lock_by_p90),
                    ],
                });
            }
        }
    }
    out
}

#[derive(Serialize)]
struct Bucket {
    from: f64,
    to: f64,
    forecasts: usize,
    mean_forecast: f64,
    locked: f64,
}

#[derive(Serialize)]
struct Moment {
    /// Fraction of the campaign's length elapsed.
    at: f64,
    mean_forecast: f64,
    locked: f64,
    brier: f64,
    brier_naive: f64,
}

#[derive(Serialize)]
struct Report {
    process: &'static str,
    population: &'static str,
    forecasts: usize,
    lock_rate: f64,
    brier: f64,
    brier_naive: f64,
    brier_naive_smoothed: f64,
    calibration: Vec<Bucket>,
    by_moment: Vec<Moment>,
    /// Of the forecasts whose lock-by-10% / 50% / 90% moment exists, the share whose batch
    /// had locked by then (calibrated: 0.1, 0.5, 0.9), and how many there were.
    locked_by: [(f64, usize); 3],
    /// Largest |mean forecast - locked| over buckets with at least 100 forecasts.
    worst_gap: f64,
    meets_target: bool,
}

fn outcome(s: &Scored) -> f64 {
    if s.locked {
        1.0
    } else {
        0.0
    }
}

fn brier(s: &[&Scored], f: impl Fn(&Scored) -> f64) -> f64 {
    s.iter().map(|x| (f(x) - outcome(x)).powi(2)).sum::<f64>() / s.len().max(1) as f64
}

fn mean(s: &[&Scored], f: impl Fn(&Scored) -> f64) -> f64 {
    s.iter().map(|x| f(x)).sum::<f64>() / s.len().max(1) as f64
}

fn report(p: Process, population: Population, all: &[Scored], moments: &[f64]) -> Report {
    let scored: Vec<&Scored> = all.iter().filter(|s| s.population == population).collect();
    let calibration: Vec<Bucket> = (0..10)
        .map(|b| {
            let v: Vec<&Scored> = scored
                .iter()
                .copied()
                .filter(|s| ((s.forecast * 10.0) as usize).min(9) == b)
                .collect();
            Bucket {
                from: b as f64 / 10.0,
                to: (b + 1) as f64 / 10.0,
                forecasts: v.len(),
                mean_forecast: mean(&v, |s| s.forecast),
                locked: mean(&v, outcome),
            }
        })
        .collect();
    let worst_gap = calibration
        .iter()
        .filter(|b| b.forecasts >= 100)
        .map(|b| (b.mean_forecast - b.locked).abs())
        .fold(0.0, f64::max);
    let by_moment = moments
        .iter()
        .enumerate()
        .map(|(i, &at)| {
            let v: Vec<&Scored> = scored.iter().copied().filter(|s| s.moment == i).collect();
            Moment {
                at,
                mean_forecast: mean(&v, |s| s.forecast),
                locked: mean(&v, outcome),
                brier: brier(&v, |s| s.forecast),
                brier_naive: brier(&v, |s| s.naive),
            }
        })
        .collect();
    let locked_by = [0, 1, 2].map(|q| {
        let v: Vec<bool> = scored.iter().filter_map(|s| s.locked_by[q]).collect();
        let share = v.iter().filter(|&&b| b).count() as f64 / v.len().max(1) as f64;
        (share, v.len())
    });
    let b = brier(&scored, |s| s.forecast);
    let bn = brier(&scored, |s| s.naive);
    let bs = brier(&scored, |s| s.smoothed);
    Report {
        process: p.name(),
        population: population.name(),
        forecasts: scored.len(),
        lock_rate: mean(&scored, outcome),
        brier: b,
        brier_naive: bn,
        brier_naive_smoothed: bs,
        calibration,
        by_moment,
        locked_by,
        worst_gap,
        meets_target: b < bn && b < bs && worst_gap <= 0.10,
    }
}

impl Args {
    fn moments(&self) -> Vec<f64> {
        if self.moments.is_empty() {
            MOMENTS.to_vec()
        } else {
            self.moments.clone()
        }
    }
}

/// The most earlier campaigns a simulated merchant may have (`--max-past`).
const MAX_PAST: usize = 100;

fn main() {
    let args = Args::parse();
    let mut config = ForecastConfig::default();
    if let Some(h) = args.half_life {
        config.half_life_fraction = (h > 0.0).then_some(h);
    }
    if let Some(v) = args.trend_sd {
        config.trend_prior_sd = v;
    }
    if let Some(v) = args.trend_damping {
        config.trend_damping_fraction = v;
    }
    if let Some(v) = args.prior_shape {
        config.default_prior_shape = v;
    }
    if let Some(v) = args.robust_weight {
        config.robust_weight = v;
    }
    let moments = args.moments();
    if let Some(m) = moments.iter().find(|m| !(**m > 0.0 && **m < 1.0)) {
        eprintln!("--moments: {m} is not a fraction of the campaign strictly between 0 and 1");
        std::process::exit(2);
    }
    // A range the wrong way round ran `--min-past..=--min-past` without a word, and a
    // merchant with a million earlier campaigns ran for minutes building its prior.
    if args.min_past > args.max_past {
        eprintln!(
            "--min-past ({}) must not be more than --max-past ({})",
            args.min_past, args.max_past
        );
        std::process::exit(2);
    }
    if args.max_past > MAX_PAST {
        eprintln!(
            "--max-past must be at most {MAX_PAST}, got {}",
            args.max_past
        );
        std::process::exit(2);
    }
    let started = std::time::Instant::now();
    let reports: Vec<Report> = Process::ALL
        .iter()
        .enumerate()
        .filter(|(_, p)| args.only.is_empty() || args.only.iter().any(|o| o == p.name()))
        .flat_map(|(i, &p)| {
            // One stream per process, so each process's figures do not depend on the others.
            let mut rng =
                StdRng::seed_from_u64(args.seed.wrapping_mul(1000).wrapping_add(i as u64));
            let scored = run_process(&args, p, &mut rng, &config);
            Population::ALL.map(|population| report(p, population, &scored, &moments))
        })
        .collect();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("reports serialise")
        );
        return;
    }
    outln!(
        "bench_forecast: seed {}, {} campaigns per process{}, each forecast at {} moments, with a prior from {}..={} earlier campaigns of the merchant and again as a first campaign ({:.1} s)",
        args.seed,
        args.campaigns,
        if args.scale == 1 {
            String::new()
        } else {
            format!(", thresholds of {}..={} units", 50 * args.scale, 300 * args.scale)
        },
        moments.len(),
        args.min_past,
        args.max_past,
        started.elapsed().as_secs_f64()
    );
    outln!();
    outln!("| process    | population     | forecasts | locked | Brier  | naive  | naive smoothed | worst bucket gap | locked by p10/p50/p90 | target |");
    outln!("|------------|----------------|----------:|-------:|-------:|-------:|---------------:|-----------------:|-----------------------|--------|");
    for r in &reports {
        outln!(
            "| {:<10} | {:<14} | {:>9} | {:>6.3} | {:.4} | {:.4} | {:>14.4} | {:>16.3} | {:.2} / {:.2} / {:.2}    | {} |",
            r.process,
            r.population,
            r.forecasts,
            r.lock_rate,
            r.brier,
            r.brier_naive,
            r.brier_naive_smoothed,
            r.worst_gap,
            r.locked_by[0].0,
            r.locked_by[1].0,
            r.locked_by[2].0,
            if r.meets_target { "met" } else { "MISSED" }
        );
    }
    outln!();
    outln!("by moment of the forecast (fraction of the campaign elapsed): mean forecast / locked, Brier / naive Brier");
    out!("| process    | population     |");
    for m in &moments {
        out!(" {:>21} |", format!("at {m}"));
    }
    outln!();
    out!("|------------|----------------|");
    for _ in &moments {
        out!("-----------------------|");
    }
    outln!();
    for r in &reports {
        out!("| {:<10} | {:<14} |", r.process, r.population);
        for m in &r.by_moment {
            out!(
                " {:.2}/{:.2} {:.3}/{:.3} |",
                m.mean_forecast,
                m.locked,
                m.brier,
                m.brier_naive
            );
        }
        outln!();
    }
    for pair in reports.chunks(2) {
        outln!();
        outln!("calibration, {}:", pair[0].process);
        out!("| bucket    |");
        for r in pair {
            out!(" {:<14}: forecasts | mean  | locked |", r.population);
        }
        outln!();
        out!("|-----------|");
        for _ in pair {
            out!("--------------------------:|------:|-------:|");
        }
        outln!();
        for b in 0..10 {
            out!("| {:<9} |", format!("{}-{}%", b * 10, (b + 1) * 10));
            for r in pair {
                let c = &r.calibration[b];
                if c.forecasts == 0 {
                    out!(" {:>25} |     - |      - |", 0);
                } else {
                    out!(
                        " {:>25} | {:.3} | {:>6.3} |",
                        c.forecasts,
                        c.mean_forecast,
                        c.locked
                    );
                }
            }
            outln!();
        }
    }
}
