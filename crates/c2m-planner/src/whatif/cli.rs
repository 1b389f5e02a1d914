//! The `what_if` example's command line. The binary supplies an [`Env`]
//! that reads and writes files and draws the progress bar; tests supply
//! their own and run exactly what the binary runs.

use super::advice::{self, AdviceSpec};
use super::overlay::{apply_all, Overlay};
use super::sweep::{self, Quantity, SweepSpec};
use super::{chart, compare, default_options, scan_options, tools};
use crate::{Scenario, SolveOptions};

/// What the command line needs from the outside world.
pub trait Env {
    fn read(&mut self, path: &str) -> Result<String, String>;
    fn write(&mut self, path: &str, contents: &[u8]) -> Result<(), String>;
    /// Whether two paths name one file (an output about to be written over an input).
    /// By their text here; a real file system also sees `./k.toml` and `k.toml`, links
    /// and other spellings of one file.
    fn same_file(&mut self, a: &str, b: &str) -> bool {
        a == b
    }
    /// Called as work proceeds: `done` of `total` plans solved.
    fn progress(&mut self, done: usize, total: usize);
}

/// What to print and the exit status.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub stdout: String,
    pub code: u8,
}

/// Exit status of a `compare`, `sweep` or `advise` whose output is complete but for points
/// the planner found no plan for (each reported with its reason), or volumes an advice's
/// `--scan-limit` did not reach: a script that reads only the status must not take a
/// partial answer for a whole one. Infeasible points are
/// answers, and exit 0.
pub const EXIT_NO_PLAN: u8 = 3;

/// `EXIT_NO_PLAN` when `any` point had no plan, else 0.
fn code_for(any_no_plan: bool) -> u8 {
    if any_no_plan {
        EXIT_NO_PLAN
    } else {
        0
    }
}

pub const USAGE: &str = "\
usage:
  what_if compare BASE OVERLAY [--json|--csv] [--time-limit 60]
  what_if sweep BASE --demand SKU --from N --to N [--points 50] [--svg FILE] [--csv|--json] [--time-limit 5]
  what_if sweep BASE --price SUPPLIER:MATERIAL --sku SKU --from -20% --to +20% [--points 50] [--svg FILE] [--csv|--json] [--time-limit 5]
  what_if sweep BASE --lead-time SUPPLIER [--sku SKU] --from 0 --to 35 [--points DAYS+1] [--svg FILE] [--csv|--json] [--time-limit 5]
  what_if advise BASE --sku SKU --price P --deposit D --margin 0.2 [--max 5000] [--step 50] [--json] [--time-limit 5] [--scan-limit 60]
  what_if scenario validate FILE
  what_if scenario summary FILE
  what_if scenario convert IN OUT        (.json or .toml by extension)
money (--price, --deposit) in major units of the scenario's currency;
--time-limit: seconds per plan (sweep and advise solve many plans, one per core at a time);
--scan-limit: seconds for the whole advice; volumes not reached by then are listed (exit 3);
a scenario with a [horizon] (version 2) is compared, swept and advised the same way, with its lateness;
--lead-time sweeps a supplier's lead time in whole days (--points defaults to one per day, at most 50)";

/// The solve options with `--time-limit` applied.
fn with_time_limit(flags: &Flags, mut opts: SolveOptions) -> Result<SolveOptions, String> {
    if let Some(t) = flags.num("--time-limit")? {
        if t <= 0.0 || t > 86_400.0 {
            return Err(format!(
                "--time-limit: {t} is not a number of seconds in (0, 86400]"
            ));
        }
        opts.time_limit = std::time::Duration::from_secs_f64(t);
    }
    Ok(opts)
}

fn load(env: &mut dyn Env, path: &str) -> Result<Scenario, String> {
    let text = env.read(path)?;
    tools::read_valid(path, &text).map_err(|e| format!("{path}: invalid scenario:\n{e}"))
}

/// Options after the positional arguments, as `--name value` or flags.
struct Flags(Vec<String>);

