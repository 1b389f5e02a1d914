//! Factory delivery end to end over gRPC: two campaigns that share a material lock
//! batches, one planning cycle plans both, two factory clients each receive exactly their
//! work orders; one rejects, and the next cycle gives the batch to the other. Progress
//! reports show on the consumers' pre-orders; resuming from old and new cursors, and a
//! cursor ahead of the server. Runs on SQLite, and on PostgreSQL when `TEST_DATABASE_URL`
//! is set (as in CI).

use std::time::Duration;

use crate::common::*;
use c2m_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Code;

/// A factory's subscription, read on a task into a channel.
struct Feed {
    rx: mpsc::UnboundedReceiver<pb::FactoryEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    async fn open(c: &Clients, factory: &str, after: Option<i64>) -> Result<Feed, tonic::Status> {
        let mut client = c.factory.clone();
        let mut stream = client
            .subscribe(pb::SubscribeRequest {
                factory_id: factory.into(),
                after_seq: after,
            })
            .await?
            .into_inner();
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok(Some(e)) = stream.message().await {
                if tx.send(e).is_err() {
                    return;
                }
            }
        });
        Ok(Feed { rx, task })
    }

    /// The next work order, skipping heartbeats; panics after `within`.
    async fn work_order(&mut self, within: Duration) -> pb::WorkOrder {
        tokio::time::timeout(within, async {
            loop {
                match self.rx.recv().await.expect("stream open").event {
                    Some(pb::factory_event::Event::WorkOrder(w)) => return w,
                    _ => continue,
                }
            }
        })
        .await
        .expect("a work order arrives in time")
    }

    /// The next withdrawal notice, skipping heartbeats; panics at a work order, or after
    /// `within`.
    async fn withdrawal(&mut self, within: Duration) -> pb::WorkOrderWithdrawn {
        tokio::time::timeout(within, async {
            loop {
                match self.rx.recv().await.expect("stream open").event {
                    Some(pb::factory_event::Event::Withdrawn(w)) => return w,
                    Some(pb::factory_event::Event::WorkOrder(w)) => {
                        panic!("a work order where a withdrawal was expected: {w:?}")
                    }
                    _ => continue,
                }
            }
        })
        .await
        .expect("a withdrawal arrives in time")
    }

    /// Reads for `span` and returns the work orders seen, and whether a heartbeat came.
    async fn drain(&mut self, span: Duration) -> (Vec<pb::WorkOrder>, bool) {
        let mut orders = Vec::new();
        let mut beat = false;
        let _ = tokio::time::timeout(span, async {
            while let Some(e) = self.rx.recv().await {
                match e.event {
                    Some(pb::factory_event::Event::WorkOrder(w)) => orders.push(w),
                    Some(pb::factory_event::Event::Heartbeat(_)) => beat = true,
                    Some(pb::factory_event::Event::Withdrawn(w)) => {
                        panic!("no withdrawal is expected here: {w:?}")
                    }
                    None => {}
                }
            }
        })
        .await;
        (orders, beat)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Acknowledges `factory`'s numbers up to `seq` (0: asks the position).
async fn ack(c: &mut Clients, factory: &str, seq: i64) -> Result<pb::AckResponse, tonic::Status> {
    c.factory
        .ack(pb::AckRequest {
            factory_id: factory.into(),
            seq,
        })
        .await
        .map(|r| r.into_inner())
}

fn report(
    key: &str,
    factory: &str,
    work_order: &str,
    progress: pb::report_request::Progress,
) -> pb::ReportRequest {
    pb::ReportRequest {
        idempotency_key: key.into(),
        factory_id: factory.into(),
        work_order_id: work_order.into(),
        progress: Some(progress),
    }
}

/// Units of each batch in the work order, over all its runs (a batch may be made in
/// runs of several periods).
fn batches_of(w: &pb::WorkOrder) -> Vec<(String, i64)> {
    let mut out: std::collections::BTreeMap<String, i64> = Default::default();
    for b in w.runs.iter().flat_map(|r| &r.batches) {
        *out.entry(b.batch_id.clone()).or_default() += b.units;
    }
    out.into_iter().collect()
}

async fn stage_of(c: &mut Clients, preorder: &str) -> Option<pb::BatchProduction> {
    c.preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: preorder.into(),
        })
        .await
        .expect("pre-order")
        .into_inner()
        .production
}

fn stage(p: &Option<pb::BatchProduction>) -> pb::ProductionStage {
    p.as_ref()
        .map(|p| p.stage())
        .unwrap_or(pb::ProductionStage::Unspecified)
}

