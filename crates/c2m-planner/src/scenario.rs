//! The scenario file: one planning cycle written down.
//!
//! The field names are a contract shared with tools outside the project
//! (`docs/scenario-format.md`), so every struct here denies unknown
//! fields and the optional fields carry the defaults the contract states.
//! Parsing only checks the shape; the rules (no negative quantities, known
//! ids, sorted breaks) live in [`crate::validate`].
//!
//! A scenario with a [`Horizon`] is time-phased (planning model version 2):
//! products give `due` quantities per period instead of one `demand`,
//! materials may have `receipts`, and a factory's `capacity_hours` may be a
//! calendar (a list of hours per period). The file is read through private
//! mirror types ([`ScenarioFile`]) because two of those differences are not
//! expressible field by field: `demand` is required without a horizon and
//! refused with one, and `capacity_hours` is a number or a list.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One planning cycle: what must be made, what is on hand, who can make it
/// and who sells the materials.
///
/// Read and written through [`ScenarioFile`], the file's own shape (see the
/// module docs); in memory a v2 product's `demand` is its total due, so code
/// that only needs totals reads both versions alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ScenarioFile", into = "ScenarioFile")]
pub struct Scenario {
    /// A name for people; shown in reports.
    pub name: String,
    /// ISO 4217 code; all money in the file is in its minor units.
    pub currency: String,
    /// Offers whose supplier needs longer than this cannot be used at all
    /// (version 1 only: with a horizon, lead times are planned instead).
    pub material_deadline_days: Option<i64>,
    /// Present: a time-phased scenario (planning model version 2).
    pub horizon: Option<Horizon>,
    pub products: Vec<Product>,
    pub materials: Vec<Material>,
    pub factories: Vec<Factory>,
    pub suppliers: Vec<Supplier>,
}

/// The planning horizon of a time-phased scenario: `periods` periods of
/// `period_days` days, period 0 starting when the cycle plans.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Horizon {
    /// `T`, at least 1.
    pub periods: i64,
    /// `D`, at least 1: a lead time of `L` days arrives `ceil(L / D)` periods
    /// after the order.
    pub period_days: i64,
}

/// A product with locked demand and its bill of materials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    /// Units that must be made (the locked batches); an integer. With a
    /// horizon the file gives `due` instead, and this is the total due
    /// (parsing and validation set it; it is not written out).
    pub demand: i64,
    /// Material id to quantity per unit of product.
    #[serde(default)]
    pub bom: BTreeMap<String, f64>,
    /// Version 2: units due by the end of each period, at most one entry per
    /// period (periods without an entry have nothing due).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub due: Vec<Due>,
    /// Version 2: money per unit per period late; absent means the product
    /// may never be late.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_cost: Option<f64>,
}

impl Product {
    /// A version 1 product: `demand` units, nothing due per period.
    pub fn with_demand(sku: impl Into<String>, demand: i64, bom: BTreeMap<String, f64>) -> Self {
        Product {
            sku: sku.into(),
            demand,
            bom,
            due: Vec::new(),
            late_cost: None,
        }
    }

    /// The sum of the `due` quantities (saturating; validation refuses
    /// totals past its limit).
    pub fn total_due(&self) -> i64 {
        self.due
            .iter()
            .fold(0i64, |acc, d| acc.saturating_add(d.quantity.max(0)))
    }
}

/// Units of a product due by the end of one period (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Due {
    /// In `0 .. T-1`.
    pub period: i64,
    /// Whole units, not negative.
    pub quantity: i64,
}

/// A material and the stock of it already owned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub id: String,
    /// Free text, only shown in reports.
    pub unit: String,
    /// Version 2: the stock at the start of period 0.
    pub on_hand: f64,
    /// Money per unit left over after the cycle: the anti-hoarding term.
    /// Version 2: per unit in stock at the end of each period.
    #[serde(default)]
    pub holding_cost: f64,
    /// Version 2: quantities already ordered, arriving at the start of a period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Receipt>,
}

