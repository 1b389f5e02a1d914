//! Conformance cases for the merchant's levers and the reads built on a campaign's
//! history. Every amount a case expects is computed here from the campaign's terms.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use c2m_domain::{
    BatchStatus, Campaign, CampaignId, Currency, HoldState, Money, Preorder, PreorderStatus,
    PriceTier, Refusal, TxnKind,
};

use super::ledger::check_ledger;
use super::{
    consumer, create, invalid_field, key, not_found, place, precondition, spec, t0, Fixture,
};
use crate::{
    CancelCampaign, CloseCampaign, ExtendDeadline, Lever, LeverOutcome, LowerThreshold,
    PageRequest, PayBalance, Store, StoreError,
};

fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::parse("CNY").expect("CNY"))
}

fn placed_at() -> DateTime<Utc> {
    t0() + Duration::hours(1)
}

fn lever_at() -> DateTime<Utc> {
    t0() + Duration::hours(2)
}

#[track_caller]
fn refused<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
) -> (&'static str, Vec<(&'static str, String)>) {
    let refusal: Refusal = precondition(r);
    (refusal.reason(), refusal.metadata())
}

fn extend(c: &CampaignId, deadline: DateTime<Utc>) -> Lever {
    Lever::Extend(ExtendDeadline {
        idempotency_key: key(),
        campaign_id: c.clone(),
        deadline,
    })
}

fn lower(c: &CampaignId, batch_threshold: i64) -> Lever {
    Lever::Lower(LowerThreshold {
        idempotency_key: key(),
        campaign_id: c.clone(),
        batch_threshold,
    })
}

fn close(c: &CampaignId) -> Lever {
    Lever::Close(CloseCampaign {
        idempotency_key: key(),
        campaign_id: c.clone(),
    })
}

fn cancel_all(c: &CampaignId) -> Lever {
    Lever::Cancel(CancelCampaign {
        idempotency_key: key(),
        campaign_id: c.clone(),
    })
}

/// A plan with one work order, at f1, making 2 units of each of `batches`, taking no
/// stock.
fn f1_makes(batches: &[&c2m_domain::Batch]) -> crate::NewPlan {
    let mut order = super::part_order("f1", batches[0], 2);
    for b in &batches[1..] {
        order.runs.extend(super::part_order("f1", b, 2).runs);
    }
    let ids = batches.iter().map(|b| b.id.clone()).collect();
    let mut plan = super::new_plan(crate::PlanStatus::Optimal, ids, vec![order]);
    plan.detail.reservations.clear();
    plan
}

/// Sends the lever `req` again an hour later, under its key: the retry answers as the first
/// send did (`first`).
async fn retry_answers_as(store: &dyn Store, req: &Lever, first: &LeverOutcome) {
    let again = store
        .pull_lever(req, lever_at() + Duration::hours(1))
        .await
        .expect("retry");
    assert_eq!(again, *first, "a retry answers as the first time");
}

/// The ledger's kinds for one campaign, counted.
async fn kinds(store: &dyn Store, c: &CampaignId, kind: TxnKind) -> usize {
    store
        .list_ledger(c, PageRequest::first(500))
        .await
        .expect("ledger")
        .items
        .iter()
        .filter(|e| e.txn.kind() == kind)
        .count()
}

/// A deadline moves only later and only while the campaign sells; a refusal names the
/// field and writes nothing; a retry answers as the first time; an order after the old
/// deadline is taken.
pub async fn extend_deadline_only_later_while_selling(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let old = c.terms.deadline;
    let new = old + Duration::days(3);

    let (reason, meta) = refused(
        store
            .pull_lever(&extend(&c.id, t0() - Duration::days(1)), lever_at())
            .await,
    );
    assert_eq!(reason, "DEADLINE_NOT_LATER");
    assert!(meta.contains(&("field", "deadline".into())), "{meta:?}");
    let (reason, _) = refused(store.pull_lever(&extend(&c.id, old), lever_at()).await);
    assert_eq!(reason, "DEADLINE_NOT_LATER");
    let unchanged = store.get_campaign(&c.id).await.expect("get");
    assert_eq!(
        unchanged.campaign.terms.deadline, old,
        "a refusal wrote nothing"
    );

    let req = extend(&c.id, new);
    let first = store.pull_lever(&req, lever_at()).await.expect("extend");
    assert_eq!(first.campaign.terms.deadline, new);
    retry_answers_as(&*store, &req, &first).await;
    let mut other = req.clone();
    if let Lever::Extend(r) = &mut other {
        r.deadline = new + Duration::days(1);
    }
    super::conflict(store.pull_lever(&other, lever_at()).await);
    assert_eq!(
        store
            .get_campaign(&c.id)
            .await
            .expect("get")
            .campaign
            .terms
            .deadline,
        new
    );
    // The forecast reads the new deadline and keeps the first, however often it moves.
    let deadlines = || async {
        let h = store
            .forecast_input(&c.id, lever_at())
            .await
            .expect("input")
            .history;
        (h.deadline, h.first_deadline)
    };
    assert_eq!(deadlines().await, (new, Some(old)));
    let later = new + Duration::days(2);
    store
        .pull_lever(&extend(&c.id, later), lever_at())
        .await
        .expect("extend again");
    assert_eq!(deadlines().await, (later, Some(old)));
    let new = later;
    // An order after the old deadline and before the new one is taken.
    let late = crate::PlacePreorder {
        idempotency_key: key(),
        campaign_id: c.id.clone(),
        consumer_id: consumer(1),
        quantity: 2,
        source: Default::default(),
    };
    store
        .place_preorder(&late, old + Duration::hours(1))
        .await
        .expect("placed after the old deadline");
    // The sweeper leaves it alone until the new deadline.
    let swept = store
        .fail_open_batch_at_deadline(&c.id, old + Duration::hours(2))
        .await
        .expect("sweep");
    assert!(swept.failed_batch.is_none());
    // Once the deadline passed, no lever extends it.
    let (reason, meta) = refused(
        store
            .pull_lever(&extend(&c.id, new + Duration::days(5)), new)
            .await,
    );
    assert_eq!(reason, "CAMPAIGN_ENDED");
    assert!(meta.contains(&("field", "deadline".into())), "{meta:?}");
    not_found(
        store
            .pull_lever(&extend(&CampaignId::generate(), new), lever_at())
            .await,
        "campaign",
    );
}

