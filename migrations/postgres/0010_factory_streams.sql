-- A factory's one stream, across replicas: each `FactoryService.Subscribe` raises its
-- factory's generation in one upsert and keeps the number it got; a stream whose number
-- is no longer the stored one has been replaced and ends (ABORTED) before it sends another
-- page, whichever replica serves it (see c2m_store::factory). One row per factory that
-- ever subscribed; the generation only grows.
CREATE TABLE factory_streams (
    factory_id TEXT        NOT NULL PRIMARY KEY,
    generation BIGINT      NOT NULL CHECK (generation > 0),
    claimed_at TIMESTAMPTZ NOT NULL
);
