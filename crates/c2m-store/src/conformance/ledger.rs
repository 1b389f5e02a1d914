//! Conformance cases for the money ledger. Every amount a case expects is computed here from
//! the campaign's terms, never read back from the store first.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};

use c2m_domain::{
    BatchId, BatchStatus, CampaignId, Currency, HoldState, Money, MoneyState, PreorderId,
    PreorderStatus, PriceTier, TxnKind,
};

use super::{
    cancel, consumer, create, invalid_field, key, not_found, place, precondition, spec, t0, Fixture,
};
use crate::{PayBalance, Store, StoreError};

fn cny(minor: i64) -> Money {
    Money::new(minor, Currency::parse("CNY").expect("CNY"))
}

/// When [`place`] places orders (and so when batches lock).
fn placed_at() -> DateTime<Utc> {
    t0() + Duration::hours(1)
}

fn pay_req(id: &PreorderId, amount: Money) -> PayBalance {
    PayBalance {
        idempotency_key: key(),
        preorder_id: id.clone(),
        consumer_id: None,
        amount,
    }
}

/// Checks the whole ledger and the campaign's identities; returns the campaign's money.
pub async fn check_ledger(store: &dyn Store, campaign: &CampaignId) -> c2m_domain::CampaignMoney {
    let audit = store.ledger_audit().await.expect("audit");
    assert!(audit.unbalanced.is_empty(), "unbalanced: {audit:?}");
    assert!(
        audit.totals.iter().all(|(_, t)| *t == 0),
        "totals: {audit:?}"
    );
    assert!(audit.hold_mismatches.is_empty(), "holds: {audit:?}");
    let money = store.campaign_money(campaign).await.expect("money");
    if let Err(e) = money.check() {
        panic!("{e}: {money:?}");
    }
    money
}

