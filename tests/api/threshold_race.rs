//! The threshold race, seeded and repeated: many clients place pre-orders on one campaign
//! at once, across its batch threshold again and again. A seed chooses the threshold, a
//! batch cap (or none), a total cap (or none), the per-order limit and the order sizes,
//! the number of clients and their orders, and how the calls interleave: when each client
//! starts, whether it pauses, yields or hurries between calls, whether clients share one
//! connection, and how often a request is sent twice at once with the same key (on
//! PostgreSQL to both server processes). Afterwards, for every seed:
//!
//! - every key has one answer: the pre-orders stored are exactly the acknowledged ones,
//!   and two answers to one key are equal;
//! - batches are numbered 1..n, all locked but the last (open, below its threshold, or
//!   locked); a locked batch holds between its threshold and its cap; no more units than
//!   the total cap; each batch's units are its orders';
//! - replaying the pooling rule over the stored orders in placement order gives exactly
//!   the stored batches, and the one acknowledgement in a batch that says "locked" is the
//!   order that crossed the threshold;
//! - a refused order could not have fit: it is larger than any open batch could take
//!   (cap - threshold + 1), or the campaign was at its total cap; and a key is refused only
//!   while it is not recorded (a refusal computed after the same key was placed is a bug).
//!
//! `C2M_RACE_SEEDS` (default 2) sets how many seeds each backend runs, each printed;
//! `C2M_RACE_SEED=S` runs that one seed. SQLite runs a server in the test process, one per
//! seed; PostgreSQL (when `TEST_DATABASE_URL` is set) runs two `c2m serve` processes on one
//! fresh database, shared by the seeds, each seed on its own campaign.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::{Code, Status};

use crate::common::*;
use c2m_proto::v1 as pb;
use c2m_store::conformance::{drop_pg_database, fresh_pg_database};

/// One race, as a seed chose it.
#[derive(Debug, Clone)]
struct Race {
    seed: u64,
    threshold: i64,
    cap: Option<i64>,
    total_cap: Option<i64>,
    max_per_order: i64,
    /// All orders single-unit (the acceptance race's shape), or sizes 1..=max_per_order.
    single_units: bool,
    clients: usize,
    orders_per_client: usize,
    /// Chance that a request is sent twice at once with the same key.
    duplicates: f64,
    /// Clients share one connection per server instead of one each.
    shared_connection: bool,
    /// Longest pause between a client's calls, in microseconds (0: none; calls may still
    /// yield).
    max_pause_us: u64,
}

impl Race {
    fn from_seed(seed: u64) -> Race {
        let mut rng = StdRng::seed_from_u64(seed);
        let threshold = if rng.gen_bool(0.2) {
            rng.gen_range(1..=3)
        } else {
            rng.gen_range(4..=60)
        };
        let cap = rng
            .gen_bool(0.6)
            .then(|| threshold + rng.gen_range(0..=threshold.min(12)));
        let max_per_order = rng.gen_range(1..=cap.unwrap_or(10).min(10));
        let single_units = max_per_order == 1 || rng.gen_bool(0.3);
        let clients = rng.gen_range(2..=64);
        let orders_per_client = rng.gen_range(2..=(600 / clients).max(3));
        // Somewhere between one batch and nine tenths of the units offered.
        let offered = (clients * orders_per_client) as i64 * (1 + max_per_order) / 2;
        let total_cap = rng
            .gen_bool(0.25)
            .then(|| rng.gen_range(threshold..=(offered * 9 / 10).max(threshold)));
        Race {
            seed,
            threshold,
            cap,
            total_cap,
            max_per_order,
            single_units,
            clients,
            orders_per_client,
            duplicates: [0.0, 0.05, 0.25][rng.gen_range(0..3)],
            shared_connection: rng.gen_bool(0.3),
            max_pause_us: [0, 0, 200, 2_000][rng.gen_range(0..4)],
        }
    }

