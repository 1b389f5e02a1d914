//! The threshold race on PostgreSQL with two real `c2m serve` processes sharing one
//! database: runs when `TEST_DATABASE_URL` names a PostgreSQL server it may create
//! databases on (`.ci/run` starts one), and says it skipped otherwise.

use std::collections::{BTreeMap, HashSet};

use crate::common::*;
use c2m_proto::v1 as pb;
use c2m_store::conformance::{drop_pg_database, fresh_pg_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_server_processes_on_one_postgres_lock_each_batch_once() {
    let Some(admin) = pg_admin_url() else { return };
    let url = fresh_pg_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    let a = ServerProcess::spawn(&url, dir.path()).await;
    let b = ServerProcess::spawn(&url, dir.path()).await;

    let mut c = Clients::connect(a.addr).await;
    let campaign = c
        .campaigns
        .create_campaign(campaign_request("pg-cmp", 50))
        .await
        .unwrap()
        .into_inner();
    // The campaign created through one replica is visible through the other.
    let mut cb = Clients::connect(b.addr).await;
    cb.campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap();

    let accepted = place_concurrently(&[a.addr, b.addr], &campaign.id, 50, 10).await;
    assert_eq!(accepted.len(), 500);
    let ids: HashSet<_> = accepted.iter().map(|p| p.id.clone()).collect();
    assert_eq!(ids.len(), 500);

    let listed = all_preorders(&mut cb, &campaign.id).await;
    assert_eq!(
        listed.iter().map(|p| p.id.clone()).collect::<HashSet<_>>(),
        ids
    );
    let batches = list_batches(&mut c, &campaign.id).await;
    assert_eq!(batches.len(), 10, "{batches:#?}");
    let mut units: BTreeMap<String, i64> = BTreeMap::new();
    for p in &listed {
        *units.entry(p.batch_id.clone()).or_default() += p.quantity;
    }
    for bt in &batches {
        assert_eq!(bt.status, pb::BatchStatus::Locked as i32);
        assert_eq!(bt.units, 50);
        assert_eq!(units.get(&bt.id), Some(&50));
    }
    drop(a);
    drop(b);
    drop_pg_database(&admin, &url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_server_on_postgres_passes_the_pooling_story() {
    let Some(admin) = pg_admin_url() else { return };
    let url = fresh_pg_database(&admin).await;
    let server = TestServer::with_database(&url).await;
    let mut c = server.clients().await;
    let campaign = c
        .campaigns
        .create_campaign(campaign_request("pg-1", 5))
        .await
        .unwrap()
        .into_inner();
    let accepted = place_concurrently(&[server.addr], &campaign.id, 5, 5).await;
    assert_eq!(accepted.len(), 25);
    let progress = c
        .campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: campaign.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.batches_locked, 5);
    server.shutdown().await;
    drop_pg_database(&admin, &url).await;
}