async fn two_factories_one_rejects_and_the_batch_moves(server_addr: std::net::SocketAddr) {
    let mut c = Clients::connect(server_addr).await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let a = locked_batch(&mut c, "cmp-a", "case-a", 20).await;
    let b = locked_batch(&mut c, "cmp-b", "case-b", 15).await;
    let a_order = c
        .preorders
        .list_preorders(pb::ListPreordersRequest {
            consumer_id: "consumer-1".into(),
            campaign_id: String::new(),
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .preorders
        .into_iter()
        .find(|p| p.batch_id == a)
        .expect("the pre-order that locked batch a");
    assert_eq!(
        stage(&a_order.production),
        pb::ProductionStage::AwaitingPlan,
        "a locked, paid batch waits for planning"
    );

    // Both factories subscribe before anything is planned: the stream opens with a
    // heartbeat and stays quiet.
    let mut dongguan = Feed::open(&c, "dongguan-1", None).await.expect("subscribe");
    let mut ningbo = Feed::open(&c, "ningbo-2", None).await.expect("subscribe");
    let (none, beat) = dongguan.drain(Duration::from_millis(700)).await;
    assert!(none.is_empty() && beat);

    // One cycle plans both campaigns; each factory receives exactly its own work order.
    let plan = run_planning(&mut c, "cycle-1").await.expect("cycle");
    assert_eq!(plan.work_orders.len(), 2, "{plan:?}");
    let w_dongguan = dongguan.work_order(Duration::from_secs(5)).await;
    let w_ningbo = ningbo.work_order(Duration::from_secs(5)).await;
    assert_eq!(w_dongguan.factory_id, "dongguan-1");
    assert_eq!(w_ningbo.factory_id, "ningbo-2");
    assert_eq!((w_dongguan.seq, w_ningbo.seq), (1, 1));
    assert_eq!(batches_of(&w_dongguan), vec![(b.clone(), 15)]);
    assert_eq!(batches_of(&w_ningbo), vec![(a.clone(), 20)]);
    for w in &plan.work_orders {
        let delivered = if w.factory_id == "dongguan-1" {
            &w_dongguan
        } else {
            &w_ningbo
        };
        assert_eq!(w.id, delivered.id, "the stream sends the stored work order");
    }
    assert_eq!(
        stage(&stage_of(&mut c, &a_order.id).await),
        pb::ProductionStage::Planned
    );
    let (more, _) = dongguan.drain(Duration::from_millis(300)).await;
    assert!(more.is_empty(), "nothing is sent twice on one stream");

    // Acks: idempotent, out of order harmless, never ahead.
    let ack = |factory: &str, seq: i64| pb::AckRequest {
        factory_id: factory.into(),
        seq,
    };
    let r = c
        .factory
        .ack(ack("ningbo-2", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.acked_seq, r.last_seq), (1, 1));
    c.factory.ack(ack("ningbo-2", 1)).await.expect("twice");
    // 0 acknowledges nothing (what a heartbeat reports before any ack): the position.
    let r = c
        .factory
        .ack(ack("ningbo-2", 0))
        .await
        .expect("ack 0")
        .into_inner();
    assert_eq!((r.acked_seq, r.last_seq), (1, 1));
    let err = c.factory.ack(ack("ningbo-2", -1)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let err = c.factory.ack(ack("ningbo-2", 7)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");

    // A factory cannot report on another's work order.
    let err = c
        .factory
        .report(report(
            "steal",
            "ningbo-2",
            &w_dongguan.id,
            pb::report_request::Progress::Accepted(pb::Accepted {}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // ningbo-2 rejects: case-a's batch goes back to the queue with ningbo-2 excluded.
    let rejected = c
        .factory
        .report(report(
            "reject-1",
            "ningbo-2",
            &w_ningbo.id,
            pb::report_request::Progress::Rejected(pb::Rejected {
                reason: "mould cracked".into(),
            }),
        ))
        .await
        .expect("reject")
        .into_inner();
    assert_eq!(rejected.state(), pb::WorkOrderState::Rejected);
    assert_eq!(rejected.requeued_batch_ids, vec![a.clone()]);
    let q = c
        .planning
        .list_queued_batches(pb::ListQueuedBatchesRequest {})
        .await
        .unwrap()
        .into_inner()
        .batches;
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].batch.as_ref().unwrap().id, a);
    assert_eq!(q[0].excluded_factories, vec!["ningbo-2".to_owned()]);
    // The planners see why (the reason was stored and shown nowhere: QA 14).
    let why: Vec<(&str, &str, bool)> = q[0]
        .rejections
        .iter()
        .map(|x| {
            (
                x.factory_id.as_str(),
                x.reason.as_str(),
                x.rejected_at.is_some(),
            )
        })
        .collect();
    assert_eq!(why, vec![("ningbo-2", "mould cracked", true)]);
    assert_eq!(q[0].units_to_plan, 20);
    assert_eq!(
        stage(&stage_of(&mut c, &a_order.id).await),
        pb::ProductionStage::AwaitingPlan
    );

    // The next cycle gives case-a to dongguan-1, the only factory left for it.
    let replan = run_planning(&mut c, "cycle-2").await.expect("replan");
    let scenario = c2m_planner::Scenario::from_toml_str(&replan.scenario_toml).unwrap();
    assert!(
        scenario
            .factories
            .iter()
            .find(|f| f.id == "ningbo-2")
            .is_none_or(|f| f.lines.iter().all(|l| l.sku != "case-a")),
        "the stored scenario has no case-a line at ningbo-2"
    );
    assert_eq!(replan.work_orders.len(), 1);
    let moved = dongguan.work_order(Duration::from_secs(5)).await;
    assert_eq!(moved.seq, 2);
    assert_eq!(batches_of(&moved), vec![(a.clone(), 20)]);
    let (extra, _) = ningbo.drain(Duration::from_millis(700)).await;
    assert!(extra.is_empty(), "ningbo-2 gets nothing more");

    // Progress shows on the consumer's pre-order, as far as the batch's slowest order.
    for (i, progress) in [
        pb::report_request::Progress::Accepted(pb::Accepted {}),
        pb::report_request::Progress::InProduction(pb::InProduction {}),
        pb::report_request::Progress::QualityCheck(pb::QualityCheck {
            passed: 20,
            failed: 0,
        }),
    ]
    .into_iter()
    .enumerate()
    {
        c.factory
            .report(report(&format!("p-{i}"), "dongguan-1", &moved.id, progress))
            .await
            .expect("progress");
    }
    assert_eq!(
        stage(&stage_of(&mut c, &a_order.id).await),
        pb::ProductionStage::QualityCheck
    );
    let shipped = c
        .factory
        .report(report(
            "ship",
            "dongguan-1",
            &moved.id,
            pb::report_request::Progress::Shipped(pb::Shipped {
                quantities: vec![pb::ShippedQuantity {
                    sku: "case-a".into(),
                    quantity: 20,
                }],
            }),
        ))
        .await
        .expect("ship")
        .into_inner();
    assert_eq!(shipped.state(), pb::WorkOrderState::Shipped);
    let p = stage_of(&mut c, &a_order.id).await;
    assert_eq!(stage(&p), pb::ProductionStage::Shipped);
    assert_eq!(p.unwrap().units_shipped, 20);
    let err = c
        .factory
        .report(report(
            "bad",
            "dongguan-1",
            &moved.id,
            pb::report_request::Progress::QualityCheck(pb::QualityCheck {
                passed: -1,
                failed: 0,
            }),
        ))
        .await
        .unwrap_err();
    assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(
        error_meta(&err, "field").as_deref(),
        Some("quality_check.passed")
    );

    // Resuming: from an old cursor everything after it, by the same ids; without a cursor
    // after the last ack; ahead of the server is an error, not silence.
    drop(dongguan);
    let mut again = Feed::open(&c, "dongguan-1", Some(0)).await.expect("resume");
    let first = again.work_order(Duration::from_secs(5)).await;
    let second = again.work_order(Duration::from_secs(5)).await;
    assert_eq!(
        (first.id.as_str(), second.id.as_str()),
        (w_dongguan.id.as_str(), moved.id.as_str())
    );
    c.factory.ack(ack("dongguan-1", 2)).await.expect("ack");
    c.factory
        .ack(ack("dongguan-1", 1))
        .await
        .expect("older ack is harmless");
    let mut after_ack = Feed::open(&c, "dongguan-1", None).await.expect("resume");
    let (none, beat) = after_ack.drain(Duration::from_millis(700)).await;
    assert!(
        none.is_empty() && beat,
        "nothing after the acknowledged cursor"
    );
    let err = Feed::open(&c, "dongguan-1", Some(3))
        .await
        .err()
        .expect("ahead");
    assert_refused(&err, Code::OutOfRange, "CURSOR_AHEAD");
    assert_eq!(error_meta(&err, "last").as_deref(), Some("2"), "{err:?}");
    let err = Feed::open(&c, "nowhere-9", None)
        .await
        .err()
        .expect("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = Feed::open(&c, "", None).await.err().expect("empty");
    assert_eq!(err.code(), Code::InvalidArgument);
}

/// Runs `case` against an in-process server on a fresh SQLite store.
async fn on_sqlite<F: std::future::Future<Output = ()>>(
    case: impl FnOnce(std::net::SocketAddr) -> F,
) {
    let server = TestServer::sqlite().await;
    case(server.addr).await;
    server.shutdown().await;
}

/// Runs `case` against an in-process server on a fresh PostgreSQL database (skipped, and
/// said so, without `TEST_DATABASE_URL`; refused in CI).
async fn on_postgres<F: std::future::Future<Output = ()>>(
    case: impl FnOnce(std::net::SocketAddr) -> F,
) {
    let Some(admin) = pg_admin_url() else { return };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let server = TestServer::with_database(&url).await;
    case(server.addr).await;
    server.shutdown().await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_factories_one_rejects_and_the_batch_moves() {
    on_sqlite(two_factories_one_rejects_and_the_batch_moves).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_factories_one_rejects_and_the_batch_moves() {
    on_postgres(two_factories_one_rejects_and_the_batch_moves).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_cleanly_when_the_server_shuts_down() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let mut feed = Feed::open(&c, "dongguan-1", None).await.expect("subscribe");
    let (_, beat) = feed.drain(Duration::from_millis(300)).await;
    assert!(beat);
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown does not wait for open streams forever");
}

/// A factory's counts are checked without overflowing: a shipment near `i64::MAX` after a
/// first part (it wrapped to a negative total that passed the "not more than ordered" check;
/// in a debug build it panicked inside SQLite's one writer, after which every write of every
/// caller failed as UNAVAILABLE until a restart), a quality check whose counts add past
/// `i64::MAX`, or one counting more units than the work order makes, are refused naming the
/// field; the tally is unchanged and the store takes the next write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_counts_from_a_factory_are_refused_and_the_store_writes_on() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let wo = planned_case_a(&mut c).await;
    let (factory, made): (&str, i64) = (&wo.factory_id, wo.runs.iter().map(|r| r.quantity).sum());
    for (i, progress) in [
        pb::report_request::Progress::Accepted(pb::Accepted {}),
        pb::report_request::Progress::InProduction(pb::InProduction {}),
        check(made, 0),
        ship_case_a(1),
    ]
    .into_iter()
    .enumerate()
    {
        c.factory
            .report(report(&format!("p-{i}"), factory, &wo.id, progress))
            .await
            .expect("progress");
    }

    for (key, progress, field) in [
        (
            "huge-ship",
            ship_case_a(i64::MAX),
            "shipped.quantities[case-a]",
        ),
        ("huge-check", check(i64::MAX, i64::MAX), "quality_check"),
        ("over-check", check(made + 1, 0), "quality_check"),
    ] {
        let err = c
            .factory
            .report(report(key, factory, &wo.id, progress))
            .await
            .expect_err(key);
        assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(error_meta(&err, "field").as_deref(), Some(field), "{key}");
    }

    // The store still writes, and the tally is what the accepted reports made it.
    let rest = c
        .factory
        .report(report("rest", factory, &wo.id, ship_case_a(made - 1)))
        .await
        .expect("the rest ships")
        .into_inner();
    assert_eq!(rest.state(), pb::WorkOrderState::Shipped);
    assert_eq!(rest.qc_passed, made);
    assert_eq!(
        rest.shipped
            .iter()
            .map(|s| (s.sku.as_str(), s.quantity))
            .collect::<Vec<_>>(),
        vec![("case-a", made)]
    );
    server.shutdown().await;
}

/// The phone-case catalogue imported, a locked batch of 20 `case-a`, and the work order a
/// planning cycle makes of it.
async fn planned_case_a(c: &mut Clients) -> pb::WorkOrder {
    import(c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    locked_batch(c, "cmp-a", "case-a", 20).await;
    let plan = run_planning(c, "cycle").await.expect("plan");
    plan.work_orders.first().expect("a work order").clone()
}

/// A shipment of `n` units of `case-a`.
fn ship_case_a(n: i64) -> pb::report_request::Progress {
    pb::report_request::Progress::Shipped(pb::Shipped {
        quantities: vec![pb::ShippedQuantity {
            sku: "case-a".into(),
            quantity: n,
        }],
    })
}

/// A quality check.
fn check(passed: i64, failed: i64) -> pb::report_request::Progress {
    pb::report_request::Progress::QualityCheck(pb::QualityCheck { passed, failed })
}

/// A work order shipped in full takes no further shipment or quality check, and the
/// refusal (`WORK_ORDER_STATE`) says why in its message and its `report`: the work order is
/// shipped in full. It used to say a further shipment had "no quality check reported" and
/// a further check that "production has not started", of a work order that had been made,
/// checked and shipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_a_shipped_work_order_are_refused_as_shipped_in_full() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let wo = planned_case_a(&mut c).await;
    let (factory, made): (&str, i64) = (&wo.factory_id, wo.runs.iter().map(|r| r.quantity).sum());
    let mut last = None;
    for (i, progress) in [
        pb::report_request::Progress::Accepted(pb::Accepted {}),
        pb::report_request::Progress::InProduction(pb::InProduction {}),
        check(made, 0),
        ship_case_a(made),
    ]
    .into_iter()
    .enumerate()
    {
        let done = c
            .factory
            .report(report(&format!("p-{i}"), factory, &wo.id, progress))
            .await
            .expect("progress")
            .into_inner();
        last = Some(done.state());
    }
    assert_eq!(last, Some(pb::WorkOrderState::Shipped));

    for (key, progress, what) in [
        ("ship-again", ship_case_a(1), "a shipment"),
        ("check-again", check(1, 0), "a quality check"),
    ] {
        let err = c
            .factory
            .report(report(key, factory, &wo.id, progress))
            .await
            .expect_err(key);
        assert_refused(&err, Code::FailedPrecondition, "WORK_ORDER_STATE");
        let said = format!("{what} (the work order is shipped in full)");
        assert_eq!(
            error_meta(&err, "state").as_deref(),
            Some("shipped"),
            "{key}"
        );
        assert_eq!(error_meta(&err, "report").as_deref(), Some(said.as_str()));
        assert!(err.message().contains(&said), "{key}: {}", err.message());
    }
    server.shutdown().await;
}

/// The `factory` example as a user runs it (`--progress`), its server killed while it
/// works through its work orders and started again on the same address and database: the
/// example resubscribes and finishes every work order, as its docs promise ("survives
/// disconnects"). It used to exit with `Unknown: transport error` (and a hint about TLS)
/// when the server went away during a report or an acknowledgement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_example_carries_on_when_the_server_restarts_mid_work_order() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    const ORDERS: usize = 12;
    let exe = tokio::task::spawn_blocking(|| example_binary("factory"))
        .await
        .expect("build");
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("c2m.db").display());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let listen = format!("127.0.0.1:{port}");
    let flags = ["--listen", listen.as_str(), "--plan-every", "0"];
    let mut server = ServerProcess::spawn_with(&url, dir.path(), &flags).await;
    let mut c = Clients::connect(server.addr).await;
    // One factory left, so every cycle's work order is dongguan-1's.
    phone_cases_made_by_dongguan_only(&mut c).await;
    for i in 0..ORDERS {
        locked_batch(&mut c, &format!("cmp-{i}"), "case-a", 10).await;
        let plan = run_planning(&mut c, &format!("cycle-{i}"))
            .await
            .expect("plan");
        assert_eq!(plan.work_orders.len(), 1);
    }

    let mut factory = tokio::process::Command::new(exe)
        .args([
            "--addr",
            &format!("http://{listen}"),
            "--factory",
            "dongguan-1",
        ])
        .args(["--progress", "--exit-after", &ORDERS.to_string()])
        .arg("--cursor-file")
        .arg(dir.path().join("dongguan-1.cursor"))
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the factory example starts");
    let mut out = BufReader::new(factory.stdout.take().expect("stdout")).lines();
    let mut err = BufReader::new(factory.stderr.take().expect("stderr")).lines();
    let errors = tokio::spawn(async move {
        let mut all = String::new();
        while let Ok(Some(l)) = err.next_line().await {
            all.push_str(&l);
            all.push('\n');
        }
        all
    });
    // The first work order done: the rest are being worked on when the server dies.
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(l)) = out.next_line().await {
            if l.contains("reported shipped") {
                return;
            }
        }
        panic!("the example's output ended before a shipment");
    })
    .await
    .expect("a first shipment within a minute");
    server.kill();
    server.child.wait().await.expect("killed");
    let server = ServerProcess::spawn_with(&url, dir.path(), &flags).await;
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });

    let status = tokio::time::timeout(Duration::from_secs(120), factory.wait())
        .await
        .expect("the example finishes its work orders")
        .expect("exit status");
    let _ = drain.await;
    let errors = errors.await.unwrap_or_default();
    assert!(status.success(), "the example exited {status:?}:\n{errors}");
    let mut c = Clients::connect(server.addr).await;
    let orders = all_work_orders(&mut c).await;
    assert_eq!(orders.len(), ORDERS);
    assert!(
        orders
            .iter()
            .all(|w| w.state() == pb::WorkOrderState::Shipped),
        "every work order shipped: {:?}",
        orders
            .iter()
            .map(|w| (w.seq, w.state()))
            .collect::<Vec<_>>()
    );
    let acked = ack(&mut c, "dongguan-1", 1).await.expect("ack");
    assert_eq!(
        acked.acked_seq, ORDERS as i64,
        "the last acknowledgement arrived"
    );
}

