//! Conformance cases for the events outbox (`crate::events`): each change appends its
//! events in its own transaction, exactly once, numbered in commit order without gaps;
//! a refused or replayed request appends none. Every expected event is derived here from
//! the requests made, never read back from the store first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Duration;
use futures::future::join_all;

use c2m_domain::events::{Event, EventData, StoredEvent};
use c2m_domain::{CampaignId, Currency, Money, PreorderId};

use super::{
    accept_all, alternate, batches, cancel, change, consumer, create, key, new_plan, part_order,
    place, place_req, precondition, report_req, sample_catalogue, spec, t0, Fixture,
};
use crate::planning::RunSchedule;
use crate::{CatalogueEdit, PayBalance, PlanStatus, Store};
use c2m_domain::Progress;

fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::parse("CNY").expect("CNY"))
}

/// Every event after `after` (all pages), of one campaign or all.
pub async fn all_events(
    store: &dyn Store,
    after: i64,
    campaign: Option<&CampaignId>,
) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .list_events(cursor, campaign, 7)
            .await
            .expect("list events");
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        out.extend(typed(page));
    }
    out
}

/// The events read back typed: every kind this release writes is one it reads.
fn typed(page: Vec<StoredEvent>) -> impl Iterator<Item = Event> {
    page.into_iter().map(|e| {
        e.typed()
            .unwrap_or_else(|| panic!("a kind written here reads typed: {e:?}"))
    })
}

/// The events' kinds, in order.
fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.data.kind()).collect()
}

/// Events a newer release wrote (in a rolling upgrade, through a newer replica) are read
/// as stored: a kind this release does not know, and a field it does not know on a kind it
/// does, come back whole, in their place in the sequence, and the events after them are
/// read as before. Before, such a row was corrupt data and every read from before it
/// failed (an older replica's streams ended at it, its webhooks stopped).
pub async fn a_newer_releases_events_are_read_as_stored(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(5, None)).await;
    place(&*store, &c.id, &consumer(1), 1).await.expect("first");
    let renamed = r#"{"kind":"campaign.renamed","name":"Kettle ''Pro''","preorders":[{"preorder_id":"po_1","consumer_id":"a","quantity":1,"tier":{"x":[1,2.5,null]}}]}"#;
    let placed_json = {
        let first = store.list_events(0, None, 1).await.expect("first event");
        let mut v = serde_json::to_value(&first[0]).expect("JSON");
        let body = v.as_object_mut().expect("an object");
        for envelope in ["seq", "id", "campaign_id", "batch_id", "occurred_at"] {
            body.remove(envelope);
        }
        body.insert(
            "channel".into(),
            serde_json::json!({"app": "ios", "v": [3, 1]}),
        );
        serde_json::to_string(&v).expect("JSON")
    };
    // Written past the store as a newer c2m writes them: the counter raised with them.
    fx.execute_past_the_store(&format!(
        "INSERT INTO events (seq, id, campaign_id, batch_id, kind, occurred_at, data) \
         SELECT 2, 'evt_newer_2', campaign_id, batch_id, 'campaign.renamed', occurred_at, \
         '{renamed}' FROM events WHERE seq = 1; \
         INSERT INTO events (seq, id, campaign_id, batch_id, kind, occurred_at, data) \
         SELECT 3, 'evt_newer_3', campaign_id, batch_id, 'preorder.placed', occurred_at, \
         '{placed_json}' FROM events WHERE seq = 1; \
         UPDATE event_counter SET last_seq = 3 WHERE id = 1;"
    ))
    .await;
    place(&*store, &c.id, &consumer(2), 1)
        .await
        .expect("after them");
    for campaign in [None, Some(&c.id)] {
        let events = store.list_events(0, campaign, 10).await.expect("read");
        let kinds: Vec<(i64, &str)> = events.iter().map(|e| (e.seq, e.kind())).collect();
        assert_eq!(
            kinds,
            [
                (1, "preorder.placed"),
                (2, "campaign.renamed"),
                (3, "preorder.placed"),
                (4, "preorder.placed")
            ]
        );
        assert_eq!(events[1].data(), None);
        let sent = serde_json::to_value(&events[1]).expect("JSON");
        assert_eq!(sent["name"], "Kettle 'Pro'");
        assert_eq!(sent["preorders"][0]["tier"]["x"][1], 2.5);
        assert_eq!(sent["id"], "evt_newer_2");
        assert_eq!(events[1].listed(), 1);
        let sent = serde_json::to_value(&events[2]).expect("JSON");
        assert_eq!(sent["channel"]["v"][0], 3, "{sent}");
        assert_eq!(
            events[2].data(),
            events[0].data(),
            "its known fields read typed"
        );
        assert!(events[3].typed().is_some());
    }
    assert_eq!(store.last_event_seq().await.expect("last"), 4);
}

/// Numbers are 1, 2, 3, ...: increasing, no gap, no repeat.
#[track_caller]
fn numbered_without_gaps(events: &[Event]) {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.seq, i as i64 + 1, "event {i} of {events:?}");
    }
}

fn preorder_of(e: &Event) -> &PreorderId {
    &e.data.preorders()[0].preorder_id
}

