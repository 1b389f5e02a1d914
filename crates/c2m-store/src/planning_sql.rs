//! The SQL of the catalogue and planning tables, written once for both backends.
//!
//! The statements are the same text on SQLite and PostgreSQL (`$n` placeholders work on
//! both); what differs is passed in by each backend's `planning.rs`: its transaction type,
//! how a timestamp is bound, and the row-lock clauses PostgreSQL needs (SQLite's one
//! writer already holds the database's write lock).

macro_rules! catalogue_planning_sql {
    (
        tx = $tx:ty,
        row = $row:ty,
        ts = $ts:path,
        for_update = $for_update:literal,
        for_share = $for_share:literal $(,)?
    ) => {
        use ::async_trait::async_trait;
        use ::chrono::{DateTime, Utc};
        use ::sqlx::Row;

        use ::c2m_domain::{BatchId, Page, PageRequest};

        use $crate::catalogue::{
            Catalogue, CatalogueFactory, CatalogueKind, CatalogueMaterial, CatalogueProduct,
            CatalogueSupplier, CatalogueTx,
        };
        use $crate::access::{NewToken, StoredToken, TokenTx};
        use $crate::factory::{
            parse_tally, shipped_fraction, BatchShare, FactoryPosition, FactoryTx,
        };
        use $crate::planning::{
            from_json, json, NewPlan, PlanStatus, PlanSummary, PlanningTx, QueuedBatch,
            StoredPlan, WorkOrder, WorkOrderBody, QUEUED_BATCHES, UNPLANNED_UNITS,
        };
        use ::c2m_domain::production::{Progress, Tally, WorkOrderState};
        use $crate::dialect::{page_limit, Columns};
        use $crate::pooling::batch_columns;
        use $crate::StoreError;

        fn plan_status(s: &str) -> Result<PlanStatus, StoreError> {
            PlanStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("plan status {s:?}")))
        }

        const SUMMARY: &str = "SELECT p.seq, p.id, p.status, p.currency, p.total_cost, p.gap, \
             p.solver, p.created_at, \
             (SELECT COUNT(*) FROM plan_batches x WHERE x.plan_id = p.id) AS batch_count \
             FROM plans p ";

        const WORK_ORDER: &str = "SELECT id, plan_id, factory_id, seq, body, due_at, \
             created_at, state, tally, state_at FROM work_orders ";

        fn work_order(w: &$row) -> Result<WorkOrder, StoreError> {
            let body: WorkOrderBody = from_json("work order", &w.text("body")?)?;
            let state = w.text("state")?;
            Ok(WorkOrder {
                id: w.text("id")?,
                plan_id: w.text("plan_id")?,
                factory_id: w.text("factory_id")?,
                seq: w.int("seq")?,
                runs: body.runs,
                materials: body.materials,
                due_at: w.ts("due_at")?,
                created_at: w.ts("created_at")?,
                state: WorkOrderState::parse(&state)
                    .ok_or_else(|| StoreError::Corrupt(format!("work order state {state:?}")))?,
            })
        }

        fn plan_summary(r: &$row) -> Result<PlanSummary, StoreError> {
            Ok(PlanSummary {
                id: r.text("id")?,
                status: plan_status(&r.text("status")?)?,
                currency: r.text("currency")?,
                total_cost: r.int("total_cost")?,
                gap: r.try_get("gap")?,
                solver: r.text("solver")?,
                batches: r.int("batch_count")?,
                created_at: r.ts("created_at")?,
            })
        }

        #[async_trait]
        impl CatalogueTx for $tx {
            async fn lock_catalogue(&mut self) -> Result<Catalogue, StoreError> {
                self.read_catalogue_locked(true).await
            }

            async fn read_catalogue(&mut self) -> Result<Catalogue, StoreError> {
                self.read_catalogue_locked(false).await
            }

            async fn read_catalogue_locked(&mut self, lock: bool) -> Result<Catalogue, StoreError> {
                const META: &str = "SELECT name, currency, material_deadline_days, version \
                     FROM catalogue_meta WHERE id = 1";
                let sql = if lock { format!("{META}{}", $for_update) } else { META.to_owned() };
                let meta = sqlx::query(&sql)
                .fetch_one(self.conn())
                .await?;
                let mut c = Catalogue {
                    version: meta.try_get("version")?,
                    name: meta.try_get("name")?,
                    currency: meta.try_get("currency")?,
                    material_deadline_days: meta.try_get("material_deadline_days")?,
                    ..Catalogue::default()
                };
                for r in sqlx::query("SELECT sku, bom FROM catalogue_products ORDER BY position, sku")
                    .fetch_all(self.conn())
                    .await?
                {
                    c.products.push(CatalogueProduct {
                        sku: r.try_get("sku")?,
                        bom: from_json("bom", &r.try_get::<String, _>("bom")?)?,
                    });
                }
                for r in sqlx::query(
                    "SELECT id, unit, on_hand, holding_cost FROM catalogue_materials \
                     ORDER BY position, id",
                )
                .fetch_all(self.conn())
                .await?
                {
                    c.materials.push(CatalogueMaterial {
                        id: r.try_get("id")?,
                        unit: r.try_get("unit")?,
                        on_hand: r.try_get("on_hand")?,
                        holding_cost: r.try_get("holding_cost")?,
                    });
                }
                for r in sqlx::query(
                    "SELECT id, capacity_hours, lines FROM catalogue_factories \
                     ORDER BY position, id",
                )
                .fetch_all(self.conn())
                .await?
                {
                    c.factories.push(CatalogueFactory {
                        id: r.try_get("id")?,
                        capacity_hours: r.try_get("capacity_hours")?,
                        lines: from_json("lines", &r.try_get::<String, _>("lines")?)?,
                    });
                }
                for r in sqlx::query(
                    "SELECT id, lead_days, offers FROM catalogue_suppliers ORDER BY position, id",
                )
                .fetch_all(self.conn())
                .await?
                {
                    c.suppliers.push(CatalogueSupplier {
                        id: r.try_get("id")?,
                        lead_days: r.try_get("lead_days")?,
                        offers: from_json("offers", &r.try_get::<String, _>("offers")?)?,
                    });
                }
                Ok(c)
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
                    sqlx::query(sql).bind(id).execute(self.conn()).await?;
                }
                Ok(())
            }

            async fn upsert_product(
                &mut self,
                pos: i64,
                p: &CatalogueProduct,
            ) -> Result<(), StoreError> {
                sqlx::query(
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

            async fn upsert_material(
                &mut self,
                pos: i64,
                m: &CatalogueMaterial,
            ) -> Result<(), StoreError> {
                sqlx::query(
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

            async fn upsert_factory(
                &mut self,
                pos: i64,
                f: &CatalogueFactory,
            ) -> Result<(), StoreError> {
                sqlx::query(
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

            async fn upsert_supplier(
                &mut self,
                pos: i64,
                s: &CatalogueSupplier,
            ) -> Result<(), StoreError> {
                sqlx::query(
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
                sqlx::query(
                    "UPDATE catalogue_meta SET name = $1, currency = $2, \
                     material_deadline_days = $3, version = $4, updated_at = $5 WHERE id = 1",
                )
                .bind(&c.name)
                .bind(&c.currency)
                .bind(c.material_deadline_days)
                .bind(version)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn sku_in_use(&mut self, skus: &[String]) -> Result<Option<String>, StoreError> {
                for sku in skus {
                    let used: Option<String> =
                        sqlx::query_scalar("SELECT sku FROM campaigns WHERE sku = $1 LIMIT 1")
                            .bind(sku)
                            .fetch_optional(self.conn())
                            .await?;
                    if used.is_some() {
                        return Ok(used);
                    }
                }
                Ok(None)
            }

            async fn hold_product(&mut self, sku: &str) -> Result<bool, StoreError> {
                let found: Option<String> = sqlx::query_scalar(concat!(
                    "SELECT sku FROM catalogue_products WHERE sku = $1",
                    $for_share
                ))
                .bind(sku)
                .fetch_optional(self.conn())
                .await?;
                Ok(found.is_some())
            }
        }

        #[async_trait]
        impl PlanningTx for $tx {
            async fn lock_planning(&mut self) -> Result<(), StoreError> {
                sqlx::query(concat!("SELECT id FROM catalogue_meta WHERE id = 1", $for_update))
                    .fetch_one(self.conn())
                    .await?;
                Ok(())
            }

            async fn queued_batches(&mut self) -> Result<Vec<QueuedBatch>, StoreError> {
                let sql = format!(
                    "SELECT b.{}, c.sku AS campaign_sku, {UNPLANNED_UNITS} AS units_to_plan \
                     FROM batches b \
                     JOIN campaigns c ON c.id = b.campaign_id WHERE {} \
                     ORDER BY b.locked_at, b.id",
                    batch_columns!().replace(", ", ", b."),
                    QUEUED_BATCHES
                );
                let rows = sqlx::query(&sql).fetch_all(self.conn()).await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let batch = $crate::pooling::batch(r)?;
                    let excluded_factories: Vec<String> = sqlx::query_scalar(
                        "SELECT factory_id FROM batch_factory_exclusions WHERE batch_id = $1 \
                         ORDER BY factory_id",
                    )
                    .bind(batch.id.as_str())
                    .fetch_all(self.conn())
                    .await?;
                    let last = sqlx::query(&format!(
                        "{SUMMARY} WHERE p.seq = (SELECT MAX(q.seq) FROM plans q \
                         JOIN plan_batches x ON x.plan_id = q.id \
                         WHERE x.batch_id = $1 AND (x.active = FALSE OR EXISTS \
                         (SELECT 1 FROM work_orders w JOIN work_order_batches y \
                         ON y.work_order_id = w.id WHERE w.plan_id = q.id \
                         AND y.batch_id = $1 AND w.state = 'rejected')))"
                    ))
                    .bind(batch.id.as_str())
                    .fetch_optional(self.conn())
                    .await?;
                    out.push(QueuedBatch {
                        sku: r.try_get("campaign_sku")?,
                        units_to_plan: r.int("units_to_plan")?,
                        batch,
                        excluded_factories,
                        last_plan: last.as_ref().map(plan_summary).transpose()?,
                    });
                }
                Ok(out)
            }

            async fn take_stock(&mut self, material: &str, reserve: f64) -> Result<bool, StoreError> {
                let on_hand: Option<f64> = sqlx::query_scalar(
                    "SELECT on_hand FROM catalogue_materials WHERE id = $1",
                )
                .bind(material)
                .fetch_optional(self.conn())
                .await?;
                match on_hand {
                    Some(have) if have + 1e-9 >= reserve => {
                        sqlx::query("UPDATE catalogue_materials SET on_hand = $2 WHERE id = $1")
                            .bind(material)
                            .bind((have - reserve).max(0.0))
                            .execute(self.conn())
                            .await?;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }

            async fn bump_catalogue_version(&mut self, now: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE catalogue_meta SET version = version + 1, updated_at = $1 WHERE id = 1",
                )
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn next_work_order_seq(&mut self, factory: &str) -> Result<i64, StoreError> {
                Ok(sqlx::query_scalar(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM work_orders WHERE factory_id = $1",
                )
                .bind(factory)
                .fetch_one(self.conn())
                .await?)
            }

            async fn insert_plan(
                &mut self,
                id: &str,
                p: &NewPlan,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO plans (id, status, currency, total_cost, cost_breakdown, gap, \
                     solver, solve_seconds, diagnosis, scenario, plan, catalogue_version, \
                     created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(id)
                .bind(p.status.as_str())
                .bind(&p.currency)
                .bind(p.total_cost)
                .bind(&p.cost_breakdown)
                .bind(p.gap)
                .bind(&p.solver)
                .bind(p.solve_seconds)
                .bind(&p.diagnosis)
                .bind(&p.scenario)
                .bind(&p.plan)
                .bind(p.catalogue_version)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn insert_plan_batch(
                &mut self,
                plan: &str,
                batch: &BatchId,
                active: bool,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO plan_batches (plan_id, batch_id, active) VALUES ($1, $2, $3)",
                )
                .bind(plan)
                .bind(batch.as_str())
                .bind(active)
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn insert_reservation(
                &mut self,
                plan: &str,
                material: &str,
                quantity: f64,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO plan_reservations (plan_id, material_id, quantity) \
                     VALUES ($1, $2, $3)",
                )
                .bind(plan)
                .bind(material)
                .bind(quantity)
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn insert_work_order(&mut self, wo: &WorkOrder) -> Result<(), StoreError> {
                let body = WorkOrderBody {
                    runs: wo.runs.clone(),
                    materials: wo.materials.clone(),
                };
                sqlx::query(
                    "INSERT INTO work_orders (id, plan_id, factory_id, seq, body, due_at, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&wo.id)
                .bind(&wo.plan_id)
                .bind(&wo.factory_id)
                .bind(wo.seq)
                .bind(json(&body)?)
                .bind($ts(wo.due_at))
                .bind($ts(wo.created_at))
                .execute(self.conn())
                .await?;
                let mut units: Vec<(BatchId, String, i64)> = Vec::new();
                for run in &wo.runs {
                    for b in &run.batches {
                        match units.iter_mut().find(|(id, sku, _)| *id == b.batch_id && *sku == run.sku) {
                            Some(e) => e.2 += b.units,
                            None => units.push((b.batch_id.clone(), run.sku.clone(), b.units)),
                        }
                    }
                }
                for (batch, sku, n) in units.into_iter().filter(|u| u.2 > 0) {
                    sqlx::query(
                        "INSERT INTO work_order_batches (work_order_id, batch_id, sku, units) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&wo.id)
                    .bind(batch.as_str())
                    .bind(sku)
                    .bind(n)
                    .execute(self.conn())
                    .await?;
                }
                Ok(())
            }

            async fn plan(&mut self, id: &str) -> Result<Option<StoredPlan>, StoreError> {
                let Some(r) = sqlx::query(&format!(
                    "SELECT p.seq, p.id, p.status, p.currency, p.total_cost, p.gap, p.solver, \
                     p.created_at, p.cost_breakdown, p.solve_seconds, p.diagnosis, p.scenario, \
                     p.plan, p.catalogue_version, \
                     (SELECT COUNT(*) FROM plan_batches x WHERE x.plan_id = p.id) AS batch_count \
                     FROM plans p WHERE p.id = $1"
                ))
                .bind(id)
                .fetch_optional(self.conn())
                .await?
                else {
                    return Ok(None);
                };
                let batches: Vec<String> = sqlx::query_scalar(
                    "SELECT batch_id FROM plan_batches WHERE plan_id = $1 ORDER BY batch_id",
                )
                .bind(id)
                .fetch_all(self.conn())
                .await?;
                let mut work_orders = Vec::new();
                for w in sqlx::query(&format!(
                    "{WORK_ORDER} WHERE plan_id = $1 ORDER BY factory_id, seq"
                ))
                .bind(id)
                .fetch_all(self.conn())
                .await?
                {
                    work_orders.push(work_order(&w)?);
                }
                let mut reservations = Vec::new();
                for x in sqlx::query(
                    "SELECT material_id, quantity FROM plan_reservations WHERE plan_id = $1 \
                     ORDER BY material_id",
                )
                .bind(id)
                .fetch_all(self.conn())
                .await?
                {
                    reservations.push((x.text("material_id")?, x.try_get::<f64, _>("quantity")?));
                }
                Ok(Some(StoredPlan {
                    summary: plan_summary(&r)?,
                    cost_breakdown: r.text("cost_breakdown")?,
                    solve_seconds: r.try_get("solve_seconds")?,
                    diagnosis: r.try_get("diagnosis")?,
                    scenario: r.text("scenario")?,
                    plan: r.text("plan")?,
                    catalogue_version: r.int("catalogue_version")?,
                    batches: batches.into_iter().map(BatchId::from_trusted).collect(),
                    work_orders,
                    reservations,
                }))
            }

            async fn plans(&mut self, page: PageRequest) -> Result<Page<PlanSummary>, StoreError> {
                let rows = sqlx::query(&format!(
                    "{SUMMARY} WHERE p.seq < $1 ORDER BY p.seq DESC LIMIT $2"
                ))
                .bind(page.after.unwrap_or(i64::MAX))
                .bind(page_limit(page.size))
                .fetch_all(self.conn())
                .await?;
                let items = rows
                    .iter()
                    .map(|r| Ok((r.int("seq")?, plan_summary(r)?)))
                    .collect::<Result<Vec<_>, StoreError>>()?;
                Ok($crate::dialect::page(items, page.size))
            }
        }

        #[async_trait]
        impl FactoryTx for $tx {
            async fn factory_known(&mut self, factory: &str) -> Result<bool, StoreError> {
                let found: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(1 AS BIGINT) FROM catalogue_factories WHERE id = $1 \
                     UNION ALL SELECT CAST(1 AS BIGINT) FROM work_orders WHERE factory_id = $1 LIMIT 1",
                )
                .bind(factory)
                .fetch_optional(self.conn())
                .await?;
                Ok(found.is_some())
            }

            async fn factory_position(
                &mut self,
                factory: &str,
            ) -> Result<FactoryPosition, StoreError> {
                let last_seq: i64 = sqlx::query_scalar(
                    "SELECT COALESCE(MAX(seq), 0) FROM work_orders WHERE factory_id = $1",
                )
                .bind(factory)
                .fetch_one(self.conn())
                .await?;
                let acked_seq: Option<i64> = sqlx::query_scalar(
                    "SELECT acked_seq FROM factory_cursors WHERE factory_id = $1",
                )
                .bind(factory)
                .fetch_optional(self.conn())
                .await?;
                Ok(FactoryPosition {
                    last_seq,
                    acked_seq: acked_seq.unwrap_or(0),
                })
            }

            async fn raise_factory_ack(
                &mut self,
                factory: &str,
                seq: i64,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO factory_cursors (factory_id, acked_seq, updated_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (factory_id) DO UPDATE SET \
                     acked_seq = CASE WHEN excluded.acked_seq > factory_cursors.acked_seq \
                     THEN excluded.acked_seq ELSE factory_cursors.acked_seq END, \
                     updated_at = excluded.updated_at",
                )
                .bind(factory)
                .bind(seq)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn work_orders_after(
                &mut self,
                factory: &str,
                after: i64,
                limit: u32,
            ) -> Result<Vec<WorkOrder>, StoreError> {
                let rows = sqlx::query(&format!(
                    "{WORK_ORDER} WHERE factory_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
                ))
                .bind(factory)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(self.conn())
                .await?;
                rows.iter().map(work_order).collect()
            }

            async fn factory_work_order(
                &mut self,
                factory: &str,
                id: &str,
            ) -> Result<Option<(WorkOrder, Tally, Option<DateTime<Utc>>)>, StoreError> {
                let sql = format!(
                    "{WORK_ORDER} WHERE factory_id = $1 AND id = $2{}",
                    $for_update
                );
                let Some(r) = sqlx::query(&sql)
                    .bind(factory)
                    .bind(id)
                    .fetch_optional(self.conn())
                    .await?
                else {
                    return Ok(None);
                };
                Ok(Some((
                    work_order(&r)?,
                    parse_tally(&r.text("tally")?)?,
                    r.ts_opt("state_at")?,
                )))
            }

            async fn set_work_order_state(
                &mut self,
                id: &str,
                state: WorkOrderState,
                tally: &Tally,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE work_orders SET state = $2, tally = $3, state_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(state.as_str())
                .bind(json(tally)?)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn insert_work_order_event(
                &mut self,
                wo: &WorkOrder,
                progress: &Progress,
                state: WorkOrderState,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO work_order_events (work_order_id, factory_id, kind, state, \
                     body, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&wo.id)
                .bind(&wo.factory_id)
                .bind(progress.kind())
                .bind(state.as_str())
                .bind($crate::factory::event_body(progress)?)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn release_plan_batch(
                &mut self,
                plan: &str,
                batch: &BatchId,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE plan_batches SET active = FALSE WHERE plan_id = $1 AND batch_id = $2 \
                     AND NOT EXISTS (SELECT 1 FROM work_order_batches x \
                     JOIN work_orders w ON w.id = x.work_order_id \
                     WHERE w.plan_id = $1 AND x.batch_id = $2 AND w.state <> 'rejected')",
                )
                .bind(plan)
                .bind(batch.as_str())
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn exclude_factory(
                &mut self,
                batch: &BatchId,
                factory: &str,
                reason: &str,
                now: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO batch_factory_exclusions (batch_id, factory_id, reason, \
                     created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (batch_id, factory_id) DO NOTHING",
                )
                .bind(batch.as_str())
                .bind(factory)
                .bind(reason)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn return_stock(
                &mut self,
                material: &str,
                quantity: f64,
            ) -> Result<(), StoreError> {
                // A material removed from the catalogue since keeps no stock to return to.
                sqlx::query(
                    "UPDATE catalogue_materials SET on_hand = on_hand + $2 WHERE id = $1",
                )
                .bind(material)
                .bind(quantity)
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn batch_shares(&mut self, batch: &BatchId) -> Result<Vec<BatchShare>, StoreError> {
                let rows = sqlx::query(
                    "SELECT w.state, w.tally, x.sku, x.units FROM work_order_batches x \
                     JOIN work_orders w ON w.id = x.work_order_id \
                     WHERE x.batch_id = $1 AND w.state <> 'rejected' ORDER BY w.id",
                )
                .bind(batch.as_str())
                .fetch_all(self.conn())
                .await?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    let state = r.text("state")?;
                    let tally = parse_tally(&r.text("tally")?)?;
                    out.push(BatchShare {
                        state: WorkOrderState::parse(&state).ok_or_else(|| {
                            StoreError::Corrupt(format!("work order state {state:?}"))
                        })?,
                        units: r.int("units")?,
                        shipped_fraction: shipped_fraction(&tally, &r.text("sku")?),
                    });
                }
                Ok(out)
            }

            async fn unplanned_units(&mut self, batch: &BatchId) -> Result<Option<i64>, StoreError> {
                let sql = format!(
                    "SELECT {UNPLANNED_UNITS} AS n FROM batches b WHERE b.id = $1 AND {QUEUED_BATCHES}"
                );
                let n: Option<i64> = sqlx::query_scalar(&sql)
                    .bind(batch.as_str())
                    .fetch_optional(self.conn())
                    .await?;
                Ok(n)
            }
        }

        fn stored_token(r: &$row) -> Result<StoredToken, StoreError> {
            Ok(StoredToken {
                id: r.text("id")?,
                secret_hash: r.text("secret_hash")?,
                role: $crate::access::role(&r.text("role")?)?,
                factory: r.text_opt("factory_id")?,
                label: r.text("label")?,
                created_at: r.ts("created_at")?,
                revoked_at: r.ts_opt("revoked_at")?,
            })
        }

        const TOKEN: &str = "SELECT id, secret_hash, role, factory_id, label, created_at, \
             revoked_at FROM api_tokens ";

        #[async_trait]
        impl TokenTx for $tx {
            async fn insert_token(&mut self, t: &NewToken, now: DateTime<Utc>) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO api_tokens (id, secret_hash, role, factory_id, label, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&t.id)
                .bind(&t.secret_hash)
                .bind(t.role.as_str())
                .bind(&t.factory)
                .bind(&t.label)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(())
            }

            async fn revoke_token(&mut self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
                let done = sqlx::query(
                    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind($ts(now))
                .execute(self.conn())
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn token(&mut self, id: &str) -> Result<Option<StoredToken>, StoreError> {
                let r = sqlx::query(&format!("{TOKEN} WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(self.conn())
                    .await?;
                r.as_ref().map(stored_token).transpose()
            }

            async fn tokens(&mut self) -> Result<Vec<StoredToken>, StoreError> {
                let rows = sqlx::query(&format!("{TOKEN} ORDER BY created_at, id"))
                    .fetch_all(self.conn())
                    .await?;
                rows.iter().map(stored_token).collect()
            }
        }
    };
}

pub(crate) use catalogue_planning_sql;
