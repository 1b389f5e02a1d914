//! What `c2m serve` creates for a new data directory is readable by its owner alone,
//! whatever the umask: the directory (and any parent it had to make) 0700, the SQLite
//! store and its `-wal` and `-shm` files 0600, `admin.token` 0600. The store holds webhook
//! signing secrets in the clear and every token's hash; before, the directory and
//! `c2m.db` took the process's umask (0755 and 0644 under the usual 022, 0777 and 0666
//! under 000), so any local user could read the secrets and sign deliveries of their own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use crate::common::listening;

/// The file's permission bits in octal, as `ls` and `chmod` write them.
fn mode(path: &Path) -> String {
    let mode = std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode();
    format!("{:o}", mode & 0o777)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_data_directory_and_its_store_are_private_whatever_the_umask() {
    let root = tempfile::tempdir().expect("tempdir");
    let parent = root.path().join("srv");
    let dir = parent.join("data");
    // The most permissive umask there is: every mode below is c2m's own choice.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"umask 000; exec "$0" serve --listen 127.0.0.1:0 --data-dir "$1""#)
        .arg(env!("CARGO_BIN_EXE_c2m"))
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .env_remove("C2M_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("c2m starts");
    listening(&mut child).await;

    assert_eq!(mode(&parent), "700", "{}", parent.display());
    assert_eq!(mode(&dir), "700", "{}", dir.display());
    // While the server runs, SQLite's write-ahead log and its index sit beside the store.
    for file in [
        "c2m.db",
        "c2m.db-wal",
        "c2m.db-shm",
        "admin.token",
        "c2m.db.lock",
    ] {
        let path = dir.join(file);
        assert_eq!(mode(&path), "600", "{}", path.display());
    }
    child.kill().await.expect("stopped");
}
