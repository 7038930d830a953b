//! Loading TensorFlow's C library out of the pip wheel, once per process.
//!
//! The `tensorflow` crate is built with `tensorflow_runtime_linking`: nothing is linked at
//! build time and `tensorflow::library::load()` dlopens `libtensorflow.so` at run time. It
//! finds that file only through `$TENSORFLOW_DIR`, `$LD_LIBRARY_PATH` or `/usr/local/lib`
//! (`tensorflow-sys-runtime`'s `finder.rs`; its `load_from(path)` is private), and the wheel
//! names the library `libtensorflow_cc.so.2`. So we give it a directory of its own:
//!
//! ```text
//! <cache>/native/<key>/                      key = 16 hex digits of blake3(package dir,
//!     libtensorflow.so -> <pkg>/libtensorflow_cc.so.2         size + mtime of both libraries)
//!     libtensorflow_framework.so.2 -> <pkg>/libtensorflow_framework.so.2
//! ```
//!
//! The second link is needed because `libtensorflow_cc.so.2` finds its framework library
//! through `$ORIGIN`, which the loader resolves to the directory of the *link*. The key changes
//! when the wheel is reinstalled or upgraded, so a stale directory is never used; old ones are
//! harmless (two symlinks). The directory is built under a temporary name and renamed into
//! place, so two processes racing to create it both end up using one complete directory.
//!
//! `TENSORFLOW_DIR` is then set to that directory for the duration of the `load()` call and
//! restored afterwards (so it does not leak into the Python worker's environment). Changing
//! the environment is only sound while no other thread reads it through libc; Rust's own
//! `std::env` accesses are serialized by std. TensorFlow itself starts no threads before it is
//! loaded, so: call [`Native::load`] early (the CLI does it before starting the scheduler's
//! threads) and only through this module, which serializes loads with a lock.
//!
//! TensorFlow's C++ logging goes to stderr. [`TfLogs::Quiet`] (the default; `exportctl -vv`
//! shows them) keeps it off the user's terminal: `TF_CPP_MIN_LOG_LEVEL=3` (unless the user set
//! it) silences what TensorFlow logs once loaded — on a CPU-only machine an `E0000 … failed
//! call to cuInit` at every session — and errors still reach us as `Status` values, which
//! say the same. The one line logged while the library initialises (`cudart_stub.cc: Could
//! not find cuda drivers`), before TensorFlow reads that variable, is kept out by pointing
//! fd 2 at /dev/null for the duration of the dlopen; dlopen's own failure message comes from
//! `dlerror()`, not stderr, so nothing useful is lost. The one thing TensorFlow says on stderr
//! while initialising that matters — the wheel needs AVX, and it aborts on CPUs without — is
//! checked beforehand ([`NativeError::CpuUnsupported`]). `TF_CPP_MIN_LOG_LEVEL` stays set
//! after loading (TensorFlow reads it at its first log line, which comes later), so child
//! processes inherit it unless they are given their own environment.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::UNIX_EPOCH;

/// The TensorFlow C library, loaded. Only a `&'static Native` exists, and holding one is the
/// proof that the `tensorflow` crate's functions may be called.
#[derive(Debug)]
pub struct Native {
    package_dir: PathBuf,
    link_dir: PathBuf,
    version: String,
}

/// Whether TensorFlow's own C++ log lines reach stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TfLogs {
    /// Nothing (`TF_CPP_MIN_LOG_LEVEL=3`), unless the user set the variable.
    Quiet,
    /// Whatever TensorFlow prints by default (`exportctl -vv`).
    Shown,
}

/// The name the C library has inside the pip wheel.
pub const CC_LIBRARY: &str = "libtensorflow_cc.so.2";
/// The framework library `CC_LIBRARY` needs beside it.
pub const FRAMEWORK_LIBRARY: &str = "libtensorflow_framework.so.2";
/// The name `tensorflow::library::load()` looks for.
const LOADED_NAME: &str = "libtensorflow.so";

static LOADED: OnceLock<Native> = OnceLock::new();
static LOADING: Mutex<()> = Mutex::new(());

