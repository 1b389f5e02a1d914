//! A tiny storefront client for trying c2m by hand against a running server.
//!
//! ```text
//! cargo run --example storefront -- import-catalogue examples/scenarios/kettle-c2m.toml
//! cargo run --example storefront -- create-campaign --sku kettle-17-white --threshold 3
//! cargo run --example storefront -- place --campaign cmp_... --consumer alice --quantity 2
//! cargo run --example storefront -- campaign cmp_...
//! cargo run --example storefront -- preorders --consumer alice
//! cargo run --example storefront -- cancel --preorder po_... --consumer alice
//! cargo run --example storefront -- queue          # admin: batches waiting for planning
//! cargo run --example storefront -- run-planning   # admin: a planning cycle now
//! cargo run --example storefront -- purchase-orders --open --csv > open-orders.csv
//! cargo run --example storefront -- receive --purchase-order pur_... --quantity 60
//! cargo run --example storefront -- cancel-purchase-order --purchase-order pur_...
//! cargo run --example storefront -- watch [--campaign cmp_...] [--after 0]   # events, live
//! cargo run --example storefront -- webhook add http://127.0.0.1:8088/hooks '*'  # admin
//! cargo run --example storefront -- webhook list | enable ID | disable ID | delete ID | replay ID SEQ | deliveries ID
//! cargo run --example storefront -- advice cmp_... # admin: falling short? what to do
//! cargo run --example storefront -- insights cmp_... --format table|csv|svg
//! cargo run --example storefront -- extend cmp_... --days 3      # admin: the levers
//! cargo run --example storefront -- lower-threshold cmp_... --threshold 40
//! cargo run --example storefront -- close cmp_...
//! cargo run --example storefront -- cancel-campaign cmp_...
//! ```
//!
//! Every mutating call sends an idempotency key: pass `--key` to retry a call safely,
//! otherwise a fresh one is generated.

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::auth::{client_token, Bearer};
use c2m_server::tls::ClientTls;

#[derive(Parser)]
#[command(about = "Try c2m from the command line")]
struct Args {
    /// The server's address (`https://...` for TLS, with --tls-ca).
    #[arg(long, env = "C2M_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    #[command(flatten)]
    tls: ClientTls,
    /// Bearer token; by default the admin token a local server wrote to
    /// DATA_DIR/admin.token at its first start.
    #[arg(long, env = "C2M_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where a local server keeps its data (for admin.token).
    #[arg(long, env = "C2M_DATA_DIR", default_value = "data")]
    data_dir: std::path::PathBuf,
    /// Idempotency key for the call; a fresh one when absent.
    #[arg(long, global = true)]
    key: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the catalogue (products, materials, factories, suppliers) from a scenario file;
    /// a campaign's sku must be in the catalogue. The file is a whole scenario (each product
    /// with its `demand`, or `due` with a horizon), but demands are not kept: campaigns are
    /// the demand.
    ImportCatalogue {
        /// A scenario file, `.toml` or `.json`.
        file: std::path::PathBuf,
        /// Merge into the catalogue instead of replacing it.
        #[arg(long)]
        merge: bool,
        /// Where period 0 of the file's factory calendars starts: a date (`2027-02-08`,
        /// midnight UTC) or an RFC 3339 time; the moment of the import by default.
        #[arg(long, value_parser = parse_start)]
        calendar_starts: Option<DateTime<Utc>>,
    },
    /// Create a campaign (prices in minor units).
    CreateCampaign {
        #[arg(long, default_value = "kettle-17-white")]
        sku: String,
        #[arg(long, default_value = "Kettle 1.7 l, white")]
        title: String,
        #[arg(long, default_value = "CNY")]
        currency: String,
        // Negative numbers are passed on for the server to refuse naming its field:
        // `--price -1` was "unexpected argument '-1' found", naming no flag.
        #[arg(long, default_value_t = 39_900, allow_negative_numbers = true)]
        price: i64,
        #[arg(long, default_value_t = 5_000, allow_negative_numbers = true)]
        deposit: i64,
        #[arg(long, default_value_t = 50, allow_negative_numbers = true)]
        threshold: i64,
        #[arg(long)]
        batch_cap: Option<i64>,
        #[arg(long)]
        max_per_order: Option<i64>,
        #[arg(long)]
        max_per_consumer: Option<i64>,
        /// Deadline, in days from now. Counted from each run's now, so a retry with the
        /// same `--key` a moment later is another request (refused `ALREADY_EXISTS`): to
        /// retry, give `--deadline`.
        #[arg(long, default_value_t = 7.0, value_parser = days, allow_negative_numbers = true)]
        deadline_days: f64,
        /// Deadline as a date (midnight UTC) or an RFC 3339 time, instead of
        /// `--deadline-days`: the same on every run, so a retry with `--key` is the same
        /// request.
        #[arg(long, value_parser = parse_start, conflicts_with = "deadline_days")]
        deadline: Option<DateTime<Utc>>,
        /// The delivery promise: a locked batch ships within this many days of its lock
        /// (the server's default, six weeks, when not given).
        #[arg(long)]
        ships_within_days: Option<i64>,
        /// How long consumers have to pay the balance once their batch locks, in hours
        /// (none: the deposit is the whole price, or the server's rule).
        #[arg(long)]
        balance_window_hours: Option<i64>,
    },
    /// Show a campaign's progress.
    Campaign { id: String },
    /// List a campaign's batches.
    Batches { id: String },
    /// Place a pre-order.
    Place {
        #[arg(long)]
        campaign: String,
        #[arg(long)]
        consumer: String,
        #[arg(long, default_value_t = 1)]
        quantity: i64,
        /// The sales channel the order came through ("app", "wechat", ...).
        #[arg(long)]
        channel: Option<String>,
        /// The consumer's region.
        #[arg(long)]
        region: Option<String>,
        /// The consumer who shared the campaign.
        #[arg(long)]
        referrer: Option<String>,
    },
    /// One pre-order, whole: its money (deposit, balance, refunds), its batch's production
    /// stage and units shipped, and its ship date against the promise.
    Preorder { id: String },
    /// (Admin) A campaign's money: what consumers deposited and paid, what is held, what
    /// went to the merchant, what was refunded (docs/money.md).
    Money { campaign: String },
    /// List pre-orders of a consumer and/or a campaign.
    Preorders {
        #[arg(long, default_value = "")]
        consumer: String,
        #[arg(long, default_value = "")]
        campaign: String,
    },
    /// Pay a pre-order's balance (its batch locked; the deposit was less than the
    /// price): pays exactly the balance due, read from the pre-order first.
    Pay {
        #[arg(long)]
        preorder: String,
        #[arg(long, default_value = "")]
        consumer: String,
    },
    /// Cancel a pre-order while its batch is open.
    Cancel {
        #[arg(long)]
        preorder: String,
        #[arg(long, default_value = "")]
        consumer: String,
    },
    /// (Admin) The batches waiting for planning, with excluded factories.
    Queue,
    /// (Admin) Run a planning cycle now over every waiting batch.
    RunPlanning,
    /// (Admin) Purchase orders, as JSON or as CSV (for mailing to suppliers).
    PurchaseOrders {
        /// Only this supplier's.
        #[arg(long, default_value = "")]
        supplier: String,
        /// Only those to place now or still to arrive (open or partly received); planned
        /// orders, whose order date is still ahead, are left out (see --planned).
        #[arg(long, conflicts_with = "planned")]
        open: bool,
        /// Only planned orders: open, with their order date still ahead (not yet to send).
        #[arg(long)]
        planned: bool,
        /// CSV with a header line instead of JSON.
        #[arg(long)]
        csv: bool,
    },
    /// (Admin) Record material arriving on a purchase order.
    Receive {
        #[arg(long)]
        purchase_order: String,
        #[arg(long)]
        quantity: f64,
    },
    /// (Admin) Cancel an open purchase order.
    CancelPurchaseOrder {
        #[arg(long)]
        purchase_order: String,
    },
    /// Print events as they happen, one JSON document a line (docs/events.md; a large
    /// event's parts joined into one), until interrupted; resume with `--after` the last
    /// `seq` printed.
    Watch {
        /// Only this campaign's events.
        #[arg(long, default_value = "")]
        campaign: String,
        /// Start after this event number (0: from the first); live only when absent.
        #[arg(long)]
        after: Option<i64>,
    },
    /// (Admin) Will the open batch fill? The forecast, a lower threshold that keeps the
    /// margin at the planner's cost, and an extension.
    Advice {
        id: String,
        /// Target margin, a fraction of the unit price.
        #[arg(long, default_value_t = 0.15)]
        margin: f64,
        /// Lock probability an extension should reach.
        #[arg(long, default_value_t = 0.8)]
        target: f64,
    },
    /// (Admin) Who the demand is: units over time, by channel, region and referrer.
    Insights {
        id: String,
        /// Width of a time bucket, in seconds, at least 60 (the API reads 0 as its
        /// default; here 0 is refused, since the default is written out).
        #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(i64).range(1..))]
        bucket_seconds: i64,
        /// How many referrers to list, the most ordering first.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(1..))]
        top: i64,
        /// `table`, `csv` (units over time) or `svg` (units over time with the forecast band).
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// (Admin) Extend the deadline by some days (`--days`, from the deadline it has now, so
    /// a retry with the same `--key` after it worked is another request) or to a date
    /// (`--to`, the same on every run).
    Extend {
        id: String,
        #[arg(
            long,
            value_parser = days,
            required_unless_present = "to",
            allow_negative_numbers = true
        )]
        days: Option<f64>,
        /// The new deadline: a date (midnight UTC) or an RFC 3339 time.
        #[arg(long, value_parser = parse_start, conflicts_with = "days")]
        to: Option<DateTime<Utc>>,
    },
    /// (Admin) Lower the threshold (the open batch locks at once if it meets it).
    LowerThreshold {
        id: String,
        #[arg(long)]
        threshold: i64,
    },
    /// (Admin) Stop selling now.
    Close { id: String },
    /// (Admin) Cancel the campaign: refunds everything not yet in production.
    CancelCampaign { id: String },
    /// (Admin) Webhook endpoints: register, list, enable, disable, delete, replay, deliveries.
    #[command(subcommand)]
    Webhook(WebhookCmd),
}

