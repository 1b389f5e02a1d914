//! The SQL of the catalogue, written once for both backends.

use chrono::{DateTime, Utc};

use super::{
    Catalogue, CatalogueFactory, CatalogueKind, CatalogueMaterial, CatalogueProduct,
    CatalogueSupplier, Entry,
};
use crate::dialect::{columns, Backend, Columns, Tx};
use crate::planning::{from_json, json};
use crate::Result;

/// The catalogue's one row of scenario-level fields; PostgreSQL's writers lock it, which is
/// the catalogue's lock (and the planning lock, [`crate::planning`]).
const META: &str =
    "SELECT name, currency, material_deadline_days, version FROM catalogue_meta WHERE id = 1";
const META_FOR_UPDATE: &str = "SELECT name, currency, material_deadline_days, version \
     FROM catalogue_meta WHERE id = 1 FOR UPDATE";

/// Each table's rows in the catalogue's order, and its upsert.
const PRODUCTS: &str = "SELECT sku, bom FROM catalogue_products ORDER BY position, sku";
const UPSERT_PRODUCT: &str = "INSERT INTO catalogue_products (sku, position, bom) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (sku) DO UPDATE SET position = excluded.position, bom = excluded.bom";

const MATERIALS: &str = "SELECT id, unit, on_hand, holding_cost FROM catalogue_materials \
     ORDER BY position, id";
const UPSERT_MATERIAL: &str = "INSERT INTO catalogue_materials \
     (id, position, unit, on_hand, holding_cost) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (id) DO UPDATE SET position = excluded.position, unit = excluded.unit, \
     on_hand = excluded.on_hand, holding_cost = excluded.holding_cost";

const FACTORIES: &str = "SELECT id, capacity_hours, capacity_period_days, lines, calendar \
     FROM catalogue_factories \
     ORDER BY position, id";
const UPSERT_FACTORY: &str = "INSERT INTO catalogue_factories \
     (id, position, capacity_hours, capacity_period_days, lines, calendar) \
     VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (id) DO UPDATE SET position = excluded.position, \
     capacity_hours = excluded.capacity_hours, \
     capacity_period_days = excluded.capacity_period_days, lines = excluded.lines, \
     calendar = excluded.calendar";

const SUPPLIERS: &str =
    "SELECT id, lead_days, offers FROM catalogue_suppliers ORDER BY position, id";
const UPSERT_SUPPLIER: &str = "INSERT INTO catalogue_suppliers \
     (id, position, lead_days, offers) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (id) DO UPDATE SET position = excluded.position, \
     lead_days = excluded.lead_days, offers = excluded.offers";

/// A product by sku; PostgreSQL's campaign writers hold its row (`FOR SHARE`) so that it
/// cannot be deleted before their campaign is written.
const PRODUCT: &str = "SELECT sku FROM catalogue_products WHERE sku = $1";
const PRODUCT_FOR_SHARE: &str = "SELECT sku FROM catalogue_products WHERE sku = $1 FOR SHARE";
const CURRENCY: &str = "SELECT currency FROM catalogue_meta WHERE id = 1";
const CURRENCY_FOR_SHARE: &str = "SELECT currency FROM catalogue_meta WHERE id = 1 FOR SHARE";

