//! The overlay file: named variants of a base scenario, each a short list of
//! changes addressed by path.
//!
//! ```toml
//! [[variants]]
//! name = "cheap-steel"
//! changes = [
//!   { set = "suppliers.ningbo-steel.offers.steel-304.breaks[1].unit_price", value = 1900.0 },
//!   { remove = "suppliers.dongguan-pack" },
//!   { scale = "products.kettle-17-white.demand", by = 1.2 },
//! ]
//! ```
//!
//! A path follows the scenario's own field names. In a list, the next part
//! is an id (products by `sku`, materials, factories and suppliers by `id`,
//! lines by `sku`, offers by `material`, a product's `due` and a material's
//! `receipts` by period number: `due.4`) or an index in brackets
//! (`breaks[1]`, `lines[0]`, `capacity_hours[4]`). `set` replaces a value (a
//! field that may be absent, such as `max_qty` or `late_cost`, may be set
//! too), `scale` multiplies a number (whole-number fields are rounded),
//! `remove` deletes an element of a list, a BOM entry or an optional field.
//! After its changes, a variant is checked by the planner's validation.
//!
//! Version 2 scenarios (with a `[horizon]`) add what changes in time: `set`
//! replaces a whole list with a list (`due`, `receipts`, a calendar), turns
//! a factory's `capacity_hours` from one number into a calendar or back, or
//! sets one period of a calendar (`capacity_hours[4]`, 0 closes the week);
//! `scale` of a list scales every number in it, or every `quantity` of its
//! entries (`scale products.x.due by 1.2`). `horizon.periods` and
//! `horizon.period_days` are fields like any other; a calendar must then have
//! the new number of periods, which validation checks.
//!
//! ```toml
//! [[variants]]
//! name = "cixi-closed-week-3"
//! changes = [
//!   { set = "factories.cixi-1.capacity_hours[3]", value = 0.0 },
//!   { set = "products.kettle-17-white.due.4.quantity", value = 600 },
//!   { set = "products.kettle-12-travel.late_cost", value = 500.0 },
//! ]
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Scenario;

/// The overlay file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    pub variants: Vec<Variant>,
}

/// One named variant of the base scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default)]
    pub changes: Vec<Change>,
}

/// One change: exactly one of `set` (with `value`), `scale` (with `by`) or
/// `remove`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<toml::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<String>,
}

impl Change {
    /// A one-line description, as written in the file.
    pub fn describe(&self) -> String {
        if let (Some(p), Some(v)) = (&self.set, &self.value) {
            format!("set {p} = {v}")
        } else if let (Some(p), Some(by)) = (&self.scale, self.by) {
            format!("scale {p} by {by:?}")
        } else if let Some(p) = &self.remove {
            format!("remove {p}")
        } else {
            "(incomplete change)".to_string()
        }
    }
}

/// Why an overlay could not be read or applied. The message names the
/// variant and the change (`variant "cheap-steel", change 2`) and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct OverlayError(pub String);

/// Fields that may be absent from a scenario and so may be set or removed.
const OPTIONAL_FIELDS: &[&str] = &[
    "material_deadline_days",
    "pack_size",
    "max_qty",
    "late_cost",
    "receipts",
];

/// A field that is one number or a list of numbers (a calendar), so `set`
/// may replace either with the other.
const NUMBER_OR_LIST: &[&str] = &["capacity_hours"];