/// The `factory` example built, a server holding the phone-case catalogue, and a
/// temporary folder for the example's files: where the example's own checks are tested.
async fn factory_example_on_phone_cases() -> (std::path::PathBuf, TestServer, tempfile::TempDir) {
    let exe = tokio::task::spawn_blocking(|| example_binary("factory"))
        .await
        .expect("build");
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let dir = tempfile::tempdir().expect("temporary folder");
    (exe, server, dir)
}

/// The `factory` example with a cursor file from another server's data (the server was
/// started afresh, the file stayed) stops, as a cursor ahead of the server will not heal,
/// and names the file to delete: the refusal alone ("the factory's cursor does not belong
/// to this server's data") left the user to guess that `factory-<id>.cursor` was meant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_example_names_a_stale_cursor_file() {
    let (exe, server, dir) = factory_example_on_phone_cases().await;
    let cursor = dir.path().join("dongguan-1.cursor");
    std::fs::write(&cursor, "7\n").expect("cursor file");
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(exe)
            .args(["--addr", &format!("http://{}", server.addr)])
            .args(["--factory", "dongguan-1", "--cursor-file"])
            .arg(&cursor)
            .arg("--data-dir")
            .arg(dir.path())
            .output(),
    )
    .await
    .expect("the example stops at once")
    .expect("the example runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("OutOfRange"), "{stderr}");
    assert!(
        stderr.contains(&format!("hint: {} holds work order #7", cursor.display()))
            && stderr.contains("delete the file"),
        "{stderr}"
    );
    server.shutdown().await;
}

