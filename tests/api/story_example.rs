//! The `story` example run as a process against a real server with access control on, as
//! the README's first session runs it: what it prints is checked against what the server
//! answers afterwards, so a story that only says it worked cannot pass.

use std::time::Duration;

use c2m_proto::v1 as pb;

use crate::common::{example_binary, TestServer};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

async fn story(server: &TestServer, extra: &[&str]) -> std::process::Output {
    let exe = tokio::task::spawn_blocking(|| example_binary("story"))
        .await
        .expect("build");
    let data = tempfile::tempdir().expect("temporary folder");
    tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(exe)
            .current_dir(ROOT)
            .args(["--addr", &format!("http://{}", server.addr)])
            .args(["--token", server.admin_token.as_deref().expect("auth on")])
            // No admin.token to fall back on: the token given is the one used.
            .arg("--data-dir")
            .arg(data.path())
            .args(extra)
            .output(),
    )
    .await
    .expect("the story ends")
    .expect("the story runs")
}

async fn campaigns(c: &mut crate::common::Clients) -> Vec<pb::Campaign> {
    c.campaigns
        .list_campaigns(pb::ListCampaignsRequest {
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .expect("list")
        .into_inner()
        .campaigns
}

/// Two campaigns, each locking one batch of 6 units, one plan, a work order per factory
/// the plan uses, and each watched pre-order's state as the server gives it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_runs_from_catalogue_to_work_orders_and_says_what_the_server_holds() {
    let server = TestServer::sqlite_with_auth().await;
    let out = story(&server, &["--threshold", "6"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = |step: &str| -> Vec<&str> {
        stdout
            .lines()
            .filter(|l| l.starts_with(&format!("{step}. ")))
            .collect()
    };
    assert_eq!(lines("1").len(), 1, "{stdout}");
    assert_eq!(lines("2").len(), 2, "{stdout}");
    assert_eq!(lines("3").len(), 2, "{stdout}");
    assert_eq!(lines("4").len(), 1, "{stdout}");
    assert!(!lines("5").is_empty(), "a work order: {stdout}");
    assert_eq!(lines("6").len(), 2, "{stdout}");

    let mut c = server.clients().await;
    // The two campaigns it announced exist, each with the threshold asked for and one
    // batch that is no longer open.
    let made = campaigns(&mut c).await;
    assert_eq!(made.len(), 2, "{made:?}");
    for cmp in &made {
        assert_eq!(cmp.batch_threshold, 6);
        assert!(lines("2").iter().any(|l| l.contains(&cmp.id)), "{stdout}");
        let batches = c
            .campaigns
            .list_batches(pb::ListBatchesRequest {
                campaign_id: cmp.id.clone(),
            })
            .await
            .expect("batches")
            .into_inner()
            .batches;
        assert!(
            batches
                .iter()
                .any(|b| b.status == pb::BatchStatus::Locked as i32),
            "a locked batch in {}: {batches:?}",
            cmp.id
        );
    }
    // Each watched pre-order's line says the status the server gives it.
    for line in lines("6") {
        let rest = line.trim_start_matches("6. pre-order ");
        let (id, said) = rest.split_once(": ").expect("id: status");
        let p = c
            .preorders
            .get_preorder(pb::GetPreorderRequest {
                preorder_id: id.to_owned(),
            })
            .await
            .expect("the pre-order the story names")
            .into_inner();
        let status = p
            .status()
            .as_str_name()
            .trim_start_matches("PREORDER_STATUS_")
            .to_lowercase();
        assert!(
            said.starts_with(&format!("{status},")),
            "{line} vs {status}"
        );
    }
    // The plan it reports is the one the server stored.
    let plan_id = lines("4")[0]
        .trim_start_matches("4. plan ")
        .split(':')
        .next()
        .expect("a plan id");
    c.planning
        .get_plan(pb::GetPlanRequest {
            plan_id: plan_id.to_owned(),
        })
        .await
        .expect("the plan the story names");
    server.shutdown().await;
}

/// A threshold the story would take days to reach by placing pre-orders one at a time is
/// refused before the server is asked anything (it ran on with `--threshold 1e8`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_story_refuses_a_threshold_it_cannot_reach_before_making_anything() {
    let server = TestServer::sqlite_with_auth().await;
    let out = story(&server, &["--threshold", "10001"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--threshold"), "{stderr}");
    let mut c = server.clients().await;
    assert!(campaigns(&mut c).await.is_empty(), "nothing made");
    server.shutdown().await;
}
