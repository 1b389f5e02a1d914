//! The `c2m` command line.

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::{Application, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "c2m",
    version,
    about = "Consumer-to-manufacturer reverse ordering service"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the gRPC API (SQLite in ./data unless --database-url says otherwise).
    Serve(Box<Settings>),
    /// Create, revoke and list bearer tokens (straight in the store; the server need not
    /// run).
    #[command(subcommand)]
    Token(TokenCommand),
}

/// Where the store is, as for `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[arg(long, env = "C2M_DATA_DIR", default_value = "data")]
    pub data_dir: std::path::PathBuf,
    #[arg(long, env = "C2M_DATABASE_URL")]
    pub database_url: Option<String>,
}

impl StoreArgs {
    fn url(&self) -> String {
        match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("c2m.db").display()),
        }
    }

    /// Opens the store a server made. A `token` command never creates one: with a
    /// mistyped `--data-dir` it would make a new empty database, put the token there, and
    /// the running server would refuse that token with no hint why.
    async fn open(&self) -> anyhow::Result<std::sync::Arc<dyn c2m_store::Store>> {
        match &self.database_url {
            Some(url) => {
                let shown = crate::app::redact(url);
                c2m_store::check_url(url)
                    .map_err(|e| anyhow::anyhow!("--database-url {shown:?}: {e}"))?;
                // The URL must name a store a server made, as --data-dir must:
                // `sqlite://typo.db` made a new database, and a PostgreSQL URL naming
                // another database (`.../postgres` for `.../c2m`) had c2m's tables made in
                // it, and the token put there.
                if !c2m_store::store_exists(url).await? {
                    match c2m_store::sqlite_path(url) {
                        Some(db) => anyhow::bail!(
                            "--database-url {shown:?}: no c2m store at {}: `c2m serve` \
                             creates it on its first start; pass the --database-url the \
                             server uses",
                            db.display()
                        ),
                        None => anyhow::bail!(
                            "--database-url {shown:?}: no c2m store in this database (no c2m \
                             tables): `c2m serve` creates them on its first start; pass the \
                             --database-url the server uses"
                        ),
                    }
                }
            }
            None => {
                let db = self.data_dir.join("c2m.db");
                if !db.is_file() {
                    anyhow::bail!(
                        "no c2m store at {}: `c2m serve` creates it on its first start; \
                         pass the --data-dir (or C2M_DATA_DIR) the server uses, or \
                         --database-url for PostgreSQL",
                        db.display()
                    );
                }
            }
        }
        // Opening migrates: on a store an older c2m serves, that would upgrade it under
        // the running server, which then could not start on it again (QA pass eight).
        let url = self.url();
        let schema = c2m_store::schema(&url).await?;
        if schema.applied < schema.known {
            anyhow::bail!(
                "the store at {} was made by an older c2m (it has migrations up to {}; this \
                 c2m's go up to {}): `c2m token` does not upgrade a store, since a server of \
                 the older c2m could not start on it again; use the c2m that serves it, or \
                 start this c2m's `serve` on it first to upgrade it (docs/upgrading.md)",
                crate::app::redact(&url),
                schema.applied,
                schema.known
            );
        }
        Ok(c2m_store::open(&url).await?)
    }
}

