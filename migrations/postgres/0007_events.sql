-- Storefront events (a transactional outbox) and signed webhooks (docs/events.md).

-- The store-wide event counter: one row, raised by every transaction that appends events,
-- just before it commits. Its row lock is held to the commit, so event numbers are given
-- in commit order and without gaps, and a reader never sees a number before a smaller one
-- (c2m_store::events explains why).
CREATE TABLE event_counter (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last_seq BIGINT  NOT NULL
);
INSERT INTO event_counter (id, last_seq) VALUES (1, 0);

-- Every event, append-only, in sequence order. `data` is the JSON of
-- c2m_domain::events::EventData (its `kind` included).
CREATE TABLE events (
    seq         BIGINT      NOT NULL PRIMARY KEY,
    id          TEXT        NOT NULL UNIQUE,
    campaign_id TEXT        NOT NULL,
    batch_id    TEXT,
    kind        TEXT        NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    data        TEXT        NOT NULL
);
CREATE INDEX events_by_campaign ON events (campaign_id, seq);
CREATE FUNCTION events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- Webhook endpoints. `kinds` is a JSON array of event kinds (`*` for all); `cursor` is
-- the last event sequence number the endpoint is done with (delivered, or not its kind).
-- A delivery worker claims an endpoint with a lease (`lease_owner`, `lease_until`), taken
-- with FOR UPDATE SKIP LOCKED so that replicas claim different endpoints.
CREATE TABLE webhook_endpoints (
    id              TEXT        NOT NULL PRIMARY KEY,
    url             TEXT        NOT NULL,
    kinds           TEXT        NOT NULL,
    secret          TEXT        NOT NULL,
    cursor          BIGINT      NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ NOT NULL,
    disabled_at     TIMESTAMPTZ,
    disabled_reason TEXT,
    failing_since   TIMESTAMPTZ,
    failures        BIGINT      NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    lease_owner     TEXT,
    lease_until     TIMESTAMPTZ
);

-- Every delivery attempt, in the order made.
CREATE TABLE webhook_deliveries (
    seq         BIGSERIAL   PRIMARY KEY,
    endpoint_id TEXT        NOT NULL REFERENCES webhook_endpoints (id),
    event_seq   BIGINT      NOT NULL,
    event_id    TEXT        NOT NULL,
    attempt     BIGINT      NOT NULL,
    status_code BIGINT,
    error       TEXT,
    latency_ms  BIGINT      NOT NULL,
    delivered   BIGINT      NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, seq);
