//! The money ledger end to end over gRPC, with an injected clock: a campaign with a price
//! ladder fills two batches at two tiers, one consumer misses the balance deadline, a third
//! batch fails at the campaign deadline. Every amount expected here is computed in this
//! file from the campaign's terms, then compared to the minor unit with what the server
//! reports: each pre-order, each consumer's account, the campaign's totals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{Duration, SubsecRound, Utc};
use tonic::Code;

use crate::common::*;
use c2m_domain::ManualClock;
use c2m_proto::v1 as pb;
use c2m_proto::v1::ledger_service_client::LedgerServiceClient;

const SKU: &str = "kettle-ladder";
const BASE: i64 = 39_900;
const DEPOSIT: i64 = 5_000;
const TIER_4: i64 = 36_900;
const TIER_6: i64 = 34_900;

fn cny(minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        minor,
        currency: "CNY".into(),
    })
}

fn pay(key: &str, p: &pb::Preorder, minor: i64, currency: &str) -> pb::PayBalanceRequest {
    pb::PayBalanceRequest {
        idempotency_key: key.into(),
        preorder_id: p.id.clone(),
        consumer_id: p.consumer_id.clone(),
        amount: Some(pb::Money {
            minor,
            currency: currency.into(),
        }),
    }
}

/// Waits (up to 20 s) until `check` holds; the server's own sweeper acts on its next tick.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..400 {
        if check().await {
            return;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ladder_balances_forfeit_and_failure_leave_every_minor_unit_in_place() {
    let start = Utc::now().trunc_subsecs(6);
    let clock = ManualClock::new(start);
    let server = TestServer::sqlite_with_clock(Arc::new(clock.clone())).await;
    c2m_store::conformance::ensure_products(&*server.store, &[SKU]).await;
    let mut c = server.clients().await;
    let mut ledger = LedgerServiceClient::new(c.channel.clone());

    let mut req = campaign_request("ladder", 4);
    req.sku = SKU.into();
    req.unit_price_minor = BASE;
    req.deposit_minor = DEPOSIT;
    req.deadline = Some(ts(start + Duration::days(3)));
    req.price_ladder = vec![
        pb::PriceTier {
            min_units: 4,
            unit_price_minor: TIER_4,
        },
        pb::PriceTier {
            min_units: 6,
            unit_price_minor: TIER_6,
        },
    ];
    req.balance_window_seconds = Some(2 * 24 * 3600);
    let cmp = c.campaigns.create_campaign(req).await.unwrap().into_inner();
    assert!(
        cmp.money_policy.contains("forfeits the deposit"),
        "{}",
        cmp.money_policy
    );
    let campaigns = c.campaigns.clone();
    let progress = |id: String| {
        let mut c = campaigns.clone();
        async move {
            c.get_campaign(pb::GetCampaignRequest { campaign_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let p0 = progress(cmp.id.clone()).await;
    assert_eq!(p0.current_unit_price, cny(BASE));
    assert_eq!(
        (p0.units_to_next_tier, p0.next_tier_unit_price),
        (4, cny(TIER_4))
    );

    let pre = c.preorders.clone();
    let mut orders: HashMap<&str, pb::Preorder> = HashMap::new();
    let order = |who: &'static str, qty: i64| {
        let mut c = pre.clone();
        let id = cmp.id.clone();
        async move {
            let p = c
                .place_preorder(place(&format!("place-{who}"), &id, who, qty))
                .await
                .unwrap_or_else(|s| panic!("{who}: {s:?}"))
                .into_inner();
            (who, p)
        }
    };
    // Batch 1 locks at 4 units: the first tier. Batch 2 locks at 6: the second.
    for (who, qty) in [("alice", 2), ("bob", 2), ("carol", 3)] {
        let (w, p) = order(who, qty).await;
        orders.insert(w, p);
    }
    let p1 = progress(cmp.id.clone()).await;
    assert_eq!(
        (p1.open_batch_units, p1.current_unit_price.clone()),
        (3, cny(BASE))
    );
    assert_eq!(
        (p1.units_to_next_tier, p1.next_tier_unit_price),
        (1, cny(TIER_4))
    );
    for (who, qty) in [("dave", 3), ("erin", 1), ("frank", 1), ("gina", 1)] {
        let (w, p) = order(who, qty).await;
        orders.insert(w, p);
    }
    let get = |id: &str| {
        let mut c = pre.clone();
        let id = id.to_owned();
        async move {
            c.get_preorder(pb::GetPreorderRequest { preorder_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let alice = get(&orders["alice"].id).await;
    assert_eq!(alice.money_state(), pb::MoneyState::BalanceDue);
    assert_eq!(alice.final_unit_price, cny(TIER_4));
    assert_eq!(alice.balance_due, cny(2 * TIER_4 - 2 * DEPOSIT));
    assert_eq!(alice.deposit_captured, cny(2 * DEPOSIT));
    assert_eq!(alice.balance_due_by, Some(ts(start + Duration::days(2))));
    let carol = get(&orders["carol"].id).await;
    assert_eq!(carol.final_unit_price, cny(TIER_6));
    assert_eq!(carol.balance_due, cny(3 * TIER_6 - 3 * DEPOSIT));
    assert_eq!(orders["erin"].money_state(), pb::MoneyState::DepositHeld);
    assert_eq!(orders["erin"].deposit_held, cny(DEPOSIT));

    // Gina cancels while batch 3 is open: her hold is released in full.
    let gina = c
        .preorders
        .cancel_preorder(pb::CancelPreorderRequest {
            idempotency_key: "cancel-gina".into(),
            preorder_id: orders["gina"].id.clone(),
            consumer_id: "gina".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(gina.money_state(), pb::MoneyState::DepositReleased);
    assert_eq!(gina.deposit_released, cny(DEPOSIT));

    let ledger_client = ledger.clone();
    let money = |id: String| {
        let mut l = ledger_client.clone();
        async move {
            l.get_campaign_money(pb::GetCampaignMoneyRequest { campaign_id: id })
                .await
                .unwrap()
                .into_inner()
        }
    };

    // Alice pays her balance; a retry with the key answers the same; another key is
    // refused.
    let alice_due = 2 * TIER_4 - 2 * DEPOSIT;
    let paid = c
        .preorders
        .pay_balance(pay("pay-alice", &alice, alice_due, "CNY"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paid.money_state(), pb::MoneyState::Paid);
    assert_eq!(paid.balance_paid, cny(alice_due));
    let replay = c
        .preorders
        .pay_balance(pay("pay-alice", &alice, alice_due, "CNY"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, paid);

    // Bad input: a clear status, and nothing changes.
    let before = money(cmp.id.clone()).await;
    let refusals = [
        (
            pay("pay-alice-2", &alice, alice_due, "CNY"),
            Code::FailedPrecondition,
            "BALANCE_ALREADY_PAID",
        ),
        (
            pay("pay-carol-x", &carol, 1, "CNY"),
            Code::InvalidArgument,
            "amount.minor",
        ),
        (
            pay("pay-carol-y", &carol, 3 * TIER_6 - 3 * DEPOSIT, "USD"),
            Code::InvalidArgument,
            "amount.currency",
        ),
        (
            pay("pay-carol-z", &carol, 1, "XYZ"),
            Code::InvalidArgument,
            "amount.currency",
        ),
        (
            pay("pay-gina", &gina, 1, "CNY"),
            Code::FailedPrecondition,
            "PREORDER_CANCELLED",
        ),
        (
            pay("pay-erin", &orders["erin"], 1, "CNY"),
            Code::FailedPrecondition,
            "BATCH_NOT_LOCKED",
        ),
        (
            pay("place-alice", &alice, alice_due, "CNY"),
            Code::FailedPrecondition,
            "BALANCE_ALREADY_PAID",
        ),
    ];
    // A refusal names its rule; a bad field is named in the `field` metadata.
    for (req, code, why) in refusals {
        let key = req.idempotency_key.clone();
        let s = c.preorders.pay_balance(req).await.unwrap_err();
        if code == Code::InvalidArgument {
            assert_refused(&s, code, "INVALID_FIELD");
            assert_eq!(
                error_meta(&s, "field").as_deref(),
                Some(why),
                "{key}: {s:?}"
            );
        } else {
            assert_refused(&s, code, why);
        }
    }
    assert_eq!(money(cmp.id.clone()).await, before);

    // Carol and Dave pay; Bob does not.
    let carol_due = 3 * TIER_6 - 3 * DEPOSIT;
    for who in ["carol", "dave"] {
        let p = get(&orders[who].id).await;
        c.preorders
            .pay_balance(pay(&format!("pay-{who}"), &p, carol_due, "CNY"))
            .await
            .unwrap();
    }

    // The balance deadline passes: the server's sweeper forfeits Bob's deposit and makes
    // both locked batches ready for planning.
    clock.advance(Duration::days(2) + Duration::minutes(1));
    let bob_id = orders["bob"].id.clone();
    eventually("bob's forfeit", || {
        let g = get(&bob_id);
        async move { g.await.status() == pb::PreorderStatus::Forfeited }
    })
    .await;
    let bob = get(&bob_id).await;
    assert_eq!(bob.money_state(), pb::MoneyState::Forfeited);
    assert_eq!(bob.deposit_forfeited, cny(2 * DEPOSIT));
    let late = c
        .preorders
        .pay_balance(pay("pay-bob", &bob, 2 * TIER_4 - 2 * DEPOSIT, "CNY"))
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);

    // The campaign deadline passes: batch 3 fails and every hold in it is released.
    clock.set(start + Duration::days(3) + Duration::minutes(1));
    let frank_id = orders["frank"].id.clone();
    eventually("batch 3 fails", || {
        let g = get(&frank_id);
        async move { g.await.money_state() == pb::MoneyState::DepositReleased }
    })
    .await;
    let batches = list_batches(&mut c, &cmp.id).await;
    let statuses: Vec<_> = batches.iter().map(|b| (b.status(), b.units)).collect();
    assert_eq!(
        statuses,
        vec![
            (pb::BatchStatus::Locked, 4),
            (pb::BatchStatus::Locked, 6),
            (pb::BatchStatus::Failed, 2),
        ]
    );
    // The batches say what left them: units stay the units each locked with, and bob's
    // 2 forfeited units are shown beside them (what an outside client missed: a batch
    // whose orders were all forfeited still looked full).
    let left: Vec<_> = batches
        .iter()
        .map(|b| {
            (
                b.units_forfeited,
                b.balance_due_by.is_some(),
                b.ready_at.is_some(),
            )
        })
        .collect();
    assert_eq!(
        left,
        vec![(2, true, true), (0, true, true), (0, false, false)]
    );
    let ready = server.store.batches_ready_for_planning(100).await.unwrap();
    let ready: Vec<_> = ready
        .iter()
        .filter(|b| b.campaign_id.as_str() == cmp.id)
        .map(|b| (b.seq, b.paid_units()))
        .collect();
    assert_eq!(ready, vec![(1, 2), (2, 6)], "bob's 2 units left batch 1");

    // Each consumer's money, to the minor unit: what they paid in net (consumer account),
    // and what each pre-order says.
    let expect: [(&str, i64, pb::MoneyState); 7] = [
        ("alice", 2 * TIER_4, pb::MoneyState::Paid),
        ("bob", 2 * DEPOSIT, pb::MoneyState::Forfeited),
        ("carol", 3 * TIER_6, pb::MoneyState::Paid),
        ("dave", 3 * TIER_6, pb::MoneyState::Paid),
        ("erin", 0, pb::MoneyState::DepositReleased),
        ("frank", 0, pb::MoneyState::DepositReleased),
        ("gina", 0, pb::MoneyState::DepositReleased),
    ];
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = ledger
            .list_ledger_entries(pb::ListLedgerEntriesRequest {
                campaign_id: cmp.id.clone(),
                page_size: 7,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut balances: HashMap<String, i64> = HashMap::new();
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for e in &entries {
        let sum: i64 = e
            .postings
            .iter()
            .map(|p| p.amount.as_ref().unwrap().minor)
            .sum();
        assert_eq!(sum, 0, "unbalanced entry {e:?}");
        *kinds.entry(e.kind.clone()).or_default() += 1;
        for p in &e.postings {
            *balances.entry(p.account.clone()).or_default() += p.amount.as_ref().unwrap().minor;
        }
    }
    for (who, paid_in, state) in expect {
        assert_eq!(
            -balances
                .get(&format!("consumer:{who}"))
                .copied()
                .unwrap_or(0),
            paid_in,
            "{who}'s net payment"
        );
        let p = get(&orders[who].id).await;
        assert_eq!(p.money_state(), state, "{who}");
    }
    let merchant = 2 * TIER_4 + 6 * TIER_6 + 2 * DEPOSIT;
    assert_eq!(balances[&format!("merchant:{}", cmp.id)], merchant);
    assert_eq!(balances[&format!("escrow:{}", cmp.id)], 0);
    assert_eq!(balances[&format!("holds:{}", cmp.id)], 0);
    assert_eq!(balances.values().sum::<i64>(), 0);
    let count = |k: &str| kinds.get(k).copied().unwrap_or(0);
    assert_eq!(
        [
            count("hold"),
            count("capture"),
            count("release"),
            count("balance"),
            count("forfeit"),
            count("settle")
        ],
        [7, 4, 3, 3, 1, 2]
    );

    let m = money(cmp.id.clone()).await;
    let deposited = (2 + 2 + 3 + 3 + 1 + 1 + 1) * DEPOSIT;
    assert_eq!(m.deposited, cny(deposited));
    assert_eq!(m.held, cny(0));
    assert_eq!(m.captured, cny(10 * DEPOSIT));
    assert_eq!(m.released, cny(3 * DEPOSIT));
    assert_eq!(m.balances_paid, cny(alice_due + 2 * carol_due));
    assert_eq!(m.balances_outstanding, cny(0));
    assert_eq!(m.forfeited, cny(2 * DEPOSIT));
    assert_eq!(m.settled, cny(2 * TIER_4 + 6 * TIER_6));
    assert_eq!(m.escrow, cny(0));
    assert_eq!(m.merchant, cny(merchant));

    let audit = server.store.ledger_audit().await.unwrap();
    assert!(
        audit.unbalanced.is_empty() && audit.hold_mismatches.is_empty(),
        "{audit:?}"
    );
    server.shutdown().await;
}

/// `storefront preorder ID` shows a pre-order whole, as `GetPreorder` does (its money, its
/// batch's stage and its ship date against the promise), and `storefront money CAMPAIGN`
/// the campaign's money as `GetCampaignMoney` does. The CLI had neither (QA 16): a user
/// the docs sent to a pre-order's ship date or to the ledger had no way there but gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_shows_a_preorder_whole_and_a_campaigns_money() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let cmp = created(&mut c, campaign_request("cli-money", 3)).await;
    let a = c
        .preorders
        .place_preorder(place("cli-a", &cmp.id, "alice", 2))
        .await
        .expect("alice")
        .into_inner();
    c.preorders
        .place_preorder(place("cli-b", &cmp.id, "bob", 1))
        .await
        .expect("bob locks");
    let api = c
        .preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: a.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    let shown: serde_json::Value =
        serde_json::from_slice(&storefront(server.addr, &["preorder", &a.id]).await).expect("JSON");
    let minor = |m: &Option<pb::Money>| m.as_ref().map(|m| m.minor);
    assert_eq!(shown["id"], a.id.as_str());
    assert_eq!(shown["status"], "PREORDER_STATUS_LOCKED", "{shown}");
    assert_eq!(shown["balance_due"].as_i64(), minor(&api.balance_due));
    assert_eq!(
        shown["deposit_captured"].as_i64(),
        minor(&api.deposit_captured)
    );
    assert!(minor(&api.balance_due).unwrap_or(0) > 0, "{api:?}");
    let ship = api
        .ship_date
        .as_ref()
        .expect("a locked batch has a ship date");
    assert_eq!(
        shown["ship_date"]["promised_by"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp()),
        ship.promised_by.as_ref().map(|t| t.seconds),
        "{shown}"
    );
    assert_eq!(shown["ship_date"]["planned"], false);
    assert_eq!(
        shown["production"].is_null(),
        api.production.is_none(),
        "{shown}"
    );

    let money = LedgerServiceClient::new(c.channel.clone())
        .get_campaign_money(pb::GetCampaignMoneyRequest {
            campaign_id: cmp.id.clone(),
        })
        .await
        .expect("money")
        .into_inner();
    let shown: serde_json::Value =
        serde_json::from_slice(&storefront(server.addr, &["money", &cmp.id]).await).expect("JSON");
    assert_eq!(shown["deposited"].as_i64(), minor(&money.deposited));
    assert_eq!(shown["captured"].as_i64(), minor(&money.captured));
    assert_eq!(
        shown["balances_outstanding"].as_i64(),
        minor(&money.balances_outstanding)
    );
    assert_eq!(shown["deposited"].as_i64(), Some(3 * 5_000), "{shown}");
    assert_eq!(shown["currency"], "CNY");
    server.shutdown().await;
}
