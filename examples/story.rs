//! The whole story against a running server: a catalogue, two campaigns whose products
//! share materials, enough pre-orders to lock a batch of each (each with its promised
//! ship date), one planning cycle for both, the factories receiving their work orders
//! with each run's week and dates, and a consumer's pre-order showing its planned ship
//! date against the promise.
//!
//! ```text
//! cargo run --release -- serve                       # terminal 1: the server
//! cargo run --example factory -- --factory cixi-1 --progress     # terminal 2 (optional)
//! cargo run --example story                          # terminal 3
//! ```
//!
//! The campaigns take the full price as deposit, so a batch is ready for production the
//! moment it locks (with a smaller deposit it waits for its balance window). Each run uses
//! fresh idempotency keys, so it can be run again against the same server. The example
//! watches each factory's stream itself (without acknowledging, so a real factory client
//! still gets everything) and prints what arrives.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::Parser;

use c2m_proto::v1 as pb;
use c2m_proto::v1::campaign_service_client::CampaignServiceClient;
use c2m_proto::v1::catalogue_service_client::CatalogueServiceClient;
use c2m_proto::v1::factory_service_client::FactoryServiceClient;
use c2m_proto::v1::planning_service_client::PlanningServiceClient;
use c2m_proto::v1::preorder_service_client::PreorderServiceClient;
use c2m_server::auth::{client_token, Bearer};
use c2m_server::tls::ClientTls;

const DEFAULT_ADDR: &str = "http://127.0.0.1:50051";