impl Flags {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| a == name)
    }
    fn get(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.iter().position(|a| a == name) {
            Some(i) => self
                .0
                .get(i + 1)
                .cloned()
                .map(Some)
                .ok_or_else(|| format!("{name} needs a value")),
            None => Ok(None),
        }
    }
    fn need(&self, name: &str) -> Result<String, String> {
        self.get(name)?.ok_or_else(|| format!("{name} is required"))
    }
    /// A whole number (`1e6` and `5_000` are), refused when it has a fraction or does
    /// not fit.
    fn whole(&self, name: &str) -> Result<Option<i64>, String> {
        match self.num(name)? {
            None => Ok(None),
            Some(x) if x.fract() != 0.0 || x.abs() >= 9.0e18 => Err(format!(
                "{name}: `{}` is not a whole number",
                super::shown(x)
            )),
            Some(x) => Ok(Some(x as i64)),
        }
    }
    fn num(&self, name: &str) -> Result<Option<f64>, String> {
        self.get(name)?
            .map(|v| parse_num(&v).map_err(|e| format!("{name}: {e}")))
            .transpose()
    }
    /// Rejects options not in `known` (flags and valued options), and an option given
    /// twice: only the first would be read, and `--demand a --demand b` would sweep `a`
    /// alone without a word.
    fn check(&self, flags: &[&str], valued: &[&str]) -> Result<(), String> {
        let mut i = 0;
        let mut seen: Vec<&str> = Vec::new();
        while i < self.0.len() {
            let a = self.0[i].as_str();
            if (valued.contains(&a) || flags.contains(&a)) && seen.contains(&a) {
                return Err(format!("{a} is given twice: give it once"));
            }
            seen.push(a);
            if valued.contains(&a) {
                i += 2;
            } else if flags.contains(&a) {
                i += 1;
            } else {
                return Err(format!("unexpected argument `{a}`\n{USAGE}"));
            }
        }
        Ok(())
    }
}

/// A number, or a percentage (`-20%` is -0.2).
fn parse_num(v: &str) -> Result<f64, String> {
    let t = v.trim();
    let (t, scale) = match t.strip_suffix('%') {
        Some(t) => (t, 0.01),
        None => (t, 1.0),
    };
    let x: f64 = t
        .trim_start_matches('+')
        .replace('_', "")
        .parse()
        .map_err(|_| format!("`{v}` is not a number"))?;
    if !x.is_finite() {
        return Err(format!("`{v}` is not a finite number"));
    }
    Ok(x * scale)
}

