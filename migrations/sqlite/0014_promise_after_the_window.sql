-- Campaigns created before the promise (migration 0009) were given 42 days whatever their
-- balance window, so one with a window of 42 days or more was promised to ship before its
-- balance was even due (a 50-day window: promised on day 42, balances due on day 50). A
-- campaign made since cannot be so (a promise not longer than the window is refused), so
-- these are exactly those campaigns: they get the promise the rule gives a campaign
-- without one, the later of 42 days and the window (in whole days) plus 28
-- (c2m_domain::campaign, docs/promise.md). A promise that was possible is left as it was.
UPDATE campaigns
SET ships_within_days = MAX(42, (balance_window_secs + 86399) / 86400 + 28)
WHERE balance_window_secs IS NOT NULL
  AND ships_within_days <= (balance_window_secs + 86399) / 86400;
