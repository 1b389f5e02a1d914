//! End to end over gRPC: the real server on a random port, the generated tonic clients.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use tonic::Code;

use crate::common::*;
use c2m_proto::v1 as pb;

/// Checks the pooling invariants of one campaign after `accepted` orders were acknowledged:
/// `batches` locked batches of exactly `threshold` units, every order in exactly one batch.
async fn assert_pooled(
    c: &mut Clients,
    campaign: &str,
    accepted: &[pb::Preorder],
    threshold: i64,
    batches: usize,
) {
    let ids: HashSet<_> = accepted.iter().map(|p| p.id.clone()).collect();
    assert_eq!(
        ids.len(),
        accepted.len(),
        "an order id was handed out twice"
    );

    let listed = all_preorders(c, campaign).await;
    let listed_ids: HashSet<_> = listed.iter().map(|p| p.id.clone()).collect();
    assert_eq!(listed.len(), listed_ids.len(), "listing repeats an order");
    assert_eq!(
        listed_ids, ids,
        "stored orders differ from acknowledged orders"
    );

    let bs = list_batches(c, campaign).await;
    let locked: Vec<_> = bs
        .iter()
        .filter(|b| b.status == pb::BatchStatus::Locked as i32)
        .collect();
    assert_eq!(locked.len(), batches, "locked batches: {bs:#?}");
    assert!(
        bs.iter()
            .all(|b| b.status == pb::BatchStatus::Locked as i32),
        "no batch left open: {bs:#?}"
    );

    let mut per_batch: BTreeMap<String, i64> = BTreeMap::new();
    for p in &listed {
        assert_eq!(
            p.status,
            pb::PreorderStatus::Locked as i32,
            "order {} not locked",
            p.id
        );
        *per_batch.entry(p.batch_id.clone()).or_default() += p.quantity;
    }
    assert_eq!(per_batch.len(), batches);
    for b in &locked {
        assert_eq!(
            per_batch.get(&b.id),
            Some(&threshold),
            "units in batch {}",
            b.seq
        );
        assert_eq!(b.units, threshold);
        assert!(b.locked_at.is_some());
    }
    let seqs: Vec<_> = bs.iter().map(|b| b.seq).collect();
    assert_eq!(seqs, (1..=batches as i64).collect::<Vec<_>>());

    let progress = c
        .campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: campaign.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.batches_locked, batches as i64);
    assert_eq!(progress.open_batch_units, 0);
    assert_eq!(progress.units_committed, threshold * batches as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_orders_from_fifty_clients_lock_ten_batches_on_sqlite() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let campaign = c
        .campaigns
        .create_campaign(campaign_request("cmp-1", 50))
        .await
        .unwrap()
        .into_inner();

    let accepted = place_concurrently(&[server.addr], &campaign.id, 50, 10).await;
    assert_eq!(accepted.len(), 500);
    assert_pooled(&mut c, &campaign.id, &accepted, 50, 10).await;

    // The same key with a different request is refused and changes nothing.
    let err = c
        .preorders
        .place_preorder(place("place-0-0", &campaign.id, "consumer-0", 2))
        .await
        .unwrap_err();
    assert_refused(&err, Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        error_meta(&err, "idempotencyKey").as_deref(),
        Some("place-0-0")
    );
    assert_eq!(all_preorders(&mut c, &campaign.id).await.len(), 500);
    server.shutdown().await;
}

#[tokio::test]
async fn campaign_create_is_idempotent_and_progress_is_reported() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let first = c
        .campaigns
        .create_campaign(campaign_request("k", 5))
        .await
        .unwrap()
        .into_inner();
    let again = c
        .campaigns
        .create_campaign(campaign_request("k", 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.id, again.id);
    let conflict = c
        .campaigns
        .create_campaign(campaign_request("k", 6))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let listed = c
        .campaigns
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.campaigns.len(), 1);

    c.preorders
        .place_preorder(place("a", &first.id, "alice", 3))
        .await
        .unwrap();
    let p = c
        .campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: first.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.open_batch_units, 3);
    assert_eq!(p.units_to_threshold, 2);
    assert_eq!(p.open_batch_seq, 1);
    assert_eq!(p.batches_locked, 0);
    assert!(p.remaining_seconds > 6 * 24 * 3600 && p.remaining_seconds <= 7 * 24 * 3600);
    assert_eq!(p.campaign.unwrap().status, pb::CampaignStatus::Open as i32);
    server.shutdown().await;
}