/// A quantity of material already ordered that arrives at the start of a
/// period (version 2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// In `0 .. T-1`.
    pub period: i64,
    pub quantity: f64,
}

/// A factory with its hours and the lines that can make products there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "FactoryFile", into = "FactoryFile")]
pub struct Factory {
    pub id: String,
    /// Hours available (version 2: in every period, unless `calendar` is given).
    pub capacity_hours: f64,
    /// Version 2: hours in each period, one number per period. The file
    /// writes it as a list under `capacity_hours`; when it is given,
    /// `capacity_hours` is not used (parsing sets it to the largest entry).
    pub calendar: Option<Vec<f64>>,
    pub lines: Vec<Line>,
}

impl Factory {
    /// Hours available in period `t` (the calendar's entry, else `capacity_hours`).
    pub fn hours_in(&self, t: usize) -> f64 {
        match &self.calendar {
            Some(c) => c.get(t).copied().unwrap_or(0.0),
            None => self.capacity_hours,
        }
    }
}

/// The ability of one factory to make one product, and what it costs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub sku: String,
    pub unit_cost: f64,
    /// Paid once if the line runs at all.
    #[serde(default)]
    pub setup_cost: f64,
    /// Units the run must make at least, if it runs.
    #[serde(default)]
    pub min_run: i64,
    pub hours_per_unit: f64,
    /// Hours used once if the line runs.
    #[serde(default)]
    pub setup_hours: f64,
}

/// A supplier and the materials it offers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supplier {
    pub id: String,
    pub lead_days: i64,
    #[serde(default)]
    pub offers: Vec<Offer>,
}

/// What one supplier sells of one material, and at which prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offer {
    pub material: String,
    /// Minimum total quantity if ordered at all.
    #[serde(default)]
    pub moq: f64,
    /// Quantity must be a whole number of packs; absent or 0 means any quantity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_size: Option<f64>,
    /// Absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_qty: Option<f64>,
    /// Fixed money if ordered at all.
    #[serde(default)]
    pub order_cost: f64,
    /// All-units price breaks, sorted by `min_qty`.
    pub breaks: Vec<PriceBreak>,
}

impl Offer {
    /// The pack size if quantities must be whole packs (absent or 0 means not).
    pub fn pack(&self) -> Option<f64> {
        self.pack_size.filter(|&p| p > 0.0)
    }
}

/// An all-units price break: from `min_qty` on, every unit costs `unit_price`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceBreak {
    pub min_qty: f64,
    pub unit_price: f64,
}

/// The file's own shape of a scenario: what serde reads and writes. See the
/// module docs for why it differs from [`Scenario`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    name: String,
    currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    material_deadline_days: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    horizon: Option<Horizon>,
    #[serde(default)]
    products: Vec<ProductFile>,
    #[serde(default)]
    materials: Vec<Material>,
    #[serde(default)]
    factories: Vec<Factory>,
    #[serde(default)]
    suppliers: Vec<Supplier>,
}

/// A product as the file writes it: `demand` (version 1) or `due` (version 2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductFile {
    sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    demand: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    late_cost: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due: Option<Vec<Due>>,
    /// Required, as the contract marks only what may be left out: a file that lost its
    /// `[products.bom]` table was planned as needing no material, cheap and wrong. A
    /// product of nothing bought writes `bom = {}`.
    bom: BTreeMap<String, f64>,
}

impl TryFrom<ScenarioFile> for Scenario {
    type Error = FieldError;

