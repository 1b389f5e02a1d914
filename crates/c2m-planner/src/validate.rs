//! The rules a scenario must follow before it can be planned.
//!
//! A [`ValidatedScenario`] can only be built here, so the model code never
//! has to wonder whether an id resolves or a quantity is negative. All broken
//! rules are collected, not only the first, so that a person fixing a file by
//! hand sees every place at once.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::scenario::{FieldError, Line, Offer, Scenario, ScenarioError};

/// The largest demand, run or pack count accepted: the pure-Rust solver keeps
/// integer bounds in `i32`, and no real batch comes near this.
pub const MAX_UNITS: i64 = 1_000_000_000;

/// The largest quantity or amount of money (in minor units) a scenario may hold:
/// 10^15, ten trillion in major units, far above any real stock, price or capacity.
/// Finite is not enough: the model multiplies these (stock by its holding cost, a
/// quantity by its price), and 10^300 of stock at 10^300 a unit made an infinite
/// objective on which every solve failed.
pub const MAX_NUMBER: f64 = 1e15;

/// The most periods a horizon may have: ten years of weeks. The model grows
/// with the square of the periods in places; no planning cycle comes near.
pub const MAX_PERIODS: i64 = 520;

/// A scenario that has passed every rule, with its ids resolved to indices.
#[derive(Debug, Clone)]
pub struct ValidatedScenario {
    scenario: Scenario,
    /// Per product: `(material index, quantity per unit)`, materials with a
    /// positive quantity only.
    bom: Vec<Vec<(usize, f64)>>,
    lines: Vec<LineRef>,
    offers: Vec<OfferRef>,
    /// `T`: 1 for a version 1 scenario.
    periods: usize,
    /// Per product, units due by the end of each period (`T` entries; for
    /// version 1 the one entry is the demand).
    due: Vec<Vec<i64>>,
    /// Per material, quantities arriving at the start of each period.
    receipts: Vec<Vec<f64>>,
    /// Per factory, hours in each period.
    hours: Vec<Vec<f64>>,
}

/// A line `(p, f)` resolved to indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRef {
    pub product: usize,
    pub factory: usize,
    /// Index into `factories[factory].lines`.
    pub line: usize,
}

/// An offer `(s, m)` resolved to indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OfferRef {
    pub supplier: usize,
    /// Index into `suppliers[supplier].offers`.
    pub offer: usize,
    pub material: usize,
    /// False when the supplier's lead time exceeds the material deadline
    /// (version 1), or when no order can arrive within the horizon (version
    /// 2): the offer cannot be used at all.
    pub usable: bool,
    /// Version 2: `L_o = ceil(lead_days / period_days)`, the periods between
    /// an order and its arrival; 0 in version 1.
    pub lead_periods: usize,
}

impl ValidatedScenario {
    /// The scenario as written.
    pub fn scenario(&self) -> &Scenario {
        &self.scenario
    }

    /// All lines, in file order (factory by factory).
    pub fn lines(&self) -> &[LineRef] {
        &self.lines
    }

    /// All offers in file order, usable or not.
    pub fn offers(&self) -> &[OfferRef] {
        &self.offers
    }

    /// The data of a line.
    pub fn line(&self, l: LineRef) -> &Line {
        &self.scenario.factories[l.factory].lines[l.line]
    }

    /// The data of an offer.
    pub fn offer(&self, o: OfferRef) -> &Offer {
        &self.scenario.suppliers[o.supplier].offers[o.offer]
    }

    /// Bill of materials of product `p` as `(material index, quantity per unit)`.
    pub fn bom(&self, p: usize) -> &[(usize, f64)] {
        &self.bom[p]
    }

    /// Index of a product by sku.
    pub fn product_index(&self, sku: &str) -> Option<usize> {
        self.scenario.products.iter().position(|p| p.sku == sku)
    }

    /// Index of a material by id.
    pub fn material_index(&self, id: &str) -> Option<usize> {
        self.scenario.materials.iter().position(|m| m.id == id)
    }

    /// Index of a factory by id.
    pub fn factory_index(&self, id: &str) -> Option<usize> {
        self.scenario.factories.iter().position(|f| f.id == id)
    }

