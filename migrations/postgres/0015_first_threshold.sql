-- The threshold a campaign opened with, kept when LowerThreshold first moves it (NULL:
-- never lowered, the threshold is the first). The fill forecast of a first campaign takes
-- this threshold's pace as its prior, so that a lowered threshold lowers only the units
-- needed, as the advice that recommended it said (docs/forecast.md). Campaigns lowered
-- before this column existed keep NULL (their lowered threshold sets the pace, as before).
ALTER TABLE campaigns ADD COLUMN first_threshold BIGINT;