/// The catalogue's tables.
impl<D: Backend> Tx<'_, D> {
    /// The whole catalogue; in a write transaction it is held against other catalogue
    /// writers (and plans reserving stock) until the transaction ends.
    pub(crate) async fn lock_catalogue(&mut self) -> Result<Catalogue> {
        read_catalogue(self, D::locking(META, META_FOR_UPDATE)).await
    }

    /// The whole catalogue, without holding it (for reads in a snapshot).
    pub(crate) async fn read_catalogue(&mut self) -> Result<Catalogue> {
        read_catalogue(self, META).await
    }

    pub(crate) async fn delete_catalogue_entries(
        &mut self,
        kind: CatalogueKind,
        ids: &[String],
    ) -> Result<()> {
        let sql = match kind {
            CatalogueKind::Product => "DELETE FROM catalogue_products WHERE sku = $1",
            CatalogueKind::Material => "DELETE FROM catalogue_materials WHERE id = $1",
            CatalogueKind::Factory => "DELETE FROM catalogue_factories WHERE id = $1",
            CatalogueKind::Supplier => "DELETE FROM catalogue_suppliers WHERE id = $1",
        };
        for id in ids {
            D::query(sql, (id,)).execute(self).await?;
        }
        Ok(())
    }

    /// Writes an entry at its place in its list, replacing the entry with its id.
    pub(crate) async fn upsert_entry(&mut self, pos: i64, entry: Entry<'_>) -> Result<()> {
        let calendar = match &entry {
            Entry::Factory(f) => f.calendar.as_ref().map(json).transpose()?,
            _ => None,
        };
        let statement = match entry {
            Entry::Product(p) => D::query(UPSERT_PRODUCT, (&p.sku, pos, json(&p.bom)?)),
            Entry::Material(m) => {
                let params = (&m.id, pos, &m.unit, m.on_hand, m.holding_cost);
                D::query(UPSERT_MATERIAL, params)
            }
            Entry::Factory(f) => {
                let params = (
                    &f.id,
                    pos,
                    f.capacity_hours,
                    f.capacity_period_days,
                    json(&f.lines)?,
                    &calendar,
                );
                D::query(UPSERT_FACTORY, params)
            }
            Entry::Supplier(s) => {
                let params = (&s.id, pos, s.lead_days, json(&s.offers)?);
                D::query(UPSERT_SUPPLIER, params)
            }
        };
        statement.run(self).await
    }

    /// Writes the scenario-level fields and the new version.
    pub(crate) async fn set_catalogue_meta(
        &mut self,
        c: &Catalogue,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let sql = "UPDATE catalogue_meta SET name = $1, currency = $2, \
             material_deadline_days = $3, version = $4, updated_at = $5 WHERE id = 1";
        let params = (&c.name, &c.currency, c.material_deadline_days, version, now);
        D::query(sql, params).run(self).await
    }

    /// A sku among `skus` that some campaign sells, if any.
    pub(crate) async fn sku_in_use(&mut self, skus: &[String]) -> Result<Option<String>> {
        for sku in skus {
            let sql = "SELECT sku FROM campaigns WHERE sku = $1 LIMIT 1";
            if let Some(row) = D::query(sql, (sku,)).fetch_optional(self).await? {
                return Ok(Some(row.text("sku")?));
            }
        }
        Ok(None)
    }

    /// The catalogue's currency; in a write transaction it is held (against a change of
    /// catalogue) until the transaction ends.
    pub(crate) async fn hold_currency(&mut self) -> Result<Option<String>> {
        let sql = D::locking(CURRENCY, CURRENCY_FOR_SHARE);
        match D::query(sql, ()).fetch_optional(self).await? {
            Some(row) => row.text_opt("currency"),
            None => Ok(None),
        }
    }

    /// A currency of some campaign other than `currency`, if there is one.
    pub(crate) async fn campaign_currency_other_than(
        &mut self,
        currency: &str,
    ) -> Result<Option<String>> {
        let sql = "SELECT currency FROM campaigns WHERE currency <> $1 LIMIT 1";
        match D::query(sql, (currency,)).fetch_optional(self).await? {
            Some(row) => Ok(Some(row.text("currency")?)),
            None => Ok(None),
        }
    }

    /// Whether the catalogue has the product; in a write transaction the product is held
    /// (against deletion) until the transaction ends.
    pub(crate) async fn hold_product(&mut self, sku: &str) -> Result<bool> {
        let sql = D::locking(PRODUCT, PRODUCT_FOR_SHARE);
        Ok(D::query(sql, (sku,)).fetch_optional(self).await?.is_some())
    }
}

/// The whole catalogue, its scenario-level row read with `meta`.
async fn read_catalogue<D: Backend>(tx: &mut Tx<'_, D>, meta: &'static str) -> Result<Catalogue> {
    let meta = D::query(meta, ()).fetch_one(tx).await?;
    let mut c = columns!(meta => Catalogue {
        version: int, name: text, currency: text_opt, material_deadline_days: int_opt;
        ..Catalogue::default()
    });
    let product = |r: &D::Row| {
        Ok(columns!(r => CatalogueProduct { sku: text; bom: from_json("bom", &r.text("bom")?)? }))
    };
    c.products = D::query(PRODUCTS, ()).all(tx, product).await?;
    let material = |r: &D::Row| {
        Ok(columns!(r => CatalogueMaterial {
            id: text, unit: text, on_hand: real, holding_cost: real
        }))
    };
    c.materials = D::query(MATERIALS, ()).all(tx, material).await?;
    let factory = |r: &D::Row| {
        Ok(columns!(r => CatalogueFactory {
            id: text, capacity_hours: real, capacity_period_days: int_opt;
            lines: from_json("lines", &r.text("lines")?)?,
            calendar: r
                .text_opt("calendar")?
                .map(|c| from_json("calendar", &c))
                .transpose()?,
        }))
    };
    c.factories = D::query(FACTORIES, ()).all(tx, factory).await?;
    let supplier = |r: &D::Row| {
        Ok(columns!(r => CatalogueSupplier {
            id: text, lead_days: int;
            offers: from_json("offers", &r.text("offers")?)?,
        }))
    };
    c.suppliers = D::query(SUPPLIERS, ()).all(tx, supplier).await?;
    Ok(c)
}