#[derive(Parser)]
#[command(about = "Drive the whole c2m story against a running server")]
struct Args {
    /// The server's address (`https://...` for TLS, with --tls-ca).
    #[arg(long, env = "C2M_ADDR", default_value = DEFAULT_ADDR)]
    addr: String,
    #[command(flatten)]
    tls: ClientTls,
    /// An admin token; by default the one a local server wrote to DATA_DIR/admin.token.
    #[arg(long, env = "C2M_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where a local server keeps its data (for admin.token).
    #[arg(long, env = "C2M_DATA_DIR", default_value = "data")]
    data_dir: std::path::PathBuf,
    /// The catalogue to import (replacing the server's).
    #[arg(long, default_value = "examples/scenarios/kettle-c2m.toml")]
    catalogue: std::path::PathBuf,
    /// Units that lock a batch, per campaign: at most 10,000, since the story places
    /// pre-orders one at a time until each batch locks (1e8 ran for days).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    threshold: i64,
}

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
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    // A token no header can carry is refused before any connection is tried.
    let bearer = Bearer::new(client_token(args.token.clone(), &args.data_dir).as_deref())?;
    let channel = args
        .tls
        .endpoint(&args.addr)?
        .connect()
        .await
        .with_context(|| format!("cannot reach {}; is `c2m serve` running?", args.addr))?;
    let mut catalogue = CatalogueServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut campaigns = CampaignServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut preorders = PreorderServiceClient::with_interceptor(channel.clone(), bearer.clone());
    let mut planning = PlanningServiceClient::with_interceptor(channel.clone(), bearer.clone());

    // 1. The catalogue: products with their bills of materials, factories, suppliers.
    let text = std::fs::read_to_string(&args.catalogue)
        .with_context(|| format!("reading {}", args.catalogue.display()))?;
    let change = catalogue
        .import_scenario(pb::ImportScenarioRequest {
            idempotency_key: format!("story-{run}-catalogue"),
            text,
            // The file's extension says its format, as everywhere else scenarios are read.
            format: if args
                .catalogue
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            {
                pb::ScenarioFormat::Json as i32
            } else {
                pb::ScenarioFormat::Toml as i32
            },
            mode: pb::ImportMode::Replace as i32,
            calendar_starts_at: None,
        })
        .await?
        .into_inner();
    outln!(
        "1. catalogue {} imported (version {})",
        args.catalogue.display(),
        change.version
    );

    // 2. Two campaigns whose kettles share steel and bases.
    let mut ids = Vec::new();
    for (sku, title, price) in [
        ("kettle-17-white", "Kettle 1.7 l, white", 39_900),
        ("kettle-12-travel", "Travel kettle 1.2 l", 29_900),
    ] {
        let c = campaigns
            .create_campaign(pb::CreateCampaignRequest {
                idempotency_key: format!("story-{run}-{sku}"),
                sku: sku.into(),
                title: title.into(),
                currency: "CNY".into(),
                unit_price_minor: price,
                deposit_minor: price,
                batch_threshold: args.threshold,
                batch_cap: None,
                max_per_order: Some(5),
                max_per_consumer: None,
                total_cap: None,
                opens_at: None,
                deadline: Some(prost_types::Timestamp {
                    seconds: (Utc::now() + chrono::Duration::days(14)).timestamp(),
                    nanos: 0,
                }),
                price_ladder: vec![],
                balance_window_seconds: None,
                ships_within_days: None,
            })
            .await?
            .into_inner();
        outln!(
            "2. campaign {} for {sku}, threshold {}, ships within {} days of its batch locking",
            c.id,
            c.batch_threshold,
            c.ships_within_days
        );
        ids.push((c.id, sku));
    }

    // 3. Consumers pre-order until each campaign's first batch locks.
    let mut watched = Vec::new();
    for (campaign, sku) in &ids {
        let mut n = 0;
        loop {
            let p = preorders
                .place_preorder(pb::PlacePreorderRequest {
                    idempotency_key: format!("story-{run}-{campaign}-{n}"),
                    campaign_id: campaign.clone(),
                    consumer_id: format!("consumer-{}", n % 37),
                    channel: None,
                    region: None,
                    referrer: None,
                    quantity: 1 + (n % 3),
                })
                .await?
                .into_inner();
            n += 1;
            if p.status == pb::PreorderStatus::Locked as i32 {
                // The consumer's view right after the lock: the promise, not yet a plan.
                let seen = preorders
                    .get_preorder(pb::GetPreorderRequest {
                        preorder_id: p.id.clone(),
                    })
                    .await?
                    .into_inner();
                let promised = seen.ship_date.as_ref().map_or(String::new(), |d| {
                    format!(", promised to ship by {}", day(&d.promised_by))
                });
                outln!(
                    "3. {sku}: batch {} locked after {n} pre-orders{promised}",
                    p.batch_id
                );
                watched.push(p.id);
                break;
            }
        }
    }

    // 4. One planning cycle for both batches.
    let plan = planning
        .run_planning(pb::RunPlanningRequest {
            idempotency_key: format!("story-{run}-cycle"),
        })
        .await
        .context("planning")?
        .into_inner();
    let s = plan.summary.clone().unwrap_or_default();
    // An infeasible plan has no cost.
    let total = s.total_cost.clone().map_or_else(
        || "no cost".to_owned(),
        |total| {
            c2m_domain::Currency::parse(&total.currency)
                .map(|c| c2m_domain::Money::new(total.minor, c).to_string())
                .unwrap_or_else(|_| format!("{} {} (minor units)", total.minor, total.currency))
        },
    );
    outln!(
        "4. plan {}: {}, total {} for {} batches, solved by {} in {:.2} s",
        s.id,
        s.status()
            .as_str_name()
            .trim_start_matches("PLAN_STATUS_")
            .to_lowercase(),
        total,
        s.batches,
        s.solver,
        plan.solve_seconds
    );
    for d in &plan.diagnosis {
        outln!("   {d}");
    }

    // 5. Each factory's stream delivers its work order.
    for w in &plan.work_orders {
        // An admin may read any factory's stream (without acknowledging anything).
        let mut factory = FactoryServiceClient::with_interceptor(channel.clone(), bearer.clone());
        let mut stream = factory
            .subscribe(pb::SubscribeRequest {
                factory_id: w.factory_id.clone(),
                after_seq: Some(w.seq - 1),
            })
            .await?
            .into_inner();
        let got = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(e) = stream.message().await? {
                if let Some(pb::factory_event::Event::WorkOrder(got)) = e.event {
                    return anyhow::Ok(got);
                }
            }
            anyhow::bail!("stream ended")
        })
        .await
        .context("waiting for the work order")??;
        let runs: Vec<String> = got
            .runs
            .iter()
            .map(|r| {
                // A run makes more than its batches ordered only to reach the line's
                // minimum run (the planner never over-produces otherwise).
                let ordered: i64 = r.batches.iter().map(|b| b.units).sum();
                let beyond = if r.quantity > ordered {
                    format!(
                        " ({ordered} pre-ordered, {} more to reach the line's minimum run)",
                        r.quantity - ordered
                    )
                } else {
                    String::new()
                };
                match r.period {
                    Some(period) => format!(
                        "{} x {} in week {}, {} to {}{beyond}",
                        r.quantity,
                        r.sku,
                        period + 1,
                        day(&r.starts_at),
                        day(&r.ends_at)
                    ),
                    None => format!("{} x {}{beyond}", r.quantity, r.sku),
                }
            })
            .collect();
        outln!(
            "5. {} received work order #{} {}: {}",
            got.factory_id,
            got.seq,
            got.id,
            runs.join(", ")
        );
    }

    // 6. What a consumer sees.
    for id in &watched {
        let p = preorders
            .get_preorder(pb::GetPreorderRequest {
                preorder_id: id.clone(),
            })
            .await?
            .into_inner();
        // Names as the API spells them, without the enum prefix: "locked", "planned".
        let name = |s: &str, prefix: &str| s.trim_start_matches(prefix).to_lowercase();
        let ship = p.ship_date.as_ref().map_or(String::new(), |d| {
            let late = if d.late {
                format!(", {} days late ({})", d.days_late, d.late_reason)
            } else {
                ", on time".to_owned()
            };
            // Before a plan the expected date is the promise itself: "promised X against
            // the promise X" said nothing.
            if d.planned {
                format!(
                    "; planned to ship {} against the promise {}{late}",
                    day(&d.expected_at),
                    day(&d.promised_by)
                )
            } else {
                format!(
                    "; waiting for a plan, promised to ship by {}{late}",
                    day(&d.promised_by)
                )
            }
        });
        outln!(
            "6. pre-order {}: {}, production {}{ship}",
            p.id,
            name(p.status().as_str_name(), "PREORDER_STATUS_"),
            p.production.map_or("not started".to_owned(), |x| name(
                x.stage().as_str_name(),
                "PRODUCTION_STAGE_"
            ))
        );
    }
    let factory = plan
        .work_orders
        .first()
        .map_or("cixi-1", |w| w.factory_id.as_str());
    let tls_note = if args.addr.starts_with("https://") {
        ", adding the factory's own `--tls-cert`, `--tls-key` and `--token` where the server \
         asks for client certificates,"
    } else {
        ""
    };
    outln!(
        "\nRun `{}`{tls_note} to take the orders through production.",
        factory_command(&args, factory)
    );
    Ok(())
}

/// The `factory` example's command for `factory`, reaching the server as this story did:
/// the same address and CA. The bare command, printed after a story over TLS, was refused.
fn factory_command(args: &Args, factory: &str) -> String {
    let mut cmd = format!("cargo run --example factory -- --factory {factory} --progress");
    // A path with a space or a quote is quoted as a shell would need it.
    let quoted = |s: String| {
        if s.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
            format!("'{}'", s.replace('\'', "'\\''"))
        } else {
            s
        }
    };
    if args.addr != DEFAULT_ADDR {
        cmd.push_str(&format!(" --addr {}", quoted(args.addr.clone())));
    }
    if let Some(ca) = &args.tls.tls_ca {
        cmd.push_str(&format!(" --tls-ca {}", quoted(ca.display().to_string())));
    }
    cmd
}

/// A timestamp as its UTC date, or "?" when absent.
fn day(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map_or("?".to_owned(), |d| d.format("%Y-%m-%d").to_string())
}