/// A campaign driven through placement, cancel, lock (with balances due), payment, and a
/// forfeit; the events say exactly that, in order, each with its numbers.
pub async fn events_are_written_with_their_changes_in_order(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    assert_eq!(store.last_event_seq().await.expect("last"), 0);
    assert!(all_events(&*store, 0, None).await.is_empty());
    let mut s = spec(5, None);
    s.balance_window_secs = Some(24 * 3600);
    let c = create(&*store, s).await;
    let (a, b, d) = (consumer(1), consumer(2), consumer(3));
    let pa = place(&*store, &c.id, &a, 2).await.expect("a");
    let pb = place(&*store, &c.id, &b, 1).await.expect("b");
    let at = t0() + Duration::hours(2);
    cancel(&*store, &pb.id, None, at).await.expect("cancel b");
    let pd = place(&*store, &c.id, &d, 3).await.expect("d locks");
    let events = all_events(&*store, 0, None).await;
    numbered_without_gaps(&events);
    assert_eq!(
        kinds(&events),
        [
            "preorder.placed",
            "preorder.placed",
            "preorder.cancelled",
            "preorder.placed",
            "batch.locked",
            "balance.due",
            "balance.due",
        ]
    );
    assert!(events.iter().all(|e| e.campaign_id == c.id));
    assert!(events
        .iter()
        .all(|e| e.batch_id.as_ref() == Some(&pa.batch_id)));
    match &events[0].data {
        EventData::PreorderPlaced {
            preorder,
            batch_units,
            threshold,
            batch_seq,
        } => {
            assert_eq!(preorder.preorder_id, pa.id);
            assert_eq!(preorder.consumer_id, a);
            assert_eq!(preorder.amount, Some(cny(2 * 5_000)));
            assert_eq!((*batch_units, *threshold, *batch_seq), (2, 5, 1));
        }
        other => panic!("{other:?}"),
    }
    match &events[2].data {
        EventData::PreorderCancelled {
            preorder,
            batch_units,
            ..
        } => {
            assert_eq!(preorder.preorder_id, pb.id);
            assert_eq!(preorder.amount, Some(cny(5_000)));
            assert_eq!(*batch_units, 2);
        }
        other => panic!("{other:?}"),
    }
    let due_by = t0() + Duration::hours(1) + Duration::days(1);
    match &events[4].data {
        EventData::BatchLocked {
            units,
            final_unit_price,
            preorders,
            balance_due_by,
            ..
        } => {
            assert_eq!(*units, 5);
            assert_eq!(*final_unit_price, cny(39_900));
            assert_eq!(*balance_due_by, Some(due_by));
            let owed: Vec<_> = preorders
                .iter()
                .map(|p| (p.preorder_id.clone(), p.amount))
                .collect();
            assert_eq!(
                owed,
                [
                    (pa.id.clone(), Some(cny(2 * (39_900 - 5_000)))),
                    (pd.id.clone(), Some(cny(3 * (39_900 - 5_000)))),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(preorder_of(&events[5]), &pa.id);
    assert_eq!(preorder_of(&events[6]), &pd.id);

    // A pays; D does not, and forfeits when the window closes.
    let now = t0() + Duration::hours(3);
    let pay = PayBalance {
        idempotency_key: key(),
        preorder_id: pa.id.clone(),
        consumer_id: None,
        amount: cny(2 * (39_900 - 5_000)),
    };
    store.pay_balance(&pay, now).await.expect("pay a");
    // A replay appends nothing.
    store.pay_balance(&pay, now).await.expect("replay");
    let closed = store
        .close_balance_window(&pa.batch_id, due_by + Duration::seconds(1))
        .await
        .expect("close");
    assert_eq!(closed.forfeited, 1);
    store
        .close_balance_window(&pa.batch_id, due_by + Duration::seconds(2))
        .await
        .expect("close again");
    let later = all_events(&*store, 7, None).await;
    assert_eq!(kinds(&later), ["balance.paid", "deposit.forfeited"]);
    assert_eq!(later[0].seq, 8);
    assert_eq!(preorder_of(&later[0]), &pa.id);
    assert_eq!(later[0].data.preorders()[0].amount, Some(cny(2 * 34_900)));
    assert_eq!(preorder_of(&later[1]), &pd.id);
    assert_eq!(later[1].data.preorders()[0].amount, Some(cny(3 * 5_000)));
    assert_eq!(store.last_event_seq().await.expect("last"), 9);
}

/// Refused writes and replays append nothing; a failed batch tells every refund once; the
/// campaign filter shows one campaign's events only.
pub async fn refused_and_replayed_writes_append_no_event(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut capped = spec(3, Some(3));
    capped.max_per_consumer = Some(2);
    let c = create(&*store, capped).await;
    let other = create(&*store, spec(10, None)).await;
    let a = consumer(1);
    let req = place_req(&c.id, &a, 2);
    let at = t0() + Duration::hours(1);
    let pa = store.place_preorder(&req, at).await.expect("a");
    assert_eq!(store.place_preorder(&req, at).await.expect("replay"), pa);
    precondition(place(&*store, &c.id, &a, 1).await);
    precondition(place(&*store, &c.id, &consumer(2), 2).await);
    let po = place(&*store, &other.id, &consumer(3), 4)
        .await
        .expect("other");
    let before = store.last_event_seq().await.expect("last");
    assert_eq!(before, 2, "two placements, no more");
    // A cancel after the deadline is refused; the deadline fails the batch, once.
    precondition(cancel(&*store, &pa.id, None, c.terms.deadline + Duration::hours(1)).await);
    let after = c.terms.deadline + Duration::seconds(1);
    for _ in 0..2 {
        store
            .fail_open_batch_at_deadline(&c.id, after)
            .await
            .expect("fail");
        store
            .fail_open_batch_at_deadline(&other.id, after)
            .await
            .expect("fail other");
    }
    let mine = all_events(&*store, 0, Some(&c.id)).await;
    assert_eq!(kinds(&mine), ["preorder.placed", "batch.failed"]);
    match &mine[1].data {
        EventData::BatchFailed {
            units,
            threshold,
            preorders,
            ..
        } => {
            assert_eq!((*units, *threshold), (2, 3));
            assert_eq!(preorders.len(), 1);
            assert_eq!(preorders[0].preorder_id, pa.id);
            assert_eq!(preorders[0].amount, Some(cny(2 * 5_000)));
        }
        other => panic!("{other:?}"),
    }
    let theirs = all_events(&*store, 0, Some(&other.id)).await;
    assert_eq!(kinds(&theirs), ["preorder.placed", "batch.failed"]);
    assert_eq!(preorder_of(&theirs[0]), &po.id);
    let all = all_events(&*store, 0, None).await;
    numbered_without_gaps(&all);
    assert_eq!(all.len(), 4);
    let ids: HashSet<_> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 4, "every event has its own id");
}

/// Orders from two replicas on several campaigns at once, with a reader following the
/// stream meanwhile: every accepted order has exactly one `preorder.placed`, each locked
/// batch one `batch.locked`, the numbers have no gap, and the reader, which only ever
/// asked for numbers above the last it saw, saw every event (none was committed behind
/// its cursor).
pub async fn concurrent_writes_are_numbered_in_commit_order(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let replica = fx.replica().await;
    let mut campaigns = Vec::new();
    for _ in 0..4 {
        campaigns.push(create(&*store, spec(4, None)).await.id);
    }
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = replica.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Event> = Vec::new();
            let mut cursor = 0;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store.list_events(cursor, None, 50).await.expect("read");
                if let Some(last) = page.last() {
                    cursor = last.seq;
                }
                let empty = page.is_empty();
                seen.extend(typed(page));
                if finished && empty {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let at = t0() + Duration::hours(1);
    let orders = (0..60).map(|i| {
        let s = alternate(i, &store, &replica);
        let req = place_req(
            &campaigns[i % campaigns.len()],
            &consumer(i),
            1 + (i % 2) as i64,
        );
        async move { s.place_preorder(&req, at).await }
    });
    let accepted: Vec<_> = join_all(orders)
        .await
        .into_iter()
        .map(|r| r.expect("every order fits"))
        .collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.expect("reader");
    let all = all_events(&*store, 0, None).await;
    numbered_without_gaps(&all);
    assert_eq!(seen, all, "the follower saw every event, in order");
    let mut placed: HashMap<PreorderId, usize> = HashMap::new();
    let mut locked = HashSet::new();
    for e in &all {
        match &e.data {
            EventData::PreorderPlaced { preorder, .. } => {
                *placed.entry(preorder.preorder_id.clone()).or_default() += 1;
            }
            EventData::BatchLocked { .. } => {
                assert!(locked.insert(e.batch_id.clone()), "locked twice: {e:?}");
            }
            _ => {}
        }
    }
    assert_eq!(placed.len(), accepted.len());
    assert!(placed.values().all(|n| *n == 1));
    for p in &accepted {
        assert!(placed.contains_key(&p.id), "{p:?}");
    }
    let mut locked_batches = HashSet::new();
    for c in &campaigns {
        for b in store.list_batches(c).await.expect("batches") {
            if b.status == c2m_domain::BatchStatus::Locked {
                locked_batches.insert(Some(b.id));
            }
        }
    }
    assert_eq!(locked, locked_batches);
    // Within a campaign, a batch's placements come before its lock.
    for e in all.iter().filter(|e| e.data.kind() == "batch.locked") {
        let last_placed = all
            .iter()
            .filter(|p| p.batch_id == e.batch_id && p.data.kind() == "preorder.placed")
            .map(|p| p.seq)
            .max();
        assert!(last_placed < Some(e.seq), "{e:?}");
    }
}

/// On the sample catalogue, a campaign promising to ship within 20 days whose first
/// batch (one pre-order of 2 units, paid in full) has locked: the campaign, the pre-order,
/// the batch and the date it is promised by.
async fn locked_with_a_promise(
    store: &dyn Store,
) -> (
    c2m_domain::Campaign,
    c2m_domain::Preorder,
    c2m_domain::Batch,
    chrono::DateTime<chrono::Utc>,
) {
    change(
        store,
        CatalogueEdit::Replace(sample_catalogue()),
        accept_all(),
    )
    .await
    .expect("catalogue");
    let mut s = spec(2, None);
    s.deposit = s.unit_price;
    s.ships_within_days = Some(20);
    let c = create(store, s).await;
    let p = place(store, &c.id, &consumer(1), 2).await.expect("locks");
    let b = batches(store, &c.id).await.remove(0);
    let due = b.locked_at.expect("locked") + Duration::days(20);
    (c, p, b, due)
}

/// A locked batch's ship date moves with its plan, and only then is there an event:
/// `batch.locked` carries the promise; a plan that ships later writes `ship_date.changed`
/// (from the promise to the plan's date, the days late and the plan's reason); a factory's
/// acceptance leaves the date alone (no event); its rejection sends the date back to the
/// promise (an event); a plan that ships exactly on the promise, and a rejection of it,
/// leave the date where it was (no event).
pub async fn ship_date_changes_are_events_when_the_date_moves(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let (c, p, b, due) = locked_with_a_promise(&*store).await;
    let events = all_events(&*store, 0, Some(&c.id)).await;
    assert_eq!(kinds(&events), ["preorder.placed", "batch.locked"]);
    match &events[1].data {
        EventData::BatchLocked { ships_by, .. } => assert_eq!(*ships_by, Some(due)),
        other => panic!("{other:?}"),
    }
    // The campaign's events since the last look, which are of the `expected` kinds.
    let mut seen = events.len();
    let mut next = async |expected: &[&str]| {
        let all = all_events(&*store, 0, Some(&c.id)).await;
        let new = all[seen..].to_vec();
        seen = all.len();
        assert_eq!(kinds(&new), expected);
        new
    };
    let scheduled = |factory: &str, ends_at: chrono::DateTime<chrono::Utc>, why: Option<&str>| {
        let mut wo = part_order(factory, &b, 2);
        wo.runs[0].schedule = Some(RunSchedule {
            period: 2,
            starts_at: ends_at - Duration::days(7),
            ends_at,
            hours: 0.2,
        });
        wo.runs[0].batches[0].late_reason = why.map(str::to_owned);
        let mut plan = new_plan(PlanStatus::Optimal, vec![b.id.clone()], vec![wo]);
        plan.detail.reservations = vec![];
        plan
    };
    let paid = vec![(p.id.clone(), None)];
    // What a `ship_date.changed` says: the previous, expected and promised dates, the days
    // late, whether it is planned, and the reason it is late.
    let ship_date = |e: &Event| match &e.data {
        EventData::ShipDateChanged {
            previous,
            expected,
            promised,
            days_late,
            planned,
            late_reason,
            ..
        } => (
            (*previous, *expected, *promised),
            (*days_late, *planned),
            late_reason.clone(),
        ),
        other => panic!("{other:?}"),
    };
    let refs = |e: &Event| -> Vec<(PreorderId, Option<Money>)> {
        e.data
            .preorders()
            .iter()
            .map(|r| (r.preorder_id.clone(), r.amount))
            .collect()
    };

    // Planned four days after the promise: four days late (by date), with the reason.
    let late = due + Duration::days(4);
    store
        .store_plan(&scheduled("f1", late, Some("f1 is closed")), t0())
        .await
        .expect("plan");
    let new = next(&["production.stage_changed", "ship_date.changed"]).await;
    assert_eq!(new[1].batch_id.as_ref(), Some(&b.id));
    assert_eq!(refs(&new[1]), paid);
    assert!(matches!(
        new[1].data,
        EventData::ShipDateChanged { batch_seq: 1, .. }
    ));
    let (dates, lateness, late_reason) = ship_date(&new[1]);
    assert_eq!(dates, (Some(due), late, due));
    assert_eq!(lateness, (4, true));
    assert_eq!(late_reason.as_deref(), Some("f1 is closed"));

    // Accepted: the stage moves, the date does not.
    let wo = store.factory_work_orders("f1", 0, 10).await.expect("f1")[0].clone();
    store
        .report_progress(&report_req("f1", &wo.id, Progress::Accepted), t0())
        .await
        .expect("accepted");
    next(&["production.stage_changed"]).await;

    // Rejected: the units wait for a plan again, and the date is the promise.
    let reject = Progress::Rejected {
        reason: "no capacity".into(),
    };
    store
        .report_progress(&report_req("f1", &wo.id, reject.clone()), t0())
        .await
        .expect("rejected");
    let new = next(&["production.stage_changed", "ship_date.changed"]).await;
    assert_eq!(refs(&new[1]), paid);
    let (dates, lateness, late_reason) = ship_date(&new[1]);
    assert_eq!(dates, (Some(late), due, due));
    assert_eq!(lateness, (0, false));
    assert_eq!(late_reason, None);

    // Planned on the promise exactly, then rejected: the stage moves twice, the date never.
    store
        .store_plan(&scheduled("f2", due, None), t0())
        .await
        .expect("plan on time");
    let wo = store.factory_work_orders("f2", 0, 10).await.expect("f2")[0].clone();
    store
        .report_progress(&report_req("f2", &wo.id, reject), t0())
        .await
        .expect("rejected again");
    next(&["production.stage_changed", "production.stage_changed"]).await;
    numbered_without_gaps(&all_events(&*store, 0, None).await);
}

/// A batch made in several late runs (two in one work order, or one in each of two) is late
/// for the reason given with its last run, the one whose end is its expected date: the
/// reason names that date. Before, the first late run's reason was given ("ships
/// 2027-01-04 (7 days late)" beside an expected 2027-01-18 and 21 days late, in a QA
/// pass).
pub async fn a_late_batch_is_late_for_the_reason_of_its_last_run(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let (c, _, b, due) = locked_with_a_promise(&*store).await;
    // One unit in each run, ending `days` after the promise, late for `why`.
    let run = |days: i64, why: &str| {
        let ends_at = due + Duration::days(days);
        let mut wo = part_order("f1", &b, 1);
        wo.runs[0].schedule = Some(RunSchedule {
            period: days,
            starts_at: ends_at - Duration::days(7),
            ends_at,
            hours: 0.1,
        });
        wo.runs[0].batches[0].late_reason = Some(why.to_owned());
        wo.runs.remove(0)
    };
    let order = |factory: &str, runs: Vec<crate::planning::WorkOrderRun>| {
        let mut wo = part_order(factory, &b, 2);
        wo.runs = runs;
        wo
    };
    let latest = async || {
        let all = all_events(&*store, 0, Some(&c.id)).await;
        let last = all
            .iter()
            .rev()
            .find(|e| matches!(e.data, EventData::ShipDateChanged { .. }))
            .expect("a ship_date.changed");
        match &last.data {
            EventData::ShipDateChanged {
                expected,
                days_late,
                late_reason,
                ..
            } => (*expected, *days_late, late_reason.clone()),
            other => panic!("{other:?}"),
        }
    };
    let reject = |factory: &'static str| {
        let store = store.clone();
        async move {
            let wo = store
                .factory_work_orders(factory, 0, 10)
                .await
                .expect("work orders");
            let rejected = Progress::Rejected {
                reason: "no capacity".into(),
            };
            store
                .report_progress(
                    &report_req(factory, &wo.last().expect("one").id, rejected),
                    t0(),
                )
                .await
                .expect("rejected");
        }
    };

    // Two runs of one work order, the later second.
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![order("f1", vec![run(3, "first run"), run(9, "last run")])],
    );
    plan.detail.reservations = vec![];
    store.store_plan(&plan, t0()).await.expect("plan");
    assert_eq!(
        latest().await,
        (due + Duration::days(9), 9, Some("last run".to_owned()))
    );
    reject("f1").await;

    // One run in each of two work orders, the later in the second.
    let mut plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone()],
        vec![
            order("f1", vec![run(2, "f1's run")]),
            order("f2", vec![run(5, "f2's run")]),
        ],
    );
    plan.detail.reservations = vec![];
    store.store_plan(&plan, t0()).await.expect("plan");
    assert_eq!(
        latest().await,
        (due + Duration::days(5), 5, Some("f2's run".to_owned()))
    );
}

