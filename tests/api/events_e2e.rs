//! Storefront events end to end over gRPC: a campaign driven through placements, a lock
//! with balances due, payments, a forfeit, a failed batch with its refund, planning and a
//! factory's progress to shipping. A subscriber that opened before the first order sees
//! exactly the events those changes imply, in sequence order, each with the numbers a
//! message to the consumer needs; after a server restart a subscriber resumes from an
//! arbitrary cursor and gets exactly the rest, then live events; a cursor ahead of the
//! server is refused with EVENT_CURSOR_AHEAD.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use tokio::sync::mpsc;
use tonic::Code;

use c2m_domain::events::{Event, EventData};
use c2m_domain::{Clock, ManualClock};
use c2m_proto::v1 as pb;
use c2m_proto::v1::event_service_client::EventServiceClient;

use crate::common::*;

pub const PRICE: i64 = 39_900;
pub const DEPOSIT: i64 = 5_000;

/// One subscription, read on a task into a channel.
pub struct Watch {
    rx: mpsc::UnboundedReceiver<Result<pb::EventStreamMessage, tonic::Status>>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    pub async fn open(
        c: &Clients,
        after: Option<i64>,
        campaign: &str,
    ) -> Result<Watch, tonic::Status> {
        let mut client = EventServiceClient::new(c.channel.clone());
        let mut stream = client
            .subscribe(pb::SubscribeEventsRequest {
                after_seq: after,
                campaign_id: campaign.into(),
            })
            .await?
            .into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(m)) => {
                        if tx.send(Ok(m)).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(s) => {
                        let _ = tx.send(Err(s));
                        return;
                    }
                }
            }
        });
        Ok(Watch { rx, task })
    }

    /// The next `n` events (heartbeats skipped), each checked against its JSON.
    pub async fn events(&mut self, n: usize, within: StdDuration) -> Vec<Event> {
        let mut out = Vec::new();
        tokio::time::timeout(within, async {
            while out.len() < n {
                let m = self
                    .rx
                    .recv()
                    .await
                    .expect("stream open")
                    .expect("no error");
                if let Some(pb::event_stream_message::Message::Event(e)) = m.message {
                    out.push(parse(&e));
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{n} events in time; got {out:?}"));
        out
    }

    /// Everything sent for `span`: the events, and whether a heartbeat came.
    pub async fn drain(&mut self, span: StdDuration) -> (Vec<Event>, bool) {
        let mut events = Vec::new();
        let mut beat = false;
        let _ = tokio::time::timeout(span, async {
            while let Some(m) = self.rx.recv().await {
                match m.expect("no error").message {
                    Some(pb::event_stream_message::Message::Event(e)) => events.push(parse(&e)),
                    Some(pb::event_stream_message::Message::Heartbeat(_)) => beat = true,
                    None => {}
                }
            }
        })
        .await;
        (events, beat)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The event of a stream message, whose fields must agree with its JSON.
fn parse(e: &pb::StoreEvent) -> Event {
    let ev: Event = serde_json::from_str(&e.json).expect("the JSON is an event");
    assert_eq!(ev.seq, e.seq);
    assert_eq!(ev.id.as_str(), e.id);
    assert_eq!(ev.data.kind(), e.kind);
    assert_eq!(ev.campaign_id.as_str(), e.campaign_id);
    assert_eq!(
        ev.batch_id.as_ref().map(|b| b.as_str()).unwrap_or(""),
        e.batch_id
    );
    ev
}

fn pay(key: &str, p: &pb::Preorder, minor: i64) -> pb::PayBalanceRequest {
    pb::PayBalanceRequest {
        idempotency_key: key.into(),
        preorder_id: p.id.clone(),
        consumer_id: p.consumer_id.clone(),
        amount: Some(pb::Money {
            minor,
            currency: "CNY".into(),
        }),
    }
}

fn report(
    key: &str,
    w: &pb::WorkOrder,
    progress: pb::report_request::Progress,
) -> pb::ReportRequest {
    pb::ReportRequest {
        idempotency_key: key.into(),
        factory_id: w.factory_id.clone(),
        work_order_id: w.id.clone(),
        progress: Some(progress),
    }
}

/// What a driven campaign's events must say: kind, and the pre-orders named with their
/// amounts, in order.
pub type Expected = Vec<(&'static str, Vec<(String, Option<i64>)>)>;

/// The dates a driven campaign's paid pre-orders show after planning (`GetPreorder`):
/// the promise, and the plan's date (the end of the plan's last run).
#[derive(Debug, Clone, Copy)]
pub struct Dates {
    pub promised: DateTime<Utc>,
    pub planned: DateTime<Utc>,
    /// When the factory reported the last unit shipped (the server's clock).
    pub shipped: DateTime<Utc>,
}

fn time(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("in range")
}

/// Drives a campaign (threshold 4, balances due within a day, deadline in three days):
/// alice 2, bob 1, carol 1 lock batch 1; dave opens batch 2; alice and bob pay, carol
/// forfeits; batch 2 fails at the deadline and dave is refunded; planning and a factory
/// take batch 1 to shipped (the date moves to the shipment's). `wait` returns once `kind` was seen (the server's sweeper
/// acts on its own tick). Returns the campaign id, the events it implies, and the ship
/// dates the pre-orders show once planned.
pub async fn drive_campaign<W, Fut>(
    c: &mut Clients,
    clock: &ManualClock,
    mut wait: W,
) -> (String, Expected, Dates)
where
    W: FnMut(&'static str) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    import(c, "events-catalogue", PHONE_CASES, pb::ImportMode::Merge)
        .await
        .expect("catalogue");
    let start = clock.now();
    let mut req = campaign_request("events-cmp", 4);
    req.sku = "case-a".into();
    req.max_per_order = None;
    req.deadline = Some(ts(start + Duration::days(3)));
    req.balance_window_seconds = Some(24 * 3600);
    let cmp = created(c, req).await;
    let mut placed = Vec::new();
    for (who, qty) in [("alice", 2), ("bob", 1), ("carol", 1), ("dave", 1)] {
        let p = c
            .preorders
            .place_preorder(place(&format!("ev-{who}"), &cmp.id, who, qty))
            .await
            .unwrap_or_else(|s| panic!("{who}: {s:?}"))
            .into_inner();
        placed.push(p);
    }
    let [alice, bob, carol, dave] = <[pb::Preorder; 4]>::try_from(placed).expect("four");
    let due = |p: &pb::Preorder| p.quantity * (PRICE - DEPOSIT);
    c.preorders
        .pay_balance(pay("pay-alice", &alice, due(&alice)))
        .await
        .expect("alice pays");
    c.preorders
        .pay_balance(pay("pay-bob", &bob, due(&bob)))
        .await
        .expect("bob pays");
    clock.advance(Duration::hours(25));
    wait("deposit.forfeited").await;
    clock.advance(Duration::days(3));
    wait("batch.failed").await;

    let plan = run_planning(c, "events-cycle").await.expect("planning");
    assert_eq!(plan.work_orders.len(), 1, "{plan:?}");
    let w = plan.work_orders[0].clone();
    let made: i64 = w.runs.iter().map(|r| r.quantity).sum();
    // Planned: the pre-orders show the end of the plan's last run against the promise,
    // the lock plus the default 42 days.
    let shown = c
        .preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: alice.id.clone(),
        })
        .await
        .expect("alice")
        .into_inner()
        .ship_date
        .expect("a ship date");
    let dates = Dates {
        promised: time(&shown.promised_by),
        planned: w.runs.iter().map(|r| time(&r.ends_at)).max().expect("runs"),
        shipped: clock.now(),
    };
    assert_eq!(time(&shown.expected_at), dates.planned, "{shown:?}");
    assert!(shown.planned);
    assert_ne!(dates.planned, dates.promised, "the plan moves the date");
    for (i, progress) in [
        pb::report_request::Progress::Accepted(pb::Accepted {}),
        pb::report_request::Progress::InProduction(pb::InProduction {}),
        pb::report_request::Progress::QualityCheck(pb::QualityCheck {
            passed: made,
            failed: 0,
        }),
        pb::report_request::Progress::Shipped(pb::Shipped {
            quantities: vec![pb::ShippedQuantity {
                sku: "case-a".into(),
                quantity: made,
            }],
        }),
    ]
    .into_iter()
    .enumerate()
    {
        c.factory
            .report(report(&format!("ev-report-{i}"), &w, progress))
            .await
            .expect("progress");
    }

    let one = |p: &pb::Preorder, amount: Option<i64>| vec![(p.id.clone(), amount)];
    let paid = vec![(alice.id.clone(), None), (bob.id.clone(), None)];
    let expected: Expected = vec![
        ("preorder.placed", one(&alice, Some(2 * DEPOSIT))),
        ("preorder.placed", one(&bob, Some(DEPOSIT))),
        ("preorder.placed", one(&carol, Some(DEPOSIT))),
        (
            "batch.locked",
            vec![
                (alice.id.clone(), Some(due(&alice))),
                (bob.id.clone(), Some(due(&bob))),
                (carol.id.clone(), Some(due(&carol))),
            ],
        ),
        ("balance.due", one(&alice, Some(due(&alice)))),
        ("balance.due", one(&bob, Some(due(&bob)))),
        ("balance.due", one(&carol, Some(due(&carol)))),
        ("preorder.placed", one(&dave, Some(DEPOSIT))),
        ("balance.paid", one(&alice, Some(due(&alice)))),
        ("balance.paid", one(&bob, Some(due(&bob)))),
        ("deposit.forfeited", one(&carol, Some(DEPOSIT))),
        ("batch.failed", one(&dave, Some(DEPOSIT))),
        ("production.stage_changed", paid.clone()),
        ("ship_date.changed", paid.clone()),
        ("production.stage_changed", paid.clone()),
        ("production.stage_changed", paid.clone()),
        ("production.stage_changed", paid.clone()),
        ("production.stage_changed", paid.clone()),
        ("ship_date.changed", paid),
    ];
    (cmp.id, expected, dates)
}

/// The stages the five `production.stage_changed` events of [`drive_campaign`] name.
pub const STAGES: [&str; 5] = [
    "planned",
    "accepted",
    "in_production",
    "quality_check",
    "shipped",
];

/// Checks `events` against what [`drive_campaign`] implies: numbered 1, 2, 3, ... on a
/// fresh server, the kinds and pre-orders with their amounts in order, the stages, the
/// promise at the lock and the planned date in `ship_date.changed`.
#[track_caller]
pub fn check_driven(events: &[Event], campaign: &str, expected: &Expected, dates: &Dates) {
    let got: Expected = events
        .iter()
        .map(|e| {
            (
                e.data.kind(),
                e.data
                    .preorders()
                    .iter()
                    .map(|p| (p.preorder_id.as_str().to_owned(), p.amount.map(|a| a.minor)))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(&got, expected);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "sequence without gaps");
        assert_eq!(e.campaign_id.as_str(), campaign);
    }
    let stages: Vec<&str> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::ProductionStageChanged { stage, .. } => Some(stage.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(stages, STAGES);
    let last_stage = events
        .iter()
        .rev()
        .find(|e| e.data.kind() == "production.stage_changed")
        .expect("a stage");
    match &last_stage.data {
        EventData::ProductionStageChanged {
            units_shipped,
            paid_units,
            ..
        } => assert_eq!((*units_shipped, *paid_units), (3, 3)),
        other => panic!("{other:?}"),
    }
    match &events[3].data {
        EventData::BatchLocked {
            units,
            final_unit_price,
            balance_due_by,
            ships_by,
            ..
        } => {
            assert_eq!(*units, 4);
            assert_eq!(final_unit_price.minor, PRICE);
            assert!(balance_due_by.is_some());
            assert_eq!(*ships_by, Some(dates.promised));
            assert_eq!(
                Some(dates.promised),
                events[3].occurred_at.checked_add_signed(Duration::days(42))
            );
        }
        other => panic!("{other:?}"),
    }
    let moved: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.data {
            EventData::ShipDateChanged {
                previous,
                expected,
                promised,
                days_late,
                planned,
                shipped,
                late_reason,
                ..
            } => Some((
                *previous,
                *expected,
                *promised,
                *days_late,
                (*planned, *shipped),
                late_reason.as_ref().is_some_and(|r| !r.is_empty()),
            )),
            _ => None,
        })
        .collect();
    // Late by dates: a promise is a day, kept through its end (UTC).
    let days_late = (dates.planned.date_naive() - dates.promised.date_naive())
        .num_days()
        .max(0);
    assert!(dates.shipped < dates.promised, "the factory ships early");
    assert_eq!(
        moved,
        [
            (
                Some(dates.promised),
                dates.planned,
                dates.promised,
                days_late,
                (true, false),
                days_late > 0,
            ),
            (
                Some(dates.planned),
                dates.shipped,
                dates.promised,
                0,
                (true, true),
                false,
            )
        ],
        "two moves: from the promise to the plan's date (a reason when late), then to the \
         shipment's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_hears_every_change_in_order_and_resumes_after_a_restart() {
    let clock = ManualClock::new(Utc::now().trunc_subsecs(6));
    let server = TestServer::sqlite_with_clock(Arc::new(clock.clone())).await;
    let mut c = server.clients().await;

    // Subscribed before anything happened: a heartbeat, and nothing else.
    let mut watch = Watch::open(&c, Some(0), "").await.expect("subscribe");
    let (none, beat) = watch.drain(StdDuration::from_millis(700)).await;
    assert!(none.is_empty() && beat);

    let seen = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::<Event>::new()));
    // The sweeper acts on its own tick: the stream is read until the awaited kind shows.
    let (campaign, expected, dates) =
        drive_campaign_with_watch(&mut c, &clock, &mut watch, seen.clone()).await;
    let mut events = std::mem::take(&mut *seen.lock().await);
    let rest = expected.len() - events.len();
    events.extend(watch.events(rest, StdDuration::from_secs(10)).await);
    check_driven(&events, &campaign, &expected, &dates);
    let (extra, _) = watch.drain(StdDuration::from_millis(700)).await;
    assert!(extra.is_empty(), "nothing more: {extra:?}");

    // A campaign filter shows that campaign only; another campaign's events are not in it.
    let mut only = Watch::open(&c, Some(0), &campaign).await.expect("filtered");
    assert_eq!(
        only.events(expected.len(), StdDuration::from_secs(5)).await,
        events
    );
    let other = c
        .campaigns
        .create_campaign(campaign_request("events-other", 10))
        .await
        .expect("other campaign")
        .into_inner();
    c.preorders
        .place_preorder(place("ev-other", &other.id, "erin", 1))
        .await
        .expect("other order");
    let (none, _) = only.drain(StdDuration::from_millis(700)).await;
    assert!(none.is_empty(), "{none:?}");
    let live = watch.events(1, StdDuration::from_secs(5)).await;
    assert_eq!(live[0].campaign_id.as_str(), other.id);
    assert_eq!(live[0].seq, expected.len() as i64 + 1);
    drop((watch, only));

    // Restart on the same database; resume from an arbitrary cursor.
    let dir = server.shutdown().await.expect("data directory");
    let server = TestServer::sqlite_in(dir, Arc::new(clock.clone()), |_| {}).await;
    let c = server.clients().await;
    let total = expected.len() + 1;
    let mut resumed = Watch::open(&c, Some(5), "").await.expect("resume");
    let after = resumed.events(total - 5, StdDuration::from_secs(5)).await;
    assert_eq!(after[..events.len() - 5], events[5..]);
    assert_eq!(after.last().map(|e| e.seq), Some(total as i64));
    let (extra, _) = resumed.drain(StdDuration::from_millis(500)).await;
    assert!(extra.is_empty(), "exactly once: {extra:?}");

    // Without a cursor the stream is live only.
    let mut live = Watch::open(&c, None, "").await.expect("live");
    let (none, beat) = live.drain(StdDuration::from_millis(700)).await;
    assert!(none.is_empty() && beat);

    // A cursor ahead of the server is refused with its reason and numbers.
    let ahead = Watch::open(&c, Some(total as i64 + 1), "")
        .await
        .err()
        .expect("refused");
    assert_refused(&ahead, Code::OutOfRange, "EVENT_CURSOR_AHEAD");
    assert_eq!(
        error_meta(&ahead, "last").as_deref(),
        Some(total.to_string().as_str())
    );
    let unknown = Watch::open(&c, Some(0), "cmp_nope")
        .await
        .err()
        .expect("refused");
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await;
}

/// [`drive_campaign`], reading `watch` into `seen` while waiting for the sweeper.
async fn drive_campaign_with_watch(
    c: &mut Clients,
    clock: &ManualClock,
    watch: &mut Watch,
    seen: Arc<tokio::sync::Mutex<Vec<Event>>>,
) -> (String, Expected, Dates) {
    let watch = tokio::sync::Mutex::new(watch);
    drive_campaign(c, clock, |kind| {
        let (seen, watch) = (seen.clone(), &watch);
        async move {
            let mut watch = watch.lock().await;
            loop {
                let e = watch.events(1, StdDuration::from_secs(10)).await;
                let done = e[0].data.kind() == kind;
                seen.lock().await.extend(e);
                if done {
                    return;
                }
            }
        }
    })
    .await
}

/// Two servers on one PostgreSQL database: a subscriber of one hears the other's orders
/// through LISTEN/NOTIFY, well before its poll interval (a minute here) would find them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_another_replica_hears_events_promptly() {
    let Some(admin) = pg_admin_url() else { return };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let slow_poll = |s: &mut c2m_server::Settings| {
        s.database_url = Some(url.clone());
        s.event_poll = StdDuration::from_secs(60);
        s.factory_poll = StdDuration::from_secs(60);
    };
    let a = TestServer::sqlite_with(slow_poll).await;
    let b = TestServer::sqlite_with(slow_poll).await;
    let mut ca = a.clients().await;
    let cb = b.clients().await;
    let mut watch = Watch::open(&cb, None, "").await.expect("subscribe on b");
    let (none, _) = watch.drain(StdDuration::from_millis(300)).await;
    assert!(none.is_empty());
    let cmp = ca
        .campaigns
        .create_campaign(campaign_request("pg-events", 2))
        .await
        .expect("campaign")
        .into_inner();
    for who in ["alice", "bob"] {
        ca.preorders
            .place_preorder(place(&format!("pg-{who}"), &cmp.id, who, 1))
            .await
            .expect("order on a");
    }
    // Far within b's poll interval: only a notification can wake it this soon.
    let events = watch.events(3, StdDuration::from_secs(5)).await;
    let kinds: Vec<_> = events.iter().map(|e| e.data.kind()).collect();
    assert_eq!(
        kinds,
        ["preorder.placed", "preorder.placed", "batch.locked"]
    );
    assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    drop(watch);
    a.shutdown().await;
    b.shutdown().await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}

/// An event larger than a stream message may be (`--max-message-bytes`; here a lock of
/// 150 pre-orders against 16 KiB, as tens of thousands would be against the default
/// 4 MiB) comes in parts with the event's seq, each a whole event listing the next slice
/// of its pre-orders, and the stream goes on past it. Sent whole, it ended the stream with
/// OUT_OF_RANGE, and every resume ended at the same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_larger_than_a_message_comes_in_parts_and_the_stream_goes_on() {
    const LIMIT: usize = 16 * 1024;
    const ORDERS: usize = 150;
    let server = TestServer::sqlite_with(|s| s.max_message_bytes = LIMIT).await;
    let mut c = server.clients().await;
    let cmp = c
        .campaigns
        .create_campaign(campaign_request("large-lock", ORDERS as i64))
        .await
        .unwrap()
        .into_inner();
    let mut placed = std::collections::BTreeSet::new();
    for i in 0..ORDERS {
        let p = c
            .preorders
            .place_preorder(place(
                &format!("o-{i}"),
                &cmp.id,
                &format!("consumer-{i:03}"),
                1,
            ))
            .await
            .unwrap()
            .into_inner();
        placed.insert(p.id);
    }

    // Every message up to the lock's last part, from the start.
    let read_lock = |mut w: Watch| async move {
        let mut parts: Vec<pb::StoreEvent> = Vec::new();
        tokio::time::timeout(StdDuration::from_secs(30), async {
            loop {
                let m = w.rx.recv().await.expect("stream open").expect("no error");
                let Some(pb::event_stream_message::Message::Event(e)) = m.message else {
                    continue;
                };
                assert!(
                    prost::Message::encoded_len(&e) <= LIMIT,
                    "a message within the limit"
                );
                if e.kind == "batch.locked" {
                    let last = e.part + 1 == e.parts;
                    parts.push(e);
                    if last {
                        return;
                    }
                }
            }
        })
        .await
        .expect("the lock's parts in time");
        (parts, w)
    };
    let (parts, mut w) = read_lock(Watch::open(&c, Some(0), "").await.unwrap()).await;
    let n = parts[0].parts;
    assert!(
        n >= 2,
        "a lock of {ORDERS} pre-orders is split at 16 KiB: {n} part(s)"
    );
    assert_eq!(parts.len(), n as usize);
    let seq = parts[0].seq;
    let mut listed = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(
            (p.part, p.parts, p.seq, &p.id),
            (i as i32, n, seq, &parts[0].id)
        );
        let e = parse(p);
        let EventData::BatchLocked {
            preorders, units, ..
        } = e.data
        else {
            panic!("a batch.locked part: {e:?}");
        };
        assert_eq!(
            units, ORDERS as i64,
            "each part is the whole event but its list"
        );
        assert!(!preorders.is_empty());
        listed.extend(
            preorders
                .into_iter()
                .map(|r| r.preorder_id.as_str().to_owned()),
        );
    }
    assert_eq!(listed.len(), ORDERS, "each pre-order listed once");
    assert_eq!(
        listed
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>(),
        placed
    );
    // The stream goes on past it: the balances due follow.
    let after = w.events(1, StdDuration::from_secs(10)).await;
    assert!(after[0].seq > seq, "{after:?}");

    // Resumed just before it, the parts come again; resumed at it, the stream goes on.
    let (again, _) = read_lock(Watch::open(&c, Some(seq - 1), "").await.unwrap()).await;
    assert_eq!(again.len(), n as usize);
    let mut past = Watch::open(&c, Some(seq), "").await.unwrap();
    let next = past.events(1, StdDuration::from_secs(10)).await;
    assert_eq!(next[0].seq, seq + 1);

    // The storefront example prints it once, whole: one line, every pre-order.
    let exe = tokio::task::spawn_blocking(|| example_binary("storefront"))
        .await
        .expect("built");
    let mut watch = tokio::process::Command::new(exe)
        .args([
            "--addr",
            &format!("http://{}", server.addr),
            "--token",
            "unused",
        ])
        .args(["watch", "--after", &(seq - 1).to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("storefront runs");
    let stdout = watch.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut printed = Vec::new();
    for _ in 0..2 {
        let line = tokio::time::timeout(StdDuration::from_secs(30), lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("a line");
        printed.push(serde_json::from_str::<Event>(&line).expect("an event a line"));
    }
    let _ = watch.start_kill();
    assert_eq!(
        printed.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [seq, seq + 1],
        "the lock once, then the next event"
    );
    let EventData::BatchLocked { preorders, .. } = &printed[0].data else {
        panic!("the lock: {:?}", printed[0]);
    };
    assert_eq!(
        preorders
            .iter()
            .map(|r| r.preorder_id.as_str().to_owned())
            .collect::<std::collections::BTreeSet<_>>(),
        placed
    );
    assert_eq!(preorders.len(), ORDERS);
    server.shutdown().await;
}

/// What a newer replica writes in a rolling upgrade reaches subscribers and webhooks whole
/// through this one: an event of a kind this release does not know, and a known kind with
/// a field it does not know, put in the store past the server as a newer c2m would write
/// them. The stream sends each as stored (the unknown kind in parts when it is too large
/// for a message, split by its `preorders`), the webhook gets the same JSON, and both go
/// on to the events after them. Before, such an event was corrupt data to the server:
/// every stream from before it ended `INTERNAL` at it, and the webhook stopped there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_a_newer_release_are_delivered_whole() {
    const LIMIT: usize = 16 * 1024;
    let (server, db) = server_with_its_database(LIMIT).await;
    let mut c = server.clients().await;
    let receiver = crate::webhooks_e2e::Receiver::start(&[]).await;
    crate::webhooks_e2e::register(&c, &receiver.url(), &["*"])
        .await
        .expect("register");
    let cmp = created(&mut c, campaign_request("newer-release", 10)).await;
    c.preorders
        .place_preorder(place("newer-1", &cmp.id, "alice", 1))
        .await
        .expect("order");

    let (renamed, _) = write_as_a_newer_release(&db, &cmp.id).await;
    c.preorders
        .place_preorder(place("newer-2", &cmp.id, "bob", 1))
        .await
        .expect("an order after them");

    // The stream, from the start: every event, the newer ones as stored.
    let mut stream = EventServiceClient::new(c.channel.clone())
        .subscribe(pb::SubscribeEventsRequest {
            after_seq: Some(0),
            campaign_id: cmp.id.clone(),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let mut got: Vec<pb::StoreEvent> = Vec::new();
    tokio::time::timeout(StdDuration::from_secs(20), async {
        while got.last().is_none_or(|e| e.seq < 4) {
            match stream.message().await.expect("no error").expect("open") {
                pb::EventStreamMessage {
                    message: Some(pb::event_stream_message::Message::Event(e)),
                } => got.push(e),
                _ => continue,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("four events in time; got {got:?}"));
    let seqs: Vec<(i64, &str)> = got.iter().map(|e| (e.seq, e.kind.as_str())).collect();
    let parts = got.iter().filter(|e| e.seq == 2).count();
    assert!(parts >= 2, "the long newer event comes in parts: {seqs:?}");
    let mut whole: Vec<serde_json::Value> = Vec::new();
    for e in got.iter().filter(|e| e.seq == 2) {
        assert!(e.json.len() <= LIMIT, "a part fits a message");
        assert_eq!(
            (e.kind.as_str(), e.id.as_str()),
            ("campaign.renamed", "evt_newer_0")
        );
        assert_eq!(e.parts as usize, parts);
        let v: serde_json::Value = serde_json::from_str(&e.json).expect("JSON");
        assert_eq!(v["name"], "Kettle \"Pro\" \u{2014} second run");
        whole.extend(v["preorders"].as_array().expect("a list").iter().cloned());
    }
    assert_eq!(
        serde_json::Value::Array(whole),
        serde_json::from_str::<serde_json::Value>(&renamed).unwrap()["preorders"],
        "the parts list every pre-order once, in order, as stored"
    );
    let on_stream_paid = got.iter().find(|e| e.seq == 3).expect("event 3");
    assert_eq!(on_stream_paid.kind, "balance.paid");
    let v: serde_json::Value = serde_json::from_str(&on_stream_paid.json).expect("JSON");
    assert_eq!(v["paid_with"]["last4"], "4242", "{v}");
    assert_eq!(v["seq"], 3);
    assert_eq!(got.last().map(|e| e.kind.as_str()), Some("preorder.placed"));

    // The webhook: the same four, whole (a webhook has no message limit), and the
    // known kind's body is the stream's JSON byte for byte.
    let started = std::time::Instant::now();
    let bodies = loop {
        let bodies: Vec<serde_json::Value> = receiver
            .got()
            .iter()
            .filter(|g| g.answer == crate::webhooks_e2e::Answer::Status(200))
            .map(|g| serde_json::from_slice(&g.body).expect("JSON"))
            .collect();
        if bodies.len() >= 4 {
            break bodies;
        }
        assert!(
            started.elapsed() < StdDuration::from_secs(20),
            "four deliveries in time; got {bodies:?}"
        );
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    };
    let kinds: Vec<(&str, i64)> = bodies
        .iter()
        .map(|b| {
            (
                b["kind"].as_str().unwrap_or(""),
                b["seq"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("preorder.placed", 1),
            ("campaign.renamed", 2),
            ("balance.paid", 3),
            ("preorder.placed", 4)
        ]
    );
    let mut renamed_sent = bodies[1].clone();
    for envelope in ["seq", "id", "campaign_id", "occurred_at"] {
        renamed_sent
            .as_object_mut()
            .expect("an object")
            .remove(envelope);
    }
    assert_eq!(
        renamed_sent,
        serde_json::from_str::<serde_json::Value>(&renamed).unwrap()
    );
    let paid_body = receiver
        .got()
        .into_iter()
        .find(|g| serde_json::from_slice::<serde_json::Value>(&g.body).is_ok_and(|v| v["seq"] == 3))
        .expect("the paid event delivered");
    assert_eq!(paid_body.body, on_stream_paid.json.as_bytes());
    server.shutdown().await;
}

/// An event too large for a stream message that has no list of pre-orders to split by
/// ends the stream (`OUT_OF_RANGE`, as events.md says), but only after the events before
/// it: they came in the same page, and the whole page was withheld, so a subscriber never
/// got them (QA 17).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_cannot_be_sent_ends_the_stream_after_the_events_before_it() {
    const LIMIT: usize = 16 * 1024;
    let (server, db) = server_with_its_database(LIMIT).await;
    let mut c = server.clients().await;
    let cmp = created(&mut c, campaign_request("too-large", 10)).await;
    for (i, who) in ["alice", "bob"].into_iter().enumerate() {
        c.preorders
            .place_preorder(place(&format!("too-large-{i}"), &cmp.id, who, 1))
            .await
            .expect("order");
    }
    let body =
        serde_json::json!({"kind": "campaign.noted", "note": "x".repeat(2 * LIMIT)}).to_string();
    append_past_the_server(&db, &cmp.id, "evt_too_large", "campaign.noted", &body).await;
    let mut watch = Watch::open(&c, Some(0), &cmp.id).await.expect("subscribe");
    let mut got = Vec::new();
    let ended = tokio::time::timeout(StdDuration::from_secs(20), async {
        loop {
            match watch.rx.recv().await {
                Some(Ok(pb::EventStreamMessage {
                    message: Some(pb::event_stream_message::Message::Event(e)),
                })) => got.push(e.seq),
                Some(Ok(_)) => continue,
                Some(Err(status)) => return Some(status),
                None => return None,
            }
        }
    })
    .await
    .expect("the stream ends in time");
    assert_eq!(got, [1, 2], "the events before it are sent");
    let status = ended.expect("ended with a status");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    server.shutdown().await;
}

/// The webhook receiver example, as a shop would copy it, acknowledges an event of a kind
/// it does not know (a newer c2m's) and names it, so the events after it still come. It
/// answered 400 "not an event", which c2m retries until it disables the endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receiver_example_acknowledges_a_kind_it_does_not_know() {
    let (server, db) = server_with_its_database(4 << 20).await;
    let mut c = server.clients().await;
    // A free port for the receiver: its URL is registered before it starts, with the
    // secret the registration answers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let registered =
        crate::webhooks_e2e::register(&c, &format!("http://127.0.0.1:{port}/hooks/c2m"), &["*"])
            .await
            .expect("register");
    let exe = tokio::task::spawn_blocking(|| example_binary("webhook_receiver"))
        .await
        .expect("built");
    let mut receiver = tokio::process::Command::new(exe)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--secret", &registered.secret])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the receiver runs");
    let stdout = receiver.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));

    let cmp = created(&mut c, campaign_request("newer-receiver", 10)).await;
    c.preorders
        .place_preorder(place("newer-r-1", &cmp.id, "alice", 1))
        .await
        .expect("order");
    write_as_a_newer_release(&db, &cmp.id).await;
    c.preorders
        .place_preorder(place("newer-r-2", &cmp.id, "bob", 1))
        .await
        .expect("an order after them");
    let mut printed = Vec::new();
    tokio::time::timeout(StdDuration::from_secs(30), async {
        while !printed.iter().any(|l: &String| l.starts_with("#4 ")) {
            match lines.next_line().await.expect("read") {
                Some(line) => printed.push(line),
                None => panic!("the receiver ended: {printed:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the event after the newer ones in time: {printed:?}"));
    let _ = receiver.start_kill();
    let of = |seq: &str| -> Vec<&String> {
        printed
            .iter()
            .filter(|l| l.starts_with(&format!("#{seq} ")))
            .collect()
    };
    assert_eq!(
        of("2"),
        ["#2 evt_newer_0: a kind this receiver does not know (campaign.renamed), acknowledged"],
        "{printed:?}"
    );
    assert!(
        of("3").iter().any(|l| l.contains("alice")),
        "a known kind with a new field reads as its kind: {printed:?}"
    );
    assert!(
        printed
            .iter()
            .all(|l| !l.contains("refused") && !l.contains("not an event")),
        "{printed:?}"
    );
    server.shutdown().await;
}

/// Appends two events past the server, as a newer c2m writes them (the counter raised with
/// each): `campaign.renamed`, a kind this release does not know, listing 400 pre-orders;
/// and `balance.paid` with a field this release does not know. Answers their bodies.
async fn write_as_a_newer_release(db: &std::path::Path, campaign: &str) -> (String, String) {
    // A kind with a list of pre-orders too long for one message, and a known kind with a
    // field of its own.
    let listed: Vec<serde_json::Value> = (0..400)
        .map(|i| {
            serde_json::json!({
                "preorder_id": format!("po_{i:04}"),
                "consumer_id": format!("consumer-{i:04}"),
                "quantity": 1,
                "loyalty": {"tier": "gold", "points": [i, 2.5]},
            })
        })
        .collect();
    let renamed = serde_json::json!({
        "kind": "campaign.renamed",
        "name": "Kettle \"Pro\" \u{2014} second run",
        "preorders": listed,
    })
    .to_string();
    let paid = serde_json::json!({
        "kind": "balance.paid",
        "preorder": {"preorder_id": "po_x", "consumer_id": "alice", "quantity": 1,
                     "amount": {"minor": 34_900, "currency": "CNY"}},
        "paid_with": {"method": "card", "last4": "4242"},
    })
    .to_string();
    for (i, (kind, body)) in [("campaign.renamed", &renamed), ("balance.paid", &paid)]
        .into_iter()
        .enumerate()
    {
        append_past_the_server(db, campaign, &format!("evt_newer_{i}"), kind, body).await;
    }
    (renamed, paid)
}

/// Appends one event to the SQLite store `db` past the server, numbered next and with the
/// counter raised, as another c2m writing it would.
async fn append_past_the_server(
    db: &std::path::Path,
    campaign: &str,
    id: &str,
    kind: &str,
    body: &str,
) {
    let sql = format!(
        "INSERT INTO events (seq, id, campaign_id, batch_id, kind, occurred_at, data) \
         SELECT last_seq + 1, '{id}', '{campaign}', NULL, '{kind}', {}, '{}' \
         FROM event_counter WHERE id = 1 RETURNING seq",
        Utc::now().timestamp_micros(),
        body.replace('\'', "''")
    );
    c2m_store::conformance::sqlite_past_the_store(db, &sql).await;
    c2m_store::conformance::sqlite_past_the_store(
        db,
        "UPDATE event_counter SET last_seq = last_seq + 1 WHERE id = 1 RETURNING last_seq",
    )
    .await;
}

/// A server on SQLite in a folder of its own, with `--max-message-bytes` at `limit`, and
/// the path of its database (for writes past it).
async fn server_with_its_database(limit: usize) -> (TestServer, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("c2m.db");
    let server = TestServer::sqlite_in(dir, Arc::new(c2m_server::SystemClock), |s| {
        s.max_message_bytes = limit
    })
    .await;
    (server, db)
}