/// A token's label is shown on its `token list` line: a newline or another control
/// character in it broke the one-line-per-token listing (a label "a\nb" printed a line
/// that began with "b"), and a megabyte of it was stored and listed as it came.
fn label(s: &str) -> Result<String, String> {
    c2m_domain::ids::parse_label("label", s).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it (shown this once; only its hash is kept).
    Create {
        #[arg(long, value_parser = ["admin", "storefront", "factory"])]
        role: String,
        /// The factory a factory token acts for.
        #[arg(long)]
        factory: Option<String>,
        /// A note for `token list` (who holds it); one line, no control characters.
        #[arg(long, default_value = "", value_parser = label)]
        label: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a token by id (the part after `c2m_` and before the next `_`).
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (ids, roles, factories, labels; never secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Logs go to standard error; `RUST_LOG` tunes them (default `info`).
pub fn init_tracing() {
    init_tracing_with_default("info");
}

/// As [`init_tracing`], with another level when `RUST_LOG` is not set (examples use `warn`).
/// Colours only on a terminal: a log redirected to a file or a collector gets plain text.
pub fn init_tracing_with_default(level: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{}", c2m_store::QUIET_LOGS)));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            let settings = *settings;
            let data_dir = settings.data_dir.clone();
            let auth = !settings.no_auth;
            let app = Application::build(settings).await?;
            if auth {
                match bootstrap_admin(&*app.store(), &data_dir).await? {
                    Some(AdminBootstrap::FirstStart(path)) => tracing::warn!(
                        path = %path.display(),
                        "first start: an admin token was written here; create others with `c2m token create`"
                    ),
                    Some(AdminBootstrap::AllRevoked(path)) => tracing::warn!(
                        path = %path.display(),
                        "every admin token was revoked: a new one was written here so the store has an admin again"
                    ),
                    None => {}
                }
            }
            // Before the address is said: a signal from then on drains the server.
            let first_signal = shutdown_signal();
            // The one line on standard output: scripts and tests read the bound address
            // from it (useful with --listen 127.0.0.1:0). Where it cannot be written
            // (standard output closed, or a full disk) nobody reads it either: the server
            // says so in its log and serves, where `println!` panicked it at start.
            if let Err(e) = say(format_args!("c2m listening on {}", app.local_addr())) {
                tracing::warn!(error = %e, "cannot write the listening address to standard output");
            }
            // The first signal starts the drain (bounded by --shutdown-grace); a second
            // one stops at once, for an operator who will not wait.
            let (first_tx, first_rx) = tokio::sync::oneshot::channel();
            let first = async {
                first_signal.await;
                let _ = first_tx.send(());
            };
            tokio::select! {
                result = app.run_until(first) => result,
                () = async {
                    if first_rx.await.is_ok() {
                        shutdown_signal().await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                } => {
                    tracing::warn!("a second signal: stopping now, without waiting for the drain");
                    Ok(())
                }
            }
        }
        Command::Token(cmd) => token(cmd).await,
    }
}

async fn token(cmd: TokenCommand) -> anyhow::Result<()> {
    use c2m_domain::Role;
    let now = chrono::Utc::now();
    match cmd {
        TokenCommand::Create {
            role,
            factory,
            label,
            store,
        } => {
            let role = Role::parse(&role)?;
            let issued = crate::auth::issue(role, factory.as_deref(), &label)?;
            let store = store.open().await?;
            // A token for a factory the catalogue does not know would be accepted and then
            // see no work orders, ever: refuse it, naming the factory.
            if let Some(f) = &issued.stored.factory {
                let catalogue = store.catalogue().await?;
                if !catalogue.factories.iter().any(|c| &c.id == f) {
                    anyhow::bail!(c2m_domain::DomainError::from(
                        c2m_domain::Refusal::FactoryNotInCatalogue { factory: f.clone() }
                    ));
                }
            }
            store.create_token(&issued.stored, now).await?;
            let id = &issued.stored.id;
            say(format_args!("{}", issued.token)).with_context(|| {
                format!(
                    "token {id} was stored but could not be written to standard output, so \
                     nobody has it: revoke it with `c2m token revoke {id}`"
                )
            })?;
        }
        TokenCommand::Revoke { id, store } => {
            let id = id
                .strip_prefix("c2m_")
                .and_then(|r| r.split('_').next())
                .unwrap_or(&id)
                .to_owned();
            let line = if store.open().await?.revoke_token(&id, now).await? {
                format!("revoked {id}")
            } else {
                format!("{id} was already revoked")
            };
            quiet_on_closed_pipe(say(format_args!("{line}")))
                .context("cannot write to standard output")?;
        }
        TokenCommand::List { store } => {
            let rows: Vec<[String; 5]> = (store.open().await?.tokens().await?)
                .into_iter()
                .map(
                    |c2m_store::StoredToken {
                         token: t,
                         revoked_at,
                         ..
                     }| {
                        let state = if revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        };
                        [
                            t.id.to_string(),
                            t.role.to_string(),
                            t.factory.unwrap_or_else(|| "-".into()),
                            state.into(),
                            t.label,
                        ]
                    },
                )
                .collect();
            // Columns as wide as their widest entry (a role's `Display` ignores a width, and
            // factory ids have no bound), so every column lines up.
            let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
            let (role, factory, state) = (width(1), width(2), width(3));
            for [id, r, f, s, label] in &rows {
                let line = format!("{id}  {r:<role$}  {f:<factory$}  {s:<state$}  {label}");
                match say(format_args!("{}", line.trim_end())) {
                    Ok(()) => {}
                    // `c2m token list | head` has what it wanted: stop there, quietly.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                    Err(e) => return Err(e).context("cannot write the tokens to standard output"),
                }
            }
        }
    }
    Ok(())
}

/// Writes one line to standard output. `println!` panics when it cannot (a full disk under
/// `> token.txt`, standard output closed): the command line says why instead.
fn say(line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_fmt(line)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush())
}

/// A reader that went away (`| head`) is not a failure of the command.
fn quiet_on_closed_pipe(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Why [`bootstrap_admin`] wrote an admin token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// The store had no admin token at all: a first start.
    FirstStart(std::path::PathBuf),
    /// The store had admin tokens, every one revoked.
    AllRevoked(std::path::PathBuf),
}