/// Two batches lock at different tiers of a ladder; balances are paid, refused when wrong,
/// one is missed and forfeits; the third batch stays open with a cancelled and a pooled
/// order. Every figure is checked to the minor unit.
pub async fn ledger_follows_preorders_through_lock_pay_and_forfeit(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(5, None);
    s.price_ladder = vec![
        PriceTier {
            min_units: 5,
            unit_price: 36_900,
        },
        PriceTier {
            min_units: 8,
            unit_price: 34_900,
        },
    ];
    s.balance_window_secs = Some(2 * 24 * 3600);
    let c = create(&*store, s).await;
    let dep = 5_000;
    let (a, b, cc, d, e, f) = (
        consumer(1),
        consumer(2),
        consumer(3),
        consumer(4),
        consumer(5),
        consumer(6),
    );

    let pa = place(&*store, &c.id, &a, 3).await.expect("a");
    assert_eq!(pa.money.hold, HoldState::Held);
    assert_eq!(pa.money_state(), MoneyState::DepositHeld);
    assert_eq!(pa.deposit_held(), cny(3 * dep));
    let pb = place(&*store, &c.id, &b, 2).await.expect("b");
    // B's order locked batch 1 at 5 units: the first tier.
    assert_eq!(pb.status, PreorderStatus::Locked);
    assert_eq!(pb.money.final_unit_price, Some(cny(36_900)));
    assert_eq!(pb.money.balance_due, Some(cny(2 * 36_900 - 2 * dep)));
    let due_by = placed_at() + Duration::days(2);
    assert_eq!(pb.money.balance_due_by, Some(due_by));
    let pa = store.get_preorder(&pa.id).await.expect("a again");
    assert_eq!(pa.money.hold, HoldState::Captured);
    assert_eq!(pa.money_state(), MoneyState::BalanceDue);
    assert_eq!(pa.money.balance_due, Some(cny(3 * 36_900 - 3 * dep)));

    let pc = place(&*store, &c.id, &cc, 4).await.expect("c");
    let pd = place(&*store, &c.id, &d, 4).await.expect("d");
    // Batch 2 locked at 8 units: the second tier, for both of its orders.
    assert_eq!(pd.money.final_unit_price, Some(cny(34_900)));
    let pc = store.get_preorder(&pc.id).await.expect("c again");
    assert_eq!(pc.money.final_unit_price, Some(cny(34_900)));
    assert_eq!(pc.money.balance_due, Some(cny(4 * 34_900 - 4 * dep)));

    let pe = place(&*store, &c.id, &e, 1).await.expect("e");
    let pf = place(&*store, &c.id, &f, 1).await.expect("f");
    cancel(&*store, &pe.id, None, placed_at())
        .await
        .expect("cancel e");

    let now = placed_at() + Duration::hours(1);
    let before = store.campaign_money(&c.id).await.expect("money");
    // Refusals: each names what is wrong and writes nothing.
    assert_eq!(
        invalid_field(store.pay_balance(&pay_req(&pa.id, cny(1)), now).await),
        "amount.minor"
    );
    let usd = Money::new(3 * 36_900 - 3 * dep, Currency::parse("USD").expect("USD"));
    assert_eq!(
        invalid_field(store.pay_balance(&pay_req(&pa.id, usd), now).await),
        "amount.currency"
    );
    precondition(store.pay_balance(&pay_req(&pe.id, cny(1)), now).await);
    precondition(store.pay_balance(&pay_req(&pf.id, cny(1)), now).await);
    let mut foreign = pay_req(&pa.id, cny(3 * 36_900 - 3 * dep));
    foreign.consumer_id = Some(b.clone());
    not_found(store.pay_balance(&foreign, now).await, "preorder");
    assert_eq!(store.campaign_money(&c.id).await.expect("money"), before);

    // A pays; a retry with the same key answers the same; a second payment is refused.
    let req = pay_req(&pa.id, cny(3 * 36_900 - 3 * dep));
    let paid = store.pay_balance(&req, now).await.expect("pay a");
    assert_eq!(paid.money_state(), MoneyState::Paid);
    assert_eq!(paid.balance_paid(), cny(95_700));
    assert_eq!(store.pay_balance(&req, now).await.expect("retry"), paid);
    precondition(store.pay_balance(&pay_req(&pa.id, cny(95_700)), now).await);
    for (p, due) in [(&pc, 4 * 34_900 - 4 * dep), (&pd, 4 * 34_900 - 4 * dep)] {
        store
            .pay_balance(&pay_req(&p.id, cny(due)), now)
            .await
            .expect("pay");
    }
    // B pays too late: refused even before the sweeper closes the window.
    precondition(
        store
            .pay_balance(&pay_req(&pb.id, cny(2 * 36_900 - 2 * dep)), due_by)
            .await,
    );

    // Nothing closes early; then each batch's window closes exactly once.
    assert!(store
        .batches_past_balance_window(due_by - Duration::seconds(1), 10)
        .await
        .expect("due")
        .is_empty());
    let mut due = store
        .batches_past_balance_window(due_by, 10)
        .await
        .expect("due");
    due.sort();
    let mut expected = vec![pa.batch_id.clone(), pc.batch_id.clone()];
    expected.sort();
    assert_eq!(due, expected);
    let close = async |batch: &BatchId| {
        store
            .close_balance_window(batch, due_by)
            .await
            .expect("close")
    };
    let first = close(&pa.batch_id).await;
    assert_eq!(first.forfeited, 1);
    let batch1 = first.batch.expect("closed");
    assert_eq!(
        (batch1.units, batch1.forfeited_units, batch1.paid_units()),
        (5, 2, 3)
    );
    assert_eq!(batch1.ready_at, Some(due_by));
    let again = close(&pa.batch_id).await;
    assert_eq!((again.batch, again.forfeited), (None, 0));
    let second = close(&pc.batch_id).await;
    assert_eq!(second.forfeited, 0);

    let pb = store.get_preorder(&pb.id).await.expect("b");
    assert_eq!(pb.status, PreorderStatus::Forfeited);
    assert_eq!(pb.money_state(), MoneyState::Forfeited);
    assert_eq!(pb.deposit_forfeited(), cny(2 * dep));
    precondition(
        store
            .pay_balance(&pay_req(&pb.id, cny(63_800)), due_by)
            .await,
    );

    let ready = store.batches_ready_for_planning(10).await.expect("ready");
    let ready: Vec<_> = ready.iter().map(|b| (b.seq, b.paid_units())).collect();
    assert_eq!(ready, vec![(1, 3), (2, 8)]);

    let m = check_ledger(&*store, &c.id).await;
    let deposited = (3 + 2 + 4 + 4 + 1 + 1) * dep;
    assert_eq!(m.deposited, deposited);
    assert_eq!(m.released, dep, "E's cancelled deposit");
    assert_eq!(m.held, dep, "F's deposit, still pooled");
    assert_eq!(m.captured, deposited - 2 * dep);
    assert_eq!(m.balances_paid, 95_700 + 2 * 119_600);
    assert_eq!(m.balances_outstanding, 0);
    assert_eq!(m.forfeited, 2 * dep);
    assert_eq!(m.settled, 3 * 36_900 + 8 * 34_900);
    assert_eq!(m.escrow, 0);
    assert_eq!(m.merchant, 2 * dep + 3 * 36_900 + 8 * 34_900);

    // The listing shows each movement once, in order, balanced.
    let entries = store
        .list_ledger(&c.id, c2m_domain::PageRequest::first(500))
        .await
        .expect("ledger");
    let count = |k: TxnKind| entries.items.iter().filter(|e| e.txn.kind() == k).count();
    assert_eq!(count(TxnKind::Hold), 6);
    assert_eq!(count(TxnKind::Capture), 4);
    assert_eq!(count(TxnKind::Release), 1);
    assert_eq!(count(TxnKind::Balance), 3);
    assert_eq!(count(TxnKind::Forfeit), 1);
    assert_eq!(count(TxnKind::Settle), 2);
    let paged = store
        .list_ledger(&c.id, c2m_domain::PageRequest::first(5))
        .await
        .expect("page");
    assert_eq!(paged.items[..], entries.items[..5]);
    assert!(paged.next_after.is_some());
    not_found(
        store
            .list_ledger(
                &CampaignId::parse("cmp_none").expect("id"),
                c2m_domain::PageRequest::first(5),
            )
            .await,
        "campaign",
    );
}

