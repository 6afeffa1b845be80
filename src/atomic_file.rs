//! Replacing a file so that a crash leaves either the old or the new one,
//! never a torn one: temp file in the same directory, fsync, rename over the
//! target, fsync of the directory. Used by the ban dump and the list files.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The directory and temp file [`replace`] uses for `path`.
fn temp_of(path: &Path) -> (PathBuf, PathBuf) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    (dir, tmp)
}

/// Checks that [`replace`] can work for `path` now: its temp file can be
/// created, written and synced next to it (then removed), and `path` is
/// not a directory.
pub fn probe(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    let (_, tmp) = temp_of(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(b"probe")?;
        file.sync_all()
    })();
    let _ = fs::remove_file(&tmp);
    result
}

/// Writes `path` through `fill`; the temp file is removed on failure and the
/// new file keeps the old one's permissions (a private file stays private).
pub fn replace(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let (dir, tmp) = temp_of(path);
    let result = (|| {
        let file = File::create(&tmp)?;
        if let Ok(meta) = fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        fill(&mut w)?;
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_keeps_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        replace(&path, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(replace(&path, |_| Err(std::io::Error::other("boom"))).is_err());
        assert_eq!(fs::read_to_string(&path).unwrap(), "new", "old file kept");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file removed"
        );
    }
}