fn endpoint(n: usize) -> crate::webhooks::NewEndpoint {
    crate::webhooks::NewEndpoint {
        idempotency_key: c2m_domain::IdempotencyKey::parse(&format!("endpoint-{n}"))
            .expect("a key"),
        id: format!("whe_{n}"),
        url: format!("http://127.0.0.1:9/{n}"),
        kinds: vec!["*".into()],
        secret: format!("whsec_{n}"),
    }
}

fn attempt(
    endpoint: &str,
    event: &StoredEvent,
    at: chrono::DateTime<chrono::Utc>,
    ok: bool,
) -> crate::webhooks::Delivery {
    crate::webhooks::Delivery {
        seq: 0,
        endpoint_id: endpoint.into(),
        event_seq: event.seq,
        event_id: event.id.as_str().into(),
        attempt: 1,
        status_code: Some(if ok { 200 } else { 500 }),
        error: None,
        latency_ms: 3,
        delivered: ok,
        at,
    }
}

/// What `owner` claims at `now`, leased until `lease_until`: `None` when each endpoint is
/// leased, done, or waiting.
async fn claimed(
    store: &dyn Store,
    owner: &str,
    now: chrono::DateTime<chrono::Utc>,
    lease_until: chrono::DateTime<chrono::Utc>,
) -> Option<crate::webhooks::Claim> {
    store
        .claim_endpoint(owner, now, lease_until)
        .await
        .expect("claim")
}