    /// Index of a supplier by id.
    pub fn supplier_index(&self, id: &str) -> Option<usize> {
        self.scenario.suppliers.iter().position(|s| s.id == id)
    }

    /// True for a time-phased (version 2) scenario, one with a horizon.
    pub fn is_timed(&self) -> bool {
        self.scenario.horizon.is_some()
    }

    /// `T`, the number of periods; 1 for a version 1 scenario.
    pub fn periods(&self) -> usize {
        self.periods
    }

    /// Units of product `p` due by the end of each period (`T` entries; the
    /// demand for version 1).
    pub fn due(&self, p: usize) -> &[i64] {
        &self.due[p]
    }

    /// Total units of product `p` due over the horizon (the demand for version 1).
    pub fn total_due(&self, p: usize) -> i64 {
        self.due[p].iter().sum()
    }

    /// Quantity of material `m` arriving at the start of each period from
    /// orders placed before the cycle (`T` entries; zero for version 1).
    pub fn receipts(&self, m: usize) -> &[f64] {
        &self.receipts[m]
    }

    /// Hours of factory `f` in each period (`T` entries).
    pub fn hours(&self, f: usize) -> &[f64] {
        &self.hours[f]
    }

    /// The last period in which an order from offer `o` may be placed
    /// (`T - 1 - L_o`), or `None` when none can arrive within the horizon.
    pub fn last_order_period(&self, o: OfferRef) -> Option<usize> {
        (self.periods > o.lead_periods).then(|| self.periods - 1 - o.lead_periods)
    }

    /// Gives the scenario back, for example to edit it and validate again.
    pub fn into_inner(self) -> Scenario {
        self.scenario
    }
}

impl TryFrom<Scenario> for ValidatedScenario {
    type Error = ScenarioError;
    fn try_from(s: Scenario) -> Result<Self, Self::Error> {
        s.validate()
    }
}

impl Scenario {
    /// The rules of [`Scenario::validate`] a part of a scenario must keep on its own: the
    /// horizon and the factories' capacity (one number, or a calendar of one number per
    /// period of the horizon); the ids (none empty, none twice in one list: products,
    /// materials, factories, suppliers, a factory's lines, a supplier's offers); and each
    /// product's demand, `due` and `late_cost` and each material's `receipts`. For a caller that keeps a scenario's catalogue, which it
    /// checks on its own once merged (the server's `ImportScenario`): an id given twice in
    /// the file merged into one entry there, the last silently winning, and a due period
    /// outside the horizon or a NaN late cost were taken because the catalogue does not
    /// keep them. Rules across entries (a line naming an unknown product) are not checked.
    pub fn validate_catalogue_part(&self) -> Result<(), ScenarioError> {
        let mut c = Checker { errors: Vec::new() };
        let horizon = horizon_rules(&mut c, self);
        for fi in 0..self.factories.len() {
            calendar_rules(&mut c, self, fi, horizon);
        }
        let timed = self.horizon.is_some();
        let mut seen = HashMap::new();
        for (i, p) in self.products.iter().enumerate() {
            c.id(&mut seen, format!("products[{i}].sku"), "sku", &p.sku);
            demand_rules(&mut c, i, p, timed, horizon);
        }
        let mut seen = HashMap::new();
        for (i, m) in self.materials.iter().enumerate() {
            c.id(
                &mut seen,
                format!("materials[{i}].id"),
                "material id",
                &m.id,
            );
            receipt_rules(&mut c, i, m, timed, horizon);
        }
        let mut seen = HashMap::new();
        for (fi, f) in self.factories.iter().enumerate() {
            c.id(
                &mut seen,
                format!("factories[{fi}].id"),
                "factory id",
                &f.id,
            );
            let mut skus = HashSet::new();
            for (li, l) in f.lines.iter().enumerate() {
                if !skus.insert(l.sku.as_str()) {
                    c.err(
                        format!("factories[{fi}].lines[{li}].sku"),
                        format!("duplicate line for `{}` in factory `{}`", l.sku, f.id),
                    );
                }
            }
        }
        let mut seen = HashMap::new();
        for (si, sup) in self.suppliers.iter().enumerate() {
            c.id(
                &mut seen,
                format!("suppliers[{si}].id"),
                "supplier id",
                &sup.id,
            );
            let mut materials = HashSet::new();
            for (oi, o) in sup.offers.iter().enumerate() {
                if !materials.insert(o.material.as_str()) {
                    c.err(
                        format!("suppliers[{si}].offers[{oi}].material"),
                        format!(
                            "duplicate offer for `{}` from supplier `{}`",
                            o.material, sup.id
                        ),
                    );
                }
            }
        }
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(ScenarioError::Invalid(c.errors))
        }
    }
}

