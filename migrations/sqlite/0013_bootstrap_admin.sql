-- The admin token a server writes to DATA_DIR/admin.token when the store has no active
-- admin (a first start, or every admin revoked) carries the number of admin tokens the
-- store had when it decided: replicas starting together on one database decide alike, and
-- this unique index lets exactly one of them store its token (the others write no file).
-- Tokens made otherwise keep NULL, which the index does not compare.
ALTER TABLE api_tokens ADD COLUMN bootstrap_seq BIGINT;
CREATE UNIQUE INDEX api_tokens_bootstrap ON api_tokens (bootstrap_seq);