/// Whether `owner` finds no endpoint to claim at `now` (each leased, done, or waiting).
async fn claims_nothing(
    store: &dyn Store,
    owner: &str,
    now: chrono::DateTime<chrono::Utc>,
    lease_until: chrono::DateTime<chrono::Utc>,
) -> bool {
    claimed(store, owner, now, lease_until).await.is_none()
}

/// The first event after `seq`.
async fn event_after(store: &dyn Store, seq: i64) -> StoredEvent {
    let page = store.list_events(seq, None, 10).await.expect("events");
    page.into_iter().next().expect("an event after")
}

/// Once every unit has shipped, the date a batch shows is when the last one did, not the
/// plan's: a batch planned on time that ships two days after its promise is two days late
/// for that (`ship_date.changed`, `shipped`), and a part shipment changes nothing.
pub async fn a_shipped_batch_shows_when_it_shipped(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let (c, _, b, due) = locked_with_a_promise(&*store).await;
    let planned = due - Duration::days(3);
    let mut wo = part_order("f1", &b, 2);
    wo.runs[0].schedule = Some(RunSchedule {
        period: 1,
        starts_at: planned - Duration::days(7),
        ends_at: planned,
        hours: 0.2,
    });
    let mut plan = new_plan(PlanStatus::Optimal, vec![b.id.clone()], vec![wo]);
    plan.detail.reservations = vec![];
    store.store_plan(&plan, t0()).await.expect("plan");
    let wo = store.factory_work_orders("f1", 0, 10).await.expect("f1")[0].clone();
    let ship = |n: i64| Progress::Shipped {
        quantities: [("kettle-17-white".to_string(), n)].into_iter().collect(),
    };
    let report = async |progress: Progress, at| {
        store
            .report_progress(&report_req("f1", &wo.id, progress), at)
            .await
            .expect("report");
    };
    let production = async || {
        store
            .batch_production(std::slice::from_ref(&b.id))
            .await
            .expect("production")
            .remove(0)
    };
    for progress in [
        Progress::Accepted,
        Progress::InProduction,
        Progress::QualityCheck {
            passed: 2,
            failed: 0,
        },
    ] {
        report(progress, t0()).await;
    }
    let part_at = due - Duration::days(1);
    report(ship(1), part_at).await;
    let half = production().await;
    assert_eq!(
        (half.shipped_at, half.expected_ship_at()),
        (None, Some(planned))
    );
    let mark = all_events(&*store, 0, Some(&c.id)).await.len();

    let shipped = due + Duration::days(2);
    report(ship(1), shipped).await;
    let done = production().await;
    assert_eq!(done.shipped_at, Some(shipped));
    assert_eq!(done.expected_ship_at(), Some(shipped));
    assert_eq!(done.days_late(), 2);
    let why = format!(
        "shipped on {}, after the {} the plan gave",
        shipped.date_naive(),
        planned.date_naive()
    );
    assert_eq!(done.why_late(), Some(why.clone()));
    let new = all_events(&*store, 0, Some(&c.id)).await.split_off(mark);
    assert_eq!(
        kinds(&new),
        ["production.stage_changed", "ship_date.changed"]
    );
    match &new[1].data {
        EventData::ShipDateChanged {
            previous,
            expected,
            days_late,
            planned: from_a_plan,
            shipped: is_shipped,
            late_reason,
            ..
        } => {
            assert_eq!((*previous, *expected), (Some(planned), shipped));
            assert_eq!((*days_late, *from_a_plan, *is_shipped), (2, true, true));
            assert_eq!(late_reason.as_deref(), Some(why.as_str()));
        }
        other => panic!("{other:?}"),
    }
}

