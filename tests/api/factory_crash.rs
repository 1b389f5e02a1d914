//! Crash tests for factory delivery: a real `c2m serve` process on a SQLite file is killed
//! with SIGKILL at random moments around storing a plan (while `RunPlanning` is in
//! flight) and around delivery (while two factory clients stream and acknowledge), and
//! restarted on the same file. The factory clients reconnect and resume from the cursor
//! the server kept. At the end each factory must hold every work order the store has for
//! it exactly once by id, with sequence numbers 1..=n and no gap, and every batch must be
//! planned exactly once (its units in live work orders equal its units).
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
    eprintln!(
        "factory crash test: {} work orders, {} redeliveries recognised by id, {} kills",
        expected.values().map(|m| m.len()).sum::<usize>(),
        redelivered,
        rounds * 2
    );
    for t in clients {
        t.abort();
    }
    kill(&mut server).await;
}