/// The `factory` example given a work order already shipped (its cursor file reset to 0)
/// has nothing to report on it: it says so, and acknowledges it. It used to send every
/// step again and print their replayed first answers as if current ("reported accepted:
/// now Accepted" for a shipped work order: QA 14).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_example_reports_nothing_on_a_work_order_already_shipped() {
    let (exe, server, dir) = factory_example_on_phone_cases().await;
    let mut c = server.clients().await;
    phone_cases_made_by_dongguan_only(&mut c).await;
    locked_batch(&mut c, "cmp-0", "case-a", 10).await;
    run_planning(&mut c, "cycle-0").await.expect("plan");
    let cursor = dir.path().join("dongguan-1.cursor");
    let run = || async {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(&exe)
                .args(["--addr", &format!("http://{}", server.addr)])
                .args(["--factory", "dongguan-1", "--progress", "--exit-after", "1"])
                .arg("--cursor-file")
                .arg(&cursor)
                .arg("--data-dir")
                .arg(dir.path())
                .output(),
        )
        .await
        .expect("the example ends after one work order")
        .expect("the example runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let first = run().await;
    assert!(first.contains("reported shipped"), "{first}");
    std::fs::write(&cursor, "0\n").expect("cursor reset");
    let again = run().await;
    assert!(
        again.contains("already Shipped: nothing left to report") && !again.contains("reported"),
        "{again}"
    );
    let position = ack(&mut c, "dongguan-1", 0).await.expect("position");
    assert_eq!((position.acked_seq, position.last_seq), (1, 1));
    server.shutdown().await;
}

