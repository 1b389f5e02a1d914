//! The catalogue: the production data the planner needs, held in the store.
//!
//! The types here are the store's own and mirror the scenario contract
//! (`docs/scenario-format.md`) field for field, so that the server can turn the
//! catalogue into a planner scenario and back without the store knowing the planner. The
//! scenario *rules* (no negative quantities, known ids, sorted price breaks) are not
//! repeated here: every change is checked by a [`CatalogueCheck`] the caller passes in
//! (the server passes the planner's validation and its own cross-entry rules), on the
//! catalogue as it would be after the change, with the catalogue before it, inside the
//! change's transaction.
//!
//! A change is written once, in `change_catalogue`, for both backends: read the
//! catalogue under its lock, apply the change in memory, check it, write the difference,
//! refuse if a campaign's sku would disappear, record the idempotency key. Its SQL is
//! `sql.rs`, the same text on both backends; the store trait, [`CatalogueStore`], is
//! implemented once, at the end of this module. Its conformance case is
//! `catalogue_changes_and_the_sku_rule` (`crate::conformance`).
//!
//! **The locks.** A change reads and writes the whole catalogue under the catalogue's lock:
//! the `catalogue_meta` row, `FOR UPDATE` on PostgreSQL (SQLite's one writer holds the whole
//! database), which plans reserving stock take too ([`crate::planning`]). The rule that
//! spans features, "no campaign's sku disappears", takes a second lock in a fixed order: a
//! campaign being created holds its product's row (`FOR SHARE`) until it commits, so a
//! delete waits for it; the change checks the rule again after its deletes, when it sees
//! the new campaign.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::{DomainError, IdempotencyKey};

use crate::dialect::{Backend, Tx};
use crate::engine::{Call, Engine};
use crate::idempotency::Keyed;
use crate::Result;

mod sql;

pub(crate) const OP_CHANGE_CATALOGUE: &str = "change_catalogue";

/// The whole catalogue, in the order the admin gave it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalogue {
    /// Bumped by every change (and by a plan reserving stock); 0 for the empty catalogue.
    #[serde(skip)]
    pub version: i64,
    pub name: String,
    /// ISO 4217; the money of every cost and price below is in its minor units. `None`
    /// until the first change sets it.
    pub currency: Option<String>,
    pub material_deadline_days: Option<i64>,
    pub products: Vec<CatalogueProduct>,
    pub materials: Vec<CatalogueMaterial>,
    pub factories: Vec<CatalogueFactory>,
    pub suppliers: Vec<CatalogueSupplier>,
}

/// A product and its bill of materials (material id to quantity per unit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueProduct {
    pub sku: String,
    pub bom: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueMaterial {
    pub id: String,
    pub unit: String,
    pub on_hand: f64,
    pub holding_cost: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueFactory {
    pub id: String,
    /// Hours per planning period, in every period a calendar does not cover.
    pub capacity_hours: f64,
    /// The length in days of the period `capacity_hours` counts (the importing server's
    /// `--plan-period-days`), so that a cycle in other periods gives each the same hours
    /// per day; `None` for a factory stored before the store kept it, whose hours count
    /// per period of whichever server reads them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_period_days: Option<i64>,
    pub lines: Vec<FactoryLine>,
    /// Hours period by period from a date on (a closed week is 0); `None` means
    /// `capacity_hours` in every period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calendar: Option<FactoryCalendar>,
}

/// A factory's hours period by period. A calendar is dates: the week it closes is the
/// same week whenever a cycle runs, so it is stored with where its first period starts
/// and how long its periods are, and each cycle maps its own periods onto those dates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredCalendar")]
pub struct FactoryCalendar {
    /// Hours in each period (0: closed).
    pub hours: Vec<f64>,
    /// Its periods' length in days; `None` for a calendar stored before calendars had
    /// dates (a bare list of hours in the `calendar` column), which counts from each
    /// cycle's start in the cycle's periods, as it did then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_days: Option<i64>,
    /// Where period 0 starts. In a change, `None` means the change's moment: the store
    /// dates it when it applies the change, so a retry under the same key, later, is the
    /// same request and keeps the first date. Stored, it is set whenever `period_days` is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<DateTime<Utc>>,
}

impl FactoryCalendar {
    /// The calendar's dates, `(start of period 0, period length)`, or `None` for one stored
    /// before calendars had dates.
    pub fn dates(&self) -> Option<(DateTime<Utc>, chrono::Duration)> {
        Some((self.starts_at?, chrono::Duration::days(self.period_days?)))
    }
}

/// The `calendar` column as it may be found: an object with the hours and their anchor,
/// or the bare list of hours written before calendars had dates.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredCalendar {
    Dated {
        hours: Vec<f64>,
        #[serde(default)]
        period_days: Option<i64>,
        #[serde(default)]
        starts_at: Option<DateTime<Utc>>,
    },
    Bare(Vec<f64>),
}

