-- The merchant's levers (issue 17): closing and cancelling campaigns, refunds of cancelled
-- campaigns through the ledger, and where a pre-order's demand came from.

-- Campaigns: when the merchant closed (stopped selling early) or cancelled it.
ALTER TABLE campaigns ADD COLUMN closed_at TIMESTAMPTZ;
ALTER TABLE campaigns ADD COLUMN cancelled_at TIMESTAMPTZ;

-- Pre-orders refunded by a cancelled campaign (their cancelled_at is set with it).
ALTER TABLE preorders ADD COLUMN refunded_at TIMESTAMPTZ;

-- A locked batch whose pre-orders a cancelled campaign refunded: it leaves the planning
-- queue and its balance window is never closed.
ALTER TABLE batches ADD COLUMN refunded_at TIMESTAMPTZ;

-- Where a pre-order's demand came from, when the storefront says: a channel, a region, and
-- the consumer who shared the campaign. Written with the pre-order, never changed.
CREATE TABLE preorder_sources (
    preorder_id TEXT NOT NULL PRIMARY KEY REFERENCES preorders (id),
    campaign_id TEXT NOT NULL REFERENCES campaigns (id),
    channel     TEXT,
    region      TEXT,
    referrer    TEXT
);

CREATE INDEX preorder_sources_by_campaign ON preorder_sources (campaign_id);

-- The ledger gains the kind `refund` (a cancelled campaign gives back a captured deposit
-- and a paid balance, once per pre-order: the unique index per pre-order and kind).
ALTER TABLE ledger_txns DROP CONSTRAINT ledger_txns_kind_check;
ALTER TABLE ledger_txns ADD CONSTRAINT ledger_txns_kind_check
    CHECK (kind IN ('hold', 'release', 'capture', 'balance', 'forfeit', 'settle', 'refund'));
