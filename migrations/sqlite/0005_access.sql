-- Bearer tokens. Only a hash of each token's secret is kept; the token itself is shown
-- once, when it is created. `factory_id` binds a factory token to its factory.
CREATE TABLE api_tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    secret_hash TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'storefront', 'factory')),
    factory_id  TEXT,
    label       TEXT    NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    CHECK ((role = 'factory') = (factory_id IS NOT NULL))
);
