//! Limits end to end: load shedding answers RESOURCE_EXHAUSTED at once instead of queueing,
//! and a factory has one work order stream at a time (a new subscription closes the old).

use std::time::Duration;

use crate::common::*;
use c2m_proto::v1 as pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_in_flight_limit_are_shed_not_queued() {
    let server = TestServer::sqlite_with(|s| s.max_in_flight = 2).await;
    let mut c = server.clients().await;
    let cmp = c
        .campaigns
        .create_campaign(campaign_request("shed", 50))
        .await
        .expect("campaign")
        .into_inner();
    // 400 calls at once over 8 connections against 2 slots: some must be shed, and every
    // call ends as served or shed, quickly.
    let mut tasks = Vec::new();
    for conn in 0..8 {
        let c = Clients::connect(server.addr).await;
        for i in 0..50 {
            let mut c = c.clone();
            let id = cmp.id.clone();
            tasks.push(tokio::spawn(async move {
                let started = std::time::Instant::now();
                let r = c
                    .preorders
                    .place_preorder(place(&format!("shed-{conn}-{i}"), &id, "c", 1))
                    .await;
                (r.map(|_| ()).map_err(|s| s.code()), started.elapsed())
            }));
        }
    }
    let (mut served, mut shed) = (0, 0);
    let mut slowest_shed = Duration::ZERO;
    for t in tasks {
        match t.await.unwrap() {
            (Ok(()), _) => served += 1,
            (Err(Code::ResourceExhausted), d) => {
                shed += 1;
                slowest_shed = slowest_shed.max(d);
            }
            (Err(other), _) => panic!("a call failed with {other:?}"),
        }
    }
    assert!(
        shed > 0,
        "with 2 slots some of 400 concurrent calls are shed"
    );
    assert!(served > 0);
    assert_eq!(served + shed, 400);
    // What was accepted is exactly what the store has.
    let units: i64 = all_preorders(&mut c, &cmp.id)
        .await
        .iter()
        .map(|p| p.quantity)
        .sum();
    assert_eq!(units, served as i64);
    eprintln!("served {served}, shed {shed}, slowest shed answer {slowest_shed:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_closes_the_old_stream() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let subscribe = |mut c: Clients| async move {
        c.factory
            .subscribe(pb::SubscribeRequest {
                factory_id: "dongguan-1".into(),
                after_seq: None,
            })
            .await
            .expect("subscribe")
            .into_inner()
    };
    let mut old = subscribe(c.clone()).await;
    old.message().await.expect("first heartbeat");
    let mut new = subscribe(c.clone()).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match old.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("closed without a status"),
                Err(s) => return s,
            }
        }
    })
    .await
    .expect("the old stream ends");
    assert_eq!(ended.code(), Code::Aborted, "{ended:?}");
    let beat = tokio::time::timeout(Duration::from_secs(5), new.message())
        .await
        .expect("in time")
        .expect("the new stream lives");
    assert!(beat.is_some());
    // Another factory's stream is not affected.
    let mut other = c
        .factory
        .subscribe(pb::SubscribeRequest {
            factory_id: "ningbo-2".into(),
            after_seq: None,
        })
        .await
        .unwrap()
        .into_inner();
    other.message().await.expect("heartbeat");
    let still = tokio::time::timeout(Duration::from_secs(2), new.message())
        .await
        .expect("heartbeat in time");
    assert!(
        still.is_ok(),
        "dongguan-1's stream survives ningbo-2 subscribing"
    );
    server.shutdown().await;
}
