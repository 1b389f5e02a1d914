//! An example factory client: subscribes to its work orders, prints them as they arrive,
//! acknowledges them and reports progress; survives disconnects and its own restarts.
//!
//! ```text
//! cargo run --example factory -- --factory cixi-1
//! cargo run --example factory -- --factory cixi-1 --progress          # accept, make, check, ship
//! cargo run --example factory -- --factory zhongshan-2 --reject "line 3 down"
//! # over mutual TLS, with the factory's own token and certificate
//! cargo run --example factory -- --addr https://localhost:50051 --tls-ca ca.pem \
//!     --tls-cert cixi-1.pem --tls-key cixi-1.key --token c2m_... --factory cixi-1
//! ```
//!
//! Resuming: the client keeps the last sequence number it has processed in a cursor file
//! (`--cursor-file`, by default `factory-<id>.cursor` in the current directory) and
//! subscribes after it, so a restart neither misses nor repeats anything it finished.
//! Work orders it receives again (after a crash between processing and saving the cursor)
//! are recognised by id and skipped. Without the file it resumes from the server's record
//! of its acknowledgements. The stream is reopened with a backoff whenever it breaks,
//! including while a work order is being reported or acknowledged (a server restart): the
//! work order comes again and its reports replay.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use c2m_proto::v1 as pb;
use c2m_proto::v1::factory_service_client::FactoryServiceClient;
use c2m_server::auth::{client_token, Bearer};
use c2m_server::tls::ClientTls;
use pb::report_request::Progress;

type Client = FactoryServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

#[derive(Parser)]
#[command(about = "A factory that receives c2m work orders")]
struct Args {
    /// The server's address (`https://...` for TLS, with --tls-ca).
    #[arg(long, env = "C2M_ADDR", default_value = "http://127.0.0.1:50051")]
    addr: String,
    /// TLS: the CA to trust, and this factory's client certificate when the server
    /// requires one (`--tls-client-ca`).
    #[command(flatten)]
    tls: ClientTls,
    /// This factory's id, as in the catalogue.
    #[arg(long)]
    factory: String,
    /// This factory's token (`c2m token create --role factory --factory ID`); by default
    /// the admin token a local server wrote to DATA_DIR/admin.token, for trying it out.
    #[arg(long, env = "C2M_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Where a local server keeps its data (for admin.token).
    #[arg(long, env = "C2M_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Where the last processed sequence number is kept between runs.
    #[arg(long)]
    cursor_file: Option<PathBuf>,
    /// Take every work order through accepted, in production, quality check and shipped.
    #[arg(long)]
    progress: bool,
    /// Reject every work order with this reason (its batches go back to planning).
    #[arg(long, conflicts_with = "progress", value_parser = reason)]
    reject: Option<String>,
    /// Stop after this many new work orders (for scripts); runs until Ctrl-C otherwise.
    #[arg(long)]
    exit_after: Option<usize>,
}

fn cursor_path(a: &Args) -> PathBuf {
    a.cursor_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("factory-{}.cursor", a.factory)))
}

/// A rejection must say why (the server refuses an empty reason): refused here, before
/// subscribing, rather than at the first work order.
fn reason(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("a rejection must say why: give a reason".into());
    }
    Ok(s.to_owned())
}

fn load_cursor(path: &PathBuf) -> anyhow::Result<Option<i64>> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let seq: i64 = s
                .trim()
                .parse()
                .with_context(|| format!("{} does not hold a sequence number", path.display()))?;
            if seq < 0 {
                anyhow::bail!(
                    "{} holds {seq}, not a sequence number (0 or more): delete the file to \
                     start from the server's acknowledged cursor",
                    path.display()
                );
            }
            Ok(Some(seq))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the cursor durably: a temporary file, fsync, then rename over the old one.
fn save_cursor(path: &PathBuf, seq: i64) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("cursor.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        writeln!(f, "{seq}")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().with_context(|| format!("cannot write the cursor file {}", path.display()))
}