    fn campaign(&self) -> pb::CreateCampaignRequest {
        let mut req = campaign_request(&format!("race-{}", self.seed), self.threshold);
        req.title = format!("threshold race, C2M_RACE_SEED={}", self.seed);
        req.batch_cap = self.cap;
        req.total_cap = self.total_cap;
        req.max_per_order = Some(self.max_per_order);
        req
    }
}

/// The seeds to run: `C2M_RACE_SEED`, or `C2M_RACE_SEEDS` (default 2) random ones.
fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("C2M_RACE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return vec![seed];
    }
    let n: usize = std::env::var("C2M_RACE_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    (0..n).map(|_| rand::random::<u64>() >> 1).collect()
}

/// What became of one key: the pre-order placed (every send that placed it answered the
/// same), or the refusal.
type Answer = Result<pb::Preorder, Status>;

/// A status that leaves the outcome open (sent again with the same key).
fn open_ended(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled | Code::ResourceExhausted
    )
}

/// Sends one request until it has a definite answer.
async fn send(c: &mut Clients, req: &pb::PlacePreorderRequest) -> Result<pb::Preorder, Status> {
    for _ in 0..200 {
        match c.preorders.place_preorder(req.clone()).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if open_ended(&s) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(s) => return Err(s),
        }
    }
    panic!("{}: no definite answer", req.idempotency_key);
}

/// Runs one client's orders; returns key -> (request, answers).
async fn client(
    race: Race,
    t: usize,
    mut own: Vec<Clients>,
    campaign: String,
) -> Vec<(pb::PlacePreorderRequest, Vec<Result<pb::Preorder, Status>>)> {
    let mut rng = StdRng::seed_from_u64(race.seed ^ ((t as u64 + 1) << 32));
    tokio::time::sleep(Duration::from_micros(rng.gen_range(0..3_000))).await;
    let mut out = Vec::new();
    for i in 0..race.orders_per_client {
        let quantity = if race.single_units {
            1
        } else {
            rng.gen_range(1..=race.max_per_order)
        };
        let key = format!("race-{}-{t}-{i}", race.seed);
        let req = place(&key, &campaign, &format!("consumer-{t}"), quantity);
        // One server for this call, and another (when there are two) for its duplicate.
        let first = rng.gen_range(0..own.len());
        let answers = if rng.gen_bool(race.duplicates) {
            let second = (first + 1) % own.len();
            let (mut a, mut b) = (own[first].clone(), own[second].clone());
            let (x, y) = tokio::join!(send(&mut a, &req), send(&mut b, &req));
            vec![x, y]
        } else {
            vec![send(&mut own[first], &req).await]
        };
        out.push((req, answers));
        match rng.gen_range(0..3) {
            0 => {}
            1 => tokio::task::yield_now().await,
            _ if race.max_pause_us > 0 => {
                tokio::time::sleep(Duration::from_micros(rng.gen_range(0..race.max_pause_us))).await
            }
            _ => {}
        }
    }
    out
}

