//! Writing a file whole, so that a reader (another process of the test bed, a shell sourcing an
//! env file) never sees half of it: the contents go to a new temporary file beside the target,
//! are synced, and only then take the target's name.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `contents` to `path` whole, replacing any file there: through a new temporary file
/// beside it (never an existing one, never through a link), readable by its owner only when
/// `private`, then renamed over `path`.
pub fn write_atomically(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    let temporary = write_temporary_beside(path, contents, private)?;
    let renamed = std::fs::rename(&temporary, path);
    if renamed.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    renamed
}

/// What [`create_atomically`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// `path` holds these contents.
    Ours,
    /// A file was at `path` already (another process made it first), or the file system has no
    /// hard links and a plain rename published ours, possibly replacing another's: read `path`
    /// back for what it holds.
    ReadBack,
}

/// Writes `contents` to `path` whole unless a file is there already: through a new temporary
/// file beside it, published with a hard link, which never replaces, so that of several
/// processes creating one file at once exactly one wins and the others read its contents. Where
/// the file system has no hard links, a rename publishes it (which does replace).
pub fn create_atomically(path: &Path, contents: &str, private: bool) -> std::io::Result<Created> {
    let temporary = write_temporary_beside(path, contents, private)?;
    let published = match std::fs::hard_link(&temporary, path) {
        Ok(()) => Ok(Created::Ours),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(Created::ReadBack),
        Err(_) => std::fs::rename(&temporary, path).map(|()| Created::ReadBack),
    };
    let _ = std::fs::remove_file(&temporary);
    published
}

/// A new file `DIR/.NAME.PID.SEQUENCE.NANOS.tmp` beside `path` (a link or a rename stays on one
/// file system) with `contents`, synced, owner-only when `private`. The name is unique to this
/// process (its id), this call (a process-wide sequence: two threads may read the same clock
/// tick) and moment (a reused process id); the file is created new, so an existing one is never
/// written through, and on failure nothing of this call's is left.
fn write_temporary_beside(path: &Path, contents: &str, private: bool) -> std::io::Result<PathBuf> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let temporary = path.with_file_name(format!(
        ".{name}.{}.{sequence}.{nanos}.tmp",
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    // Created new: if this fails, the file there is somebody else's and stays.
    let mut file = options.open(&temporary)?;
    let written = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    match written {
        Ok(()) => Ok(temporary),
        Err(error) => {
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> PathBuf {
        let folder =
            std::env::temp_dir().join(format!("testbed-web-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        folder
    }

    fn leftovers(folder: &Path) -> Vec<String> {
        std::fs::read_dir(folder)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn a_write_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let folder = folder("write");
        let path = folder.join("settings.env");
        write_atomically(&path, "A=1\n", true).unwrap();
        write_atomically(&path, "A=2\n", true).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A=2\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(leftovers(&folder), Vec::<String>::new());
        std::fs::remove_dir_all(folder).unwrap();
    }

    #[test]
    fn a_create_never_replaces_and_the_loser_reads_the_winners_file() {
        let folder = folder("create");
        let path = folder.join("key.pem");
        assert_eq!(
            create_atomically(&path, "first", true).unwrap(),
            Created::Ours
        );
        assert_eq!(
            create_atomically(&path, "second", true).unwrap(),
            Created::ReadBack
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        assert_eq!(leftovers(&folder), Vec::<String>::new());
        std::fs::remove_dir_all(folder).unwrap();
    }
}