/// With access control on and no active admin token in the store, makes one and writes it
/// to `DATA_DIR/admin.token` (readable by the owner only), so there is a way in: on a first
/// start, and after the last admin token was revoked (else nobody could create tokens or
/// import a catalogue through the API again, and the only way back would be `c2m token
/// create` on the store, which whoever can restart the server can run anyway). Does nothing
/// while an active admin token exists, so a restart makes no second one.
///
/// Replicas starting together on one database all find no admin: the token is stored as
/// that decision's (`create_bootstrap_admin`, numbered by the admin tokens the store had),
/// so one replica's is kept and the others write no file (`Ok(None)`, logged). The token
/// is written to `admin.token.<id>.new` first and renamed once it is stored: a crash before
/// the store keeps no token, one after leaves the file, which the next start finishes
/// renaming when its token is the store's (else removes, once it is a minute old: a
/// younger one may be another start's on a shared directory, not yet stored), so the
/// admin is never locked out.
pub async fn bootstrap_admin(
    store: &dyn c2m_store::Store,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<AdminBootstrap>> {
    use anyhow::Context;
    let path = data_dir.join("admin.token");
    let tokens = store.tokens().await?;
    // Starts that stopped between storing their token and renaming its file (a file per
    // start: replicas sharing a data directory must not write each other's).
    for entry in std::fs::read_dir(data_dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("admin.token.") && name.ends_with(".new")) {
            continue;
        }
        let pending = entry.path();
        let text = std::fs::read_to_string(&pending).unwrap_or_default();
        if tokens
            .iter()
            .any(|t| crate::auth::is_active_token(t, &text))
        {
            std::fs::rename(&pending, &path)
                .with_context(|| format!("renaming {}", pending.display()))?;
            tracing::warn!(path = %path.display(), "finished writing the admin token a stopped start stored");
        } else if stale(&pending) {
            // A start that stopped before the store took its token. A younger file may be
            // another start's on this directory, between writing it and storing its token.
            std::fs::remove_file(&pending)
                .with_context(|| format!("removing {}", pending.display()))?;
        }
    }
    let admins = || {
        tokens
            .iter()
            .filter(|t| t.token.role == c2m_domain::Role::Admin)
    };
    if admins().any(|t| t.revoked_at.is_none()) {
        return Ok(None);
    }
    let first = admins().next().is_none();
    let label = if first {
        "first admin (admin.token)"
    } else {
        "admin after every admin token was revoked (admin.token)"
    };
    let issued = crate::auth::issue(c2m_domain::Role::Admin, None, label)?;
    crate::app::create_private_dir(data_dir)?;
    let pending = data_dir.join(format!("admin.token.{}.new", issued.stored.id));
    write_private(&pending, &format!("{}\n", issued.token))
        .with_context(|| format!("writing {}", pending.display()))?;
    let seq = admins().count() as i64;
    let stored = store
        .create_bootstrap_admin(&issued.stored, seq, chrono::Utc::now())
        .await;
    if !matches!(stored, Ok(true)) {
        std::fs::remove_file(&pending)
            .with_context(|| format!("removing {}", pending.display()))?;
    }
    if !stored? {
        tracing::info!(
            "another server on this store wrote the admin token at the same time: it is in \
             that server's data directory (admin.token)"
        );
        return Ok(None);
    }
    match std::fs::rename(&pending, &path) {
        Ok(()) => {}
        // Another start sharing this data directory found the stored token's file and
        // renamed it first.
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                && std::fs::read_to_string(&path).is_ok_and(|t| t.trim() == issued.token) => {}
        Err(e) => {
            return Err(e)
                .with_context(|| format!("renaming {} to {}", pending.display(), path.display()))
        }
    }
    sync_dir(data_dir);
    Ok(Some(if first {
        AdminBootstrap::FirstStart(path)
    } else {
        AdminBootstrap::AllRevoked(path)
    }))
}

/// Whether a pending admin token file is older than a start takes to store its token.
fn stale(pending: &std::path::Path) -> bool {
    std::fs::metadata(pending)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > std::time::Duration::from_secs(60))
}

/// Makes a rename in `dir` durable (best effort: not every platform can open a directory).
fn sync_dir(dir: &std::path::Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, whichever comes first. The handlers are
/// installed when this is called, not when the future is first polled: the server calls
/// it before it says it is listening, so a SIGTERM sent as soon as the address is printed
/// drains the server instead of killing it (the default action, before the handler).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            let (Ok(mut term), Ok(mut int)) = (term, int) else {
                // Without handlers the signals keep their default action (the process ends).
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