/// The horizon's rules: `(T, D)` when the scenario has a horizon and it is valid.
fn horizon_rules(c: &mut Checker, s: &Scenario) -> Option<(usize, i64)> {
    s.horizon.and_then(|h| {
        let mut ok = true;
        if h.periods < 1 || h.periods > MAX_PERIODS {
            c.err(
                "horizon.periods".into(),
                format!("must be between 1 and {MAX_PERIODS}, got {}", h.periods),
            );
            ok = false;
        }
        if h.period_days < 1 {
            c.err(
                "horizon.period_days".into(),
                format!("must be at least 1, got {}", h.period_days),
            );
            ok = false;
        }
        ok.then_some((h.periods as usize, h.period_days))
    })
}

/// The rules of factory `fi`'s capacity, given the valid horizon (`None` for a version 1
/// scenario, or a horizon that broke its rules), and its hours per period: one number,
/// not negative, or with a horizon a calendar of one such number per period.
fn calendar_rules(
    c: &mut Checker,
    s: &Scenario,
    fi: usize,
    horizon: Option<(usize, i64)>,
) -> Vec<f64> {
    let f = &s.factories[fi];
    let periods = horizon.map_or(1, |(t, _)| t);
    match &f.calendar {
        None => {
            c.non_negative(
                || format!("factories[{fi}].capacity_hours"),
                f.capacity_hours,
            );
            vec![f.capacity_hours; periods]
        }
        Some(cal) => {
            if s.horizon.is_none() {
                c.err(
                    format!("factories[{fi}].capacity_hours"),
                    "a list of hours per period needs a [horizon]",
                );
            } else if cal.len() != periods && horizon.is_some() {
                c.err(
                    format!("factories[{fi}].capacity_hours"),
                    format!(
                        "a calendar needs one number per period: {periods} periods, got {}",
                        cal.len()
                    ),
                );
            }
            for (t, &h) in cal.iter().enumerate() {
                c.non_negative(|| format!("factories[{fi}].capacity_hours[{t}]"), h);
            }
            let mut row = cal.clone();
            row.resize(periods, 0.0);
            row
        }
    }
}

struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn err(&mut self, path: String, message: impl Into<String>) {
        self.errors.push(FieldError {
            path,
            message: message.into(),
        });
    }

    /// A quantity or amount of money: finite, not negative, at most [`MAX_NUMBER`].
    fn non_negative(&mut self, path: impl FnOnce() -> String, v: f64) {
        if !v.is_finite() {
            self.err(path(), format!("must be a finite number, got {v}"));
        } else if v < 0.0 {
            self.err(path(), format!("must not be negative, got {v}"));
        } else if v > MAX_NUMBER {
            self.err(path(), format!("must be at most {MAX_NUMBER:e}, got {v:e}"));
        }
    }

    fn units(&mut self, path: impl FnOnce() -> String, v: i64) {
        if v < 0 {
            self.err(path(), format!("must not be negative, got {v}"));
        } else if v > MAX_UNITS {
            self.err(path(), format!("must be at most {MAX_UNITS}, got {v}"));
        }
    }

    fn id(&mut self, seen: &mut HashMap<String, usize>, path: String, what: &str, id: &str) {
        if id.trim().is_empty() {
            self.err(path, format!("{what} must not be empty"));
        } else if let Some(first) = seen.get(id) {
            self.err(
                path,
                format!("duplicate {what} `{id}` (first used at index {first})"),
            );
        } else {
            seen.insert(id.to_string(), seen.len());
        }
    }
}

