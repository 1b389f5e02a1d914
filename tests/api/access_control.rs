//! Access control end to end: the authorisation matrix over every RPC of the API (read
//! from the compiled descriptor set, so a new RPC is covered the day it is added), factory
//! scoping, and the real binary's first admin token and `c2m token` commands.

use std::collections::BTreeSet;
use std::process::Stdio;
use std::str::FromStr;
use std::time::Duration;

use crate::common::*;
use c2m_domain::Role;
use c2m_proto::v1 as pb;
use prost::Message;
use tonic::codec::ProstCodec;
use tonic::transport::Channel;
use tonic::Code;

/// Every `c2m.v1` method as (path, server streaming).
fn every_method() -> Vec<(String, bool)> {
    let set = prost_types::FileDescriptorSet::decode(c2m_proto::FILE_DESCRIPTOR_SET)
        .expect("descriptor set");
    let mut out = Vec::new();
    for f in set.file.iter().filter(|f| f.package() == "c2m.v1") {
        for s in &f.service {
            for m in &s.method {
                out.push((
                    format!("/c2m.v1.{}/{}", s.name(), m.name()),
                    m.server_streaming(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// What this test expects each role to reach (written here, independently of the
/// server's table).
fn storefront_may(path: &str) -> bool {
    [
        "/c2m.v1.PreorderService/PlacePreorder",
        "/c2m.v1.PreorderService/GetPreorder",
        "/c2m.v1.PreorderService/ListPreorders",
        "/c2m.v1.PreorderService/CancelPreorder",
        "/c2m.v1.PreorderService/PayBalance",
        "/c2m.v1.CampaignService/GetCampaign",
        "/c2m.v1.CampaignService/ListCampaigns",
        "/c2m.v1.CampaignService/ListBatches",
        "/c2m.v1.EventService/Subscribe",
    ]
    .contains(&path)
}

fn factory_may(path: &str) -> bool {
    path.starts_with("/c2m.v1.FactoryService/")
}

/// Calls `path` with an empty request (all fields default) and returns the status code
/// the call ended with (`Ok` if it succeeded).
async fn call(channel: &Channel, path: &str, streaming: bool, token: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut req = tonic::Request::new(());
    if let Some(t) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    let codec = ProstCodec::<(), ()>::default();
    let result = tokio::time::timeout(Duration::from_secs(10), async {
        if streaming {
            match grpc.server_streaming(req, path, codec).await {
                Ok(mut s) => match s.get_mut().message().await {
                    Ok(_) => Code::Ok,
                    Err(e) => e.code(),
                },
                Err(e) => e.code(),
            }
        } else {
            match grpc.unary(req, path, codec).await {
                Ok(_) => Code::Ok,
                Err(e) => e.code(),
            }
        }
    })
    .await;
    result.expect("no call hangs")
}

async fn token(server: &TestServer, role: Role, factory: Option<&str>) -> String {
    let t = c2m_server::auth::issue(role, factory, "test").unwrap();
    server
        .store
        .create_token(&t.stored, chrono::Utc::now())
        .await
        .unwrap();
    t.token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_the_wrong_caller_with_the_right_status() {
    let server = TestServer::sqlite_with_auth().await;
    let admin = server.admin_token.clone().unwrap();
    let storefront = token(&server, Role::Storefront, None).await;
    let dongguan = token(&server, Role::Factory, Some("dongguan-1")).await;
    let revoked = token(&server, Role::Storefront, None).await;
    let revoked_id = revoked.split('_').nth(1).unwrap().to_owned();
    assert!(server
        .store
        .revoke_token(&revoked_id, chrono::Utc::now())
        .await
        .unwrap());
    // The server trusts a verified token for its cache time (100 ms in tests).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let forged = format!("c2m_{}_{}", revoked_id, "0".repeat(64));
    let channel = Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let methods = every_method();
    // As many as docs/reliability.md counts (38): fewer means the descriptor set was misread.
    assert!(methods.len() >= 38, "{methods:?}");
    let mut seen_services = BTreeSet::new();
    for (path, streaming) in &methods {
        seen_services.insert(path.split('/').nth(1).unwrap().to_owned());
        for (who, t) in [
            ("no token", None),
            ("garbage", Some("hello")),
            (
                "unknown token",
                Some("c2m_0123456789abcdef_".to_owned() + &"a".repeat(64)).as_deref(),
            ),
            ("revoked token", Some(revoked.as_str())),
            ("forged secret", Some(forged.as_str())),
        ] {
            assert_eq!(
                call(&channel, path, *streaming, t).await,
                Code::Unauthenticated,
                "{path} with {who}"
            );
        }
        let code = call(&channel, path, *streaming, Some(&admin)).await;
        assert!(
            !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
            "admin may call {path}: {code:?}"
        );
        for (role, t, may) in [
            ("storefront", &storefront, storefront_may(path)),
            ("factory", &dongguan, factory_may(path)),
        ] {
            let code = call(&channel, path, *streaming, Some(t)).await;
            if may {
                assert!(
                    !matches!(code, Code::Unauthenticated | Code::PermissionDenied),
                    "{role} may call {path}: {code:?}"
                );
            } else {
                assert_eq!(code, Code::PermissionDenied, "{role} calling {path}");
            }
        }
    }
    for s in [
        "c2m.v1.CampaignService",
        "c2m.v1.PreorderService",
        "c2m.v1.LedgerService",
        "c2m.v1.CatalogueService",
        "c2m.v1.PlanningService",
        "c2m.v1.FactoryService",
        "c2m.v1.EventService",
        "c2m.v1.WebhookService",
    ] {
        assert!(seen_services.contains(s), "{s} covered");
    }

    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factory_token_reaches_only_its_own_work_orders() {
    let server = TestServer::sqlite_with_auth().await;
    let mut admin = server.clients().await;
    import(&mut admin, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    locked_batch(&mut admin, "cmp-a", "case-a", 20).await;
    locked_batch(&mut admin, "cmp-b", "case-b", 15).await;
    let plan = run_planning(&mut admin, "cycle").await.expect("plan");
    let ningbo_order = plan
        .work_orders
        .iter()
        .find(|w| w.factory_id == "ningbo-2")
        .expect("ningbo-2 has a work order")
        .id
        .clone();
    let dongguan_token = token(&server, Role::Factory, Some("dongguan-1")).await;
    let mut dongguan = Clients::connect_as(server.addr, Some(&dongguan_token)).await;

    // Naming another factory is refused; naming none means its own.
    let err = dongguan
        .factory
        .subscribe(pb::SubscribeRequest {
            factory_id: "ningbo-2".into(),
            after_seq: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = dongguan
        .factory
        .ack(pb::AckRequest {
            factory_id: "ningbo-2".into(),
            seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let mut own = dongguan
        .factory
        .subscribe(pb::SubscribeRequest {
            factory_id: String::new(),
            after_seq: Some(0),
        })
        .await
        .expect("own stream")
        .into_inner();
    let mut got = Vec::new();
    while got.is_empty() {
        let e = tokio::time::timeout(Duration::from_secs(5), own.message())
            .await
            .expect("in time")
            .expect("stream")
            .expect("event");
        if let Some(pb::factory_event::Event::WorkOrder(w)) = e.event {
            got.push(w);
        }
    }
    assert!(got.iter().all(|w| w.factory_id == "dongguan-1"));

    // Another factory's work order id, under its own factory id: not found, as if it did
    // not exist.
    let err = dongguan
        .factory
        .report(pb::ReportRequest {
            idempotency_key: "steal".into(),
            factory_id: String::new(),
            work_order_id: ningbo_order,
            progress: Some(pb::report_request::Progress::Accepted(pb::Accepted {})),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    server.shutdown().await;
}

/// A real `c2m serve` on `data_dir` with access control on (unlike
/// [`ServerProcess`], which turns it off), on a random port: the process, killed when
/// dropped, and the address it printed.
async fn serve(
    data_dir: &std::path::Path,
    flags: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_c2m"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(flags)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("c2m binary starts");
    let addr = listening(&mut child).await;
    (child, addr)
}

/// The real binary: a first start writes an admin token; `c2m token` creates and revokes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_bootstraps_an_admin_and_manages_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_c2m");
    let (mut child, addr) = serve(dir.path(), &["--token-cache", "200ms"]).await;
    let path = dir.path().join("admin.token");
    let admin = std::fs::read_to_string(&path)
        .expect("admin.token written at first start")
        .trim()
        .to_owned();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "admin.token is private: {mode:o}");
    }
    let mut anon = Clients::connect(addr).await;
    let err = anon
        .catalogue
        .export_scenario(pb::ExportScenarioRequest { format: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut c = Clients::connect_as(addr, Some(&admin)).await;
    import(&mut c, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("the admin token works");

    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // A factory the catalogue does not know gets no token.
    let unknown = std::process::Command::new(bin)
        .args(["token", "create", "--role", "factory", "--factory"])
        .arg("no-such-factory")
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("factory `no-such-factory` is not in the catalogue"),
        "{unknown:?}"
    );
    assert!(!run(&["token", "list"]).contains("no-such-factory"));
    let factory = run(&[
        "token",
        "create",
        "--role",
        "factory",
        "--factory",
        "dongguan-1",
    ])
    .trim()
    .to_owned();
    let listed = run(&["token", "list"]);
    assert!(
        listed.contains("dongguan-1") && !listed.contains(&factory[21..]),
        "{listed}"
    );
    // One line a token, its columns lined up whatever the role's length (they drifted).
    let state_at: Vec<_> = (listed.lines())
        .map(|l| l.find("active").expect("every token is active"))
        .collect();
    assert_eq!(state_at.len(), 2, "{listed}");
    assert!(state_at.iter().all(|&at| at == state_at[0]), "{listed}");
    let mut f = Clients::connect_as(addr, Some(&factory)).await;
    let first = f
        .factory
        .ack(pb::AckRequest {
            factory_id: String::new(),
            seq: 1,
        })
        .await;
    // No work orders yet: OUT_OF_RANGE proves the call got past access control.
    assert_eq!(
        first.map(|_| Code::Ok).unwrap_or_else(|e| e.code()),
        Code::OutOfRange,
        "the factory token works"
    );
    let id = factory.split('_').nth(1).unwrap();
    assert!(run(&["token", "revoke", id]).contains("revoked"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let err = f
        .factory
        .ack(pb::AckRequest {
            factory_id: String::new(),
            seq: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    // A second start writes no new admin token.
    child.start_kill().unwrap();
    let _ = child.wait().await;
    std::fs::remove_file(&path).unwrap();
    let (mut again, _) = serve(dir.path(), &[]).await;
    assert!(!path.exists(), "an admin exists already: no new token file");

    // A token command pointed at a directory with no store refuses, naming the file, and
    // creates nothing there (before, it made a new empty database and put the token in it).
    let stray = tempfile::tempdir().unwrap();
    let typo = stray.path().join("dta");
    let out = std::process::Command::new(bin)
        .args(["token", "create", "--role", "admin", "--data-dir"])
        .arg(&typo)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("no c2m store at") && said.contains("c2m.db") && said.contains("--data-dir"),
        "{said}"
    );
    assert!(!typo.exists(), "nothing created at {}", typo.display());

    // Every admin token revoked: the next start writes a new one, and it works.
    let admin_id = admin.split('_').nth(1).unwrap();
    assert!(run(&["token", "revoke", admin_id]).contains("revoked"));
    again.start_kill().unwrap();
    let _ = again.wait().await;
    let (mut third, addr) = serve(dir.path(), &[]).await;
    let renewed = std::fs::read_to_string(&path)
        .expect("a new admin.token once every admin was revoked")
        .trim()
        .to_owned();
    assert_ne!(renewed, admin);
    let mut old = Clients::connect_as(addr, Some(&admin)).await;
    let err = import(&mut old, "revoked", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let mut c = Clients::connect_as(addr, Some(&renewed)).await;
    import(&mut c, "renewed", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("the new admin token works");
    let listed = run(&["token", "list"]);
    assert_eq!(
        listed
            .lines()
            .filter(|l| l.contains("admin") && l.contains("active"))
            .count(),
        1,
        "{listed}"
    );
    third.start_kill().unwrap();
}

/// A token is checked when a call starts; a stream it opened must still end once it is
/// revoked (within `--token-cache`, 100 ms in tests): the event stream and a factory's
/// work order feed each end with UNAUTHENTICATED `TOKEN_INVALID`. They ran on for as long
/// as the client kept them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_ends_the_streams_it_opened() {
    use c2m_proto::v1::event_service_client::EventServiceClient;
    use c2m_proto::v1::factory_service_client::FactoryServiceClient;
    use c2m_server::auth::Bearer;

    let server = TestServer::sqlite_with_auth().await;
    let mut admin = server.clients().await;
    import(&mut admin, "import", PHONE_CASES, pb::ImportMode::Replace)
        .await
        .expect("import");
    let now = chrono::Utc::now();
    let storefront = c2m_server::auth::issue(Role::Storefront, None, "streamer").unwrap();
    let factory = c2m_server::auth::issue(Role::Factory, Some("dongguan-1"), "line").unwrap();
    for t in [&storefront, &factory] {
        server.store.create_token(&t.stored, now).await.unwrap();
    }
    let channel = admin.channel.clone();
    let mut events = EventServiceClient::with_interceptor(
        channel.clone(),
        Bearer::new(Some(&storefront.token)).unwrap(),
    )
    .subscribe(pb::SubscribeEventsRequest {
        after_seq: None,
        campaign_id: String::new(),
    })
    .await
    .expect("event stream opens")
    .into_inner();
    let mut work =
        FactoryServiceClient::with_interceptor(channel, Bearer::new(Some(&factory.token)).unwrap())
            .subscribe(pb::SubscribeRequest {
                factory_id: "dongguan-1".into(),
                after_seq: None,
            })
            .await
            .expect("work order stream opens")
            .into_inner();
    // Both streams are live: each sends its first heartbeat.
    events
        .message()
        .await
        .expect("event heartbeat")
        .expect("a message");
    work.message()
        .await
        .expect("work heartbeat")
        .expect("a message");

    for t in [&storefront, &factory] {
        assert!(server.store.revoke_token(&t.stored.id, now).await.unwrap());
    }
    async fn ended<T>(
        what: &str,
        next: impl std::future::Future<Output = Result<Option<T>, tonic::Status>>,
    ) -> Option<tonic::Status> {
        match next.await {
            Ok(Some(_)) => None,
            Ok(None) => panic!("{what}: ended without a status"),
            Err(s) => Some(s),
        }
    }
    let events_end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(s) = ended("events", events.message()).await {
                return s;
            }
        }
    })
    .await
    .expect("the event stream ends within 30 s of the revocation");
    assert_refused(&events_end, Code::Unauthenticated, "TOKEN_INVALID");
    let work_end = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(s) = ended("work orders", work.message()).await {
                return s;
            }
        }
    })
    .await
    .expect("the work order stream ends within 30 s of the revocation");
    assert_refused(&work_end, Code::Unauthenticated, "TOKEN_INVALID");
    server.shutdown().await;
}

/// Three replicas started together on one fresh PostgreSQL database all find no admin:
/// exactly one stores its token and writes `admin.token`, the others write nothing (and
/// leave no `admin.token.*.new` behind), and that one token works on every replica. Before,
/// each stored an admin token and wrote its own file (two or three active admins in four
/// tries; replicas sharing a data directory kept the last file written, the other tokens
/// held by nobody), against access-control.md's "no second admin while one is active".
/// Then two replicas sharing one data directory, on a second fresh database: one token,
/// in the one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_starting_together_make_one_admin_token() {
    let Some(pg) = pg_admin_url() else { return };
    let url = c2m_store::conformance::fresh_pg_database(&pg).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let flags = ["--database-url", url.as_str()];
    let (a, b, c) = tokio::join!(
        serve(dirs[0].path(), &flags),
        serve(dirs[1].path(), &flags),
        serve(dirs[2].path(), &flags)
    );
    let files: Vec<String> = dirs
        .iter()
        .filter_map(|d| std::fs::read_to_string(d.path().join("admin.token")).ok())
        .collect();
    assert_eq!(files.len(), 1, "one replica writes admin.token");
    for d in &dirs {
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".new"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
    let store = c2m_store::open(&url).await.expect("store");
    let admins: Vec<_> = store
        .tokens()
        .await
        .expect("tokens")
        .into_iter()
        .filter(|t| t.token.role == Role::Admin)
        .collect();
    assert_eq!(admins.len(), 1, "{admins:?}");
    let token = files[0].trim();
    imports_as_admin(&[a.1, b.1, c.1], token).await;
    drop((a, b, c));

    let url = c2m_store::conformance::fresh_pg_database(&pg).await;
    let shared = tempfile::tempdir().unwrap();
    let flags = ["--database-url", url.as_str()];
    let (a, b) = tokio::join!(serve(shared.path(), &flags), serve(shared.path(), &flags));
    let token = std::fs::read_to_string(shared.path().join("admin.token")).expect("one file");
    let store = c2m_store::open(&url).await.expect("store");
    let admins = store.tokens().await.expect("tokens");
    assert_eq!(admins.len(), 1, "{admins:?}");
    imports_as_admin(&[a.1, b.1], token.trim()).await;
}

/// Imports the catalogue on every server at `addrs` with `token`: it is an admin's there.
async fn imports_as_admin(addrs: &[std::net::SocketAddr], token: &str) {
    for (i, addr) in addrs.iter().enumerate() {
        let mut admin = Clients::connect_as(*addr, Some(token)).await;
        import(
            &mut admin,
            &format!("import-{i}"),
            PHONE_CASES,
            pb::ImportMode::Replace,
        )
        .await
        .unwrap_or_else(|e| panic!("the admin token works on the server at {addr}: {e:?}"));
    }
}
