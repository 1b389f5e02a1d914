//! The ledger's invariants under random operations, on SQLite.
//!
//! Each case creates its own campaign (random threshold, deposit, price ladder and balance
//! window) and drives a random sequence of operations against it: place, cancel, retry a
//! placement with its key, pay a balance (right, wrong, or again with the key), let time
//! pass, close due balance windows, sweep the deadline, restart the store, and the
//! merchant's levers of issue 17 (extend the deadline, lower the threshold, close, cancel
//! the campaign; each sent twice with its key, the retry answering as the first time).
//! After every step it checks the four invariants of issue 7 against the store:
//!
//! 1. every ledger transaction balances and the sum over all accounts is zero;
//! 2. per campaign, deposited = held + captured + released (and the other identities of
//!    `CampaignMoney::check`), and once the campaign has resolved nothing is held;
//! 3. each hold resolves exactly once: one `hold` movement per pre-order, at most one
//!    capture or release, matching the pre-order's hold state; at most one `refund`, given
//!    exactly to the captured pre-orders a campaign cancel took back;
//! 4. a locked batch holds at least its threshold (units at lock); a failed batch has
//!    every deposit released.
//!
//! Amounts are also checked against a model kept by the test: the deposits placed and the
//! balances paid, computed from the campaign's terms.
//!
//! Cases share one database (on `/dev/shm` when it exists); campaigns do not interact,
//! and the whole-ledger audit runs every 200 cases and at the end. `PROPTEST_CASES` sets
//! the number of cases: the default, 1000, takes about a minute in a debug build on two
//! busy cores (2000 took 124 s there); run `PROPTEST_CASES=5000` for a deeper search.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use chrono::{Duration, TimeZone, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use c2m_domain::{
    BatchStatus, CampaignId, CampaignSpec, ConsumerId, Currency, DomainError, HoldState,
    IdempotencyKey, Money, PageRequest, Preorder, PreorderId, PriceTier, TxnKind,
};
use c2m_store::sqlite::SqliteStore;
use c2m_store::{
    CancelCampaign, CancelPreorder, CloseCampaign, CreateCampaign, ExtendDeadline, Lever,
    LeversStore, LowerThreshold, PayBalance, PlacePreorder, PreorderFilter, Store, StoreError,
};

const SKU: &str = "prop-widget";
const PRICE: i64 = 10_000;

#[derive(Debug, Clone)]
struct Terms {
    threshold: i64,
    deposit: i64,
    /// (min units, price) tiers, valid for the deposit.
    ladder: Vec<(i64, i64)>,
    window_hours: i64,
}

#[derive(Debug, Clone)]
enum Op {
    Place { consumer: u8, quantity: i64 },
    Cancel { pick: usize },
    RetryPlace { pick: usize },
    Pay { pick: usize, amount: PayAmount },
    RetryPay { pick: usize },
    Advance { hours: i64 },
    CloseWindows,
    SweepDeadline,
    Restart,
    Extend { hours: i64 },
    Lower { by: i64 },
    Close,
    CancelCampaign,
}

#[derive(Debug, Clone, Copy)]
enum PayAmount {
    Exact,
    OffBy(i64),
    WrongCurrency,
}