impl Overlay {
    /// Reads an overlay from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Overlay, OverlayError> {
        let de = toml::Deserializer::new(text);
        let overlay: Overlay = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            OverlayError(format!("overlay: {path}: {}", inner.message().trim()))
        })?;
        overlay.check()?;
        Ok(overlay)
    }

    /// Reads an overlay from JSON text of the same structure.
    pub fn from_json_str(text: &str) -> Result<Overlay, OverlayError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let overlay: Overlay = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            OverlayError(format!("overlay: {path}: {}", e.into_inner()))
        })?;
        overlay.check()?;
        Ok(overlay)
    }

    /// Reads TOML or JSON, chosen by the file name (`.json` is JSON).
    pub fn from_str_with_name(file_name: &str, text: &str) -> Result<Overlay, OverlayError> {
        if file_name.to_ascii_lowercase().ends_with(".json") {
            Overlay::from_json_str(text)
        } else {
            Overlay::from_toml_str(text)
        }
    }

    /// Shape rules that serde cannot state: names unique and non-empty,
    /// each change exactly one operation with its operand.
    fn check(&self) -> Result<(), OverlayError> {
        let mut seen = std::collections::HashSet::new();
        for (i, v) in self.variants.iter().enumerate() {
            if v.name.trim().is_empty() {
                return Err(OverlayError(format!(
                    "variant {}: the name is empty",
                    i + 1
                )));
            }
            if v.name == "base" || !seen.insert(v.name.as_str()) {
                return Err(OverlayError(format!(
                    "variant \"{}\": the name is used twice (or is \"base\")",
                    v.name
                )));
            }
            for (j, c) in v.changes.iter().enumerate() {
                let at = || format!("variant \"{}\", change {}", v.name, j + 1);
                let ops = [c.set.is_some(), c.scale.is_some(), c.remove.is_some()];
                if ops.iter().filter(|&&b| b).count() != 1 {
                    return Err(OverlayError(format!(
                        "{}: give exactly one of `set`, `scale` or `remove`",
                        at()
                    )));
                }
                if c.set.is_some() != c.value.is_some() {
                    return Err(OverlayError(format!(
                        "{}: `value` goes with `set`, and only with it",
                        at()
                    )));
                }
                if c.scale.is_some() != c.by.is_some() {
                    return Err(OverlayError(format!(
                        "{}: `by` goes with `scale`, and only with it",
                        at()
                    )));
                }
                // NaN and infinity have no JSON, so the change would set `null` and be
                // refused as "null cannot replace" a number the file never said.
                if let Some(bad) = c.value.as_ref().and_then(non_finite) {
                    return Err(OverlayError(format!(
                        "{}: `value` must be a finite number, not {bad}",
                        at()
                    )));
                }
                if let Some(by) = c.by {
                    if !by.is_finite() || by < 0.0 {
                        return Err(OverlayError(format!(
                            "{}: `by` must be a finite number >= 0, not {by}",
                            at()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Applies one variant to the base and validates the result: the variant's
/// scenario, named `base name + variant name`.
pub fn apply_variant(base: &Scenario, variant: &Variant) -> Result<Scenario, OverlayError> {
    let mut doc = serde_json::to_value(base).expect("a scenario always serializes");
    for (j, c) in variant.changes.iter().enumerate() {
        apply_change(&mut doc, c).map_err(|e| {
            OverlayError(format!(
                "variant \"{}\", change {} ({}): {e}",
                variant.name,
                j + 1,
                c.describe()
            ))
        })?;
    }
    let mut scenario: Scenario = serde_path_to_error::deserialize(&doc).map_err(|e| {
        let path = e.path().to_string();
        OverlayError(format!(
            "variant \"{}\": {path}: {}",
            variant.name,
            e.into_inner()
        ))
    })?;
    if let Err(e) = scenario.clone().validate() {
        let places: Vec<String> = e
            .field_errors()
            .iter()
            .map(|f| format!("variant \"{}\": {}: {}", variant.name, f.path, f.message))
            .collect();
        return Err(OverlayError(places.join("\n")));
    }
    scenario.name = format!("{} + {}", base.name, variant.name);
    Ok(scenario)
}

/// Applies every variant; the first error stops.
pub fn apply_all(base: &Scenario, overlay: &Overlay) -> Result<Vec<Scenario>, OverlayError> {
    overlay
        .variants
        .iter()
        .map(|v| apply_variant(base, v))
        .collect()
}

/// One part of a path: a field name, an id in a list, or an index.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Name(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    if path.trim().is_empty() {
        return Err("the path is empty".to_string());
    }
    for seg in path.split('.') {
        let (name, mut rest) = match seg.find('[') {
            Some(i) => (&seg[..i], &seg[i..]),
            None => (seg, ""),
        };
        if name.is_empty() && rest.is_empty() {
            return Err(format!("empty part in path `{path}`"));
        }
        if !name.is_empty() {
            parts.push(Part::Name(name.to_string()));
        }
        while !rest.is_empty() {
            let close = rest
                .find(']')
                .ok_or_else(|| format!("unclosed `[` in path `{path}`"))?;
            let idx: usize = rest[1..close]
                .trim()
                .parse()
                .map_err(|_| format!("`{}` is not an index in path `{path}`", &rest[1..close]))?;
            parts.push(Part::Index(idx));
            rest = &rest[close + 1..];
            if !rest.is_empty() && !rest.starts_with('[') {
                return Err(format!("unexpected `{rest}` in path `{path}`"));
            }
        }
    }
    Ok(parts)
}

/// The id field and the singular noun of each list of the scenario.
fn list_kind(list: &str) -> Option<(&'static str, &'static str)> {
    Some(match list {
        "products" => ("sku", "product"),
        "materials" => ("id", "material"),
        "factories" => ("id", "factory"),
        "lines" => ("sku", "line"),
        "suppliers" => ("id", "supplier"),
        "offers" => ("material", "offer"),
        "breaks" => ("", "price break"),
        "due" => ("period", "due entry"),
        "receipts" => ("period", "receipt"),
        _ => return None,
    })
}

/// What a path points at: a container and the key or index in it.
enum Slot<'a> {
    Field(&'a mut serde_json::Map<String, Value>, String),
    Element(&'a mut Vec<Value>, usize),
}

/// Walks the path to the slot of its last part. `where_` is the path so far,
/// for messages.
fn locate<'a>(doc: &'a mut Value, parts: &[Part]) -> Result<Slot<'a>, String> {
    let mut cur = doc;
    let mut list_name = String::new();
    let mut where_ = String::from("the scenario");
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match cur {
            Value::Object(map) => {
                let Part::Name(name) = part else {
                    return Err(format!("{where_} is not a list; it cannot be indexed"));
                };
                if !(map.contains_key(name) || last && OPTIONAL_FIELDS.contains(&name.as_str())) {
                    // A BOM is a map of material ids, not of fields.
                    let is_bom = where_.ends_with(".bom");
                    let mut fields: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
                    fields.sort_unstable();
                    return Err(if is_bom {
                        format!("{where_} has no material `{name}`")
                    } else if name == "horizon" && where_ == "the scenario" {
                        // A field of the contract, but an overlay cannot turn version 1
                        // into version 2: every product's `demand` would have to become
                        // `due` per period.
                        "the scenario is version 1 (no [horizon]): an overlay cannot add a \
                         horizon, since its products give `demand`, not `due` per period; \
                         write the scenario as version 2 to change it in time"
                            .to_string()
                    } else {
                        format!(
                            "{where_} has no field `{name}` (fields: {})",
                            fields.join(", ")
                        )
                    });
                }
                if last {
                    return Ok(Slot::Field(map, name.clone()));
                }
                list_name = name.clone();
                where_ = if where_ == "the scenario" {
                    name.clone()
                } else {
                    format!("{where_}.{name}")
                };
                cur = map.get_mut(name).expect("checked above");
            }
            Value::Array(items) => {
                let (id_field, noun) = list_kind(&list_name).unwrap_or(("", "element"));
                let idx = match part {
                    Part::Index(k) => {
                        if *k >= items.len() {
                            return Err(format!(
                                "{where_} has {} {noun}s; there is no [{k}]",
                                items.len()
                            ));
                        }
                        *k
                    }
                    Part::Name(id) => {
                        if id_field.is_empty() {
                            return Err(format!(
                                "{where_} is addressed by index, as `{list_name}[0]`, not by `{id}`"
                            ));
                        }
                        // Ids are strings, except periods (`due.4`).
                        let key = |it: &Value| match it.get(id_field) {
                            Some(Value::String(s)) => Some(s.clone()),
                            Some(Value::Number(n)) => Some(n.to_string()),
                            _ => None,
                        };
                        let found = items.iter().position(|it| key(it).as_deref() == Some(id));
                        match found {
                            Some(k) => k,
                            None => {
                                let known: Vec<String> = items.iter().filter_map(key).collect();
                                return Err(format!(
                                    "unknown {noun} \"{id}\" in {where_} (known: {})",
                                    known.join(", ")
                                ));
                            }
                        }
                    }
                };
                if last {
                    return Ok(Slot::Element(items, idx));
                }
                where_ = match part {
                    Part::Index(k) => format!("{where_}[{k}]"),
                    Part::Name(id) => format!("{where_}.{id}"),
                };
                cur = &mut items[idx];
            }
            _ => return Err(format!("{where_} is a value; it has no `{part:?}`")),
        }
    }
    Err("the path is empty".to_string())
}

/// The first number of `v` (a value or a list or table of them) that is not finite.
fn non_finite(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Float(f) if !f.is_finite() => Some(*f),
        toml::Value::Array(items) => items.iter().find_map(non_finite),
        toml::Value::Table(t) => t.values().find_map(non_finite),
        _ => None,
    }
}

/// A number times `by`; whole numbers stay whole (rounded). A product that no whole
/// number or no finite number holds is an error: `as i64` saturated it (a period of
/// 9223372036854775807 days was planned without a word), and an infinite float became
/// `null`.
fn scaled(v: &Value, by: f64) -> Result<Value, String> {
    match v.as_i64() {
        Some(i) => {
            let x = (i as f64 * by).round();
            // 2^63 is the first float beyond i64::MAX.
            const TWO_63: f64 = 9_223_372_036_854_775_808.0;
            if !(-TWO_63..TWO_63).contains(&x) {
                return Err(format!(
                    "{i} scaled by {by:?} is {x:e}, beyond the largest whole number ({})",
                    i64::MAX
                ));
            }
            Ok(Value::from(x as i64))
        }
        None => {
            let x = v.as_f64().unwrap_or(0.0) * by;
            if !x.is_finite() {
                return Err(format!("{v} scaled by {by:?} is not a finite number"));
            }
            Ok(Value::from(x))
        }
    }
}

fn apply_change(doc: &mut Value, c: &Change) -> Result<(), String> {
    if let (Some(path), Some(value)) = (&c.set, &c.value) {
        let parts = parse_path(path)?;
        let new = serde_json::to_value(value).map_err(|e| format!("value: {e}"))?;
        match locate(doc, &parts)? {
            Slot::Field(map, key) => {
                if let Some(old) = map.get(&key) {
                    let either = NUMBER_OR_LIST.contains(&key.as_str())
                        && (old.is_number() || old.is_array())
                        && (new.is_number() || new.is_array());
                    if old.is_object() {
                        return Err(format!("`{key}` is a table; set one of its fields instead"));
                    }
                    if old.is_array() && !new.is_array() && !either {
                        return Err(format!(
                            "`{key}` is a list; set it to a list, or set one of its entries"
                        ));
                    }
                    if !either
                        && !old.is_array()
                        && (old.is_number() != new.is_number()
                            || old.is_string() != new.is_string())
                    {
                        return Err(format!("`{key}` is {old}, which {new} cannot replace"));
                    }
                }
                map.insert(key, new);
            }
            Slot::Element(items, k) => {
                // One number of a list of numbers: a period of a calendar.
                if !(items[k].is_number() && new.is_number()) {
                    return Err("a whole element cannot be set; set one of its fields".to_string());
                }
                items[k] = new;
            }
        }
        return Ok(());
    }
    if let (Some(path), Some(by)) = (&c.scale, c.by) {
        let parts = parse_path(path)?;
        let (value, key) = match locate(doc, &parts)? {
            Slot::Field(map, key) => (map.get_mut(&key), key),
            Slot::Element(items, k) => (items.get_mut(k), format!("[{k}]")),
        };
        let Some(value) = value else {
            return Err(format!("`{key}` is not set, so it cannot be scaled"));
        };
        if let Value::Array(items) = value {
            // Every number of the list, or every `quantity` of its entries.
            for item in items.iter_mut() {
                let target = match item {
                    Value::Object(entry) => entry.get_mut("quantity"),
                    other => Some(other),
                };
                match target {
                    Some(v) if v.is_number() => *v = scaled(v, by)?,
                    _ => {
                        return Err(format!(
                            "`{key}` holds entries without a number or a `quantity` to scale"
                        ))
                    }
                }
            }
            return Ok(());
        }
        if !value.is_number() {
            return Err(format!("`{key}` is not a number"));
        }
        *value = scaled(value, by)?;
        return Ok(());
    }
    if let Some(path) = &c.remove {
        let parts = parse_path(path)?;
        match locate(doc, &parts)? {
            Slot::Element(items, k) => {
                items.remove(k);
            }
            Slot::Field(map, key) => {
                let removable = OPTIONAL_FIELDS.contains(&key.as_str())
                    || path.split('.').rev().nth(1) == Some("bom");
                if !removable {
                    return Err(format!(
                        "`{key}` is a required field; only list elements, BOM entries and \
                         optional fields can be removed"
                    ));
                }
                map.remove(&key);
            }
        }
        return Ok(());
    }
    Err("give exactly one of `set`, `scale` or `remove`".to_string())
}
