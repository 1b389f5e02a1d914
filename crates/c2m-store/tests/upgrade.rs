//! A store written by an older c2m, opened by this one: nothing it wrote is lost or changed,
//! and work goes on. The stores were made by the real binaries of two older commits through
//! their gRPC API and saved as SQL text: 18c2971 (migrations 0001-0005, before events,
//! levers and the promise) and 67dad10 (0001-0012: events, webhooks, levers, the promise,
//! purchase orders, factory streams). `tests/fixtures/upgrade-<commit>/README.md` says what
//! each holds and how it was made, and `manifest.json` what the old server answered about
//! it. Each case loads a store into a fresh database, opens it (which applies every later
//! migration) and compares with what the old server said: the tables' rows, each
//! campaign's progress and batches, each campaign's money, the tokens, the planning queue,
//! the plan, the factories' positions and the events. Then it places orders that lock an
//! old open batch and reads the ledger's audit again.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use c2m_domain::{BatchStatus, CampaignId, ConsumerId, IdempotencyKey, PreorderStatus};
use c2m_store::{PlacePreorder, Store};
use serde_json::Value;

/// The fixtures of the stores the binary of `commit` wrote.
fn fixtures(commit: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/upgrade-{commit}"))
}

/// The manifest's entry for one of the two stores (`sqlite` or `pg`) of `commit`.
fn manifest(commit: &str, store: &str) -> Value {
    let path = fixtures(commit).join("manifest.json");
    let text = std::fs::read_to_string(path).expect("manifest");
    let all: Value = serde_json::from_str(&text).expect("manifest JSON");
    all["stores"][store].clone()
}

fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v}"))
}

/// The batch status as the old server's API named it.
fn batch_status(api: &str) -> BatchStatus {
    match api {
        "BATCH_STATUS_OPEN" => BatchStatus::Open,
        "BATCH_STATUS_LOCKED" => BatchStatus::Locked,
        "BATCH_STATUS_FAILED" => BatchStatus::Failed,
        other => panic!("unknown batch status {other}"),
    }
}

/// Loads the store saved as `dump` into the empty database at `url`, opens it with this
/// build, and checks it against `m` (its manifest entry).
async fn upgrade(url: String, commit: &'static str, store: &'static str) {
    let m = manifest(commit, store);
    let script = std::fs::read_to_string(fixtures(commit).join(text(&m["dump"]))).expect("dump");
    c2m_store::conformance::run_script(&url, &script).await;
    let before = c2m_store::conformance::table_rows(&url).await;
    let expected: BTreeMap<String, i64> = m["row_counts"]
        .as_object()
        .expect("row counts")
        .iter()
        .map(|(t, n)| (t.clone(), int(n)))
        .collect();
    assert_eq!(before, expected, "the dump loads as the old store was");
    let old_schema = c2m_store::schema(&url).await.expect("schema");
    assert!(old_schema.applied < old_schema.known, "{old_schema:?}");

    let store = c2m_store::open(&url)
        .await
        .expect("this build opens the store");
    let new_schema = c2m_store::schema(&url).await.expect("schema");
    assert_eq!(
        new_schema.applied, new_schema.known,
        "every migration applied"
    );

    // Nothing the old c2m wrote is lost: every table it had holds the rows it held (sqlx's
    // own table gains this build's migrations; SQLite's counters may gain new tables').
    let after = c2m_store::conformance::table_rows(&url).await;
    for (table, rows) in &before {
        if table == "_sqlx_migrations" || table == "sqlite_sequence" {
            continue;
        }
        assert_eq!(after.get(table), Some(rows), "rows of {table}");
    }

    audit_is_clean(&*store, before["ledger_txns"]).await;
    campaigns_read_as_before(&*store, &m).await;
    money_reads_as_before(&*store, &m).await;
    tokens_read_as_before(&*store, &m).await;
    planning_and_factories_go_on(&*store, &m).await;
    events_read_as_before(&*store, &m).await;
    an_old_open_batch_locks(store.clone(), &m).await;
}

async fn audit_is_clean(store: &dyn Store, transactions: i64) {
    let audit = store.ledger_audit().await.expect("audit");
    assert!(audit.transactions >= transactions, "{audit:?}");
    assert!(audit.unbalanced.is_empty(), "{audit:?}");
    assert!(audit.totals.iter().all(|(_, sum)| *sum == 0), "{audit:?}");
    assert!(audit.hold_mismatches.is_empty(), "{audit:?}");
}

