-- Factory delivery: work order progress, and rejection back to the planning queue.

-- Where each work order stands at its factory (see c2m_domain::production). `tally` is
-- the JSON of what its reports counted (units ordered, checked, shipped).
ALTER TABLE work_orders ADD COLUMN state TEXT NOT NULL DEFAULT 'issued'
    CHECK (state IN ('issued', 'accepted', 'rejected', 'in_production', 'qc_passed',
                     'qc_failed', 'shipped'));
ALTER TABLE work_orders ADD COLUMN tally TEXT NOT NULL DEFAULT '{}';
ALTER TABLE work_orders ADD COLUMN state_at INTEGER;
CREATE INDEX work_orders_by_factory_state ON work_orders (factory_id, state);

-- Every report that changed a work order, append-only, in the order they were made.
CREATE TABLE work_order_events (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    work_order_id TEXT    NOT NULL REFERENCES work_orders (id),
    factory_id    TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    body          TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX work_order_events_by_order ON work_order_events (work_order_id, seq);
CREATE TRIGGER work_order_events_append_only_u BEFORE UPDATE ON work_order_events
BEGIN SELECT RAISE(ABORT, 'work_order_events is append-only'); END;
CREATE TRIGGER work_order_events_append_only_d BEFORE DELETE ON work_order_events
BEGIN SELECT RAISE(ABORT, 'work_order_events is append-only'); END;

-- A batch may now be held by several plans at once: when a factory rejects its part of a
-- split batch, only that part goes back to the queue and a later plan makes it, while the
-- other factory's work order of the first plan stays live. What waits for planning is
-- decided by units (c2m_store::planning::QUEUED_BATCHES), not by this flag, which now
-- only says whether the plan still makes some of the batch.
DROP INDEX plan_batches_one_active;