impl Scenario {
    /// Checks every rule of the contract and resolves ids.
    ///
    /// Errors name the field and its place, e.g.
    /// `suppliers[2].offers[0].breaks[1].min_qty: price breaks must be sorted by min_qty`.
    pub fn validate(self) -> Result<ValidatedScenario, ScenarioError> {
        let mut c = Checker { errors: Vec::new() };
        let s = &self;

        let cur = &s.currency;
        if cur.len() != 3 || !cur.chars().all(|ch| ch.is_ascii_uppercase()) {
            c.err(
                "currency".into(),
                format!("must be an ISO 4217 code of three capital letters, got `{cur}`"),
            );
        }
        if let Some(d) = s.material_deadline_days {
            if d < 0 {
                c.err(
                    "material_deadline_days".into(),
                    format!("must not be negative, got {d}"),
                );
            }
            if s.horizon.is_some() {
                c.err(
                    "material_deadline_days".into(),
                    "does not exist in a scenario with a horizon: lead times are planned \
                     period by period instead",
                );
            }
        }
        // `T` and `D` when the horizon is valid; the per-period rules below
        // are checked only then.
        let horizon = horizon_rules(&mut c, s);
        let periods = horizon.map_or(1, |(t, _)| t);
        let timed = s.horizon.is_some();

        let mut material_ids = HashMap::new();
        let mut receipts = Vec::with_capacity(s.materials.len());
        for (i, m) in s.materials.iter().enumerate() {
            c.id(
                &mut material_ids,
                format!("materials[{i}].id"),
                "material id",
                &m.id,
            );
            c.non_negative(|| format!("materials[{i}].on_hand"), m.on_hand);
            c.non_negative(|| format!("materials[{i}].holding_cost"), m.holding_cost);
            receipts.push(receipt_rules(&mut c, i, m, timed, horizon));
        }
        let material_index: HashMap<&str, usize> = s
            .materials
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id.as_str(), i))
            .rev()
            .collect();

        let mut skus = HashMap::new();
        let mut bom = Vec::with_capacity(s.products.len());
        let mut due = Vec::with_capacity(s.products.len());
        for (i, p) in s.products.iter().enumerate() {
            c.id(&mut skus, format!("products[{i}].sku"), "sku", &p.sku);
            due.push(demand_rules(&mut c, i, p, timed, horizon));
            let mut row = Vec::new();
            for (mid, &qty) in &p.bom {
                let path = || format!("products[{i}].bom.{mid}");
                c.non_negative(path, qty);
                match material_index.get(mid.as_str()) {
                    None => c.err(path(), format!("unknown material `{mid}`")),
                    Some(&m) if qty > 0.0 && qty.is_finite() => row.push((m, qty)),
                    Some(_) => {}
                }
            }
            bom.push(row);
        }
        let product_index: HashMap<&str, usize> = s
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| (p.sku.as_str(), i))
            .rev()
            .collect();

        let mut factory_ids = HashMap::new();
        let mut lines = Vec::new();
        let mut hours = Vec::with_capacity(s.factories.len());
        for (fi, f) in s.factories.iter().enumerate() {
            c.id(
                &mut factory_ids,
                format!("factories[{fi}].id"),
                "factory id",
                &f.id,
            );
            hours.push(calendar_rules(&mut c, s, fi, horizon));
            let mut line_skus = HashSet::new();
            for (li, l) in f.lines.iter().enumerate() {
                let at = |field: &str| format!("factories[{fi}].lines[{li}].{field}");
                c.non_negative(|| at("unit_cost"), l.unit_cost);
                c.non_negative(|| at("setup_cost"), l.setup_cost);
                c.non_negative(|| at("hours_per_unit"), l.hours_per_unit);
                c.non_negative(|| at("setup_hours"), l.setup_hours);
                c.units(|| at("min_run"), l.min_run);
                if !line_skus.insert(l.sku.as_str()) {
                    c.err(
                        at("sku"),
                        format!("duplicate line for `{}` in factory `{}`", l.sku, f.id),
                    );
                    continue;
                }
                match product_index.get(l.sku.as_str()) {
                    None => c.err(at("sku"), format!("unknown product `{}`", l.sku)),
                    Some(&p) => lines.push(LineRef {
                        product: p,
                        factory: fi,
                        line: li,
                    }),
                }
            }
        }

        let mut supplier_ids = HashMap::new();
        let mut offers = Vec::new();
        for (si, sup) in s.suppliers.iter().enumerate() {
            c.id(
                &mut supplier_ids,
                format!("suppliers[{si}].id"),
                "supplier id",
                &sup.id,
            );
            if sup.lead_days < 0 {
                c.err(
                    format!("suppliers[{si}].lead_days"),
                    format!("must not be negative, got {}", sup.lead_days),
                );
            }
            let lead_periods = match horizon {
                Some((_, d)) if sup.lead_days > 0 => {
                    usize::try_from(sup.lead_days.saturating_add(d - 1) / d).unwrap_or(usize::MAX)
                }
                _ => 0,
            };
            let usable = if timed {
                lead_periods < periods
            } else {
                s.material_deadline_days
                    .is_none_or(|deadline| sup.lead_days <= deadline)
            };
            let mut offer_materials = HashSet::new();
            for (oi, o) in sup.offers.iter().enumerate() {
                let at = |field: &str| format!("suppliers[{si}].offers[{oi}].{field}");
                c.non_negative(|| at("moq"), o.moq);
                c.non_negative(|| at("order_cost"), o.order_cost);
                if let Some(p) = o.pack_size {
                    c.non_negative(|| at("pack_size"), p);
                    // A `max_qty` that is not a finite number is refused on its own; it
                    // said "pack_size: too small" first, of a pack size that was fine.
                    let max = o.max_qty.filter(|m| m.is_finite()).unwrap_or(0.0);
                    if p > 0.0 && p.is_finite() && (max / p) > MAX_UNITS as f64 {
                        c.err(at("pack_size"), "too small for the quantities offered");
                    }
                }
                if let Some(q) = o.max_qty {
                    c.non_negative(|| at("max_qty"), q);
                }
                if o.breaks.is_empty() {
                    c.err(at("breaks"), "an offer needs at least one price break");
                }
                for (bi, b) in o.breaks.iter().enumerate() {
                    let bat =
                        |field: &str| format!("suppliers[{si}].offers[{oi}].breaks[{bi}].{field}");
                    c.non_negative(|| bat("min_qty"), b.min_qty);
                    c.non_negative(|| bat("unit_price"), b.unit_price);
                    if bi > 0 {
                        let prev = o.breaks[bi - 1].min_qty;
                        if b.min_qty == prev {
                            c.err(
                                bat("min_qty"),
                                format!("duplicate price break at min_qty {}", b.min_qty),
                            );
                        } else if b.min_qty < prev {
                            c.err(
                                bat("min_qty"),
                                format!(
                                    "price breaks must be sorted by min_qty: {} comes after {prev}",
                                    b.min_qty
                                ),
                            );
                        }
                    }
                }
                if !offer_materials.insert(o.material.as_str()) {
                    c.err(
                        at("material"),
                        format!(
                            "duplicate offer for `{}` from supplier `{}`",
                            o.material, sup.id
                        ),
                    );
                    continue;
                }
                match material_index.get(o.material.as_str()) {
                    None => c.err(at("material"), format!("unknown material `{}`", o.material)),
                    Some(&m) => offers.push(OfferRef {
                        supplier: si,
                        offer: oi,
                        material: m,
                        usable,
                        lead_periods,
                    }),
                }
            }
        }

        if c.errors.is_empty() {
            Ok(ValidatedScenario {
                scenario: self,
                bom,
                lines,
                offers,
                periods,
                due,
                receipts,
                hours,
            })
        } else {
            Err(ScenarioError::Invalid(c.errors))
        }
    }
}

