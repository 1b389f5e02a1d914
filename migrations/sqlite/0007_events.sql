-- Storefront events (a transactional outbox) and signed webhooks (docs/events.md).

-- The store-wide event counter: one row, raised by every transaction that appends events,
-- just before it commits. Its row lock (SQLite: the one writer) is held to the commit, so
-- event numbers are given in commit order and without gaps (c2m_store::events).
CREATE TABLE event_counter (
    id       INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL
);
INSERT INTO event_counter (id, last_seq) VALUES (1, 0);

-- Every event, append-only, in sequence order. `data` is the JSON of
-- c2m_domain::events::EventData (its `kind` included).
CREATE TABLE events (
    seq         INTEGER NOT NULL PRIMARY KEY,
    id          TEXT    NOT NULL UNIQUE,
    campaign_id TEXT    NOT NULL,
    batch_id    TEXT,
    kind        TEXT    NOT NULL,
    occurred_at INTEGER NOT NULL,
    data        TEXT    NOT NULL
);
CREATE INDEX events_by_campaign ON events (campaign_id, seq);
CREATE TRIGGER events_append_only_u BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;
CREATE TRIGGER events_append_only_d BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events is append-only'); END;

-- Webhook endpoints. `kinds` is a JSON array of event kinds (`*` for all); `cursor` is
-- the last event sequence number the endpoint is done with (delivered, or not its kind).
-- A delivery worker claims an endpoint with a lease (`lease_owner`, `lease_until`).
CREATE TABLE webhook_endpoints (
    id              TEXT    NOT NULL PRIMARY KEY,
    url             TEXT    NOT NULL,
    kinds           TEXT    NOT NULL,
    secret          TEXT    NOT NULL,
    cursor          INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    disabled_at     INTEGER,
    disabled_reason TEXT,
    failing_since   INTEGER,
    failures        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    lease_owner     TEXT,
    lease_until     INTEGER
);

-- Every delivery attempt, in the order made.
CREATE TABLE webhook_deliveries (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    endpoint_id TEXT    NOT NULL REFERENCES webhook_endpoints (id),
    event_seq   INTEGER NOT NULL,
    event_id    TEXT    NOT NULL,
    attempt     INTEGER NOT NULL,
    status_code INTEGER,
    error       TEXT,
    latency_ms  INTEGER NOT NULL,
    delivered   INTEGER NOT NULL,
    at          INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, seq);
