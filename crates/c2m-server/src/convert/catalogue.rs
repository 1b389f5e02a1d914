//! The catalogue, protobuf side.

use tonic::Status;

use c2m_domain::DomainError;
use c2m_proto::v1 as pb;
use c2m_store::CatalogueChanged;

use crate::status::domain_status;

pub fn changed(c: CatalogueChanged) -> pb::CatalogueChange {
    pb::CatalogueChange {
        version: c.version,
        products: c.products,
        materials: c.materials,
        factories: c.factories,
        suppliers: c.suppliers,
    }
}

pub fn is_json(format: i32) -> Result<bool, Status> {
    match pb::ScenarioFormat::try_from(format) {
        Ok(pb::ScenarioFormat::Json) => Ok(true),
        Ok(_) => Ok(false),
        Err(_) => Err(domain_status(&DomainError::invalid(
            "format",
            "unknown format",
        ))),
    }
}