impl From<StoredCalendar> for FactoryCalendar {
    fn from(s: StoredCalendar) -> Self {
        match s {
            StoredCalendar::Dated {
                hours,
                period_days,
                starts_at,
            } => Self {
                hours,
                period_days,
                starts_at,
            },
            StoredCalendar::Bare(hours) => Self {
                hours,
                period_days: None,
                starts_at: None,
            },
        }
    }
}

/// Dates the calendars of a change that come without a start (see
/// [`FactoryCalendar::starts_at`]): their period 0 starts at the change's moment.
fn date_calendars(edit: &CatalogueEdit, now: DateTime<Utc>) -> CatalogueEdit {
    let mut edit = edit.clone();
    if let CatalogueEdit::Replace(c) | CatalogueEdit::Merge(c) = &mut edit {
        for cal in c.factories.iter_mut().filter_map(|f| f.calendar.as_mut()) {
            if cal.period_days.is_some() && cal.starts_at.is_none() {
                cal.starts_at = Some(now);
            }
        }
    }
    edit
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FactoryLine {
    pub sku: String,
    pub unit_cost: f64,
    pub setup_cost: f64,
    pub min_run: i64,
    pub hours_per_unit: f64,
    pub setup_hours: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogueSupplier {
    pub id: String,
    pub lead_days: i64,
    pub offers: Vec<SupplierOffer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SupplierOffer {
    pub material: String,
    pub moq: f64,
    pub pack_size: Option<f64>,
    pub max_qty: Option<f64>,
    pub order_cost: f64,
    pub breaks: Vec<OfferPriceBreak>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OfferPriceBreak {
    pub min_qty: f64,
    pub unit_price: f64,
}

/// The four kinds of catalogue entry, for deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogueKind {
    Product,
    Material,
    Factory,
    Supplier,
}

impl CatalogueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogueKind::Product => "product",
            CatalogueKind::Material => "material",
            CatalogueKind::Factory => "factory",
            CatalogueKind::Supplier => "supplier",
        }
    }
}

/// What a change does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogueEdit {
    /// The catalogue becomes exactly this (an import of a whole scenario).
    Replace(Catalogue),
    /// Each entry given replaces the entry with its id, or is appended; entries not given
    /// stay. `name` replaces the name; `currency` must match the catalogue's (or sets it
    /// on an empty one); `material_deadline_days` replaces it when given.
    Merge(Catalogue),
    /// Removes one entry.
    Delete { kind: CatalogueKind, id: String },
}

/// A request to change the catalogue. Idempotent by key.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeCatalogue {
    #[serde(skip)]
    pub idempotency_key: IdempotencyKey,
    pub edit: CatalogueEdit,
}

