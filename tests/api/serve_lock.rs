//! One `c2m serve` per SQLite data directory: a second server on the same directory
//! refuses to start, naming the directory and the first one's pid, while the `c2m token`
//! commands still work beside the running server; once the first is killed (SIGKILL, so
//! nothing of it runs to release anything), a new server starts. Before, the second server
//! started too, and both ran the sweeper, the planning schedule and the webhook worker on
//! one `c2m.db`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::common::listening;

fn serve_command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_c2m"));
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--no-auth",
        "--data-dir",
    ])
    .arg(dir)
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    cmd
}

/// Starts `c2m serve` on `dir` and waits for its `c2m listening on` line.
async fn serve(dir: &Path) -> Child {
    let mut child = serve_command(dir).spawn().expect("c2m starts");
    listening(&mut child).await;
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_sqlite_data_directory_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut first = serve(dir.path()).await;
    let pid = first.id().expect("a pid");

    let second = serve_command(dir.path()).spawn().expect("c2m starts");
    let out = tokio::time::timeout(Duration::from_secs(60), second.wait_with_output())
        .await
        .expect("the second server exits instead of serving")
        .expect("its output");
    assert!(!out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&dir.path().display().to_string()),
        "the message names the data directory: {said}"
    );
    assert!(said.contains(&format!("pid {pid}")), "and the pid: {said}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("listening"),
        "{out:?}"
    );

    // The token commands work while the server runs: one short transaction each.
    let listed = Command::new(env!("CARGO_BIN_EXE_c2m"))
        .args(["token", "list", "--data-dir"])
        .arg(dir.path())
        .output()
        .await
        .expect("c2m token list");
    assert!(listed.status.success(), "{listed:?}");

    // Killed outright, the first leaves its lock file behind, but not its lock.
    first.start_kill().expect("kill");
    let _ = first.wait().await;
    assert!(dir.path().join("c2m.db.lock").exists());
    let mut third = serve(dir.path()).await;
    third.start_kill().expect("kill");
    let _ = third.wait().await;
}