/// The `due` list of a version 2 product: periods inside the horizon, each
/// at most once, whole units not negative. Returns the units due per period.
/// A period index of a v2 list: inside the horizon (`None`, with the error, when not; and
/// when the horizon is missing or broke its own rules, already reported).
fn in_horizon(
    c: &mut Checker,
    horizon: Option<(usize, i64)>,
    path: String,
    t: i64,
) -> Option<usize> {
    let (n, _) = horizon?;
    if t < 0 || t >= n as i64 {
        c.err(
            path,
            format!("period {t} is outside the horizon (periods 0 to {})", n - 1),
        );
        None
    } else {
        Some(t as usize)
    }
}

/// A material's `receipts`: only with a horizon, each inside it, quantities not negative.
/// Returns what arrives per period.
fn receipt_rules(
    c: &mut Checker,
    i: usize,
    m: &crate::scenario::Material,
    timed: bool,
    horizon: Option<(usize, i64)>,
) -> Vec<f64> {
    let mut arriving = vec![0.0; horizon.map_or(1, |(t, _)| t)];
    if !timed && !m.receipts.is_empty() {
        c.err(
            format!("materials[{i}].receipts"),
            "receipts arrive in periods: they need a [horizon]",
        );
    }
    for (j, r) in m.receipts.iter().enumerate() {
        let at = |field: &str| format!("materials[{i}].receipts[{j}].{field}");
        c.non_negative(|| at("quantity"), r.quantity);
        if let Some(t) = in_horizon(c, horizon, at("period"), r.period) {
            if r.quantity.is_finite() && r.quantity > 0.0 {
                arriving[t] += r.quantity;
            }
        }
    }
    arriving
}

