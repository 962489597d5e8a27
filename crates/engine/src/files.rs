//! Owner-only files: every directory the engine (and the node on top of it) creates is mode 0700
//! and every file 0600, whatever the directory's prior mode or the process umask, because the
//! data and the users file are the node's secrets.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the directories the engine and the node create.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the engine and the node create.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) mode 0700, or sets an existing one to 0700. Fails (and so
/// refuses to open) when the mode cannot be set, e.g. on a directory of another user.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)?;
    }
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    set_mode(dir, DIR_MODE)
}

/// [`private_dir`], then every regular file directly inside it set to 0600 (files left by an
/// older version or created under another umask).
pub fn private_tree(dir: &Path) -> io::Result<()> {
    private_dir(dir)?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            set_mode(&entry.path(), FILE_MODE)?;
        }
    }
    Ok(())
}

/// Open options that create files 0600 (the umask can only remove bits, never add them).
pub fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Creates or truncates `path` for writing, 0600 even if it existed with another mode.
pub fn create_private(path: &Path) -> io::Result<fs::File> {
    let f = private_options().write(true).create(true).truncate(true).open(path)?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    Ok(f)
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot make {} mode {mode:o}: {e}", path.display()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn existing_open_tree_is_made_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.join("f"), b"x").unwrap();
        fs::set_permissions(dir.join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        private_tree(&dir).unwrap();
        assert_eq!((mode(&dir), mode(&dir.join("f"))), (0o700, 0o600));
        let f = dir.join("g");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o666)).unwrap();
        create_private(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        let nested = tmp.path().join("a/b");
        private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert!(private_dir(&dir.join("f")).is_err());
    }
}
