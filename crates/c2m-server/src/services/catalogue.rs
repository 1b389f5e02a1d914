//! `CatalogueService`: the catalogue moves in and out as scenario files.

use tonic::{Request, Response, Status};

use c2m_domain::DomainError;
use c2m_planner::Scenario;
use c2m_proto::v1 as pb;
use c2m_proto::v1::catalogue_service_server::CatalogueService;
use c2m_store::{CatalogueEdit, CatalogueKind, ChangeCatalogue};

use super::Ctx;
use crate::convert;
use crate::convert::catalogue::{changed, is_json};
use crate::planning::{catalogue_check, catalogue_of, export_of, scenario_error};
use crate::status::{domain_status, store_status};

pub struct CatalogueSvc(pub Ctx);

#[tonic::async_trait]
impl CatalogueService for CatalogueSvc {
    #[tracing::instrument(skip_all, fields(key = %req.get_ref().idempotency_key))]
    async fn import_scenario(
        &self,
        req: Request<pb::ImportScenarioRequest>,
    ) -> Result<Response<pb::CatalogueChange>, Status> {
        let r = req.into_inner();
        let idempotency_key = convert::idempotency_key(&r.idempotency_key)?;
        let parsed = if is_json(r.format)? {
            Scenario::from_json_str(&r.text)
        } else {
            Scenario::from_toml_str(&r.text)
        }
        .map_err(|e| domain_status(&scenario_error(&e)))?;
        // The catalogue keeps the factories' calendars and not the horizon, and checks the
        // catalogue it keeps as a scenario without one: the horizon and each calendar's
        // length against it are checked here, or a horizon of no period (or of billions)
        // and a calendar of no hours were stored without a word. So are the file's ids: a
        // merge folds an id given twice into one entry (the last won, without a word).
        parsed
            .validate_catalogue_part()
            .map_err(|e| domain_status(&scenario_error(&e)))?;
        let now = self.0.clock.now();
        let calendars_start = (r.calendar_starts_at.as_ref())
            .map(|t| convert::parse_timestamp("calendar_starts_at", t))
            .transpose()?;
        // Cycles add the calendar's periods to its start: a start near the end of time
        // would overflow the dates, and one centuries away is a typo.
        if let Some(t) = calendars_start {
            if (t - now).num_days().abs() > 36_525 {
                return Err(domain_status(&DomainError::invalid(
                    "calendar_starts_at",
                    format!("{t} is more than a century from now"),
                )));
            }
        }
        let catalogue = catalogue_of(&parsed, calendars_start, self.0.plan_horizon)
            .map_err(|e| domain_status(&e))?;
        let edit = match pb::ImportMode::try_from(r.mode) {
            Ok(pb::ImportMode::Merge) => CatalogueEdit::Merge(catalogue),
            Ok(_) => CatalogueEdit::Replace(catalogue),
            Err(_) => return Err(domain_status(&DomainError::invalid("mode", "unknown mode"))),
        };
        let done = self
            .0
            .store
            .change_catalogue(
                &ChangeCatalogue {
                    idempotency_key,
                    edit,
                },
                catalogue_check(self.0.plan_horizon),
                now,
            )
            .await
            .map_err(store_status)?;
        tracing::info!(version = done.version, "catalogue imported");
        Ok(Response::new(changed(done)))
    }

    #[tracing::instrument(skip_all)]
    async fn export_scenario(
        &self,
        req: Request<pb::ExportScenarioRequest>,
    ) -> Result<Response<pb::ExportScenarioResponse>, Status> {
        let json = is_json(req.get_ref().format)?;
        let c = self.0.store.catalogue().await.map_err(store_status)?;
        let now = self.0.clock.now();
        let (s, calendars_start) =
            export_of(&c, now, self.0.plan_horizon.period_days).map_err(|e| domain_status(&e))?;
        let text = if json {
            s.to_json_string()
        } else {
            s.to_toml_string()
        }
        .map_err(|e| domain_status(&scenario_error(&e)))?;
        Ok(Response::new(pb::ExportScenarioResponse {
            text,
            version: c.version,
            calendar_starts_at: calendars_start.map(convert::timestamp),
        }))
    }

    #[tracing::instrument(skip_all, fields(key = %req.get_ref().idempotency_key, id = %req.get_ref().id))]
    async fn delete_catalogue_entry(
        &self,
        req: Request<pb::DeleteCatalogueEntryRequest>,
    ) -> Result<Response<pb::CatalogueChange>, Status> {
        let r = req.into_inner();
        let idempotency_key = convert::idempotency_key(&r.idempotency_key)?;
        let kind = match pb::CatalogueKind::try_from(r.kind) {
            Ok(pb::CatalogueKind::Product) => CatalogueKind::Product,
            Ok(pb::CatalogueKind::Material) => CatalogueKind::Material,
            Ok(pb::CatalogueKind::Factory) => CatalogueKind::Factory,
            Ok(pb::CatalogueKind::Supplier) => CatalogueKind::Supplier,
            _ => return Err(domain_status(&DomainError::invalid("kind", "is required"))),
        };
        let id = convert::name("id", &r.id)?;
        let done = self
            .0
            .store
            .change_catalogue(
                &ChangeCatalogue {
                    idempotency_key,
                    edit: CatalogueEdit::Delete { kind, id },
                },
                catalogue_check(self.0.plan_horizon),
                self.0.clock.now(),
            )
            .await
            .map_err(store_status)?;
        Ok(Response::new(changed(done)))
    }
}
