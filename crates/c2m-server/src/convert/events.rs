//! Storefront events as the stream sends them.

use c2m_domain::events::StoredEvent;
use c2m_proto::v1 as pb;
use c2m_store::StoreError;

use super::timestamp;

/// An event as the stream sends it: its JSON is the webhooks' body.
pub fn store_event(e: &StoredEvent) -> Result<pb::StoreEvent, StoreError> {
    let json = serde_json::to_string(e)
        .map_err(|err| StoreError::Corrupt(format!("an event does not serialise: {err}")))?;
    Ok(pb::StoreEvent {
        seq: e.seq,
        id: e.id.as_str().to_owned(),
        kind: e.kind().to_owned(),
        campaign_id: e.campaign_id.as_str().to_owned(),
        batch_id: e
            .batch_id
            .as_ref()
            .map(|b| b.as_str().to_owned())
            .unwrap_or_default(),
        occurred_at: Some(timestamp(e.occurred_at)),
        json,
        part: 0,
        parts: 1,
    })
}
