//! Paths the example binaries write to, compared as files rather than as text.

/// Whether two paths name one file whatever their spelling: `./k.toml` and `k.toml`, a
/// path through a directory and back, a symbolic or hard link. An output compared with its
/// input as text was written over it when spelt another way.
pub fn same_file(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (file_id(a), file_id(b)) {
        (Some((pa, ia)), Some((pb, ib))) => pa == pb || (ia.is_some() && ia == ib),
        _ => false,
    }
}

/// A file's canonical path and, where the platform has them, its device and inode.
type FileId = (std::path::PathBuf, Option<(u64, u64)>);

/// What names a file whatever the path's spelling: its canonical path (links and `.`
/// resolved) and, on Unix, its device and inode (a hard link). An output that does not
/// exist yet is its directory's canonical path and its name.
fn file_id(path: &str) -> Option<FileId> {
    let p = std::path::Path::new(path);
    let canonical = match p.canonicalize() {
        Ok(c) => c,
        Err(_) => {
            let dir = p.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir
                .unwrap_or(std::path::Path::new("."))
                .canonicalize()
                .ok()?;
            dir.join(p.file_name()?)
        }
    };
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
    };
    #[cfg(not(unix))]
    let inode = None;
    Some((canonical, inode))
}
