-- Every ledger transaction balances: checked once per INSERT statement on ledger_postings
-- instead of once per posting at commit.
--
-- 0002 checked with a deferred constraint trigger FOR EACH ROW: at commit, one SUM query
-- per posting row. A batch that locks writes two postings per pre-order, and a group of
-- placements two per order, so the commit of a campaign's group ran hundreds of queries
-- while the campaign's lock was held. The store writes every leg of a transaction in the
-- same statement as the others (crates/c2m-store/src/postgres/ledger.rs), so a check at
-- the end of each statement sees every transaction whole; and it is stricter than before:
-- no statement can leave a transaction unbalanced even for the rest of its database
-- transaction.

DROP TRIGGER ledger_txn_balances ON ledger_postings;
DROP FUNCTION ledger_txn_balances();

CREATE FUNCTION ledger_txn_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unbalanced BIGINT;
BEGIN
    -- The statement's own rows are enough: postings are append-only (0002), and every
    -- statement before this one left each transaction balanced, so a transaction balances
    -- after this statement exactly when the legs this statement added to it sum to zero.
    SELECT txn_seq INTO unbalanced
    FROM new_postings
    GROUP BY txn_seq
    HAVING SUM(amount) <> 0
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger_txn_balances: transaction % does not balance', unbalanced
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER ledger_txn_balances AFTER INSERT ON ledger_postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_txn_balances();