fn terms() -> impl Strategy<Value = Terms> {
    (
        1i64..6,
        1i64..=4,
        proptest::collection::vec((1i64..4, 0i64..1500), 0..3),
        1i64..48,
    )
        .prop_map(|(threshold, dep_quarters, steps, window_hours)| {
            // Deposits of a quarter, a half, three quarters or all of the price.
            let deposit = PRICE * dep_quarters / 4;
            let (mut units, mut price) = (threshold - 1, PRICE);
            let mut ladder = Vec::new();
            for (du, dp) in steps {
                units += du;
                price = (price - dp).max(deposit);
                ladder.push((units.max(1), price));
            }
            ladder.dedup_by_key(|t| t.0);
            Terms {
                threshold,
                deposit,
                ladder,
                window_hours,
            }
        })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..4, 1i64..4).prop_map(|(consumer, quantity)| Op::Place { consumer, quantity }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        1 => any::<usize>().prop_map(|pick| Op::RetryPlace { pick }),
        4 => (any::<usize>(), prop_oneof![
            6 => Just(PayAmount::Exact),
            1 => (-3i64..4).prop_map(PayAmount::OffBy),
            1 => Just(PayAmount::WrongCurrency),
        ]).prop_map(|(pick, amount)| Op::Pay { pick, amount }),
        1 => any::<usize>().prop_map(|pick| Op::RetryPay { pick }),
        2 => (1i64..80).prop_map(|hours| Op::Advance { hours }),
        2 => Just(Op::CloseWindows),
        1 => Just(Op::SweepDeadline),
        1 => Just(Op::Restart),
        1 => (-24i64..72).prop_map(|hours| Op::Extend { hours }),
        1 => (0i64..4).prop_map(|by| Op::Lower { by }),
        1 => Just(Op::Close),
        1 => Just(Op::CancelCampaign),
    ]
}

/// The shared database and the store currently open on it.
struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Option<SqliteStore>,
}

impl Db {
    fn store(&self) -> &SqliteStore {
        self.store.as_ref().expect("store open")
    }

    async fn restart(&mut self) {
        if let Some(s) = self.store.take() {
            s.close().await;
        }
        self.store = Some(SqliteStore::open(&self.path).await.expect("reopen"));
    }
}

/// What the test knows independently of the store.
#[derive(Default)]
struct Model {
    placed: Vec<(PlacePreorder, Preorder)>,
    pays: Vec<(PayBalance, Preorder)>,
    deposited: i64,
    balances_paid: i64,
    deadline_swept: bool,
    /// The campaign's deadline and threshold as the levers left them.
    deadline: chrono::DateTime<Utc>,
    threshold: i64,
    closed: bool,
    cancelled: bool,
}

fn key(n: &mut u64) -> IdempotencyKey {
    *n += 1;
    IdempotencyKey::parse(&format!("k-{}-{n}", uuid::Uuid::new_v4().simple())).expect("key")
}

fn refused(r: &Result<impl std::fmt::Debug, StoreError>) -> Result<(), TestCaseError> {
    match r {
        Err(StoreError::Domain(DomainError::Refused(_) | DomainError::InvalidArgument { .. })) => {
            Ok(())
        }
        other => Err(TestCaseError::fail(format!(
            "expected a refusal, got {other:?}"
        ))),
    }
}