/// A lever sent just before the deadline can wait for the campaign's lock while the sweeper
/// fails the open batch at the deadline. Selling ended then, whatever moment the lever was
/// sent at (as for an order that waited so: `place_preorders`), so an extension, a lower
/// threshold or a close that runs after the failure is refused `CAMPAIGN_ENDED`, as it
/// would be a moment later, and writes nothing. Before, the extension was taken: the
/// campaign showed a later deadline and sold nothing (every order `CAMPAIGN_CLOSED` "passed
/// its deadline" naming a deadline days ahead).
pub async fn levers_that_waited_behind_the_deadline_find_the_campaign_ended(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let dl = c.terms.deadline;
    place(&*store, &c.id, &consumer(1), 2).await.expect("place");
    let swept = store
        .fail_open_batch_at_deadline(&c.id, dl)
        .await
        .expect("sweep");
    assert!(
        swept.failed_batch.is_some(),
        "the deadline failed the batch"
    );
    // Sent a millisecond before the deadline, run after the sweeper's failure.
    let sent = dl - Duration::milliseconds(1);
    for lever in [
        extend(&c.id, dl + Duration::days(3)),
        lower(&c.id, 1),
        close(&c.id),
    ] {
        let (reason, meta) = refused(store.pull_lever(&lever, sent).await);
        assert_eq!(reason, "CAMPAIGN_ENDED", "{lever:?}");
        assert!(
            meta.contains(&("how", "passed its deadline".into())),
            "{meta:?}"
        );
    }
    let after = store.get_campaign(&c.id).await.expect("get").campaign;
    assert_eq!(after.terms.deadline, dl, "the deadline did not move");
    assert_eq!(after.terms.batch_threshold, 10);
    assert_eq!(after.closed_at, None);
    // A cancel still refunds what there is to refund (nothing here).
    let cancelled = store
        .pull_lever(&cancel_all(&c.id), sent)
        .await
        .expect("cancel after the deadline");
    assert_eq!(cancelled.preorders_refunded, 0);
}

/// A campaign extended by a c2m from before first deadlines were kept (migration 0012) has
/// none, and extending it again must not take its extended deadline for the first one: the
/// forecast keeps its old reading (docs/forecast.md). The store cannot make that history
/// through its trait, so the case extends once and then clears the column, as such a c2m
/// left it.
pub async fn an_extension_of_a_campaign_extended_before_first_deadlines_keeps_the_old_reading(
    fx: Arc<dyn Fixture>,
) {
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let once = c.terms.deadline + Duration::days(10);
    store
        .pull_lever(&extend(&c.id, once), lever_at())
        .await
        .expect("extend");
    fx.execute_past_the_store(&format!(
        "UPDATE campaigns SET first_deadline = NULL WHERE id = '{}'",
        c.id.as_str()
    ))
    .await;
    // The deadline and the first deadline the forecast reads after extending to `to`.
    let extended = |id: CampaignId, to| {
        let store = store.clone();
        async move {
            store
                .pull_lever(&extend(&id, to), lever_at())
                .await
                .expect("extend");
            let h = store.forecast_input(&id, lever_at()).await.expect("input");
            (h.history.deadline, h.history.first_deadline)
        }
    };
    let twice = once + Duration::days(10);
    assert_eq!(extended(c.id.clone(), twice).await, (twice, None));

    // A campaign never extended still keeps its first deadline from its first extension.
    let d = create(&*store, spec(10, None)).await;
    assert_eq!(
        extended(d.id.clone(), once).await,
        (once, Some(d.terms.deadline))
    );
}

/// Lowering the threshold below the open batch's units locks it at once, in the same
/// transaction, at the ladder tier its units reached, capturing every deposit; raising it
/// is refused and writes nothing.
pub async fn lower_threshold_locks_the_open_batch_at_its_tier(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(10, Some(12));
    s.price_ladder = vec![
        PriceTier {
            min_units: 5,
            unit_price: 36_900,
        },
        PriceTier {
            min_units: 10,
            unit_price: 34_900,
        },
    ];
    let c = create(&*store, s).await;
    let a = place(&*store, &c.id, &consumer(1), 4).await.expect("a");
    let b = place(&*store, &c.id, &consumer(2), 3).await.expect("b");

    let (reason, meta) = refused(store.pull_lever(&lower(&c.id, 11), lever_at()).await);
    assert_eq!(reason, "THRESHOLD_NOT_LOWER");
    assert!(
        meta.contains(&("field", "batch_threshold".into())),
        "{meta:?}"
    );
    assert_eq!(
        invalid_field(store.pull_lever(&lower(&c.id, 0), lever_at()).await),
        "batch_threshold"
    );
    // Above the units pooled: lowered, nothing locks.
    let eight = store
        .pull_lever(&lower(&c.id, 8), lever_at())
        .await
        .expect("lower to 8");
    assert!(eight.locked_batch.is_none());
    assert_eq!(eight.campaign.terms.batch_threshold, 8);
    let open = super::batches(&*store, &c.id).await;
    assert_eq!((open[0].status, open[0].threshold), (BatchStatus::Open, 8));
    // The forecast reads the open batch's new threshold and keeps the first.
    let first = |store: Arc<dyn Store>, id: CampaignId| async move {
        let input = store.forecast_input(&id, lever_at()).await.expect("input");
        (
            input.open_batch.map(|b| b.threshold),
            input.history.first_threshold,
        )
    };
    assert_eq!(
        first(store.clone(), c.id.clone()).await,
        (Some(8), Some(10))
    );
    // And what the total cap counts, as the campaign's progress does.
    let input = store
        .forecast_input(&c.id, lever_at())
        .await
        .expect("input");
    let progress = store.get_campaign(&c.id).await.expect("get");
    assert_eq!(input.progress, progress);
    assert_eq!(progress.units_committed, 7);

    // At or below the units pooled: it locks now, at the tier of 7 units (36 900).
    let req = lower(&c.id, 6);
    let six = store
        .pull_lever(&req, lever_at())
        .await
        .expect("lower to 6");
    let locked = six.locked_batch.clone().expect("the open batch locked");
    assert_eq!(
        (locked.status, locked.units, locked.threshold),
        (BatchStatus::Locked, 7, 6)
    );
    assert_eq!(locked.final_unit_price, Some(cny(36_900)));
    for (p, q) in [(&a, 4), (&b, 3)] {
        let p = store.get_preorder(&p.id).await.expect("get");
        assert_eq!(p.status, PreorderStatus::Locked);
        assert_eq!(p.money.hold, HoldState::Captured);
        assert_eq!(p.money.balance_due, Some(cny(q * 36_900 - q * 5_000)));
    }
    retry_answers_as(&*store, &req, &six).await;
    assert_eq!(
        first(store.clone(), c.id.clone()).await,
        (None, Some(10)),
        "lowered again (and locked: no batch is open), the first stays"
    );
    // The cause, then its effects: the threshold lowered to 6, then the batch locked at 6
    // with its balances due, numbered one after another (one commit; a receiver never
    // reads a lock below the threshold it knows).
    let events = super::events::all_events(&*store, 0, Some(&c.id)).await;
    let tail: Vec<_> = events[events.len() - 4..]
        .iter()
        .map(|e| e.data.kind())
        .collect();
    assert_eq!(
        tail,
        [
            "campaign.changed",
            "batch.locked",
            "balance.due",
            "balance.due"
        ]
    );
    let seqs: Vec<_> = events[events.len() - 4..].iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let m = check_ledger(&*store, &c.id).await;
    assert_eq!((m.held, m.captured), (0, 7 * 5_000));
    assert_eq!(kinds(&*store, &c.id, TxnKind::Capture).await, 2);
    // The next order opens a batch with the new threshold and locks it at 6.
    let next = place(&*store, &c.id, &consumer(3), 6).await.expect("next");
    assert_eq!(next.status, PreorderStatus::Locked);
    assert_eq!(next.batch_seq, 2);
}

