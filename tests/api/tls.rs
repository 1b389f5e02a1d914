//! TLS and mutual TLS end to end: a certificate authority, a server certificate and
//! factory client certificates made at test time (rcgen), the real server on a random port
//! with `--tls-cert` / `--tls-key` / `--tls-client-ca`, real tonic clients over rustls; the
//! real `c2m` binary with the flags; and the start-up errors of bad settings.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use c2m_domain::Role;
use c2m_proto::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};
use tonic::Code;

/// A certificate authority that signs server and client certificates.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and its private key, both PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A client-trust configuration that trusts this CA.
    fn trust(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.pem()))
    }

    fn issue(&self, sans: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// The server's certificate: SAN `localhost` and `127.0.0.1`.
    fn server(&self) -> Issued {
        self.issue(
            &["localhost", "127.0.0.1"],
            "c2m server",
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A factory's client certificate naming it by a DNS subject alternative name.
    fn factory(&self, id: &str) -> Issued {
        self.issue(&[id], id, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

impl Issued {
    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }

    /// Writes `NAME.pem` and `NAME.key` into `dir`.
    fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }
}

/// A CA, the server's certificate from it, written to a temporary directory.
struct Pki {
    ca: Ca,
    dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let ca = Ca::new("c2m test CA");
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let (cert_file, key_file) = ca.server().write(dir.path(), "server");
        Pki {
            ca,
            dir,
            ca_file,
            cert_file,
            key_file,
        }
    }
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

/// `ListCampaigns` with `token` over `tls` (`None`: plaintext), or why it failed: the
/// status the server answered, or the transport error (a failed handshake).
async fn list_campaigns(
    server: &TestServer,
    tls: Option<ClientTlsConfig>,
    token: &str,
) -> Result<(), String> {
    let endpoint = match tls {
        Some(tls) => https_endpoint(server.addr, tls),
        None => tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr)).unwrap(),
    };
    let channel = Clients::try_connect(endpoint).await?;
    let mut c = Clients::on(channel, Some(token));
    tokio::time::timeout(
        Duration::from_secs(10),
        c.campaigns
            .list_campaigns(pb::ListCampaignsRequest::default()),
    )
    .await
    .map_err(|_| "the call hung".to_owned())?
    .map(|_| ())
    .map_err(|s| format!("{:?}: {} ({})", s.code(), s.message(), error_chain(&s)))
}

/// `Ack` of work order `seq` by a factory token on `channel`: the code it ended with.
async fn ack(channel: &tonic::transport::Channel, token: &str, seq: i64) -> tonic::Status {
    let mut c = Clients::on(channel.clone(), Some(token));
    match c
        .factory
        .ack(pb::AckRequest {
            factory_id: String::new(),
            seq,
        })
        .await
    {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_its_ca_and_no_others() {
    let pki = Pki::new();
    let server = TestServer::sqlite_with_tls(
        |s| {
            s.tls_cert = Some(pki.cert_file.clone());
            s.tls_key = Some(pki.key_file.clone());
        },
        pki.ca.trust(),
    )
    .await;
    let storefront = token(&server, Role::Storefront, None).await;

    // A client trusting the CA, with no client certificate: served.
    list_campaigns(&server, Some(pki.ca.trust()), &storefront)
        .await
        .expect("a storefront over TLS");
    // The same by name: the certificate names localhost too.
    let by_name = tonic::transport::Endpoint::from_shared(format!(
        "https://localhost:{}",
        server.addr.port()
    ))
    .unwrap()
    .tls_config(pki.ca.trust())
    .unwrap();
    let mut c = Clients::connect_to(by_name, Some(&storefront)).await;
    c.campaigns
        .list_campaigns(pb::ListCampaignsRequest::default())
        .await
        .expect("https://localhost");

    // Plaintext: the TLS listener does not speak it.
    let err = list_campaigns(&server, None, &storefront)
        .await
        .expect_err("plaintext must not be served");
    assert!(
        !err.starts_with("Unauthenticated") && !err.starts_with("PermissionDenied"),
        "plaintext must fail before access control: {err}"
    );

    // A client trusting another CA refuses the server's certificate.
    let other = Ca::new("another CA");
    let err = list_campaigns(&server, Some(other.trust()), &storefront)
        .await
        .expect_err("a client trusting another CA must not connect");
    assert!(err.contains("certificate"), "{err}");

    // Without --tls-client-ca a factory token needs no certificate (OUT_OF_RANGE: past
    // access control, and cixi-1 has no work order yet).
    import(
        &mut server.clients().await,
        "import",
        CIXI_MUGS,
        pb::ImportMode::Merge,
    )
    .await
    .expect("import");
    let cixi = token(&server, Role::Factory, Some("cixi-1")).await;
    let channel = Clients::try_connect(https_endpoint(server.addr, pki.ca.trust()))
        .await
        .unwrap();
    assert_eq!(ack(&channel, &cixi, 1).await.code(), Code::OutOfRange);

    // Failed handshakes left the server serving.
    list_campaigns(&server, Some(pki.ca.trust()), &storefront)
        .await
        .expect("still serving after refused handshakes");
    server.shutdown().await;
}

/// One product made only at cixi-1, so a planning cycle gives cixi-1 work order #1.
const CIXI_MUGS: &str = r#"
name = "tls"
currency = "CNY"

[[products]]
sku = "tls-mug"
demand = 0
bom = {}

[[factories]]
id = "cixi-1"
capacity_hours = 100.0

[[factories.lines]]
sku = "tls-mug"
unit_cost = 100.0
hours_per_unit = 0.01
"#;

/// Under TLS, `--handshake-timeout` (here 500 ms) covers the TLS handshake and the HTTP/2
/// preface after it: a peer that sends a few bytes of a ClientHello, or finishes the
/// handshake and sends nothing, is closed, and others are served. Before, tonic's TLS
/// accept and hyper's wait for the preface had no deadline: such connections stayed open
/// (QA saw them after 180 s), each holding a place under `--max-connections`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_handshake_that_stops_before_http2_is_closed_after_the_handshake_timeout() {
    use tokio::io::AsyncWriteExt;
    use tokio_rustls::rustls;
    let pki = Pki::new();
    let server = TestServer::sqlite_with_tls(
        |s| {
            s.tls_cert = Some(pki.cert_file.clone());
            s.tls_key = Some(pki.key_file.clone());
            s.handshake_timeout = Duration::from_millis(500);
        },
        pki.ca.trust(),
    )
    .await;
    let at_least = Duration::from_millis(400);
    // The first bytes of a TLS record, then nothing.
    let mut partial = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    partial.write_all(b"\x16\x03\x01").await.unwrap();
    closed_after(&mut partial, at_least, "a partial ClientHello").await;
    // A whole handshake (the server's certificate verified, h2 agreed), then no preface.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pki.ca.pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("the TLS handshake completes");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    closed_after(&mut tls, at_least, "TLS without the HTTP/2 preface").await;
    let storefront = token(&server, Role::Storefront, None).await;
    list_campaigns(&server, Some(pki.ca.trust()), &storefront)
        .await
        .expect("others are served");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_binds_a_factory_token_to_its_certificate() {
    let pki = Pki::new();
    let server = TestServer::sqlite_with_tls(
        |s| {
            s.tls_cert = Some(pki.cert_file.clone());
            s.tls_key = Some(pki.key_file.clone());
            s.tls_client_ca = Some(pki.ca_file.clone());
        },
        pki.ca.trust(),
    )
    .await;
    // The admin connects without a client certificate and sets the scene.
    let mut admin = server.clients().await;
    import(&mut admin, "import", CIXI_MUGS, pb::ImportMode::Merge)
        .await
        .expect("import");
    locked_batch(&mut admin, "cmp-mugs", "tls-mug", 12).await;
    let plan = run_planning(&mut admin, "cycle").await.expect("plan");
    assert_eq!(plan.work_orders.len(), 1);
    assert_eq!(plan.work_orders[0].factory_id, "cixi-1");

    let cixi = token(&server, Role::Factory, Some("cixi-1")).await;
    let connect = |identity: Option<Identity>| {
        let mut tls = pki.ca.trust();
        if let Some(id) = identity {
            tls = tls.identity(id);
        }
        Clients::try_connect(https_endpoint(server.addr, tls))
    };

    // cixi-1's token with cixi-1's certificate: subscribes, receives, acknowledges.
    let own = connect(Some(pki.ca.factory("cixi-1").identity()))
        .await
        .expect("cixi-1 connects with its certificate");
    let mut c = Clients::on(own.clone(), Some(&cixi));
    let mut stream = c
        .factory
        .subscribe(pb::SubscribeRequest {
            factory_id: String::new(),
            after_seq: Some(0),
        })
        .await
        .expect("cixi-1 subscribes")
        .into_inner();
    let work_order = loop {
        let e = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a work order in time")
            .expect("stream")
            .expect("event");
        if let Some(pb::factory_event::Event::WorkOrder(w)) = e.event {
            break w;
        }
    };
    assert_eq!(
        (work_order.factory_id.as_str(), work_order.seq),
        ("cixi-1", 1)
    );
    let acked = ack(&own, &cixi, 1).await;
    assert_eq!(acked.code(), Code::Ok, "{acked:?}");

    // cixi-1's token with zhongshan-2's certificate (same CA): PERMISSION_DENIED, on every
    // factory call.
    let other = connect(Some(pki.ca.factory("zhongshan-2").identity()))
        .await
        .expect("the handshake itself succeeds: the certificate is genuine");
    let s = ack(&other, &cixi, 1).await;
    assert_refused(&s, Code::PermissionDenied, "CLIENT_CERTIFICATE_MISMATCH");
    assert_eq!(error_meta(&s, "factoryId").as_deref(), Some("cixi-1"));
    assert!(
        error_meta(&s, "certificateNames").is_some_and(|n| n.contains("zhongshan-2")),
        "the refusal names the certificate's factory: {s:?}"
    );
    let err = Clients::on(other.clone(), Some(&cixi))
        .factory
        .subscribe(pb::SubscribeRequest {
            factory_id: String::new(),
            after_seq: Some(0),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // cixi-1's token with no certificate: UNAUTHENTICATED.
    let bare = connect(None)
        .await
        .expect("TLS without a client certificate");
    let s = ack(&bare, &cixi, 1).await;
    assert_refused(&s, Code::Unauthenticated, "CLIENT_CERTIFICATE_REQUIRED");
    // A call its role may never make is refused for the role, certificate or not (it was
    // CLIENT_CERTIFICATE_REQUIRED, sending the operator off to fix a certificate).
    let s = Clients::on(bare.clone(), Some(&cixi))
        .preorders
        .place_preorder(place("by-a-factory", "cmp_x", "con-1", 1))
        .await
        .unwrap_err();
    assert_refused(&s, Code::PermissionDenied, "ROLE_NOT_ALLOWED");

    // A certificate naming cixi-1 from a CA the server does not trust: the handshake is
    // refused, so the call never reaches access control.
    let rogue = Ca::new("rogue CA").factory("cixi-1");
    // (Under TLS 1.3 the client finishes its side of the handshake before the server
    // checks its certificate, so the refusal arrives as a transport error on the first
    // call: UNKNOWN "received fatal alert: UnknownCA" or CANCELLED "connection closed",
    // depending on which the client reads first.)
    if let Ok(channel) = connect(Some(rogue.identity())).await {
        let s = ack(&channel, &cixi, 1).await;
        assert!(
            matches!(
                s.code(),
                Code::Unknown | Code::Cancelled | Code::Unavailable
            ),
            "an untrusted certificate must fail the handshake: {s:?}"
        );
    }

    // The name rule: with no DNS name the subject CN counts; with DNS names only they do.
    let cn_only = pki
        .ca
        .issue(&[], "cixi-1", rcgen::ExtendedKeyUsagePurpose::ClientAuth);
    let channel = connect(Some(cn_only.identity())).await.unwrap();
    assert_eq!(ack(&channel, &cixi, 1).await.code(), Code::Ok, "CN cixi-1");
    let san_wins = pki.ca.issue(
        &["zhongshan-2"],
        "cixi-1",
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    );
    let channel = connect(Some(san_wins.identity())).await.unwrap();
    assert_eq!(
        ack(&channel, &cixi, 1).await.code(),
        Code::PermissionDenied,
        "a DNS name zhongshan-2 outweighs CN cixi-1"
    );

    // Storefront and admin tokens need no certificate, and a factory certificate does not
    // stop them either.
    let storefront = token(&server, Role::Storefront, None).await;
    list_campaigns(&server, Some(pki.ca.trust()), &storefront)
        .await
        .expect("storefront without a client certificate");
    let mut c = Clients::on(bare.clone(), server.admin_token.as_deref());
    c.planning
        .list_queued_batches(pb::ListQueuedBatchesRequest::default())
        .await
        .expect("admin without a client certificate");
    assert_eq!(
        ack(&other, server.admin_token.as_deref().unwrap(), 1)
            .await
            .code(),
        Code::InvalidArgument,
        "admin with a factory's certificate: past access control (an admin must name the factory)"
    );

    // The refused handshake left the server serving.
    assert_eq!(ack(&own, &cixi, 1).await.code(), Code::Ok);
    server.shutdown().await;
}

/// Runs `c2m serve` with `args` and returns its exit status and standard error, or panics
/// if it starts serving.
async fn serve_fails(data_dir: &Path, args: &[&std::ffi::OsStr]) -> (i32, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_c2m"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("C2M_TLS_CERT")
        .env_remove("C2M_TLS_KEY")
        .env_remove("C2M_TLS_CLIENT_CA")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("c2m serve {args:?} kept running"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains("listening"),
        "{args:?} must not serve: {stdout}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_stop_the_binary_with_the_flag_and_the_path() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let missing = dir.join("missing.pem");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not a certificate\n").unwrap();
    let broken = dir.join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (_, other_key) = pki.ca.server().write(dir, "other");
    let cert = pki.cert_file.as_os_str();
    let key = pki.key_file.as_os_str();
    let flag = |s: &'static str| std::ffi::OsStr::new(s);

    let cases: Vec<(Vec<&std::ffi::OsStr>, Vec<String>)> = vec![
        (
            vec![
                flag("--tls-cert"),
                missing.as_os_str(),
                flag("--tls-key"),
                key,
            ],
            vec![
                "--tls-cert".into(),
                missing.display().to_string(),
                "cannot read".into(),
            ],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert,
                flag("--tls-key"),
                missing.as_os_str(),
            ],
            vec![
                "--tls-key".into(),
                missing.display().to_string(),
                "cannot read".into(),
            ],
        ),
        (
            vec![
                flag("--tls-cert"),
                garbage.as_os_str(),
                flag("--tls-key"),
                key,
            ],
            vec![
                "--tls-cert".into(),
                garbage.display().to_string(),
                "no certificate".into(),
            ],
        ),
        (
            vec![
                flag("--tls-cert"),
                broken.as_os_str(),
                flag("--tls-key"),
                key,
            ],
            vec!["--tls-cert".into(), broken.display().to_string()],
        ),
        (
            // The certificate where the key belongs.
            vec![flag("--tls-cert"), cert, flag("--tls-key"), cert],
            vec![
                "--tls-key".into(),
                pki.cert_file.display().to_string(),
                "no private key".into(),
            ],
        ),
        (
            // Another certificate's key.
            vec![
                flag("--tls-cert"),
                cert,
                flag("--tls-key"),
                other_key.as_os_str(),
            ],
            vec![
                "--tls-cert".into(),
                "--tls-key".into(),
                other_key.display().to_string(),
                "does not belong to the certificate".into(),
            ],
        ),
        (
            vec![flag("--tls-key"), key],
            vec!["--tls-key needs --tls-cert".into()],
        ),
        (
            vec![flag("--tls-cert"), cert],
            vec!["--tls-cert needs --tls-key".into()],
        ),
        (
            vec![flag("--tls-client-ca"), pki.ca_file.as_os_str()],
            vec!["--tls-client-ca needs --tls-cert".into()],
        ),
        (
            vec![
                flag("--tls-cert"),
                cert,
                flag("--tls-key"),
                key,
                flag("--tls-client-ca"),
                garbage.as_os_str(),
            ],
            vec!["--tls-client-ca".into(), garbage.display().to_string()],
        ),
    ];
    for (i, (args, expected)) in cases.iter().enumerate() {
        // A data directory that does not exist yet: a bad setting stops the server before
        // it creates anything.
        let data = dir.join(format!("data-{i}"));
        let (code, stderr) = serve_fails(&data, args).await;
        assert_ne!(code, 0, "{args:?} must exit non-zero");
        for e in expected {
            assert!(
                stderr.contains(e.as_str()),
                "{args:?}: {e:?} not in {stderr}"
            );
        }
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
}

/// The real binary with the TLS flags: the admin token it wrote works over TLS, a factory
/// token made with `c2m token create` works with its certificate and not without, and the
/// log says mutual TLS is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_mutual_tls_from_its_flags() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let data = dir.join("data");
    let (factory_cert, factory_key) = pki.ca.factory("cixi-1").write(dir, "cixi-1");
    let log = dir.join("c2m.log");
    let bin = env!("CARGO_BIN_EXE_c2m");
    let mut child = tokio::process::Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--tls-cert")
        .arg(&pki.cert_file)
        .arg("--tls-key")
        .arg(&pki.key_file)
        .env("C2M_TLS_CLIENT_CA", &pki.ca_file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = listening(&mut child).await;
    let admin = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();

    // The clients' own TLS options, as the example binaries take them.
    let https = format!("https://localhost:{}", addr.port());
    let trust = c2m_server::tls::ClientTls {
        tls_ca: Some(pki.ca_file.clone()),
        ..Default::default()
    };
    let mut c = Clients::connect_to(trust.endpoint(&https).unwrap(), Some(&admin)).await;
    import(&mut c, "import", CIXI_MUGS, pb::ImportMode::Replace)
        .await
        .expect("the admin token works over TLS");
    // A factory token, once the catalogue knows the factory.
    let out = std::process::Command::new(bin)
        .args([
            "token",
            "create",
            "--role",
            "factory",
            "--factory",
            "cixi-1",
        ])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let factory = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let bare = c.channel.clone();
    let s = ack(&bare, &factory, 1).await;
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    let with_cert = c2m_server::tls::ClientTls {
        tls_ca: Some(pki.ca_file.clone()),
        tls_cert: Some(factory_cert),
        tls_key: Some(factory_key),
    };
    let channel = Clients::try_connect(with_cert.endpoint(&https).unwrap())
        .await
        .unwrap();
    // No work order yet: OUT_OF_RANGE shows the call got past access control.
    assert_eq!(ack(&channel, &factory, 1).await.code(), Code::OutOfRange);

    // Plaintext is not served.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
    if let Ok(channel) = Clients::try_connect(plain).await {
        let s = ack(&channel, &factory, 1).await;
        assert!(
            !matches!(
                s.code(),
                Code::Ok | Code::OutOfRange | Code::Unauthenticated
            ),
            "{s:?}"
        );
    }

    child.start_kill().unwrap();
    let _ = child.wait().await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("TLS on"), "{log}");
    assert!(log.contains("mutual TLS on"), "{log}");
}

#[test]
fn client_tls_options_are_checked_against_the_address() {
    let pki = Pki::new();
    let trust = c2m_server::tls::ClientTls {
        tls_ca: Some(pki.ca_file.clone()),
        ..Default::default()
    };
    let e = trust
        .endpoint("http://127.0.0.1:50051")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-ca") && e.contains("https://"), "{e}");
    let e = c2m_server::tls::ClientTls::default()
        .endpoint("https://127.0.0.1:50051")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-ca"), "{e}");
    let half = c2m_server::tls::ClientTls {
        tls_ca: Some(pki.ca_file.clone()),
        tls_cert: Some(pki.cert_file.clone()),
        tls_key: None,
    };
    let e = half
        .endpoint("https://127.0.0.1:50051")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-cert needs --tls-key"), "{e}");
    let missing = c2m_server::tls::ClientTls {
        tls_ca: Some(pki.dir.path().join("nope.pem")),
        ..Default::default()
    };
    let e = missing
        .endpoint("https://127.0.0.1:50051")
        .unwrap_err()
        .to_string();
    assert!(e.contains("--tls-ca") && e.contains("nope.pem"), "{e}");
    assert!(c2m_server::tls::ClientTls::default()
        .endpoint("http://127.0.0.1:50051")
        .is_ok());
    // An address without a scheme, or with another one, is named as such before any
    // connection: the clients said "is `c2m serve` running?" over tonic's "scheme is
    // missing" found at connect.
    for (addr, says) in [
        ("nope", "no scheme"),
        ("127.0.0.1:50051", "no scheme"),
        ("ftp://127.0.0.1:50051", "the scheme is \"ftp\""),
    ] {
        let e = c2m_server::tls::ClientTls::default()
            .endpoint(addr)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&format!("{addr}: {says}")) && e.contains("http://HOST:PORT"),
            "{e}"
        );
    }
}
