-- Catalogue and planning: the production data the planner needs (products with their
-- bills of materials, materials with stock, factories with lines, suppliers with offers),
-- and the plans made for locked batches with the work orders they give each factory.
--
-- The catalogue's nested parts (a BOM, a factory's lines, a supplier's offers and price
-- breaks) are JSON text owned by c2m-store's catalogue types; the server checks the whole
-- catalogue against the scenario rules before the store writes it. `position` keeps the
-- order the admin gave, so an exported scenario lists things as they were imported.

-- One row: the catalogue's scenario-level fields and a version that every change bumps.
CREATE TABLE catalogue_meta (
    id                     BIGINT PRIMARY KEY CHECK (id = 1),
    name                   TEXT    NOT NULL,
    currency               TEXT    CHECK (currency IS NULL OR length(currency) = 3),
    material_deadline_days BIGINT,
    version                BIGINT NOT NULL,
    updated_at             TIMESTAMPTZ NOT NULL
);
INSERT INTO catalogue_meta (id, name, currency, material_deadline_days, version, updated_at)
VALUES (1, 'catalogue', NULL, NULL, 0, 'epoch');

CREATE TABLE catalogue_products (
    sku      TEXT    NOT NULL PRIMARY KEY,
    position BIGINT NOT NULL,
    bom      TEXT    NOT NULL
);

CREATE TABLE catalogue_materials (
    id           TEXT    NOT NULL PRIMARY KEY,
    position     BIGINT NOT NULL,
    unit         TEXT    NOT NULL,
    on_hand      DOUBLE PRECISION    NOT NULL CHECK (on_hand >= 0),
    holding_cost DOUBLE PRECISION    NOT NULL CHECK (holding_cost >= 0)
);

CREATE TABLE catalogue_factories (
    id             TEXT    NOT NULL PRIMARY KEY,
    position       BIGINT NOT NULL,
    capacity_hours DOUBLE PRECISION    NOT NULL CHECK (capacity_hours >= 0),
    lines          TEXT    NOT NULL
);

CREATE TABLE catalogue_suppliers (
    id        TEXT    NOT NULL PRIMARY KEY,
    position  BIGINT NOT NULL,
    lead_days BIGINT NOT NULL CHECK (lead_days >= 0),
    offers    TEXT    NOT NULL
);

-- A plan made by one planning cycle, kept whole: the scenario it was made from (TOML, so
-- `cargo run --example plan` reproduces it) and the plan as the planner reported it (JSON).
CREATE TABLE plans (
    seq               BIGINT      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                TEXT    NOT NULL UNIQUE,
    status            TEXT    NOT NULL CHECK (status IN ('optimal', 'feasible', 'infeasible')),
    currency          TEXT    NOT NULL CHECK (length(currency) = 3),
    total_cost        BIGINT NOT NULL,
    cost_breakdown    TEXT    NOT NULL,
    gap               DOUBLE PRECISION,
    solver            TEXT    NOT NULL,
    solve_seconds     DOUBLE PRECISION    NOT NULL,
    diagnosis         TEXT,
    scenario          TEXT    NOT NULL,
    plan              TEXT    NOT NULL,
    catalogue_version BIGINT NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL
);

-- The batches a cycle took. `active` while the plan holds the batch: at most one plan
-- holds a batch at a time (an infeasible plan holds none; a factory's rejection will
-- release it back to the queue).
CREATE TABLE plan_batches (
    plan_id  TEXT    NOT NULL REFERENCES plans (id),
    batch_id TEXT    NOT NULL REFERENCES batches (id),
    active   BOOLEAN NOT NULL,
    PRIMARY KEY (plan_id, batch_id)
);
CREATE UNIQUE INDEX plan_batches_one_active ON plan_batches (batch_id) WHERE active;
CREATE INDEX plan_batches_by_batch ON plan_batches (batch_id);

-- Stock on hand a plan took from the catalogue when it was released.
CREATE TABLE plan_reservations (
    plan_id     TEXT NOT NULL REFERENCES plans (id),
    material_id TEXT NOT NULL,
    quantity    DOUBLE PRECISION NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (plan_id, material_id)
);

-- A factory's part of a plan. `seq` is the factory's delivery sequence, assigned when the
-- plan is stored, in the same transaction: 1, 2, 3, ... per factory, never reused.
CREATE TABLE work_orders (
    id         TEXT    NOT NULL PRIMARY KEY,
    plan_id    TEXT    NOT NULL REFERENCES plans (id),
    factory_id TEXT    NOT NULL,
    seq        BIGINT NOT NULL CHECK (seq > 0),
    body       TEXT    NOT NULL,
    due_at     TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    UNIQUE (factory_id, seq)
);
CREATE INDEX work_orders_by_plan ON work_orders (plan_id);

-- Which batches' units each work order makes (a batch split over two factories appears
-- in both), so a batch's production state can be found from the batch.
CREATE TABLE work_order_batches (
    work_order_id TEXT    NOT NULL REFERENCES work_orders (id),
    batch_id      TEXT    NOT NULL REFERENCES batches (id),
    sku           TEXT    NOT NULL,
    units         BIGINT NOT NULL CHECK (units > 0),
    PRIMARY KEY (work_order_id, batch_id)
);
CREATE INDEX work_order_batches_by_batch ON work_order_batches (batch_id);

-- How far each factory has acknowledged its work orders (delivery resumes after it).
CREATE TABLE factory_cursors (
    factory_id TEXT    NOT NULL PRIMARY KEY,
    acked_seq  BIGINT NOT NULL CHECK (acked_seq >= 0),
    updated_at TIMESTAMPTZ NOT NULL
);

-- Factories that rejected a batch; the next cycles plan the batch elsewhere.
CREATE TABLE batch_factory_exclusions (
    batch_id   TEXT    NOT NULL REFERENCES batches (id),
    factory_id TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch_id, factory_id)
);
