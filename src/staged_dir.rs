//! Writing a folder all at once: report folders, weight stores and validation bundles are
//! written into a temporary sibling (`.NAME.partial-PID`) and moved into place only when every
//! file is written and synced, so a run that fails, is killed or fills the disk leaves the old
//! folder or nothing — never a folder that looks complete.
//!
//! The move is `renameat2(RENAME_EXCHANGE)` where the file system has it (Linux ext4, xfs,
//! btrfs, tmpfs): the new folder and the old one swap in one atomic step, and the old one is
//! then deleted from the staging name. Elsewhere the old folder is removed first and the new
//! one renamed, which a kill in between leaves as nothing rather than half of each.
//!
//! An existing folder is replaced only if it is empty or holds `marker` (the file a finished
//! folder of this kind always has), so `--out ~` cannot delete a home folder.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A folder being assembled.
#[derive(Debug)]
pub struct StagedDir {
    staging: PathBuf,
    target: PathBuf,
}

impl StagedDir {
    /// Prepares to write `target`, which must not exist, be empty, or hold `marker`. An
    /// existing `target` is replaced when [`StagedDir::commit`] succeeds, and left untouched
    /// otherwise.
    pub fn create(target: &Path, marker: &str) -> io::Result<Self> {
        if target.is_dir()
            && !target.join(marker).exists()
            && fs::read_dir(target)?.next().is_some()
        {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists, is not empty and holds no {marker}: it is not an earlier output \
                     of this command, so it is not replaced (give a new folder)",
                    target.display()
                ),
            ));
        }
        if target.exists() && !target.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a folder", target.display()),
            ));
        }
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir_all(&staging)?;
        Ok(StagedDir {
            staging,
            target: target.to_path_buf(),
        })
    }

    /// Path of a file inside the staging folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.staging.join(file)
    }

    /// The folder the files are finally moved to.
    pub fn target(&self) -> &Path {
        &self.target
    }

    pub fn write(&self, file: &str, contents: &[u8]) -> io::Result<()> {
        fs::write(self.path(file), contents)
    }

    /// Syncs every file, then moves the finished folder into place.
    pub fn commit(self) -> io::Result<PathBuf> {
        sync_tree(&self.staging)?;
        if self.target.exists() {
            if exchange(&self.staging, &self.target)? {
                // The old folder now sits under the staging name.
                fs::remove_dir_all(&self.staging)?;
            } else {
                fs::remove_dir_all(&self.target)?;
                fs::rename(&self.staging, &self.target)?;
            }
        } else {
            fs::rename(&self.staging, &self.target)?;
        }
        if let Some(parent) = self.target.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::File::open(parent)?.sync_all()?;
        }
        let target = self.target.clone();
        std::mem::forget(self);
        Ok(target)
    }
}

impl Drop for StagedDir {
    /// An abandoned folder (an error on the way) leaves nothing behind.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.staging);
    }
}

/// fsync of every file and folder under `dir`, so the rename publishes written bytes.
fn sync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

/// Swaps `a` and `b` atomically; `Ok(false)` where the file system cannot.
fn exchange(a: &Path, b: &Path) -> io::Result<bool> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: both are valid NUL-terminated paths that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EXDEV) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_left_when_not_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("run");
        {
            let r = StagedDir::create(&target, "results.json").unwrap();
            r.write("a.csv", b"x").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_replaces_an_old_folder_of_its_kind() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("run");
        fs::create_dir_all(&target).unwrap();
        fs::write(target.join("results.json"), "old").unwrap();
        let r = StagedDir::create(&target, "results.json").unwrap();
        r.write("new.txt", b"new").unwrap();
        r.commit().unwrap();
        assert!(target.join("new.txt").exists());
        assert!(!target.join("results.json").exists());
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "staging left behind"
        );
    }

    #[test]
    fn a_folder_of_other_files_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
        let e = StagedDir::create(tmp.path(), "results.json").unwrap_err();
        assert!(e.to_string().contains("not replaced"), "{e}");
        assert!(tmp.path().join("notes.txt").exists());
    }
}