/// A factory has one stream at a time across replicas. With two `c2m serve` processes on
/// one PostgreSQL database (polling once a minute, so only a wake-up can be this quick),
/// dongguan-1 subscribes through the first, then through the second: the first stream ends
/// with ABORTED (`STREAM_REPLACED`) within seconds, having sent no work order, and a plan
/// stored afterwards, through the first replica, reaches the second replica's stream only,
/// and so does the withdrawal of its work order when the merchant cancels through the first.
/// Before the claim was kept in the store, the rule held per process: both streams stayed
/// open and both received the work order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_factory_resubscribing_through_another_replica_ends_its_old_stream() {
    let Some(admin) = pg_admin_url() else { return };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let dir = tempfile::tempdir().expect("temporary folder");
    let flags = ["--plan-every", "0", "--factory-poll", "60s"];
    let one = ServerProcess::spawn_with(&url, dir.path(), &flags).await;
    let two = ServerProcess::spawn_with(&url, dir.path(), &flags).await;
    let mut c1 = Clients::connect(one.addr).await;
    let c2 = Clients::connect(two.addr).await;
    // One factory left, so the cycle's work order is dongguan-1's.
    phone_cases_made_by_dongguan_only(&mut c1).await;
    let subscribe = |c: &Clients| {
        let mut factory = c.factory.clone();
        async move {
            factory
                .subscribe(pb::SubscribeRequest {
                    factory_id: "dongguan-1".into(),
                    after_seq: None,
                })
                .await
                .expect("subscribe")
                .into_inner()
        }
    };
    let mut old = subscribe(&c1).await;
    old.message().await.expect("first heartbeat").expect("open");
    let mut new = Feed::open(&c2, "dongguan-1", None)
        .await
        .expect("subscribe through the second replica");

    // The old stream ends, having sent nothing but heartbeats.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match old.message().await {
                Ok(Some(e)) => assert!(
                    !matches!(e.event, Some(pb::factory_event::Event::WorkOrder(_))),
                    "a work order on the replaced stream: {e:?}"
                ),
                Ok(None) => panic!("closed without a status"),
                Err(s) => return s,
            }
        }
    })
    .await
    .expect("the first replica's stream ends within seconds");
    assert_refused(&ended, Code::Aborted, "STREAM_REPLACED");

    // A plan stored afterwards, through the first replica, reaches the second's stream.
    locked_batch(&mut c1, "cmp-a", "case-a", 10).await;
    let plan = run_planning(&mut c1, "cycle-1").await.expect("cycle");
    assert_eq!(plan.work_orders.len(), 1, "{plan:?}");
    assert_eq!(plan.work_orders[0].factory_id, "dongguan-1");
    let got = new.work_order(Duration::from_secs(10)).await;
    assert_eq!(
        (got.id.as_str(), got.seq),
        (plan.work_orders[0].id.as_str(), 1)
    );
    let after = old.message().await;
    assert!(
        matches!(after, Ok(None) | Err(_)),
        "the replaced stream stays ended: {after:?}"
    );
    let (more, _) = new.drain(Duration::from_millis(500)).await;
    assert!(more.is_empty(), "sent once: {more:?}");

    // The merchant cancels through the first replica before dongguan-1 accepts: the work
    // order is withdrawn, and the second replica's stream tells the factory within
    // seconds (it polls once a minute: only the cancel's NOTIFY can wake it this soon).
    let campaigns = c1
        .campaigns
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 10,
            page_token: String::new(),
        })
        .await
        .expect("campaigns")
        .into_inner()
        .campaigns;
    let out = cancel_campaign(&mut c1, "cancel-a", &campaigns[0].id)
        .await
        .expect("cancel");
    assert_eq!(out.work_orders_withdrawn, 1, "{out:?}");
    let notice = new.withdrawal(Duration::from_secs(10)).await;
    assert_eq!(
        (notice.seq, notice.work_order_id.as_str()),
        (2, got.id.as_str())
    );

    drop(new);
    drop(one);
    drop(two);
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}

