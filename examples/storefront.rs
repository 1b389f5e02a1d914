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
//! ```
//!
//! Every mutating call sends an idempotency key: pass `--key` to retry a call safely,
//! otherwise a fresh one is generated.

use anyhow::Context;
use chrono::Utc;
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
    /// a campaign's sku must be in the catalogue. Demands in the file are ignored.
    ImportCatalogue {
        /// A scenario file, `.toml` or `.json`.
        file: std::path::PathBuf,
        /// Merge into the catalogue instead of replacing it.
        #[arg(long)]
        merge: bool,
    },
    /// Create a campaign (prices in minor units).
    CreateCampaign {
        #[arg(long, default_value = "kettle-17-white")]
        sku: String,
        #[arg(long, default_value = "Kettle 1.7 l, white")]
        title: String,
        #[arg(long, default_value = "CNY")]
        currency: String,
        #[arg(long, default_value_t = 39_900)]
        price: i64,
        #[arg(long, default_value_t = 5_000)]
        deposit: i64,
        #[arg(long, default_value_t = 50)]
        threshold: i64,
        #[arg(long)]
        batch_cap: Option<i64>,
        #[arg(long)]
        max_per_order: Option<i64>,
        #[arg(long)]
        max_per_consumer: Option<i64>,
        /// Deadline, in days from now.
        #[arg(long, default_value_t = 7.0)]
        deadline_days: f64,
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
    },
    /// List pre-orders of a consumer and/or a campaign.
    Preorders {
        #[arg(long, default_value = "")]
        consumer: String,
        #[arg(long, default_value = "")]
        campaign: String,
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
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // A refused call is an answer, not a crash: show the status the server chose.
            match e.downcast_ref::<tonic::Status>() {
                Some(s) => eprintln!("error: {:?}: {}", s.code(), s.message()),
                None => eprintln!("error: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let channel = args
        .tls
        .endpoint(&args.addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach c2m at {}; is `c2m serve` running?", args.addr))?;
    let bearer = Bearer::new(client_token(args.token.clone(), &args.data_dir).as_deref());
    let mut catalogue = CatalogueServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut campaigns = CampaignServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut preorders = PreorderServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut planning =
        c2m_proto::v1::planning_service_client::PlanningServiceClient::with_interceptor(
            channel, bearer,
        );
    let key = args
        .key
        .unwrap_or_else(|| format!("cli-{}", uuid::Uuid::new_v4().simple()));
    let out: serde_json::Value = match args.cmd {
        Cmd::ImportCatalogue { file, merge } => {
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
        } => {
            let deadline =
                Utc::now() + chrono::Duration::seconds((deadline_days * 86_400.0) as i64);
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
                        nanos: 0,
                    }),
                    ..Default::default()
                })
                .await?
                .into_inner();
            serde_json::json!({ "id": c.id, "sku": c.sku, "threshold": c.batch_threshold, "deadline": deadline.to_rfc3339() })
        }
        Cmd::Campaign { id } => {
            let p = campaigns
                .get_campaign(pb::GetCampaignRequest { campaign_id: id })
                .await?
                .into_inner();
            serde_json::json!({
                "open_batch_units": p.open_batch_units,
                "units_to_threshold": p.units_to_threshold,
                "open_batch_seq": p.open_batch_seq,
                "batches_locked": p.batches_locked,
                "batches_failed": p.batches_failed,
                "remaining_seconds": p.remaining_seconds,
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
        } => {
            let p = preorders
                .place_preorder(pb::PlacePreorderRequest {
                    idempotency_key: key.clone(),
                    campaign_id: campaign,
                    consumer_id: consumer,
                    quantity,
                    channel: None,
                    region: None,
                    referrer: None,
                })
                .await?
                .into_inner();
            preorder_json(&p, Some(&key))
        }
        Cmd::Preorders { consumer, campaign } => {
            let r = preorders
                .list_preorders(pb::ListPreordersRequest {
                    consumer_id: consumer,
                    campaign_id: campaign,
                    page_size: 0,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            serde_json::Value::Array(r.preorders.iter().map(|p| preorder_json(p, None)).collect())
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
    };
    #[allow(clippy::print_stdout)]
    {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
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
        "idempotency_key": key,
    })
}
