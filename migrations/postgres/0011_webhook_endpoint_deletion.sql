-- A deleted webhook endpoint (WebhookService.DeleteEndpoint, docs/events.md): the row stays
-- so that its delivery log (which references it) stays listable and its id is never given
-- again; `deleted_at` takes it out of every list and every claim, for good.
ALTER TABLE webhook_endpoints ADD COLUMN deleted_at TIMESTAMPTZ;