/// The phone-case catalogue with ningbo-2 removed: every work order is dongguan-1's.
async fn phone_cases_made_by_dongguan_only(c: &mut Clients) {
    import(c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    c.catalogue
        .delete_catalogue_entry(pb::DeleteCatalogueEntryRequest {
            idempotency_key: "no-ningbo".into(),
            kind: pb::CatalogueKind::Factory as i32,
            id: "ningbo-2".into(),
        })
        .await
        .expect("delete ningbo-2");
}

/// The `factory` example refuses what it cannot work with before it subscribes: a
/// `--reject` without a reason (the server refuses it, but only at the first work order,
/// after printing it), a cursor file in a directory that does not exist (found only after
/// the first work order had been reported all the way to shipped, with an error naming no
/// file) and a cursor file holding a negative number. Each names what is wrong and the
/// work order is left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_example_refuses_a_bad_reason_or_cursor_file_before_any_report() {
    let (exe, server, dir) = factory_example_on_phone_cases().await;
    let negative = dir.path().join("negative.cursor");
    std::fs::write(&negative, "-3\n").expect("cursor file");
    let missing = dir.path().join("no-such-dir").join("dongguan-1.cursor");
    let run = |extra: Vec<String>| {
        let exe = exe.clone();
        let addr = format!("http://{}", server.addr);
        let data = dir.path().to_owned();
        async move {
            tokio::time::timeout(
                Duration::from_secs(60),
                tokio::process::Command::new(exe)
                    .args(["--addr", &addr, "--factory", "dongguan-1", "--data-dir"])
                    .arg(&data)
                    .args(["--exit-after", "1"])
                    .args(extra)
                    .output(),
            )
            .await
            .expect("the example stops at once")
            .expect("the example runs")
        }
    };
    let cases = [
        (
            vec!["--reject".to_owned(), " ".to_owned()],
            "a rejection must say why".to_owned(),
        ),
        (
            vec![
                "--progress".to_owned(),
                "--cursor-file".to_owned(),
                missing.display().to_string(),
            ],
            format!("cannot write the cursor file {}", missing.display()),
        ),
        (
            vec![
                "--progress".to_owned(),
                "--cursor-file".to_owned(),
                negative.display().to_string(),
            ],
            format!("{} holds -3", negative.display()),
        ),
    ];
    for (args, says) in cases {
        let out = run(args.clone()).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains(&says),
            "{args:?}: expected {says:?} in {stderr}"
        );
        assert!(
            !String::from_utf8_lossy(&out.stdout).contains("subscribing"),
            "{args:?}: refused before subscribing: {out:?}"
        );
    }
    assert!(!missing.parent().unwrap().exists());
    server.shutdown().await;
}