impl ChangeCatalogue {
    /// The change as its sender wrote it, for its key's fingerprint: without what the
    /// receiving server adds from its own flags (each factory's `capacity_period_days`,
    /// its `--plan-period-days`). With them, the same import retried after an upgrade to
    /// 0018, or through a replica with other flags, was "a different request" and
    /// refused `ALREADY_EXISTS` (QA 15).
    pub fn as_sent(&self) -> ChangeCatalogue {
        let mut sent = self.clone();
        if let CatalogueEdit::Replace(c) | CatalogueEdit::Merge(c) = &mut sent.edit {
            for f in &mut c.factories {
                f.capacity_period_days = None;
            }
        }
        sent
    }
}

/// The rules a catalogue must satisfy, checked on the result of every change before it is
/// written: called with the catalogue before the change and the catalogue after it, so a
/// rule that a catalogue written by an older server may already break can refuse only a
/// change that makes it worse. The server passes the planner's scenario validation and its
/// own rules across entries (the factories' calendars must fit one scenario).
pub type CatalogueCheck =
    Arc<dyn Fn(&Catalogue, &Catalogue) -> Result<(), DomainError> + Send + Sync>;

/// What a change did (also the recorded response of its idempotency key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogueChanged {
    /// The catalogue's version after the change.
    pub version: i64,
    pub products: i64,
    pub materials: i64,
    pub factories: i64,
    pub suppliers: i64,
}

/// The catalogue after `edit`, or why the edit cannot apply.
pub(crate) fn apply(current: &Catalogue, edit: &CatalogueEdit) -> Result<Catalogue, DomainError> {
    let mut next = current.clone();
    match edit {
        CatalogueEdit::Replace(c) => {
            next = c.clone();
            next.version = current.version;
        }
        CatalogueEdit::Merge(c) => {
            if let (Some(have), Some(given)) = (&current.currency, &c.currency) {
                if have != given && !is_empty(current) {
                    return Err(DomainError::invalid(
                        "currency",
                        format!("the catalogue is in {have}, the change in {given}"),
                    ));
                }
            }
            if c.currency.is_some() {
                next.currency = c.currency.clone();
            }
            if !c.name.is_empty() {
                next.name = c.name.clone();
            }
            if c.material_deadline_days.is_some() {
                next.material_deadline_days = c.material_deadline_days;
            }
            upsert(&mut next.products, &c.products, |p| &p.sku);
            upsert(&mut next.materials, &c.materials, |m| &m.id);
            upsert(&mut next.factories, &c.factories, |f| &f.id);
            upsert(&mut next.suppliers, &c.suppliers, |s| &s.id);
        }
        CatalogueEdit::Delete { kind, id } => {
            let before = count(&next, *kind);
            match kind {
                CatalogueKind::Product => next.products.retain(|p| &p.sku != id),
                CatalogueKind::Material => next.materials.retain(|m| &m.id != id),
                CatalogueKind::Factory => next.factories.retain(|f| &f.id != id),
                CatalogueKind::Supplier => next.suppliers.retain(|s| &s.id != id),
            }
            if count(&next, *kind) == before {
                return Err(DomainError::NotFound {
                    entity: kind.as_str(),
                    id: id.clone(),
                });
            }
        }
    }
    Ok(next)
}