/// A campaign lowered by a c2m from before the first threshold was kept (it has none, and
/// a `threshold_lowered` event) keeps none when lowered again: its threshold is not its
/// first, and the forecast keeps its old reading. A campaign never lowered keeps its first
/// from its first lowering. (As for extensions; the case lowers once and clears the column,
/// as such a c2m left it.)
pub async fn a_lowering_of_a_campaign_lowered_before_first_thresholds_keeps_the_old_reading(
    fx: Arc<dyn Fixture>,
) {
    let store = fx.store();
    let lowered = |id: CampaignId, to: i64| {
        let store = store.clone();
        async move {
            store
                .pull_lever(&lower(&id, to), lever_at())
                .await
                .expect("lower");
            store
                .forecast_input(&id, lever_at())
                .await
                .expect("input")
                .history
                .first_threshold
        }
    };
    let c = create(&*store, spec(10, None)).await;
    assert_eq!(lowered(c.id.clone(), 9).await, Some(10));
    fx.execute_past_the_store(&format!(
        "UPDATE campaigns SET first_threshold = NULL WHERE id = '{}'",
        c.id.as_str()
    ))
    .await;
    assert_eq!(lowered(c.id.clone(), 8).await, None);
    let d = create(&*store, spec(10, None)).await;
    assert_eq!(lowered(d.id.clone(), 7).await, Some(10));
}

/// Closing stops selling: the open batch (short of its threshold) fails and every deposit
/// in it is released, once; closing again is refused naming the campaign; a retry with the
/// first key answers as the first time.
pub async fn close_campaign_fails_the_open_batch_and_releases_every_deposit(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(10, None)).await;
    let a = place(&*store, &c.id, &consumer(1), 3).await.expect("a");
    let b = place(&*store, &c.id, &consumer(2), 2).await.expect("b");

    let req = close(&c.id);
    let first = store.pull_lever(&req, lever_at()).await.expect("close");
    assert_eq!(first.campaign.closed_at, Some(lever_at()));
    let failed = first.failed_batch.clone().expect("the open batch failed");
    assert_eq!(failed.status, BatchStatus::Failed);
    assert_eq!(first.deposits_released, 2);
    for p in [&a, &b] {
        let p = store.get_preorder(&p.id).await.expect("get");
        assert_eq!(p.money.hold, HoldState::Released);
        assert_eq!(p.status, PreorderStatus::RefundDue);
    }
    retry_answers_as(&*store, &req, &first).await;
    let (reason, meta) = refused(store.pull_lever(&close(&c.id), lever_at()).await);
    assert_eq!(reason, "CAMPAIGN_ENDED");
    assert!(meta.contains(&("field", "campaign_id".into())), "{meta:?}");
    assert!(meta.contains(&("how", "was closed".into())), "{meta:?}");
    // It sells no more, and the order is told the merchant closed it, and when (its
    // deadline is still days away); nothing is left for the sweeper.
    let refused_order = precondition(place(&*store, &c.id, &consumer(3), 1).await);
    assert_eq!(refused_order.reason(), "CAMPAIGN_CLOSED");
    let meta = refused_order.metadata();
    assert!(meta.contains(&("how", "was closed".into())), "{meta:?}");
    assert!(
        meta.contains(&("endedAt", lever_at().to_rfc3339())),
        "{meta:?}"
    );
    assert!(
        refused_order
            .to_string()
            .starts_with("campaign was closed at"),
        "{refused_order}"
    );
    let swept = store
        .fail_open_batch_at_deadline(&c.id, c.terms.deadline)
        .await
        .expect("sweep");
    assert!(swept.failed_batch.is_none());
    let m = check_ledger(&*store, &c.id).await;
    assert_eq!((m.deposited, m.released, m.held), (5 * 5_000, 5 * 5_000, 0));
    assert_eq!(kinds(&*store, &c.id, TxnKind::Release).await, 2);
    // A closed campaign may still be cancelled (nothing is left to refund here).
    let cancelled = store
        .pull_lever(&cancel_all(&c.id), lever_at())
        .await
        .expect("cancel a closed campaign");
    assert_eq!(cancelled.preorders_refunded, 0);
}

/// A campaign at threshold 5 locked by A (3 units) and B (2), with the balance window
/// given, and A's balance paid five minutes after placing; B's not.
async fn locked_with_a_paid(store: &dyn Store, window_secs: i64) -> (Campaign, Preorder, Preorder) {
    let mut s = spec(5, None);
    s.balance_window_secs = Some(window_secs);
    let c = create(store, s).await;
    let a = place(store, &c.id, &consumer(1), 3).await.expect("a");
    let b = place(store, &c.id, &consumer(2), 2)
        .await
        .expect("b (locks the batch)");
    assert_eq!(b.status, PreorderStatus::Locked);
    store
        .pay_balance(
            &PayBalance {
                idempotency_key: key(),
                preorder_id: a.id.clone(),
                consumer_id: None,
                amount: cny(3 * 39_900 - 3 * 5_000),
            },
            placed_at() + Duration::minutes(5),
        )
        .await
        .expect("pay a");
    (c, a, b)
}

