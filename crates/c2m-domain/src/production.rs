//! A work order's life at its factory, as the factory reports it.
//!
//! The factory drives the state with reports; this module says which report is allowed in
//! which state, so the store only writes what [`apply`] decides. The states only move
//! forward, with two deliberate loops: a failed quality check may be followed by another
//! check (after rework), and shipments may come in parts until every unit has shipped.
//!
//! ```text
//! issued ──accept──> accepted ──start──> in_production ──qc──> qc_passed ──ship──> shipped
//!    └──────────reject (with a reason)───────┘                  qc_failed ─qc again─┘   (parts)
//! ```
//!
//! Only a work order whose last quality check passed may ship: after a failed check the
//! factory reworks and checks again before anything leaves.
//!
//! A rejection is only possible before production starts: after that the factory has
//! spent material and hours, and a problem is a failed quality check, not a rejection.
//! Reporting the state a work order is already in (accepting twice, starting twice) is
//! harmless: nothing changes, and the answer says so.
//!
//! One move is not the factory's: a work order still `issued` (the factory has neither
//! accepted nor started it) is `withdrawn` when the merchant cancels its campaign and it
//! makes nothing else (`c2m_store::levers`). A withdrawn work order takes no report, as a
//! rejected one.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{DomainError, Refusal};

/// Where a work order stands at its factory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkOrderState {
    /// Stored and being delivered; the factory has not answered yet.
    Issued,
    Accepted,
    /// Refused by the factory; its batches went back to the planning queue.
    Rejected,
    InProduction,
    QcPassed,
    QcFailed,
    /// Every unit of the work order has shipped.
    Shipped,
    /// Taken back before the factory accepted it: its campaign was cancelled, and its
    /// batches' consumers refunded. The factory's stream tells it so.
    Withdrawn,
}

impl WorkOrderState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkOrderState::Issued => "issued",
            WorkOrderState::Accepted => "accepted",
            WorkOrderState::Rejected => "rejected",
            WorkOrderState::InProduction => "in_production",
            WorkOrderState::QcPassed => "qc_passed",
            WorkOrderState::QcFailed => "qc_failed",
            WorkOrderState::Shipped => "shipped",
            WorkOrderState::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "issued" => WorkOrderState::Issued,
            "accepted" => WorkOrderState::Accepted,
            "rejected" => WorkOrderState::Rejected,
            "in_production" => WorkOrderState::InProduction,
            "qc_passed" => WorkOrderState::QcPassed,
            "qc_failed" => WorkOrderState::QcFailed,
            "shipped" => WorkOrderState::Shipped,
            "withdrawn" => WorkOrderState::Withdrawn,
            _ => return None,
        })
    }

    /// How far along production is, for summarising a batch made by several work orders
    /// (the batch is as far as its slowest work order). Rejected and withdrawn work orders
    /// do not count.
    pub fn rank(self) -> u8 {
        match self {
            WorkOrderState::Issued | WorkOrderState::Rejected | WorkOrderState::Withdrawn => 0,
            WorkOrderState::Accepted => 1,
            WorkOrderState::InProduction => 2,
            WorkOrderState::QcPassed | WorkOrderState::QcFailed => 3,
            WorkOrderState::Shipped => 4,
        }
    }
}

impl fmt::Display for WorkOrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One progress report from a factory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Progress {
    Accepted,
    Rejected {
        reason: String,
    },
    InProduction,
    /// A quality check over `passed + failed` units; it passes when none failed.
    QualityCheck {
        passed: i64,
        failed: i64,
    },
    /// Units shipped, per sku. Shipments may come in parts.
    Shipped {
        quantities: BTreeMap<String, i64>,
    },
}

