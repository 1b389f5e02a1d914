//! What consumers and merchants hear about: the events c2m appends, in the same store
//! transaction as the change that causes them (a transactional outbox), and that the
//! event stream and the webhooks deliver.
//!
//! An event carries what a message to the consumer needs (amounts, dates, the pre-orders
//! and consumers concerned), so a shop never has to read back to write one; it names its
//! campaign, and its batch and pre-orders when it has them. The store gives each event a
//! store-wide sequence number when it is written; the sequence is the cursor of the
//! stream and of every webhook endpoint's delivery, and the id (`evt_…`) lets receivers
//! drop duplicates of an at-least-once delivery.
//!
//! The kind names (`preorder.placed`, ...) and the JSON of [`EventData`] are part of the
//! API (`docs/events.md`): fields may be added, never renamed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::EventId;
use crate::{BatchId, CampaignId, ConsumerId, Money, PreorderId};

/// One pre-order an event concerns, with what its consumer is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreorderRef {
    pub preorder_id: PreorderId,
    pub consumer_id: ConsumerId,
    pub quantity: i64,
    /// The amount the event is about for this pre-order: the deposit held or released,
    /// the balance due or paid, the refund; absent when the event moves no money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

/// What happened, with its numbers. The variant is the event's kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData {
    /// A pre-order was pooled into the open batch; its deposit is held.
    #[serde(rename = "preorder.placed")]
    PreorderPlaced {
        preorder: PreorderRef,
        batch_seq: i64,
        /// Units in the batch with this order, and the threshold it locks at.
        batch_units: i64,
        threshold: i64,
    },
    /// A pooled pre-order was cancelled; its deposit was released in full.
    #[serde(rename = "preorder.cancelled")]
    PreorderCancelled {
        preorder: PreorderRef,
        batch_units: i64,
        threshold: i64,
    },
    /// A batch reached its threshold and locked at its final tier's price. Each pre-order's
    /// `amount` is the balance it owes (0 when the deposit was the full price).
    #[serde(rename = "batch.locked")]
    BatchLocked {
        batch_seq: i64,
        units: i64,
        final_unit_price: Money,
        preorders: Vec<PreorderRef>,
        /// When unpaid balances forfeit their deposits; absent when nothing is due.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        balance_due_by: Option<DateTime<Utc>>,
        /// The promise: the batch ships by then (its lock plus the campaign's
        /// `ships_within_days`). A later move of the date is a `ship_date.changed`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ships_by: Option<DateTime<Utc>>,
    },
    /// A batch missed the campaign's deadline and failed; each pre-order's deposit was
    /// released in full (`amount` is the refund).
    #[serde(rename = "batch.failed")]
    BatchFailed {
        batch_seq: i64,
        units: i64,
        threshold: i64,
        preorders: Vec<PreorderRef>,
    },
    /// A pre-order's balance is due (one event per pre-order that owes one, written with
    /// its batch's lock).
    #[serde(rename = "balance.due")]
    BalanceDue {
        preorder: PreorderRef,
        due_by: DateTime<Utc>,
    },
    /// A balance was paid.
    #[serde(rename = "balance.paid")]
    BalancePaid { preorder: PreorderRef },
    /// A balance was not paid in time: the deposit went to the merchant and the units left
    /// the batch.
    #[serde(rename = "deposit.forfeited")]
    DepositForfeited { preorder: PreorderRef },
    /// A batch's production moved on: planned, accepted, in production, quality check,
    /// shipped (with the units shipped so far).
    #[serde(rename = "production.stage_changed")]
    ProductionStageChanged {
        batch_seq: i64,
        stage: String,
        units_shipped: i64,
        paid_units: i64,
        preorders: Vec<PreorderRef>,
    },
    /// The date a locked batch's units are expected to ship changed: a plan took every unit
    /// (the end of its last run, `planned`), or a factory rejected its work and the units
    /// wait for a new plan (the promise again, not `planned`). Never written when the date
    /// stays the same.
    #[serde(rename = "ship_date.changed")]
    ShipDateChanged {
        batch_seq: i64,
        /// The date consumers were told before.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous: Option<DateTime<Utc>>,
        expected: DateTime<Utc>,
        promised: DateTime<Utc>,
        /// Days late against the promised day, by UTC date (0 when on time).
        days_late: i64,
        /// Whether `expected` is a plan's (true) or the promise while units wait for one.
        #[serde(default)]
        planned: bool,
        /// Whether every unit has shipped: `expected` is then when the last one did (the
        /// plan's date gives way to what happened). Absent while not shipped.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shipped: bool,
        /// Why the plan ships after the promise, when it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        late_reason: Option<String>,
        /// The pre-orders in the batch (paid, not cancelled or forfeited).
        preorders: Vec<PreorderRef>,
    },
    /// The merchant changed a campaign's terms or ended it (`change` says which:
    /// `deadline_extended`, `threshold_lowered`, `closed`, `cancelled`).
    #[serde(rename = "campaign.changed")]
    CampaignChanged {
        change: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        threshold: Option<i64>,
        /// Pre-orders refunded by the change (deposits and paid balances), with the amount.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        refunds: Vec<PreorderRef>,
        /// Work orders the change withdrew from their factories (a cancel: work orders no
        /// factory had accepted yet), by id; their batches' pre-orders are among `refunds`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        withdrawn_work_orders: Vec<String>,
    },
    /// A locked batch of a cancelled campaign was refunded after the cancel: the cancel left
    /// it alone because a work order made it, and that factory has since rejected the work,
    /// so nothing makes it any more. Each pre-order got back its captured deposit and paid
    /// balance (`amount`), as the cancel's own refunds.
    #[serde(rename = "batch.refunded")]
    BatchRefunded {
        batch_seq: i64,
        preorders: Vec<PreorderRef>,
    },
}

