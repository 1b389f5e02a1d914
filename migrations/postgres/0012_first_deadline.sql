-- The deadline a campaign opened with, kept when ExtendDeadline first moves it (NULL: never
-- extended, the deadline is the first). The fill forecast of a first campaign takes the
-- merchant's threshold over this length as its prior pace, so that an extension adds days
-- at that pace instead of spreading the same threshold over more of them
-- (docs/forecast.md). Campaigns extended before this column existed keep NULL.
ALTER TABLE campaigns ADD COLUMN first_deadline TIMESTAMPTZ;