/// An endpoint starts at the last event; a claim leases it to one worker; a delivery moves
/// its cursor, a failure makes it wait and gives the lease up; a replay moves the cursor
/// back (or refuses a number ahead) and takes the lease away; a disabled endpoint is not
/// claimed. With two replicas claiming at once, each endpoint goes to one of them.
/// A worker that passes an endpoint on at the end of its turn (events still to deliver)
/// puts it behind the due endpoints that have waited longer: the next claim takes another
/// endpoint, and the passed one is due again at once. Before, claims went by id, so a
/// slow endpoint with a long backlog held a worker loop until it was through, and four
/// of them every loop of a replica.
pub async fn a_passed_webhook_endpoint_waits_behind_the_others(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let (now, lease) = (t0(), t0() + Duration::minutes(1));
    // An event for both to deliver.
    two_endpoints_and_orders(&*store, 1).await;
    let first = claimed(&*store, "w1", now, lease).await.expect("due");
    assert_eq!(first.endpoint.id, "whe_1", "by id while neither has waited");
    store.pass_endpoint(&first, now).await.expect("pass");
    let second = claimed(&*store, "w2", now, lease).await.expect("due");
    assert_eq!(second.endpoint.id, "whe_2", "the passed one waits behind");
    let third = claimed(&*store, "w3", now, lease).await.expect("due again");
    assert_eq!(third.endpoint.id, "whe_1", "and is due at once");
    // A pass from a worker that no longer holds the lease changes nothing.
    store.pass_endpoint(&first, now).await.expect("stale pass");
    assert!(
        claims_nothing(&*store, "w4", now, lease).await,
        "both leased"
    );
}