impl EventData {
    /// Every kind, as the API names them.
    pub const KINDS: [&'static str; 12] = [
        "preorder.placed",
        "preorder.cancelled",
        "batch.locked",
        "batch.failed",
        "balance.due",
        "balance.paid",
        "deposit.forfeited",
        "production.stage_changed",
        "ship_date.changed",
        "campaign.changed",
        "batch.refunded",
        // A webhook endpoint may ask for every kind.
        "*",
    ];

    /// The kind's name (`preorder.placed`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            EventData::PreorderPlaced { .. } => "preorder.placed",
            EventData::PreorderCancelled { .. } => "preorder.cancelled",
            EventData::BatchLocked { .. } => "batch.locked",
            EventData::BatchFailed { .. } => "batch.failed",
            EventData::BalanceDue { .. } => "balance.due",
            EventData::BalancePaid { .. } => "balance.paid",
            EventData::DepositForfeited { .. } => "deposit.forfeited",
            EventData::ProductionStageChanged { .. } => "production.stage_changed",
            EventData::ShipDateChanged { .. } => "ship_date.changed",
            EventData::CampaignChanged { .. } => "campaign.changed",
            EventData::BatchRefunded { .. } => "batch.refunded",
        }
    }

    /// Whether `name` is a kind an endpoint may subscribe to (`*` for all).
    pub fn is_kind(name: &str) -> bool {
        Self::KINDS.contains(&name)
    }

    /// The list of pre-orders the event carries (`preorders`, or a change's `refunds`), if
    /// it carries a list rather than one pre-order.
    fn list_mut(&mut self) -> Option<&mut Vec<PreorderRef>> {
        match self {
            EventData::BatchLocked { preorders, .. }
            | EventData::BatchFailed { preorders, .. }
            | EventData::ProductionStageChanged { preorders, .. }
            | EventData::ShipDateChanged { preorders, .. }
            | EventData::BatchRefunded { preorders, .. } => Some(preorders),
            EventData::CampaignChanged { refunds, .. } => Some(refunds),
            _ => None,
        }
    }

    /// How many pre-orders its list holds (0 for an event that names one or none).
    #[cfg(test)]
    fn list_len(&self) -> usize {
        self.clone().list_mut().map_or(0, |l| l.len())
    }

    /// The same event listing only the pre-orders in `range` of its list (an event too
    /// large for one stream message is sent as such parts). `None` for an event that
    /// carries one pre-order, not a list.
    pub fn with_preorders(&self, range: std::ops::Range<usize>) -> Option<EventData> {
        let mut part = self.clone();
        let list = part.list_mut()?;
        let slice = list.get(range)?.to_vec();
        *list = slice;
        Some(part)
    }

    /// The pre-orders the event concerns.
    pub fn preorders(&self) -> Vec<&PreorderRef> {
        match self {
            EventData::PreorderPlaced { preorder, .. }
            | EventData::PreorderCancelled { preorder, .. }
            | EventData::BalanceDue { preorder, .. }
            | EventData::BalancePaid { preorder }
            | EventData::DepositForfeited { preorder } => vec![preorder],
            EventData::BatchLocked { preorders, .. }
            | EventData::BatchFailed { preorders, .. }
            | EventData::ProductionStageChanged { preorders, .. }
            | EventData::ShipDateChanged { preorders, .. }
            | EventData::BatchRefunded { preorders, .. } => preorders.iter().collect(),
            EventData::CampaignChanged { refunds, .. } => refunds.iter().collect(),
        }
    }
}