/// Each campaign's progress and batches as the old server's `GetCampaign` gave them.
async fn campaigns_read_as_before(store: &dyn Store, m: &Value) {
    let campaigns = m["campaigns"].as_object().expect("campaigns");
    assert!(campaigns.len() >= 12, "the manifest lists every campaign");
    for (id, old) in campaigns {
        let cid = CampaignId::parse(id).expect("id");
        let got = store.get_campaign(&cid).await.expect("campaign");
        let p = &old["progress"];
        assert_eq!(
            (
                got.open_batch_units,
                got.batches_locked,
                got.batches_failed,
                got.units_committed
            ),
            (
                int(&p["open_batch_units"]),
                int(&p["batches_locked"]),
                int(&p["batches_failed"]),
                int(&p["units_committed"])
            ),
            "progress of {id} ({})",
            text(&old["seed_label"])
        );
        assert_eq!(got.campaign.terms.title, text(&old["title"]));
        // Promised to ship after the balance window closes (migration 0014: the old c2m's
        // campaign with a 50-day window had been given 42 days by migration 0009).
        let terms = &got.campaign.terms;
        let window_days = terms
            .balance_window_secs
            .map_or(0, |s| (s + 86_399) / 86_400);
        assert!(
            terms.ships_within_days > window_days,
            "{id} ({}) promised in {} days, its window {window_days} days",
            text(&old["seed_label"]),
            terms.ships_within_days
        );
        let batches = store.list_batches(&cid).await.expect("batches");
        let got: Vec<_> = batches
            .iter()
            .map(|b| {
                (
                    b.id.as_str().to_owned(),
                    b.seq,
                    b.status,
                    b.units,
                    b.threshold,
                )
            })
            .collect();
        let want: Vec<_> = old["batches"]
            .as_array()
            .expect("batches")
            .iter()
            .map(|b| {
                let status = batch_status(text(&b["status"]));
                let id = text(&b["id"]).to_owned();
                (
                    id,
                    int(&b["seq"]),
                    status,
                    int(&b["units"]),
                    int(&b["threshold"]),
                )
            })
            .collect();
        assert_eq!(got, want, "batches of {id}");
    }
}

/// Each campaign's money, figure by figure, as the old server's `GetCampaignMoney` gave it.
async fn money_reads_as_before(store: &dyn Store, m: &Value) {
    for (id, old) in m["money"].as_object().expect("money") {
        let cid = CampaignId::parse(id).expect("id");
        let got = store.campaign_money(&cid).await.expect("money");
        let figures = [
            ("deposited", got.deposited),
            ("held", got.held),
            ("captured", got.captured),
            ("released", got.released),
            ("balances_paid", got.balances_paid),
            ("balances_outstanding", got.balances_outstanding),
            ("forfeited", got.forfeited),
            ("settled", got.settled),
            ("escrow", got.escrow),
            ("merchant", got.merchant),
        ];
        for (name, value) in figures {
            assert_eq!(value, int(&old[name]), "{name} of {id}");
        }
        // Refunds came with the levers (migration 0008): none before.
        let refunded = old.get("refunded").map_or(0, int);
        assert_eq!(got.refunded, refunded, "refunded of {id}");
    }
}