/// Runs the race of `seed` against `servers` and checks it; returns a one-line summary.
async fn race(seed: u64, servers: &[SocketAddr]) -> String {
    let race = Race::from_seed(seed);
    eprintln!("race C2M_RACE_SEED={seed}: {race:?}");
    let mut admin = Clients::connect(servers[0]).await;
    let campaign = admin
        .campaigns
        .create_campaign(race.campaign())
        .await
        .unwrap_or_else(|s| panic!("seed {seed}: campaign: {s:?}"))
        .into_inner();

    let mut shared = Vec::new();
    for a in servers {
        shared.push(Clients::connect(*a).await);
    }
    let mut tasks = Vec::new();
    for t in 0..race.clients {
        let own = if race.shared_connection {
            shared.clone()
        } else {
            let mut own = Vec::new();
            // Each client starts on a different server.
            for k in 0..servers.len() {
                own.push(Clients::connect(servers[(t + k) % servers.len()]).await);
            }
            own
        };
        tasks.push(tokio::spawn(client(
            race.clone(),
            t,
            own,
            campaign.id.clone(),
        )));
    }
    let mut answers: BTreeMap<String, (pb::PlacePreorderRequest, Answer)> = BTreeMap::new();
    let mut mixed = Vec::new();
    for task in tasks {
        for (req, got) in task.await.expect("a client failed") {
            let key = req.idempotency_key.clone();
            let placed: Vec<&pb::Preorder> = got.iter().filter_map(|r| r.as_ref().ok()).collect();
            for p in &placed {
                assert_eq!(*p, placed[0], "seed {seed}: {key} answered two ways");
            }
            for r in &got {
                if let Err(s) = r {
                    assert_eq!(
                        s.code(),
                        Code::FailedPrecondition,
                        "seed {seed}: {key}: {s:?}"
                    );
                }
            }
            let answer = match (placed.first(), got.iter().find_map(|r| r.as_ref().err())) {
                (Some(p), Some(s)) => {
                    mixed.push((key.clone(), (*p).clone(), s.clone()));
                    Ok((*p).clone())
                }
                (Some(p), None) => Ok((*p).clone()),
                (None, Some(s)) => Err(s.clone()),
                (None, None) => unreachable!("every send has an answer"),
            };
            answers.insert(key, (req, answer));
        }
    }

    // The store after the race.
    let mut c = Clients::connect(servers[servers.len() - 1]).await;
    let listed = all_preorders(&mut c, &campaign.id).await;
    let batches = list_batches(&mut c, &campaign.id).await;

    // Every key has one answer: the stored pre-orders are exactly the acknowledged ones.
    let acked: HashMap<&str, &pb::Preorder> = answers
        .values()
        .filter_map(|(_, a)| a.as_ref().ok().map(|p| (p.id.as_str(), p)))
        .collect();
    let mut stored_ids: Vec<&str> = listed.iter().map(|p| p.id.as_str()).collect();
    stored_ids.sort_unstable();
    let mut acked_ids: Vec<&str> = acked.keys().copied().collect();
    acked_ids.sort_unstable();
    assert_eq!(
        stored_ids, acked_ids,
        "seed {seed}: stored pre-orders differ from acknowledged"
    );

    // The pooling rule, restated and replayed over the stored orders in placement order.
    let (mut seq, mut units, mut total) = (1, 0, 0);
    let mut model: Vec<(i64, pb::BatchStatus)> = Vec::new();
    let mut lockers: HashMap<&str, i64> = HashMap::new();
    for p in &listed {
        assert_eq!(
            p.batch_seq, seq,
            "seed {seed}: {} in batch {} not {seq}",
            p.id, p.batch_seq
        );
        units += p.quantity;
        total += p.quantity;
        if let Some(cap) = race.cap {
            assert!(units <= cap, "seed {seed}: batch {seq} over its cap {cap}");
        }
        if units >= race.threshold {
            model.push((units, pb::BatchStatus::Locked));
            lockers.insert(p.id.as_str(), seq);
            seq += 1;
            units = 0;
        }
    }
    if units > 0 {
        model.push((units, pb::BatchStatus::Open));
    }
    if let Some(cap) = race.total_cap {
        assert!(
            total <= cap,
            "seed {seed}: {total} units over the total cap {cap}"
        );
    }
    let stored: Vec<(i64, pb::BatchStatus)> =
        batches.iter().map(|b| (b.units, b.status())).collect();
    assert_eq!(
        stored, model,
        "seed {seed}: batches differ from the pooling rule"
    );
    let seqs: Vec<i64> = batches.iter().map(|b| b.seq).collect();
    assert_eq!(
        seqs,
        (1..=batches.len() as i64).collect::<Vec<_>>(),
        "seed {seed}"
    );
    for p in acked.values() {
        let want = if lockers.contains_key(p.id.as_str()) {
            pb::PreorderStatus::Locked
        } else {
            pb::PreorderStatus::Pooled
        };
        assert_eq!(
            p.status(),
            want,
            "seed {seed}: {} answered {:?}",
            p.id,
            p.status()
        );
    }

    // A refused order could not have fit at any moment, or the campaign was sold out.
    let always_fits = race.cap.map_or(i64::MAX, |cap| cap - race.threshold + 1);
    let mut refused = 0;
    for (key, (req, a)) in &answers {
        let Err(s) = a else { continue };
        refused += 1;
        let sold_out = race.total_cap.is_some_and(|cap| total + req.quantity > cap);
        assert!(
            req.quantity > always_fits || sold_out,
            "seed {seed}: {key} ({} units) refused though it fits any open batch: {s:?}",
            req.quantity
        );
    }

    // One send placed, the other refused: allowed only if the refusal could have been
    // decided before the placement committed (a refused request records nothing, so an
    // original still in flight may be placed after its duplicate was refused). Every
    // refusal says what it saw, in its ErrorInfo: the units that still fit the open batch
    // (`BATCH_CAP`, `unitsFit`), or the units left under the total cap (`TOTAL_CAP`,
    // `unitsLeft`; `SOLD_OUT`). Orders are never cancelled here, so what the
    // store held before the placement is a list of states; a refusal that saw none of them
    // was decided after the placement, and should have replayed it.
    let mut before = vec![(0, 0)]; // (units in the open batch, units committed)
    for p in &listed {
        let (u, t) = *before.last().unwrap();
        let u = if u + p.quantity >= race.threshold {
            0
        } else {
            u + p.quantity
        };
        before.push((u, t + p.quantity));
    }
    for (key, placed, s) in &mixed {
        let at = listed
            .iter()
            .position(|p| p.id == placed.id)
            .expect("placed");
        let states = &before[..=at];
        let number = |key: &str| -> i64 {
            error_meta(s, key)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("seed {seed}: {key} missing from {s:?}"))
        };
        let seen = match reason(s).as_str() {
            "BATCH_CAP" => {
                let (cap, fits) = (number("batchCap"), number("unitsFit"));
                assert_eq!(Some(cap), race.cap, "seed {seed}: {s:?}");
                states.iter().any(|(u, _)| *u == cap - fits)
            }
            "TOTAL_CAP" => {
                let (total_cap, left) = (number("totalCap"), number("unitsLeft"));
                assert_eq!(Some(total_cap), race.total_cap, "seed {seed}: {s:?}");
                states.iter().any(|(_, t)| *t == total_cap - left)
            }
            "SOLD_OUT" => false,
            _ => panic!("seed {seed}: {key}: a refusal not understood: {s:?}"),
        };
        assert!(
            seen,
            "seed {seed}: {key} was placed ({}), and a send of the same key refused after \
             that placement: {s:?}",
            placed.id
        );
    }

    format!(
        "seed {seed}: {} orders, {} acknowledged, {refused} refused, {} batches locked, {} same-key pairs with one refused",
        answers.len(),
        acked.len(),
        batches.iter().filter(|b| b.status() == pb::BatchStatus::Locked).count(),
        mixed.len()
    )
}

/// The number that follows `after` in a message.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn threshold_race_over_seeds_on_sqlite() {
    for seed in seeds() {
        let server = TestServer::sqlite().await;
        let summary = race(seed, &[server.addr]).await;
        eprintln!("sqlite {summary}");
        server.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn threshold_race_over_seeds_on_postgres_with_two_processes() {
    let Some(admin) = pg_admin_url() else { return };
    let url = fresh_pg_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let a = ServerProcess::spawn(&url, dir.path()).await;
    let b = ServerProcess::spawn(&url, dir.path()).await;
    for seed in seeds() {
        let summary = race(seed, &[a.addr, b.addr]).await;
        eprintln!("postgres {summary}");
    }
    drop(a);
    drop(b);
    drop_pg_database(&admin, &url).await;
}
