//! The catalogue: the production data the planner needs, held in the store.
//!
//! The types here are the store's own and mirror the scenario contract
//! (`docs/scenario-format.md`) field for field, so that the server can turn the
//! catalogue into a planner scenario and back without the store knowing the planner. The
//! scenario *rules* (no negative quantities, known ids, sorted price breaks) are not
//! repeated here: every change is checked by a [`CatalogueCheck`] the caller passes in
//! (the server passes the planner's validation), on the catalogue as it would be after the
//! change, inside the change's transaction.
//!
//! A change is written once, in [`change_catalogue`], over [`CatalogueTx`]: read the
//! catalogue under its lock, apply the change in memory, check it, write the difference,
//! refuse if a campaign's sku would disappear, record the idempotency key.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::{DomainError, Fingerprint, IdempotencyKey};

use crate::idempotency::{record, replay, IdempotencyTx};
use crate::rows::micros;
use crate::StoreError;

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
    pub capacity_hours: f64,
    pub lines: Vec<FactoryLine>,
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

/// The rules a catalogue must satisfy, checked on the result of every change before it is
/// written. The server passes the planner's scenario validation.
pub type CatalogueCheck = Arc<dyn Fn(&Catalogue) -> Result<(), DomainError> + Send + Sync>;

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

/// The catalogue's tables inside a backend's transaction (plain reads and writes).
#[async_trait]
pub(crate) trait CatalogueTx: IdempotencyTx {
    /// The whole catalogue; in a write transaction it is held against other catalogue
    /// writers (and plans reserving stock) until the transaction ends.
    async fn lock_catalogue(&mut self) -> Result<Catalogue, StoreError>;

    /// The whole catalogue, without holding it (for reads in a snapshot).
    async fn read_catalogue(&mut self) -> Result<Catalogue, StoreError>;

    /// One of the two above.
    async fn read_catalogue_locked(&mut self, lock: bool) -> Result<Catalogue, StoreError>;

    async fn delete_catalogue_entries(
        &mut self,
        kind: CatalogueKind,
        ids: &[String],
    ) -> Result<(), StoreError>;

    async fn upsert_product(&mut self, pos: i64, p: &CatalogueProduct) -> Result<(), StoreError>;
    async fn upsert_material(&mut self, pos: i64, m: &CatalogueMaterial) -> Result<(), StoreError>;
    async fn upsert_factory(&mut self, pos: i64, f: &CatalogueFactory) -> Result<(), StoreError>;
    async fn upsert_supplier(&mut self, pos: i64, s: &CatalogueSupplier) -> Result<(), StoreError>;

    /// Writes the scenario-level fields and the new version.
    async fn set_catalogue_meta(
        &mut self,
        c: &Catalogue,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// A sku among `skus` that some campaign sells, if any.
    async fn sku_in_use(&mut self, skus: &[String]) -> Result<Option<String>, StoreError>;

    /// Whether the catalogue has the product; in a write transaction the product is held
    /// (against deletion) until the transaction ends.
    async fn hold_product(&mut self, sku: &str) -> Result<bool, StoreError>;
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

pub(crate) async fn change_catalogue(
    tx: &mut (impl CatalogueTx + ?Sized),
    req: &ChangeCatalogue,
    check: &CatalogueCheck,
    now: DateTime<Utc>,
) -> Result<CatalogueChanged, StoreError> {
    let now = micros(now);
    let fingerprint = Fingerprint::of(OP_CHANGE_CATALOGUE, req);
    if let Some(done) = replay(tx, OP_CHANGE_CATALOGUE, &req.idempotency_key, &fingerprint).await? {
        return Ok(done);
    }
    let current = tx.lock_catalogue().await?;
    let next = apply(&current, &req.edit)?;
    let gone_products = removed(&current.products, &next.products, |p| &p.sku);
    // The sku rule first: its error says more than the rules the removal would break.
    sku_rule(tx, &gone_products).await?;
    check(&next)?;

    // Deletes, then the sku rule again: on PostgreSQL a campaign being created holds its
    // product's row, so a delete waits for it, and the second check sees the new campaign.
    let deletes = [
        (CatalogueKind::Product, gone_products.clone()),
        (
            CatalogueKind::Material,
            removed(&current.materials, &next.materials, |m| &m.id),
        ),
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
    for (i, p) in next.products.iter().enumerate() {
        if current.products.get(i) != Some(p) {
            tx.upsert_product(i as i64, p).await?;
        }
    }
    for (i, m) in next.materials.iter().enumerate() {
        if current.materials.get(i) != Some(m) {
            tx.upsert_material(i as i64, m).await?;
        }
    }
    for (i, f) in next.factories.iter().enumerate() {
        if current.factories.get(i) != Some(f) {
            tx.upsert_factory(i as i64, f).await?;
        }
    }
    for (i, s) in next.suppliers.iter().enumerate() {
        if current.suppliers.get(i) != Some(s) {
            tx.upsert_supplier(i as i64, s).await?;
        }
    }
    let version = current.version + 1;
    tx.set_catalogue_meta(&next, version, now).await?;
    let changed = CatalogueChanged {
        version,
        products: next.products.len() as i64,
        materials: next.materials.len() as i64,
        factories: next.factories.len() as i64,
        suppliers: next.suppliers.len() as i64,
    };
    record(
        tx,
        OP_CHANGE_CATALOGUE,
        &req.idempotency_key,
        &fingerprint,
        &changed,
        now,
    )
    .await?;
    Ok(changed)
}

/// Refuses to remove a product some campaign sells.
async fn sku_rule(tx: &mut (impl CatalogueTx + ?Sized), gone: &[String]) -> Result<(), StoreError> {
    if gone.is_empty() {
        return Ok(());
    }
    match tx.sku_in_use(gone).await? {
        Some(sku) => Err(DomainError::from(c2m_domain::Refusal::SkuInUse { sku }).into()),
        None => Ok(()),
    }
}

/// The check in `create_campaign`: the sku must be in the catalogue (and stays there until
/// the campaign is written).
pub(crate) async fn require_product(
    tx: &mut (impl CatalogueTx + ?Sized),
    sku: &str,
) -> Result<(), StoreError> {
    if tx.hold_product(sku).await? {
        Ok(())
    } else {
        Err(DomainError::from(c2m_domain::Refusal::SkuNotInCatalogue {
            sku: sku.to_owned(),
        })
        .into())
    }
}