/// Cancelling refunds every pre-order not in production, each exactly once, through the
/// ledger: a locked batch's captured deposits and paid balances (from escrow), the open
/// batch's held deposits (released); a forfeited deposit stays forfeited. The refunded
/// batch leaves the balance-window sweep; a second cancel is refused.
pub async fn cancel_campaign_refunds_deposits_and_balances_once(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let price = 39_900;
    let dep = 5_000;
    // A pays its balance; B does not (yet).
    let (c, a, b) = locked_with_a_paid(&*store, 24 * 3600).await;
    let o = place(&*store, &c.id, &consumer(3), 1)
        .await
        .expect("o (open batch 2)");

    let req = cancel_all(&c.id);
    let out = store.pull_lever(&req, lever_at()).await.expect("cancel");
    assert_eq!(out.campaign.cancelled_at, Some(lever_at()));
    assert_eq!(out.deposits_released, 1, "the open batch's deposit");
    assert_eq!(out.preorders_refunded, 2);
    assert_eq!(out.refunded_minor, 3 * price + 2 * dep);
    assert_eq!(out.batches_in_production, 0);
    retry_answers_as(&*store, &req, &out).await;
    // The events: the cancel with the locked batch's refunds (A's deposit and paid
    // balance, B's deposit), once, then the open batch's failure it caused, with o's
    // deposit.
    let events = super::events::all_events(&*store, 0, Some(&c.id)).await;
    let tail: Vec<_> = events[events.len() - 2..]
        .iter()
        .map(|e| {
            let mut refs: Vec<_> = e
                .data
                .preorders()
                .iter()
                .map(|p| (p.preorder_id.clone(), p.consumer_id.clone(), p.amount))
                .collect();
            refs.sort_by(|x, y| x.0.cmp(&y.0));
            (e.data.kind(), refs)
        })
        .collect();
    let mut refunds = vec![
        (a.id.clone(), consumer(1), Some(cny(3 * price))),
        (b.id.clone(), consumer(2), Some(cny(2 * dep))),
    ];
    refunds.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(
        tail,
        [
            ("campaign.changed", refunds),
            (
                "batch.failed",
                vec![(o.id.clone(), consumer(3), Some(cny(dep)))]
            ),
        ]
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.data.kind() == "campaign.changed")
            .count(),
        1
    );
    let (reason, meta) = refused(store.pull_lever(&cancel_all(&c.id), lever_at()).await);
    assert_eq!(reason, "CAMPAIGN_ENDED");
    assert!(meta.contains(&("how", "was cancelled".into())), "{meta:?}");
    // Levers on a cancelled campaign are refused.
    let (reason, _) = refused(store.pull_lever(&close(&c.id), lever_at()).await);
    assert_eq!(reason, "CAMPAIGN_ENDED");
    // An order is told the campaign was cancelled, not that its deadline passed.
    let late = precondition(place(&*store, &c.id, &consumer(9), 1).await);
    assert_eq!(late.reason(), "CAMPAIGN_CLOSED");
    assert!(
        late.metadata().contains(&("how", "was cancelled".into())),
        "{late}"
    );

    for p in [&a, &b] {
        let p = store.get_preorder(&p.id).await.expect("get");
        assert_eq!(p.status, PreorderStatus::Cancelled);
        assert_eq!(p.money.hold, HoldState::Captured);
        assert_eq!(p.money_state(), c2m_domain::MoneyState::Refunded);
        assert_eq!(p.money.refunded_at, Some(lever_at()));
    }
    let o = store.get_preorder(&o.id).await.expect("o");
    assert_eq!(o.money.hold, HoldState::Released);
    // B's balance is no longer owed: paying it is refused, and no window closes.
    let pay_b = PayBalance {
        idempotency_key: key(),
        preorder_id: b.id.clone(),
        consumer_id: None,
        amount: cny(2 * price - 2 * dep),
    };
    precondition(store.pay_balance(&pay_b, lever_at()).await);
    let due = store
        .batches_past_balance_window(lever_at() + Duration::days(30), 10)
        .await
        .expect("due");
    assert!(
        due.is_empty(),
        "a refunded batch has no balance window: {due:?}"
    );
    let ready = store.batches_ready_for_planning(10).await.expect("ready");
    assert!(ready.iter().all(|r| r.campaign_id != c.id));
    let shown: Vec<_> = store
        .list_batches(&c.id)
        .await
        .expect("batches")
        .iter()
        .map(|b| (b.status, b.refunded_at))
        .collect();
    assert_eq!(
        shown,
        [
            (BatchStatus::Locked, Some(lever_at())),
            (BatchStatus::Failed, None)
        ],
        "the locked batch shows its refund; the failed one released its deposits"
    );

    let m = check_ledger(&*store, &c.id).await;
    assert_eq!(m.refunded, 3 * price + 2 * dep);
    assert_eq!(m.refunded, m.captured + m.balances_paid);
    assert_eq!(m.refunded_by_merchant, 0);
    assert_eq!(
        (m.held, m.escrow, m.merchant, m.balances_outstanding),
        (0, 0, 0, 0)
    );
    assert_eq!(m.released, dep);
    assert_eq!(kinds(&*store, &c.id, TxnKind::Refund).await, 2);
}

/// A cancel after a balance window has passed, before the sweeper closed it, finds the
/// unpaid deposits forfeited, as the sweeper would have left them: the window is judged by
/// the clock (a late payment is refused at once), not by when the sweeper comes by. The
/// payer gets everything back from the merchant (the batch settled when its window
/// closed); the one who did not pay gets nothing back, and the forfeit's event comes
/// before the cancel's.
pub async fn a_cancel_after_a_balance_window_leaves_its_forfeits_forfeited(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let price = 39_900;
    let dep = 5_000;
    let (c, a, b) = locked_with_a_paid(&*store, 600).await;
    // lever_at() is an hour after the lock: the ten-minute window has passed, and no
    // sweeper has closed it.
    let late = PayBalance {
        idempotency_key: key(),
        preorder_id: b.id.clone(),
        consumer_id: None,
        amount: cny(2 * price - 2 * dep),
    };
    let refused_late = precondition(store.pay_balance(&late, lever_at()).await);
    assert_eq!(refused_late.reason(), "BALANCE_WINDOW_CLOSED");

    let req = cancel_all(&c.id);
    let out = store.pull_lever(&req, lever_at()).await.expect("cancel");
    assert_eq!(out.preorders_refunded, 1, "only the payer: {out:?}");
    assert_eq!(out.refunded_minor, 3 * price);
    retry_answers_as(&*store, &req, &out).await;

    let b_now = store.get_preorder(&b.id).await.expect("b");
    assert_eq!(b_now.money.forfeited_at, Some(lever_at()));
    assert_eq!(b_now.money.refunded_at, None);
    let a_now = store.get_preorder(&a.id).await.expect("a");
    assert_eq!(a_now.money.refunded_at, Some(lever_at()));

    let m = check_ledger(&*store, &c.id).await;
    assert_eq!(m.forfeited, 2 * dep);
    assert_eq!(m.refunded, 3 * price);
    assert_eq!(
        m.refunded_by_merchant,
        3 * price,
        "settled when the window closed"
    );
    assert_eq!((m.escrow, m.merchant), (0, 2 * dep), "{m:?}");
    assert_eq!(m.balances_outstanding, 0);

    let events = super::events::all_events(&*store, 0, Some(&c.id)).await;
    let kinds: Vec<_> = events.iter().map(|e| e.data.kind()).collect();
    let forfeit = kinds.iter().position(|k| *k == "deposit.forfeited");
    let changed = kinds.iter().position(|k| *k == "campaign.changed");
    assert!(
        matches!((forfeit, changed), (Some(f), Some(c)) if f < c),
        "the forfeit, then the cancel: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "deposit.forfeited").count(),
        1
    );
    // The sweeper, coming by later, finds nothing left to close.
    let due = store
        .batches_past_balance_window(lever_at() + Duration::days(1), 10)
        .await
        .expect("due");
    assert!(due.is_empty(), "{due:?}");
}

