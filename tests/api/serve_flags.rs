//! `c2m serve` and `c2m token` refuse settings they cannot run with, naming the flag,
//! with status 1 and no panic, before anything is created.

use std::path::Path;
use std::process::Output;

fn c2m(args: &[&str], dir: &Path) -> Output {
    c2m_command(args, dir).output().expect("c2m runs")
}

/// `c2m args --data-dir dir`, warnings logged, no backtraces, no database URL from the
/// environment.
fn c2m_command(args: &[&str], dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_c2m"));
    c.args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0")
        .env_remove("C2M_DATABASE_URL");
    c
}

/// A store in `dir` as `c2m serve` makes it, without running a server.
fn sqlite_store(dir: &Path) {
    let db = dir.join("c2m.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c2m_store::open(&format!("sqlite://{}", db.display())))
        .expect("a store");
}

fn refused(out: &Output, says: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{says}: {out:?}");
    assert!(stderr.contains(says), "expected {says:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "nothing announced or printed: {out:?}"
    );
}

/// `--max-in-flight` and `--concurrency-per-connection` are semaphores: a count above
/// what one holds panicked the server, at start or on the first connection.
#[test]
fn concurrency_limits_a_semaphore_cannot_hold_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--max-in-flight", "--concurrency-per-connection"] {
        let out = c2m(
            &[
                "serve",
                "--listen",
                "127.0.0.1:0",
                flag,
                "18446744073709551615",
            ],
            dir.path(),
        );
        refused(&out, &format!("{flag} must be at most"));
    }
}

/// A database URL that names no file (empty, as `C2M_DATABASE_URL=` in an env file gives,
/// `sqlite://`, `sqlite::memory:`) was opened by SQLite as a private temporary database:
/// the server said it was ready and then failed with "no such table: api_tokens", and
/// `c2m token create` printed a token nobody could use, exit 0.
#[test]
fn a_database_url_naming_no_file_is_refused_by_serve_and_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for url in ["", "sqlite://", "sqlite::memory:"] {
        let out = c2m(
            &["serve", "--listen", "127.0.0.1:0", "--database-url", url],
            &data,
        );
        refused(&out, &format!("--database-url {url:?}: "));
        let out = c2m(
            &["token", "create", "--role", "admin", "--database-url", url],
            &data,
        );
        refused(&out, &format!("--database-url {url:?}: "));
    }
    assert!(!data.exists(), "nothing created");
}

/// `c2m token` never creates a store: a `--database-url sqlite://PATH` with no store at
/// PATH (a typo) is refused as a `--data-dir` without `c2m.db` is. It made a new database
/// there and put the token in it, which the running server then refused.
#[test]
fn a_token_command_on_a_sqlite_url_without_a_store_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.db");
    let url = format!("sqlite://{}", typo.display());
    for args in [
        &["token", "create", "--role", "admin", "--database-url", &url][..],
        &["token", "list", "--database-url", &url][..],
    ] {
        let out = c2m(args, dir.path());
        refused(&out, "no c2m store at");
    }
    let bare = typo.display().to_string();
    let out = c2m(&["token", "list", "--database-url", &bare], dir.path());
    refused(&out, "no c2m store at");
    assert!(!typo.exists(), "nothing created at {}", typo.display());
}

/// A token's label is shown on its one `token list` line: a newline in it made a line of
/// its own there. A label with a control character (or a text direction override), or
/// over 200 characters, is refused naming `--label`, and no token is made.
#[test]
fn a_token_label_that_is_not_one_short_line_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_store(dir.path());
    for bad in ["a\nb", "tab\there", "bell\u{7}", "\u{202e}txt.exe"] {
        let out = c2m(
            &["token", "create", "--role", "admin", "--label", bad],
            dir.path(),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad:?}: {out:?}");
        assert!(
            stderr.contains("--label") && stderr.contains("control character"),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "no token printed: {out:?}");
    }
    // A label is a line, not a document: over 200 characters it is refused too.
    let long = "微".repeat(201);
    let out = c2m(
        &["token", "create", "--role", "admin", "--label", &long],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("--label") && stderr.contains("at most 200 characters"),
        "{stderr}"
    );
    let out = c2m(
        &[
            "token",
            "create",
            "--role",
            "admin",
            "--label",
            &format!("ops on-call, 微信 {}", "x".repeat(180)),
        ],
        dir.path(),
    );
    assert!(out.status.success(), "{out:?}");
    let out = c2m(&["token", "list"], dir.path());
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
}