    /// Resolves what the file leaves to the scenario as a whole: without a
    /// horizon each product needs `demand`, with one it must not have it.
    fn try_from(f: ScenarioFile) -> Result<Self, FieldError> {
        let timed = f.horizon.is_some();
        let mut products = Vec::with_capacity(f.products.len());
        for (i, p) in f.products.into_iter().enumerate() {
            let due = p.due.unwrap_or_default();
            let demand = match (timed, p.demand) {
                (false, Some(d)) => d,
                (false, None) => {
                    return Err(FieldError {
                        path: format!("products[{i}]"),
                        message: "missing field `demand`".into(),
                    })
                }
                (true, Some(_)) => {
                    return Err(FieldError {
                        path: format!("products[{i}].demand"),
                        message: "a scenario with a horizon gives `due` quantities per period \
                                  instead of `demand`"
                            .into(),
                    })
                }
                (true, None) => 0,
            };
            let mut product = Product {
                sku: p.sku,
                demand,
                bom: p.bom,
                due,
                late_cost: p.late_cost,
            };
            if timed {
                product.demand = product.total_due();
            }
            products.push(product);
        }
        Ok(Scenario {
            name: f.name,
            currency: f.currency,
            material_deadline_days: f.material_deadline_days,
            horizon: f.horizon,
            products,
            materials: f.materials,
            factories: f.factories,
            suppliers: f.suppliers,
        })
    }
}

impl From<Scenario> for ScenarioFile {
    fn from(s: Scenario) -> Self {
        let timed = s.horizon.is_some();
        ScenarioFile {
            name: s.name,
            currency: s.currency,
            material_deadline_days: s.material_deadline_days,
            horizon: s.horizon,
            products: s
                .products
                .into_iter()
                .map(|p| ProductFile {
                    sku: p.sku,
                    demand: (!timed).then_some(p.demand),
                    late_cost: p.late_cost,
                    due: (timed || !p.due.is_empty()).then_some(p.due),
                    bom: p.bom,
                })
                .collect(),
            materials: s.materials,
            factories: s.factories,
            suppliers: s.suppliers,
        }
    }
}

/// A factory as the file writes it: `capacity_hours` a number or a calendar.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactoryFile {
    id: String,
    capacity_hours: Hours,
    #[serde(default)]
    lines: Vec<Line>,
}

/// `capacity_hours`: one number for every period, or one per period.
#[derive(Debug, Clone)]
enum Hours {
    Every(f64),
    Calendar(Vec<f64>),
}