async fn run_case(db: &mut Db, t: Terms, ops: Vec<Op>, case: u64) -> Result<(), TestCaseError> {
    let t0 = Utc
        .with_ymd_and_hms(2031, 1, 1, 0, 0, 0)
        .single()
        .expect("t0")
        + Duration::days(case as i64 % 1000);
    let deadline = t0 + Duration::days(5);
    let cny = Currency::parse("CNY").expect("CNY");
    let mut keys = 0u64;
    let spec = CampaignSpec {
        sku: SKU.into(),
        title: "Widget".into(),
        currency: "CNY".into(),
        unit_price: PRICE,
        deposit: t.deposit,
        batch_threshold: t.threshold,
        batch_cap: None,
        max_per_order: None,
        max_per_consumer: None,
        total_cap: None,
        opens_at: Some(t0),
        deadline,
        price_ladder: t
            .ladder
            .iter()
            .map(|&(min_units, unit_price)| PriceTier {
                min_units,
                unit_price,
            })
            .collect(),
        balance_window_secs: (t.deposit < PRICE).then_some(t.window_hours * 3600),
        ships_within_days: None,
    };
    let campaign = db
        .store()
        .create_campaign(
            &CreateCampaign {
                idempotency_key: key(&mut keys),
                spec,
            },
            t0,
        )
        .await
        .map_err(|e| TestCaseError::fail(format!("create: {e:?}")))?;
    let terms = campaign.terms.clone();
    let mut now = t0 + Duration::minutes(1);
    let mut model = Model {
        deadline,
        threshold: t.threshold,
        ..Model::default()
    };

    for op in ops {
        let store = db.store();
        match op {
            Op::Place { consumer, quantity } => {
                let req = PlacePreorder {
                    idempotency_key: key(&mut keys),
                    campaign_id: campaign.id.clone(),
                    consumer_id: ConsumerId::parse(&format!("con_{consumer}")).expect("id"),
                    quantity,
                    source: Default::default(),
                };
                match store.place_preorder(&req, now).await {
                    Ok(p) => {
                        prop_assert_eq!(p.deposit_total.minor, quantity * t.deposit);
                        model.deposited += quantity * t.deposit;
                        model.placed.push((req, p));
                    }
                    Err(e) => {
                        let selling = now < model.deadline && !model.closed && !model.cancelled;
                        prop_assert!(!selling, "place refused while open: {:?}", e);
                    }
                }
            }
            Op::Cancel { pick } if !model.placed.is_empty() => {
                let (_, p) = &model.placed[pick % model.placed.len()];
                let req = CancelPreorder {
                    idempotency_key: key(&mut keys),
                    preorder_id: p.id.clone(),
                    consumer_id: Some(p.consumer_id.clone()),
                };
                let before = store.get_preorder(&p.id).await.expect("get");
                match store.cancel_preorder(&req, now).await {
                    Ok(c) => {
                        prop_assert_eq!(before.money.hold, HoldState::Held);
                        prop_assert_eq!(c.money.hold, HoldState::Released);
                    }
                    Err(e) => refused(&Err::<(), _>(e))?,
                }
            }
            Op::RetryPlace { pick } if !model.placed.is_empty() => {
                let (req, first) = &model.placed[pick % model.placed.len()];
                let again = store.place_preorder(req, now).await.expect("retry");
                prop_assert_eq!(&again, first);
            }
            Op::Pay { pick, amount } if !model.placed.is_empty() => {
                let (_, p) = &model.placed[pick % model.placed.len()];
                let current = store.get_preorder(&p.id).await.expect("get");
                // The balance the test expects, from the terms and the batch at lock.
                let expected_due = match current.money.final_unit_price {
                    // A refunded pre-order keeps the balance it owed at lock on record.
                    Some(_)
                        if current.cancelled_at.is_none()
                            || current.money.refunded_at.is_some() =>
                    {
                        let batch = store
                            .list_batches(&campaign.id)
                            .await
                            .expect("batches")
                            .into_iter()
                            .find(|b| b.id == current.batch_id)
                            .expect("batch");
                        let price = terms.price_for(batch.units).minor;
                        Some(current.quantity * price - current.quantity * t.deposit)
                    }
                    _ => None,
                };
                prop_assert_eq!(current.money.balance_due.map(|m| m.minor), expected_due);
                let due = expected_due.unwrap_or(1);
                let money = match amount {
                    PayAmount::Exact => Money::new(due, cny),
                    PayAmount::OffBy(d) => Money::new(due + d, cny),
                    PayAmount::WrongCurrency => {
                        Money::new(due, Currency::parse("EUR").expect("EUR"))
                    }
                };
                let req = PayBalance {
                    idempotency_key: key(&mut keys),
                    preorder_id: p.id.clone(),
                    consumer_id: Some(p.consumer_id.clone()),
                    amount: money,
                };
                let payable = current.status == c2m_domain::PreorderStatus::Locked
                    && current.money.balance_paid_at.is_none()
                    && current.money.balance_due_by.is_some_and(|by| now < by);
                let right = matches!(amount, PayAmount::Exact | PayAmount::OffBy(0));
                let before = store.campaign_money(&campaign.id).await.expect("money");
                let r = store.pay_balance(&req, now).await;
                if payable && right {
                    let paid = r.map_err(|e| TestCaseError::fail(format!("pay: {e:?}")))?;
                    prop_assert_eq!(paid.balance_paid().minor, due);
                    model.balances_paid += due;
                    model.pays.push((req, paid));
                } else {
                    refused(&r)?;
                    let after = store.campaign_money(&campaign.id).await.expect("money");
                    prop_assert_eq!(before, after, "a refused payment changed money");
                }
            }
            Op::RetryPay { pick } if !model.pays.is_empty() => {
                let (req, first) = &model.pays[pick % model.pays.len()];
                let again = store.pay_balance(req, now).await.expect("retry pay");
                prop_assert_eq!(&again, first);
            }
            Op::Advance { hours } => now += Duration::hours(hours),
            Op::CloseWindows => {
                for b in store
                    .batches_past_balance_window(now, 1000)
                    .await
                    .expect("due")
                {
                    store.close_balance_window(&b, now).await.expect("close");
                }
            }
            Op::SweepDeadline => {
                store
                    .fail_open_batch_at_deadline(&campaign.id, now)
                    .await
                    .expect("sweep");
                if now >= model.deadline {
                    model.deadline_swept = true;
                }
            }
            Op::Restart => db.restart().await,
            Op::Extend { hours } => {
                let selling = now < model.deadline && !model.closed && !model.cancelled;
                let to = model.deadline + Duration::hours(hours);
                let req = ExtendDeadline {
                    idempotency_key: key(&mut keys),
                    campaign_id: campaign.id.clone(),
                    deadline: to,
                };
                let before = store.get_campaign(&campaign.id).await.expect("get");
                let r = store.pull_lever(&Lever::Extend(req.clone()), now).await;
                if selling && hours > 0 {
                    let out = r.map_err(|e| TestCaseError::fail(format!("extend: {e:?}")))?;
                    prop_assert_eq!(out.campaign.terms.deadline, to);
                    let again = store
                        .pull_lever(&Lever::Extend(req.clone()), now)
                        .await
                        .expect("retry");
                    prop_assert_eq!(again, out);
                    model.deadline = to;
                } else {
                    refused(&r)?;
                    let after = store.get_campaign(&campaign.id).await.expect("get");
                    prop_assert_eq!(before, after, "a refused extension wrote");
                }
            }
            Op::Lower { by } => {
                let selling = now < model.deadline && !model.closed && !model.cancelled;
                let to = model.threshold - by;
                let req = LowerThreshold {
                    idempotency_key: key(&mut keys),
                    campaign_id: campaign.id.clone(),
                    batch_threshold: to,
                };
                let open = store
                    .list_batches(&campaign.id)
                    .await
                    .expect("batches")
                    .into_iter()
                    .find(|b| b.status == BatchStatus::Open);
                let before = store.campaign_money(&campaign.id).await.expect("money");
                let r = store.pull_lever(&Lever::Lower(req.clone()), now).await;
                if selling && by > 0 && to > 0 {
                    let out = r.map_err(|e| TestCaseError::fail(format!("lower: {e:?}")))?;
                    let locks = open.as_ref().is_some_and(|b| b.units >= to);
                    prop_assert_eq!(out.locked_batch.is_some(), locks);
                    let again = store
                        .pull_lever(&Lever::Lower(req.clone()), now)
                        .await
                        .expect("retry");
                    prop_assert_eq!(again, out);
                    model.threshold = to;
                } else {
                    refused(&r)?;
                    let after = store.campaign_money(&campaign.id).await.expect("money");
                    prop_assert_eq!(before, after, "a refused lowering moved money");
                }
            }
            Op::Close => {
                let selling = now < model.deadline && !model.closed && !model.cancelled;
                let req = CloseCampaign {
                    idempotency_key: key(&mut keys),
                    campaign_id: campaign.id.clone(),
                };
                let r = store.pull_lever(&Lever::Close(req.clone()), now).await;
                if selling {
                    let out = r.map_err(|e| TestCaseError::fail(format!("close: {e:?}")))?;
                    let again = store
                        .pull_lever(&Lever::Close(req.clone()), now)
                        .await
                        .expect("retry");
                    prop_assert_eq!(again, out);
                    model.closed = true;
                    model.deadline_swept = true;
                } else {
                    refused(&r)?;
                }
            }
            Op::CancelCampaign => {
                let req = CancelCampaign {
                    idempotency_key: key(&mut keys),
                    campaign_id: campaign.id.clone(),
                };
                let before = store.campaign_money(&campaign.id).await.expect("money");
                let r = store.pull_lever(&Lever::Cancel(req.clone()), now).await;
                if !model.cancelled {
                    let out = r.map_err(|e| TestCaseError::fail(format!("cancel: {e:?}")))?;
                    let after = store.campaign_money(&campaign.id).await.expect("money");
                    // Everything captured and paid that was still in escrow or earned by a
                    // settled batch, less forfeits, came back, to the minor unit.
                    prop_assert_eq!(after.refunded - before.refunded, out.refunded_minor);
                    prop_assert_eq!(after.escrow, 0, "escrow left after a cancel: {:?}", after);
                    prop_assert_eq!(after.held, 0);
                    let again = store
                        .pull_lever(&Lever::Cancel(req.clone()), now)
                        .await
                        .expect("retry");
                    prop_assert_eq!(again, out);
                    model.cancelled = true;
                    model.deadline_swept = true;
                } else {
                    refused(&r)?;
                }
            }
            _ => {}
        }
        check(db.store(), &campaign.id, &terms, &model).await?;
    }
    // Resolve the campaign: past the deadline and every balance window, then check that
    // nothing is left held or in escrow.
    now = now.max(model.deadline) + Duration::days(60);
    let store = db.store();
    store
        .fail_open_batch_at_deadline(&campaign.id, now)
        .await
        .expect("sweep");
    model.deadline_swept = true;
    for b in store
        .batches_past_balance_window(now, 1000)
        .await
        .expect("due")
    {
        store.close_balance_window(&b, now).await.expect("close");
    }
    let m = check(store, &campaign.id, &terms, &model).await?;
    prop_assert_eq!(m.escrow, 0, "escrow left after resolution: {:?}", m);
    prop_assert_eq!(m.balances_outstanding, 0);
    prop_assert_eq!(m.merchant, m.forfeited + m.settled - m.refunded_by_merchant);
    Ok(())
}

