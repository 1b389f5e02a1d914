-- A factory's flat `capacity_hours` are hours per planning period, and the period is the
-- one of the server that imported them (`--plan-period-days`): this column keeps it, so a
-- cycle planning in other periods (a replica or a restart with another period length)
-- gives each of its periods the same hours per day, not the number as it stands (a
-- replica planning in 14-day periods took 35 hours a week as 35 hours a fortnight). NULL
-- for a factory imported before this migration: its hours count per period of whichever
-- server reads them, as they did. A dated calendar keeps its own period length.
ALTER TABLE catalogue_factories ADD COLUMN capacity_period_days INTEGER
    CHECK (capacity_period_days BETWEEN 1 AND 366);