/// A campaign with a total cap tells consumers what is left to order
/// (`units_available`): it falls with each order (a locked batch's units count too) to 0,
/// where an order is refused `SOLD_OUT` and the campaign stays OPEN; a consumer's cancel
/// gives the room back, and the next order fits again. Without a total cap the figure is
/// absent.
#[tokio::test]
async fn a_capped_campaign_shows_what_is_left_and_sells_again_after_a_cancel() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let mut req = campaign_request("capped", 4);
    req.total_cap = Some(6);
    let cmp = created(&mut c, req).await;
    let uncapped = created(&mut c, campaign_request("uncapped", 4)).await;
    assert_eq!(progress(&mut c, &cmp.id).await.units_available, Some(6));
    assert_eq!(progress(&mut c, &uncapped.id).await.units_available, None);
    let mut order = async |key: &str, who: &str, units: i64| {
        c.preorders
            .place_preorder(place(key, &cmp.id, who, units))
            .await
            .map(|r| r.into_inner())
    };
    order("a", "alice", 2).await.expect("a");
    order("b", "bob", 2)
        .await
        .expect("b, which locks the first batch");
    let c_order = order("c", "cat", 2).await.expect("c");
    let full = progress(&mut c, &cmp.id).await;
    assert_eq!(
        (
            full.batches_locked,
            full.units_committed,
            full.units_available
        ),
        (1, 6, Some(0))
    );
    assert_eq!(
        full.campaign.as_ref().map(|c| c.status()),
        Some(pb::CampaignStatus::Open)
    );
    let refused = c
        .preorders
        .place_preorder(place("d", &cmp.id, "dan", 1))
        .await
        .expect_err("sold out");
    assert_refused(&refused, Code::FailedPrecondition, "SOLD_OUT");

    c.preorders
        .cancel_preorder(pb::CancelPreorderRequest {
            idempotency_key: "cancel-c".into(),
            preorder_id: c_order.id.clone(),
            consumer_id: "cat".into(),
        })
        .await
        .expect("cancel");
    assert_eq!(progress(&mut c, &cmp.id).await.units_available, Some(2));
    c.preorders
        .place_preorder(place("d-again", &cmp.id, "dan", 2))
        .await
        .expect("fits again");
    assert_eq!(progress(&mut c, &cmp.id).await.units_available, Some(0));
    server.shutdown().await;
}