impl Serialize for Hours {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Hours::Every(h) => s.serialize_f64(*h),
            Hours::Calendar(c) => c.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Hours {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Hours;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of hours, or a list of hours per period")
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Hours, E> {
                Ok(Hours::Every(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Hours, E> {
                Ok(Hours::Every(v as f64))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Hours, E> {
                Ok(Hours::Every(v as f64))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Hours, A::Error> {
                let mut out = Vec::new();
                while let Some(h) = seq.next_element::<f64>()? {
                    out.push(h);
                }
                Ok(Hours::Calendar(out))
            }
        }
        d.deserialize_any(V)
    }
}

impl From<FactoryFile> for Factory {
    fn from(f: FactoryFile) -> Self {
        let (capacity_hours, calendar) = match f.capacity_hours {
            Hours::Every(h) => (h, None),
            Hours::Calendar(c) => (c.iter().copied().fold(0.0, f64::max), Some(c)),
        };
        Factory {
            id: f.id,
            capacity_hours,
            calendar,
            lines: f.lines,
        }
    }
}

impl From<Factory> for FactoryFile {
    fn from(f: Factory) -> Self {
        FactoryFile {
            id: f.id,
            capacity_hours: match f.calendar {
                Some(c) => Hours::Calendar(c),
                None => Hours::Every(f.capacity_hours),
            },
            lines: f.lines,
        }
    }
}

/// Why a scenario could not be read or is not valid.
///
/// Every variant says where: the path of the field in the file
/// (`suppliers[2].offers[0].breaks[1].min_qty`), never just "invalid".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    /// The text is not TOML/JSON of the scenario's shape (syntax, unknown
    /// field, wrong type, missing field).
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// The text has the right shape but breaks a rule of the model.
    #[error("{}", FieldErrors(.0))]
    Invalid(Vec<FieldError>),
    /// Writing the scenario out failed (a value TOML cannot express).
    #[error("cannot write scenario: {0}")]
    Write(String),
}

/// One broken rule, at one place of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where, as `products[0].bom.tpu`.
    pub path: String,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct FieldErrors<'a>(&'a [FieldError]);

impl fmt::Display for FieldErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ScenarioError {
    /// The individual field errors (one for a parse error).
    pub fn field_errors(&self) -> Vec<FieldError> {
        match self {
            ScenarioError::Parse { path, message } => vec![FieldError {
                path: path.clone(),
                message: message.clone(),
            }],
            ScenarioError::Invalid(errors) => errors.clone(),
            ScenarioError::Write(m) => vec![FieldError {
                path: String::new(),
                message: m.clone(),
            }],
        }
    }
}

impl From<FieldError> for ScenarioError {
    /// A rule of the file's shape that spans fields (see [`Scenario`]'s
    /// `TryFrom`): reported as a parse error at its place.
    fn from(e: FieldError) -> Self {
        ScenarioError::Parse {
            path: e.path,
            message: e.message,
        }
    }
}

/// Renders a serde path the way the contract writes places:
/// `suppliers[2].offers[0].breaks[1].min_qty`. A path that ends inside an object
/// before its next key was read (a syntax error, or text that ends there) names that
/// object (`(top level)` for the file itself), not a `?` for the key it never saw.
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let known = segments
        .iter()
        .rposition(|s| !matches!(s, Segment::Unknown))
        .map_or(0, |i| i + 1);
    let mut out = String::new();
    for seg in &segments[..known] {
        match seg {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    if out.is_empty() {
        "(top level)".to_string()
    } else {
        out
    }
}

/// Line and column (1-based) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

impl Scenario {
    /// Reads a scenario from TOML text; the shape only (see [`Scenario::validate`]).
    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        let de = toml::Deserializer::new(text);
        let file: ScenarioFile = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = render_path(e.path());
            let inner = e.into_inner();
            let mut message = inner.message().trim().to_string();
            if let Some(span) = inner.span() {
                let (line, col) = line_col(text, span.start);
                message = format!("{message} (line {line}, column {col})");
            }
            ScenarioError::Parse { path, message }
        })?;
        Scenario::try_from(file).map_err(ScenarioError::from)
    }

    /// Reads a scenario from JSON text of the same structure as the TOML.
    pub fn from_json_str(text: &str) -> Result<Scenario, ScenarioError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let file: ScenarioFile = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = render_path(e.path());
            ScenarioError::Parse {
                path,
                message: e.into_inner().to_string(),
            }
        })?;
        de.end().map_err(|e| ScenarioError::Parse {
            path: "(top level)".to_string(),
            message: e.to_string(),
        })?;
        Scenario::try_from(file).map_err(ScenarioError::from)
    }

    /// Reads TOML or JSON, chosen by the file name's extension (`.json` is
    /// JSON, anything else TOML). The caller does the reading: this crate
    /// does no I/O.
    pub fn from_str_with_name(file_name: &str, text: &str) -> Result<Scenario, ScenarioError> {
        if file_name.to_ascii_lowercase().ends_with(".json") {
            Scenario::from_json_str(text)
        } else {
            Scenario::from_toml_str(text)
        }
    }

    /// Writes the scenario as TOML in the contract's layout.
    pub fn to_toml_string(&self) -> Result<String, ScenarioError> {
        toml::to_string_pretty(self).map_err(|e| ScenarioError::Write(e.to_string()))
    }

    /// Writes the scenario as JSON.
    pub fn to_json_string(&self) -> Result<String, ScenarioError> {
        serde_json::to_string_pretty(self).map_err(|e| ScenarioError::Write(e.to_string()))
    }
}
