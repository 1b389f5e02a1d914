-- Scheduled planning cycles take turns across the replicas of one store
-- (c2m_store::planning, docs/planning.md). Each replica's schedule ticks on its own; before
-- it solves, a replica takes this one row's lease until its cycle's time limit has passed
-- with room to store the plan, and gives it up when the cycle ends. A replica that finds
-- the lease held by another skips its tick: before, every replica solved the same queue at
-- the same moment, and all but one threw their solve away when storing found the batches
-- planned. A replica that dies holding the lease holds it no longer than `lease_until`.
CREATE TABLE planning_lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    owner       TEXT NOT NULL,
    lease_until TIMESTAMPTZ NOT NULL
);
