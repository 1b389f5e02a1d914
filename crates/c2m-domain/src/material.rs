//! Materials' units of measure: which materials are counted in pieces, and the rule that a
//! quantity of such a material (a receipt, stock on hand) is a whole number.
//!
//! A material's `unit` is free text in the scenario (`kg`, `l`, `pcs`), shown in reports.
//! Most units measure (a receipt of 2.5 kg is fine), but a screw or a housing arrives
//! whole: 2.5 pieces is a typing error, and counted as stock it would let a plan use half a
//! part. The units below (any case, surrounding spaces ignored) say "counted in pieces";
//! every other unit measures.

use crate::DomainError;

/// Units that count pieces (compared in lowercase, trimmed).
pub const PIECE_UNITS: &[&str] = &[
    "pc", "pcs", "piece", "pieces", "ea", "each", "unit", "units",
];

/// Quantities closer to a whole number than this are whole (they went through `f64`
/// arithmetic, so 3 may arrive as 2.9999999999999996).
const WHOLE_EPS: f64 = 1e-9;

/// Whether a material with this unit is counted in pieces.
pub fn counted_in_pieces(unit: &str) -> bool {
    let unit = unit.trim().to_lowercase();
    PIECE_UNITS.contains(&unit.as_str())
}

/// Whether `value` is a whole number (within rounding).
pub fn is_whole(value: f64) -> bool {
    value.is_finite() && (value - value.round()).abs() <= WHOLE_EPS
}

/// Refuses a quantity of `material` (field `field` of the request) that is not a whole
/// number when the material is counted in pieces; any finite quantity of a measured
/// material passes.
pub fn check_quantity(
    field: &str,
    material: &str,
    unit: &str,
    value: f64,
) -> Result<(), DomainError> {
    if counted_in_pieces(unit) && !is_whole(value) {
        return Err(DomainError::NotWholePieces {
            field: field.to_owned(),
            material: material.to_owned(),
            unit: unit.trim().to_owned(),
            value: shown(value),
        });
    }
    Ok(())
}

/// `value` as the refusal shows it: as written for everyday numbers (2.5), in scientific
/// notation beyond them (1e-300, which `to_string` wrote out as 301 digits, cut short in the
/// error's metadata).
fn shown(value: f64) -> String {
    if value != 0.0 && !(1e-6..1e15).contains(&value.abs()) {
        format!("{value:e}")
    } else {
        value.to_string()
    }
}

/// A receipt of `value` of `material` (field `field`), as it is counted: a material counted
/// in pieces arrives in whole pieces, at least one, and its quantity is the whole number
/// it stands for (3 for 2.9999999999999996), so stock and the order's `received` stay whole;
/// a quantity that is no piece at all (1e-300, which [`is_whole`] would take for 0) is
/// refused like 2.5 pieces, or it would turn an open order into a partly received one with
/// nothing received, which could then no longer be cancelled. A measured material's
/// quantity is taken as it is.
pub fn receipt_quantity(
    field: &str,
    material: &str,
    unit: &str,
    value: f64,
) -> Result<f64, DomainError> {
    if !counted_in_pieces(unit) {
        return Ok(value);
    }
    check_quantity(field, material, unit, value)?;
    let whole = value.round();
    if whole < 1.0 {
        return Err(DomainError::NotWholePieces {
            field: field.to_owned(),
            material: material.to_owned(),
            unit: unit.trim().to_owned(),
            value: shown(value),
        });
    }
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receipt_of_pieces_is_a_whole_number_of_at_least_one() {
        assert_eq!(receipt_quantity("quantity", "screw", "pcs", 3.0), Ok(3.0));
        assert_eq!(
            receipt_quantity("quantity", "screw", "pcs", 1.000_000_000_1),
            Ok(1.0)
        );
        assert_eq!(
            receipt_quantity("quantity", "steel", "kg", 1e-300),
            Ok(1e-300)
        );
        for tiny in [1e-300, 5e-10] {
            let e = receipt_quantity("quantity", "screw", "pcs", tiny).unwrap_err();
            assert_eq!(e.reason(), "INVALID_FIELD");
            assert!(
                e.metadata().contains(&("value", format!("{tiny:e}"))),
                "{e}"
            );
            assert!(
                e.metadata().contains(&("material", "screw".to_owned())),
                "{e}"
            );
        }
        assert!(receipt_quantity("quantity", "screw", "pcs", 2.5).is_err());
    }

    #[test]
    fn pieces_are_whole_and_measures_are_not_checked() {
        assert!(counted_in_pieces("pcs"));
        assert!(counted_in_pieces(" PCS "));
        assert!(counted_in_pieces("pc"));
        assert!(!counted_in_pieces("kg"));
        assert!(!counted_in_pieces("l"));
        assert_eq!(check_quantity("quantity", "screw", "pcs", 3.0), Ok(()));
        assert_eq!(
            check_quantity("quantity", "screw", "pcs", 0.1 + 0.2 + 2.7),
            Ok(())
        );
        assert_eq!(check_quantity("quantity", "steel", "kg", 2.5), Ok(()));
        let e = check_quantity("quantity", "screw", "pcs", 2.5).unwrap_err();
        assert_eq!(e.reason(), "INVALID_FIELD");
        assert_eq!(
            e.metadata(),
            vec![
                ("field", "quantity".to_owned()),
                ("material", "screw".to_owned()),
                ("unit", "pcs".to_owned()),
                ("value", "2.5".to_owned()),
            ]
        );
        assert!(e.to_string().contains("screw"), "{e}");
        assert!(e.to_string().contains("2.5"), "{e}");
    }
}