/// Checks, before subscribing, that the cursor file can be written: a directory that
/// does not exist was found only after the first work order had been reported (taken to
/// shipped, or rejected), with an error that named no file.
fn check_cursor_writable(path: &std::path::Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("cursor.tmp");
    std::fs::File::create(&tmp)
        .and_then(|_| std::fs::remove_file(&tmp))
        .with_context(|| format!("cannot write the cursor file {}", path.display()))
}

fn print_work_order(w: &pb::WorkOrder) {
    let due = w
        .due_at
        .as_ref()
        .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    outln!(
        "work order #{} {} (plan {}), due {due}",
        w.seq,
        w.id,
        w.plan_id
    );
    for r in &w.runs {
        let batches: Vec<String> = r
            .batches
            .iter()
            .map(|b| format!("{} x{}", b.batch_id, b.units))
            .collect();
        outln!(
            "  make {:>6} x {:<20} for {}",
            r.quantity,
            r.sku,
            batches.join(", ")
        );
    }
    for m in &w.materials {
        let from = if m.supplier.is_empty() {
            "stock on hand".to_owned()
        } else {
            format!("supplier {}", m.supplier)
        };
        outln!(
            "  expect {:>10.3} {:<18} from {from}",
            m.quantity,
            m.material
        );
    }
}

async fn report(
    client: &mut Client,
    factory: &str,
    w: &pb::WorkOrder,
    step: &str,
    progress: Progress,
) -> anyhow::Result<()> {
    // The key is derived from the work order and the step, so a retry after a crash
    // repeats the same report instead of adding another.
    let r = client
        .report(pb::ReportRequest {
            idempotency_key: format!("{}-{step}", w.id),
            factory_id: factory.to_owned(),
            work_order_id: w.id.clone(),
            progress: Some(progress),
        })
        .await
        .with_context(|| format!("reporting {step} on {}", w.id))?
        .into_inner();
    outln!("  reported {step}: now {:?}", r.state());
    Ok(())
}