/// An event to append: what happened, to which campaign and batch, and when. The store
/// adds the id and the sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewEvent {
    pub campaign_id: CampaignId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<BatchId>,
    pub occurred_at: DateTime<Utc>,
    pub data: EventData,
}

/// An event as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Store-wide, increasing in commit order within a campaign; the stream's cursor.
    pub seq: i64,
    /// `evt_…`: receivers drop duplicates by it.
    pub id: EventId,
    pub campaign_id: CampaignId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_id: Option<BatchId>,
    pub occurred_at: DateTime<Utc>,
    #[serde(flatten)]
    pub data: EventData,
}

/// The names an event's envelope takes in its JSON; a stored body's field of one of these
/// names is not delivered (the envelope's wins).
const ENVELOPE: [&str; 5] = ["seq", "id", "campaign_id", "batch_id", "occurred_at"];

/// An event as the store holds it and the stream and webhooks deliver it: the envelope
/// typed, the body (`kind` and the kind's fields) the JSON its writer stored, kept as
/// written.
///
/// Why not [`Event`]: in a rolling upgrade a newer replica writes kinds and fields an older
/// one does not know. Read into [`EventData`] (a closed enum whose structs drop unknown
/// fields), such an event would stop every stream and webhook of the older replica at it,
/// or reach receivers without its new fields. Kept as written, an older replica delivers
/// it whole, the same bytes the newer one would send; [`StoredEvent::data`] is the typed
/// view for code that needs one, `None` for a kind this release does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Store-wide, increasing in commit order within a campaign; the stream's cursor.
    pub seq: i64,
    /// `evt_…`: receivers drop duplicates by it.
    pub id: EventId,
    pub campaign_id: CampaignId,
    pub batch_id: Option<BatchId>,
    pub occurred_at: DateTime<Utc>,
    body: EventBody,
}

/// A stored body: its fields in the order written, each value the JSON text as stored.
#[derive(Debug, Clone)]
struct EventBody {
    kind: String,
    fields: Vec<(String, Box<serde_json::value::RawValue>)>,
}

/// Equal when stored alike: the same fields in the same order, each the same text.
impl PartialEq for EventBody {
    fn eq(&self, other: &Self) -> bool {
        self.fields.len() == other.fields.len()
            && (self.fields.iter().zip(&other.fields))
                .all(|((n, v), (m, w))| n == m && v.get() == w.get())
    }
}

/// Why a stored body cannot be read: not a JSON object, or no `kind` string in it.
#[derive(Debug, thiserror::Error)]
pub enum StoredEventError {
    #[error("the body is not a JSON object: {0}")]
    NotAnObject(serde_json::Error),
    #[error("the body has no `kind` string")]
    NoKind,
    /// A field named twice: readers disagree on which one counts (serde's derive refuses
    /// the body, `JSON.parse` keeps the last, this type would read the first), so the
    /// body is not passed on as if it meant one thing.
    #[error("the body names the field `{0}` twice")]
    DuplicateField(String),
}

