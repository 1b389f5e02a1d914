-- The merchant's levers (issue 17): closing and cancelling campaigns, refunds of cancelled
-- campaigns through the ledger, and where a pre-order's demand came from.
--
-- The ledger's kinds are a CHECK constraint, which SQLite can change only by rebuilding the
-- table. sqlx runs this file in one transaction, where foreign keys cannot be switched off,
-- so both ledger tables are rebuilt in an order that never leaves a posting without its
-- transaction: new transactions, new postings referencing them, drop the old postings, drop
-- the old transactions (no longer referenced), rename (SQLite rewrites the new postings'
-- reference with the rename).

-- Campaigns: when the merchant closed (stopped selling early) or cancelled it.
ALTER TABLE campaigns ADD COLUMN closed_at INTEGER;
ALTER TABLE campaigns ADD COLUMN cancelled_at INTEGER;

-- Pre-orders refunded by a cancelled campaign (their cancelled_at is set with it).
ALTER TABLE preorders ADD COLUMN refunded_at INTEGER;

-- A locked batch whose pre-orders a cancelled campaign refunded: it leaves the planning
-- queue and its balance window is never closed.
ALTER TABLE batches ADD COLUMN refunded_at INTEGER;

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
CREATE TABLE ledger_txns_0008 (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    campaign_id TEXT    NOT NULL REFERENCES campaigns (id),
    preorder_id TEXT    REFERENCES preorders (id),
    batch_id    TEXT    REFERENCES batches (id),
    kind        TEXT    NOT NULL
        CHECK (kind IN ('hold', 'release', 'capture', 'balance', 'forfeit', 'settle', 'refund')),
    currency    TEXT    NOT NULL CHECK (length(currency) = 3),
    at          INTEGER NOT NULL,
    CHECK ((kind = 'settle') = (preorder_id IS NULL AND batch_id IS NOT NULL))
);

INSERT INTO ledger_txns_0008 (seq, id, campaign_id, preorder_id, batch_id, kind, currency, at)
    SELECT seq, id, campaign_id, preorder_id, batch_id, kind, currency, at FROM ledger_txns;

CREATE TABLE ledger_postings_0008 (
    txn_seq INTEGER NOT NULL REFERENCES ledger_txns_0008 (seq),
    account TEXT    NOT NULL,
    amount  INTEGER NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (txn_seq, account)
);

INSERT INTO ledger_postings_0008 (txn_seq, account, amount)
    SELECT txn_seq, account, amount FROM ledger_postings;

DROP TABLE ledger_postings;

DROP TABLE ledger_txns;

ALTER TABLE ledger_txns_0008 RENAME TO ledger_txns;

ALTER TABLE ledger_postings_0008 RENAME TO ledger_postings;

CREATE INDEX ledger_postings_by_account ON ledger_postings (account);

CREATE TRIGGER ledger_postings_no_update BEFORE UPDATE ON ledger_postings
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_postings_no_delete BEFORE DELETE ON ledger_postings
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE INDEX ledger_txns_by_campaign ON ledger_txns (campaign_id, seq);

CREATE UNIQUE INDEX ledger_one_movement_per_kind ON ledger_txns (preorder_id, kind)
    WHERE preorder_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_one_settlement_per_batch ON ledger_txns (batch_id)
    WHERE kind = 'settle';

CREATE TRIGGER ledger_hold_resolves_one_way BEFORE INSERT ON ledger_txns
WHEN NEW.kind IN ('capture', 'release')
    AND EXISTS (SELECT 1 FROM ledger_txns
                WHERE preorder_id = NEW.preorder_id AND kind IN ('capture', 'release'))
BEGIN
    SELECT RAISE(ABORT, 'ledger_hold_resolves_one_way: a hold is captured or released, not both');
END;

CREATE TRIGGER ledger_txns_no_update BEFORE UPDATE ON ledger_txns
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_txns_no_delete BEFORE DELETE ON ledger_txns
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

