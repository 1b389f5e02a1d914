//! Crash tests for factory delivery: a real `c2m serve` process on a SQLite file is killed
//! with SIGKILL at random moments around storing a plan (while `RunPlanning` is in
//! flight) and around delivery (while two factory clients stream and acknowledge), and
//! restarted on the same file. The factory clients reconnect and resume from the cursor
//! the server kept. At the end each factory must hold every work order the store has for
//! it exactly once by id, with sequence numbers 1..=n and no gap, and every batch must be
//! planned exactly once (its units in live work orders equal its units). Purchase orders
//! too: each round receives part of every open order under a key, killed in flight and
//! retried with the same key after the restart; at the end every stored plan's purchase
//! orders exist exactly once, and each order's received quantity is what the distinct
//! keys sent (no receipt counted twice).
//!
//! `C2M_CRASH_ROUNDS` (default 15) sets the number of rounds, two kills each;
//! `C2M_CRASH_SEED` replays a run (the seed is printed).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use c2m_proto::v1 as pb;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

/// A factory that subscribes (resuming from the server's cursor), records and
/// acknowledges every work order, and reconnects whenever the stream breaks.
async fn factory_client(
    factory: &'static str,
    mut addr: watch::Receiver<Option<SocketAddr>>,
    received: Arc<Mutex<Received>>,
) {
    loop {
        let current = *addr.borrow_and_update();
        let Some(at) = current else {
            let _ = addr.changed().await;
            continue;
        };
        let channel = match tonic::transport::Channel::from_shared(format!("http://{at}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .connect()
            .await
        {
            Ok(ch) => ch,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut client = pb::factory_service_client::FactoryServiceClient::new(channel);
        let Ok(stream) = client
            .subscribe(pb::SubscribeRequest {
                factory_id: factory.into(),
                after_seq: None,
            })
            .await
        else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let mut stream = stream.into_inner();
        while let Ok(Some(e)) = stream.message().await {
            if let Some(pb::factory_event::Event::WorkOrder(w)) = e.event {
                received.lock().unwrap().record(factory, &w);
                let _ = client
                    .ack(pb::AckRequest {
                        factory_id: factory.into(),
                        seq: w.seq,
                    })
                    .await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(url: &str, dir: &std::path::Path) -> ServerProcess {
    ServerProcess::spawn(url, dir).await
}

async fn kill(server: &mut ServerProcess) {
    server.kill();
    let _ = server.child.wait().await;
}

/// All work orders the store has, per factory: seq -> id; and units per batch.
async fn stored(c: &mut Clients) -> (HashMap<String, BTreeMap<i64, String>>, HashMap<String, i64>) {
    let mut by_factory: HashMap<String, BTreeMap<i64, String>> = HashMap::new();
    let mut units: HashMap<String, i64> = HashMap::new();
    for w in all_work_orders(c).await {
        let prev = by_factory
            .entry(w.factory_id.clone())
            .or_default()
            .insert(w.seq, w.id.clone());
        assert!(prev.is_none(), "two stored work orders with one seq");
        for r in &w.runs {
            for b in &r.batches {
                *units.entry(b.batch_id.clone()).or_default() += b.units;
            }
        }
    }
    (by_factory, units)
}

fn purchasing(
    c: &Clients,
) -> pb::purchasing_service_client::PurchasingServiceClient<tonic::transport::Channel> {
    pb::purchasing_service_client::PurchasingServiceClient::new(c.channel.clone())
}

/// Every purchase order the store lists, by id (asserting no id is listed twice).
async fn listed_purchase_orders(c: &Clients) -> BTreeMap<String, pb::PurchaseOrder> {
    let mut out = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = purchasing(c)
            .list_purchase_orders(pb::ListPurchaseOrdersRequest {
                page_size: 100,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("list purchase orders")
            .into_inner();
        for p in page.purchase_orders {
            let id = p.id.clone();
            assert!(out.insert(id.clone(), p).is_none(), "{id} listed twice");
        }
        if page.next_page_token.is_empty() {
            return out;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_orders_arrive_exactly_once_across_sigkills() {
    let rounds: usize = std::env::var("C2M_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let seed: u64 = std::env::var("C2M_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("factory crash test: {rounds} rounds, C2M_CRASH_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("c2m.db").display());
    let mut server = start(&url, dir.path()).await;
    let mut c = Clients::connect(server.addr).await;
    // Enough ink for any number of rounds (it has no supplier; each plan reserves some).
    let catalogue = PHONE_CASES.replace("on_hand = 1.0", "on_hand = 1000.0");
    assert_ne!(catalogue, PHONE_CASES);
    import(&mut c, "import", &catalogue, pb::ImportMode::Replace)
        .await
        .expect("import");

    let (addr_tx, addr_rx) = watch::channel(Some(server.addr));
    let factories = ["dongguan-1", "ningbo-2"];
    let received: Vec<Arc<Mutex<Received>>> = factories
        .iter()
        .map(|_| Arc::new(Mutex::new(Received::default())))
        .collect();
    let clients: Vec<_> = factories
        .iter()
        .zip(&received)
        .map(|(f, r)| tokio::spawn(factory_client(f, addr_rx.clone(), r.clone())))
        .collect();

    let mut batches: HashMap<String, i64> = HashMap::new();
    // Per purchase order: what the distinct receipt keys sent.
    let mut receipts: HashMap<String, f64> = HashMap::new();
    for round in 0..rounds {
        // New demand: one batch of each product.
        for (sku, units) in [("case-a", 10 + (round as i64 % 5)), ("case-b", 12)] {
            let id = locked_batch(&mut c, &format!("r{round}-{sku}"), sku, units).await;
            batches.insert(id, units);
        }

        // Kill while the cycle runs (before, during or after the plan is stored).
        let key = format!("cycle-{round}");
        let mut planner = c.clone();
        let k = key.clone();
        let cycle = tokio::spawn(async move { run_planning(&mut planner, &k).await });
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
        kill(&mut server).await;
        let _ = addr_tx.send(None);
        let _ = cycle.await;
        server = start(&url, dir.path()).await;
        let _ = addr_tx.send(Some(server.addr));
        c = Clients::connect(server.addr).await;
        // The same key either replays the stored plan or plans the batches now.
        let plan = run_planning(&mut c, &key)
            .await
            .expect("cycle after restart");
        assert_ne!(
            plan.summary.as_ref().unwrap().status,
            pb::PlanStatus::Infeasible as i32,
            "round {round}: {:?}\n{}",
            plan.diagnosis,
            plan.scenario_toml
        );

        // Receive half of what is still to arrive on every open order, killed in flight;
        // the same key after the restart either replays the receipt or makes it.
        let open: Vec<(String, f64)> = listed_purchase_orders(&c)
            .await
            .into_values()
            .filter(|p| p.state() == pb::PurchaseOrderState::Open)
            .map(|p| (p.id, (p.quantity - p.received) / 2.0))
            .filter(|(_, q)| *q > 0.0)
            .collect();
        if !open.is_empty() {
            let receive = |id: &str, qty: f64| pb::ReceivePurchaseOrderRequest {
                idempotency_key: format!("rcv-{round}-{id}"),
                purchase_order_id: id.to_owned(),
                quantity: qty,
            };
            let first = {
                let c = c.clone();
                let reqs: Vec<_> = open.iter().map(|(id, q)| receive(id, *q)).collect();
                tokio::spawn(async move {
                    for r in reqs {
                        let _ = purchasing(&c).receive_purchase_order(r).await;
                    }
                })
            };
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..30))).await;
            kill(&mut server).await;
            let _ = addr_tx.send(None);
            let _ = first.await;
            server = start(&url, dir.path()).await;
            let _ = addr_tx.send(Some(server.addr));
            c = Clients::connect(server.addr).await;
            for (id, q) in &open {
                purchasing(&c)
                    .receive_purchase_order(receive(id, *q))
                    .await
                    .expect("the retry of a receipt");
                *receipts.entry(id.clone()).or_default() += q;
            }
        }

        // Kill again while the factories are being delivered to and acknowledging.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..60))).await;
        kill(&mut server).await;
        let _ = addr_tx.send(None);
        server = start(&url, dir.path()).await;
        let _ = addr_tx.send(Some(server.addr));
        c = Clients::connect(server.addr).await;
    }

    // Let the factories catch up, then compare with the store.
    let (expected, units) = stored(&mut c).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done = factories.iter().zip(&received).all(|(f, r)| {
            let want = expected.get(*f).map_or(0, |m| m.len());
            r.lock().unwrap().by_seq.len() >= want
        });
        if done || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut redelivered = 0;
    for (f, r) in factories.iter().zip(&received) {
        let r = r.lock().unwrap();
        let want = expected.get(*f).cloned().unwrap_or_default();
        assert_eq!(r.by_seq, want, "{f} holds exactly the stored work orders");
        let seqs: Vec<i64> = r.by_seq.keys().copied().collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "{f}: no gap in sequence numbers"
        );
        redelivered += r.deliveries - r.by_seq.len();
    }
    assert_eq!(units, batches, "every batch planned exactly once, in full");
    // Each plan's purchase orders exist once; none without its plan; receipts count once.
    let listed = listed_purchase_orders(&c).await;
    let mut of_plans: BTreeMap<String, String> = BTreeMap::new();
    let mut plan_ids: Vec<String> = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .planning
            .list_plans(pb::ListPlansRequest {
                page_size: 100,
                page_token: token.clone(),
            })
            .await
            .expect("plans")
            .into_inner();
        plan_ids.extend(page.plans.iter().map(|p| p.id.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    for id in &plan_ids {
        let plan = c
            .planning
            .get_plan(pb::GetPlanRequest {
                plan_id: id.clone(),
            })
            .await
            .expect("plan")
            .into_inner();
        let mut keys = std::collections::BTreeSet::new();
        for p in plan.purchase_orders {
            assert!(
                keys.insert((p.supplier_id.clone(), p.material_id.clone(), p.order_period)),
                "plan {id} has two orders for one supplier, material and period"
            );
            of_plans.insert(p.id.clone(), id.clone());
        }
    }
    assert_eq!(
        listed.keys().collect::<Vec<_>>(),
        of_plans.keys().collect::<Vec<_>>(),
        "the stored purchase orders are exactly the plans' purchase orders"
    );
    for (id, p) in &listed {
        let want = receipts.get(id).copied().unwrap_or(0.0);
        assert!(
            (p.received - want).abs() < 1e-6,
            "{id}: received {} but the distinct keys sent {want}",
            p.received
        );
    }
    eprintln!(
        "factory crash test: {} work orders, {} redeliveries recognised by id, {} purchase \
         orders, {} receipts",
        expected.values().map(|m| m.len()).sum::<usize>(),
        redelivered,
        listed.len(),
        receipts.len()
    );
    for t in clients {
        t.abort();
    }
    kill(&mut server).await;
}