/// A refused `--database-url` is named in the error without its password (standard error
/// goes to logs): `postgress://user:PASSWORD@...`, one letter off, printed the password.
#[test]
fn a_refused_database_url_is_shown_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let url = "postgress://c2m:hunter2@db.internal/c2m";
    for args in [
        &["serve", "--listen", "127.0.0.1:0", "--database-url", url][..],
        &["token", "list", "--database-url", url][..],
    ] {
        let out = c2m(args, dir.path());
        refused(
            &out,
            "--database-url \"postgress://c2m:***@db.internal/c2m\": ",
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("hunter2"),
            "{out:?}"
        );
    }
}

/// `c2m token` on a PostgreSQL database no server has started on (the wrong database
/// named, `.../postgres` for `.../c2m`) made c2m's tables there and put the token in them,
/// exit 0. It is refused, and the database is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_token_command_on_a_database_without_a_store_creates_nothing() {
    let Some(admin) = crate::common::pg_admin_url() else {
        return;
    };
    let url = c2m_store::conformance::fresh_pg_database(&admin).await;
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["token", "create", "--role", "admin", "--database-url", &url][..],
        &["token", "list", "--database-url", &url][..],
    ] {
        let out = tokio::task::spawn_blocking({
            let (args, dir) = (
                args.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                dir.path().to_owned(),
            );
            move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                c2m(&args, &dir)
            }
        })
        .await
        .unwrap();
        refused(&out, "no c2m store in this database");
    }
    assert!(
        !c2m_store::store_exists(&url).await.unwrap(),
        "no c2m tables made"
    );
    // Once a server has made the store, the same command works.
    drop(c2m_store::open(&url).await.expect("the store"));
    assert!(c2m_store::store_exists(&url).await.unwrap());
    let out = c2m(&["token", "list", "--database-url", &url], dir.path());
    assert!(out.status.success(), "{out:?}");
    c2m_store::conformance::drop_pg_database(&admin, &url).await;
}

/// `c2m` with its standard output somewhere it cannot write. `token create > /dev/full`
/// panicked ("failed printing to stdout", exit 101) after storing a token nobody had; it
/// now fails with status 1 naming the stored token's id and how to revoke it, and that
/// revoke works. `token list | head` ends quietly; `serve` with its standard output on a
/// full disk panicked at start, and now serves (it logs that the line was not written).
#[test]
fn a_standard_output_that_cannot_be_written_is_said_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_store(dir.path());
    let run = |args: &[&str], stdout: std::process::Stdio| {
        c2m_command(args, dir.path())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("c2m starts")
            .wait_with_output()
            .expect("c2m runs")
    };
    let full = || -> std::process::Stdio {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full")
            .into()
    };

    let out = run(&["token", "create", "--role", "admin"], full());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let id = stderr
        .split("c2m token revoke ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no revoke command named: {stderr}"))
        .to_owned();
    // The token's line in `token list` says `state`.
    let listed_as = |state: &str| {
        let listed = c2m(&["token", "list"], dir.path());
        let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(&id) && l.contains(state)),
            "{id} {state} in {listed}"
        );
    };
    listed_as("active");
    let revoked = c2m(&["token", "revoke", &id], dir.path());
    assert!(revoked.status.success(), "{revoked:?}");
    listed_as("revoked");

    let out = run(&["token", "list"], crate::common::closed_pipe());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(out.stderr.is_empty(), "{out:?}");

    // The server, its one line unwritable: it says so and goes on serving.
    let served = dir.path().join("served");
    let mut server = c2m_command(&["serve", "--listen", "127.0.0.1:0", "--no-auth"], &served)
        .stdout(full())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("c2m serve starts");
    let mut stderr = std::io::BufReader::new(server.stderr.take().unwrap());
    let mut said = String::new();
    let warned = loop {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap_or(0) == 0 {
            break false;
        }
        said.push_str(&line);
        if line.contains("cannot write the listening address") {
            break true;
        }
    };
    let running = server.try_wait().expect("status").is_none();
    server.kill().ok();
    server.wait().ok();
    assert!(warned && running, "serve said: {said}");
}