impl Native {
    /// Loads TensorFlow from `tensorflow_dir` (the `tensorflow` package directory of a pip
    /// install, `.../site-packages/tensorflow`), preparing its link directory under
    /// `cache_dir/native/`. The first successful call loads the library; later calls with the
    /// same package return it, calls with another package fail (one TensorFlow per process).
    pub fn load(tensorflow_dir: &Path, cache_dir: &Path, logs: TfLogs) -> Result<&'static Native, NativeError> {
        let _guard = LOADING.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let package_dir = check_package(tensorflow_dir)?;
        if let Some(native) = LOADED.get() {
            return if native.package_dir == package_dir {
                Ok(native)
            } else {
                Err(NativeError::AlreadyLoaded { loaded: native.package_dir.clone(), requested: package_dir })
            };
        }
        check_cpu()?;
        let link_dir = prepare_link_dir(&package_dir, &cache_dir.join("native"))?;
        let quiet = logs == TfLogs::Quiet && std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none();
        if quiet {
            std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "3");
        }
        let previous = std::env::var_os("TENSORFLOW_DIR");
        std::env::set_var("TENSORFLOW_DIR", &link_dir);
        let silenced = if quiet { StderrSilenced::new() } else { None };
        let loaded = tensorflow::library::load();
        drop(silenced);
        restore_env("TENSORFLOW_DIR", previous);
        loaded.map_err(|message| NativeError::Open { library: package_dir.join(CC_LIBRARY), message })?;
        let version = tensorflow::version().unwrap_or_else(|_| "unknown".to_owned());
        Ok(LOADED.get_or_init(|| Native { package_dir, link_dir, version }))
    }

    /// The library already loaded in this process, if any.
    pub fn get() -> Option<&'static Native> {
        LOADED.get()
    }

    /// The `tensorflow` package directory the library came from (canonical).
    pub fn package_dir(&self) -> &Path {
        &self.package_dir
    }

    /// The directory of links the library was loaded through.
    pub fn link_dir(&self) -> &Path {
        &self.link_dir
    }

    /// TensorFlow's version as the C library reports it (`TF_Version`), e.g. "2.21.0".
    pub fn version(&self) -> &str {
        &self.version
    }
}

/// TensorFlow's x86-64 wheels are built for AVX and abort (after a message we would have
/// silenced) on CPUs without it.
fn check_cpu() -> Result<(), NativeError> {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx") {
        return Err(NativeError::CpuUnsupported { missing: "AVX" });
    }
    Ok(())
}

fn restore_env(key: &str, previous: Option<OsString>) {
    match previous {
        Some(value) => std::env::set_var(key, value),
        None => std::env::remove_var(key),
    }
}

/// While alive, fd 2 points at /dev/null (see the module documentation for why).
struct StderrSilenced {
    saved: std::os::fd::OwnedFd,
}

mod fd {
    extern "C" {
        pub fn dup(fd: i32) -> i32;
        pub fn dup2(from: i32, to: i32) -> i32;
    }
}

impl StderrSilenced {
    /// `None` when stderr cannot be redirected; the logs then simply show.
    fn new() -> Option<StderrSilenced> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let null = std::fs::OpenOptions::new().write(true).open("/dev/null").ok()?;
        // SAFETY: dup/dup2 on valid descriptors; the saved descriptor is owned from here on.
        unsafe {
            let saved = fd::dup(2);
            if saved < 0 {
                return None;
            }
            let saved = std::os::fd::OwnedFd::from_raw_fd(saved);
            if fd::dup2(null.as_raw_fd(), 2) < 0 {
                return None;
            }
            Some(StderrSilenced { saved })
        }
    }
}

impl Drop for StderrSilenced {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: restores the descriptor saved by `new`.
        unsafe {
            fd::dup2(self.saved.as_raw_fd(), 2);
        }
    }
}

/// The package directory, canonical, holding both libraries.
fn check_package(tensorflow_dir: &Path) -> Result<PathBuf, NativeError> {
    let package_dir = std::fs::canonicalize(tensorflow_dir)
        .ok()
        .filter(|dir| dir.is_dir())
        .ok_or_else(|| NativeError::PackageMissing { dir: tensorflow_dir.to_owned() })?;
    for library in [CC_LIBRARY, FRAMEWORK_LIBRARY] {
        if !package_dir.join(library).is_file() {
            return Err(NativeError::LibraryMissing { dir: package_dir, library });
        }
    }
    Ok(package_dir)
}