impl<'de> Deserialize<'de> for EventBody {
    fn deserialize<De: serde::Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Vec<(String, Box<serde_json::value::RawValue>)>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry()? {
                    fields.push(entry);
                }
                Ok(fields)
            }
        }
        let fields = d.deserialize_map(Fields)?;
        Ok(EventBody {
            kind: String::new(),
            fields,
        })
    }
}

/// The body's fields in their order, each as stored.
impl Serialize for EventBody {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.fields.len()))?;
        for (name, value) in &self.fields {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl EventBody {
    fn parse(text: &str) -> Result<EventBody, StoredEventError> {
        let mut body: EventBody =
            serde_json::from_str(text).map_err(StoredEventError::NotAnObject)?;
        let mut names: Vec<&str> = body.fields.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(StoredEventError::DuplicateField(w[0].to_owned()));
        }
        body.kind = body
            .field("kind")
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
            .ok_or(StoredEventError::NoKind)?;
        Ok(body)
    }

    fn field(&self, name: &str) -> Option<&serde_json::value::RawValue> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| &**v)
    }

    /// The event's list of pre-orders, as [`StoredEvent::with_preorders`] splits it: its
    /// `preorders` array, or else its `refunds` array (a campaign change's). The same
    /// rule for every kind, so a kind this release does not know splits as its writer's
    /// would, if it names its list as the known kinds do.
    fn list(&self) -> Option<(usize, Vec<Box<serde_json::value::RawValue>>)> {
        ["preorders", "refunds"].iter().find_map(|name| {
            let i = self.fields.iter().position(|(n, _)| n == name)?;
            let items: Vec<Box<serde_json::value::RawValue>> =
                serde_json::from_str(self.fields[i].1.get()).ok()?;
            Some((i, items))
        })
    }
}

impl StoredEvent {
    /// The event read from its stored columns; `body` is the stored JSON of its
    /// [`EventData`] (or a newer release's kind).
    pub fn from_stored(
        seq: i64,
        id: EventId,
        campaign_id: CampaignId,
        batch_id: Option<BatchId>,
        occurred_at: DateTime<Utc>,
        body: &str,
    ) -> Result<StoredEvent, StoredEventError> {
        Ok(StoredEvent {
            seq,
            id,
            campaign_id,
            batch_id,
            occurred_at,
            body: EventBody::parse(body)?,
        })
    }

    /// The kind's name, as stored (`preorder.placed`, ..., or a newer release's).
    pub fn kind(&self) -> &str {
        &self.body.kind
    }

    /// The typed body, `None` for a kind this release does not know (fields it does not
    /// know are left out, as they are from [`Event`]).
    pub fn data(&self) -> Option<EventData> {
        serde_json::from_str(&serde_json::to_string(&self.body).ok()?).ok()
    }

    /// The event as a receiver reads it, when its kind is known here.
    pub fn typed(&self) -> Option<Event> {
        Some(Event {
            seq: self.seq,
            id: self.id.clone(),
            campaign_id: self.campaign_id.clone(),
            batch_id: self.batch_id.clone(),
            occurred_at: self.occurred_at,
            data: self.data()?,
        })
    }

    /// How many pre-orders the event lists (its `preorders`, or a change's `refunds`); 0
    /// for an event that names one pre-order or none.
    pub fn listed(&self) -> usize {
        self.body.list().map_or(0, |(_, items)| items.len())
    }

    /// The same event listing only the pre-orders in `range` of its list (an event too
    /// large for one stream message is sent as such parts); every other field as stored.
    /// `None` when it lists none, or `range` is not within the list.
    pub fn with_preorders(&self, range: std::ops::Range<usize>) -> Option<StoredEvent> {
        let (i, items) = self.body.list()?;
        let part = items.get(range)?;
        let text = serde_json::to_string(part).ok()?;
        let mut out = self.clone();
        out.body.fields[i].1 = serde_json::value::RawValue::from_string(text).ok()?;
        Some(out)
    }
}

