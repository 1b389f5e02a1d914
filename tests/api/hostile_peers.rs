//! Peers that misbehave below the API: connections that never send a byte, or only the
//! HTTP/2 preface, or go quiet after a call; more connections than the process has file
//! descriptors. Found by an outside QA pass (pass nine): each held a shutdown for as long
//! as the peer kept its connection, or (descriptors) ended serving for good while the
//! process lived on, and a client arriving during a drain hung on a listener nobody
//! accepted from.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::*;

/// Asks the health service on a fresh connection; `None` if it does not answer SERVING
/// within two seconds.
async fn serving(addr: std::net::SocketAddr) -> Option<()> {
    let ask = async {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
        let channel = endpoint.connect().await.ok()?;
        let answer = HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .ok()?;
        (answer.into_inner().status == ServingStatus::Serving as i32).then_some(())
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// A shutdown ends within `--shutdown-grace` whatever the connections do, and from its
/// start new connections are refused at once. Before, a connection that sent nothing (or
/// only the preface) held the drain for as long as its peer kept it open, and the
/// listener stayed open, so a client arriving meanwhile hung until its own deadline. Once
/// stopped, the connection the grace cut off is closed: it used to stay open, with
/// tonic's task serving it, in the process that embedded the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_within_its_grace_whatever_idle_connections_do_and_refuses_new_ones() {
    let mut server = TestServer::sqlite_with(|s| s.shutdown_grace = Duration::from_secs(3)).await;
    let addr = server.addr;
    let silent = TcpStream::connect(addr).await.expect("connect");
    let mut preface = TcpStream::connect(addr).await.expect("connect");
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    let quiet = server.clients().await;
    assert_eq!(serving(addr).await, Some(()), "serving before the stop");

    let started = Instant::now();
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await;
    assert!(
        matches!(refused, Ok(Err(ref e)) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a connection during the drain is refused at once: {refused:?}"
    );
    tokio::time::timeout(Duration::from_secs(20), server.shutdown())
        .await
        .expect("the server stops within its grace, idle connections or not");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    // What the grace cut off is closed, not left running: the peer that sent only the
    // preface reads the end of its connection (a server embedded in a process that goes on
    // kept it, and its task, until the peer hung up).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), preface.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the connection is closed once the server has stopped: {closed:?}"
    );
    drop((silent, quiet));
}

/// Running out of file descriptors (more connections than the process may open) stops
/// accepting only while it lasts: the failure is logged as an error, and once the
/// connections close the server serves new ones again. Before, tonic's listener ended its
/// stream on the first failed accept, so the server never accepted again, said so only
/// at DEBUG, and exited with status 0 once the last connection closed.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_pauses_accepting_and_serving_resumes() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_c2m"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("c2m binary starts");
    // Read as it comes, so a full pipe never stops the server.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = child.stderr.take().expect("piped");
    let reader = tokio::spawn({
        let log = log.clone();
        async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                log.lock()
                    .expect("lock")
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let addr = listening(&mut child).await;
    assert_eq!(serving(addr).await, Some(()), "serving before");

    // The kernel completes each connection (the listen backlog); the server accepts
    // until it has no descriptor left.
    // Until the server says it ran out; a connect that times out (past the listen
    // backlog it waits for the kernel's retries, and a busy machine can be slow) is not
    // the end unless several in a row do.
    let mut conns = Vec::new();
    let mut timeouts = 0;
    let ran_out = || {
        log.lock()
            .expect("lock")
            .contains("cannot accept connections")
    };
    while conns.len() < 400 && timeouts < 5 && !ran_out() {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                conns.push(s);
                timeouts = 0;
            }
            _ => timeouts += 1,
        }
    }
    // (That the server ran out is checked at the end, in its log.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(conns);

    let deadline = Instant::now() + Duration::from_secs(30);
    while serving(addr).await.is_none() {
        assert!(
            Instant::now() < deadline,
            "the server does not serve again once the connections are closed"
        );
        assert!(
            child.try_wait().expect("status").is_none(),
            "the server stopped: {:?}",
            child.try_wait()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    child.start_kill().expect("kill");
    let _ = child.wait().await;
    let _ = reader.await;
    let log = log.lock().expect("lock").clone();
    assert!(
        log.contains("cannot accept connections"),
        "the failure is logged as an error: {log}"
    );
}

/// A second SIGTERM stops the server at once, for an operator who will not wait out the
/// drain (here held by a call whose request never ends, with a minute's grace). Before,
/// a second signal, TERM or INT, was ignored.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_the_server_without_waiting_for_the_drain() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_c2m"))
        .args(["serve", "--listen", "127.0.0.1:0", "--no-auth"])
        .args(["--shutdown-grace", "60s", "--data-dir"])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("c2m binary starts");
    let addr = listening(&mut child).await;
    let pid = child.id().expect("running").to_string();
    // A call whose request is never finished (its headers sent, its message never) holds
    // the drain: the server waits for the message. (A connection that sent only the
    // preface held it too while the preface was read by hyper; since the handshake reads
    // the whole preface, an idle connection is closed at once by the drain, and whether
    // the signal came before hyper had it was a race.)
    let silent = call_never_finished(addr).await;
    // Served (another call, on its own connection) after the call's headers were sent,
    // and a moment more for the server to have them.
    assert_eq!(serving(addr).await, Some(()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let term = || {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    term();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = child.try_wait().expect("status");
    assert!(
        early.is_none(),
        "the first signal drains (the silent connection holds it): {early:?}"
    );
    term();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the second signal stops the server")
        .expect("status");
    assert!(status.success(), "{status:?}");
    drop(silent);
}

/// A gRPC call to the server at `addr` whose request stream stays open: headers sent, no
/// message, no end. Answers what keeps it open (drop it to end the call).
async fn call_never_finished(
    addr: std::net::SocketAddr,
) -> (
    h2::client::SendRequest<tonic::codegen::Bytes>,
    h2::SendStream<tonic::codegen::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut ready = client.clone().ready().await.expect("ready");
    let request = raw_get_campaign_request();
    let (_response, stream) = ready.send_request(request, false).expect("sent");
    (client, stream, task)
}

/// A peer that stops answering (a client that vanished: a power cut, a network that
/// dropped it) is sent an HTTP/2 PING once its connection has been quiet for
/// `--keepalive-interval`, and closed when the PING goes unanswered for
/// `--keepalive-timeout`. Before, nothing was sent on a quiet connection, so the server
/// kept it (and its streams, and a file descriptor) until TCP gave up, if ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_pinged_and_its_connection_closed() {
    let server = TestServer::sqlite_with(|s| {
        s.keepalive_interval = Duration::from_millis(500);
        s.keepalive_timeout = Duration::from_millis(500);
    })
    .await;
    let mut peer = TcpStream::connect(server.addr).await.expect("connect");
    // The preface and an empty SETTINGS frame, then silence: nothing is ever answered.
    peer.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("preface");
    let read = async {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = peer.read(&mut buf).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let got = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server closes the connection");
    // The frames' types (a frame: 3 bytes of length, its type, flags, stream id).
    let mut types = Vec::new();
    let mut at = 0;
    while at + 9 <= got.len() {
        let len = u32::from_be_bytes([0, got[at], got[at + 1], got[at + 2]]) as usize;
        types.push(got[at + 3]);
        at += 9 + len;
    }
    const PING: u8 = 6;
    assert!(types.contains(&PING), "a PING before closing: {types:?}");
    server.shutdown().await;
}

/// A connection whose peer sends nothing, or stops before the end of the HTTP/2 preface
/// (one byte; half the preface; its 24 bytes without the SETTINGS frame that must follow
/// them; half of that frame), is closed after `--handshake-timeout` (here 500 ms)
/// without reaching the server, which serves others meanwhile. Before, a silent one was
/// kept until shutdown (keepalive PINGs begin only after the HTTP/2 handshake), so enough
/// of them ran the process out of descriptors, and each held the drain; and the deadline
/// ended at the first byte, so one byte was enough to stay for good. The 24 bytes alone
/// were taken as the whole preface, and such a connection stayed until the keepalive
/// (QA 16).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_stops_before_http2_is_closed_after_the_handshake_timeout() {
    let server =
        TestServer::sqlite_with(|s| s.handshake_timeout = Duration::from_millis(500)).await;
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let with_settings = [preface, b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"].concat();
    for (what, sent) in [
        ("silent", &[][..]),
        ("one byte", &preface[..1]),
        ("half the preface", &preface[..12]),
        ("the preface without its SETTINGS", preface),
        ("half a SETTINGS frame", &with_settings[..28]),
    ] {
        let mut conn = TcpStream::connect(server.addr).await.expect("connect");
        conn.write_all(sent).await.expect("write");
        closed_after(&mut conn, Duration::from_millis(400), what).await;
    }
    assert_eq!(serving(server.addr).await, Some(()), "others are served");
    server.shutdown().await;
}

/// At `--max-connections` (here 2) the server accepts nothing more until a connection
/// closes: a third client waits (in the kernel's backlog), is served once one of the two
/// goes, and those held meanwhile are not disturbed. Before, connections were accepted
/// without a bound, so a flood of them took the process's descriptors (which the store's
/// files and the open connections need too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_a_new_connection_waits_until_one_closes() {
    let server = TestServer::sqlite_with(|s| s.max_connections = 2).await;
    let addr = server.addr;
    let first = TcpStream::connect(addr).await.expect("connect");
    let mut second = TcpStream::connect(addr).await.expect("connect");
    // The two are accepted (each holds its place while the server waits for its first
    // byte) before the third arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = tokio::spawn(async move {
        let ask = async {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .expect("endpoint");
            let channel = endpoint.connect().await.expect("connect");
            HealthClient::new(channel)
                .check(HealthCheckRequest::default())
                .await
                .expect("check")
                .into_inner()
                .status
        };
        (
            tokio::time::timeout(Duration::from_secs(20), ask).await,
            Instant::now(),
        )
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "a third connection is not served at the limit"
    );

    let closed = Instant::now();
    drop(first);
    let (status, served) = third.await.expect("the third client");
    assert_eq!(
        status.expect("served once a connection closed"),
        ServingStatus::Serving as i32
    );
    assert!(served.duration_since(closed) < Duration::from_secs(5));
    // The connection that stayed was kept: it is still open (a read would see no end).
    let mut buf = [0u8; 1];
    let still = tokio::time::timeout(Duration::from_millis(200), second.read(&mut buf)).await;
    assert!(
        still.is_err(),
        "the held connection is left alone: {still:?}"
    );
    server.shutdown().await;
}