/// `<native_root>/<key>/` with both links, created atomically if missing.
fn prepare_link_dir(package_dir: &Path, native_root: &Path) -> Result<PathBuf, NativeError> {
    let cache_error = |path: &Path, source: std::io::Error| NativeError::Cache { path: path.to_owned(), source };
    let final_dir = native_root.join(link_dir_key(package_dir)?);
    if links_are_valid(&final_dir, package_dir) {
        return Ok(final_dir);
    }
    std::fs::create_dir_all(native_root).map_err(|e| cache_error(native_root, e))?;
    let temp = native_root.join(format!(".tmp-{}-{}", std::process::id(), nanos_now()));
    std::fs::create_dir(&temp).map_err(|e| cache_error(&temp, e))?;
    let made = make_links(&temp, package_dir).map_err(|e| cache_error(&temp, e));
    if let Err(error) = made {
        let _ = std::fs::remove_dir_all(&temp);
        return Err(error);
    }
    match std::fs::rename(&temp, &final_dir) {
        Ok(()) => Ok(final_dir),
        Err(error) => {
            let _ = std::fs::remove_dir_all(&temp);
            // Another process won the race (rename onto a non-empty directory fails): use its
            // directory if it is complete. A broken leftover is moved aside and replaced once.
            if links_are_valid(&final_dir, package_dir) {
                return Ok(final_dir);
            }
            if final_dir.exists() {
                let aside = native_root.join(format!(".stale-{}-{}", std::process::id(), nanos_now()));
                if std::fs::rename(&final_dir, &aside).is_ok() {
                    let _ = std::fs::remove_dir_all(&aside);
                    return prepare_link_dir(package_dir, native_root);
                }
            }
            Err(cache_error(&final_dir, error))
        }
    }
}

fn make_links(dir: &Path, package_dir: &Path) -> std::io::Result<()> {
    symlink(&package_dir.join(CC_LIBRARY), &dir.join(LOADED_NAME))?;
    symlink(&package_dir.join(FRAMEWORK_LIBRARY), &dir.join(FRAMEWORK_LIBRARY))
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "the native loader needs Linux or macOS"))
}

fn links_are_valid(dir: &Path, package_dir: &Path) -> bool {
    let points_to = |link: &str, target: &str| std::fs::read_link(dir.join(link)).is_ok_and(|t| t == package_dir.join(target));
    points_to(LOADED_NAME, CC_LIBRARY) && points_to(FRAMEWORK_LIBRARY, FRAMEWORK_LIBRARY)
}

/// Names the link directory after what it points at: the package path and the identity
/// (size, mtime) of both libraries, so a reinstalled wheel gets a fresh directory.
fn link_dir_key(package_dir: &Path) -> Result<String, NativeError> {
    let mut hasher = blake3::Hasher::new();
    hasher.update(package_dir.as_os_str().as_encoded_bytes());
    for library in [CC_LIBRARY, FRAMEWORK_LIBRARY] {
        let path = package_dir.join(library);
        let meta = std::fs::metadata(&path).map_err(|source| NativeError::Cache { path: path.clone(), source })?;
        let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
        hasher.update(&[0]);
        hasher.update(library.as_bytes());
        hasher.update(&meta.len().to_le_bytes());
        hasher.update(&mtime.to_le_bytes());
    }
    Ok(hasher.finalize().to_hex()[..16].to_owned())
}