async fn tokens_read_as_before(store: &dyn Store, m: &Value) {
    let mut got: Vec<_> = store
        .tokens()
        .await
        .expect("tokens")
        .into_iter()
        .map(|t| {
            let role = t.token.role.to_string();
            (t.token.id, role, t.token.factory, t.revoked_at.is_some())
        })
        .collect();
    got.sort();
    let mut want: Vec<_> = ["active", "revoked"]
        .iter()
        .flat_map(|k| m["tokens"][k].as_array().expect("tokens").iter())
        .map(|t| {
            let id = text(&t["id"]).to_owned();
            let factory = t["factory_id"].as_str().map(str::to_owned);
            let revoked = t["revoked"].as_bool().expect("revoked");
            (id, text(&t["role"]).to_owned(), factory, revoked)
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
}

/// The batches the old server had queued are still queued, with the units it gave; the
/// plan and its work orders are there; each factory resumes after what it acknowledged.
async fn planning_and_factories_go_on(store: &dyn Store, m: &Value) {
    let queue = store.planning_queue().await.expect("queue");
    let mut got: Vec<_> = queue
        .iter()
        .map(|q| (q.batch.id.as_str().to_owned(), q.units_to_plan))
        .collect();
    got.sort();
    let mut want: Vec<_> = m["queued_batches"]
        .as_array()
        .expect("queued")
        .iter()
        .map(|q| (text(&q["batch_id"]).to_owned(), int(&q["units_to_plan"])))
        .collect();
    want.sort();
    assert_eq!(got, want, "the planning queue");

    for plan in m["plans"].as_array().expect("plans") {
        let stored = store.get_plan(text(&plan["plan_id"])).await.expect("plan");
        let mut batches: Vec<_> = stored
            .detail
            .batches
            .iter()
            .map(|b| b.as_str().to_owned())
            .collect();
        batches.sort();
        let mut want: Vec<_> = plan["batch_ids"]
            .as_array()
            .expect("batch ids")
            .iter()
            .map(|b| text(b).to_owned())
            .collect();
        want.sort();
        assert_eq!(batches, want);
        for wo in plan["work_orders"].as_array().expect("work orders") {
            let factory = text(&wo["factory_id"]);
            let orders = store
                .factory_work_orders(factory, 0, 100)
                .await
                .expect("work orders");
            let ids: Vec<_> = orders.iter().map(|o| (o.id.as_str(), o.seq)).collect();
            assert!(
                ids.contains(&(text(&wo["id"]), int(&wo["seq"]))),
                "{factory}: {ids:?}"
            );
        }
    }
    // cixi-1 acknowledged its work order 1 before the upgrade; zhongshan-2 acknowledged none.
    let cixi = store.factory_position("cixi-1").await.expect("position");
    assert_eq!((cixi.last_seq, cixi.acked_seq), (1, 1));
    let zs = store
        .factory_position("zhongshan-2")
        .await
        .expect("position");
    assert_eq!((zs.last_seq, zs.acked_seq), (1, 0));
}

/// Every event the old c2m wrote (stores from after migration 0007) reads back in this
/// build's types, numbered as before: a stream or webhook resuming after the upgrade gets
/// them as they were.
async fn events_read_as_before(store: &dyn Store, m: &Value) {
    let Some(old) = m.get("events") else {
        return; // before events existed
    };
    let mut kinds: BTreeMap<String, i64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store.list_events(after, None, 100).await.expect("events");
        let Some(last) = page.last() else { break };
        after = last.seq;
        for e in &page {
            *kinds.entry(e.kind().to_owned()).or_default() += 1;
        }
    }
    assert_eq!(after, int(&old["last_seq"]), "the last event's number");
    assert_eq!(store.last_event_seq().await.expect("last"), after);
    let want: BTreeMap<String, i64> = old["kinds"]
        .as_object()
        .expect("kinds")
        .iter()
        .map(|(k, n)| (k.clone(), int(n)))
        .collect();
    assert_eq!(kinds, want, "events by kind");
}

/// Orders into the old open batch (deadline 2099) are pooled with the old ones and lock it
/// at its threshold; the ledger still balances.
async fn an_old_open_batch_locks(store: Arc<dyn Store>, m: &Value) {
    let open = &m["open_2099"];
    let campaign = CampaignId::parse(text(&open["campaign_id"])).expect("id");
    let missing = int(&open["threshold"]) - int(&open["units"]);
    assert!(missing > 1, "the fixture's open batch has room");
    let now = chrono::Utc::now();
    let place = |consumer: &str, quantity| PlacePreorder {
        idempotency_key: IdempotencyKey::parse(&format!("upgrade-{consumer}")).expect("key"),
        campaign_id: campaign.clone(),
        consumer_id: ConsumerId::parse(consumer).expect("consumer"),
        quantity,
        source: Default::default(),
    };
    let first = store
        .place_preorder(&place("ulla", 1), now)
        .await
        .expect("placed");
    assert_eq!(
        (first.status, first.batch_id.as_str()),
        (PreorderStatus::Pooled, text(&open["batch_id"]))
    );
    let last = store
        .place_preorder(&place("vera", missing - 1), now)
        .await
        .expect("placed");
    assert_eq!(last.status, PreorderStatus::Locked);
    let batches = store.list_batches(&campaign).await.expect("batches");
    assert_eq!(
        (batches[0].status, batches[0].units),
        (BatchStatus::Locked, int(&open["threshold"]))
    );
    for old in open["preorder_ids"].as_array().expect("preorders") {
        let id = c2m_domain::PreorderId::parse(text(old)).expect("id");
        let p = store.get_preorder(&id).await.expect("old pre-order");
        assert_eq!(
            p.status,
            PreorderStatus::Locked,
            "{id:?} locked with the batch"
        );
    }
    audit_is_clean(&*store, 0).await;
}

/// The SQLite store of `commit`, upgraded in a temporary folder.
async fn sqlite_store_of(commit: &'static str) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let url = format!("sqlite://{}", dir.path().join("c2m.db").display());
    upgrade(url, commit, "sqlite").await;
}

/// The PostgreSQL store of `commit`, upgraded in a database of its own (dropped after,
/// whatever the outcome), when the tests have a PostgreSQL server.
async fn postgres_store_of(commit: &'static str) {
    let Some(admin) = c2m_store::conformance::test_database_url() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let outcome = tokio::spawn(upgrade(url.clone(), commit, "pg")).await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_18c2971_upgrades_without_losing_anything() {
    sqlite_store_of("18c2971").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_of_18c2971_upgrades_without_losing_anything() {
    postgres_store_of("18c2971").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_store_of_67dad10_upgrades_without_losing_anything() {
    sqlite_store_of("67dad10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_of_67dad10_upgrades_without_losing_anything() {
    postgres_store_of("67dad10").await;
}

/// A start whose migrations need a table that a long transaction holds (a report, the
/// backup `pg_dump` upgrading.md asks for, an older replica's session) waits for it in
/// short attempts that give way, so the other sessions' statements on the table wait at
/// most about one attempt's two seconds at a time; when its wait runs out it fails naming
/// the session that holds the lock, with the migrations before it applied; and a start
/// whose wait outlasts the transaction migrates once it ends. Before, one attempt held
/// every statement on `campaigns` for ten seconds, then failed with sqlx's words alone
/// (QA 16: a placement through the older replica took 9.9 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_behind_a_long_transaction_gives_way_and_names_it() {
    let Some(admin) = c2m_store::conformance::test_database_url() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let outcome = tokio::spawn(behind_a_long_transaction(url.clone())).await;
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn behind_a_long_transaction(url: String) {
    use sqlx::{ConnectOptions, Connection};
    use std::str::FromStr;
    use std::time::{Duration, Instant};
    let m = manifest("67dad10", "pg");
    let dump = std::fs::read_to_string(fixtures("67dad10").join(text(&m["dump"]))).expect("dump");
    c2m_store::conformance::run_script(&url, &dump).await;
    let applied = |url: String| async move {
        let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
        let v: i64 = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&mut c)
            .await
            .expect("versions");
        c.close().await.ok();
        v
    };
    assert_eq!(applied(url.clone()).await, 12);

    // The report: a transaction that has read `campaigns` (which migration 0015 alters).
    let mut report = sqlx::postgres::PgConnectOptions::from_str(&url)
        .expect("url")
        .application_name("month-end-report")
        .connect()
        .await
        .expect("connect");
    sqlx::query("BEGIN")
        .execute(&mut report)
        .await
        .expect("begin");
    sqlx::query("SELECT count(*) FROM campaigns")
        .execute(&mut report)
        .await
        .expect("read");
    // Another session reads `campaigns` every 100 ms while the start migrates, as an older
    // replica serving would, and keeps its longest wait.
    let reader = {
        let url = url.clone();
        tokio::spawn(async move {
            let mut c = c2m_store::postgres::connect_options(&url)
                .expect("options")
                .connect()
                .await
                .expect("connect");
            let mut longest = Duration::ZERO;
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(7) {
                let at = Instant::now();
                sqlx::query("SELECT count(*) FROM campaigns")
                    .execute(&mut c)
                    .await
                    .expect("an older replica's read");
                longest = longest.max(at.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            longest
        })
    };

    let short = c2m_store::postgres::PgOptions {
        migration_wait: Duration::from_secs(6),
        ..Default::default()
    };
    let started = Instant::now();
    let refused = c2m_store::postgres::PgStore::connect_with(&url, short).await;
    let took = started.elapsed();
    let Err(e) = refused else {
        panic!("migrated behind an open transaction")
    };
    let said = e.to_string();
    match &e {
        c2m_store::StoreError::MigrationBlocked {
            migration, holders, ..
        } => {
            assert_eq!(*migration, Some(15), "{said}");
            assert!(
                holders.contains("month-end-report") && holders.contains("FROM campaigns"),
                "the holder is named: {said}"
            );
        }
        other => panic!("not a blocked migration: {other}"),
    }
    assert!(said.contains("start c2m again"), "{said}");
    assert!(took < Duration::from_secs(12), "gave up after {took:?}");
    assert_eq!(
        applied(url.clone()).await,
        14,
        "the migrations before it applied"
    );
    let longest = reader.await.expect("reader");
    assert!(
        longest < Duration::from_secs(5),
        "a read of the table waited {longest:?} behind the migration"
    );

    // A start that outlasts the report migrates once it ends.
    let start = {
        let url = url.clone();
        tokio::spawn(async move { c2m_store::postgres::PgStore::connect(&url).await })
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!start.is_finished(), "migrated while the report was open");
    sqlx::query("COMMIT")
        .execute(&mut report)
        .await
        .expect("commit");
    let store = tokio::time::timeout(Duration::from_secs(20), start)
        .await
        .expect("migrated soon after the report ended")
        .expect("task")
        .expect("opened");
    let newest = c2m_store::conformance::migration_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("postgres ")?.get(..4)?.parse::<i64>().ok())
        .max();
    assert_eq!(Some(applied(url.clone()).await), newest);
    store.close().await;
    report.close().await.ok();
}
