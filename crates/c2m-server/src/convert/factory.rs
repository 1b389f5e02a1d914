//! Factory delivery, protobuf side: heartbeats, progress reports and their answers.

use std::collections::BTreeMap;

use tonic::Status;

use c2m_domain::{DomainError, Progress};
use c2m_proto::v1 as pb;
use c2m_store::WorkOrderStatus;

use super::planning::work_order_state;
use super::timestamp;
use crate::status::domain_status;

pub fn heartbeat(
    pos: c2m_store::FactoryPosition,
    now: chrono::DateTime<chrono::Utc>,
) -> pb::FactoryEvent {
    pb::FactoryEvent {
        event: Some(pb::factory_event::Event::Heartbeat(pb::Heartbeat {
            at: Some(timestamp(now)),
            last_seq: pos.last_seq,
            acked_seq: pos.acked_seq,
        })),
    }
}

/// A feed entry as the factory's stream sends it: a work order, or the notice that one was
/// withdrawn.
pub fn feed_entry(e: &c2m_store::FeedEntry) -> pb::FactoryEvent {
    use pb::factory_event::Event;
    let event = match e {
        c2m_store::FeedEntry::WorkOrder(wo) => Event::WorkOrder(super::planning::work_order(wo)),
        c2m_store::FeedEntry::Withdrawn(wo) => Event::Withdrawn(pb::WorkOrderWithdrawn {
            seq: e.seq(),
            work_order_id: wo.id.clone(),
            work_order_seq: wo.seq,
            reason: wo
                .withdrawn
                .as_ref()
                .map(|w| w.reason.clone())
                .unwrap_or_default(),
            at: wo.withdrawn.as_ref().map(|w| timestamp(w.at)),
        }),
    };
    pb::FactoryEvent { event: Some(event) }
}

pub fn progress(s: &WorkOrderStatus) -> pb::WorkOrderProgress {
    pb::WorkOrderProgress {
        work_order_id: s.work_order_id.clone(),
        factory_id: s.factory_id.clone(),
        seq: s.seq,
        state: work_order_state(s.state) as i32,
        state_at: s.state_at.map(timestamp),
        qc_passed: s.tally.qc_passed,
        qc_failed: s.tally.qc_failed,
        shipped: s
            .tally
            .shipped
            .iter()
            .map(|(sku, q)| pb::ShippedQuantity {
                sku: sku.clone(),
                quantity: *q,
            })
            .collect(),
        requeued_batch_ids: s.requeued_batches.iter().map(|b| b.to_string()).collect(),
    }
}

pub fn report_progress(p: Option<pb::report_request::Progress>) -> Result<Progress, Status> {
    use pb::report_request::Progress as P;
    Ok(match p {
        None => {
            return Err(domain_status(&DomainError::invalid(
                "progress",
                "one of accepted, rejected, in_production, quality_check, shipped is required",
            )))
        }
        Some(P::Accepted(_)) => Progress::Accepted,
        Some(P::Rejected(r)) => Progress::Rejected { reason: r.reason },
        Some(P::InProduction(_)) => Progress::InProduction,
        Some(P::QualityCheck(q)) => Progress::QualityCheck {
            passed: q.passed,
            failed: q.failed,
        },
        Some(P::Shipped(s)) => {
            let mut quantities = BTreeMap::new();
            for (i, q) in s.quantities.into_iter().enumerate() {
                if q.sku.trim().is_empty() {
                    return Err(domain_status(&DomainError::invalid(
                        format!("shipped.quantities[{i}].sku"),
                        "is required",
                    )));
                }
                if quantities.insert(q.sku.clone(), q.quantity).is_some() {
                    return Err(domain_status(&DomainError::invalid(
                        format!("shipped.quantities[{i}].sku"),
                        format!("`{}` is listed twice", q.sku),
                    )));
                }
            }
            Progress::Shipped { quantities }
        }
    })
}