/// Two endpoints (`whe_1`, `whe_2`) registered at [`t0`], then a campaign with `orders`
/// single-unit pre-orders: an event each for both endpoints to deliver.
async fn two_endpoints_and_orders(store: &dyn Store, orders: usize) {
    for n in 1..=2 {
        store
            .create_endpoint(&endpoint(n), t0())
            .await
            .expect("endpoint");
    }
    let c = create(store, spec(10, None)).await;
    for n in 1..=orders {
        place(store, &c.id, &consumer(n), 1).await.expect("order");
    }
}

/// The worker records the events a receiver took in runs: the attempts of one run are
/// logged in order in one write, the cursor moves to the last, and a failure ending a run
/// makes the endpoint wait at that event. A run with a failure before its end, or with
/// attempts at two endpoints, or none, is refused and writes nothing.
pub async fn a_run_of_webhook_attempts_is_recorded_in_one_write(fx: Arc<dyn Fixture>) {
    use crate::webhooks::Outcome;
    let store = fx.store();
    let (now, lease) = (t0(), t0() + Duration::minutes(1));
    two_endpoints_and_orders(&*store, 4).await;
    let events = store.list_events(0, None, 10).await.expect("events");
    assert_eq!(events.len(), 4);
    let claim = claimed(&*store, "w1", now, lease).await.expect("due");
    assert_eq!(claim.endpoint.id, "whe_1");
    let delivered = Outcome::Delivered { lease_until: lease };

    // Refused whole: a failure before the end, two endpoints.
    let failed_first = [
        attempt("whe_1", &events[0], now, false),
        attempt("whe_1", &events[1], now, true),
    ];
    let two_endpoints = [
        attempt("whe_1", &events[0], now, true),
        attempt("whe_2", &events[1], now, true),
    ];
    for run in [&failed_first[..], &two_endpoints[..]] {
        assert!(matches!(
            store.record_attempts("w1", run, &delivered).await,
            Err(crate::StoreError::Domain(
                c2m_domain::DomainError::InvalidArgument { .. }
            ))
        ));
    }
    let log = store.list_deliveries("whe_1", 0, 10).await.expect("log");
    assert!(log.is_empty(), "nothing written: {log:?}");

    // Three delivered in one run; the fourth fails in a run of its own.
    let run: Vec<_> = events[..3]
        .iter()
        .map(|e| attempt("whe_1", e, now, true))
        .collect();
    assert!(store
        .record_attempts("w1", &run, &delivered)
        .await
        .expect("run"));
    let e = &store.list_endpoints().await.expect("list")[0];
    assert_eq!((e.cursor, e.failures), (events[2].seq, 0));
    let failed = Outcome::Failed {
        retry_at: now + Duration::hours(1),
        disable: None,
    };
    assert!(store
        .record_attempts("w1", &[attempt("whe_1", &events[3], now, false)], &failed)
        .await
        .expect("failure"));
    let e = &store.list_endpoints().await.expect("list")[0];
    assert_eq!(
        (e.cursor, e.failures),
        (events[2].seq, 1),
        "waits at the fourth"
    );
    let log = store.list_deliveries("whe_1", 0, 10).await.expect("log");
    let logged: Vec<_> = log.iter().map(|d| (d.event_seq, d.delivered)).collect();
    let expected: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.seq, i < 3))
        .collect();
    assert_eq!(logged, expected, "in order, each once");
    assert!(
        log.windows(2).all(|w| w[0].seq < w[1].seq),
        "numbered in order"
    );
    // An empty run is refused.
    assert!(matches!(
        store.record_attempts("w1", &[], &delivered).await,
        Err(crate::StoreError::Domain(
            c2m_domain::DomainError::InvalidArgument { .. }
        ))
    ));
}