/// The JSON of an event sent in parts (each a whole event listing a slice of its
/// `preorders`, or `refunds`; `StoreEvent.part` 0 to `parts - 1`) joined back into the
/// event: the first part's fields in their order, its list the parts' lists end to end,
/// every value as sent (a number keeps its digits; through `serde_json::Value` a long
/// integer became a float and the keys came out sorted). `None` when a part is not a JSON
/// object or lists nothing.
pub fn join_parts<S: AsRef<str>>(parts: &[S]) -> Option<String> {
    let mut bodies = parts
        .iter()
        .map(|p| serde_json::from_str::<EventBody>(p.as_ref()).ok());
    let mut whole = bodies.next()??;
    let (at, mut items) = whole.list()?;
    for body in bodies {
        let (_, more) = body?.list()?;
        items.extend(more);
    }
    whole.fields[at].1 =
        serde_json::value::RawValue::from_string(serde_json::to_string(&items).ok()?).ok()?;
    serde_json::to_string(&whole).ok()
}

/// The envelope's fields, then the body's as stored: for an event this release wrote, the
/// same JSON as its [`Event`]'s, byte for byte.
impl Serialize for StoredEvent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("seq", &self.seq)?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("campaign_id", &self.campaign_id)?;
        if let Some(b) = &self.batch_id {
            map.serialize_entry("batch_id", b)?;
        }
        map.serialize_entry("occurred_at", &self.occurred_at)?;
        for (name, value) in &self.body.fields {
            if !ENVELOPE.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;

    fn cny(minor: i64) -> Money {
        Money::new(minor, Currency::parse("CNY").unwrap())
    }

    #[test]
    fn an_event_reads_as_the_api_documents_it() {
        let e = Event {
            seq: 7,
            id: EventId::parse("evt_1").unwrap(),
            campaign_id: CampaignId::parse("cmp_1").unwrap(),
            batch_id: None,
            occurred_at: DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            data: EventData::BalancePaid {
                preorder: PreorderRef {
                    preorder_id: PreorderId::parse("po_1").unwrap(),
                    consumer_id: ConsumerId::parse("alice").unwrap(),
                    quantity: 2,
                    amount: Some(cny(63_800)),
                },
            },
        };
        let json: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "balance.paid");
        assert_eq!(json["seq"], 7);
        assert_eq!(json["preorder"]["consumer_id"], "alice");
        assert_eq!(json["preorder"]["amount"]["minor"], 63_800);
        assert!(json.get("batch_id").is_none());
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn every_kind_is_listed() {
        let kinds = [
            EventData::BalancePaid {
                preorder: PreorderRef {
                    preorder_id: PreorderId::parse("po_1").unwrap(),
                    consumer_id: ConsumerId::parse("a").unwrap(),
                    quantity: 1,
                    amount: None,
                },
            }
            .kind(),
            "campaign.changed",
        ];
        for k in kinds {
            assert!(EventData::is_kind(k), "{k}");
        }
        assert!(!EventData::is_kind("batch.exploded"));
    }

    fn po(id: &str, amount: Option<i64>) -> PreorderRef {
        PreorderRef {
            preorder_id: PreorderId::parse(id).unwrap(),
            consumer_id: ConsumerId::parse("alice").unwrap(),
            quantity: 2,
            amount: amount.map(cny),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// An event as the store would read it back: its body as written.
    fn stored(e: &Event) -> StoredEvent {
        StoredEvent::from_stored(
            e.seq,
            e.id.clone(),
            e.campaign_id.clone(),
            e.batch_id.clone(),
            e.occurred_at,
            &serde_json::to_string(&e.data).unwrap(),
        )
        .unwrap()
    }

    fn samples() -> Vec<Event> {
        let datas = [
            EventData::BatchLocked {
                batch_seq: 1,
                units: 4,
                final_unit_price: cny(39_900),
                preorders: vec![po("po_1", Some(69_800)), po("po_2", Some(0))],
                balance_due_by: Some(at("2026-12-03T10:00:00.123456Z")),
                ships_by: None,
            },
            EventData::CampaignChanged {
                change: "cancelled".into(),
                deadline: None,
                threshold: None,
                refunds: vec![po("po_1", Some(5_000)), po("po_2", None)],
                withdrawn_work_orders: vec![],
            },
            EventData::ShipDateChanged {
                batch_seq: 2,
                previous: None,
                expected: at("2027-01-18T00:00:00Z"),
                promised: at("2027-01-11T00:00:00Z"),
                days_late: 7,
                planned: true,
                shipped: false,
                late_reason: Some("capacity \"wk\" \u{2014} full".into()),
                preorders: vec![po("po_3", None)],
            },
            EventData::BalancePaid {
                preorder: po("po_4", Some(63_800)),
            },
            EventData::PreorderPlaced {
                preorder: po("po_5", Some(10_000)),
                batch_seq: 3,
                batch_units: 7,
                threshold: 10,
            },
            EventData::PreorderCancelled {
                preorder: po("po_5", Some(10_000)),
                batch_units: 5,
                threshold: 10,
            },
            EventData::BatchFailed {
                batch_seq: 3,
                units: 5,
                threshold: 10,
                preorders: vec![po("po_6", Some(5_000))],
            },
            EventData::BalanceDue {
                preorder: po("po_7", Some(29_900)),
                due_by: at("2026-12-08T00:00:00Z"),
            },
            EventData::DepositForfeited {
                preorder: po("po_7", Some(10_000)),
            },
            EventData::ProductionStageChanged {
                batch_seq: 1,
                stage: "in_production".into(),
                units_shipped: 0,
                paid_units: 4,
                preorders: vec![po("po_1", None), po("po_2", None)],
            },
            EventData::BatchRefunded {
                batch_seq: 1,
                preorders: vec![po("po_1", Some(79_800))],
            },
        ];
        datas
            .into_iter()
            .enumerate()
            .map(|(i, data)| Event {
                seq: i as i64 + 1,
                id: EventId::parse(&format!("evt_{i}")).unwrap(),
                campaign_id: CampaignId::parse("cmp_1").unwrap(),
                batch_id: (i % 2 == 0).then(|| BatchId::parse("bat_1").unwrap()),
                occurred_at: at("2026-12-01T10:00:00.5Z"),
                data,
            })
            .collect()
    }

    /// What this release writes, read back and delivered, is what its typed event would
    /// send: the same bytes, so a receiver sees no change from keeping bodies as stored.
    #[test]
    fn a_stored_event_sends_the_bytes_its_typed_event_would() {
        let kinds: Vec<&str> = samples().iter().map(|e| e.data.kind()).collect();
        for k in EventData::KINDS.iter().filter(|k| **k != "*") {
            assert!(kinds.contains(k), "a sample of every kind: {k} has none");
        }
        for e in samples() {
            let s = stored(&e);
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                serde_json::to_string(&e).unwrap()
            );
            assert_eq!(s.kind(), e.data.kind());
            assert_eq!(s.typed().as_ref(), Some(&e));
            assert_eq!(s.listed(), e.data.list_len());
        }
    }

    /// A kind this release does not know, and a field it does not know on a kind it does,
    /// are delivered as their writer stored them (a newer replica, in a rolling upgrade).
    #[test]
    fn a_newer_releases_kinds_and_fields_pass_through_whole() {
        let body = r#"{"kind":"campaign.renamed","name":"Kettle \"Pro\"","preorders":[{"preorder_id":"po_1","consumer_id":"a","quantity":1},{"preorder_id":"po_2","consumer_id":"b","quantity":3,"tier":{"x":[1,2.5,null]}}],"seq":99}"#;
        let e = StoredEvent::from_stored(
            7,
            EventId::parse("evt_7").unwrap(),
            CampaignId::parse("cmp_1").unwrap(),
            None,
            at("2026-12-01T10:00:00Z"),
            body,
        )
        .unwrap();
        assert_eq!(e.kind(), "campaign.renamed");
        assert_eq!(e.data(), None);
        assert_eq!(e.typed(), None);
        assert_eq!(e.listed(), 2);
        let sent = serde_json::to_string(&e).unwrap();
        assert_eq!(
            sent,
            concat!(
                r#"{"seq":7,"id":"evt_7","campaign_id":"cmp_1","occurred_at":"2026-12-01T10:00:00Z","#,
                r#""kind":"campaign.renamed","name":"Kettle \"Pro\"","preorders":[{"preorder_id":"po_1","consumer_id":"a","quantity":1},{"preorder_id":"po_2","consumer_id":"b","quantity":3,"tier":{"x":[1,2.5,null]}}]}"#
            ),
            "the envelope's own `seq` wins over a body's"
        );
        let second = e.with_preorders(1..2).unwrap();
        let v: serde_json::Value = serde_json::to_value(&second).unwrap();
        assert_eq!(v["preorders"].as_array().unwrap().len(), 1);
        assert_eq!(v["preorders"][0]["tier"]["x"][1], 2.5);
        assert_eq!(v["name"], "Kettle \"Pro\"");
        assert_eq!(e.with_preorders(1..3), None);

        let mut paid = serde_json::to_value(&samples()[3].data).unwrap();
        paid["paid_with"] = serde_json::json!({"method": "card"});
        let e = StoredEvent::from_stored(
            4,
            EventId::parse("evt_4").unwrap(),
            CampaignId::parse("cmp_1").unwrap(),
            None,
            at("2026-12-01T10:00:00Z"),
            &paid.to_string(),
        )
        .unwrap();
        assert_eq!(e.data(), Some(samples()[3].data.clone()));
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["paid_with"]["method"], "card");
        assert_eq!(v["preorder"]["amount"]["minor"], 63_800);
    }

    /// An event too large for one stream message is split by its list whatever its kind,
    /// and each part is the typed event's part.
    #[test]
    fn parts_list_the_slices_and_keep_every_other_field() {
        for e in samples() {
            let s = stored(&e);
            for range in [0..1, 1..2, 0..2] {
                let typed = e.data.with_preorders(range.clone());
                let part = s.with_preorders(range);
                assert_eq!(part.as_ref().and_then(StoredEvent::data), typed);
            }
        }
    }

    /// Parts joined give back the event's JSON byte for byte, whatever its numbers.
    #[test]
    fn parts_join_back_into_the_event_as_sent() {
        for e in samples() {
            let s = stored(&e);
            let n = s.listed();
            if n < 2 {
                continue;
            }
            let parts: Vec<String> = (0..n)
                .map(|i| serde_json::to_string(&s.with_preorders(i..i + 1).unwrap()).unwrap())
                .collect();
            assert_eq!(
                join_parts(&parts).as_deref(),
                Some(serde_json::to_string(&s).unwrap().as_str())
            );
        }
        let long =
            r#"{"seq":1,"kind":"x.y","big":123456789012345678901234,"f":1.0e2,"preorders":[1]}"#;
        let more =
            r#"{"seq":1,"kind":"x.y","big":123456789012345678901234,"f":1.0e2,"preorders":[2,3]}"#;
        assert_eq!(
            join_parts(&[long, more]).as_deref(),
            Some(
                r#"{"seq":1,"kind":"x.y","big":123456789012345678901234,"f":1.0e2,"preorders":[1,2,3]}"#
            )
        );
        assert_eq!(join_parts(&[long, "[1]"]), None);
    }

    #[test]
    fn a_body_that_is_not_an_object_with_a_kind_is_refused() {
        let read = |body: &str| {
            StoredEvent::from_stored(
                1,
                EventId::parse("evt_1").unwrap(),
                CampaignId::parse("cmp_1").unwrap(),
                None,
                at("2026-12-01T10:00:00Z"),
                body,
            )
        };
        assert!(matches!(read("[1]"), Err(StoredEventError::NotAnObject(_))));
        assert!(matches!(
            read("{\"kind\":"),
            Err(StoredEventError::NotAnObject(_))
        ));
        assert!(matches!(
            read("{\"kind\":7}"),
            Err(StoredEventError::NoKind)
        ));
        assert!(matches!(read("{}"), Err(StoredEventError::NoKind)));
        assert!(matches!(
            read(r#"{"kind":"balance.paid","kind":"batch.failed"}"#),
            Err(StoredEventError::DuplicateField(f)) if f == "kind"
        ));
    }
}