/// Runs one statement on the SQLite store in `dir`, past c2m: what another c2m left.
fn sqlite_sql(dir: &Path, sql: &str) -> Vec<i64> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(c2m_store::conformance::sqlite_past_the_store(
        &dir.join("c2m.db"),
        sql,
    ))
}

/// `c2m token` on a store an older c2m made (and may be serving) refuses, naming both
/// migration numbers, and changes nothing: it opened the store, which applied this build's
/// migrations under the running server, and that server could not start on it again (QA
/// pass eight). A store a newer c2m migrated is refused naming the newer c2m.
#[test]
fn a_token_command_neither_upgrades_an_older_store_nor_opens_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    sqlite_store(dir.path());
    let applied = "SELECT version FROM _sqlx_migrations ORDER BY version";
    let mut versions = sqlite_sql(dir.path(), applied);
    let known = versions.pop().expect("migrations");
    let older = *versions.last().expect("more than one migration");
    // As the c2m before this build's newest migration left the store.
    sqlite_sql(
        dir.path(),
        &format!("DELETE FROM _sqlx_migrations WHERE version = {known} RETURNING version"),
    );
    for args in [
        &["token", "list"][..],
        &["token", "create", "--role", "admin"][..],
        &["token", "revoke", "0123456789abcdef"][..],
    ] {
        let out = c2m(args, dir.path());
        refused(&out, "was made by an older c2m");
        refused(
            &out,
            &format!("it has migrations up to {older}; this c2m's go up to {known}"),
        );
    }
    assert_eq!(
        sqlite_sql(dir.path(), applied),
        versions,
        "nothing upgraded"
    );
    assert_eq!(
        sqlite_sql(dir.path(), "SELECT COUNT(*) FROM api_tokens"),
        [0],
        "no token stored"
    );

    // As a newer c2m left a store: one migration more than this build has.
    let newer = tempfile::tempdir().unwrap();
    sqlite_store(newer.path());
    sqlite_sql(
        newer.path(),
        "INSERT INTO _sqlx_migrations \
         (version, description, installed_on, success, checksum, execution_time) \
         VALUES (9999, 'newer', CURRENT_TIMESTAMP, 1, X'00', 1) RETURNING version",
    );
    let out = c2m(&["token", "list"], newer.path());
    refused(
        &out,
        "the database was migrated by a newer c2m: it has migration 9999",
    );
}

/// A PostgreSQL URL without a database is refused before anything is created (PostgreSQL
/// would connect to the database named after the user, and c2m installed its tables
/// there), and a refused start is the error and its causes, without the stack backtrace
/// printed whenever `RUST_BACKTRACE` was set.
#[test]
fn a_postgres_url_naming_no_database_is_refused_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    // Port 9 of a documentation address: nothing is reached before the refusal.
    let url = "postgres://postgres@192.0.2.1:9/";
    let out = c2m_command(
        &["serve", "--listen", "127.0.0.1:0", "--database-url", url],
        dir.path(),
    )
    .env("RUST_BACKTRACE", "1")
    .env_remove("PGDATABASE")
    .output()
    .expect("c2m runs");
    refused(&out, &format!("--database-url {url:?}: names no database"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("Error: "), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing created in the data directory"
    );
}

/// A data directory that is a symbolic link to a folder not made yet is named as such,
/// with where it points; the error was "File exists", naming neither (QA 16).
#[tokio::test]
async fn a_data_directory_linked_to_nothing_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("data");
    let target = dir.path().join("not-made-yet");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let settings = c2m_server::Settings::for_tests(link.clone());
    let Err(e) = c2m_server::Application::build(settings).await else {
        panic!("started on a dangling link");
    };
    let said = format!("{e:#}");
    assert!(
        said.contains("is a symbolic link to") && said.contains("not-made-yet"),
        "{said}"
    );
    assert!(!target.exists(), "nothing made where it points");
}