pub async fn webhook_endpoints_are_claimed_once_and_resume_from_their_cursor(fx: Arc<dyn Fixture>) {
    use crate::webhooks::Outcome;
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    place(&*store, &c.id, &consumer(1), 1).await.expect("first");
    let now = t0() + Duration::hours(2);
    let lease = now + Duration::minutes(1);
    let e = store
        .create_endpoint(&endpoint(1), now)
        .await
        .expect("endpoint")
        .endpoint;
    assert_eq!(e.cursor, 1, "starts at the last event");
    // A retry of the registration (its key, the id and secret made anew) gets the first
    // one back and registers nothing; the key with another URL is a conflict.
    let retry = crate::webhooks::NewEndpoint {
        id: "whe_retry".into(),
        secret: "whsec_retry".into(),
        ..endpoint(1)
    };
    let again = store.create_endpoint(&retry, now).await.expect("retry");
    assert_eq!(
        (again.endpoint, again.secret.as_str()),
        (e.clone(), "whsec_1")
    );
    let other = crate::webhooks::NewEndpoint {
        url: "http://127.0.0.1:9/other".into(),
        ..retry
    };
    assert!(matches!(
        store.create_endpoint(&other, now).await,
        Err(crate::StoreError::Domain(
            c2m_domain::DomainError::IdempotencyConflict { .. }
        ))
    ));
    assert_eq!(store.list_endpoints().await.expect("list").len(), 1);
    assert!(claimed(&*store, "w1", now, lease).await.is_none());
    place(&*store, &c.id, &consumer(2), 1)
        .await
        .expect("second");
    let claim = claimed(&*store, "w1", now, lease).await.expect("due");
    assert_eq!(
        (claim.endpoint.id.as_str(), claim.secret.as_str()),
        ("whe_1", "whsec_1")
    );
    assert!(claims_nothing(&*store, "w2", now, lease).await, "leased");
    let second = event_after(&*store, 1).await;
    let delivered = Outcome::Delivered { lease_until: lease };
    assert!(store
        .record_attempts("w1", &[attempt("whe_1", &second, now, true)], &delivered)
        .await
        .expect("record"));
    store.release_endpoint(&claim).await.expect("release");
    assert!(claims_nothing(&*store, "w2", now, lease).await, "done");

    place(&*store, &c.id, &consumer(3), 1).await.expect("third");
    let third = event_after(&*store, 2).await;
    claimed(&*store, "w2", now, lease).await.expect("due");
    let failed = Outcome::Failed {
        retry_at: now + Duration::hours(1),
        disable: None,
    };
    assert!(store
        .record_attempts("w2", &[attempt("whe_1", &third, now, false)], &failed)
        .await
        .expect("record"));
    let e = &store.list_endpoints().await.expect("list")[0];
    assert_eq!((e.cursor, e.failures, e.failing_since), (2, 1, Some(now)));
    assert!(claims_nothing(&*store, "w1", now, lease).await, "waits");
    let later = now + Duration::hours(2);
    claimed(&*store, "w1", later, later + Duration::minutes(1))
        .await
        .expect("due again");

    // A replay takes the lease away: the old owner's next write changes nothing.
    let e = store
        .replay_endpoint("whe_1", 0, &key(), later)
        .await
        .expect("replay");
    assert_eq!(e.cursor, 0);
    assert!(!store
        .record_attempts("w1", &[attempt("whe_1", &third, later, true)], &delivered)
        .await
        .expect("record"));
    assert_eq!(store.list_endpoints().await.expect("list")[0].cursor, 0);
    match store.replay_endpoint("whe_1", 4, &key(), later).await {
        Err(crate::StoreError::Domain(c2m_domain::DomainError::EventCursorAhead {
            seq: 4,
            last: 3,
        })) => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.replay_endpoint("whe_nope", 0, &key(), later).await,
        Err(crate::StoreError::Domain(
            c2m_domain::DomainError::NotFound { .. }
        ))
    ));
    let disable = key();
    let e = store
        .set_endpoint_enabled("whe_1", false, &disable, later)
        .await
        .expect("disable");
    assert!(e.disabled_at.is_some());
    assert!(claimed(&*store, "w1", later, lease).await.is_none());
    let e = store
        .set_endpoint_enabled("whe_1", true, &key(), later)
        .await
        .expect("enable");
    assert_eq!(
        (e.disabled_at, e.failures, e.failing_since),
        (None, 0, None)
    );
    // Every change is idempotent by its key: a late retry of the disable answers as the
    // disable did and leaves the endpoint enabled (it switched it off again: QA 14); a
    // retried replay answers the first and moves the cursor nowhere.
    let retried = store
        .set_endpoint_enabled("whe_1", false, &disable, later)
        .await
        .expect("retried disable");
    assert!(retried.disabled_at.is_some(), "the first answer");
    assert_eq!(
        store.list_endpoints().await.expect("list")[0].disabled_at,
        None
    );
    let to_two = key();
    let e = store
        .replay_endpoint("whe_1", 2, &to_two, later)
        .await
        .expect("replay after 2");
    assert_eq!(e.cursor, 2);
    store
        .replay_endpoint("whe_1", 0, &key(), later)
        .await
        .expect("replay from the start");
    let again = store
        .replay_endpoint("whe_1", 2, &to_two, later)
        .await
        .expect("retried replay");
    assert_eq!(again.cursor, 2, "the first answer");
    assert_eq!(store.list_endpoints().await.expect("list")[0].cursor, 0);
    match store.replay_endpoint("whe_1", 1, &to_two, later).await {
        Err(crate::StoreError::Domain(c2m_domain::DomainError::IdempotencyConflict { .. })) => {}
        other => panic!("the key with another replay: {other:?}"),
    }
    assert!(claimed(&*store, "w1", later, later + Duration::minutes(1))
        .await
        .is_some());
    let log = store
        .list_deliveries("whe_1", 0, 100)
        .await
        .expect("deliveries");
    let codes: Vec<_> = log
        .iter()
        .map(|d| (d.event_seq, d.status_code, d.delivered))
        .collect();
    assert_eq!(
        codes,
        [
            (2, Some(200), true),
            (3, Some(500), false),
            (3, Some(200), true)
        ]
    );

    // Two replicas claiming at once: each endpoint to one of them.
    let replica = fx.replica().await;
    for n in 2..8 {
        store
            .create_endpoint(&endpoint(n), later)
            .await
            .expect("endpoint");
        store
            .replay_endpoint(&format!("whe_{n}"), 0, &key(), now)
            .await
            .expect("from the start");
    }
    let until = later + Duration::minutes(1);
    let claims = (0..16).map(|i| {
        let s = alternate(i, &store, &replica);
        async move {
            s.claim_endpoint(&format!("r{i}"), later, until)
                .await
                .expect("claim")
        }
    });
    let got: Vec<String> = join_all(claims)
        .await
        .into_iter()
        .flatten()
        .map(|c| c.endpoint.id)
        .collect();
    let distinct: HashSet<&String> = got.iter().collect();
    assert_eq!(got.len(), distinct.len(), "claimed twice: {got:?}");
    assert_eq!(got.len(), 6, "every due endpoint was claimed: {got:?}");
}