#[derive(Subcommand)]
enum WebhookCmd {
    /// Register an endpoint for event types (`*` for all); prints its secret, once.
    Add {
        url: String,
        #[arg(default_value = "*")]
        event_types: Vec<String>,
    },
    /// Every endpoint, with its cursor and failures.
    List,
    /// Enable an endpoint (it resumes at its cursor).
    Enable { id: String },
    /// Disable an endpoint.
    Disable { id: String },
    /// Delete an endpoint for good: nothing more is sent to it, not even a pending retry
    /// (its delivery log stays readable with `deliveries`).
    Delete { id: String },
    /// Deliver again every event after `after_seq`.
    Replay { id: String, after_seq: i64 },
    /// An endpoint's delivery attempts.
    Deliveries {
        id: String,
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

/// A date (midnight UTC) or an RFC 3339 time, for `--calendar-starts`, `create-campaign
/// --deadline` and `extend --to`.
fn parse_start(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    // A date in the right shape that the calendar lacks (`2027-13-45`) was told "premature
    // end of input", the RFC 3339 parser's view of it.
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if shape {
        return Err(format!(
            "{s} is no date: months run 1-12, days as the month has them"
        ));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not a date (2027-02-08) or an RFC 3339 time: {e}"))
}

/// A number of days for `--deadline-days` and `--days`: finite and within a century
/// either way (a larger one is no date; the server judges whether it is in the past).
fn days(s: &str) -> Result<f64, String> {
    let d: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of days"))?;
    if !d.is_finite() || d.abs() > 36_500.0 {
        return Err(format!(
            "{s} days is not a date: at most 36500 days either way"
        ));
    }
    Ok(d)
}

#[path = "common/out.rs"]
mod out;

#[path = "common/client.rs"]
mod client;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (addr, token_given) = (args.addr.clone(), args.token.is_some());
    let data_dir = args.data_dir.clone();
    client::finish(run(args).await, &addr, token_given, &data_dir)
}

async fn run(args: Args) -> anyhow::Result<()> {
    // A token no header can carry is refused before any connection is tried.
    let bearer = Bearer::new(client_token(args.token.clone(), &args.data_dir).as_deref())?;
    let channel = args
        .tls
        .endpoint(&args.addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach c2m at {}; is `c2m serve` running?", args.addr))?;
    let mut catalogue = CatalogueServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut campaigns = CampaignServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut preorders = PreorderServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut planning =
        c2m_proto::v1::planning_service_client::PlanningServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
    let mut purchasing =
        c2m_proto::v1::purchasing_service_client::PurchasingServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
    let mut webhooks =
        c2m_proto::v1::webhook_service_client::WebhookServiceClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        );
    let mut levers = c2m_proto::v1::levers_service_client::LeversServiceClient::with_interceptor(
        channel.clone(),
        bearer.clone(),
    );
    if let Cmd::Watch { campaign, after } = &args.cmd {
        let mut events = c2m_proto::v1::event_service_client::EventServiceClient::with_interceptor(
            channel, bearer,
        );
        return watch(&mut events, campaign, *after).await;
    }
    let key = args
        .key
        .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4().simple()));
    let out: serde_json::Value = match args.cmd {
        Cmd::ImportCatalogue {
            file,
            merge,
            calendar_starts,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let format = if file.extension().is_some_and(|e| e == "json") {
                pb::ScenarioFormat::Json
            } else {
                pb::ScenarioFormat::Toml
            };
            let mode = if merge {
                pb::ImportMode::Merge
            } else {
                pb::ImportMode::Replace
            };
            let change = catalogue
                .import_scenario(pb::ImportScenarioRequest {
                    idempotency_key: key,
                    text,
                    format: format as i32,
                    mode: mode as i32,
                    calendar_starts_at: calendar_starts.map(|t| prost_types::Timestamp {
                        seconds: t.timestamp(),
                        nanos: 0,
                    }),
                })
                .await?
                .into_inner();
            serde_json::json!({
                "imported": file.display().to_string(),
                "catalogue_version": change.version,
                "products": change.products,
                "materials": change.materials,
                "factories": change.factories,
                "suppliers": change.suppliers,
            })
        }
        Cmd::CreateCampaign {
            sku,
            title,
            currency,
            price,
            deposit,
            threshold,
            batch_cap,
            max_per_order,
            max_per_consumer,
            deadline_days,
            deadline,
            ships_within_days,
            balance_window_hours,
        } => {
            let deadline = deadline.unwrap_or_else(|| {
                Utc::now() + chrono::Duration::seconds((deadline_days * 86_400.0) as i64)
            });
            let c = campaigns
                .create_campaign(pb::CreateCampaignRequest {
                    idempotency_key: key,
                    sku,
                    title,
                    currency,
                    unit_price_minor: price,
                    deposit_minor: deposit,
                    batch_threshold: threshold,
                    batch_cap,
                    max_per_order,
                    max_per_consumer,
                    total_cap: None,
                    opens_at: None,
                    deadline: Some(prost_types::Timestamp {
                        seconds: deadline.timestamp(),
                        nanos: deadline.timestamp_subsec_nanos() as i32,
                    }),
                    ships_within_days,
                    balance_window_seconds: balance_window_hours.map(|h| h.saturating_mul(3600)),
                    ..Default::default()
                })
                .await?
                .into_inner();
            serde_json::json!({
                "id": c.id,
                "sku": c.sku,
                "threshold": c.batch_threshold,
                "deadline": c.deadline.map(|t| rfc3339(&t)),
                "ships_within_days": c.ships_within_days,
                "balance_window_seconds": c.balance_window_seconds,
            })
        }
        Cmd::Campaign { id } => {
            let p = campaigns
                .get_campaign(pb::GetCampaignRequest { campaign_id: id })
                .await?
                .into_inner();
            // The terms the levers change and whether it still sells, then the progress.
            let c = p.campaign.clone().unwrap_or_default();
            let status = pb::CampaignStatus::try_from(c.status).map(|s| {
                s.as_str_name()
                    .trim_start_matches("CAMPAIGN_STATUS_")
                    .to_lowercase()
            });
            let time = |t: &Option<prost_types::Timestamp>| t.as_ref().map(rfc3339);
            serde_json::json!({
                "status": status.unwrap_or_else(|_| "unknown".into()),
                "threshold": c.batch_threshold,
                "deadline": time(&c.deadline),
                "closed_at": time(&c.closed_at),
                "cancelled_at": time(&c.cancelled_at),
                "open_batch_units": p.open_batch_units,
                "units_to_threshold": p.units_to_threshold,
                "units_available": p.units_available,
                "open_batch_seq": p.open_batch_seq,
                "batches_locked": p.batches_locked,
                "batches_failed": p.batches_failed,
                "remaining_seconds": p.remaining_seconds,
                "forecast": p.forecast.as_ref().map(forecast_json),
            })
        }
        Cmd::Batches { id } => {
            let bs = campaigns
                .list_batches(pb::ListBatchesRequest { campaign_id: id })
                .await?
                .into_inner();
            serde_json::Value::Array(
                bs.batches
                    .iter()
                    .map(|b| serde_json::json!({ "seq": b.seq, "id": b.id, "status": status_name(pb::BatchStatus::try_from(b.status).map(|s| s.as_str_name())), "units": b.units }))
                    .collect(),
            )
        }
        Cmd::Place {
            campaign,
            consumer,
            quantity,
            channel,
            region,
            referrer,
        } => {
            let p = preorders
                .place_preorder(pb::PlacePreorderRequest {
                    idempotency_key: key.clone(),
                    campaign_id: campaign,
                    consumer_id: consumer,
                    quantity,
                    channel,
                    region,
                    referrer,
                })
                .await?
                .into_inner();
            preorder_json(&p, Some(&key))
        }
        Cmd::Preorder { id } => {
            let p = preorders
                .get_preorder(pb::GetPreorderRequest { preorder_id: id })
                .await?
                .into_inner();
            preorder_detail_json(&p)
        }
        Cmd::Money { campaign } => {
            let mut ledger =
                c2m_proto::v1::ledger_service_client::LedgerServiceClient::with_interceptor(
                    channel.clone(),
                    bearer.clone(),
                );
            let m = ledger
                .get_campaign_money(pb::GetCampaignMoneyRequest {
                    campaign_id: campaign,
                })
                .await?
                .into_inner();
            serde_json::json!({
                "campaign_id": m.campaign_id,
                "currency": m.deposited.as_ref().map(|m| m.currency.clone()),
                "deposited": minor(&m.deposited),
                "held": minor(&m.held),
                "captured": minor(&m.captured),
                "released": minor(&m.released),
                "balances_paid": minor(&m.balances_paid),
                "balances_outstanding": minor(&m.balances_outstanding),
                "forfeited": minor(&m.forfeited),
                "settled": minor(&m.settled),
                "escrow": minor(&m.escrow),
                "merchant": minor(&m.merchant),
                "refunded": minor(&m.refunded),
                "refunded_by_merchant": minor(&m.refunded_by_merchant),
            })
        }
        Cmd::Preorders { consumer, campaign } => {
            // Every page: the server answers 50 at a time, and a list that stopped at the
            // first page would look complete.
            let mut all = Vec::new();
            let mut page_token = String::new();
            loop {
                let r = preorders
                    .list_preorders(pb::ListPreordersRequest {
                        consumer_id: consumer.clone(),
                        campaign_id: campaign.clone(),
                        page_size: 500,
                        page_token,
                    })
                    .await?
                    .into_inner();
                all.extend(r.preorders.iter().map(|p| preorder_json(p, None)));
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            serde_json::Value::Array(all)
        }
        Cmd::Pay { preorder, consumer } => {
            let p = preorders
                .get_preorder(pb::GetPreorderRequest {
                    preorder_id: preorder.clone(),
                })
                .await?
                .into_inner();
            // The server checks the amount is exactly what is due (and refuses, with a
            // reason, when nothing is: a batch not locked, a balance paid or forfeited).
            let due = p.balance_due.clone().unwrap_or_default();
            let paid = preorders
                .pay_balance(pb::PayBalanceRequest {
                    idempotency_key: key.clone(),
                    preorder_id: preorder,
                    consumer_id: consumer,
                    amount: Some(due),
                })
                .await?
                .into_inner();
            let mut out = preorder_json(&paid, Some(&key));
            out["balance_paid"] = serde_json::json!(paid.balance_paid.as_ref().map(|m| m.minor));
            out
        }
        Cmd::Cancel { preorder, consumer } => {
            let p = preorders
                .cancel_preorder(pb::CancelPreorderRequest {
                    idempotency_key: key.clone(),
                    preorder_id: preorder,
                    consumer_id: consumer,
                })
                .await?
                .into_inner();
            preorder_json(&p, Some(&key))
        }
        Cmd::Queue => {
            let q = planning
                .list_queued_batches(pb::ListQueuedBatchesRequest {})
                .await?
                .into_inner();
            serde_json::Value::Array(
                q.batches
                    .iter()
                    .map(|b| {
                        serde_json::json!({
                            "batch_id": b.batch.as_ref().map(|x| x.id.clone()),
                            "sku": b.sku,
                            "units_to_plan": b.units_to_plan,
                            "excluded_factories": b.excluded_factories,
                            "rejections": b.rejections.iter().map(|x| serde_json::json!({
                                "factory_id": x.factory_id,
                                "reason": x.reason,
                                "rejected_at": x.rejected_at.as_ref().map(rfc3339),
                            })).collect::<Vec<_>>(),
                            "last_plan": b.last_plan.as_ref().map(|p| p.id.clone()),
                        })
                    })
                    .collect(),
            )
        }
        Cmd::RunPlanning => {
            let p = planning
                .run_planning(pb::RunPlanningRequest {
                    idempotency_key: key.clone(),
                })
                .await?
                .into_inner();
            let s = p.summary.clone().unwrap_or_default();
            serde_json::json!({
                "plan_id": s.id,
                "status": status_name(pb::PlanStatus::try_from(s.status).map(|x| x.as_str_name())),
                "total_cost": s.total_cost.as_ref().map(|m| m.minor),
                "batches": p.batch_ids,
                "diagnosis": p.diagnosis,
                "work_orders": p.work_orders.iter().map(|w| serde_json::json!({
                    "factory": w.factory_id,
                    "seq": w.seq,
                    "id": w.id,
                    "runs": w.runs.iter().map(|r| format!("{} x {}", r.quantity, r.sku)).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "idempotency_key": key,
            })
        }
        Cmd::PurchaseOrders {
            supplier,
            open,
            planned,
            csv,
        } => {
            let mut orders = Vec::new();
            let mut page_token = String::new();
            loop {
                let page = purchasing
                    .list_purchase_orders(pb::ListPurchaseOrdersRequest {
                        supplier_id: supplier.clone(),
                        state: 0,
                        page_size: 100,
                        page_token: page_token.clone(),
                    })
                    .await?
                    .into_inner();
                orders.extend(page.purchase_orders.into_iter().filter(|p| {
                    let state = p.state();
                    (!open
                        || matches!(
                            state,
                            pb::PurchaseOrderState::Open | pb::PurchaseOrderState::PartlyReceived
                        ))
                        && (!planned || state == pb::PurchaseOrderState::Planned)
                }));
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            if csv {
                out::text(&purchase_orders_csv(&orders));
                return Ok(());
            }
            serde_json::Value::Array(orders.iter().map(purchase_order_json).collect())
        }
        Cmd::Receive {
            purchase_order,
            quantity,
        } => {
            let p = purchasing
                .receive_purchase_order(pb::ReceivePurchaseOrderRequest {
                    idempotency_key: key.clone(),
                    purchase_order_id: purchase_order,
                    quantity,
                })
                .await?
                .into_inner();
            purchase_order_json(&p)
        }
        Cmd::CancelPurchaseOrder { purchase_order } => {
            let p = purchasing
                .cancel_purchase_order(pb::CancelPurchaseOrderRequest {
                    idempotency_key: key.clone(),
                    purchase_order_id: purchase_order,
                })
                .await?
                .into_inner();
            purchase_order_json(&p)
        }
        Cmd::Watch { .. } => unreachable!("handled above"),
        Cmd::Webhook(cmd) => match cmd {
            WebhookCmd::Add { url, event_types } => {
                let r = webhooks
                    .register_endpoint(pb::RegisterEndpointRequest {
                        url,
                        event_types,
                        idempotency_key: key.clone(),
                    })
                    .await?
                    .into_inner();
                serde_json::json!({
                    "endpoint": r.endpoint.as_ref().map(endpoint_json),
                    "secret": r.secret,
                    "note": "the secret is shown this once: give it to the receiver",
                })
            }
            WebhookCmd::List => {
                let r = webhooks
                    .list_endpoints(pb::ListEndpointsRequest {})
                    .await?
                    .into_inner();
                serde_json::Value::Array(r.endpoints.iter().map(endpoint_json).collect())
            }
            WebhookCmd::Enable { id } => {
                let e = webhooks
                    .set_endpoint_enabled(pb::SetEndpointEnabledRequest {
                        endpoint_id: id,
                        enabled: true,
                        idempotency_key: key.clone(),
                    })
                    .await?
                    .into_inner();
                endpoint_json(&e)
            }
            WebhookCmd::Disable { id } => {
                let e = webhooks
                    .set_endpoint_enabled(pb::SetEndpointEnabledRequest {
                        endpoint_id: id,
                        enabled: false,
                        idempotency_key: key.clone(),
                    })
                    .await?
                    .into_inner();
                endpoint_json(&e)
            }
            WebhookCmd::Delete { id } => {
                let e = webhooks
                    .delete_endpoint(pb::DeleteEndpointRequest {
                        endpoint_id: id,
                        idempotency_key: key.clone(),
                    })
                    .await?
                    .into_inner();
                endpoint_json(&e)
            }
            WebhookCmd::Replay { id, after_seq } => {
                let e = webhooks
                    .replay_endpoint(pb::ReplayEndpointRequest {
                        endpoint_id: id,
                        after_seq,
                        idempotency_key: key.clone(),
                    })
                    .await?
                    .into_inner();
                endpoint_json(&e)
            }
            WebhookCmd::Deliveries { id, after } => {
                let r = webhooks
                    .list_deliveries(pb::ListDeliveriesRequest {
                        endpoint_id: id,
                        after,
                        limit: 0,
                    })
                    .await?
                    .into_inner();
                serde_json::Value::Array(
                    r.deliveries
                        .iter()
                        .map(|d| {
                            serde_json::json!({
                                "seq": d.seq,
                                "event_seq": d.event_seq,
                                "attempt": d.attempt,
                                "status_code": d.status_code,
                                "error": d.error,
                                "latency_ms": d.latency_ms,
                                "delivered": d.delivered,
                                "at": d.at.as_ref().map(rfc3339),
                            })
                        })
                        .collect(),
                )
            }
        },
        Cmd::Advice { id, margin, target } => {
            let a = levers
                .get_advice(pb::GetAdviceRequest {
                    campaign_id: id,
                    margin,
                    target_probability: target,
                })
                .await?
                .into_inner();
            serde_json::json!({
                "summary": a.summary,
                "falling_short": a.falling_short,
                "expected_miss_units": a.expected_miss_units,
                "lower_threshold": a.lower_threshold.as_ref().map(|t| serde_json::json!({
                    "threshold": t.batch_threshold,
                    "cost_per_unit_minor": t.cost_per_unit_minor,
                    "margin": t.margin,
                    "lock_probability": t.lock_probability,
                })),
                "extension": a.extension.as_ref().map(|x| serde_json::json!({
                    "days": x.days,
                    "deadline": x.deadline.map(|t| rfc3339(&t)),
                    "lock_probability": x.lock_probability,
                })),
                "forecast": a.forecast.as_ref().map(forecast_json),
                "notes": a.notes,
                "no_plan": a.no_plan.iter().map(|n| serde_json::json!({
                    "volume": n.volume,
                    "reason": n.reason,
                })).collect::<Vec<_>>(),
                "not_reached": a.not_reached.iter().map(|r| serde_json::json!({
                    "first": r.first,
                    "last": r.last,
                })).collect::<Vec<_>>(),
            })
        }
        Cmd::Insights {
            id,
            bucket_seconds,
            top,
            format,
        } => {
            let i = levers
                .get_insights(pb::GetInsightsRequest {
                    campaign_id: id,
                    bucket_seconds,
                    top,
                })
                .await?
                .into_inner();
            let text = match format.as_str() {
                "table" => insights_table(&i),
                "csv" => insights_csv(&i),
                "svg" => insights_svg(&i, Utc::now()),
                other => anyhow::bail!("--format must be table, csv or svg, not {other:?}"),
            };
            out::text(&text);
            return Ok(());
        }
        Cmd::Extend { id, days, to } => {
            let deadline = match (to, days) {
                (Some(to), _) => prost_types::Timestamp {
                    seconds: to.timestamp(),
                    nanos: to.timestamp_subsec_nanos() as i32,
                },
                (None, days) => {
                    let current = campaigns
                        .get_campaign(pb::GetCampaignRequest {
                            campaign_id: id.clone(),
                        })
                        .await?
                        .into_inner()
                        .campaign
                        .and_then(|c| c.deadline)
                        .context("the campaign has no deadline")?;
                    prost_types::Timestamp {
                        seconds: current.seconds + (days.unwrap_or(0.0) * 86_400.0) as i64,
                        nanos: current.nanos,
                    }
                }
            };
            let o = levers
                .extend_deadline(pb::ExtendDeadlineRequest {
                    idempotency_key: key.clone(),
                    campaign_id: id,
                    deadline: Some(deadline),
                })
                .await?
                .into_inner();
            outcome_json(&o, &key)
        }
        Cmd::LowerThreshold { id, threshold } => {
            let o = levers
                .lower_threshold(pb::LowerThresholdRequest {
                    idempotency_key: key.clone(),
                    campaign_id: id,
                    batch_threshold: threshold,
                })
                .await?
                .into_inner();
            outcome_json(&o, &key)
        }
        Cmd::Close { id } => {
            let o = levers
                .close_campaign(pb::CloseCampaignRequest {
                    idempotency_key: key.clone(),
                    campaign_id: id,
                })
                .await?
                .into_inner();
            outcome_json(&o, &key)
        }
        Cmd::CancelCampaign { id } => {
            let o = levers
                .cancel_campaign(pb::CancelCampaignRequest {
                    idempotency_key: key.clone(),
                    campaign_id: id,
                })
                .await?
                .into_inner();
            outcome_json(&o, &key)
        }
    };
    out::text(&format!("{}\n", serde_json::to_string_pretty(&out)?));
    Ok(())
}

fn date(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

fn purchase_order_json(p: &pb::PurchaseOrder) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "plan_id": p.plan_id,
        "supplier": p.supplier_id,
        "material": p.material_id,
        "quantity": p.quantity,
        "unit_price": p.unit_price,
        "tier": p.tier,
        "packs": p.packs,
        "total": p.total.as_ref().map(|m| m.minor),
        "currency": p.currency,
        "ordered": date(&p.ordered_at),
        "expected": date(&p.expected_at),
        "received": p.received,
        "allocated": p.allocated,
        "state": p.state().as_str_name(),
        "batches": p.batch_ids,
    })
}

/// One CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

/// Purchase orders as CSV: one header line, one line per order, money in minor units.
fn purchase_orders_csv(orders: &[pb::PurchaseOrder]) -> String {
    let mut out = String::from(
        "purchase_order,supplier,material,quantity,still_to_arrive,unit_price_minor,tier,packs,\
         total_minor,currency,ordered,expected,state\n",
    );
    for p in orders {
        let fields = [
            p.id.clone(),
            p.supplier_id.clone(),
            p.material_id.clone(),
            p.quantity.to_string(),
            (p.quantity - p.received).max(0.0).to_string(),
            p.unit_price.to_string(),
            p.tier.to_string(),
            p.packs.map(|n| n.to_string()).unwrap_or_default(),
            p.total
                .as_ref()
                .map(|m| m.minor.to_string())
                .unwrap_or_default(),
            p.currency.clone(),
            date(&p.ordered_at),
            date(&p.expected_at),
            p.state().as_str_name().to_owned(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push('\n');
    }
    out
}

fn forecast_json(f: &pb::FillForecast) -> serde_json::Value {
    serde_json::json!({
        "lock_probability": f.lock_probability,
        "units_needed": f.units_needed,
        "expected_lock_at": f.expected_lock_at.map(|t| rfc3339(&t)),
        "expected_shortfall": f.expected_shortfall,
        "projected_units_p10_p50_p90": [f.projected_units_p10, f.projected_units_p50, f.projected_units_p90],
        "prior_campaigns": f.prior_campaigns,
        "orders_seen": f.orders_seen,
    })
}

fn outcome_json(o: &pb::LeverOutcome, key: &str) -> serde_json::Value {
    let c = o.campaign.clone().unwrap_or_default();
    serde_json::json!({
        "campaign": c.id,
        "threshold": c.batch_threshold,
        "deadline": c.deadline.map(|t| rfc3339(&t)),
        "locked_batch": o.locked_batch.as_ref().map(|b| b.seq),
        "failed_batch": o.failed_batch.as_ref().map(|b| b.seq),
        "deposits_released": o.deposits_released,
        "preorders_refunded": o.preorders_refunded,
        "refunded_minor": o.refunded.as_ref().map(|m| m.minor),
        "batches_in_production": o.batches_in_production,
        "work_orders_withdrawn": o.work_orders_withdrawn,
        "idempotency_key": key,
    })
}

/// A timestamp as the JSON output writes every time: RFC 3339, like `deadline` from
/// `create-campaign`, not seconds since 1970.
fn rfc3339(t: &prost_types::Timestamp) -> String {
    time(&Some(*t)).to_rfc3339()
}

fn time(t: &Option<prost_types::Timestamp>) -> chrono::DateTime<Utc> {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_default()
}

fn insights_table(i: &pb::Insights) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "campaign {}: {}, {} ({} cancelled later), {} ({} returning)",
        i.campaign_id,
        count(i.preorders, "pre-order"),
        count(i.units, "unit"),
        i.cancelled_units,
        count(i.consumers, "consumer"),
        i.returning_consumers
    );
    if let Some(f) = &i.forecast {
        let _ = writeln!(
            out,
            "forecast: {} chance to lock by the deadline; {} needed; at the deadline {}..{} units (p10..p90), {} behind it",
            c2m_domain::forecast::chance_text(f.lock_probability),
            count(f.units_needed, "unit"),
            f.projected_units_p10,
            f.projected_units_p90,
            count(f.prior_campaigns, "earlier campaign")
        );
    }
    let _ = writeln!(
        out,
        "\n{:<25} {:>10} {:>7} {:>10}",
        "from", "pre-orders", "units", "cumulative"
    );
    for u in &i.units_over_time {
        let _ = writeln!(
            out,
            "{:<25} {:>10} {:>7} {:>10}",
            time(&u.at).format("%Y-%m-%d %H:%M"),
            u.preorders,
            u.units,
            u.cumulative_units
        );
    }
    for (title, rows) in [
        ("channel", &i.by_channel),
        ("region", &i.by_region),
        ("referrer", &i.by_referrer),
        ("top referrers", &i.top_referrers),
    ] {
        let key = |r: &pb::SourceCount| {
            if r.key.is_empty() {
                "(not given)".to_owned()
            } else {
                r.key.clone()
            }
        };
        // As wide as the widest key (a referrer may be 64 characters), so the numbers
        // stay in line and no key is cut.
        let width = rows.iter().map(|r| cells(&key(r))).fold(25, usize::max);
        let _ = writeln!(
            out,
            "\n{} {:>10} {:>7} {:>6}",
            pad(title, width),
            "pre-orders",
            "units",
            "share"
        );
        if rows.is_empty() {
            // No order named one (top referrers), or no orders at all.
            let _ = writeln!(out, "(none)");
        }
        for r in rows.iter() {
            let share = 100.0 * r.units as f64 / i.units.max(1) as f64;
            let _ = writeln!(
                out,
                "{} {:>10} {:>7} {:>5.1}%",
                pad(&key(r), width),
                r.preorders,
                r.units,
                share
            );
        }
    }
    out
}

/// How many terminal cells `s` takes: a CJK character takes two, so padding by characters
/// (`{:<25}`) put the numbers after a channel named 微信 two cells out of line.
fn cells(s: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(s)
}

/// `s` followed by spaces to `width` terminal cells.
fn pad(s: &str, width: usize) -> String {
    format!("{s}{}", " ".repeat(width.saturating_sub(cells(s))))
}

/// `1 unit`, `2 units`: a count with its noun as people write it.
fn count(n: impl Into<i64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

type Authed = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>;

/// Prints each event's JSON on a line as it arrives (heartbeats on stderr), until the
/// stream ends.
async fn watch(
    client: &mut c2m_proto::v1::event_service_client::EventServiceClient<Authed>,
    campaign: &str,
    after: Option<i64>,
) -> anyhow::Result<()> {
    let mut stream = client
        .subscribe(pb::SubscribeEventsRequest {
            after_seq: after,
            campaign_id: campaign.to_owned(),
        })
        .await?
        .into_inner();
    // A large event comes in parts (docs/events.md): printed once, whole, after its last
    // part, so a line is always a whole event and `--after` the last seq printed resumes
    // without losing part of one.
    let mut pending: Vec<String> = Vec::new();
    while let Some(m) = stream.message().await? {
        match m.message {
            Some(pb::event_stream_message::Message::Event(e)) => {
                let line = if e.parts <= 1 {
                    e.json
                } else {
                    // A part 0 starts an event afresh (a resumed stream sends it whole).
                    if e.part == 0 {
                        pending.clear();
                    }
                    pending.push(e.json);
                    if e.part + 1 < e.parts {
                        continue;
                    }
                    // Joined as sent: the fields in their order, every number with its
                    // digits (through serde_json::Value the keys came out sorted and a
                    // long integer became a float).
                    let whole = c2m_domain::events::join_parts(&pending).ok_or_else(|| {
                        anyhow::anyhow!("event {}: its parts do not join into one", e.seq)
                    })?;
                    pending.clear();
                    whole
                };
                out::text(&format!("{line}\n"));
            }
            Some(pb::event_stream_message::Message::Heartbeat(h)) => {
                eprintln!(
                    "(heartbeat: last event {}, cursor {})",
                    h.last_seq, h.cursor
                );
            }
            None => {}
        }
    }
    Ok(())
}

fn endpoint_json(e: &pb::WebhookEndpoint) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "url": e.url,
        "event_types": e.event_types,
        "cursor": e.cursor,
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "failures": e.failures,
        "failing_since": e.failing_since.as_ref().map(rfc3339),
        "next_attempt_at": e.next_attempt_at.as_ref().map(rfc3339),
        "created_at": e.created_at.as_ref().map(rfc3339),
        "deleted_at": e.deleted_at.as_ref().map(rfc3339),
    })
}

fn insights_csv(i: &pb::Insights) -> String {
    let mut out = String::from("from,preorders,units,cumulative_units\n");
    for u in &i.units_over_time {
        out.push_str(&format!(
            "{},{},{},{}\n",
            time(&u.at).to_rfc3339(),
            u.preorders,
            u.units,
            u.cumulative_units
        ));
    }
    out
}

/// Units ordered over time (cumulative) and, from `now` to the deadline, the forecast band:
/// from the units now to the units projected at the deadline (p10..p90, median dashed),
/// joined by straight lines, with the open batch's threshold.
/// A round step (1, 2 or 5 times a power of ten, at least 1 unit) near `raw`.
fn nice_step(raw: f64) -> f64 {
    if raw.is_nan() || raw <= 1.0 {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    p * if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    }
}

/// A count short enough for an axis: `950`, `12.5k`, `3.2M`, `11.6G`.
fn short_count(u: f64) -> String {
    let u = u.round();
    if u.abs() >= 1e18 {
        // Past the suffixes: "5e18", not "5000000P".
        return format!("{u:.1e}");
    }
    for (div, suffix) in [(1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if u.abs() >= 10.0 * div || (u.abs() >= div && div >= 1e6) {
            let v = u / div;
            return if v.fract().abs() < 0.05 {
                format!("{v:.0}{suffix}")
            } else {
                format!("{v:.1}{suffix}")
            };
        }
    }
    format!("{u:.0}")
}

fn insights_svg(i: &pb::Insights, now: chrono::DateTime<Utc>) -> String {
    use std::fmt::Write;
    let (w, h, left, right, top, bottom) = (760.0, 420.0, 64.0, 24.0, 40.0, 56.0);
    let opens = time(&i.opens_at);
    let deadline = time(&i.deadline);
    let span = (deadline - opens).num_seconds().max(1) as f64;
    let cum_now = i.units_over_time.last().map_or(0, |u| u.cumulative_units);
    let now = now.clamp(opens, deadline);
    // The band ahead, in cumulative units ordered: what is to come is the projection less
    // the units already in the open batch.
    let band = i.forecast.as_ref().map(|f| {
        let ahead = |p: i64| cum_now + (p - i.open_batch_units).max(0);
        (
            ahead(f.projected_units_p10),
            ahead(f.projected_units_p50),
            ahead(f.projected_units_p90),
            cum_now + f.units_needed,
        )
    });
    let ymax = band
        .map_or(cum_now, |(_, _, p90, lock)| p90.max(lock))
        .max(cum_now)
        .max(1) as f64
        * 1.1;
    let x = |t: chrono::DateTime<Utc>| {
        left + (w - left - right) * ((t - opens).num_seconds() as f64 / span).clamp(0.0, 1.0)
    };
    let y = |u: f64| h - bottom - (h - top - bottom) * (u / ymax);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="15">Units ordered, campaign {}</text>"#,
        i.campaign_id
    );
    // Axes and grid: whole-unit ticks at a round step (no repeated labels on a small
    // campaign), written short (12.3k, 4.5M) so that a large one fits the margin.
    let step = nice_step(ymax / 1.1 / 4.0);
    let mut u = 0.0;
    while u <= ymax {
        let yy = y(u);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - right,
            left - 6.0,
            yy + 4.0,
            short_count(u)
        );
        u += step;
    }
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        h - bottom,
        w - right,
        h - bottom
    );
    // With the year when the campaign runs into another year or for most of one.
    let with_year = opens.format("%Y").to_string() != deadline.format("%Y").to_string()
        || span > 300.0 * 86_400.0;
    let stamp = if with_year { "%Y-%m-%d" } else { "%m-%d %H:%M" };
    for k in 0..=4 {
        let t = opens + chrono::Duration::seconds((span * k as f64 / 4.0) as i64);
        let anchor = match k {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            x(t),
            h - bottom + 18.0,
            t.format(stamp)
        );
    }
    // The forecast band and the threshold ahead.
    if let Some((p10, p50, p90, lock)) = band {
        let (x0, x1) = (x(now), x(deadline));
        let c = cum_now as f64;
        let _ = writeln!(
            s,
            r##"<polygon points="{x0:.1},{:.1} {x1:.1},{:.1} {x1:.1},{:.1}" fill="#4a90d9" fill-opacity="0.25" stroke="none"/>"##,
            y(c),
            y(p90 as f64),
            y(p10 as f64)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{x0:.1}" y1="{:.1}" x2="{x1:.1}" y2="{:.1}" stroke="#4a90d9" stroke-dasharray="6 4" stroke-width="2"/>"##,
            y(c),
            y(p50 as f64)
        );
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#c0392b" stroke-dasharray="3 3"/><text x="{:.1}" y="{:.1}" fill="#c0392b">open batch locks at {}</text>"##,
            y(lock as f64),
            w - right,
            y(lock as f64),
            left + 6.0,
            y(lock as f64) - 5.0,
            c2m_planner::report::grouped(lock)
        );
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#2c6aa8" text-anchor="end">forecast p10..p90 at the deadline: {}..{}</text>"##,
            x1 - 4.0,
            y(p90 as f64) - 6.0,
            c2m_planner::report::grouped(p10),
            c2m_planner::report::grouped(p90)
        );
    }
    // Cumulative units ordered, through the end of each bucket.
    let mut points = vec![format!("{:.1},{:.1}", x(opens), y(0.0))];
    for u in &i.units_over_time {
        let end = (time(&u.at) + chrono::Duration::seconds(i.bucket_seconds)).min(now);
        points.push(format!("{:.1},{:.1}", x(end), y(u.cumulative_units as f64)));
    }
    points.push(format!("{:.1},{:.1}", x(now), y(cum_now as f64)));
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="#222" stroke-width="2"/>"##,
        points.join(" ")
    );
    let _ = writeln!(
        s,
        r##"<line x1="{:.1}" y1="{top}" x2="{:.1}" y2="{:.1}" stroke="#888" stroke-dasharray="2 4"/><text x="{:.1}" y="{:.1}" fill="#555">now</text>"##,
        x(now),
        x(now),
        h - bottom,
        x(now) + 4.0,
        top + 12.0
    );
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#222" stroke-width="2"/><text x="{:.1}" y="{:.1}">units ordered (cumulative)</text><rect x="{:.1}" y="{:.1}" width="20" height="10" fill="#4a90d9" fill-opacity="0.25"/><text x="{:.1}" y="{:.1}">forecast band to the deadline (p10..p90, median dashed)</text>"##,
        h - 14.0,
        left + 20.0,
        h - 14.0,
        left + 26.0,
        h - 10.0,
        left + 220.0,
        h - 19.0,
        left + 246.0,
        h - 10.0
    );
    let _ = writeln!(s, "</svg>");
    s
}