/// Refuses to delete a product or material that other entries name (`ENTRY_IN_USE`): the
/// catalogue left behind would name something it no longer has. Found here rather than
/// by the scenario check every change passes, which would refuse it too, but as a
/// malformed request naming a place in the stored catalogue the delete does not have.
/// Checked after the rules that read the store: a product a campaign sells is
/// `SKU_IN_USE` whatever its lines, which says more.
fn in_use(c: &Catalogue, kind: CatalogueKind, id: &str) -> Result<(), DomainError> {
    let users: Vec<(&'static str, &str)> = match kind {
        CatalogueKind::Product => c
            .factories
            .iter()
            .filter(|f| f.lines.iter().any(|l| l.sku == id))
            .map(|f| ("factory", f.id.as_str()))
            .collect(),
        CatalogueKind::Material => (c.products.iter())
            .filter(|p| p.bom.contains_key(id))
            .map(|p| ("product", p.sku.as_str()))
            .chain(
                (c.suppliers.iter())
                    .filter(|s| s.offers.iter().any(|o| o.material == id))
                    .map(|s| ("supplier", s.id.as_str())),
            )
            .collect(),
        CatalogueKind::Factory | CatalogueKind::Supplier => Vec::new(),
    };
    match users.first() {
        None => Ok(()),
        Some(&(used_by_kind, used_by)) => Err(c2m_domain::Refusal::EntryInUse {
            kind: kind.as_str(),
            id: id.to_owned(),
            used_by_kind,
            used_by: used_by.to_owned(),
            uses: users.len() as i64,
        }
        .into()),
    }
}

fn is_empty(c: &Catalogue) -> bool {
    c.products.is_empty()
        && c.materials.is_empty()
        && c.factories.is_empty()
        && c.suppliers.is_empty()
}

fn count(c: &Catalogue, kind: CatalogueKind) -> usize {
    match kind {
        CatalogueKind::Product => c.products.len(),
        CatalogueKind::Material => c.materials.len(),
        CatalogueKind::Factory => c.factories.len(),
        CatalogueKind::Supplier => c.suppliers.len(),
    }
}

fn upsert<T: Clone>(into: &mut Vec<T>, given: &[T], id: impl Fn(&T) -> &String) {
    for g in given {
        match into.iter_mut().find(|e| id(e) == id(g)) {
            Some(e) => *e = g.clone(),
            None => into.push(g.clone()),
        }
    }
}