/// A batch whose deposit was the full price settled to the merchant at lock: a cancel
/// takes the refund back from the merchant, to the minor unit.
pub async fn cancel_campaign_takes_a_settled_batch_back_from_the_merchant(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(3, None);
    s.deposit = s.unit_price;
    let c = create(&*store, s).await;
    place(&*store, &c.id, &consumer(1), 1).await.expect("a");
    let b = place(&*store, &c.id, &consumer(2), 2)
        .await
        .expect("b (locks)");
    assert_eq!(b.status, PreorderStatus::Locked);
    let before = check_ledger(&*store, &c.id).await;
    assert_eq!(before.merchant, 3 * 39_900, "settled at lock");
    let out: LeverOutcome = store
        .pull_lever(&cancel_all(&c.id), lever_at())
        .await
        .expect("cancel");
    assert_eq!(out.preorders_refunded, 2);
    assert_eq!(out.refunded_minor, 3 * 39_900);
    let m = check_ledger(&*store, &c.id).await;
    assert_eq!(
        (m.refunded, m.refunded_by_merchant),
        (3 * 39_900, 3 * 39_900)
    );
    assert_eq!((m.merchant, m.escrow, m.held), (0, 0, 0));
    let queue = store.batches_ready_for_planning(10).await.expect("ready");
    assert!(
        queue.iter().all(|q| q.campaign_id != c.id),
        "left the queue"
    );
}

