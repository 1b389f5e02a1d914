-- Pooling: campaigns, the batches their pre-orders pool into, the pre-orders themselves,
-- the append-only record of batch transitions, and idempotency keys.
--
-- SQLite conventions (see crates/c2m-store/src/sqlite/mod.rs):
-- - timestamps are INTEGER microseconds since the Unix epoch, UTC, so `deadline <= now`
--   and ordering are plain integer comparisons;
-- - money is INTEGER minor units next to its ISO 4217 currency code;
-- - `seq` is the insertion sequence used as the paging cursor.

CREATE TABLE campaigns (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT    NOT NULL UNIQUE,
    sku              TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    currency         TEXT    NOT NULL CHECK (length(currency) = 3),
    unit_price       INTEGER NOT NULL CHECK (unit_price > 0),
    deposit          INTEGER NOT NULL CHECK (deposit > 0 AND deposit <= unit_price),
    batch_threshold  INTEGER NOT NULL CHECK (batch_threshold > 0),
    batch_cap        INTEGER CHECK (batch_cap >= batch_threshold),
    max_per_order    INTEGER CHECK (max_per_order > 0),
    max_per_consumer INTEGER CHECK (max_per_consumer > 0),
    total_cap        INTEGER CHECK (total_cap > 0),
    opens_at         INTEGER NOT NULL,
    deadline         INTEGER NOT NULL CHECK (deadline > opens_at),
    created_at       INTEGER NOT NULL
);

CREATE INDEX campaigns_by_deadline ON campaigns (deadline);

CREATE TABLE batches (
    id          TEXT    NOT NULL PRIMARY KEY,
    campaign_id TEXT    NOT NULL REFERENCES campaigns (id),
    seq         INTEGER NOT NULL CHECK (seq > 0),
    status      TEXT    NOT NULL CHECK (status IN ('open', 'locked', 'failed')),
    units       INTEGER NOT NULL CHECK (units >= 0),
    threshold   INTEGER NOT NULL CHECK (threshold > 0),
    created_at  INTEGER NOT NULL,
    locked_at   INTEGER,
    failed_at   INTEGER,
    UNIQUE (campaign_id, seq),
    CONSTRAINT batches_locked_at_iff_locked CHECK ((status = 'locked') = (locked_at IS NOT NULL)),
    CONSTRAINT batches_failed_at_iff_failed CHECK ((status = 'failed') = (failed_at IS NOT NULL)),
    CONSTRAINT batches_locked_at_threshold CHECK (status <> 'locked' OR units >= threshold)
);

-- A campaign pools into at most one open batch at a time.
CREATE UNIQUE INDEX batches_one_open_per_campaign ON batches (campaign_id) WHERE status = 'open';

-- A batch leaves 'open' once and never comes back or changes its end.
CREATE TRIGGER batches_end_once BEFORE UPDATE OF status ON batches
WHEN OLD.status <> 'open'
BEGIN
    SELECT RAISE(ABORT, 'batches_end_once: a locked or failed batch cannot change status');
END;

CREATE TABLE preorders (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT    NOT NULL UNIQUE,
    campaign_id   TEXT    NOT NULL REFERENCES campaigns (id),
    consumer_id   TEXT    NOT NULL,
    batch_id      TEXT    NOT NULL REFERENCES batches (id),
    quantity      INTEGER NOT NULL CHECK (quantity > 0),
    unit_price    INTEGER NOT NULL CHECK (unit_price > 0),
    deposit_total INTEGER NOT NULL CHECK (deposit_total > 0),
    currency      TEXT    NOT NULL CHECK (length(currency) = 3),
    created_at    INTEGER NOT NULL,
    cancelled_at  INTEGER
);

CREATE INDEX preorders_by_consumer ON preorders (consumer_id, seq);
CREATE INDEX preorders_by_campaign ON preorders (campaign_id, seq);
CREATE INDEX preorders_by_campaign_consumer ON preorders (campaign_id, consumer_id);
CREATE INDEX preorders_by_batch ON preorders (batch_id);

-- Append-only: one row per state a batch entered. The primary key makes "locked exactly
-- once" and "failed exactly once" a constraint; the trigger makes the two exclusive.
CREATE TABLE batch_transitions (
    batch_id TEXT    NOT NULL REFERENCES batches (id),
    status   TEXT    NOT NULL CHECK (status IN ('open', 'locked', 'failed')),
    at       INTEGER NOT NULL,
    PRIMARY KEY (batch_id, status)
);

CREATE TRIGGER batch_transitions_one_end BEFORE INSERT ON batch_transitions
WHEN NEW.status IN ('locked', 'failed')
    AND EXISTS (SELECT 1 FROM batch_transitions
                WHERE batch_id = NEW.batch_id AND status IN ('locked', 'failed'))
BEGIN
    SELECT RAISE(ABORT, 'batch_transitions_one_end: a batch locks or fails exactly once');
END;

CREATE TRIGGER batch_transitions_no_update BEFORE UPDATE ON batch_transitions
BEGIN
    SELECT RAISE(ABORT, 'batch_transitions is append-only');
END;

CREATE TRIGGER batch_transitions_no_delete BEFORE DELETE ON batch_transitions
BEGIN
    SELECT RAISE(ABORT, 'batch_transitions is append-only');
END;

-- A mutating request's key, the fingerprint of the request it was first used with, and
-- the JSON of the response it got, written in the same transaction as the mutation.
CREATE TABLE idempotency_keys (
    operation   TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    response    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (operation, key)
);