/// Ids present in `old` and missing from `new`.
fn removed<T>(old: &[T], new: &[T], id: impl Fn(&T) -> &String) -> Vec<String> {
    let keep: HashSet<&String> = new.iter().map(&id).collect();
    old.iter()
        .map(&id)
        .filter(|i| !keep.contains(i))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// One entry of the catalogue, to write at its place in its list.
pub(crate) enum Entry<'a> {
    Product(&'a CatalogueProduct),
    Material(&'a CatalogueMaterial),
    Factory(&'a CatalogueFactory),
    Supplier(&'a CatalogueSupplier),
}

/// The entries of `new` that are not at the same place in `old`, with their place.
fn changed<'a, T: PartialEq + Sync>(
    old: &'a [T],
    new: &'a [T],
    entry: fn(&'a T) -> Entry<'a>,
) -> impl Iterator<Item = (i64, Entry<'a>)> + Send {
    new.iter()
        .enumerate()
        .filter(move |(i, e)| old.get(*i) != Some(*e))
        .map(move |(i, e)| (i as i64, entry(e)))
}

pub(crate) async fn change_catalogue<D: Backend>(
    tx: &mut Tx<'_, D>,
    c: &Call<(ChangeCatalogue, CatalogueCheck)>,
) -> Result<CatalogueChanged> {
    let ((req, check), now) = (&c.req, c.now);
    let edit = date_calendars(&req.edit, now);
    let key = Keyed::new(OP_CHANGE_CATALOGUE, &req.idempotency_key, &req.as_sent());
    // The key is looked up again once the catalogue's lock is held: the same change sent
    // to another replica may have committed while this one waited (a delete would then
    // find its entry gone), and its answer is this one's.
    let lock = async |tx: &mut Tx<'_, D>| tx.lock_catalogue().await;
    key.run_locked(tx, now, lock, async |tx, current| {
        let next = apply(&current, &edit)?;
        let gone_products = removed(&current.products, &next.products, |p| &p.sku);
        let gone_materials = removed(&current.materials, &next.materials, |m| &m.id);
        // The sku rule first: its error says more than the rules the removal would break.
        sku_rule(tx, &gone_products).await?;
        material_rule(tx, &gone_materials).await?;
        if let CatalogueEdit::Delete { kind, id } = &edit {
            in_use(&current, *kind, id)?;
        }
        currency_rule(tx, &current, &next).await?;
        check(&current, &next)?;

        // Deletes, then the sku rule again: on PostgreSQL a campaign being created holds its
        // product's row, so a delete waits for it, and the second check sees the new campaign.
        let deletes = [
            (CatalogueKind::Product, gone_products.clone()),
            (CatalogueKind::Material, gone_materials),
            (
                CatalogueKind::Factory,
                removed(&current.factories, &next.factories, |f| &f.id),
            ),
            (
                CatalogueKind::Supplier,
                removed(&current.suppliers, &next.suppliers, |s| &s.id),
            ),
        ];
        for (kind, ids) in &deletes {
            if !ids.is_empty() {
                tx.delete_catalogue_entries(*kind, ids).await?;
            }
        }
        sku_rule(tx, &gone_products).await?;
        let (old, new) = (&current, &next);
        let upserts = changed(&old.products, &new.products, Entry::Product)
            .chain(changed(&old.materials, &new.materials, Entry::Material))
            .chain(changed(&old.factories, &new.factories, Entry::Factory))
            .chain(changed(&old.suppliers, &new.suppliers, Entry::Supplier));
        for (pos, entry) in upserts {
            tx.upsert_entry(pos, entry).await?;
        }
        let version = current.version + 1;
        tx.set_catalogue_meta(&next, version, now).await?;
        Ok(CatalogueChanged {
            version,
            products: next.products.len() as i64,
            materials: next.materials.len() as i64,
            factories: next.factories.len() as i64,
            suppliers: next.suppliers.len() as i64,
        })
    })
    .await
}

/// Refuses to remove a product some campaign sells.
async fn sku_rule<D: Backend>(tx: &mut Tx<'_, D>, gone: &[String]) -> Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    match tx.sku_in_use(gone).await? {
        Some(sku) => Err(DomainError::from(c2m_domain::Refusal::SkuInUse { sku }).into()),
        None => Ok(()),
    }
}

/// No material leaves the catalogue while a work order that takes it from stock may still
/// be rejected (issued or accepted): a rejection puts that stock back on hand, and with
/// no material row it would be lost. Work orders only move forward, so one found past
/// those states stays so; a rejection takes the catalogue's lock too (through the planning
/// lock), so it cannot slip in between this check and the delete.
async fn material_rule<D: Backend>(tx: &mut Tx<'_, D>, gone: &[String]) -> Result<()> {
    if gone.is_empty() {
        return Ok(());
    }
    for wo in tx.rejectable_work_orders().await? {
        let taken = wo
            .order
            .materials
            .iter()
            .find(|m| m.supplier.is_none() && m.quantity > 0.0 && gone.contains(&m.material));
        if let Some(m) = taken {
            return Err(DomainError::from(c2m_domain::Refusal::MaterialInUse {
                material: m.material.clone(),
                work_order: wo.id,
            })
            .into());
        }
    }
    Ok(())
}

/// The check in `create_campaign`: the sku must be in the catalogue, and the campaign in
/// the catalogue's currency (costs and prices are compared, in advice and margins); both
/// stay so until the campaign is written.
pub(crate) async fn require_product<D: Backend>(
    tx: &mut Tx<'_, D>,
    sku: &str,
    currency: &str,
) -> Result<()> {
    if !tx.hold_product(sku).await? {
        return Err(DomainError::from(c2m_domain::Refusal::SkuNotInCatalogue {
            sku: sku.to_owned(),
        })
        .into());
    }
    match tx.hold_currency().await? {
        Some(catalogue) if catalogue != currency => {
            Err(DomainError::from(c2m_domain::Refusal::CurrencyMismatch {
                campaign: currency.to_owned(),
                catalogue,
            })
            .into())
        }
        _ => Ok(()),
    }
}

/// A catalogue may not move to another currency while campaigns sell in the old one.
async fn currency_rule<D: Backend>(
    tx: &mut Tx<'_, D>,
    current: &Catalogue,
    next: &Catalogue,
) -> Result<()> {
    let Some(catalogue) = next.currency.as_deref() else {
        return Ok(());
    };
    if current.currency.as_deref() == Some(catalogue) {
        return Ok(());
    }
    match tx.campaign_currency_other_than(catalogue).await? {
        Some(campaign) => Err(DomainError::from(c2m_domain::Refusal::CurrencyMismatch {
            campaign,
            catalogue: catalogue.to_owned(),
        })
        .into()),
        None => Ok(()),
    }
}

/// The catalogue: the production data the planner needs (see the [module docs](self)).
#[async_trait]
pub trait CatalogueStore: Send + Sync + 'static {
    /// The whole catalogue, read in one snapshot.
    async fn catalogue(&self) -> Result<Catalogue>;

    /// Applies the edit if the resulting catalogue passes `check` (given the catalogue
    /// before the edit and after it) and no campaign's sku disappears (`FailedPrecondition` naming the sku). Idempotent by key.
    async fn change_catalogue(
        &self,
        req: &ChangeCatalogue,
        check: CatalogueCheck,
        now: DateTime<Utc>,
    ) -> Result<CatalogueChanged>;
}

#[async_trait]
impl<E: Engine> CatalogueStore for E {
    #[tracing::instrument(skip(self), err(level = "debug"))]
    async fn catalogue(&self) -> Result<Catalogue> {
        self.read(&(), |tx, _| Box::pin(tx.read_catalogue())).await
    }

    #[tracing::instrument(skip(self, check), err(level = "debug"))]
    async fn change_catalogue(
        &self,
        req: &ChangeCatalogue,
        check: CatalogueCheck,
        now: DateTime<Utc>,
    ) -> Result<CatalogueChanged> {
        self.alone((req.clone(), check), now, |tx, c| {
            Box::pin(change_catalogue(tx, c))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `calendar` column holds a bare list of hours where an older server wrote it,
    /// and an object with the calendar's dates since; both read.
    #[test]
    fn a_calendar_reads_as_stored_before_and_after_it_had_dates() {
        let bare: FactoryCalendar = serde_json::from_str("[40.0, 0.0]").unwrap();
        assert_eq!(bare.hours, [40.0, 0.0]);
        assert_eq!(bare.dates(), None);
        let start = DateTime::parse_from_rfc3339("2030-03-04T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let dated = FactoryCalendar {
            hours: vec![40.0, 0.0],
            period_days: Some(7),
            starts_at: Some(start),
        };
        let text = serde_json::to_string(&dated).unwrap();
        let back: FactoryCalendar = serde_json::from_str(&text).unwrap();
        assert_eq!(back, dated, "{text}");
        assert_eq!(back.dates(), Some((start, chrono::Duration::days(7))));
    }

    /// A change's calendars without a start are dated at the change's moment; one given
    /// a start keeps it.
    #[test]
    fn a_change_dates_its_calendars_that_have_no_start() {
        let now = DateTime::parse_from_rfc3339("2030-03-04T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let given = now + chrono::Duration::days(3);
        let factory = |id: &str, starts_at| CatalogueFactory {
            id: id.into(),
            capacity_hours: 40.0,
            capacity_period_days: None,
            lines: vec![],
            calendar: Some(FactoryCalendar {
                hours: vec![40.0],
                period_days: Some(7),
                starts_at,
            }),
        };
        let edit = CatalogueEdit::Merge(Catalogue {
            factories: vec![factory("a", None), factory("b", Some(given))],
            ..Catalogue::default()
        });
        let CatalogueEdit::Merge(dated) = date_calendars(&edit, now) else {
            unreachable!()
        };
        let starts: Vec<_> = (dated.factories.iter())
            .map(|f| f.calendar.as_ref().unwrap().starts_at)
            .collect();
        assert_eq!(starts, [Some(now), Some(given)]);
    }

    /// A product a factory's line makes, or a material a bill of materials takes or a
    /// supplier offers, is not deleted alone: `ENTRY_IN_USE` names the first entry that
    /// names it and counts them; once they no longer do, the same delete goes through.
    #[test]
    fn a_delete_of_an_entry_others_name_is_refused_until_they_do_not() {
        let line = |sku: &str| FactoryLine {
            sku: sku.into(),
            unit_cost: 1.0,
            setup_cost: 0.0,
            min_run: 0,
            hours_per_unit: 0.1,
            setup_hours: 0.0,
        };
        let factory = |id: &str, lines| CatalogueFactory {
            id: id.into(),
            capacity_hours: 40.0,
            capacity_period_days: None,
            lines,
            calendar: None,
        };
        let offer = SupplierOffer {
            material: "steel".into(),
            moq: 0.0,
            pack_size: None,
            max_qty: None,
            order_cost: 0.0,
            breaks: vec![OfferPriceBreak {
                min_qty: 0.0,
                unit_price: 2.0,
            }],
        };
        let c = Catalogue {
            products: ["kettle", "pot"]
                .map(|sku| CatalogueProduct {
                    sku: sku.into(),
                    bom: BTreeMap::from([("steel".to_owned(), 1.0)]),
                })
                .into(),
            materials: vec![CatalogueMaterial {
                id: "steel".into(),
                unit: "kg".into(),
                on_hand: 0.0,
                holding_cost: 0.0,
            }],
            factories: vec![
                factory("f1", vec![line("pot")]),
                factory("f2", vec![line("kettle")]),
                factory("f3", vec![line("pot"), line("kettle")]),
            ],
            suppliers: vec![CatalogueSupplier {
                id: "s1".into(),
                lead_days: 0,
                offers: vec![offer],
            }],
            ..Catalogue::default()
        };
        // As `change_catalogue` runs them, without the rules that read the store.
        let delete = |c: &Catalogue, kind, id: &str| {
            let next = apply(
                c,
                &CatalogueEdit::Delete {
                    kind,
                    id: id.into(),
                },
            )?;
            in_use(c, kind, id).map(|()| next)
        };
        let refused = |kind, id: &str, used_by_kind, used_by: &str, uses| {
            Err(DomainError::Refused(c2m_domain::Refusal::EntryInUse {
                kind,
                id: id.into(),
                used_by_kind,
                used_by: used_by.into(),
                uses,
            }))
        };
        assert_eq!(
            delete(&c, CatalogueKind::Product, "kettle"),
            refused("product", "kettle", "factory", "f2", 2)
        );
        assert_eq!(
            delete(&c, CatalogueKind::Material, "steel"),
            refused("material", "steel", "product", "kettle", 3)
        );
        let Err(e) = delete(&c, CatalogueKind::Product, "kettle") else {
            unreachable!()
        };
        assert_eq!(e.reason(), "ENTRY_IN_USE");
        assert!(
            e.to_string()
                .starts_with("product `kettle` is named by factory `f2` and one more entry;"),
            "{e}"
        );
        // Not found is said before in use, and entries nothing names go.
        assert!(matches!(
            delete(&c, CatalogueKind::Product, "pan"),
            Err(DomainError::NotFound { .. })
        ));
        let without_f1 = delete(&c, CatalogueKind::Factory, "f1").unwrap();
        assert_eq!(without_f1.factories.len(), 2);

        // The lines gone (each factory imported again without them), the product goes.
        let mut no_lines = c.clone();
        no_lines.factories[1].lines.clear();
        no_lines.factories[2].lines.retain(|l| l.sku != "kettle");
        let after = delete(&no_lines, CatalogueKind::Product, "kettle").unwrap();
        assert_eq!(after.products.len(), 1);
    }
}