/// A deleted endpoint is never claimed again, not even for a retry that was due: its lease
/// is taken away (the worker's next write changes nothing), it leaves the list, every other
/// call about it is `NotFound`, deleting it again answers the same, and its delivery log
/// stays listable. An unknown id is `NotFound`.
pub async fn a_deleted_webhook_endpoint_is_never_claimed_again(fx: Arc<dyn Fixture>) {
    use crate::webhooks::Outcome;
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let now = t0() + Duration::hours(2);
    let lease = now + Duration::minutes(1);
    for n in [1, 2] {
        store
            .create_endpoint(&endpoint(n), now)
            .await
            .expect("endpoint");
    }
    place(&*store, &c.id, &consumer(1), 1).await.expect("first");
    let event = event_after(&*store, 0).await;
    // whe_1 fails and waits for a retry; whe_2 is leased, mid-delivery.
    let claim = claimed(&*store, "w1", now, lease).await.expect("due");
    let (failing, leased) = if claim.endpoint.id == "whe_1" {
        ("whe_1", "whe_2")
    } else {
        ("whe_2", "whe_1")
    };
    let retry_at = now + Duration::seconds(1);
    let failed = Outcome::Failed {
        retry_at,
        disable: None,
    };
    assert!(store
        .record_attempts("w1", &[attempt(failing, &event, now, false)], &failed)
        .await
        .expect("record"));
    let other = claimed(&*store, "w2", now, lease).await.expect("due");
    assert_eq!(other.endpoint.id, leased);

    let gone = store
        .delete_endpoint(failing, &key(), now)
        .await
        .expect("delete the failing one");
    assert_eq!(gone.deleted_at, Some(now));
    assert_eq!(gone.next_attempt_at, None, "its retry is dropped");
    let gone_leased = store
        .delete_endpoint(leased, &key(), now)
        .await
        .expect("delete the leased one");
    let later = now + Duration::hours(1);
    assert_eq!(
        store
            .delete_endpoint(failing, &key(), later)
            .await
            .expect("again"),
        gone,
        "deleting again answers the same"
    );
    // The worker that held the lease stops at its next write.
    let delivered = Outcome::Delivered { lease_until: lease };
    assert!(!store
        .record_attempts("w2", &[attempt(leased, &event, now, true)], &delivered)
        .await
        .expect("record"));
    assert!(!store
        .skip_events(&other, event.seq, lease)
        .await
        .expect("skip"));
    // Past the retry, and with more events, neither is ever claimed.
    place(&*store, &c.id, &consumer(2), 1)
        .await
        .expect("second");
    assert!(claims_nothing(&*store, "w3", later, later + Duration::minutes(1)).await);
    assert!(store.list_endpoints().await.expect("list").is_empty());
    for id in [failing, leased] {
        assert!(matches!(
            store.set_endpoint_enabled(id, true, &key(), later).await,
            Err(crate::StoreError::Domain(
                c2m_domain::DomainError::NotFound { .. }
            ))
        ));
        assert!(matches!(
            store.replay_endpoint(id, 0, &key(), later).await,
            Err(crate::StoreError::Domain(
                c2m_domain::DomainError::NotFound { .. }
            ))
        ));
    }
    assert!(claims_nothing(&*store, "w3", later, later + Duration::minutes(1)).await);
    assert_eq!(
        store
            .delete_endpoint(leased, &key(), later)
            .await
            .expect("again")
            .deleted_at,
        gone_leased.deleted_at
    );
    let log = store
        .list_deliveries(failing, 0, 100)
        .await
        .expect("the log stays");
    assert_eq!(log.len(), 1);
    assert_eq!(
        store
            .list_deliveries(leased, 0, 100)
            .await
            .expect("log")
            .len(),
        1,
        "the attempt under way when it was deleted is logged"
    );
    assert!(matches!(
        store.delete_endpoint("whe_nope", &key(), now).await,
        Err(crate::StoreError::Domain(
            c2m_domain::DomainError::NotFound { .. }
        ))
    ));
}