fn status_name(s: Result<&'static str, prost::UnknownEnumValue>) -> String {
    s.map(|s| s.to_owned()).unwrap_or_else(|_| "UNKNOWN".into())
}

fn preorder_json(p: &pb::Preorder, key: Option<&str>) -> serde_json::Value {
    serde_json::json!({
        "id": p.id,
        "batch_seq": p.batch_seq,
        "quantity": p.quantity,
        "status": status_name(pb::PreorderStatus::try_from(p.status).map(|s| s.as_str_name())),
        "deposit_total": p.deposit_total.as_ref().map(|m| m.minor),
        "stage": p.production.as_ref().map(|x| stage_name(x.stage())),
        "ships": p.ship_date.as_ref().map(|d| date(&d.expected_at)),
        "idempotency_key": key,
    })
}

/// An amount in minor units, if there is one.
fn minor(m: &Option<pb::Money>) -> Option<i64> {
    m.as_ref().map(|m| m.minor)
}

/// A production stage as the API names it, without the enum's prefix (`in_production`).
fn stage_name(s: pb::ProductionStage) -> String {
    s.as_str_name()
        .trim_start_matches("PRODUCTION_STAGE_")
        .to_lowercase()
}

/// Everything `GetPreorder` says of a pre-order; money in minor units of `currency`.
fn preorder_detail_json(p: &pb::Preorder) -> serde_json::Value {
    let at = |t: &Option<prost_types::Timestamp>| t.as_ref().map(rfc3339);
    serde_json::json!({
        "id": p.id,
        "campaign_id": p.campaign_id,
        "consumer_id": p.consumer_id,
        "batch_id": p.batch_id,
        "batch_seq": p.batch_seq,
        "quantity": p.quantity,
        "status": status_name(pb::PreorderStatus::try_from(p.status).map(|s| s.as_str_name())),
        "created_at": at(&p.created_at),
        "cancelled_at": at(&p.cancelled_at),
        "currency": p.unit_price.as_ref().map(|m| m.currency.clone()),
        "unit_price": minor(&p.unit_price),
        "final_unit_price": minor(&p.final_unit_price),
        "deposit_total": minor(&p.deposit_total),
        "deposit_held": minor(&p.deposit_held),
        "deposit_captured": minor(&p.deposit_captured),
        "deposit_released": minor(&p.deposit_released),
        "deposit_forfeited": minor(&p.deposit_forfeited),
        "balance_due": minor(&p.balance_due),
        "balance_due_by": at(&p.balance_due_by),
        "balance_paid": minor(&p.balance_paid),
        "balance_paid_at": at(&p.balance_paid_at),
        "forfeited_at": at(&p.forfeited_at),
        "refunded": minor(&p.refunded),
        "refunded_at": at(&p.refunded_at),
        "production": p.production.as_ref().map(|x| serde_json::json!({
            "stage": stage_name(x.stage()),
            "units_shipped": x.units_shipped,
            "units_awaiting_plan": x.units_awaiting_plan,
        })),
        "ship_date": p.ship_date.as_ref().map(|d| serde_json::json!({
            "promised_by": at(&d.promised_by),
            "expected_at": at(&d.expected_at),
            "planned": d.planned,
            "shipped": d.shipped,
            "late": d.late,
            "days_late": d.days_late,
            "late_reason": (!d.late_reason.is_empty()).then_some(&d.late_reason),
        })),
    })
}