/// Runs one command. Errors are messages for standard error (exit 1).
pub fn run(args: &[String], env: &mut dyn Env) -> Result<Output, String> {
    let (cmd, rest) = args.split_first().ok_or_else(|| USAGE.to_string())?;
    let positional: Vec<&String> = rest.iter().take_while(|a| !a.starts_with("--")).collect();
    let flags = Flags(rest[positional.len()..].to_vec());
    let ok = |stdout: String| Ok(Output { stdout, code: 0 });
    match cmd.as_str() {
        "compare" => {
            flags.check(&["--json", "--csv"], &["--time-limit"])?;
            // As sweep: `--json --csv` printed JSON without a word.
            if flags.has("--csv") && flags.has("--json") {
                return Err("give one of --csv or --json".into());
            }
            let [base, overlay] = positional[..] else {
                return Err(format!("compare needs BASE and OVERLAY\n{USAGE}"));
            };
            let base_s = load(env, base)?;
            let text = env.read(overlay)?;
            let ov = Overlay::from_str_with_name(overlay, &text)
                .map_err(|e| format!("{overlay}: {e}"))?;
            let applied = apply_all(&base_s, &ov).map_err(|e| format!("{overlay}: {e}"))?;
            let variants: Vec<(String, Scenario)> = ov
                .variants
                .iter()
                .map(|v| v.name.clone())
                .zip(applied)
                .collect();
            let opts = with_time_limit(&flags, default_options())?;
            let c = compare::compare(&base_s, &variants, &opts)?;
            Ok(Output {
                stdout: if flags.has("--json") {
                    compare::render_json(&c) + "\n"
                } else if flags.has("--csv") {
                    compare::render_csv(&c)
                } else {
                    compare::render_text(&c)
                },
                code: code_for(c.columns.iter().any(|col| col.has_no_plan())),
            })
        }
        "sweep" => {
            flags.check(
                &["--csv", "--json"],
                &[
                    "--demand",
                    "--price",
                    "--lead-time",
                    "--sku",
                    "--from",
                    "--to",
                    "--points",
                    "--svg",
                    "--png",
                    "--time-limit",
                ],
            )?;
            let [base] = positional[..] else {
                return Err(format!("sweep needs BASE\n{USAGE}"));
            };
            if flags.get("--png")?.is_some() {
                return Err(
                    "--png is not supported: write --svg and convert it (e.g. with rsvg-convert)"
                        .into(),
                );
            }
            if flags.has("--csv") && flags.has("--json") {
                return Err("give one of --csv or --json".into());
            }
            if let Some(svg) = flags.get("--svg")?.filter(|svg| env.same_file(svg, base)) {
                return Err(format!(
                    "--svg {svg} would write the chart over the scenario {base}: give another \
                     file"
                ));
            }
            let base_s = load(env, base)?;
            // The sku whose cost per unit is reported: --sku, else the first.
            let sku_or_first = || -> Result<String, String> {
                match flags.get("--sku")? {
                    Some(s) => Ok(s),
                    None => base_s
                        .products
                        .first()
                        .map(|p| p.sku.clone())
                        .ok_or_else(|| "the scenario has no products".to_string()),
                }
            };
            let (quantity, sku) = match (
                flags.get("--demand")?,
                flags.get("--price")?,
                flags.get("--lead-time")?,
            ) {
                (Some(sku), None, None) => {
                    // The sku reported is the one swept; a --sku here was read by nothing,
                    // and the table answered for another sku than the one asked for.
                    if flags.get("--sku")?.is_some() {
                        return Err("--sku is not for a demand sweep: it reports the cost \
                                    per unit of the sku whose demand it sweeps (--demand SKU)"
                            .into());
                    }
                    (Quantity::Demand { sku: sku.clone() }, sku)
                }
                (None, Some(p), None) => {
                    let (s, m) = p.split_once(':').ok_or("--price takes SUPPLIER:MATERIAL")?;
                    (
                        Quantity::Price {
                            supplier: s.to_string(),
                            material: m.to_string(),
                        },
                        sku_or_first()?,
                    )
                }
                (None, None, Some(supplier)) => {
                    if !base_s.suppliers.iter().any(|s| s.id == supplier) {
                        let known: Vec<&str> =
                            base_s.suppliers.iter().map(|s| s.id.as_str()).collect();
                        return Err(format!(
                            "--lead-time: unknown supplier \"{supplier}\" (known: {})",
                            known.join(", ")
                        ));
                    }
                    (Quantity::LeadTime { supplier }, sku_or_first()?)
                }
                _ => {
                    return Err("give one of --demand SKU, --price SUPPLIER:MATERIAL or \
                                --lead-time SUPPLIER"
                        .into())
                }
            };
            let from = flags.num("--from")?.ok_or("--from is required")?;
            let to = flags.num("--to")?.ok_or("--to is required")?;
            let default_points = match quantity {
                // One point per whole day, at most 50.
                // Capped before the conversion: `--to 1e300` saturates a usize, and one
                // more overflowed (a panic in a debug build, 0 points in a release one).
                // At least two: `--from 0.2 --to 0.4` gave one point, refused as if the
                // user had asked for it.
                Quantity::LeadTime { .. } => {
                    (to - from).abs().round().clamp(1.0, 49.0) as usize + 1
                }
                _ => 50,
            };
            let points = match flags.whole("--points")? {
                None => default_points,
                Some(p) => usize::try_from(p).map_err(|_| {
                    format!("a sweep takes 2 to {} points, got {p}", sweep::MAX_POINTS)
                })?,
            };
            let spec = SweepSpec {
                quantity,
                from,
                to,
                points,
                sku,
            };
            // The option that is negative is named (`--to` is above `--from`, so it is
            // negative only when both are).
            // Demands and lead times are whole numbers, not negative, as in a file
            // (`lead_days = 5.5` is refused): a sweep from 0.5 days was rounded to 1
            // without a word. The option that is wrong is named (`--to` is above `--from`,
            // so it is negative only when both are).
            let counted = match spec.quantity {
                Quantity::Demand { .. } => Some(("a demand", "units for a demand sweep")),
                Quantity::LeadTime { .. } => Some(("a lead time", "days for a lead-time sweep")),
                _ => None,
            };
            if let Some((what, whole)) = counted {
                if spec.from < 0.0 || spec.to < 0.0 {
                    let (flag, v) = if spec.from < 0.0 {
                        ("--from", spec.from)
                    } else {
                        ("--to", spec.to)
                    };
                    return Err(format!("{flag}: {what} cannot be negative, got {v}"));
                }
                for (flag, x) in [("--from", spec.from), ("--to", spec.to)] {
                    if x.fract() != 0.0 {
                        return Err(format!(
                            "{flag} ({}) must be a whole number of {whole}",
                            super::shown(x)
                        ));
                    }
                }
                // Named here: `--to 1e20` was refused at the first point past it, as that
                // point's scenario, with the demand saturated to 9223372036854775807.
                if matches!(spec.quantity, Quantity::Demand { .. })
                    && spec.to > crate::validate::MAX_UNITS as f64
                {
                    return Err(format!(
                        "--to: a demand must be at most {} (the largest the planner takes), \
                         got {}",
                        crate::validate::MAX_UNITS,
                        super::shown(spec.to)
                    ));
                }
            }
            let opts = with_time_limit(&flags, scan_options())?;
            let s = sweep::run_sweep(&base_s, &spec, &opts, &mut |d, t| env.progress(d, t))?;
            if let Some(path) = flags.get("--svg")? {
                env.write(&path, chart::render_svg(&s).as_bytes())?;
            }
            Ok(Output {
                stdout: if flags.has("--csv") {
                    sweep::render_csv(&s)
                } else if flags.has("--json") {
                    sweep::render_json(&s) + "\n"
                } else {
                    sweep::render_text(&s)
                },
                code: code_for(
                    s.points
                        .iter()
                        .any(|p| p.status == sweep::PointStatus::NoPlan),
                ),
            })
        }
        "advise" => {
            flags.check(
                &["--json"],
                &[
                    "--sku",
                    "--price",
                    "--deposit",
                    "--margin",
                    "--max",
                    "--step",
                    "--time-limit",
                    "--scan-limit",
                ],
            )?;
            let [base] = positional[..] else {
                return Err(format!("advise needs BASE\n{USAGE}"));
            };
            let base_s = load(env, base)?;
            let max = flags.whole("--max")?.unwrap_or(5000);
            // Major units of the scenario's currency to its minor units (2 digits for
            // CNY, none for JPY).
            let minor = 10f64.powi(crate::report::minor_digits(&base_s.currency) as i32);
            let spec = AdviceSpec {
                sku: flags.need("--sku")?,
                price: flags.num("--price")?.ok_or("--price is required")? * minor,
                deposit: flags.num("--deposit")?.unwrap_or(0.0) * minor,
                margin: flags.num("--margin")?.ok_or("--margin is required")?,
                max,
                step: flags.whole("--step")?.unwrap_or((max / 100).max(1)),
            };
            let opts = with_time_limit(&flags, scan_options())?;
            // The whole scan's bound, as the server's GetAdvice has its call's deadline:
            // without it a fine --step over a large --max plans for as long as it takes.
            let end = match flags.num("--scan-limit")? {
                Some(t) if t.is_finite() && t > 0.0 && t <= 86_400.0 => {
                    Some(std::time::Instant::now() + std::time::Duration::from_secs_f64(t))
                }
                Some(t) => {
                    return Err(format!(
                        "--scan-limit: {t} is not a number of seconds in (0, 86400]"
                    ))
                }
                None => None,
            };
            let a = advice::advise_by(&base_s, &spec, &opts, end, &mut |d, t| env.progress(d, t))?;
            Ok(Output {
                stdout: if flags.has("--json") {
                    serde_json::to_string_pretty(&a).expect("advice serializes") + "\n"
                } else {
                    advice::render_text(&a)
                },
                code: code_for(!a.no_plan.is_empty() || !a.not_reached.is_empty()),
            })
        }
        "scenario" => {
            flags.check(&[], &[])?;
            match positional.as_slice() {
                [sub, file] if sub.as_str() == "validate" => {
                    let s = load(env, file)?;
                    ok(format!(
                        "{file}: valid ({} products, {} materials, {} factories, {} suppliers)\n",
                        s.products.len(),
                        s.materials.len(),
                        s.factories.len(),
                        s.suppliers.len()
                    ))
                }
                [sub, file] if sub.as_str() == "summary" => ok(tools::summary(&load(env, file)?)),
                [sub, input, output] if sub.as_str() == "convert" => {
                    let lower = output.to_ascii_lowercase();
                    if !(lower.ends_with(".toml") || lower.ends_with(".json")) {
                        return Err(format!(
                            "convert: {output}: the output's extension picks the format, \
                             .toml or .json"
                        ));
                    }
                    if env.same_file(input, output) {
                        return Err(format!(
                            "convert: {output} would be written over its own input: give \
                             another file"
                        ));
                    }
                    let s = load(env, input)?;
                    let text = tools::convert(&s, output).map_err(|e| e.to_string())?;
                    env.write(output, text.as_bytes())?;
                    ok(format!("{input} -> {output}\n"))
                }
                _ => Err(format!(
                    "scenario validate|summary FILE, or convert IN OUT\n{USAGE}"
                )),
            }
        }
        "-h" | "--help" | "help" => ok(format!("{USAGE}\n")),
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}
