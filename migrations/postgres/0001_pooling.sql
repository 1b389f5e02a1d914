-- Pooling: campaigns, the batches their pre-orders pool into, the pre-orders themselves,
-- the append-only record of batch transitions, and idempotency keys.
--
-- PostgreSQL conventions (see crates/c2m-store/src/postgres/mod.rs):
-- - timestamps are TIMESTAMPTZ (microsecond precision);
-- - money is BIGINT minor units next to its ISO 4217 currency code;
-- - `seq` is the insertion sequence used as the paging cursor.
-- Several c2m replicas may share this database: every rule that must hold across them is
-- a constraint here or a row lock taken by the store (`campaigns ... FOR UPDATE`).

CREATE TABLE campaigns (
    id               TEXT        PRIMARY KEY,
    seq              BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    sku              TEXT        NOT NULL,
    title            TEXT        NOT NULL,
    currency         TEXT        NOT NULL CHECK (length(currency) = 3),
    unit_price       BIGINT      NOT NULL CHECK (unit_price > 0),
    deposit          BIGINT      NOT NULL CHECK (deposit > 0 AND deposit <= unit_price),
    batch_threshold  BIGINT      NOT NULL CHECK (batch_threshold > 0),
    batch_cap        BIGINT      CHECK (batch_cap >= batch_threshold),
    max_per_order    BIGINT      CHECK (max_per_order > 0),
    max_per_consumer BIGINT      CHECK (max_per_consumer > 0),
    total_cap        BIGINT      CHECK (total_cap > 0),
    opens_at         TIMESTAMPTZ NOT NULL,
    deadline         TIMESTAMPTZ NOT NULL CHECK (deadline > opens_at),
    created_at       TIMESTAMPTZ NOT NULL
);

CREATE INDEX campaigns_by_deadline ON campaigns (deadline);

CREATE TABLE batches (
    id          TEXT        PRIMARY KEY,
    campaign_id TEXT        NOT NULL REFERENCES campaigns (id),
    seq         BIGINT      NOT NULL CHECK (seq > 0),
    status      TEXT        NOT NULL CHECK (status IN ('open', 'locked', 'failed')),
    units       BIGINT      NOT NULL CHECK (units >= 0),
    threshold   BIGINT      NOT NULL CHECK (threshold > 0),
    created_at  TIMESTAMPTZ NOT NULL,
    locked_at   TIMESTAMPTZ,
    failed_at   TIMESTAMPTZ,
    UNIQUE (campaign_id, seq),
    CONSTRAINT batches_locked_at_iff_locked CHECK ((status = 'locked') = (locked_at IS NOT NULL)),
    CONSTRAINT batches_failed_at_iff_failed CHECK ((status = 'failed') = (failed_at IS NOT NULL)),
    CONSTRAINT batches_locked_at_threshold CHECK (status <> 'locked' OR units >= threshold)
);

-- A campaign pools into at most one open batch at a time.
CREATE UNIQUE INDEX batches_one_open_per_campaign ON batches (campaign_id) WHERE status = 'open';

-- A batch leaves 'open' once and never comes back or changes its end.
CREATE FUNCTION batches_end_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'open' AND NEW.status IS DISTINCT FROM OLD.status THEN
        RAISE EXCEPTION 'batches_end_once: a locked or failed batch cannot change status'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER batches_end_once BEFORE UPDATE OF status ON batches
    FOR EACH ROW EXECUTE FUNCTION batches_end_once();

CREATE TABLE preorders (
    id            TEXT        PRIMARY KEY,
    seq           BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    campaign_id   TEXT        NOT NULL REFERENCES campaigns (id),
    consumer_id   TEXT        NOT NULL,
    batch_id      TEXT        NOT NULL REFERENCES batches (id),
    quantity      BIGINT      NOT NULL CHECK (quantity > 0),
    unit_price    BIGINT      NOT NULL CHECK (unit_price > 0),
    deposit_total BIGINT      NOT NULL CHECK (deposit_total > 0),
    currency      TEXT        NOT NULL CHECK (length(currency) = 3),
    created_at    TIMESTAMPTZ NOT NULL,
    cancelled_at  TIMESTAMPTZ
);

CREATE INDEX preorders_by_consumer ON preorders (consumer_id, seq);
CREATE INDEX preorders_by_campaign ON preorders (campaign_id, seq);
CREATE INDEX preorders_by_campaign_consumer ON preorders (campaign_id, consumer_id);
CREATE INDEX preorders_by_batch ON preorders (batch_id);

-- Append-only: one row per state a batch entered. The primary key makes "locked exactly
-- once" and "failed exactly once" a constraint; the trigger makes the two exclusive.
CREATE TABLE batch_transitions (
    batch_id TEXT        NOT NULL REFERENCES batches (id),
    status   TEXT        NOT NULL CHECK (status IN ('open', 'locked', 'failed')),
    at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, status)
);

CREATE FUNCTION batch_transitions_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'batch_transitions is append-only' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status IN ('locked', 'failed') AND EXISTS (
        SELECT 1 FROM batch_transitions
        WHERE batch_id = NEW.batch_id AND status IN ('locked', 'failed')
    ) THEN
        RAISE EXCEPTION 'batch_transitions_one_end: a batch locks or fails exactly once'
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER batch_transitions_guard BEFORE INSERT OR UPDATE OR DELETE ON batch_transitions
    FOR EACH ROW EXECUTE FUNCTION batch_transitions_guard();

-- A mutating request's key, the fingerprint of the request it was first used with, and
-- the JSON of the response it got, written in the same transaction as the mutation.
CREATE TABLE idempotency_keys (
    operation   TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    fingerprint TEXT        NOT NULL,
    response    JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (operation, key)
);
