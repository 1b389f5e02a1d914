//! The SQL of the levers and of the reads built on a campaign's history, one text for both
//! dialects.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use c2m_domain::forecast::{Arrival, ArrivalHistory, Cancellation, OpenBatch};
use c2m_domain::{Batch, BatchId, Campaign, CampaignId, Preorder, PreorderSource};

use super::{ForecastInput, EARLIER_CAMPAIGNS, MIN_PRIOR_SELLING};
use crate::dialect::{one, Backend, Columns, Tx, Value};
use crate::pooling::{batch, batch_select, campaign, campaign_progress_on, campaign_select};
use crate::Result;
use crate::StoreError;

/// A campaign's demand: who ordered, when, through what. Units are the units ordered
/// (every pre-order, whatever became of it later), so each split adds up to `units`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Insights {
    pub campaign: Campaign,
    pub preorders: i64,
    pub units: i64,
    /// Units of pre-orders cancelled later (by the consumer, or refunded by a cancel).
    pub cancelled_units: i64,
    /// Width of the buckets of `units_over_time`, in seconds.
    pub bucket_secs: i64,
    /// One bucket per `bucket_secs` from the campaign's opening to its last pre-order
    /// (empty buckets included), in time order.
    pub units_over_time: Vec<UnitsAt>,
    /// Where the pre-orders came from.
    pub sources: Sources,
    /// Distinct consumers of the campaign.
    pub consumers: i64,
    /// Of those, the ones who had pre-ordered in a campaign created before this one (any
    /// sku).
    pub returning_consumers: i64,
}

/// Units ordered in one time bucket, and the running total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitsAt {
    pub at: DateTime<Utc>,
    pub preorders: i64,
    pub units: i64,
    /// Units ordered from the opening to the end of this bucket.
    pub cumulative_units: i64,
}

/// A campaign's pre-orders and units by what their requests said of their source: the
/// four lists are read and shown together (one per source column, and the top referrers
/// taken from the referrers' list), so they are one value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    /// By channel, region and referrer: largest first; the key is empty for pre-orders
    /// that did not say.
    pub by_channel: Vec<SourceCount>,
    pub by_region: Vec<SourceCount>,
    pub by_referrer: Vec<SourceCount>,
    /// The referrers (never the empty key) who brought the most units, at most `top`.
    pub top_referrers: Vec<SourceCount>,
}

/// Pre-orders and units under one value of a source (a channel, a region, a referrer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceCount {
    pub key: String,
    pub preorders: i64,
    pub units: i64,
}

/// One pre-order as the forecast reads it.
struct Event {
    campaign: String,
    at: DateTime<Utc>,
    units: i64,
    /// Cancelled by its consumer while its batch was open (not a cancel's refund).
    cancelled_at: Option<DateTime<Utc>>,
}

/// Sets a campaign's `$column` to `$2`, keeping the value it had in `$first` the first
/// time it moves (the forecast's prior pace reads the deadline and threshold the campaign
/// opened with). The right-hand sides read the row as it was. A campaign moved before
/// `$first` existed has none and a `campaign.changed` event of kind `$change` (every move
/// has one, and this one's is not written yet): its value is not its first, so it keeps
/// none (the forecast's old reading, docs/forecast.md) rather than taking a moved value
/// for the first.
macro_rules! keeping_the_first {
    ($column:literal, $first:literal, $change:literal) => {
        concat!(
            "UPDATE campaigns SET ",
            $first,
            " = COALESCE(",
            $first,
            ", ",
            "CASE WHEN EXISTS (SELECT 1 FROM events WHERE campaign_id = $1 ",
            "AND kind = 'campaign.changed' ",
            "AND data LIKE '%\"change\":\"",
            $change,
            "\"%') ",
            "THEN NULL ELSE ",
            $column,
            " END), ",
            $column,
            " = $2 WHERE id = $1"
        )
    };
}

