//! Files and folders s3-importd creates, with their modes set explicitly rather than left to
//! the umask: the state file, spool and locks hold partner data and are private (0600 files,
//! 0700 folders); output files of a `file` target take the target's `file_mode` (0600 unless
//! set), and their folders the same bits plus search where reading is allowed.
//!
//! Thin wrappers over `std::fs`; nothing else here.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of private files.
pub const PRIVATE_FILE: u32 = 0o600;

/// The folder mode that goes with a file mode: search wherever reading is allowed.
pub fn folder_mode(file_mode: u32) -> u32 {
    let read = file_mode & 0o444;
    (file_mode | (read >> 2)) & 0o777
}

/// Creates a folder and its missing parents with `mode` (those that exist are left as they
/// are).
pub fn create_dir_all_mode(path: &Path, mode: u32) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(mode).create(path)?;
    Ok(())
}

/// Creates a private folder (0700) and its missing parents.
pub fn create_private_dir(path: &Path) -> io::Result<()> {
    create_dir_all_mode(path, folder_mode(PRIVATE_FILE))
}

/// Creates (or truncates) a file with `mode`, whatever the umask: the mode is set again after
/// creation, since `open` applies the umask.
pub fn create_with_mode(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Creates (or truncates) a private file (0600).
pub fn create_private(path: &Path) -> io::Result<File> {
    create_with_mode(path, PRIVATE_FILE)
}

/// Creates a private file (0600) unless one exists, which is left as it is — never
/// truncated: another process may have created it a moment ago and be writing it.
pub fn create_private_if_missing(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(PRIVATE_FILE)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Sets a path's mode.
pub fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_modes() {
        for (file, folder) in [
            (0o600, 0o700),
            (0o640, 0o750),
            (0o644, 0o755),
            (0o400, 0o500),
            (0o664, 0o775),
        ] {
            assert_eq!(folder_mode(file), folder, "{file:o}");
        }
    }
}
