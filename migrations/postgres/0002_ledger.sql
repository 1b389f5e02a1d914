-- The money ledger: deposits held, captured or released, balances, forfeits and
-- settlements, as an append-only double-entry ledger written in the same transaction as
-- the pooling change that causes each movement. See crates/c2m-domain/src/ledger.rs for
-- the chart of accounts and the movements.
--
-- Pre-orders placed before this migration have no ledger history; c2m had no money
-- handling then and such databases exist only in development.

-- Campaign terms: the price ladder (a JSON array of {min_units, unit_price}, read and
-- written whole with the campaign; TEXT as on SQLite so both backends read it the same
-- way) and the balance window in seconds (NULL when the deposit is the full price).
ALTER TABLE campaigns ADD COLUMN price_ladder TEXT NOT NULL DEFAULT '[]';
ALTER TABLE campaigns ADD COLUMN balance_window_secs BIGINT CHECK (balance_window_secs > 0);

-- Batches: the price fixed at lock, the end of the balance window, the units that left
-- with a forfeit, and when the batch became ready for production planning. `units` is
-- frozen at lock (the pooling code only updates open batches), so the 0001 check
-- "a locked batch holds at least its threshold" stays true of the units at lock.
ALTER TABLE batches ADD COLUMN final_unit_price BIGINT CHECK (final_unit_price > 0);
-- The currency of final_unit_price, written with it (the campaign's currency).
ALTER TABLE batches ADD COLUMN currency TEXT CHECK (length(currency) = 3);
ALTER TABLE batches ADD COLUMN balance_due_by TIMESTAMPTZ;
ALTER TABLE batches ADD COLUMN forfeited_units BIGINT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD CONSTRAINT batches_forfeited_units_range
    CHECK (forfeited_units >= 0 AND forfeited_units <= units);
ALTER TABLE batches ADD COLUMN ready_at TIMESTAMPTZ;

CREATE INDEX batches_balance_due ON batches (balance_due_by) WHERE ready_at IS NULL AND status = 'locked';
CREATE INDEX batches_ready ON batches (ready_at) WHERE ready_at IS NOT NULL;

-- Pre-orders: the state of the deposit hold and the balance.
ALTER TABLE preorders ADD COLUMN hold_state TEXT NOT NULL DEFAULT 'held'
    CHECK (hold_state IN ('held', 'captured', 'released'));
ALTER TABLE preorders ADD COLUMN balance_due BIGINT CHECK (balance_due >= 0);
ALTER TABLE preorders ADD COLUMN balance_paid_at TIMESTAMPTZ;
ALTER TABLE preorders ADD COLUMN forfeited_at TIMESTAMPTZ;

-- A hold resolves once: held -> captured or held -> released, never back, never both.
CREATE FUNCTION preorders_hold_resolves_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.hold_state IS DISTINCT FROM OLD.hold_state
        AND (OLD.hold_state <> 'held' OR NEW.hold_state = 'held') THEN
        RAISE EXCEPTION 'preorders_hold_resolves_once: a deposit hold is captured or released exactly once'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER preorders_hold_resolves_once BEFORE UPDATE OF hold_state ON preorders
    FOR EACH ROW EXECUTE FUNCTION preorders_hold_resolves_once();

-- Ledger transactions. `preorder_id` is set for movements of one pre-order, `batch_id`
-- for settlements of a batch.
CREATE TABLE ledger_txns (
    seq         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id          TEXT        NOT NULL UNIQUE,
    campaign_id TEXT        NOT NULL REFERENCES campaigns (id),
    preorder_id TEXT        REFERENCES preorders (id),
    batch_id    TEXT        REFERENCES batches (id),
    kind        TEXT        NOT NULL
        CHECK (kind IN ('hold', 'release', 'capture', 'balance', 'forfeit', 'settle')),
    currency    TEXT        NOT NULL CHECK (length(currency) = 3),
    at          TIMESTAMPTZ NOT NULL,
    CHECK ((kind = 'settle') = (preorder_id IS NULL AND batch_id IS NOT NULL))
);

CREATE INDEX ledger_txns_by_campaign ON ledger_txns (campaign_id, seq);

-- Each pre-order has at most one movement of each kind: one hold, one capture or release,
-- one balance payment, one forfeit. Each batch settles once.
CREATE UNIQUE INDEX ledger_one_movement_per_kind ON ledger_txns (preorder_id, kind)
    WHERE preorder_id IS NOT NULL;
CREATE UNIQUE INDEX ledger_one_settlement_per_batch ON ledger_txns (batch_id)
    WHERE kind = 'settle';

-- The legs of a transaction: signed minor units (credit positive).
CREATE TABLE ledger_postings (
    txn_seq BIGINT NOT NULL REFERENCES ledger_txns (seq),
    account TEXT   NOT NULL,
    amount  BIGINT NOT NULL CHECK (amount <> 0),
    PRIMARY KEY (txn_seq, account)
);

CREATE INDEX ledger_postings_by_account ON ledger_postings (account);

-- Append-only, and capture and release of one hold are exclusive.
CREATE FUNCTION ledger_txns_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'the ledger is append-only' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.kind IN ('capture', 'release') AND EXISTS (
        SELECT 1 FROM ledger_txns
        WHERE preorder_id = NEW.preorder_id AND kind IN ('capture', 'release')
    ) THEN
        RAISE EXCEPTION 'ledger_hold_resolves_one_way: a hold is captured or released, not both'
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER ledger_txns_guard BEFORE INSERT OR UPDATE OR DELETE ON ledger_txns
    FOR EACH ROW EXECUTE FUNCTION ledger_txns_guard();

CREATE FUNCTION ledger_postings_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the ledger is append-only' USING ERRCODE = 'check_violation';
END;
$$;

CREATE TRIGGER ledger_postings_append_only BEFORE UPDATE OR DELETE ON ledger_postings
    FOR EACH ROW EXECUTE FUNCTION ledger_postings_append_only();

-- Every transaction balances, checked at commit (when all its legs are in).
CREATE FUNCTION ledger_txn_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT COALESCE(SUM(amount), 0) FROM ledger_postings WHERE txn_seq = NEW.txn_seq) <> 0 THEN
        RAISE EXCEPTION 'ledger_txn_balances: transaction % does not balance', NEW.txn_seq
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER ledger_txn_balances AFTER INSERT ON ledger_postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_txn_balances();