async fn process(args: &Args, client: &mut Client, w: &pb::WorkOrder) -> anyhow::Result<()> {
    if let Some(reason) = &args.reject {
        return report(
            client,
            &args.factory,
            w,
            "rejected",
            Progress::Rejected(pb::Rejected {
                reason: reason.clone(),
            }),
        )
        .await;
    }
    if !args.progress {
        return Ok(());
    }
    let units: i64 = w.runs.iter().map(|r| r.quantity).sum();
    let steps = [
        ("accepted", Progress::Accepted(pb::Accepted {})),
        ("in-production", Progress::InProduction(pb::InProduction {})),
        (
            "quality-check",
            Progress::QualityCheck(pb::QualityCheck {
                passed: units,
                failed: 0,
            }),
        ),
        (
            "shipped",
            Progress::Shipped(pb::Shipped {
                quantities: w
                    .runs
                    .iter()
                    .map(|r| pb::ShippedQuantity {
                        sku: r.sku.clone(),
                        quantity: r.quantity,
                    })
                    .collect(),
            }),
        ),
    ];
    for (step, progress) in steps {
        match report(client, &args.factory, w, step, progress).await {
            Ok(()) => {}
            // Withdrawn while this client worked (its campaign was cancelled): the notice
            // follows on the stream; nothing more to make.
            Err(e) if withdrawn(&e) => {
                outln!("  {step}: refused, the work order was withdrawn");
                return Ok(());
            }
            // Already past this step (a restart in the middle): go on.
            Err(e)
                if e.downcast_ref::<tonic::Status>()
                    .is_some_and(|s| s.code() == tonic::Code::FailedPrecondition) =>
            {
                outln!("  {step}: already done")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether a report was refused because the work order was withdrawn (the typed reason
/// `WORK_ORDER_STATE` with state `withdrawn`).
fn withdrawn(e: &anyhow::Error) -> bool {
    use tonic_types::StatusExt;
    e.downcast_ref::<tonic::Status>()
        .and_then(|s| s.get_error_details().error_info().cloned())
        .is_some_and(|info| {
            info.reason == "WORK_ORDER_STATE"
                && info.metadata.get("state").map(String::as_str) == Some("withdrawn")
        })
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let (addr, token_given) = (args.addr.clone(), args.token.is_some());
    let data_dir = args.data_dir.clone();
    client::finish(run(args).await, &addr, token_given, &data_dir)
}

#[path = "common/client.rs"]
mod client;

async fn run(args: Args) -> anyhow::Result<()> {
    // A token no header can carry is refused before anything is written or tried.
    let bearer = Bearer::new(client_token(args.token.clone(), &args.data_dir).as_deref())?;
    let path = cursor_path(&args);
    let mut cursor = load_cursor(&path)?;
    check_cursor_writable(&path)?;
    let mut seen: HashSet<String> = HashSet::new();
    let mut handled = 0usize;
    let mut backoff = Duration::from_millis(200);
    // Built once: a bad TLS file is an error now, not a reason to retry for ever.
    let endpoint = args.tls.endpoint(&args.addr)?;
    outln!(
        "factory {} subscribing to {} {}",
        args.factory,
        args.addr,
        match cursor {
            Some(c) => format!("after work order #{c} ({})", path.display()),
            None => "from the server's acknowledged cursor".to_owned(),
        }
    );
    loop {
        let stream = async {
            let channel = endpoint.connect().await?;
            let mut client = FactoryServiceClient::with_interceptor(channel, bearer.clone());
            let stream = client
                .subscribe(pb::SubscribeRequest {
                    factory_id: args.factory.clone(),
                    after_seq: cursor,
                })
                .await?
                .into_inner();
            anyhow::Ok((client, stream))
        }
        .await;
        let (mut client, mut stream) = match stream {
            Ok(s) => s,
            Err(e) => {
                if lasting(&e) {
                    if let Some(c) = ahead_of_server(&e).then_some(cursor).flatten() {
                        // The usual cause: the server's data was reset (a fresh `data/`)
                        // while this client's cursor file stayed; the refusal alone does
                        // not say which file to remove.
                        eprintln!(
                            "hint: {} holds work order #{c}, which this server never sent (was \
                             its data reset?): delete the file, or pass another --cursor-file, \
                             to start from the server's acknowledged cursor",
                            path.display()
                        );
                    }
                    return Err(e.context("cannot subscribe"));
                }
                let why = match e.downcast_ref::<tonic::Status>() {
                    Some(s) => c2m_server::auth::status_line(s),
                    None => format!("{e:#}"),
                };
                eprintln!("cannot reach the server ({why}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        // An acknowledgement lost with the last connection is sent again (harmless to
        // repeat); a run that has done its work orders ends once the server has it.
        if let Some(c) = cursor.filter(|c| *c > 0) {
            if let Err(e) = acknowledge(&mut client, &args.factory, c).await {
                if lasting(&e) {
                    return Err(e);
                }
                eprintln!("cannot acknowledge #{c} ({e:#}); retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                continue;
            }
        }
        if args.exit_after.is_some_and(|n| handled >= n) {
            return Ok(());
        }
        loop {
            let event = tokio::select! {
                e = stream.message() => e,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            let event = match event {
                Ok(Some(e)) => e,
                Ok(None) => {
                    eprintln!("stream closed by the server; resubscribing");
                    break;
                }
                Err(s) => {
                    eprintln!("stream broke ({}); resubscribing", s.message());
                    break;
                }
            };
            match event.event {
                Some(pb::factory_event::Event::Heartbeat(h)) => {
                    show_heartbeat(&h);
                }
                Some(pb::factory_event::Event::WorkOrder(w)) => {
                    if !seen.insert(w.id.clone()) || cursor.is_some_and(|c| w.seq <= c) {
                        outln!("work order #{} {} again: already handled", w.seq, w.id);
                        continue;
                    }
                    print_work_order(&w);
                    if w.state() == pb::WorkOrderState::Withdrawn {
                        // Sent again after it was withdrawn: its notice follows.
                        outln!("  withdrawn: nothing to make");
                        save_cursor(&path, w.seq)?;
                        cursor = Some(w.seq);
                        continue;
                    }
                    // Delivered again already shipped or rejected (a cursor reset, another
                    // client of the factory): nothing left to report. Sending its steps
                    // again replayed their first answers, printed as if current ("now
                    // Accepted" for a shipped work order: QA 14).
                    let finished = matches!(
                        w.state(),
                        pb::WorkOrderState::Shipped | pb::WorkOrderState::Rejected
                    );
                    if finished {
                        outln!("  already {:?}: nothing left to report", w.state());
                    }
                    // The server going away mid-way (a restart, a dropped connection) is
                    // a reason to resubscribe, not to stop: the work order is delivered
                    // again after the saved cursor and its reports, keyed by work order and
                    // step, replay what was done. (This client used to exit on it.)
                    let processed = if finished {
                        Ok(())
                    } else {
                        process(&args, &mut client, &w).await
                    };
                    if let Err(e) = processed {
                        if lasting(&e) {
                            return Err(e);
                        }
                        seen.remove(&w.id);
                        eprintln!(
                            "lost the server while handling work order #{} ({e:#}); resubscribing",
                            w.seq
                        );
                        break;
                    }
                    save_cursor(&path, w.seq)?;
                    cursor = Some(w.seq);
                    handled += 1;
                    if let Err(e) = acknowledge(&mut client, &args.factory, w.seq).await {
                        if lasting(&e) {
                            return Err(e);
                        }
                        eprintln!("cannot acknowledge #{} ({e:#}); resubscribing", w.seq);
                        break;
                    }
                    if args.exit_after.is_some_and(|n| handled >= n) {
                        return Ok(());
                    }
                }
                Some(pb::factory_event::Event::Withdrawn(w)) => {
                    if cursor.is_some_and(|c| w.seq <= c) {
                        continue;
                    }
                    outln!(
                        "work order #{} {} withdrawn (#{}): {}",
                        w.work_order_seq,
                        w.work_order_id,
                        w.seq,
                        w.reason
                    );
                    save_cursor(&path, w.seq)?;
                    cursor = Some(w.seq);
                    if let Err(e) = acknowledge(&mut client, &args.factory, w.seq).await {
                        if lasting(&e) {
                            return Err(e);
                        }
                        eprintln!("cannot acknowledge #{} ({e:#}); resubscribing", w.seq);
                        break;
                    }
                }
                None => {}
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// Whether a failed call will fail again unchanged (a cursor ahead of the server, an
/// unknown factory, a bad or refused token, a report the work order's state refuses):
/// those stop the client. Anything else (the server unreachable, restarting or
/// overloaded, a transport error) is worth a resubscription.
fn lasting(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>().is_some_and(|s| {
        matches!(
            s.code(),
            tonic::Code::OutOfRange
                | tonic::Code::NotFound
                | tonic::Code::InvalidArgument
                | tonic::Code::Unauthenticated
                | tonic::Code::PermissionDenied
                | tonic::Code::FailedPrecondition
        ) || c2m_server::auth::certificate_refused(s)
    })
}

/// A cursor beyond the factory's last work order (`CURSOR_AHEAD`).
fn ahead_of_server(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tonic::Status>()
        .is_some_and(|s| s.code() == tonic::Code::OutOfRange)
}

async fn acknowledge(client: &mut Client, factory: &str, seq: i64) -> anyhow::Result<()> {
    client
        .ack(pb::AckRequest {
            factory_id: factory.to_owned(),
            seq,
        })
        .await
        .context("acknowledging")?;
    Ok(())
}

/// Heartbeats are only shown when they tell something: work orders this client has not
/// processed yet.
fn show_heartbeat(h: &pb::Heartbeat) {
    if h.last_seq > h.acked_seq {
        outln!(
            "heartbeat: {} number(s) not yet acknowledged, work orders or withdrawals (last #{}, acked #{})",
            h.last_seq - h.acked_seq,
            h.last_seq,
            h.acked_seq
        );
    }
}
