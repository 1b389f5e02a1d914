//! Identifiers. Ids are opaque strings to clients; newtypes keep a pre-order id from being
//! passed where a campaign id is expected.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::DomainError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $field:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh id, prefixed so that ids in logs say what they are: a UUIDv7, so ids
            /// made later sort later and new rows append to every index they are in.
            pub fn generate() -> Self {
                $name(format!(concat!($prefix, "_{}"), Uuid::now_v7().simple()))
            }

            /// An id received from a client: without its surrounding spaces (a reference
            /// copied with a space around it names the same record, as with
            /// [`parse_ref`]), non-empty, at most 128 printable ASCII characters.
            pub fn parse(s: &str) -> Result<Self, DomainError> {
                parse_ref($field, s).map($name)
            }

            /// An id read back from the store, trusted because only `parse` or `generate`
            /// could have written it.
            pub fn from_trusted(s: String) -> Self {
                $name(s)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A campaign: one product offered for pre-order.
    CampaignId, "cmp", "campaign_id"
);
id_type!(
    /// A batch: the units of one campaign that are produced together.
    BatchId, "bat", "batch_id"
);
id_type!(
    /// A pre-order placed by a consumer.
    PreorderId, "po", "preorder_id"
);
id_type!(
    /// A consumer, as the storefront knows them. c2m never invents these.
    ConsumerId, "con", "consumer_id"
);
id_type!(
    /// A stored plan: the result of one planning cycle.
    PlanId, "pln", "plan_id"
);
id_type!(
    /// A work order: one factory's part of a plan.
    WorkOrderId, "wo", "work_order_id"
);
id_type!(
    /// A purchase order: what a plan buys from one supplier, of one material, in one period.
    PurchaseOrderId, "pur", "purchase_order_id"
);
id_type!(
    /// A ledger transaction: the key a payment gateway would be given for its movement.
    LedgerTxnId, "ltx", "ledger_txn_id"
);
id_type!(
    /// An event of the outbox: receivers of an at-least-once delivery drop duplicates by it.
    EventId, "evt", "event_id"
);
id_type!(
    /// A webhook endpoint: made at registration, so endpoints sort by when they were
    /// registered (and equally due ones are tried in that order).
    WebhookEndpointId, "whe", "endpoint_id"
);

/// The most characters a catalogue id may have: [`parse_name`].
pub const MAX_NAME_CHARS: usize = 200;

/// A reference to a record whose id c2m made (a plan, a work order, a purchase order, a
/// webhook endpoint): those ids follow the token rules of [`parse_token`], so a reference
/// that breaks them names nothing, and is refused before the store is asked (and before a
/// megabyte of it travels into a query and a log line).
pub fn parse_ref(field: &str, s: &str) -> Result<String, DomainError> {
    parse_token(field, s.trim()).map(str::to_owned)
}

/// An id a merchant chose (a product, material, factory or supplier of the catalogue):
/// people write these, so spaces and any script are allowed, but not control characters,
/// and at most [`MAX_NAME_CHARS`] characters, so that every id the catalogue holds can be
/// put in a status, a log line and a work order as it is. Surrounding spaces are not part
/// of it.
pub fn parse_name(field: &str, s: &str) -> Result<String, DomainError> {
    text(field, s, MAX_NAME_CHARS)
}

/// A note people attach to a record for other people (a token's label, shown on its one
/// `token list` line): the rules of [`parse_name`], but it may be empty (no note).
pub fn parse_label(field: &str, s: &str) -> Result<String, DomainError> {
    if s.trim().is_empty() {
        return Ok(String::new());
    }
    text(field, s, MAX_NAME_CHARS)
}

/// Text people write (a name, a title, a label): trimmed, not empty, at most `max`
/// characters, no control characters (they would break a log line, a CSV row or a header).
pub(crate) fn text(field: &str, v: &str, max: usize) -> Result<String, DomainError> {
    let t = v.trim();
    if t.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if t.chars().any(breaks_a_line) {
        return Err(DomainError::invalid(
            field,
            "must not contain control characters (line or paragraph separators and text \
             direction overrides included)",
        ));
    }
    Ok(t.to_owned())
}