/// The four invariants, for one campaign, plus the model's totals.
async fn check(
    store: &SqliteStore,
    campaign: &CampaignId,
    terms: &c2m_domain::CampaignTerms,
    model: &Model,
) -> Result<c2m_domain::CampaignMoney, TestCaseError> {
    let m = store.campaign_money(campaign).await.expect("money");
    // 2. Identities, and the model's totals.
    m.check().map_err(TestCaseError::fail)?;
    prop_assert_eq!(m.deposited, model.deposited);
    prop_assert_eq!(m.balances_paid, model.balances_paid);

    // 1. Every transaction balances; the campaign's accounts sum to zero.
    let mut entries = Vec::new();
    let mut page = PageRequest::first(500);
    loop {
        let got = store.list_ledger(campaign, page).await.expect("ledger");
        entries.extend(got.items);
        match got.next_after {
            Some(a) => page.after = Some(a),
            None => break,
        }
    }
    let mut total = 0i64;
    let mut per_preorder: HashMap<PreorderId, Vec<TxnKind>> = HashMap::new();
    for e in &entries {
        let sum: i64 = e.txn.postings().iter().map(|p| p.amount).sum();
        prop_assert_eq!(sum, 0, "unbalanced {:?}", e);
        total += sum;
        if let Some(p) = &e.preorder_id {
            per_preorder
                .entry(p.clone())
                .or_default()
                .push(e.txn.kind());
        }
    }
    prop_assert_eq!(total, 0);

    // 3. Each hold resolves once and matches the pre-order.
    let preorders = store
        .list_preorders(
            &PreorderFilter::Campaign(campaign.clone()),
            PageRequest::first(500),
        )
        .await
        .expect("preorders")
        .items;
    prop_assert_eq!(preorders.len(), model.placed.len());
    for p in &preorders {
        let kinds = per_preorder.get(&p.id).cloned().unwrap_or_default();
        let n = |k: TxnKind| kinds.iter().filter(|x| **x == k).count();
        prop_assert_eq!(n(TxnKind::Hold), 1);
        prop_assert!(
            n(TxnKind::Capture) + n(TxnKind::Release) <= 1,
            "{:?}",
            kinds
        );
        prop_assert_eq!(
            n(TxnKind::Capture) == 1,
            p.money.hold == HoldState::Captured
        );
        prop_assert_eq!(
            n(TxnKind::Release) == 1,
            p.money.hold == HoldState::Released
        );
        prop_assert_eq!(n(TxnKind::Forfeit) == 1, p.money.forfeited_at.is_some());
        prop_assert!(n(TxnKind::Balance) <= 1);
        // A refund is given once, exactly to a captured pre-order a cancel took back (a
        // captured pre-order is cancelled by nothing else).
        prop_assert!(n(TxnKind::Refund) <= 1, "{:?}", kinds);
        prop_assert_eq!(
            n(TxnKind::Refund) == 1,
            p.money.hold == HoldState::Captured && p.cancelled_at.is_some()
        );
        prop_assert_eq!(n(TxnKind::Refund) == 1, p.money.refunded_at.is_some());
    }

    // 4. Locked batches reached the threshold at lock; failed ones released everything.
    let batches = store.list_batches(campaign).await.expect("batches");
    for b in &batches {
        match b.status {
            BatchStatus::Locked => {
                prop_assert!(b.units >= b.threshold);
                prop_assert_eq!(b.final_unit_price, Some(terms.price_for(b.units)));
            }
            BatchStatus::Failed => {
                for p in preorders.iter().filter(|p| p.batch_id == b.id) {
                    prop_assert_eq!(p.money.hold, HoldState::Released);
                }
            }
            BatchStatus::Open => {}
        }
    }
    if model.deadline_swept {
        prop_assert_eq!(m.held, 0, "deposits still held after the deadline sweep");
    }
    Ok(m)
}

