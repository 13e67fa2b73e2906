//! Writing files the user owns without ever leaving a half-written one: write a temporary file
//! in the target's folder, flush it to disk, then rename it over the target.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` through `fill`; on any error the target is untouched and the temporary removed.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    write_checked(path, fill, |_| Ok(()))
}

/// `write_atomic`, with `check` run on the complete temporary file before it replaces `path`
/// (so what is checked is what lands, even when another process writes `path` meanwhile); a
/// failed check leaves `path` untouched.
pub fn write_checked(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    if path.is_dir() {
        return Err(Error::data(path.display().to_string(), "is a directory; name a file to write"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| Error::data(path.display().to_string(), "not a file name"))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let io = |e| Error::io(path, e);
    let result = (|| {
        // A file already at the temporary name (left by a killed run, or a planted symlink) is
        // removed, never written through: `create_new` does not follow symlinks.
        let _ = fs::remove_file(&tmp);
        let file = File::options().write(true).create_new(true).open(&tmp).map_err(io)?;
        let mut w = BufWriter::new(file);
        fill(&mut w).map_err(io)?;
        let file = w.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        check(&tmp)?;
        fs::rename(&tmp, path).map_err(io)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_symlink_at_the_temporary_name_is_not_written_through() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim.txt");
        fs::write(&victim, b"keep me").unwrap();
        let out = d.path().join("out.bin");
        let tmp = d.path().join(format!(".out.bin.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, &tmp).unwrap();
        write_atomic(&out, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(fs::read(&out).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn a_named_symlink_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim.txt");
        fs::write(&victim, b"keep me").unwrap();
        let out = d.path().join("out.bin");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_atomic(&out, |w| w.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep me");
        assert!(!fs::symlink_metadata(&out).unwrap().file_type().is_symlink());
    }
}