impl Progress {
    /// Checks what can be checked without the work order; `field` prefixes the names.
    pub fn validate(&self) -> Result<(), DomainError> {
        match self {
            Progress::Rejected { reason } if reason.trim().is_empty() => Err(DomainError::invalid(
                "rejected.reason",
                "a rejection must say why",
            )),
            Progress::Rejected { reason } if reason.len() > 2000 => Err(DomainError::invalid(
                "rejected.reason",
                "at most 2000 bytes",
            )),
            // Shown to the planners (the queue) and logged: the rule of all text people
            // write (QA 14: an escape sequence and a text direction override were kept).
            Progress::Rejected { reason } if reason.chars().any(crate::ids::breaks_a_line) => {
                Err(DomainError::invalid(
                    "rejected.reason",
                    "must not contain control characters (line or paragraph separators and \
                     text direction overrides included)",
                ))
            }
            Progress::QualityCheck { passed, failed } => {
                if *passed < 0 {
                    return Err(DomainError::invalid(
                        "quality_check.passed",
                        "must not be negative",
                    ));
                }
                if *failed < 0 {
                    return Err(DomainError::invalid(
                        "quality_check.failed",
                        "must not be negative",
                    ));
                }
                // Both are non-negative here, so only a sum past i64 fails to add.
                match passed.checked_add(*failed) {
                    Some(0) => Err(DomainError::invalid(
                        "quality_check",
                        "a check must count at least one unit",
                    )),
                    Some(_) => Ok(()),
                    None => Err(DomainError::invalid(
                        "quality_check",
                        "passed and failed together count more units than any work order makes",
                    )),
                }
            }
            Progress::Shipped { quantities } => {
                if quantities.is_empty() {
                    return Err(DomainError::invalid(
                        "shipped.quantities",
                        "name at least one sku and its quantity",
                    ));
                }
                for (sku, q) in quantities {
                    if *q <= 0 {
                        return Err(DomainError::invalid(
                            format!("shipped.quantities[{sku}]"),
                            format!("must be positive, got {q}"),
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Progress::Accepted => "accepted",
            Progress::Rejected { .. } => "rejected",
            Progress::InProduction => "in_production",
            Progress::QualityCheck { .. } => "quality_check",
            Progress::Shipped { .. } => "shipped",
        }
    }
}

/// What a work order has made and shipped so far, as its reports said.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tally {
    /// Units to make, per sku (the work order's runs).
    pub ordered: BTreeMap<String, i64>,
    pub qc_passed: i64,
    pub qc_failed: i64,
    pub shipped: BTreeMap<String, i64>,
}

/// What applying a report does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub state: WorkOrderState,
    pub tally: Tally,
    /// False when the report repeated the current state: nothing to record.
    pub changed: bool,
}

/// Applies `report` to a work order in `state` with `tally`, or says why it cannot be.
pub fn apply(
    work_order: &str,
    state: WorkOrderState,
    tally: &Tally,
    report: &Progress,
) -> Result<Transition, DomainError> {
    use WorkOrderState as S;
    report.validate()?;
    // Why the state refuses a report, said from the state itself: a work order that ended
    // (rejected, or shipped in full) takes no report, and says so; one still under way
    // names what the report needs (`under_way`). A reason written for the states before
    // (a shipment "no quality check has been reported") was false of a work order that
    // had passed its check and shipped.
    let refuse = |what: &str, under_way: &str| {
        let why = match state {
            S::Rejected => "the factory rejected the work order",
            S::Withdrawn => "the work order was withdrawn: its campaign was cancelled",
            S::Shipped => "the work order is shipped in full",
            _ => under_way,
        };
        Err(Refusal::WorkOrderState {
            work_order: work_order.to_owned(),
            state: state.to_string(),
            report: format!("{what} ({why})"),
        }
        .into())
    };
    let same = |state| {
        Ok(Transition {
            state,
            tally: tally.clone(),
            changed: false,
        })
    };
    let mut next = tally.clone();
    let to = match report {
        Progress::Accepted => match state {
            S::Issued => S::Accepted,
            S::Accepted => return same(state),
            _ => return refuse("accepted", "production has started"),
        },
        Progress::Rejected { .. } => match state {
            S::Issued | S::Accepted => S::Rejected,
            S::Rejected => return same(state),
            _ => {
                return refuse(
                    "rejected",
                    "production has started; report a failed quality check instead",
                )
            }
        },
        Progress::InProduction => match state {
            S::Issued | S::Accepted => S::InProduction,
            S::InProduction => return same(state),
            _ => return refuse("in production", "a quality check has been reported"),
        },
        Progress::QualityCheck { passed, failed } => match state {
            S::InProduction | S::QcFailed | S::QcPassed => {
                // One check looks at units of this work order still at the factory: at
                // most the units made less those shipped (a re-check of units that passed
                // before, after a part shipment, may fail and stop the rest). Before, a
                // check was bounded by the units made alone, shipped ones included (QA 14).
                // The running totals count every check's units, a unit checked twice
                // twice (docs/factories.md), and checked sums keep a factory's report from
                // wrapping them (a check of i64::MAX units made the totals negative, or
                // panicked a debug build's writer).
                let units = tally
                    .ordered
                    .values()
                    .fold(0i64, |n, q| n.saturating_add(*q));
                let shipped = tally
                    .shipped
                    .values()
                    .fold(0i64, |n, q| n.saturating_add(*q));
                let here = units.saturating_sub(shipped);
                let counted = passed + failed; // validated: no overflow
                if units > 0 && counted > here {
                    return Err(DomainError::invalid(
                        "quality_check",
                        if shipped == 0 {
                            format!(
                                "a check of {counted} units in work order {work_order}, which \
                                 makes {units}"
                            )
                        } else {
                            format!(
                                "a check of {counted} units in work order {work_order}, which \
                                 makes {units} and has shipped {shipped}: at most {here} are \
                                 left to check"
                            )
                        },
                    ));
                }
                let total = |field: &str, was: i64, more: i64| {
                    was.checked_add(more).ok_or_else(|| {
                        DomainError::invalid(
                            format!("quality_check.{field}"),
                            "the work order's checks count more units than can be kept",
                        )
                    })
                };
                next.qc_passed = total("passed", next.qc_passed, *passed)?;
                next.qc_failed = total("failed", next.qc_failed, *failed)?;
                if *failed == 0 {
                    S::QcPassed
                } else {
                    S::QcFailed
                }
            }
            _ => return refuse("a quality check", "production has not started"),
        },
        Progress::Shipped { quantities } => match state {
            // Units whose last check failed are not fit to ship: rework, check again, and
            // ship once a check passes.
            S::QcFailed => {
                return Err(Refusal::QualityCheckFailed {
                    work_order: work_order.to_owned(),
                    failed: tally.qc_failed,
                }
                .into())
            }
            S::QcPassed => {
                for (sku, q) in quantities {
                    let Some(ordered) = tally.ordered.get(sku) else {
                        return Err(DomainError::invalid(
                            format!("shipped.quantities[{sku}]"),
                            format!("work order {work_order} makes no `{sku}`"),
                        ));
                    };
                    let shipped = next.shipped.get(sku).copied().unwrap_or(0);
                    // Compared with what is left rather than by adding: a quantity near
                    // i64::MAX added to what shipped already wrapped to a negative total
                    // that passed the check (or panicked a debug build's writer).
                    if *q > ordered.saturating_sub(shipped) {
                        return Err(DomainError::invalid(
                            format!("shipped.quantities[{sku}]"),
                            format!(
                                "{} shipped in all would exceed the {ordered} units ordered",
                                i128::from(shipped) + i128::from(*q)
                            ),
                        ));
                    }
                    next.shipped.insert(sku.clone(), shipped + q);
                }
                let all = next
                    .ordered
                    .iter()
                    .all(|(sku, q)| next.shipped.get(sku).copied().unwrap_or(0) >= *q);
                if all {
                    S::Shipped
                } else {
                    state
                }
            }
            _ => return refuse("a shipment", "no quality check has been reported"),
        },
    };
    Ok(Transition {
        state: to,
        tally: next,
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use WorkOrderState as S;

    fn tally() -> Tally {
        Tally {
            ordered: [("kettle".to_string(), 10)].into_iter().collect(),
            ..Tally::default()
        }
    }

    fn ship(n: i64) -> Progress {
        Progress::Shipped {
            quantities: [("kettle".to_string(), n)].into_iter().collect(),
        }
    }

    #[test]
    fn the_happy_path_ships_in_parts() {
        let t = tally();
        let a = apply("wo", S::Issued, &t, &Progress::Accepted).unwrap();
        assert_eq!(a.state, S::Accepted);
        let p = apply("wo", a.state, &a.tally, &Progress::InProduction).unwrap();
        let q = apply(
            "wo",
            p.state,
            &p.tally,
            &Progress::QualityCheck {
                passed: 10,
                failed: 0,
            },
        )
        .unwrap();
        assert_eq!(q.state, S::QcPassed);
        let part = apply("wo", q.state, &q.tally, &ship(4)).unwrap();
        assert_eq!(part.state, S::QcPassed, "6 units still to ship");
        let rest = apply("wo", part.state, &part.tally, &ship(6)).unwrap();
        assert_eq!(rest.state, S::Shipped);
        assert_eq!(rest.tally.shipped["kettle"], 10);
        let err = apply("wo", part.state, &part.tally, &ship(7)).unwrap_err();
        assert!(err.to_string().contains("exceed the 10 units"), "{err}");
    }

    #[test]
    fn repeats_are_harmless_and_rejection_stops_at_production() {
        let t = tally();
        let again = apply("wo", S::Accepted, &t, &Progress::Accepted).unwrap();
        assert!(!again.changed);
        let reject = Progress::Rejected {
            reason: "line down".into(),
        };
        assert_eq!(
            apply("wo", S::Accepted, &t, &reject).unwrap().state,
            S::Rejected
        );
        let late = apply("wo", S::InProduction, &t, &reject).unwrap_err();
        assert_eq!(late.reason(), "WORK_ORDER_STATE");
        assert!(apply("wo", S::Rejected, &t, &Progress::Accepted).is_err());
        assert!(apply("wo", S::Issued, &t, &ship(1)).is_err());
    }

    /// A shipped work order takes no further shipment or check, and the refusal says it is
    /// shipped in full: it used to say no quality check had been reported, or that
    /// production had not started, of a work order that had passed its check and shipped.
    #[test]
    fn a_shipped_work_order_refuses_reports_as_shipped_in_full() {
        let passed = apply(
            "wo",
            S::InProduction,
            &tally(),
            &Progress::QualityCheck {
                passed: 10,
                failed: 0,
            },
        )
        .unwrap();
        let shipped = apply("wo", passed.state, &passed.tally, &ship(10)).unwrap();
        assert_eq!(shipped.state, S::Shipped);
        let check = Progress::QualityCheck {
            passed: 1,
            failed: 0,
        };
        for (report, what) in [(ship(1), "a shipment"), (check, "a quality check")] {
            let refused = apply("wo", shipped.state, &shipped.tally, &report).unwrap_err();
            assert_eq!(
                refused,
                DomainError::Refused(Refusal::WorkOrderState {
                    work_order: "wo".into(),
                    state: "shipped".into(),
                    report: format!("{what} (the work order is shipped in full)"),
                })
            );
        }
        // Before production the reasons are what the work order still needs.
        let early = apply("wo", S::Accepted, &tally(), &ship(1)).unwrap_err();
        assert!(
            early
                .to_string()
                .contains("no quality check has been reported"),
            "{early}"
        );
    }

    /// A withdrawn work order takes no report at all, not even the one that would have
    /// repeated its state before it was withdrawn, and the refusal says why.
    #[test]
    fn a_withdrawn_work_order_refuses_every_report() {
        let reports = [
            (Progress::Accepted, "accepted"),
            (
                Progress::Rejected {
                    reason: "no capacity".into(),
                },
                "rejected",
            ),
            (Progress::InProduction, "in production"),
            (
                Progress::QualityCheck {
                    passed: 1,
                    failed: 0,
                },
                "a quality check",
            ),
        ];
        for (report, what) in reports {
            let refused = apply("wo", S::Withdrawn, &tally(), &report).unwrap_err();
            assert_eq!(
                refused,
                DomainError::Refused(Refusal::WorkOrderState {
                    work_order: "wo".into(),
                    state: "withdrawn".into(),
                    report: format!(
                        "{what} (the work order was withdrawn: its campaign was cancelled)"
                    ),
                })
            );
        }
        assert!(apply("wo", S::Withdrawn, &tally(), &ship(1)).is_err());
        assert_eq!(WorkOrderState::parse("withdrawn"), Some(S::Withdrawn));
        assert_eq!(S::Withdrawn.rank(), 0);
    }

    #[test]
    fn bad_reports_name_the_field() {
        let t = tally();
        let e = apply(
            "wo",
            S::Issued,
            &t,
            &Progress::Rejected {
                reason: "  ".into(),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("rejected.reason"), "{e}");
        // Shown to planners and logged: no escape sequences, line breaks or text
        // direction overrides.
        for bad in ["bad\x1b[31mred", "two\nlines", "evil\u{202e}txt"] {
            let e = Progress::Rejected { reason: bad.into() }
                .validate()
                .unwrap_err();
            assert!(
                e.to_string().contains("rejected.reason")
                    && e.to_string().contains("control characters"),
                "{bad:?}: {e}"
            );
        }
        assert!(Progress::Rejected {
            reason: "模具开裂 (mould cracked)".into()
        }
        .validate()
        .is_ok());
        let e = apply(
            "wo",
            S::InProduction,
            &t,
            &Progress::QualityCheck {
                passed: -1,
                failed: 0,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("quality_check.passed"), "{e}");
        let e = apply(
            "wo",
            S::QcPassed,
            &t,
            &Progress::Shipped {
                quantities: [("toaster".to_string(), 1)].into_iter().collect(),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("shipped.quantities[toaster]"), "{e}");
    }

    #[test]
    fn a_failed_check_can_be_followed_by_another() {
        let t = tally();
        let f = apply(
            "wo",
            S::InProduction,
            &t,
            &Progress::QualityCheck {
                passed: 8,
                failed: 2,
            },
        )
        .unwrap();
        assert_eq!(f.state, S::QcFailed);
        let ok = apply(
            "wo",
            f.state,
            &f.tally,
            &Progress::QualityCheck {
                passed: 2,
                failed: 0,
            },
        )
        .unwrap();
        assert_eq!(ok.state, S::QcPassed);
        assert_eq!((ok.tally.qc_passed, ok.tally.qc_failed), (10, 2));
    }

    #[test]
    fn nothing_ships_while_the_last_check_failed() {
        let t = tally();
        let f = apply(
            "wo",
            S::InProduction,
            &t,
            &Progress::QualityCheck {
                passed: 8,
                failed: 2,
            },
        )
        .unwrap();
        let refused = apply("wo", f.state, &f.tally, &ship(8)).unwrap_err();
        assert_eq!(
            refused,
            DomainError::Refused(Refusal::QualityCheckFailed {
                work_order: "wo".into(),
                failed: 2
            })
        );
        // After a partial shipment, a failed check stops the rest too.
        let passed = apply(
            "wo",
            S::InProduction,
            &t,
            &Progress::QualityCheck {
                passed: 10,
                failed: 0,
            },
        )
        .unwrap();
        let part = apply("wo", passed.state, &passed.tally, &ship(4)).unwrap();
        let failed = apply(
            "wo",
            part.state,
            &part.tally,
            &Progress::QualityCheck {
                passed: 0,
                failed: 1,
            },
        )
        .unwrap();
        assert_eq!(
            apply("wo", failed.state, &failed.tally, &ship(6))
                .unwrap_err()
                .reason(),
            "QUALITY_CHECK_FAILED"
        );
        // A check looks only at units still at the factory: 6 after 4 shipped.
        let seven = apply(
            "wo",
            part.state,
            &part.tally,
            &Progress::QualityCheck {
                passed: 7,
                failed: 0,
            },
        )
        .unwrap_err();
        assert!(
            seven.to_string().contains("at most 6 are left to check"),
            "{seven}"
        );
        assert!(apply(
            "wo",
            part.state,
            &part.tally,
            &Progress::QualityCheck {
                passed: 6,
                failed: 0,
            },
        )
        .is_ok());
    }
}
