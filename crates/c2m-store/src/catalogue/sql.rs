//! The SQL of the catalogue, written once for both backends: the [`CatalogueTx`]
//! implementation.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    Catalogue, CatalogueFactory, CatalogueKind, CatalogueMaterial, CatalogueProduct,
    CatalogueSupplier, CatalogueTx,
};
use crate::dialect::{Backend, Columns, Tx};
use crate::planning::{from_json, json};
use crate::StoreError;

/// The catalogue's one row of scenario-level fields; PostgreSQL's writers lock it, which is
/// the catalogue's lock (and the planning lock, [`crate::planning`]).
const META: &str =
    "SELECT name, currency, material_deadline_days, version FROM catalogue_meta WHERE id = 1";
const META_FOR_UPDATE: &str = "SELECT name, currency, material_deadline_days, version \
     FROM catalogue_meta WHERE id = 1 FOR UPDATE";

/// A product by sku; PostgreSQL's campaign writers hold its row (`FOR SHARE`) so that it
/// cannot be deleted before their campaign is written.
const PRODUCT: &str = "SELECT sku FROM catalogue_products WHERE sku = $1";
const PRODUCT_FOR_SHARE: &str = "SELECT sku FROM catalogue_products WHERE sku = $1 FOR SHARE";

#[async_trait]
impl<D: Backend> CatalogueTx for Tx<D> {
    async fn lock_catalogue(&mut self) -> Result<Catalogue, StoreError> {
        read_catalogue(self, D::locking(META, META_FOR_UPDATE)).await
    }

    async fn read_catalogue(&mut self) -> Result<Catalogue, StoreError> {
        read_catalogue(self, META).await
    }

    async fn delete_catalogue_entries(
        &mut self,
        kind: CatalogueKind,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let sql = match kind {
            CatalogueKind::Product => "DELETE FROM catalogue_products WHERE sku = $1",
            CatalogueKind::Material => "DELETE FROM catalogue_materials WHERE id = $1",
            CatalogueKind::Factory => "DELETE FROM catalogue_factories WHERE id = $1",
            CatalogueKind::Supplier => "DELETE FROM catalogue_suppliers WHERE id = $1",
        };
        for id in ids {
            D::sql(sql).bind(id).execute(self.conn()).await?;
        }
        Ok(())
    }

    async fn upsert_product(&mut self, pos: i64, p: &CatalogueProduct) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO catalogue_products (sku, position, bom) VALUES ($1, $2, $3) \
             ON CONFLICT (sku) DO UPDATE SET position = excluded.position, \
             bom = excluded.bom",
        )
        .bind(&p.sku)
        .bind(pos)
        .bind(json(&p.bom)?)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn upsert_material(&mut self, pos: i64, m: &CatalogueMaterial) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO catalogue_materials (id, position, unit, on_hand, holding_cost) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (id) DO UPDATE SET position = excluded.position, \
             unit = excluded.unit, on_hand = excluded.on_hand, \
             holding_cost = excluded.holding_cost",
        )
        .bind(&m.id)
        .bind(pos)
        .bind(&m.unit)
        .bind(m.on_hand)
        .bind(m.holding_cost)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn upsert_factory(&mut self, pos: i64, f: &CatalogueFactory) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO catalogue_factories (id, position, capacity_hours, lines) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET position = excluded.position, \
             capacity_hours = excluded.capacity_hours, lines = excluded.lines",
        )
        .bind(&f.id)
        .bind(pos)
        .bind(f.capacity_hours)
        .bind(json(&f.lines)?)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn upsert_supplier(&mut self, pos: i64, s: &CatalogueSupplier) -> Result<(), StoreError> {
        D::sql(
            "INSERT INTO catalogue_suppliers (id, position, lead_days, offers) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET position = excluded.position, \
             lead_days = excluded.lead_days, offers = excluded.offers",
        )
        .bind(&s.id)
        .bind(pos)
        .bind(s.lead_days)
        .bind(json(&s.offers)?)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn set_catalogue_meta(
        &mut self,
        c: &Catalogue,
        version: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        D::sql(
            "UPDATE catalogue_meta SET name = $1, currency = $2, \
             material_deadline_days = $3, version = $4, updated_at = $5 WHERE id = 1",
        )
        .bind(&c.name)
        .bind(&c.currency)
        .bind(c.material_deadline_days)
        .bind(version)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn sku_in_use(&mut self, skus: &[String]) -> Result<Option<String>, StoreError> {
        for sku in skus {
            let used = D::sql("SELECT sku FROM campaigns WHERE sku = $1 LIMIT 1")
                .bind(sku)
                .fetch_optional(self.conn())
                .await?;
            if let Some(row) = used {
                return Ok(Some(row.text("sku")?));
            }
        }
        Ok(None)
    }

    async fn hold_product(&mut self, sku: &str) -> Result<bool, StoreError> {
        let found = D::sql(D::locking(PRODUCT, PRODUCT_FOR_SHARE))
            .bind(sku)
            .fetch_optional(self.conn())
            .await?;
        Ok(found.is_some())
    }
}

/// The whole catalogue, its scenario-level row read with `meta`.
async fn read_catalogue<D: Backend>(
    tx: &mut Tx<D>,
    meta: &'static str,
) -> Result<Catalogue, StoreError> {
    let meta = D::sql(meta).fetch_one(tx.conn()).await?;
    let mut c = Catalogue {
        version: meta.int("version")?,
        name: meta.text("name")?,
        currency: meta.text_opt("currency")?,
        material_deadline_days: meta.int_opt("material_deadline_days")?,
        ..Catalogue::default()
    };
    for r in D::sql("SELECT sku, bom FROM catalogue_products ORDER BY position, sku")
        .fetch_all(tx.conn())
        .await?
    {
        c.products.push(CatalogueProduct {
            sku: r.text("sku")?,
            bom: from_json("bom", &r.text("bom")?)?,
        });
    }
    for r in D::sql(
        "SELECT id, unit, on_hand, holding_cost FROM catalogue_materials ORDER BY position, id",
    )
    .fetch_all(tx.conn())
    .await?
    {
        c.materials.push(CatalogueMaterial {
            id: r.text("id")?,
            unit: r.text("unit")?,
            on_hand: r.real("on_hand")?,
            holding_cost: r.real("holding_cost")?,
        });
    }
    for r in
        D::sql("SELECT id, capacity_hours, lines FROM catalogue_factories ORDER BY position, id")
            .fetch_all(tx.conn())
            .await?
    {
        c.factories.push(CatalogueFactory {
            id: r.text("id")?,
            capacity_hours: r.real("capacity_hours")?,
            lines: from_json("lines", &r.text("lines")?)?,
        });
    }
    for r in D::sql("SELECT id, lead_days, offers FROM catalogue_suppliers ORDER BY position, id")
        .fetch_all(tx.conn())
        .await?
    {
        c.suppliers.push(CatalogueSupplier {
            id: r.text("id")?,
            lead_days: r.int("lead_days")?,
            offers: from_json("offers", &r.text("offers")?)?,
        });
    }
    Ok(c)
}
