//! Deadlines with an injected clock: an unfilled batch fails exactly once, even when the
//! sweeper is stopped part-way through a pass and a new one takes over.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use tonic::Code;

use crate::common::*;
use c2m_domain::{CampaignId, ManualClock};
use c2m_proto::v1 as pb;
use c2m_server::sweeper::Sweeper;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfilled_batches_fail_exactly_once_across_sweeper_restarts() {
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let server = TestServer::sqlite_with_clock(Arc::new(clock.clone())).await;
    let mut c = server.clients().await;

    // Three campaigns due in one hour with an unfilled open batch each, one that locks a
    // batch and leaves a second unfilled, and one due much later that must not fail.
    let mut due = Vec::new();
    for i in 0..4 {
        let mut req = campaign_request(&format!("cmp-{i}"), 5);
        req.deadline = Some(ts(start + Duration::hours(1)));
        let cmp = c.campaigns.create_campaign(req).await.unwrap().into_inner();
        let qty = if i == 3 { 5 } else { 2 };
        c.preorders
            .place_preorder(place(&format!("o-{i}"), &cmp.id, "alice", qty))
            .await
            .unwrap();
        if i == 3 {
            c.preorders
                .place_preorder(place("o-3b", &cmp.id, "bob", 1))
                .await
                .unwrap();
        }
        due.push(cmp.id);
    }
    let mut later = campaign_request("later", 5);
    later.deadline = Some(ts(start + Duration::days(3)));
    let later = c
        .campaigns
        .create_campaign(later)
        .await
        .unwrap()
        .into_inner();
    c.preorders
        .place_preorder(place("o-later", &later.id, "carol", 1))
        .await
        .unwrap();

    // Stop the server's own sweeper before the deadline passes, so that only the sweepers
    // below act: the first handles one campaign and "crashes", the second finishes.
    let store = server.store.clone();
    let _data = server.shutdown().await;
    clock.advance(Duration::hours(2));

    let first = Sweeper::new(store.clone(), Arc::new(clock.clone()));
    let partial = first.sweep(1).await.unwrap();
    assert_eq!(partial.len(), 1);
    drop(first);

    let second = Sweeper::new(store.clone(), Arc::new(clock.clone()));
    let rest = second.sweep(usize::MAX).await.unwrap();
    let again = second.sweep(usize::MAX).await.unwrap();
    assert!(
        again.iter().all(|o| o.failed_batch.is_none()),
        "a batch failed twice: {again:?}"
    );

    let mut failures: HashMap<CampaignId, usize> = HashMap::new();
    for o in partial.iter().chain(rest.iter()).chain(again.iter()) {
        if o.failed_batch.is_some() {
            *failures.entry(o.campaign_id.clone()).or_default() += 1;
        }
    }
    for id in &due {
        assert_eq!(
            failures.get(&CampaignId::parse(id).unwrap()),
            Some(&1),
            "campaign {id}"
        );
    }
    assert!(
        !failures.contains_key(&CampaignId::parse(&later.id).unwrap()),
        "a campaign failed before its deadline"
    );

    // A fresh server on the same store (as after a restart) shows the outcome to consumers.
    let server = TestServer::restart_sqlite(store, Arc::new(clock.clone())).await;
    let mut c = server.clients().await;
    for (i, id) in due.iter().enumerate() {
        let batches = list_batches(&mut c, id).await;
        let statuses: Vec<_> = batches.iter().map(|b| b.status).collect();
        let want = if i == 3 {
            vec![
                pb::BatchStatus::Locked as i32,
                pb::BatchStatus::Failed as i32,
            ]
        } else {
            vec![pb::BatchStatus::Failed as i32]
        };
        assert_eq!(statuses, want, "campaign {id}");
        let orders = all_preorders(&mut c, id).await;
        for o in orders {
            let want = if o.batch_seq == 1 && i == 3 {
                pb::PreorderStatus::Locked
            } else {
                pb::PreorderStatus::RefundDue
            };
            assert_eq!(o.status, want as i32, "order {} of campaign {id}", o.id);
        }
        let progress = c
            .campaigns
            .get_campaign(pb::GetCampaignRequest {
                campaign_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(progress.remaining_seconds, 0);
        assert_eq!(
            progress.campaign.unwrap().status,
            pb::CampaignStatus::Closed as i32
        );
        // And the campaign takes no more orders.
        let err = c
            .preorders
            .place_preorder(place(&format!("late-{i}"), id, "dave", 1))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    }
    let later_batches = list_batches(&mut c, &later.id).await;
    assert_eq!(later_batches[0].status, pb::BatchStatus::Open as i32);
    server.shutdown().await;
}

#[tokio::test]
async fn the_running_server_sweeps_on_its_own() {
    let start = Utc::now();
    let clock = ManualClock::new(start);
    let server = TestServer::sqlite_with_clock(Arc::new(clock.clone())).await;
    let mut c = server.clients().await;
    let mut req = campaign_request("cmp", 5);
    req.deadline = Some(ts(start + Duration::minutes(10)));
    let cmp = c.campaigns.create_campaign(req).await.unwrap().into_inner();
    let o = c
        .preorders
        .place_preorder(place("o", &cmp.id, "alice", 1))
        .await
        .unwrap()
        .into_inner();

    clock.advance(Duration::minutes(11));
    let mut status = o.status;
    for _ in 0..100 {
        status = c
            .preorders
            .get_preorder(pb::GetPreorderRequest {
                preorder_id: o.id.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        if status == pb::PreorderStatus::RefundDue as i32 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        status,
        pb::PreorderStatus::RefundDue as i32,
        "the sweeper did not fail the batch"
    );
    server.shutdown().await;
}