/// A failed batch releases every hold in full, once; cancelled deposits are not released
/// twice; nothing is left held once the campaign resolves.
pub async fn failed_batch_releases_every_hold_exactly_once(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let c = create(&*store, spec(20, None)).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            place(&*store, &c.id, &consumer(i), i as i64 + 1)
                .await
                .expect("place")
                .id,
        );
    }
    cancel(&*store, &ids[0], None, placed_at())
        .await
        .expect("cancel");
    let deadline = c.terms.deadline;
    let replica = fx.replica().await;
    let (x, y) = tokio::join!(
        store.fail_open_batch_at_deadline(&c.id, deadline),
        replica.fail_open_batch_at_deadline(&c.id, deadline)
    );
    let (x, y) = (x.expect("sweep"), y.expect("sweep"));
    assert_eq!(
        x.failed_batch.is_some() as i32 + y.failed_batch.is_some() as i32,
        1,
        "exactly one sweeper failed the batch"
    );
    assert_eq!(x.refunds_due + y.refunds_due, 3);
    for id in &ids {
        let p = store.get_preorder(id).await.expect("get");
        assert_eq!(p.money.hold, HoldState::Released);
        assert_eq!(p.deposit_released(), p.deposit_total);
        precondition(store.pay_balance(&pay_req(id, cny(1)), deadline).await);
    }
    let m = check_ledger(&*store, &c.id).await;
    assert_eq!(m.deposited, (1 + 2 + 3 + 4) * 5_000);
    assert_eq!(m.released, m.deposited);
    assert_eq!((m.held, m.captured, m.escrow, m.merchant), (0, 0, 0, 0));
}

/// A deposit that is the full price leaves nothing to pay: the batch is settled and ready
/// at lock, and a balance payment is refused.
pub async fn full_price_deposit_is_ready_at_lock(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(3, None);
    s.deposit = s.unit_price;
    let c = create(&*store, s).await;
    assert_eq!(c.terms.balance_window_secs, None);
    place(&*store, &c.id, &consumer(1), 1).await.expect("1");
    let p = place(&*store, &c.id, &consumer(2), 2).await.expect("2");
    assert_eq!(p.money_state(), MoneyState::Paid);
    assert_eq!(p.money.balance_due, Some(cny(0)));
    precondition(
        store
            .pay_balance(&pay_req(&p.id, cny(0)), placed_at())
            .await,
    );
    let batches = store.list_batches(&c.id).await.expect("batches");
    assert_eq!(batches[0].status, BatchStatus::Locked);
    assert_eq!(batches[0].ready_at, Some(placed_at()));
    assert_eq!(batches[0].balance_due_by, None);
    assert!(store
        .batches_past_balance_window(placed_at() + Duration::days(400), 10)
        .await
        .expect("due")
        .is_empty());
    let m = check_ledger(&*store, &c.id).await;
    assert_eq!(m.captured, 3 * 39_900);
    assert_eq!(m.settled, 3 * 39_900);
    assert_eq!((m.held, m.escrow, m.merchant), (0, 0, 3 * 39_900));
}

/// Racing sweepers on two stores close a balance window once: one forfeit per unpaid order.
pub async fn balance_window_closes_once_under_racing_sweepers(fx: Arc<dyn Fixture>) {
    let store = fx.store();
    let mut s = spec(4, None);
    s.balance_window_secs = Some(3600);
    let c = create(&*store, s).await;
    let mut last = None;
    for i in 0..4 {
        last = Some(place(&*store, &c.id, &consumer(i), 1).await.expect("place"));
    }
    let batch = last.expect("placed").batch_id;
    let at = placed_at() + Duration::hours(1);
    let replica = fx.replica().await;
    let mut tasks = Vec::new();
    for i in 0..6 {
        let s = super::alternate(i, &store, &replica);
        let b = batch.clone();
        tasks.push(tokio::spawn(
            async move { s.close_balance_window(&b, at).await },
        ));
    }
    let mut closed = 0;
    let mut forfeited = 0;
    for t in tasks {
        let o = t.await.expect("task").expect("close");
        closed += o.batch.is_some() as i32;
        forfeited += o.forfeited;
    }
    assert_eq!((closed, forfeited), (1, 4));
    let m = check_ledger(&*store, &c.id).await;
    assert_eq!(m.forfeited, 4 * 5_000);
    assert_eq!((m.settled, m.escrow, m.merchant), (0, 0, 4 * 5_000));
    // Forfeited units free the campaign's total cap and the consumer's limit.
    let batches = store.list_batches(&c.id).await.expect("batches");
    assert_eq!((batches[0].units, batches[0].paid_units()), (4, 0));
    let progress = store.get_campaign(&c.id).await.expect("progress");
    assert_eq!(progress.units_committed, 0);
    let err: Result<_, StoreError> = store
        .close_balance_window(&c2m_domain::BatchId::parse("bat_none").expect("id"), at)
        .await;
    not_found(err, "batch");
}