fn nanos_now() -> u128 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Why TensorFlow's C library could not be loaded. Each says what to do about it.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum NativeError {
    /// The TensorFlow package directory does not exist.
    #[error("no TensorFlow package at {}", .dir.display())]
    #[diagnostic(help(
        "point [runtime] python at a Python with TensorFlow installed, or run `exportctl runtime install` to create the managed runtime"
    ))]
    PackageMissing { dir: PathBuf },
    /// The package has no C library: an old TensorFlow, or not the pip wheel.
    #[error("TensorFlow at {} has no {library}", .dir.display())]
    #[diagnostic(help(
        "the native loader uses the C library that recent pip wheels of `tensorflow` / `tensorflow-cpu` ship; \
         this TensorFlow is too old or was not installed from the pip wheel (conda, source build). \
         Upgrade it with pip, or use the managed runtime (`exportctl runtime install`)"
    ))]
    LibraryMissing { dir: PathBuf, library: &'static str },
    /// The link directory could not be written.
    #[error("cannot prepare the TensorFlow library links at {}: {source}", .path.display())]
    #[diagnostic(help("check that the cache directory ($EXPORTCTL_HOME, default ~/.cache/exportctl) is writable"))]
    Cache { path: PathBuf, source: std::io::Error },
    /// dlopen failed; `message` is the loader's.
    #[error("cannot load TensorFlow's C library {}: {message}", .library.display())]
    #[diagnostic(help(
        "the TensorFlow install may be incomplete or built for another platform or CPU; reinstall it \
         (`exportctl runtime install` for the managed runtime)"
    ))]
    Open { library: PathBuf, message: String },
    /// Another TensorFlow is already loaded in this process.
    #[error("TensorFlow from {} is already loaded; cannot also load {}", .loaded.display(), .requested.display())]
    #[diagnostic(help("a process can load one TensorFlow only: use the same runtime for the whole command"))]
    AlreadyLoaded { loaded: PathBuf, requested: PathBuf },
    /// The CPU lacks an instruction set the wheel is built for.
    #[error("this CPU has no {missing} instructions, which TensorFlow needs")]
    #[diagnostic(help("TensorFlow's pip wheels need it; run on a machine whose CPU has it, or use a TensorFlow built for this CPU"))]
    CpuUnsupported { missing: &'static str },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_package(root: &Path) -> PathBuf {
        let pkg = root.join("site-packages").join("tensorflow");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join(CC_LIBRARY), b"not really").unwrap();
        std::fs::write(pkg.join(FRAMEWORK_LIBRARY), b"not really either").unwrap();
        std::fs::canonicalize(pkg).unwrap()
    }

    #[test]
    fn link_dir_holds_both_links_and_is_reused() {
        let root = tempfile::tempdir().unwrap();
        let pkg = fake_package(root.path());
        let native = root.path().join("cache").join("native");
        let first = prepare_link_dir(&pkg, &native).unwrap();
        assert_eq!(std::fs::read_link(first.join("libtensorflow.so")).unwrap(), pkg.join(CC_LIBRARY));
        assert_eq!(std::fs::read_link(first.join(FRAMEWORK_LIBRARY)).unwrap(), pkg.join(FRAMEWORK_LIBRARY));
        let again = prepare_link_dir(&pkg, &native).unwrap();
        assert_eq!(first, again);
        let leftovers: Vec<_> = std::fs::read_dir(&native).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "no temporary directories left: {leftovers:?}");
    }

    #[test]
    fn racing_threads_agree_on_one_directory() {
        let root = tempfile::tempdir().unwrap();
        let pkg = fake_package(root.path());
        let native = root.path().join("native");
        let dirs: Vec<PathBuf> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| prepare_link_dir(&pkg, &native).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(dirs.windows(2).all(|w| w[0] == w[1]));
        assert!(links_are_valid(&dirs[0], &pkg));
        assert_eq!(std::fs::read_dir(&native).unwrap().count(), 1);
    }

    #[test]
    fn a_reinstalled_wheel_gets_a_new_directory() {
        let root = tempfile::tempdir().unwrap();
        let pkg = fake_package(root.path());
        let before = link_dir_key(&pkg).unwrap();
        std::fs::write(pkg.join(CC_LIBRARY), b"a different build").unwrap();
        assert_ne!(before, link_dir_key(&pkg).unwrap());
    }

    #[test]
    fn a_broken_leftover_is_replaced() {
        let root = tempfile::tempdir().unwrap();
        let pkg = fake_package(root.path());
        let native = root.path().join("native");
        let dir = native.join(link_dir_key(&pkg).unwrap());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("junk"), b"").unwrap();
        assert_eq!(prepare_link_dir(&pkg, &native).unwrap(), dir);
        assert!(links_are_valid(&dir, &pkg));
    }

    #[test]
    fn errors_say_what_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let missing = check_package(&root.path().join("nope")).unwrap_err();
        assert!(matches!(missing, NativeError::PackageMissing { .. }), "{missing}");
        let pkg = root.path().join("tensorflow");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join(FRAMEWORK_LIBRARY), b"").unwrap();
        let no_cc = check_package(&pkg).unwrap_err();
        assert!(no_cc.to_string().ends_with("has no libtensorflow_cc.so.2"), "{no_cc}");
        let help = crate::error::help_text(&no_cc).unwrap();
        assert!(help.contains("pip"), "{help}");
    }
}