/// A product's demand: `due` per period and `late_cost` with a horizon, `demand` without
/// one. Returns the units due per period.
fn demand_rules(
    c: &mut Checker,
    i: usize,
    p: &crate::scenario::Product,
    timed: bool,
    horizon: Option<(usize, i64)>,
) -> Vec<i64> {
    if timed {
        return self_check_due(c, i, p, horizon);
    }
    c.units(|| format!("products[{i}].demand"), p.demand);
    if !p.due.is_empty() {
        c.err(
            format!("products[{i}].due"),
            "due quantities per period need a [horizon]; without one, give `demand`",
        );
    }
    if p.late_cost.is_some() {
        c.err(
            format!("products[{i}].late_cost"),
            "lateness is counted in periods: it needs a [horizon]",
        );
    }
    vec![p.demand.max(0)]
}

fn self_check_due(
    c: &mut Checker,
    i: usize,
    p: &crate::scenario::Product,
    horizon: Option<(usize, i64)>,
) -> Vec<i64> {
    let periods = horizon.map_or(1, |(t, _)| t);
    let mut row = vec![0i64; periods];
    let mut first_at: HashMap<i64, usize> = HashMap::new();
    let mut total = 0i64;
    for (j, d) in p.due.iter().enumerate() {
        let at = |field: &str| format!("products[{i}].due[{j}].{field}");
        c.units(|| at("quantity"), d.quantity);
        if let Some(&first) = first_at.get(&d.period) {
            c.err(
                at("period"),
                format!(
                    "period {} is already due at products[{i}].due[{first}]: one entry per period",
                    d.period
                ),
            );
            continue;
        }
        first_at.insert(d.period, j);
        if let Some(t) = in_horizon(c, horizon, at("period"), d.period) {
            if (0..=MAX_UNITS).contains(&d.quantity) {
                row[t] = d.quantity;
                total += d.quantity;
            }
        }
    }
    if total > MAX_UNITS {
        c.err(
            format!("products[{i}].due"),
            format!("the total due must be at most {MAX_UNITS}, got {total}"),
        );
    }
    if let Some(l) = p.late_cost {
        c.non_negative(|| format!("products[{i}].late_cost"), l);
    }
    // `demand` is the total due in memory (see `Scenario`); a caller that
    // edited it without editing `due` would be ignored, so say so.
    if p.demand != p.total_due() {
        c.err(
            format!("products[{i}].demand"),
            format!(
                "a scenario with a horizon takes demand from `due` (total {}), not {}",
                p.total_due(),
                p.demand
            ),
        );
    }
    row
}

/// Per material, the offers that sell it (indices into
/// [`ValidatedScenario::offers`]); used by the greedy planner and the diagnosis.
pub(crate) fn offers_by_material(v: &ValidatedScenario) -> BTreeMap<usize, Vec<usize>> {
    let mut map: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (i, o) in v.offers().iter().enumerate() {
        map.entry(o.material).or_default().push(i);
    }
    map
}
