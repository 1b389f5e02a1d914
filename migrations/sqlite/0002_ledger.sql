-- The money ledger: deposits held, captured or released, balances, forfeits and
-- settlements, as an append-only double-entry ledger written in the same transaction as
-- the pooling change that causes each movement. See crates/c2m-domain/src/ledger.rs for
-- the chart of accounts and the movements.
--
-- Pre-orders placed before this migration have no ledger history; c2m had no money
-- handling then and such databases exist only in development.

-- Campaign terms: the price ladder (a JSON array of {min_units, unit_price}, read and
-- written whole with the campaign) and the balance window in seconds (NULL when the
-- deposit is the full price).
ALTER TABLE campaigns ADD COLUMN price_ladder TEXT NOT NULL DEFAULT '[]';
ALTER TABLE campaigns ADD COLUMN balance_window_secs INTEGER CHECK (balance_window_secs > 0);

-- Batches: the price fixed at lock, the end of the balance window, the units that left
-- with a forfeit, and when the batch became ready for production planning. `units` is
-- frozen at lock (the pooling code only updates open batches), so the 0001 check
-- "a locked batch holds at least its threshold" stays true of the units at lock.
ALTER TABLE batches ADD COLUMN final_unit_price INTEGER CHECK (final_unit_price > 0);
-- The currency of final_unit_price, written with it (the campaign's currency).
ALTER TABLE batches ADD COLUMN currency TEXT CHECK (length(currency) = 3);
ALTER TABLE batches ADD COLUMN balance_due_by INTEGER;
ALTER TABLE batches ADD COLUMN forfeited_units INTEGER NOT NULL DEFAULT 0
    CHECK (forfeited_units >= 0 AND forfeited_units <= units);
ALTER TABLE batches ADD COLUMN ready_at INTEGER;

CREATE INDEX batches_balance_due ON batches (balance_due_by) WHERE ready_at IS NULL AND status = 'locked';
CREATE INDEX batches_ready ON batches (ready_at) WHERE ready_at IS NOT NULL;

-- Pre-orders: the state of the deposit hold and the balance.
ALTER TABLE preorders ADD COLUMN hold_state TEXT NOT NULL DEFAULT 'held'
    CHECK (hold_state IN ('held', 'captured', 'released'));
ALTER TABLE preorders ADD COLUMN balance_due INTEGER CHECK (balance_due >= 0);
ALTER TABLE preorders ADD COLUMN balance_paid_at INTEGER;
ALTER TABLE preorders ADD COLUMN forfeited_at INTEGER;

-- A hold resolves once: held -> captured or held -> released, never back, never both.
CREATE TRIGGER preorders_hold_resolves_once BEFORE UPDATE OF hold_state ON preorders
WHEN OLD.hold_state <> 'held' OR NEW.hold_state = 'held'
BEGIN
    SELECT RAISE(ABORT, 'preorders_hold_resolves_once: a deposit hold is captured or released exactly once');
END;

-- Ledger transactions. `preorder_id` is set for movements of one pre-order, `batch_id`
-- for settlements of a batch.
CREATE TABLE ledger_txns (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    campaign_id TEXT    NOT NULL REFERENCES campaigns (id),
    preorder_id TEXT    REFERENCES preorders (id),
    batch_id    TEXT    REFERENCES batches (id),
    kind        TEXT    NOT NULL
        CHECK (kind IN ('hold', 'release', 'capture', 'balance', 'forfeit', 'settle')),
    currency    TEXT    NOT NULL CHECK (length(currency) = 3),
    at          INTEGER NOT NULL,
    CHECK ((kind = 'settle') = (preorder_id IS NULL AND batch_id IS NOT NULL))
);

CREATE INDEX ledger_txns_by_campaign ON ledger_txns (campaign_id, seq);

-- Each pre-order has at most one movement of each kind: one hold, one capture or release,
-- one balance payment, one forfeit. Each batch settles once.
CREATE UNIQUE INDEX ledger_one_movement_per_kind ON ledger_txns (preorder_id, kind)
    WHERE preorder_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_one_settlement_per_batch ON ledger_txns (batch_id)
    WHERE kind = 'settle';

-- Capture and release are exclusive: a hold resolves one way.
CREATE TRIGGER ledger_hold_resolves_one_way BEFORE INSERT ON ledger_txns
WHEN NEW.kind IN ('capture', 'release')
    AND EXISTS (SELECT 1 FROM ledger_txns
                WHERE preorder_id = NEW.preorder_id AND kind IN ('capture', 'release'))
BEGIN
    SELECT RAISE(ABORT, 'ledger_hold_resolves_one_way: a hold is captured or released, not both');
END;

-- The legs of a transaction: signed minor units (credit positive), summing to zero per
-- transaction (the domain cannot build any other; the tests check the stored sums).
CREATE TABLE ledger_postings (
    txn_seq INTEGER NOT NULL REFERENCES ledger_txns (seq),
    account TEXT    NOT NULL,
    amount  INTEGER NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (txn_seq, account)
);

CREATE INDEX ledger_postings_by_account ON ledger_postings (account);

CREATE TRIGGER ledger_txns_no_update BEFORE UPDATE ON ledger_txns
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_txns_no_delete BEFORE DELETE ON ledger_txns
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_postings_no_update BEFORE UPDATE ON ledger_postings
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;

CREATE TRIGGER ledger_postings_no_delete BEFORE DELETE ON ledger_postings
BEGIN
    SELECT RAISE(ABORT, 'the ledger is append-only');
END;
