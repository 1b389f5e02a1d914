-- A work order withdrawn before its factory accepted it: the merchant cancelled its
-- campaign, and nothing else needs it (c2m_store::levers). The withdrawal is told to the
-- factory on its stream, in order with its work orders, so it takes the next number of
-- the factory's sequence: `withdrawn_seq`, with the reason told. NULL: not withdrawn.
--
-- Its `state` is stored as 'rejected': like a rejected work order it makes nothing, and
-- every query that counts live work orders (the planning queue, a batch's production, a
-- cancel's refunds) already leaves 'rejected' out. SQLite cannot change the column's CHECK
-- without rebuilding the table, so the column below is what tells the two apart
-- (c2m_store::planning::work_order reads such a row as withdrawn); work_order_events
-- records it as 'withdrawn'.
ALTER TABLE work_orders ADD COLUMN withdrawn_seq INTEGER;
ALTER TABLE work_orders ADD COLUMN withdrawn_reason TEXT;
-- The factory's stream reads withdrawals after a cursor beside its work orders.
CREATE UNIQUE INDEX work_orders_by_withdrawn_seq ON work_orders (factory_id, withdrawn_seq)
    WHERE withdrawn_seq IS NOT NULL;