fn shared_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn ledger_invariants_hold_under_random_operations() {
    let cases: u32 = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = shared_dir();
    let path = dir.path().join("ledger-props.db");
    let store = rt.block_on(async {
        let s = SqliteStore::open(&path).await.expect("open");
        c2m_store::conformance::ensure_products(&s, &[SKU]).await;
        s
    });
    let db = RefCell::new(Db {
        _dir: dir,
        path,
        store: Some(store),
    });
    let counter = RefCell::new(0u64);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (terms(), proptest::collection::vec(op(), 1..16));
    let result = runner.run(&strategy, |(t, ops)| {
        let case = {
            let mut c = counter.borrow_mut();
            *c += 1;
            *c
        };
        let mut db = db.borrow_mut();
        rt.block_on(async {
            let r = run_case(&mut db, t, ops, case).await;
            if case % 200 == 0 {
                audit(db.store()).await?;
            }
            r
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let db = db.into_inner();
    rt.block_on(audit(db.store())).expect("final audit");
}

/// The whole-ledger audit: every transaction balances, all accounts sum to zero, every
/// hold state matches its movements.
async fn audit(store: &SqliteStore) -> Result<(), TestCaseError> {
    let a = store.ledger_audit().await.expect("audit");
    prop_assert!(a.unbalanced.is_empty(), "{:?}", a);
    prop_assert!(a.totals.iter().all(|(_, t)| *t == 0), "{:?}", a);
    prop_assert!(a.hold_mismatches.is_empty(), "{:?}", a);
    Ok(())
}