/// Characters that would break or disguise a line the text is shown in: the C0 and C1
/// controls, Unicode's line and paragraph separators (a log line or a CSV row ends there
/// for many readers) and the bidirectional embeddings, overrides and isolates (they
/// reorder what follows them, so a title could show other text than it holds). The
/// left-to-right and right-to-left marks stay allowed: names in Hebrew or Arabic carry
/// them, and they reorder nothing beyond themselves.
pub(crate) fn breaks_a_line(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a client-supplied token (id or key): the rules are deliberately narrow so that
/// ids can be logged and put in URLs without escaping.
pub(crate) fn parse_token<'a>(field: &str, s: &'a str) -> Result<&'a str, DomainError> {
    if s.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if s.len() > 128 {
        return Err(DomainError::invalid(
            field,
            "must be at most 128 characters",
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DomainError::invalid(
            field,
            "must be printable ASCII without spaces",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_what_would_break_or_disguise_a_line() {
        for bad in [
            "a\u{2028}b",
            "a\u{2029}b",
            "\u{202E}evil",
            "x\u{2066}y",
            "tab\there",
        ] {
            assert!(text("title", bad, 100).is_err(), "{bad:?}");
        }
        for good in ["שלום\u{200F} kettle", "水壶 2", "emoji 👩\u{200D}🍳"] {
            assert_eq!(text("title", good, 100).unwrap(), good);
        }
    }

    #[test]
    fn references_follow_the_token_rules() {
        assert_eq!(parse_ref("plan_id", " pln_1 ").unwrap(), "pln_1");
        // Every id type reads a reference the same way (an outside client's
        // `GetCampaign(" cmp_… ")` was refused where `GetPlan(" pln_… ")` was not).
        assert_eq!(CampaignId::parse(" cmp_1\t").unwrap().as_str(), "cmp_1");
        assert_eq!(PreorderId::parse("po_1 ").unwrap().as_str(), "po_1");
        assert_eq!(ConsumerId::parse(" alice").unwrap().as_str(), "alice");
        assert!(CampaignId::parse(" ").is_err());
        for bad in ["", "  ", "a b", "x\u{7f}"] {
            let e = parse_ref("plan_id", bad).unwrap_err();
            assert!(
                matches!(&e, DomainError::InvalidArgument { field, .. } if field == "plan_id"),
                "{bad:?}: {e}"
            );
        }
        assert!(parse_ref("plan_id", &"p".repeat(128)).is_ok());
        assert!(parse_ref("plan_id", &"p".repeat(129)).is_err());
    }

    #[test]
    fn names_allow_what_people_write_and_refuse_the_rest() {
        assert_eq!(
            parse_name("factory_id", " Shenzhen line 2 ").unwrap(),
            "Shenzhen line 2"
        );
        assert_eq!(parse_name("factory_id", "深圳工厂").unwrap(), "深圳工厂");
        let longest = "工".repeat(MAX_NAME_CHARS);
        assert_eq!(parse_name("factory_id", &longest).unwrap(), longest);
        for bad in [
            String::new(),
            " ".into(),
            "a\nb".into(),
            "工".repeat(MAX_NAME_CHARS + 1),
        ] {
            let e = parse_name("factory_id", &bad).unwrap_err();
            assert!(
                matches!(&e, DomainError::InvalidArgument { field, .. } if field == "factory_id"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn generated_ids_are_prefixed_and_parse_back() {
        let id = CampaignId::generate();
        assert!(id.as_str().starts_with("cmp_"));
        assert_eq!(CampaignId::parse(id.as_str()).unwrap(), id);
        let plan = PlanId::generate().into_string();
        let version = plan.strip_prefix("pln_").and_then(|u| u.chars().nth(12));
        assert_eq!(version, Some('7'), "{plan} is a UUIDv7");
        assert!(WorkOrderId::generate().as_str().starts_with("wo_"));
        assert!(LedgerTxnId::generate().as_str().starts_with("ltx_"));
    }

    #[test]
    fn bad_ids_name_the_field() {
        let err = PreorderId::parse("").unwrap_err();
        assert_eq!(
            err,
            DomainError::invalid("preorder_id", "must not be empty")
        );
        assert!(ConsumerId::parse("a b").is_err());
        assert!(ConsumerId::parse(&"x".repeat(129)).is_err());
    }
}