/// A merchant cancels a campaign whose batch is planned but not yet accepted: the factory's
/// open stream is told at once (a `withdrawn` entry numbered after the work order), its
/// reports on the work order are refused as withdrawn, the consumer is refunded, and the
/// plan shows the work order WITHDRAWN. A factory that resumes from the start gets the work
/// order (WITHDRAWN) and then the notice, and acknowledges the notice's number.
async fn a_cancel_withdraws_a_work_order_the_factory_has_not_accepted(
    server_addr: std::net::SocketAddr,
) {
    let mut c = Clients::connect(server_addr).await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let cmp = ready_campaign(&mut c, "cmp-w", "case-a").await;
    let order = c
        .preorders
        .place_preorder(place("w-order", &cmp.id, "consumer-1", 12))
        .await
        .expect("order")
        .into_inner();
    assert_eq!(order.status, pb::PreorderStatus::Locked as i32);
    let plan = run_planning(&mut c, "cycle-w").await.expect("cycle");
    let [planned] = &plan.work_orders[..] else {
        panic!("one work order: {plan:?}");
    };
    let factory = planned.factory_id.clone();
    let mut feed = Feed::open(&c, &factory, None).await.expect("subscribe");
    let w = feed.work_order(Duration::from_secs(5)).await;
    assert_eq!((w.id.as_str(), w.seq), (planned.id.as_str(), 1));
    assert_eq!(w.state(), pb::WorkOrderState::Issued);

    let out = cancel_campaign(&mut c, "cancel-w", &cmp.id)
        .await
        .expect("cancel");
    assert_eq!(
        (
            out.work_orders_withdrawn,
            out.batches_in_production,
            out.preorders_refunded
        ),
        (1, 0, 1),
        "{out:?}"
    );
    assert_eq!(
        out.refunded.as_ref().map(|m| m.minor),
        Some(12 * order.unit_price.as_ref().expect("price").minor),
        "the full price comes back"
    );

    let notice = feed.withdrawal(Duration::from_secs(5)).await;
    assert_eq!(
        (
            notice.seq,
            notice.work_order_id.as_str(),
            notice.work_order_seq
        ),
        (2, w.id.as_str(), 1)
    );
    assert!(notice.reason.contains(&cmp.id), "{notice:?}");
    assert!(notice.at.is_some());

    // Every report on it is refused, typed, and says withdrawn.
    for (key, progress) in [
        (
            "accept-w",
            pb::report_request::Progress::Accepted(pb::Accepted {}),
        ),
        (
            "start-w",
            pb::report_request::Progress::InProduction(pb::InProduction {}),
        ),
    ] {
        let err = c
            .factory
            .report(report(key, &factory, &w.id, progress))
            .await
            .expect_err("a withdrawn work order takes no report");
        assert_refused(&err, Code::FailedPrecondition, "WORK_ORDER_STATE");
        assert_eq!(error_meta(&err, "state").as_deref(), Some("withdrawn"));
    }
    let stored = c
        .planning
        .get_plan(pb::GetPlanRequest {
            plan_id: plan.summary.as_ref().expect("summary").id.clone(),
        })
        .await
        .expect("plan")
        .into_inner();
    assert_eq!(stored.work_orders[0].state(), pb::WorkOrderState::Withdrawn);
    let p = c
        .preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: order.id.clone(),
        })
        .await
        .expect("pre-order")
        .into_inner();
    assert_eq!(p.status(), pb::PreorderStatus::Cancelled);
    let q = c
        .planning
        .list_queued_batches(pb::ListQueuedBatchesRequest {})
        .await
        .expect("queue")
        .into_inner();
    assert!(q.batches.is_empty(), "nothing to plan again: {q:?}");

    // Resuming from the start: the work order as it is now, then the notice; the notice's
    // number is the factory's last and is acknowledged like a work order's.
    drop(feed);
    let mut again = Feed::open(&c, &factory, Some(0))
        .await
        .expect("resubscribe");
    let redelivered = again.work_order(Duration::from_secs(5)).await;
    assert_eq!(
        (redelivered.id.as_str(), redelivered.state()),
        (w.id.as_str(), pb::WorkOrderState::Withdrawn)
    );
    assert_eq!(again.withdrawal(Duration::from_secs(5)).await, notice);
    let acked = ack(&mut c, &factory, 2).await.expect("ack the notice");
    assert_eq!((acked.acked_seq, acked.last_seq), (2, 2));
    let err = ack(&mut c, &factory, 3).await.expect_err("past the notice");
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    let (rest, _) = again.drain(Duration::from_millis(300)).await;
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_cancel_withdraws_a_work_order_the_factory_has_not_accepted() {
    on_sqlite(a_cancel_withdraws_a_work_order_the_factory_has_not_accepted).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_cancel_withdraws_a_work_order_the_factory_has_not_accepted() {
    on_postgres(a_cancel_withdraws_a_work_order_the_factory_has_not_accepted).await;
}

/// The `factory` example after a cancel withdrew its first work order: resuming from the
/// start, it receives that work order already withdrawn and leaves it, prints the notice
/// and acknowledges its number, then makes the next work order (numbered after the
/// notice) all the way to shipped and exits. It used to know nothing of withdrawals: the
/// notice was an event it dropped, and its reports on the withdrawn work order were
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factory_example_leaves_a_withdrawn_work_order_and_makes_the_next() {
    let (exe, server, dir) = factory_example_on_phone_cases().await;
    let mut c = server.clients().await;
    phone_cases_made_by_dongguan_only(&mut c).await;
    let gone = ready_campaign(&mut c, "cmp-gone", "case-a").await;
    c.preorders
        .place_preorder(place("gone-order", &gone.id, "consumer-1", 10))
        .await
        .expect("order");
    let first = run_planning(&mut c, "cycle-1").await.expect("plan");
    let out = cancel_campaign(&mut c, "cancel-gone", &gone.id)
        .await
        .expect("cancel");
    assert_eq!(out.work_orders_withdrawn, 1);
    locked_batch(&mut c, "cmp-kept", "case-a", 10).await;
    let second = run_planning(&mut c, "cycle-2").await.expect("plan");
    assert_eq!(second.work_orders[0].seq, 3, "after the notice's number");

    let run = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(exe)
            .args(["--addr", &format!("http://{}", server.addr)])
            .args(["--factory", "dongguan-1", "--progress", "--exit-after", "1"])
            .arg("--cursor-file")
            .arg(dir.path().join("dongguan-1.cursor"))
            .arg("--data-dir")
            .arg(dir.path())
            .output(),
    )
    .await
    .expect("the example finishes")
    .expect("the example runs");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    let withdrawn = &first.work_orders[0].id;
    assert!(
        stdout.contains(&format!(
            "work order #1 {withdrawn} withdrawn (#2): campaign"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("withdrawn: nothing to make"), "{stdout}");
    let orders = all_work_orders(&mut c).await;
    let states: Vec<_> = orders.iter().map(|w| (w.seq, w.state())).collect();
    assert!(
        states.contains(&(1, pb::WorkOrderState::Withdrawn))
            && states.contains(&(3, pb::WorkOrderState::Shipped)),
        "{states:?}"
    );
    let acked = ack(&mut c, "dongguan-1", 0).await.expect("position");
    assert_eq!((acked.acked_seq, acked.last_seq), (3, 3));
    server.shutdown().await;
}
