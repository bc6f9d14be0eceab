//! Writing a report folder all at once: files go to a temporary sibling folder that is renamed
//! into place only when everything is written, so a failed run never leaves half a report.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// A report folder being assembled.
pub struct ReportDir {
    staging: PathBuf,
    target: PathBuf,
}

impl ReportDir {
    /// Prepares to write `target`. An existing `target` is replaced when [`ReportDir::commit`]
    /// succeeds, and left untouched otherwise.
    pub fn create(target: &Path) -> io::Result<Self> {
        let parent = target
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::create_dir_all(parent)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "report".into());
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir_all(&staging)?;
        Ok(ReportDir {
            staging,
            target: target.to_path_buf(),
        })
    }

    /// Path of a file inside the staging folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.staging.join(file)
    }

    pub fn write(&self, file: &str, contents: &[u8]) -> io::Result<()> {
        fs::write(self.path(file), contents)
    }

    /// Moves the finished report into place.
    pub fn commit(self) -> io::Result<PathBuf> {
        if self.target.exists() {
            fs::remove_dir_all(&self.target)?;
        }
        fs::rename(&self.staging, &self.target)?;
        let target = self.target.clone();
        std::mem::forget(self);
        Ok(target)
    }
}

impl Drop for ReportDir {
    /// An abandoned report (an error on the way) leaves nothing behind.
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.staging);
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
            let r = ReportDir::create(&target).unwrap();
            r.write("a.csv", b"x").unwrap();
        }
        assert!(!target.exists());
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_replaces_an_old_report() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("run");
        fs::create_dir_all(&target).unwrap();
        fs::write(target.join("old.txt"), "old").unwrap();
        let r = ReportDir::create(&target).unwrap();
        r.write("new.txt", b"new").unwrap();
        r.commit().unwrap();
        assert!(target.join("new.txt").exists());
        assert!(!target.join("old.txt").exists());
    }
}
