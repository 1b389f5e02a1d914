//! A webhook receiver, as a shop would write one: it checks each delivery's signature
//! (`C2M-Signature`, HMAC-SHA256 over the timestamp and the raw body, with
//! `c2m_domain::webhook::verify`), refuses forgeries and stale replays with 400, drops
//! duplicates by event id (delivery is at least once), and prints what it would tell the
//! consumer. An event of a kind it does not know (a newer c2m's) is acknowledged with 200
//! and named, so the events after it still come.
//!
//! ```text
//! cargo run --example storefront -- webhook add http://127.0.0.1:8088/hooks '*'
//! cargo run --example webhook_receiver -- --listen 127.0.0.1:8088 --secret whsec_...
//! ```
//!
//! `--fail-first N` answers the first N deliveries with 500, to watch the retries.

#[macro_use]
#[path = "common/out.rs"]
mod out;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use c2m_domain::events::{Event, EventData, PreorderRef};
use c2m_domain::webhook::{verify, SignatureError, DEFAULT_TOLERANCE_SECS, SIGNATURE_HEADER};
use c2m_domain::Money;

#[derive(Parser)]
#[command(about = "Receive c2m webhooks, check their signatures, print the messages")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: SocketAddr,
    /// The endpoint's secret (`whsec_…`, shown when it was registered).
    #[arg(long, env = "C2M_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// Answer the first N deliveries with 500 (to see c2m retry).
    #[arg(long, default_value_t = 0)]
    fail_first: usize,
}

struct State {
    secret: String,
    seen: Mutex<HashSet<String>>,
    fail_left: Mutex<usize>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    out::finish(run().await)
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    // An empty secret (`--secret "$UNSET"`) verified nothing: every delivery was answered
    // 400 as badly signed, and c2m retried it until the endpoint was disabled.
    if args.secret.trim().is_empty() {
        anyhow::bail!(
            "--secret is empty: give the endpoint's secret (whsec_…, shown when it was registered)"
        );
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: cannot listen there: {e}", args.listen))?;
    outln!("listening on http://{}", listener.local_addr()?);
    let state = Arc::new(State {
        secret: args.secret,
        seen: Mutex::new(HashSet::new()),
        fail_left: Mutex::new(args.fail_first),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(status: u16, text: &str) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(text.to_owned())))
        .expect("a valid response")
}

async fn handle(req: hyper::Request<Incoming>, state: &State) -> hyper::Response<Full<Bytes>> {
    let signature = req
        .headers()
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return answer(400, "unreadable body");
    };
    // Always check the signature over the raw bytes, before parsing anything.
    let now = chrono::Utc::now().timestamp();
    if let Err(e) = verify(
        &signature,
        state.secret.as_bytes(),
        &body,
        now,
        DEFAULT_TOLERANCE_SECS,
    ) {
        outln!("refused a delivery: {e}");
        // The sender's log shows this answer: say which check failed.
        return answer(
            400,
            match e {
                SignatureError::Stale { .. } => "stale signature timestamp",
                SignatureError::Malformed => "malformed signature header",
                SignatureError::Mismatch => "bad signature",
            },
        );
    }
    {
        let mut left = state.fail_left.lock().expect("lock");
        if *left > 0 {
            *left -= 1;
            outln!("(answering 500 on purpose; {left} more to fail)");
            return answer(500, "try again");
        }
    }
    // The envelope first: every event has one, whatever its kind. A kind or a field this
    // receiver does not know (a newer c2m's) is acknowledged, not refused: a refusal would
    // be retried until c2m disabled the endpoint, and every event after it would wait.
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            outln!("a signed body that is not an event: {e}");
            return answer(400, "not an event");
        }
    };
    if !state.seen.lock().expect("lock").insert(envelope.id.clone()) {
        outln!("#{} {}: a duplicate, ignored", envelope.seq, envelope.id);
        return answer(200, "duplicate");
    }
    if !EventData::is_kind(&envelope.kind) {
        outln!(
            "#{} {}: a kind this receiver does not know ({}), acknowledged",
            envelope.seq,
            envelope.id,
            envelope.kind
        );
        return answer(200, "ok");
    }
    match serde_json::from_slice::<Event>(&body) {
        Ok(event) => {
            for line in messages(&event) {
                outln!("#{} {}", event.seq, line);
            }
        }
        // A kind it knows that does not read as that kind is not something to pass over
        // quietly: said, and acknowledged all the same (a refusal would stop the endpoint
        // at it for good; the event stays in c2m's log to replay once the receiver reads it).
        Err(e) => outln!(
            "#{} {}: a {} this receiver cannot read ({e}); acknowledged, look at it",
            envelope.seq,
            envelope.id,
            envelope.kind
        ),
    }
    answer(200, "ok")
}