#[tokio::test]
async fn cancel_is_allowed_only_while_the_batch_is_open() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let cmp = c
        .campaigns
        .create_campaign(campaign_request("k", 4))
        .await
        .unwrap()
        .into_inner();
    let a = c
        .preorders
        .place_preorder(place("a", &cmp.id, "alice", 2))
        .await
        .unwrap()
        .into_inner();
    let cancel = |key: &str, id: &str, consumer: &str| pb::CancelPreorderRequest {
        idempotency_key: key.into(),
        preorder_id: id.into(),
        consumer_id: consumer.into(),
    };
    // Another consumer cannot cancel Alice's order.
    let err = c
        .preorders
        .cancel_preorder(cancel("x", &a.id, "mallory"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.code(),
            Code::FailedPrecondition | Code::NotFound | Code::PermissionDenied
        ),
        "{err:?}"
    );
    let cancelled = c
        .preorders
        .cancel_preorder(cancel("c", &a.id, "alice"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, pb::PreorderStatus::Cancelled as i32);
    assert_eq!(
        c.preorders
            .cancel_preorder(cancel("c", &a.id, "alice"))
            .await
            .unwrap()
            .into_inner(),
        cancelled
    );
    let p = c
        .campaigns
        .get_campaign(pb::GetCampaignRequest {
            campaign_id: cmp.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(p.open_batch_units, 0, "cancelled units leave the batch");

    let b = c
        .preorders
        .place_preorder(place("b", &cmp.id, "bob", 4))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        b.status,
        pb::PreorderStatus::Locked as i32,
        "bob's order locks the batch"
    );
    let err = c
        .preorders
        .cancel_preorder(cancel("d", &b.id, "bob"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let b_now = c
        .preorders
        .get_preorder(pb::GetPreorderRequest {
            preorder_id: b.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b_now.status, pb::PreorderStatus::Locked as i32);
    server.shutdown().await;
}

#[tokio::test]
async fn bad_input_names_the_field_and_writes_nothing() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let past = Some(ts(Utc::now() - chrono::Duration::hours(1)));
    let cases: Vec<(pb::CreateCampaignRequest, &str)> = vec![
        (
            pb::CreateCampaignRequest {
                deposit_minor: 40_000,
                ..campaign_request("b1", 5)
            },
            "deposit_minor",
        ),
        (
            pb::CreateCampaignRequest {
                batch_cap: Some(4),
                ..campaign_request("b2", 5)
            },
            "batch_threshold",
        ),
        (
            pb::CreateCampaignRequest {
                deadline: past,
                ..campaign_request("b3", 5)
            },
            "deadline",
        ),
        (
            pb::CreateCampaignRequest {
                deadline: None,
                ..campaign_request("b4", 5)
            },
            "deadline",
        ),
        (
            pb::CreateCampaignRequest {
                currency: "RMB".into(),
                ..campaign_request("b5", 5)
            },
            "currency",
        ),
        (
            pb::CreateCampaignRequest {
                unit_price_minor: -1,
                ..campaign_request("b6", 5)
            },
            "unit_price_minor",
        ),
        (
            pb::CreateCampaignRequest {
                batch_threshold: 0,
                ..campaign_request("b7", 5)
            },
            "batch_threshold",
        ),
        (
            pb::CreateCampaignRequest {
                idempotency_key: String::new(),
                ..campaign_request("", 5)
            },
            "idempotency_key",
        ),
        // After 9999-12-31: no protobuf JSON client could read the campaign back.
        (
            pb::CreateCampaignRequest {
                deadline: Some(prost_types::Timestamp {
                    seconds: 254_402_300_800,
                    nanos: 0,
                }),
                ..campaign_request("b8", 5)
            },
            "deadline",
        ),
        // A tier above the base price: named as the request names it.
        (
            pb::CreateCampaignRequest {
                price_ladder: vec![pb::PriceTier {
                    min_units: 3,
                    unit_price_minor: 50_000,
                }],
                ..campaign_request("b9", 5)
            },
            "price_ladder[0].unit_price_minor",
        ),
    ];
    for (req, field) in cases {
        let err = c.campaigns.create_campaign(req).await.unwrap_err();
        assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(
            error_meta(&err, "field").as_deref(),
            Some(field),
            "{field}: {err:?}"
        );
    }
    let none = c
        .campaigns
        .list_campaigns(pb::ListCampaignsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(none.campaigns.is_empty(), "a refused campaign was stored");

    let cmp = c
        .campaigns
        .create_campaign(campaign_request("ok", 5))
        .await
        .unwrap()
        .into_inner();
    let order_cases = vec![
        (
            place("q0", &cmp.id, "alice", 0),
            Code::InvalidArgument,
            "quantity",
        ),
        (
            place("q1", &cmp.id, "alice", 11),
            Code::InvalidArgument,
            "quantity",
        ),
        (
            place("q2", "cmp_nope", "alice", 1),
            Code::NotFound,
            "campaign_id",
        ),
        (
            place("q3", &cmp.id, "", 1),
            Code::InvalidArgument,
            "consumer_id",
        ),
    ];
    for (req, code, named) in order_cases {
        let err = c.preorders.place_preorder(req).await.unwrap_err();
        if code == Code::NotFound {
            // The unknown campaign is named by its id.
            assert_refused(&err, code, "NOT_FOUND");
            assert_eq!(
                error_meta(&err, "id").as_deref(),
                Some("cmp_nope"),
                "{err:?}"
            );
        } else {
            assert_refused(&err, code, "INVALID_FIELD");
            assert_eq!(error_meta(&err, "field").as_deref(), Some(named), "{err:?}");
        }
    }
    assert!(
        all_preorders(&mut c, &cmp.id).await.is_empty(),
        "a refused order was stored"
    );
    let err = c
        .preorders
        .list_preorders(pb::ListPreordersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .preorders
        .list_preorders(pb::ListPreordersRequest {
            campaign_id: cmp.id.clone(),
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
    assert_eq!(error_meta(&err, "field").as_deref(), Some("page_token"));
    server.shutdown().await;
}

/// A page token continues the listing it came from and no other: a `ListPreorders` token
/// of campaign B's pre-orders, passed with campaign A's filter, used to return none of A's
/// (the cursor is a store-wide position, so it skipped A's older order), and was taken by
/// `ListCampaigns` too. Both are refused naming `page_token`, as a token the server never
/// issued is; with its own listing the token goes on to the next page.
#[tokio::test]
async fn a_page_token_is_refused_by_any_listing_but_its_own() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let mut ids = Vec::new();
    for key in ["cmp-a", "cmp-b"] {
        let created = c.campaigns.create_campaign(campaign_request(key, 50)).await;
        ids.push(created.expect("campaign").into_inner().id);
    }
    let (a, b) = (ids[0].clone(), ids[1].clone());
    c.preorders
        .place_preorder(place("pa", &a, "con_a", 1))
        .await
        .expect("A's order");
    for i in 0..5 {
        c.preorders
            .place_preorder(place(&format!("pb-{i}"), &b, "con_b", 1))
            .await
            .expect("B's order");
    }
    let listing = |campaign: &str, page_token: &str| pb::ListPreordersRequest {
        campaign_id: campaign.into(),
        page_size: 2,
        page_token: page_token.into(),
        ..Default::default()
    };
    let first = c
        .preorders
        .list_preorders(listing(&b, ""))
        .await
        .expect("B's first page")
        .into_inner();
    let token = first.next_page_token;
    assert!(!token.is_empty());

    let other_filter = c
        .preorders
        .list_preorders(listing(&a, &token))
        .await
        .expect_err("B's token with A's filter");
    let other_call = c
        .campaigns
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 0,
            page_token: token.clone(),
        })
        .await
        .expect_err("a ListPreorders token in ListCampaigns");
    for err in [other_filter, other_call] {
        assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(error_meta(&err, "field").as_deref(), Some("page_token"));
    }

    let next = c
        .preorders
        .list_preorders(listing(&b, &token))
        .await
        .expect("B's next page")
        .into_inner();
    assert_eq!(next.preorders.len(), 2);
    let ids = |p: &[pb::Preorder]| p.iter().map(|p| p.id.clone()).collect::<HashSet<_>>();
    assert!(ids(&first.preorders).is_disjoint(&ids(&next.preorders)));
    server.shutdown().await;
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    use prost::Message;
    let server = TestServer::sqlite().await;
    let c = server.clients().await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(c.channel.clone());
    // Every service of the API, read from the compiled descriptor set so that a service
    // added later is checked the day it is added.
    let set = prost_types::FileDescriptorSet::decode(c2m_proto::FILE_DESCRIPTOR_SET).unwrap();
    let services: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "c2m.v1")
        .flat_map(|f| f.service.iter().map(|s| format!("c2m.v1.{}", s.name())))
        .collect();
    assert!(services.len() >= 6, "{services:?}");
    for service in services.iter().map(String::as_str).chain([""]) {
        let resp = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{service:?}: {e:?}"))
            .into_inner();
        assert_eq!(
            resp.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
    server.shutdown().await;
}

/// A resend of a CreateCampaign key answered with the campaign its twin created after
/// this request read the clock shows the campaign as it is, open, never as scheduled
/// (the independent client's defect 7: on PostgreSQL with two replicas, 18 of 60 racing
/// pairs answered SCHEDULED). The race is replayed in order with a clock set back.
#[tokio::test]
async fn a_replayed_campaign_is_never_shown_before_it_was_created() {
    let start = Utc::now();
    let clock = std::sync::Arc::new(c2m_domain::ManualClock::new(start));
    let server = TestServer::sqlite_with_clock(clock.clone()).await;
    let mut c = server.clients().await;
    let twin = c
        .campaigns
        .create_campaign(campaign_request("twin", 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(twin.status(), pb::CampaignStatus::Open);
    clock.set(start - chrono::Duration::seconds(1));
    let resent = c
        .campaigns
        .create_campaign(campaign_request("twin", 5))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resent.id, twin.id);
    assert_eq!(resent.status(), pb::CampaignStatus::Open);
    server.shutdown().await;
}

/// Money a ledger cannot sum is refused before it is taken (the independent client's
/// defect 1): the two campaigns that used to be accepted and then stuck are refused at
/// creation naming `unit_price`, and a campaign without a total cap stops taking orders
/// at the money bound with a clear refusal, not an overflow.
#[tokio::test]
async fn money_that_would_overflow_is_refused_up_front() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    for (key, price, deposit) in [
        ("pow62", 1i64 << 62, 1i64 << 62),
        ("5e18", 5_000_000_000_000_000_000, 1),
    ] {
        let req = pb::CreateCampaignRequest {
            unit_price_minor: price,
            deposit_minor: deposit,
            batch_threshold: 2,
            max_per_order: None,
            ..campaign_request(key, 2)
        };
        let err = c.campaigns.create_campaign(req).await.unwrap_err();
        assert_refused(&err, Code::InvalidArgument, "INVALID_FIELD");
        assert_eq!(
            error_meta(&err, "field").as_deref(),
            Some("unit_price_minor")
        );
    }
    // The highest price: 1,000 units are 10^15 minor units, the most a campaign holds.
    let top = c
        .campaigns
        .create_campaign(pb::CreateCampaignRequest {
            unit_price_minor: 1_000_000_000_000,
            deposit_minor: 1_000_000_000_000,
            batch_threshold: 400,
            max_per_order: None,
            ..campaign_request("top", 400)
        })
        .await
        .unwrap()
        .into_inner();
    for (i, quantity) in [400, 400].into_iter().enumerate() {
        c.preorders
            .place_preorder(place(&format!("top-{i}"), &top.id, "whale", quantity))
            .await
            .expect("within the bound");
    }
    let err = c
        .preorders
        .place_preorder(place("top-2", &top.id, "whale", 201))
        .await
        .unwrap_err();
    assert_refused(&err, Code::FailedPrecondition, "TOO_LARGE");
    c.preorders
        .place_preorder(place("top-3", &top.id, "whale", 200))
        .await
        .expect("exactly at the bound");
    let mut ledger =
        c2m_proto::v1::ledger_service_client::LedgerServiceClient::new(c.channel.clone());
    let money = ledger
        .get_campaign_money(pb::GetCampaignMoneyRequest {
            campaign_id: top.id.clone(),
        })
        .await
        .expect("the money summary still answers")
        .into_inner();
    assert_eq!(money.captured.map(|m| m.minor), Some(800_000_000_000_000));
    server.shutdown().await;
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let server = TestServer::sqlite().await;
    let mut c = server.clients().await;
    let mut req = campaign_request("big", 5);
    req.title = "x".repeat(5 * 1024 * 1024);
    let err = c.campaigns.create_campaign(req).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    // The server is still healthy afterwards.
    c.campaigns
        .create_campaign(campaign_request("small", 5))
        .await
        .unwrap();
    server.shutdown().await;
}
