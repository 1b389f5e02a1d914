//! Conformance cases for the events outbox (`crate::events`): each change appends its
//! events in its own transaction, exactly once, numbered in commit order without gaps;
//! a refused or replayed request appends none. Every expected event is derived here from
//! the requests made, never read back from the store first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Duration;
use futures::future::join_all;

use c2m_domain::events::{Event, EventData};
use c2m_domain::{CampaignId, Currency, Money, PreorderId};

use super::{
    alternate, cancel, consumer, create, key, place, place_req, precondition, spec, t0, Fixture,
};
use crate::{PayBalance, Store};

fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::parse("CNY").expect("CNY"))
}

/// Every event after `after` (all pages), of one campaign or all.
pub async fn all_events(store: &dyn Store, after: i64, campaign: Option<&CampaignId>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .list_events(cursor, campaign, 7)
            .await
            .expect("list events");
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        out.extend(page);
    }
    out
}

/// The events' kinds, in order.
fn kinds(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.data.kind()).collect()
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
    assert!(events.iter().all(|e| e.batch_id.as_ref() == Some(&pa.batch_id)));
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
    let po = place(&*store, &other.id, &consumer(3), 4).await.expect("other");
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
                seen.extend(page);
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
        let req = place_req(&campaigns[i % campaigns.len()], &consumer(i), 1 + (i % 2) as i64);
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
