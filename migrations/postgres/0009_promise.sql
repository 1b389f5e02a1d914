-- The promise: a campaign's delivery promise, factory calendars, and the purchase orders a
-- plan places (see docs/promise.md).

-- Days from a batch's lock to the date it is promised to ship by (its due date). Campaigns
-- created before this migration keep the default promise.
ALTER TABLE campaigns ADD COLUMN ships_within_days BIGINT NOT NULL DEFAULT 42
    CHECK (ships_within_days > 0);

-- A factory's hours per planning period (JSON list, one number per period of the planning
-- horizon, counted from each cycle's start), or NULL: `capacity_hours` in every period.
ALTER TABLE catalogue_factories ADD COLUMN calendar TEXT;

-- What a plan buys: one row per order (supplier, material, order period), written in the
-- transaction that stores the plan, so a plan's purchase orders exist exactly once.
-- `allocated` is the part the plan's work orders use (the rest is free stock when it
-- arrives); `received` only grows, by receipts (`purchase_order_receipts`).
CREATE TABLE purchase_orders (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    plan_id      TEXT    NOT NULL REFERENCES plans (id),
    supplier_id  TEXT    NOT NULL,
    material_id  TEXT    NOT NULL,
    quantity     DOUBLE PRECISION NOT NULL CHECK (quantity > 0),
    unit_price   DOUBLE PRECISION NOT NULL CHECK (unit_price >= 0),
    tier         BIGINT NOT NULL CHECK (tier >= 0),
    packs        BIGINT CHECK (packs >= 0),
    currency     TEXT    NOT NULL CHECK (length(currency) = 3),
    order_period BIGINT NOT NULL CHECK (order_period >= 0),
    ordered_at   TIMESTAMPTZ NOT NULL,
    expected_at  TIMESTAMPTZ NOT NULL,
    batches      TEXT    NOT NULL,
    allocated    DOUBLE PRECISION NOT NULL CHECK (allocated >= 0),
    received     DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (received >= 0),
    state        TEXT    NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'partly_received', 'received', 'cancelled')),
    created_at   TIMESTAMPTZ NOT NULL,
    state_at     TIMESTAMPTZ NOT NULL,
    UNIQUE (plan_id, supplier_id, material_id, order_period)
);
CREATE INDEX purchase_orders_by_state ON purchase_orders (state, seq);
CREATE INDEX purchase_orders_by_supplier ON purchase_orders (supplier_id, seq);

-- Every receipt, append-only.
CREATE TABLE purchase_order_receipts (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    purchase_order_id TEXT    NOT NULL REFERENCES purchase_orders (id),
    quantity          DOUBLE PRECISION NOT NULL CHECK (quantity > 0),
    received_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX purchase_order_receipts_by_order ON purchase_order_receipts (purchase_order_id);