/// A cancel leaves a locked batch that a work order makes (`batches_in_production`). When
/// that factory rejects the work, nothing makes the batch any more: the rejection refunds
/// it (`batch.refunded`) instead of sending it back to the planning queue for a campaign
/// the merchant cancelled. A batch another factory still makes in part stays in
/// production, and its rejected units wait for a plan as usual.
pub async fn a_rejection_refunds_a_cancelled_campaigns_batch_that_nothing_else_makes(
    fx: Arc<dyn Fixture>,
) {
    use super::{batch_production, locked_batch, new_plan, part_order, report_req};
    use crate::{PlanStatus, ProductionStage};
    use c2m_domain::production::Progress;

    let store = fx.store();
    super::use_sample_catalogue(&*store).await;
    // Two campaigns, one locked batch of 2 units each, paid in full at lock (settled).
    let b = locked_batch(&*store, "kettle-17-white").await;
    let c = locked_batch(&*store, "kettle-17-white").await;
    let price = 39_900;
    // f1 makes all of b and one unit of c; f2 makes c's other unit.
    let mut f1 = part_order("f1", &b, 2);
    f1.runs.extend(part_order("f1", &c, 1).runs);
    let plan = new_plan(
        PlanStatus::Optimal,
        vec![b.id.clone(), c.id.clone()],
        vec![f1, part_order("f2", &c, 1)],
    );
    store.store_plan(&plan, t0()).await.expect("plan");
    for batch in [&b, &c] {
        let out = store
            .pull_lever(&cancel_all(&batch.campaign_id), lever_at())
            .await
            .expect("cancel");
        assert_eq!(
            (out.batches_in_production, out.preorders_refunded),
            (1, 0),
            "the cancel leaves a batch a work order makes"
        );
    }
    let marks: Vec<i64> = {
        let mut m = Vec::new();
        for batch in [&b, &c] {
            let events = super::events::all_events(&*store, 0, Some(&batch.campaign_id)).await;
            m.push(events.last().map_or(0, |e| e.seq));
        }
        m
    };

    let w1 = store.factory_work_orders("f1", 0, 10).await.expect("f1")[0]
        .id
        .clone();
    let reject = report_req(
        "f1",
        &w1,
        Progress::Rejected {
            reason: "no capacity".into(),
        },
    );
    let status = store
        .report_progress(&reject, lever_at() + Duration::hours(1))
        .await
        .expect("reject");
    assert_eq!(
        status.requeued_batches,
        vec![c.id.clone()],
        "b is refunded, not queued again; c's unit waits for a plan"
    );
    assert_eq!(
        store
            .report_progress(&reject, lever_at() + Duration::hours(2))
            .await
            .expect("replay"),
        status
    );
    let queue = store.planning_queue().await.expect("queue");
    assert_eq!(
        queue
            .iter()
            .map(|q| (q.batch.id.clone(), q.units_to_plan))
            .collect::<Vec<_>>(),
        vec![(c.id.clone(), 1)]
    );

    // b's consumer has the full price back, from the merchant (the batch had settled).
    let preorders = store
        .list_preorders(
            &crate::PreorderFilter::Campaign(b.campaign_id.clone()),
            PageRequest::first(100),
        )
        .await
        .expect("preorders");
    let [bp] = &preorders.items[..] else {
        panic!("one pre-order: {:?}", preorders.items);
    };
    assert_eq!(bp.batch_id, b.id);
    assert_eq!(bp.status, PreorderStatus::Cancelled);
    assert_eq!(bp.money.refunded_at, Some(lever_at() + Duration::hours(1)));
    let m = check_ledger(&*store, &b.campaign_id).await;
    assert_eq!(
        (m.refunded, m.refunded_by_merchant, m.merchant),
        (2 * price, 2 * price, 0)
    );
    assert_eq!(kinds(&*store, &b.campaign_id, TxnKind::Refund).await, 1);
    let shown = store.list_batches(&b.campaign_id).await.expect("batches");
    assert_eq!(
        (shown[0].status, shown[0].refunded_at),
        (BatchStatus::Locked, Some(lever_at() + Duration::hours(1)))
    );
    // c is still in production at f2: nothing refunded.
    let m = check_ledger(&*store, &c.campaign_id).await;
    assert_eq!((m.refunded, m.merchant), (0, 2 * price));
    let production = batch_production(&*store, &[&c]).await;
    assert_eq!(production[0].stage, ProductionStage::AwaitingPlan);

    // What subscribers heard: b's refund, once, and no talk of b awaiting a plan; c's
    // unit back in the queue.
    let after = |i: usize, batch: &c2m_domain::Batch| {
        let store = store.clone();
        let campaign = batch.campaign_id.clone();
        let mark = marks[i];
        async move {
            super::events::all_events(&*store, mark, Some(&campaign))
                .await
                .into_iter()
                .map(|e| {
                    let refs: Vec<_> = e
                        .data
                        .preorders()
                        .iter()
                        .map(|p| (p.consumer_id.clone(), p.amount))
                        .collect();
                    (e.data.kind(), refs)
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        after(0, &b).await,
        vec![("batch.refunded", vec![(consumer(1), Some(cny(2 * price)))])]
    );
    let c_kinds: Vec<_> = after(1, &c).await.into_iter().map(|(k, _)| k).collect();
    assert!(
        c_kinds.contains(&"production.stage_changed") && !c_kinds.contains(&"batch.refunded"),
        "{c_kinds:?}"
    );
}

/// A cancel and a plan for the same batch, sent together to two replicas, take turns: the
/// batch ends either planned (the cancel counted it in production and refunded nothing)
/// or refunded (the plan refused, `BATCH_NOT_WAITING`), never both: refunded consumers
/// whose goods a factory was told to make, or a cancel that refunded nothing and left no
/// plan. The plan's work order also makes another campaign's batch, so a cancel after it
/// cannot withdraw it (that is
/// `a_cancel_withdraws_the_work_orders_no_factory_accepted_and_only_those`): this race is
/// about the cancel's look at production.
pub async fn a_cancel_and_a_plan_racing_for_a_batch_take_turns(fx: Arc<dyn Fixture>) {
    use super::locked_batch;

    let store = fx.store();
    super::use_sample_catalogue(&*store).await;
    let replica = fx.replica().await;
    let (mut planned, mut refunded) = (0, 0);
    for round in 0..12 {
        let b = locked_batch(&*store, "kettle-17-white").await;
        let other = locked_batch(&*store, "kettle-17-white").await;
        let plan = f1_makes(&[&b, &other]);
        let (planner, canceller) = if round % 2 == 0 {
            (store.clone(), replica.clone())
        } else {
            (replica.clone(), store.clone())
        };
        let cancel = cancel_all(&b.campaign_id);
        let (stored, cancelled) = tokio::join!(
            tokio::spawn(async move { planner.store_plan(&plan, t0()).await }),
            tokio::spawn(async move { canceller.pull_lever(&cancel, lever_at()).await }),
        );
        let cancelled = cancelled.expect("task").expect("cancel");
        match stored.expect("task") {
            Ok(_) => {
                planned += 1;
                assert_eq!(
                    (
                        cancelled.batches_in_production,
                        cancelled.preorders_refunded
                    ),
                    (1, 0),
                    "round {round}: planned, so in production and not refunded"
                );
                let m = check_ledger(&*store, &b.campaign_id).await;
                assert_eq!(m.refunded, 0, "round {round}");
            }
            Err(e) => {
                refunded += 1;
                let refusal: Refusal = precondition(Err::<(), _>(e));
                assert_eq!(refusal.reason(), "BATCH_NOT_WAITING", "round {round}");
                assert_eq!(
                    (
                        cancelled.batches_in_production,
                        cancelled.preorders_refunded
                    ),
                    (0, 1),
                    "round {round}: not planned, so refunded"
                );
            }
        }
    }
    assert_eq!(planned + refunded, 12);
}

/// A cancel withdraws a work order no factory has accepted yet when nothing else needs it,
/// and refunds its batch; it leaves every other work order where it is:
///
/// - f1 makes a1 only, issued: withdrawn, a1 refunded;
/// - f2 makes a2 and one unit of a3, accepted: stays (a2 and a3 in production);
/// - f3 makes a3's other unit, issued: stays, since a3 stays in production at f2 and a
///   withdrawn unit would be planned again for a cancelled campaign;
/// - f4 makes a4 and another campaign's batch, issued: stays, since that campaign's
///   consumers are waiting for it.
///
/// The withdrawal is numbered in f1's sequence after its work order, so f1's feed tells it
/// and its next work order takes the number after; the steel the work order took goes back
/// on hand; reports on it are refused as withdrawn; a retry of the cancel answers as the
/// first time.
pub async fn a_cancel_withdraws_the_work_orders_no_factory_accepted_and_only_those(
    fx: Arc<dyn Fixture>,
) {
    use super::{locked_batch, new_plan, part_order, report_req};
    use crate::{FeedEntry, PlanStatus, StreamPage};
    use c2m_domain::production::Progress;
    use c2m_domain::WorkOrderState;

    let store = fx.store();
    super::use_sample_catalogue(&*store).await;
    let steel = async || {
        let cat = store.catalogue().await.expect("catalogue");
        cat.materials
            .iter()
            .find(|m| m.id == "steel")
            .map(|m| m.on_hand)
            .expect("steel")
    };
    // Campaign a: four batches of 2 units, each locked by its own consumer.
    let mut terms = spec(2, None);
    terms.sku = "kettle-17-white".into();
    terms.deposit = terms.unit_price;
    let a = create(&*store, terms).await;
    for who in 1..=4 {
        place(&*store, &a.id, &consumer(who), 2)
            .await
            .expect("locks");
    }
    let mut ours: Vec<_> = store
        .list_batches(&a.id)
        .await
        .expect("batches")
        .into_iter()
        .filter(|b| b.status == BatchStatus::Locked)
        .collect();
    ours.sort_by_key(|b| b.seq);
    let [a1, a2, a3, a4] = &ours[..] else {
        panic!("four locked batches: {ours:?}");
    };
    let theirs = locked_batch(&*store, "kettle-17-white").await;
    let mut f2 = part_order("f2", a2, 2);
    f2.runs.extend(part_order("f2", a3, 1).runs);
    let mut f4 = part_order("f4", a4, 2);
    f4.runs.extend(part_order("f4", &theirs, 2).runs);
    let mut plan = new_plan(
        PlanStatus::Optimal,
        [a1, a2, a3, a4, &theirs].map(|b| b.id.clone()).to_vec(),
        vec![part_order("f1", a1, 2), f2, part_order("f3", a3, 1), f4],
    );
    plan.detail.reservations = vec![("steel".into(), 8.0)];
    let before = steel().await;
    store.store_plan(&plan, t0()).await.expect("plan");
    assert_eq!(steel().await, before - 8.0);
    let only = async |factory: &str| {
        let mut orders = store
            .factory_work_orders(factory, 0, 10)
            .await
            .expect("feed");
        assert_eq!(orders.len(), 1, "{factory}: {orders:?}");
        orders.remove(0)
    };
    let (w1, w2) = (only("f1").await, only("f2").await);
    store
        .report_progress(&report_req("f2", &w2.id, Progress::Accepted), t0())
        .await
        .expect("f2 accepts");

    let cancel = cancel_all(&a.id);
    let out = store.pull_lever(&cancel, lever_at()).await.expect("cancel");
    assert_eq!(
        (
            out.work_orders_withdrawn,
            out.batches_in_production,
            out.preorders_refunded,
            out.refunded_minor
        ),
        (1, 3, 1, 2 * 39_900),
        "{out:?}"
    );
    retry_answers_as(&*store, &cancel, &out).await;

    // The merchant's event names the withdrawn work order; a1's refund is among its refunds.
    let events = super::events::all_events(&*store, 0, Some(&a.id)).await;
    let changed = events
        .iter()
        .rev()
        .find_map(|e| match &e.data {
            c2m_domain::events::EventData::CampaignChanged {
                change,
                refunds,
                withdrawn_work_orders,
                ..
            } => Some((change.clone(), refunds.len(), withdrawn_work_orders.clone())),
            _ => None,
        })
        .expect("campaign.changed");
    assert_eq!(changed, ("cancelled".to_owned(), 1, vec![w1.id.clone()]));

    // f1's feed: its work order, then the notice at the next number.
    let claim = store
        .claim_factory_stream("f1", lever_at())
        .await
        .expect("claim");
    let StreamPage::Current(feed) = store
        .factory_stream_page(&claim, 0, 10)
        .await
        .expect("page")
    else {
        panic!("the newest claim reads");
    };
    let [FeedEntry::WorkOrder(first), FeedEntry::Withdrawn(notice)] = &feed[..] else {
        panic!("a work order, then its withdrawal: {feed:?}");
    };
    assert_eq!((first.id.as_str(), first.seq), (w1.id.as_str(), 1));
    assert_eq!(first.state, WorkOrderState::Withdrawn);
    let w = notice.withdrawn.as_ref().expect("withdrawal");
    assert_eq!((feed[1].seq(), w.at), (2, lever_at()));
    assert!(w.reason.contains(a.id.as_str()), "{w:?}");
    let pos = store.factory_position("f1").await.expect("position");
    assert_eq!(pos.last_seq, 2);
    for f in ["f2", "f3", "f4"] {
        let wo = only(f).await;
        assert_ne!(wo.state, WorkOrderState::Withdrawn, "{f}");
        assert!(wo.withdrawn.is_none(), "{f}");
        assert_eq!(store.factory_position(f).await.expect(f).last_seq, 1);
    }
    // Its steel (4) is back on hand; reports on it are refused, naming the state.
    assert_eq!(steel().await, before - 4.0);
    let accept = store
        .report_progress(&report_req("f1", &w1.id, Progress::Accepted), lever_at())
        .await;
    let (reason, meta) = refused(accept);
    assert_eq!(reason, "WORK_ORDER_STATE");
    assert!(
        meta.contains(&("state", "withdrawn".to_owned())),
        "{meta:?}"
    );

    // a1's consumer has the full price back; the rest wait for their goods.
    let m = check_ledger(&*store, &a.id).await;
    assert_eq!(m.refunded, 2 * 39_900);
    let shown = store.list_batches(&a.id).await.expect("batches");
    let refunded: Vec<_> = shown
        .iter()
        .filter(|b| b.refunded_at.is_some())
        .map(|b| b.id.clone())
        .collect();
    assert_eq!(refunded, vec![a1.id.clone()]);
    assert!(store.planning_queue().await.expect("queue").is_empty());

    // f1's next work order takes the number after the notice.
    let next = locked_batch(&*store, "kettle-17-white").await;
    store
        .store_plan(&f1_makes(&[&next]), lever_at())
        .await
        .expect("later plan");
    let orders = store.factory_work_orders("f1", 2, 10).await.expect("feed");
    assert_eq!(orders.iter().map(|w| w.seq).collect::<Vec<_>>(), vec![3]);
}

/// A cancel and a factory's acceptance of the work order it would withdraw, sent together
/// to two replicas, take turns: either the acceptance commits first and the cancel leaves
/// the batch in production, or the cancel withdraws the work order, refunds the batch, and
/// the acceptance is refused as withdrawn. Never an accepted work order for refunded
/// consumers.
pub async fn a_cancel_and_an_acceptance_racing_take_turns(fx: Arc<dyn Fixture>) {
    use super::{locked_batch, report_req};
    use c2m_domain::production::Progress;
    use c2m_domain::WorkOrderState;

    let store = fx.store();
    super::use_sample_catalogue(&*store).await;
    let replica = fx.replica().await;
    let (mut accepted, mut withdrawn) = (0, 0);
    for round in 0..12 {
        let b = locked_batch(&*store, "kettle-17-white").await;
        store
            .store_plan(&f1_makes(&[&b]), t0())
            .await
            .expect("plan");
        let wo = store
            .factory_work_orders("f1", 0, 100)
            .await
            .expect("feed")
            .into_iter()
            .find(|w| {
                w.order
                    .runs
                    .iter()
                    .any(|r| r.batches.iter().any(|x| x.batch_id == b.id))
            })
            .expect("the round's work order");
        let (acceptor, canceller) = if round % 2 == 0 {
            (store.clone(), replica.clone())
        } else {
            (replica.clone(), store.clone())
        };
        let accept = report_req("f1", &wo.id, Progress::Accepted);
        let cancel = cancel_all(&b.campaign_id);
        let (acc, out) = tokio::join!(
            tokio::spawn(async move { acceptor.report_progress(&accept, lever_at()).await }),
            tokio::spawn(async move { canceller.pull_lever(&cancel, lever_at()).await }),
        );
        let out = out.expect("task").expect("cancel");
        let m = check_ledger(&*store, &b.campaign_id).await;
        match acc.expect("task") {
            Ok(status) => {
                accepted += 1;
                assert_eq!(status.state, WorkOrderState::Accepted, "round {round}");
                assert_eq!(
                    (out.work_orders_withdrawn, out.batches_in_production),
                    (0, 1),
                    "round {round}: accepted first, so the cancel leaves it"
                );
                assert_eq!(m.refunded, 0, "round {round}");
            }
            Err(e) => {
                withdrawn += 1;
                let (reason, meta) = refused(Err::<(), _>(e));
                assert_eq!(reason, "WORK_ORDER_STATE", "round {round}");
                assert!(
                    meta.contains(&("state", "withdrawn".to_owned())),
                    "{meta:?}"
                );
                assert_eq!(
                    (out.work_orders_withdrawn, out.preorders_refunded),
                    (1, 1),
                    "round {round}: withdrawn first, so refunded"
                );
                assert_eq!(m.refunded, 2 * 39_900, "round {round}");
            }
        }
    }
    assert_eq!(accepted + withdrawn, 12);
}

/// The forecast reads the campaign's own arrivals and consumer cancellations up to now, its
/// open batch, and the earlier campaigns of the sku that stopped selling, whole: not one
/// the merchant cancelled, nor one that sold for less than a day.
pub async fn forecast_input_reads_arrivals_and_earlier_campaigns(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let earlier = create(&*store, spec(50, None)).await;
    for i in 0..3 {
        place(&*store, &earlier.id, &consumer(i), i as i64 + 1)
            .await
            .expect("earlier");
    }
    let closed_at = lever_at() + Duration::days(1);
    store
        .pull_lever(&close(&earlier.id), closed_at)
        .await
        .expect("close earlier");
    // Two that are no prior: one closed two hours after it opened, one cancelled. Each has
    // one order of 9 units before the lever stops it.
    type Stop = fn(&CampaignId) -> Lever;
    let stops: [(Stop, _); 2] = [(close, lever_at()), (cancel_all, closed_at)];
    for (who, (stop, at)) in (7..).zip(stops) {
        let c = create(&*store, spec(50, None)).await;
        place(&*store, &c.id, &consumer(who), 9)
            .await
            .expect("place");
        store.pull_lever(&stop(&c.id), at).await.expect("stop");
    }
    let c = create(&*store, spec(20, None)).await;
    let a = place(&*store, &c.id, &consumer(1), 2).await.expect("a");
    place(&*store, &c.id, &consumer(2), 5).await.expect("b");
    super::cancel(&*store, &a.id, None, placed_at() + Duration::minutes(1))
        .await
        .expect("cancel a");
    let now = closed_at + Duration::hours(1);
    let input = store.forecast_input(&c.id, now).await.expect("input");
    assert_eq!(input.progress.campaign.id, c.id);
    assert_eq!(input.history.arrivals.len(), 2);
    assert_eq!(input.history.first_deadline, None, "never extended");
    assert_eq!(input.history.first_threshold, None, "never lowered");
    assert_eq!(
        input.history.arrivals.iter().map(|a| a.units).sum::<i64>(),
        7
    );
    assert_eq!(input.history.cancellations.len(), 1);
    assert_eq!(input.history.cancellations[0].units, 2);
    let open = input.open_batch.expect("open batch");
    assert_eq!((open.units, open.threshold), (5, 20));
    assert_eq!(
        input.earlier.len(),
        1,
        "the campaign closed after a day; not the short one, nor the cancelled one"
    );
    assert_eq!(
        input.earlier[0].deadline, closed_at,
        "it stopped selling when closed"
    );
    assert_eq!(input.earlier[0].arrivals.len(), 3);
    // Seen before the earlier campaign closed, it is not yet a prior.
    let early = store
        .forecast_input(&c.id, placed_at() + Duration::minutes(30))
        .await
        .expect("early");
    assert!(early.earlier.is_empty());
    assert_eq!(early.history.arrivals.len(), 2);
    not_found(
        store.forecast_input(&CampaignId::generate(), now).await,
        "campaign",
    );
}

/// Sources are kept beside their pre-orders and every split of the insights adds up to the
/// campaign's units; a consumer who ordered in an earlier campaign counts as returning; a
/// consumer who refers themselves is refused naming `referrer`, and nothing is written.
pub async fn insights_split_the_demand_and_add_up(fx: Arc<dyn Fixture>) {
    use c2m_domain::{ConsumerId, PreorderSource};
    let store = fx.store();
    let earlier = create(&*store, spec(100, None)).await;
    place(&*store, &earlier.id, &consumer(1), 1)
        .await
        .expect("earlier");
    let mut s = spec(100, None);
    s.opens_at = Some(t0() + Duration::minutes(30));
    let c = create(&*store, s).await;
    let source = |channel: &str, region: &str, referrer: Option<usize>| PreorderSource {
        channel: Some(channel.into()),
        region: Some(region.into()),
        referrer: referrer.map(consumer),
    };
    // (consumer, units, source, minutes after t0)
    let orders: Vec<(usize, i64, PreorderSource, i64)> = vec![
        (1, 2, source("app", "SH", None), 40),
        (2, 3, source("app", "BJ", Some(1)), 50),
        (3, 1, source("wechat", "SH", Some(1)), 70),
        (4, 4, source("wechat", "SH", Some(2)), 130),
        (5, 5, PreorderSource::default(), 200),
    ];
    for (who, units, src, at) in &orders {
        let req = crate::PlacePreorder {
            idempotency_key: key(),
            campaign_id: c.id.clone(),
            consumer_id: consumer(*who),
            quantity: *units,
            source: src.clone(),
        };
        store
            .place_preorder(&req, t0() + Duration::minutes(*at))
            .await
            .expect("order");
    }
    let own = crate::PlacePreorder {
        idempotency_key: key(),
        campaign_id: c.id.clone(),
        consumer_id: consumer(6),
        quantity: 1,
        source: PreorderSource {
            referrer: Some(ConsumerId::parse("con_6").expect("id")),
            ..PreorderSource::default()
        },
    };
    assert_eq!(
        invalid_field(store.place_preorder(&own, t0() + Duration::hours(4)).await),
        "referrer"
    );

    let i = store.insights(&c.id, 3600, 2).await.expect("insights");
    assert_eq!((i.preorders, i.units, i.cancelled_units), (5, 15, 0));
    let total = |v: &[crate::SourceCount]| v.iter().map(|s| s.units).sum::<i64>();
    assert_eq!(total(&i.sources.by_channel), 15);
    assert_eq!(total(&i.sources.by_region), 15);
    assert_eq!(total(&i.sources.by_referrer), 15);
    let units_of = |v: &[crate::SourceCount], k: &str| {
        v.iter()
            .find(|s| s.key == k)
            .map(|s| (s.preorders, s.units))
    };
    assert_eq!(units_of(&i.sources.by_channel, "app"), Some((2, 5)));
    assert_eq!(units_of(&i.sources.by_channel, "wechat"), Some((2, 5)));
    assert_eq!(units_of(&i.sources.by_channel, ""), Some((1, 5)));
    assert_eq!(units_of(&i.sources.by_region, "SH"), Some((3, 7)));
    assert_eq!(
        i.sources
            .top_referrers
            .iter()
            .map(|s| (s.key.as_str(), s.units))
            .collect::<Vec<_>>(),
        vec![("con_1", 4), ("con_2", 4)],
        "largest first, then by key; never the empty key: {:?}",
        i.sources.top_referrers
    );
    // Hour buckets from the opening (t0 + 30 min): 10, 20, 40 min → 0; 100 → 1; 170 → 2.
    let per_bucket: Vec<(i64, i64)> = i
        .units_over_time
        .iter()
        .map(|u| (u.units, u.cumulative_units))
        .collect();
    assert_eq!(per_bucket, vec![(6, 6), (4, 10), (5, 15)]);
    assert_eq!(i.units_over_time[0].at, t0() + Duration::minutes(30));
    assert_eq!((i.consumers, i.returning_consumers), (5, 1));
    not_found(
        store.insights(&CampaignId::generate(), 3600, 2).await,
        "campaign",
    );
}