impl<D: Backend> Tx<'_, D> {
    /// Writes where a pre-order's demand came from, when the request said (one row; most
    /// pre-orders say nothing and cost nothing here).
    pub(crate) async fn insert_source(
        &mut self,
        preorder: &Preorder,
        source: &PreorderSource,
    ) -> Result<()> {
        if source.is_empty() {
            return Ok(());
        }
        let sql = "INSERT INTO preorder_sources (preorder_id, campaign_id, channel, region, \
             referrer) VALUES ($1, $2, $3, $4, $5)";
        let params = (
            preorder.id.as_str(),
            preorder.campaign_id.as_str(),
            source.channel.as_deref(),
            source.region.as_deref(),
            source.referrer.as_ref().map(|r| r.as_str()),
        );
        D::query(sql, params).run(self).await
    }

    /// Moves the campaign's deadline.
    pub(crate) async fn set_deadline(
        &mut self,
        campaign: &CampaignId,
        deadline: DateTime<Utc>,
    ) -> Result<()> {
        // The first deadline is kept for the forecast's prior pace (migration 0012).
        let sql = keeping_the_first!("deadline", "first_deadline", "deadline_extended");
        self.update_campaign(sql, campaign, deadline, "vanished")
            .await
    }

    /// Sets the campaign's threshold and its open batch's.
    pub(crate) async fn set_threshold(
        &mut self,
        campaign: &CampaignId,
        threshold: i64,
    ) -> Result<()> {
        // The first threshold is kept for the forecast's prior pace (migration 0015).
        let sql = keeping_the_first!("batch_threshold", "first_threshold", "threshold_lowered");
        self.update_campaign(sql, campaign, threshold, "vanished")
            .await?;
        let sql = "UPDATE batches SET threshold = $2 WHERE campaign_id = $1 AND status = 'open'";
        D::query(sql, (campaign.as_str(), threshold))
            .run(self)
            .await
    }

    /// Records that the campaign was closed (`closed_at`) or cancelled (`cancelled_at`).
    pub(crate) async fn set_campaign_ended(
        &mut self,
        campaign: &CampaignId,
        column: &'static str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let sql = match column {
            "closed_at" => {
                "UPDATE campaigns SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL"
            }
            "cancelled_at" => {
                "UPDATE campaigns SET cancelled_at = $2 WHERE id = $1 AND cancelled_at IS NULL"
            }
            other => return Err(StoreError::Corrupt(format!("no campaign column {other}"))),
        };
        self.update_campaign(sql, campaign, at, &format!("already has {column}"))
            .await
    }

    /// Runs `sql`, which sets a column of the campaign `$1` to `$2` and must change its row
    /// (otherwise the campaign `unchanged`, as corrupt data). A lever's update outdates the
    /// copy of the row a group holds ([`Tx::hold_campaign`]), so the copy is dropped.
    async fn update_campaign<'q>(
        &mut self,
        sql: &'q str,
        campaign: &'q CampaignId,
        value: impl Into<Value<'q>>,
        unchanged: &str,
    ) -> Result<()> {
        self.held = None;
        let done = D::query(sql, (campaign.as_str(), value))
            .execute(self)
            .await?;
        one(done, || format!("campaign {campaign} {unchanged}"))
    }

    /// The campaign's locked batches not refunded yet, in sequence order, with their rows' locks
    /// (PostgreSQL): whether such a batch is in production, and so whether it may be
    /// refunded, must not change until the refund commits. A plan takes its batches' locks
    /// before it reads the queue (`Tx::lock_batches`), so a plan and a refund of the same
    /// batch take turns, and the later sees what the earlier did. Batch locks are always the
    /// last a writer takes, in id order, so they close no cycle.
    pub(crate) async fn refundable_batches(&mut self, campaign: &CampaignId) -> Result<Vec<Batch>> {
        const PLAIN: &str = concat!(
            batch_select!(),
            "WHERE campaign_id = $1 AND status = 'locked' AND refunded_at IS NULL ORDER BY id"
        );
        const LOCKED: &str = concat!(
            batch_select!(),
            "WHERE campaign_id = $1 AND status = 'locked' AND refunded_at IS NULL ORDER BY id \
             FOR UPDATE"
        );
        let mut batches = D::query(D::locking(PLAIN, LOCKED), (campaign.as_str(),))
            .all(self, batch)
            .await?;
        batches.sort_by_key(|b| b.seq);
        Ok(batches)
    }

    /// Whether a live (not rejected) work order makes units of the batch: it is in
    /// production, and a cancel leaves it alone.
    pub(crate) async fn in_production(&mut self, batch: &BatchId) -> Result<bool> {
        let sql = "SELECT COUNT(*) AS n FROM work_order_batches x \
             JOIN work_orders w ON w.id = x.work_order_id \
             WHERE x.batch_id = $1 AND w.state <> 'rejected'";
        let row = D::query(sql, (batch.as_str(),)).fetch_one(self).await?;
        Ok(row.int("n")? > 0)
    }

    /// What the fill forecast reads (see [`ForecastInput`]); `None` for an unknown campaign.
    pub(crate) async fn forecast_input(
        &mut self,
        id: &CampaignId,
        now: DateTime<Utc>,
    ) -> Result<Option<ForecastInput>> {
        let Some(progress) = campaign_progress_on::<D>(self, id).await? else {
            return Ok(None);
        };
        let this = progress.campaign.clone();
        let firsts = |r: &D::Row| Ok((r.ts_opt("first_deadline")?, r.int_opt("first_threshold")?));
        let (first_deadline, first_threshold) = D::query(
            "SELECT first_deadline, first_threshold FROM campaigns WHERE id = $1",
            (id.as_str(),),
        )
        .optional(self, firsts)
        .await?
        .unwrap_or_default();
        let open_batch = self.open_batch(id).await?.map(|b| OpenBatch {
            units: b.units,
            threshold: b.threshold,
        });
        let sql = concat!(
            campaign_select!(),
            "WHERE sku = $1 AND id <> $2 AND created_at <= $3 ORDER BY seq DESC"
        );
        let mut earlier: Vec<Campaign> = D::query(sql, (this.terms.sku.as_str(), id.as_str(), now))
            .all(self, campaign)
            .await?;
        earlier.retain(|c| {
            c.selling_ends() <= now
                && c.cancelled_at.is_none()
                && c.selling_ends() - c.terms.opens_at >= MIN_PRIOR_SELLING
        });
        earlier.truncate(EARLIER_CAMPAIGNS as usize);
        let sql = "SELECT p.campaign_id, p.created_at, p.quantity, p.cancelled_at, p.refunded_at \
             FROM preorders p JOIN campaigns c ON c.id = p.campaign_id \
             WHERE c.sku = $1 ORDER BY p.seq";
        let events = D::query(sql, (this.terms.sku.as_str(),))
            .all(self, |r| {
                let refunded = r.ts_opt("refunded_at")?.is_some();
                Ok(Event {
                    campaign: r.text("campaign_id")?,
                    at: r.ts("created_at")?,
                    units: r.int("quantity")?,
                    cancelled_at: r.ts_opt("cancelled_at")?.filter(|_| !refunded),
                })
            })
            .await?;
        let mut by_campaign: HashMap<&str, Vec<&Event>> = HashMap::new();
        for e in &events {
            by_campaign.entry(e.campaign.as_str()).or_default().push(e);
        }
        let history = |c: &Campaign, until: DateTime<Utc>| {
            let (opens, ends) = (c.terms.opens_at, c.selling_ends());
            let inside = |at: DateTime<Utc>| at >= opens && at <= until && at < ends;
            let mine = by_campaign.get(c.id.as_str()).map_or(&[][..], |v| v);
            ArrivalHistory {
                opens_at: opens,
                deadline: ends,
                first_deadline: None,
                first_threshold: None,
                arrivals: mine
                    .iter()
                    .filter(|e| inside(e.at))
                    .map(|e| Arrival {
                        at: e.at,
                        units: e.units,
                    })
                    .collect(),
                cancellations: mine
                    .iter()
                    .filter_map(|e| e.cancelled_at.filter(|at| inside(*at)).map(|at| (at, e)))
                    .map(|(at, e)| Cancellation { at, units: e.units })
                    .collect(),
            }
        };
        let earlier = earlier
            .iter()
            .map(|c| history(c, c.selling_ends()))
            .collect();
        Ok(Some(ForecastInput {
            history: ArrivalHistory {
                first_deadline,
                first_threshold,
                ..history(&this, now)
            },
            progress,
            open_batch,
            earlier,
        }))
    }

    /// A campaign's [`Insights`]; `None` for an unknown campaign.
    pub(crate) async fn insights(
        &mut self,
        id: &CampaignId,
        bucket_secs: i64,
        top: i64,
    ) -> Result<Option<Insights>> {
        let Some(progress) = campaign_progress_on::<D>(self, id).await? else {
            return Ok(None);
        };
        let this = progress.campaign.clone();
        let bucket_secs = bucket_secs.max(60);
        let sql = "SELECT p.created_at, p.quantity, p.cancelled_at FROM preorders p \
             WHERE p.campaign_id = $1 ORDER BY p.seq";
        let rows = D::query(sql, (id.as_str(),))
            .all(self, |r| {
                Ok((
                    r.ts("created_at")?,
                    r.int("quantity")?,
                    r.ts_opt("cancelled_at")?.is_some(),
                ))
            })
            .await?;
        let start = this.terms.opens_at;
        if let Some(latest) = rows.iter().map(|(at, _, _)| *at).max() {
            c2m_domain::levers::check_insight_buckets((latest - start).num_seconds(), bucket_secs)?;
        }
        let mut buckets: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        let (mut preorders, mut units, mut cancelled_units) = (0, 0, 0);
        for (at, quantity, cancelled) in &rows {
            let i = (*at - start).num_seconds().max(0) / bucket_secs;
            let b = buckets.entry(i).or_default();
            b.0 += 1;
            b.1 += quantity;
            preorders += 1;
            units += quantity;
            if *cancelled {
                cancelled_units += quantity;
            }
        }
        let last = buckets.keys().next_back().copied().unwrap_or(-1);
        let mut cumulative = 0;
        let units_over_time = (0..=last)
            .map(|i| {
                let (n, u) = buckets.get(&i).copied().unwrap_or((0, 0));
                cumulative += u;
                UnitsAt {
                    at: start + Duration::seconds(i * bucket_secs),
                    preorders: n,
                    units: u,
                    cumulative_units: cumulative,
                }
            })
            .collect();
        let sources = self.sources(id, top).await?;
        let sql = "SELECT COUNT(DISTINCT p.consumer_id) AS consumers, \
             COUNT(DISTINCT CASE WHEN EXISTS (SELECT 1 FROM preorders q \
                 JOIN campaigns e ON e.id = q.campaign_id \
                 WHERE q.consumer_id = p.consumer_id AND e.id <> p.campaign_id \
                 AND e.seq < c.seq) THEN p.consumer_id END) AS returned \
             FROM preorders p JOIN campaigns c ON c.id = p.campaign_id WHERE p.campaign_id = $1";
        let row = D::query(sql, (id.as_str(),)).fetch_one(self).await?;
        Ok(Some(Insights {
            consumers: row.int("consumers")?,
            returning_consumers: row.int("returned")?,
            campaign: this,
            preorders,
            units,
            cancelled_units,
            bucket_secs,
            units_over_time,
            sources,
        }))
    }

    /// The campaign's [`Sources`], with at most `top` top referrers.
    async fn sources(&mut self, id: &CampaignId, top: i64) -> Result<Sources> {
        let by_channel = self.split(id, "channel").await?;
        let by_region = self.split(id, "region").await?;
        let by_referrer = self.split(id, "referrer").await?;
        let top_referrers = by_referrer
            .iter()
            .filter(|s| !s.key.is_empty())
            .take(top.max(0) as usize)
            .cloned()
            .collect();
        Ok(Sources {
            by_channel,
            by_region,
            by_referrer,
            top_referrers,
        })
    }

    /// Pre-orders and units of the campaign by one source column, largest first.
    async fn split(&mut self, id: &CampaignId, column: &'static str) -> Result<Vec<SourceCount>> {
        let sql = match column {
            "channel" => SPLIT_CHANNEL,
            "region" => SPLIT_REGION,
            "referrer" => SPLIT_REFERRER,
            other => return Err(StoreError::Corrupt(format!("no source column {other}"))),
        };
        D::query(sql, (id.as_str(),))
            .all(self, |r| {
                Ok(SourceCount {
                    key: r.text("k")?,
                    preorders: r.int("n")?,
                    units: r.int("units")?,
                })
            })
            .await
    }
}

macro_rules! split_sql {
    ($column:literal) => {
        concat!(
            "SELECT COALESCE(s.",
            $column,
            ", '') AS k, COUNT(*) AS n, CAST(SUM(p.quantity) AS BIGINT) AS units \
             FROM preorders p LEFT JOIN preorder_sources s ON s.preorder_id = p.id \
             WHERE p.campaign_id = $1 GROUP BY COALESCE(s.",
            $column,
            ", '') ORDER BY units DESC, k"
        )
    };
}

const SPLIT_CHANNEL: &str = split_sql!("channel");
const SPLIT_REGION: &str = split_sql!("region");
const SPLIT_REFERRER: &str = split_sql!("referrer");
