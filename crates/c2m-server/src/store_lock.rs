//! One `c2m serve` per SQLite store: an exclusive OS lock on a file beside the database.
//!
//! The embedded SQLite store is for one server process. Two on one `c2m.db` would both run
//! the deadline sweeper, the planning schedule and the webhook worker, each believing it is
//! alone (SQLite's own locking keeps the file consistent, not those loops: webhooks would
//! be leased twice, planning cycles would race for the same batches). Several replicas are
//! what PostgreSQL is for. So a server on SQLite takes an exclusive lock on
//! `<database>.lock` (`DATA_DIR/c2m.db.lock` by default) before it opens the store, and
//! holds it for its life; a second one finds it taken and refuses to start, naming the
//! data directory and the pid written in the file by the holder.
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows, through
//! `fs4`), not the pid file: it goes when the process dies, however it dies (SIGKILL
//! included), so a crash never leaves a store locked; the pid in the file is only for the
//! message. The workspace's MSRV (1.85) predates `std::fs::File::try_lock` (1.89).
//!
//! The `c2m token` commands do not take it: each is one short transaction that SQLite
//! serialises with the running server's writes, and creating or revoking a token while the
//! server runs is what they are for.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

/// The lock of one SQLite store, held until dropped (or the process ends).
#[derive(Debug)]
pub struct StoreLock {
    /// Open for as long as the lock is held: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StoreLockError {
    /// Another process holds it.
    #[error(
        "the data directory {dir} is in use by another c2m serve{pid} (it holds the lock \
         {lock}): one server process per SQLite store, since each runs the sweeper, the \
         planning schedule and the webhook worker; stop the other one, give this one \
         another --data-dir, or run replicas on PostgreSQL (--database-url)",
        dir = .dir.display(),
        lock = .lock.display(),
        pid = .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        pid: Option<u32>,
    },
    /// The lock file could not be opened or locked at all.
    #[error("cannot lock {lock}: {source}", lock = .lock.display())]
    Io {
        lock: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreLock {
    /// The lock file of the SQLite database at `database`: beside it, `.lock` appended.
    pub fn path_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock of the SQLite database at `database` without waiting, and writes this
    /// process's pid in the lock file; [`StoreLockError::Held`] when another process holds
    /// it.
    pub fn acquire(database: &Path) -> Result<StoreLock, StoreLockError> {
        let path = Self::path_for(database);
        let io = |source| StoreLockError::Io {
            lock: path.clone(),
            source,
        };
        // Not truncated on open: the holder's pid must survive a refused contender. Owner
        // only, whatever the umask, as everything `serve` creates (a data directory shared
        // with others would otherwise hold a lock file anyone may write).
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).map_err(io)?;
        if !file.try_lock_exclusive().map_err(io)? {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let dir = match database.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            return Err(StoreLockError::Held {
                dir,
                lock: path,
                pid: text.trim().parse().ok(),
            });
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(StoreLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A second lock on the same store is refused naming the directory and this pid; once
    /// the first is dropped, the lock can be taken again.
    #[test]
    fn a_second_lock_is_refused_until_the_first_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("c2m.db");
        let first = StoreLock::acquire(&db).expect("the first lock");
        assert_eq!(first.path(), dir.path().join("c2m.db.lock"));
        match StoreLock::acquire(&db) {
            Err(e @ StoreLockError::Held { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&dir.path().display().to_string()), "{text}");
                assert!(
                    text.contains(&format!("pid {}", std::process::id())),
                    "{text}"
                );
            }
            other => panic!("expected Held, got {other:?}"),
        }
        drop(first);
        StoreLock::acquire(&db).expect("free again");
    }
}