/// What every event has, whatever its kind.
#[derive(serde::Deserialize)]
struct Envelope {
    seq: i64,
    id: String,
    kind: String,
}

/// In major units with the currency's own digits (`Money`'s display: `321.75 CNY`).
fn money(m: &Option<Money>) -> String {
    m.map_or_else(|| "-".into(), |m| m.to_string())
}

fn to(p: &PreorderRef) -> String {
    format!("to {} (pre-order {})", p.consumer_id, p.preorder_id)
}

/// What a shop would tell each consumer the event concerns.
fn messages(e: &Event) -> Vec<String> {
    match &e.data {
        EventData::PreorderPlaced {
            preorder,
            batch_units,
            threshold,
            ..
        } => vec![format!(
            "{}: your order of {} is in; deposit {} held. The batch has {batch_units} of {threshold}.",
            to(preorder),
            preorder.quantity,
            money(&preorder.amount)
        )],
        EventData::PreorderCancelled { preorder, .. } => vec![format!(
            "{}: cancelled; your deposit of {} is released.",
            to(preorder),
            money(&preorder.amount)
        )],
        EventData::BatchLocked {
            final_unit_price,
            preorders,
            balance_due_by,
            ..
        } => preorders
            .iter()
            .map(|p| {
                let done = format!(
                    "{}: the group is complete at {} a unit!",
                    to(p),
                    money(&Some(*final_unit_price))
                );
                // A deposit of the full price leaves nothing to pay.
                match (p.amount.filter(|a| a.minor > 0), balance_due_by) {
                    (Some(_), Some(by)) => format!(
                        "{done} Balance {} due by {}.",
                        money(&p.amount),
                        by.to_rfc3339()
                    ),
                    (Some(_), None) => format!("{done} Balance {} due.", money(&p.amount)),
                    (None, _) => format!("{done} Nothing more to pay."),
                }
            })
            .collect(),
        EventData::BatchFailed { preorders, .. } => preorders
            .iter()
            .map(|p| {
                format!(
                    "{}: the group did not fill by the deadline; {} is refunded.",
                    to(p),
                    money(&p.amount)
                )
            })
            .collect(),
        EventData::BalanceDue { preorder, due_by } => vec![format!(
            "{}: please pay the balance of {} by {}.",
            to(preorder),
            money(&preorder.amount),
            due_by.to_rfc3339()
        )],
        EventData::BalancePaid { preorder } => vec![format!(
            "{}: thank you, {} received.",
            to(preorder),
            money(&preorder.amount)
        )],
        EventData::DepositForfeited { preorder } => vec![format!(
            "{}: the balance was not paid in time; the deposit of {} is kept.",
            to(preorder),
            money(&preorder.amount)
        )],
        EventData::ProductionStageChanged {
            stage,
            units_shipped,
            paid_units,
            preorders,
            ..
        } => preorders
            .iter()
            .map(|p| {
                format!(
                    "{}: production is now `{stage}` ({units_shipped} of {paid_units} units shipped).",
                    to(p)
                )
            })
            .collect(),
        EventData::ShipDateChanged {
            previous,
            expected,
            promised,
            days_late,
            planned,
            late_reason,
            preorders,
            ..
        } => preorders
            .iter()
            .map(|p| {
                let was = previous.map_or("-".into(), |d| d.date_naive().to_string());
                let now = expected.date_naive();
                let why = match (planned, days_late) {
                    (false, _) => format!(
                        "production is being re-planned; until then we hold to the promise ({})",
                        promised.date_naive()
                    ),
                    (true, 0) => format!("on time for the promise ({})", promised.date_naive()),
                    (true, n) => format!(
                        "{n} day{} after the promise ({}): {}",
                        if *n == 1 { "" } else { "s" },
                        promised.date_naive(),
                        late_reason.as_deref().unwrap_or("-")
                    ),
                };
                format!("{}: expected to ship {now} (was {was}), {why}.", to(p))
            })
            .collect(),
        EventData::CampaignChanged {
            change, refunds, ..
        } if !refunds.is_empty() => refunds
            .iter()
            .map(|p| {
                format!(
                    "{}: the campaign was {change}; {} is refunded.",
                    to(p),
                    money(&p.amount)
                )
            })
            .collect(),
        other => vec![format!("{}: {:?}", other.kind(), other)],
    }
}
