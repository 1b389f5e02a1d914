//! The scenario file: one planning cycle written down.
//!
//! The field names are a contract shared with tools outside the project
//! (`docs/scenario-format.md`), so every struct here denies unknown
//! fields and the optional fields carry the defaults the contract states.
//! Parsing only checks the shape; the rules (no negative quantities, known
//! ids, sorted breaks) live in [`crate::validate`].

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// One planning cycle: what must be made, what is on hand, who can make it
/// and who sells the materials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A name for people; shown in reports.
    pub name: String,
    /// ISO 4217 code; all money in the file is in its minor units.
    pub currency: String,
    /// Offers whose supplier needs longer than this cannot be used at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material_deadline_days: Option<i64>,
    #[serde(default)]
    pub products: Vec<Product>,
    #[serde(default)]
    pub materials: Vec<Material>,
    #[serde(default)]
    pub factories: Vec<Factory>,
    #[serde(default)]
    pub suppliers: Vec<Supplier>,
}

/// A product with locked demand and its bill of materials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub sku: String,
    /// Units that must be made (the locked batches); an integer.
    pub demand: i64,
    /// Material id to quantity per unit of product.
    #[serde(default)]
    pub bom: BTreeMap<String, f64>,
}

/// A material and the stock of it already owned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    pub id: String,
    /// Free text, only shown in reports.
    pub unit: String,
    pub on_hand: f64,
    /// Money per unit left over after the cycle: the anti-hoarding term.
    #[serde(default)]
    pub holding_cost: f64,
}

/// A factory with its hours and the lines that can make products there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factory {
    pub id: String,
    pub capacity_hours: f64,
    #[serde(default)]
    pub lines: Vec<Line>,
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

/// Renders a serde path the way the contract writes places:
/// `suppliers[2].offers[0].breaks[1].min_qty`.
fn render_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
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
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = render_path(e.path());
            let inner = e.into_inner();
            let mut message = inner.message().trim().to_string();
            if let Some(span) = inner.span() {
                let (line, col) = line_col(text, span.start);
                message = format!("{message} (line {line}, column {col})");
            }
            ScenarioError::Parse { path, message }
        })
    }

    /// Reads a scenario from JSON text of the same structure as the TOML.
    pub fn from_json_str(text: &str) -> Result<Scenario, ScenarioError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let scenario: Scenario = serde_path_to_error::deserialize(&mut de).map_err(|e| {
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
        Ok(scenario)
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
