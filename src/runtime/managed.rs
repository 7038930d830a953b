//! The managed runtime: a virtualenv exportctl installs and owns.
//!
//! Layout under `$EXPORTCTL_HOME/runtimes/`:
//!
//! ```text
//! .lock                              exclusive while installing: parallel processes install once
//! tf-2.21.0-py3.11.7-<hash>/         one folder per pinned set and base interpreter
//!     venv/                          the virtualenv
//!     install.log                    what the installer printed
//!     runtime.json                   versions and paths; written last
//! .tmp-XXXX/                         an install in progress (or killed: removed under the lock)
//! .use-<folder>.lock                 shared by every process using that runtime
//! <folder>/usage.json                when builds last used it, and from which projects
//! ```
//!
//! **Listing and pruning.** `exportctl runtime list` reads the records and `usage.json` (a build
//! writes it, at most once an hour per project, so a no-op build stays a few stats); `runtime
//! prune` removes the runtimes unused for some days or whose pins this exportctl no longer
//! installs. Pruning is safe while other exportctl processes run: it holds the install lock
//! (no install or repair meanwhile), and removes a runtime only when it can take that
//! runtime's use lock exclusively — every process that loads a runtime holds it shared for as
//! long as it lives. A removed runtime is first renamed to a `.tmp-` folder, so a process
//! looking for it never sees it half-deleted.
//!
//! **Extras.** Packages only some manifests need (`ai-edge-litert`, for `formats = [..,
//! "litert"]`) are not part of the pins: they are installed into the same virtualenv on the
//! first step that needs them ([`ensure_extra`]), from a lock of their own, without resolving
//! (`--no-deps`), so that they can never move a package the SavedModel steps use; the runtime's
//! identity, and so every other step's cache key, does not change. The record's `extras` says
//! which extra lock is installed; it is written only after the extra imports, under the install
//! lock, so an install that failed or was killed is not recorded and is done again (with the
//! extra's packages reinstalled, whatever a half-finished install left).
//!
//! An install happens in a `.tmp-` folder that is renamed into place only once TensorFlow
//! imports in it, so a failed, interrupted or killed install never leaves a folder that looks
//! valid. Inside, `uv` installs the packages when it can be had (on `PATH`, or from PyPI into the
//! new virtualenv: several times faster than pip), else pip does.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{home, Choice, Runtime, Versions};

/// The package set a managed runtime is installed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    pub tensorflow: String,
    /// The top-level requirements: what names the runtime.
    pub requirements: Vec<String>,
    /// Every package pinned (`requirements/tensorflow-<version>.txt`), for the versions that
    /// exportctl ships a lock for: the runtime's identity is then known before it is installed.
    pub lock: Option<&'static str>,
}

/// The pin sets shipped with exportctl.
const LOCKS: &[(&str, &str)] = &[("2.21.0", include_str!("requirements/tensorflow-2.21.0.txt"))];

impl Pins {
    pub fn for_tensorflow(version: &str) -> Pins {
        // tf-keras is released in lockstep with TensorFlow's minor versions.
        let minor: Vec<&str> = version.split('.').take(2).collect();
        let tf_keras = if version == "2.21.0" { "tf-keras==2.21.0".to_string() } else { format!("tf-keras~={}.0", minor.join(".")) };
        Pins {
            tensorflow: version.to_string(),
            requirements: vec![format!("tensorflow-cpu=={version}"), tf_keras, "tensorflow-hub==0.16.1".to_string()],
            lock: LOCKS.iter().find(|(v, _)| *v == version).map(|(_, text)| *text),
        }
    }

    /// `name==version` lines of the lock (comments and blank lines left out).
    fn locked(&self) -> impl Iterator<Item = (&'static str, &'static str)> {
        self.lock.unwrap_or("").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).filter_map(|l| l.split_once("=="))
    }

    /// The version the lock pins for `package` (names compared as PyPI does: case, `-` and `_`
    /// do not matter).
    fn locked_version(&self, package: &str) -> Option<String> {
        let norm = |n: &str| n.to_ascii_lowercase().replace(['_', '.'], "-");
        self.locked().find(|(name, _)| norm(name) == norm(package)).map(|(_, v)| v.trim().to_string())
    }

    /// What the runtime will hold once installed, known from the lock alone: no install, no
    /// Python. `None` for a TensorFlow version exportctl ships no lock for.
    pub fn identity(&self) -> Option<Versions> {
        self.lock?;
        Some(Versions {
            python: None,
            tensorflow: self.locked_version("tensorflow"),
            keras: self.locked_version("keras"),
            tf_keras: self.locked_version("tf-keras"),
            tensorflow_hub: self.locked_version("tensorflow-hub"),
            numpy: self.locked_version("numpy"),
        })
    }

    /// The BLAKE3 digest of the lock, when there is one.
    pub fn lock_digest(&self) -> Option<String> {
        self.lock.map(crate::hash::digest_str)
    }

    pub fn describe(&self) -> String {
        self.requirements.join(", ")
    }
}

/// An optional package set installed into a managed runtime when a manifest needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extra {
    /// The name the record keeps it under.
    pub name: &'static str,
    /// The package that names it, and its version.
    pub package: &'static str,
    pub version: &'static str,
    /// Every package of the extra, pinned (its other dependencies are in the runtime's lock).
    pub lock: &'static str,
    /// What must import once it is installed.
    pub import: &'static str,
}

/// LiteRT: the interpreter `validate-litert` runs converted models with.
pub const LITERT: Extra = Extra {
    name: "litert",
    package: "ai-edge-litert",
    version: "2.3.0",
    lock: include_str!("requirements/ai-edge-litert-2.3.0.txt"),
    import: "ai_edge_litert.interpreter",
};

impl Extra {
    /// `package==version`, as it goes into the keys of the steps that use it.
    pub fn pin(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// The `name==version` lines of the lock.
    pub fn requirements(&self) -> Vec<&'static str> {
        self.lock.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    }

    fn digest(&self) -> String {
        crate::hash::digest_str(self.lock)
    }
}

/// What the record says of an installed extra.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ExtraRecord {
    version: String,
    /// The digest of the extra's lock installed.
    lock: String,
}

/// What `runtime.json` records. Paths are relative to the runtime's folder, so that the
/// folder can be renamed into place after it is written.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    requirements: Vec<String>,
    base_python: PathBuf,
    versions: Versions,
    /// Relative to the runtime folder.
    tensorflow_dir: Option<PathBuf>,
    installer: String,
    install_seconds: f64,
    /// Whether the packages' bytecode was compiled at install: uv does not do it by default,
    /// and the worker never writes `.pyc` files, so without it every start compiled all of
    /// TensorFlow again (import 8.7 s instead of 3.6 s here).
    #[serde(default)]
    bytecode: bool,
    /// The digest of the lock installed (none for a runtime installed before locks existed, or
    /// for a TensorFlow version without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lock: Option<String>,
    /// The extras installed since (see [`ensure_extra`]), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extras: std::collections::BTreeMap<String, ExtraRecord>,
}

impl Record {
    /// Whether this installed runtime is the one `pins` describe: the same lock, or for an
    /// install older than locks, the same top-level requirements and the locked versions of
    /// the packages that write the outputs.
    fn matches(&self, pins: &Pins) -> bool {
        if self.requirements != pins.requirements {
            return false;
        }
        match (&self.lock, pins.lock_digest(), pins.identity()) {
            (Some(installed), Some(wanted), _) => *installed == wanted,
            (None, Some(_), Some(identity)) => self.versions.without_python() == identity,
            (_, None, _) => true,
            (None, Some(_), None) => false,
        }
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum InstallError {
    #[error("python3 was not found on PATH")]
    #[diagnostic(help(
        "install Python 3.9+ (e.g. `apt-get install python3 python3-venv`), or point runtime.python / $EXPORTCTL_PYTHON \
         at a Python that has TensorFlow"
    ))]
    NoPython,
    #[error("python3 is {version}; the managed runtime needs Python 3.9 or newer")]
    #[diagnostic(help("install a newer Python 3, or point runtime.python / $EXPORTCTL_PYTHON at one that has TensorFlow"))]
    PythonTooOld { version: String },
    #[error("{python} cannot create virtualenvs (the venv module is missing)")]
    #[diagnostic(help("install the venv module (Debian/Ubuntu: `apt-get install python3-venv`)"))]
    NoVenv { python: String },
    #[error("could not reach the Python package registry ({what})")]
    #[diagnostic(help(
        "check the network access to PyPI (or set PIP_INDEX_URL / UV_INDEX_URL to a mirror) and retry; if PyPI is reachable, \
         it may have no TensorFlow wheel for this Python version. Installer output in {}:\n{log_tail}",
        log.display()
    ))]
    Registry { what: String, log_tail: String, log: PathBuf },
    #[error("installing the managed runtime failed while {step}")]
    #[diagnostic(help("the installer said (full output in {}):\n{log_tail}", log.display()))]
    Failed { step: String, log_tail: String, log: PathBuf },
    #[error("cannot prepare {}: {source}", .path.display())]
    #[diagnostic(help(
        "check the permissions of $EXPORTCTL_HOME (default ~/.cache/exportctl), or set EXPORTCTL_HOME to a writable folder"
    ))]
    Io { path: PathBuf, source: std::io::Error },
}

fn runtimes_dir() -> PathBuf {
    home().join("runtimes")
}

/// The base interpreter the virtualenv is made from, and its version.
fn base_python() -> Result<(PathBuf, String), InstallError> {
    let candidates =
        std::env::var_os("EXPORTCTL_BASE_PYTHON").map(PathBuf::from).into_iter().chain(["python3", "python"].map(PathBuf::from));
    for candidate in candidates {
        let out =
            Command::new(&candidate).args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3]); print(sys.executable)"]).output();
        let Ok(out) = out else { continue };
        if !out.status.success() {
            continue;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let version = lines.next().unwrap_or("").trim().to_string();
        let executable = PathBuf::from(lines.next().unwrap_or("").trim());
        let parts: Vec<u32> = version.split('.').filter_map(|p| p.parse().ok()).collect();
        if parts.first() != Some(&3) || parts.get(1).copied().unwrap_or(0) < 9 {
            return Err(InstallError::PythonTooOld { version });
        }
        return Ok((executable, version));
    }
    Err(InstallError::NoPython)
}

fn folder_name(pins: &Pins, base: &Path, python_version: &str) -> String {
    let key = crate::hash::digest_str(&format!("{}\n{}", pins.requirements.join("\n"), base.display()));
    format!("tf-{}-py{}-{}", pins.tensorflow, python_version, &key[..8])
}

/// Rewrites `from` into `to` in the virtualenv's text files that name its own folder: the
/// scripts' `#!` lines, `activate*`, `pyvenv.cfg`. (Binaries and site-packages hold no
/// absolute path of the venv.)
fn relocate(venv: &Path, from: &Path, to: &Path) -> std::io::Result<()> {
    let (from, to) = (from.display().to_string(), to.display().to_string());
    let mut files = vec![venv.join("pyvenv.cfg")];
    for entry in std::fs::read_dir(venv.join("bin"))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    for file in files {
        let Ok(bytes) = std::fs::read(&file) else { continue };
        // Text files only: a script is small and valid UTF-8; the python binary is neither.
        let Ok(text) = String::from_utf8(bytes) else { continue };
        if text.contains(&from) {
            let permissions = std::fs::metadata(&file)?.permissions();
            std::fs::write(&file, text.replace(&from, &to))?;
            std::fs::set_permissions(&file, permissions)?;
        }
    }
    Ok(())
}

/// A runtime installed before relocation existed names its `.tmp-` install folder in its
/// scripts; they are rewritten once, under the install lock.
fn repair_relocation(folder: &Path) {
    let Ok(config) = std::fs::read_to_string(folder.join("venv").join("pyvenv.cfg")) else { return };
    let Some(parent) = folder.parent() else { return };
    let marker = format!("{}/.tmp-", parent.display());
    let Some(start) = config.find(&marker) else { return };
    let rest = &config[start..];
    let end = rest.find("/venv").unwrap_or(rest.len());
    let old = PathBuf::from(&rest[..end]);
    let Ok(lock) = File::options().create(true).truncate(false).write(true).open(parent.join(".lock")) else { return };
    // Never wait: an install in progress (possibly this process's own) holds it.
    if lock.try_lock().is_ok() {
        let _ = relocate(&folder.join("venv"), &old, folder);
    }
}

/// `python -m compileall` over the virtualenv's site-packages (quietly, on every core).
fn compile_bytecode(python: &Path) -> Command {
    let mut command = Command::new(python);
    command.args(["-m", "compileall", "-q", "-j", "0", "-x", r"[/\\]tests?[/\\]"]);
    command.arg(python.parent().and_then(Path::parent).map(|venv| venv.join("lib")).unwrap_or_default());
    command
}

/// A runtime installed before bytecode was compiled at install gets it once, under the
/// install lock; the record then says so.
fn repair_bytecode(folder: &Path, record: &mut Record) {
    if record.bytecode {
        return;
    }
    let Ok(lock) = File::options().create(true).truncate(false).write(true).open(runtimes_dir().join(".lock")) else { return };
    if lock.try_lock().is_err() {
        return;
    }
    eprintln!("exportctl: compiling the managed runtime's bytecode once (TensorFlow then imports in about half the time)…");
    let python = folder.join("venv").join("bin").join("python");
    // Once, whatever the outcome: a file that does not compile must not make every build retry.
    let _ = compile_bytecode(&python).stdout(Stdio::null()).stderr(Stdio::null()).status();
    record.bytecode = true;
    let _ = crate::atomic::write_file(&folder.join("runtime.json"), &serde_json::to_vec_pretty(&record).expect("record serialises"));
}

fn load(folder: &Path) -> Option<Runtime> {
    // Held before anything is read, so that a prune either ran before (and the folder is
    // gone) or waits for this process to end.
    lease(folder);
    let mut record: Record = serde_json::from_slice(&std::fs::read(folder.join("runtime.json")).ok()?).ok()?;
    repair_relocation(folder);
    repair_bytecode(folder, &mut record);
    let python = folder.join("venv").join("bin").join("python");
    if !python.exists() {
        return None;
    }
    Some(Runtime {
        python,
        choice: Choice::Managed,
        reason: format!(
            "no runtime.python, $EXPORTCTL_PYTHON or virtualenv with TensorFlow: the managed runtime ({})",
            record.requirements.join(", ")
        ),
        versions: record.versions,
        tensorflow_dir: record.tensorflow_dir.map(|d| folder.join(d)),
        litert: record.extras.get(LITERT.name).map(|e| e.version.clone()),
    })
}

/// Whether the record in `folder` says `extra` (this very lock) is installed.
fn has_extra(folder: &Path, extra: &Extra) -> bool {
    std::fs::read(folder.join("runtime.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
        .and_then(|r| r.extras.get(extra.name).cloned())
        .is_some_and(|e| e.lock == extra.digest())
}

/// Installs `extra` into the managed `runtime` unless its record says it is there: one file
/// read when it is. The install runs under the install lock (a parallel exportctl waits, then
/// finds it recorded), reinstalls the extra's packages (a killed install may have left some
/// half-written), checks that it imports, and only then records it.
pub fn ensure_extra(runtime: &Runtime, extra: &Extra, show_progress: bool) -> Result<(), InstallError> {
    let Some(folder) = folder_of(runtime) else { return Ok(()) };
    if has_extra(&folder, extra) {
        return Ok(());
    }
    let dir = runtimes_dir();
    let lock_path = dir.join(".lock");
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error(&lock_path))?;
    if lock.try_lock().is_err() {
        if show_progress {
            eprintln!("exportctl: waiting for another exportctl that is installing into the managed runtime…");
        }
        lock.lock().map_err(io_error(&lock_path))?;
    }
    if has_extra(&folder, extra) {
        return Ok(());
    }
    let started = Instant::now();
    let progress = Progress::new(show_progress);
    let log_path = folder.join(format!("install-{}.log", extra.name));
    let mut log = File::create(&log_path).map_err(io_error(&log_path))?;
    let requirements = folder.join(format!("requirements-{}.txt", extra.name));
    std::fs::write(&requirements, extra.lock).map_err(io_error(&requirements))?;
    let python = folder.join("venv").join("bin").join("python");
    progress.phase(&format!("adding {} (first build with that format)", extra.pin()));
    let packages: Vec<&str> = extra.requirements().iter().map(|r| r.split("==").next().unwrap_or(r)).collect();
    let uv_on_path = Command::new("uv").arg("--version").output().is_ok_and(|o| o.status.success());
    let uv_in_venv = !uv_on_path && Command::new(&python).args(["-m", "uv", "--version"]).output().is_ok_and(|o| o.status.success());
    let result = if uv_on_path || uv_in_venv {
        let mut c = if uv_on_path {
            Command::new("uv")
        } else {
            let mut c = Command::new(&python);
            c.args(["-m", "uv"]);
            c
        };
        c.args(["pip", "install", "--no-deps", "--python"]).arg(&python).arg("-r").arg(&requirements);
        for package in &packages {
            c.args(["--reinstall-package", package]);
        }
        run_logged(c, &mut log, &progress, &format!("installing {} with uv", extra.pin()), &log_path)
    } else {
        let mut c = Command::new(&python);
        c.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--no-deps", "--force-reinstall", "-r"])
            .arg(&requirements);
        run_logged(c, &mut log, &progress, &format!("installing {} with pip", extra.pin()), &log_path)
    };
    result.and_then(|()| {
        let mut check = Command::new(&python);
        check.args(["-c", &format!("import {}", extra.import)]);
        run_logged(check, &mut log, &progress, &format!("importing {}", extra.import), &log_path)
    })?;
    let _ = run_logged(compile_bytecode(&python), &mut log, &progress, "compiling bytecode", &log_path);
    let record_path = folder.join("runtime.json");
    let mut record: Record = serde_json::from_slice(&std::fs::read(&record_path).map_err(io_error(&record_path))?)
        .map_err(|e| io_error(&record_path)(std::io::Error::other(e)))?;
    record.extras.insert(extra.name.to_string(), ExtraRecord { version: extra.version.to_string(), lock: extra.digest() });
    crate::atomic::write_file(&record_path, &serde_json::to_vec_pretty(&record).expect("record serialises"))
        .map_err(io_error(&record_path))?;
    let _ = started;
    progress.finish(&format!("added {} to the managed runtime", extra.pin()));
    Ok(())
}

/// The installed managed runtime for `pins`, if there is one. Reads one small file: no
/// Python is started. The base interpreter is identified without running it either, by the
/// folders present for these pins.
pub fn find(pins: &Pins) -> Result<Option<Runtime>, InstallError> {
    let dir = runtimes_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
    let prefix = format!("tf-{}-py", pins.tensorflow);
    let mut folders: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix)))
        .collect();
    folders.sort();
    for folder in folders.iter().rev() {
        if let Some(runtime) = load(folder) {
            let record_matches = std::fs::read(folder.join("runtime.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .is_some_and(|r| r.matches(pins));
            if record_matches {
                return Ok(Some(runtime));
            }
        }
    }
    Ok(None)
}

/// Shows what the install is doing: a spinner on a terminal, plain lines otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        let bar = (enabled && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {prefix} [{elapsed}] {msg}").expect("valid template"));
            bar.set_prefix("installing the TensorFlow runtime (first use)");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress { bar, started: Instant::now() }
    }

    fn phase(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(message.to_string()),
            None => eprintln!("exportctl: installing the TensorFlow runtime: {message}"),
        }
    }

    fn detail(&self, line: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(line.chars().take(80).collect::<String>());
        }
    }

    fn finish(&self, message: &str) {
        let line = format!("{message} in {:.0}s", self.started.elapsed().as_secs_f64());
        match &self.bar {
            Some(bar) => bar.finish_with_message(line),
            None => eprintln!("exportctl: {line}"),
        }
    }
}

/// Runs one installer command, appending its output to the log and showing its lines.
fn run_logged(mut command: Command, log: &mut File, progress: &Progress, step: &str, log_path: &Path) -> Result<(), InstallError> {
    // Installer caches live in the exportctl home: nothing else of the user's is written.
    if std::env::var_os("UV_CACHE_DIR").is_none() {
        command.env("UV_CACHE_DIR", home().join("cache").join("uv"));
    }
    if std::env::var_os("PIP_CACHE_DIR").is_none() {
        command.env("PIP_CACHE_DIR", home().join("cache").join("pip"));
    }
    // An installer must not outlive exportctl (killed, even by kill -9): it would go on writing
    // into a `.tmp-` folder that the next install removes. Installs run on the main thread,
    // which lives as long as the process, so the parent-death signal fires exactly then.
    super::process::die_with_parent(&mut command);
    let _ = writeln!(log, "$ {command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| InstallError::Failed { step: step.to_string(), log_tail: e.to_string(), log: log_path.to_path_buf() })?;
    let stderr = child.stderr.take().expect("piped");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    let a = std::thread::spawn(move || {
        BufReader::new(stderr).lines().map_while(Result::ok).for_each(|l| {
            let _ = tx.send(l);
        })
    });
    let b = std::thread::spawn(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).for_each(|l| {
            let _ = tx2.send(l);
        })
    });
    let mut tail: Vec<String> = Vec::new();
    for line in rx {
        let _ = writeln!(log, "{line}");
        progress.detail(line.trim());
        tail.push(line);
        if tail.len() > 400 {
            tail.drain(..200);
        }
    }
    let _ = (a.join(), b.join());
    let status =
        child.wait().map_err(|e| InstallError::Failed { step: step.to_string(), log_tail: e.to_string(), log: log_path.to_path_buf() })?;
    if status.success() {
        return Ok(());
    }
    let all = tail.join("\n");
    let last: Vec<&str> = tail.iter().map(String::as_str).filter(|l| !l.trim().is_empty()).collect();
    let log_tail = last[last.len().saturating_sub(12)..].join("\n");
    let network = [
        "Failed to establish",
        "Temporary failure in name resolution",
        "Name or service not known",
        "Connection refused",
        "error sending request",
        "dns error",
        "Network is unreachable",
        "Could not fetch URL",
        "ConnectTimeout",
        "timed out",
        "(from versions: none)",
    ]
    .iter()
    .any(|needle| all.contains(needle));
    if network {
        return Err(InstallError::Registry { what: step.to_string(), log_tail, log: log_path.to_path_buf() });
    }
    Err(InstallError::Failed { step: step.to_string(), log_tail, log: log_path.to_path_buf() })
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> InstallError + '_ {
    move |source| InstallError::Io { path: path.to_path_buf(), source }
}

/// Installs the managed runtime for `pins` (or waits for another process that is doing it).
pub fn install(pins: &Pins, show_progress: bool) -> Result<Runtime, InstallError> {
    let dir = runtimes_dir();
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let lock_path = dir.join(".lock");
    let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error(&lock_path))?;
    if lock.try_lock().is_err() {
        if show_progress {
            eprintln!("exportctl: waiting for another exportctl that is installing the TensorFlow runtime…");
        }
        lock.lock().map_err(io_error(&lock_path))?;
    }
    // Under the lock: someone may have finished the install while we waited.
    if let Some(runtime) = find(pins)? {
        return Ok(runtime);
    }
    // Any `.tmp-` folder now is the remains of an install that was killed.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let (base, python_version) = base_python()?;
    let started = Instant::now();
    let progress = Progress::new(show_progress);
    let tmp = crate::atomic::TempDir::new_in(&dir).map_err(io_error(&dir))?;
    let venv = tmp.path().join("venv");
    let log_path = tmp.path().join("install.log");
    let mut log = File::create(&log_path).map_err(io_error(&log_path))?;
    let keep_log = |log_path: &Path| {
        let failed = dir.join("last-install-failure.log");
        let _ = std::fs::copy(log_path, &failed);
        failed
    };
    let result = (|| -> Result<(String, Versions, Option<PathBuf>), InstallError> {
        progress.phase("creating the virtualenv");
        let mut venv_cmd = Command::new(&base);
        venv_cmd.args(["-m", "venv"]).arg(&venv);
        run_logged(venv_cmd, &mut log, &progress, "creating the virtualenv", &log_path).map_err(|e| match e {
            InstallError::Failed { log_tail, .. } if log_tail.contains("ensurepip") || log_tail.contains("venv") => {
                InstallError::NoVenv { python: base.display().to_string() }
            }
            other => other,
        })?;
        let python = venv.join("bin").join("python");
        let uv_on_path = Command::new("uv").arg("--version").output().is_ok_and(|o| o.status.success());
        let mut installer = "pip".to_string();
        let uv: Option<Command> = if uv_on_path {
            Some(Command::new("uv"))
        } else {
            progress.phase("installing uv (a fast installer) from PyPI");
            let mut c = Command::new(&python);
            c.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input", "uv"]);
            match run_logged(c, &mut log, &progress, "installing uv", &log_path) {
                Ok(()) => {
                    let mut c = Command::new(&python);
                    c.args(["-m", "uv"]);
                    Some(c)
                }
                Err(e @ InstallError::Registry { .. }) => return Err(e),
                Err(_) => None,
            }
        };
        progress.phase(&format!("installing {}", pins.describe()));
        // With a lock, exactly its set; otherwise the top-level pins and what they resolve to.
        let mut packages: Vec<std::ffi::OsString> = pins.requirements.iter().map(Into::into).collect();
        if let Some(lock) = pins.lock {
            let lock_path = tmp.path().join("requirements.txt");
            std::fs::write(&lock_path, lock).map_err(io_error(&lock_path))?;
            packages = vec!["-r".into(), lock_path.into_os_string()];
        }
        let mut installed = false;
        if let Some(mut c) = uv {
            c.args(["pip", "install", "--python"]).arg(&python).args(&packages);
            match run_logged(c, &mut log, &progress, "installing TensorFlow with uv", &log_path) {
                Ok(()) => {
                    installed = true;
                    installer = "uv".into();
                }
                Err(e @ InstallError::Registry { .. }) => return Err(e),
                Err(_) => {}
            }
        }
        if !installed {
            let mut c = Command::new(&python);
            c.args(["-m", "pip", "install", "--disable-pip-version-check", "--no-input"]).args(&packages);
            run_logged(c, &mut log, &progress, "installing TensorFlow with pip", &log_path)?;
        }
        progress.phase("compiling the packages' bytecode");
        // Best effort: a package with a file that does not compile still imports.
        let _ = run_logged(compile_bytecode(&python), &mut log, &progress, "compiling bytecode", &log_path);
        progress.phase("checking that TensorFlow imports");
        let mut check = Command::new(&python);
        check
            .args(["-c", "import tensorflow, keras, tf_keras, tensorflow_hub"])
            .env("TF_CPP_MIN_LOG_LEVEL", "3")
            .env("KERAS_BACKEND", super::worker::KERAS_BACKEND);
        run_logged(check, &mut log, &progress, "importing TensorFlow in the new runtime", &log_path)?;
        let probed = super::probe::probe(&python, Choice::Managed, String::new()).map_err(|e| InstallError::Failed {
            step: "reading the installed versions".into(),
            log_tail: e.to_string(),
            log: log_path.clone(),
        })?;
        // The identity cache keys were computed with must be what was installed.
        if let Some(identity) = pins.identity() {
            if probed.versions.without_python() != identity {
                return Err(InstallError::Failed {
                    step: "checking the installed versions against the lock".into(),
                    log_tail: format!("expected {}, installed {}", identity.fingerprint(), probed.versions.fingerprint()),
                    log: log_path.clone(),
                });
            }
        }
        let tf_dir = probed.tensorflow_dir.and_then(|d| d.strip_prefix(tmp.path()).ok().map(Path::to_path_buf));
        Ok((installer, probed.versions, tf_dir))
    })();
    let (installer, versions, tensorflow_dir) = match result {
        Ok(r) => r,
        Err(e) => {
            let kept = keep_log(&log_path);
            return Err(match e {
                InstallError::Registry { what, log_tail, .. } => InstallError::Registry { what, log_tail, log: kept },
                InstallError::Failed { step, log_tail, .. } => InstallError::Failed { step, log_tail, log: kept },
                other => other,
            });
        }
    };
    let record = Record {
        requirements: pins.requirements.clone(),
        base_python: base,
        versions,
        tensorflow_dir,
        installer,
        install_seconds: started.elapsed().as_secs_f64(),
        bytecode: true,
        lock: pins.lock_digest(),
        extras: Default::default(),
    };
    let record_path = tmp.path().join("runtime.json");
    std::fs::write(&record_path, serde_json::to_vec_pretty(&record).expect("record serialises")).map_err(io_error(&record_path))?;
    let final_dir = dir.join(folder_name(pins, &record.base_python, &python_version));
    // The virtualenv's scripts name the folder they were installed in: the final one, before
    // the rename makes it so.
    relocate(&tmp.path().join("venv"), tmp.path(), &final_dir).map_err(io_error(tmp.path()))?;
    tmp.commit(&final_dir).map_err(io_error(&final_dir))?;
    progress.finish(&format!("installed {} with {}", pins.describe(), record.installer));
    load(&final_dir).ok_or_else(|| InstallError::Failed {
        step: "reading the installed runtime".into(),
        log_tail: String::new(),
        log: final_dir.join("install.log"),
    })
}

/// The lock file every process using the runtime in `folder` holds shared.
fn use_lock_path(folder: &Path) -> PathBuf {
    let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    folder.with_file_name(format!(".use-{name}.lock"))
}

/// Takes the use lock of the runtime in `folder`, shared, for the rest of the process.
fn lease(folder: &Path) {
    static LEASES: std::sync::Mutex<Vec<(PathBuf, File)>> = std::sync::Mutex::new(Vec::new());
    let mut leases = LEASES.lock().expect("leases");
    if leases.iter().any(|(f, _)| f == folder) {
        return;
    }
    let path = use_lock_path(folder);
    let Ok(file) = File::options().create(true).truncate(false).write(true).open(&path) else { return };
    // Waits only while a prune decides about this very runtime.
    if file.lock_shared().is_ok() {
        leases.push((folder.to_path_buf(), file));
    }
}

/// When builds last used a runtime, and from which projects (`usage.json`).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Usage {
    /// Seconds since the Unix epoch.
    pub last_used: u64,
    /// Project root → when a build of it last used the runtime.
    pub projects: std::collections::BTreeMap<String, u64>,
}

/// How often a project's use is written down: a no-op build must stay a few stats.
const USAGE_RESOLUTION: u64 = 3600;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Notes that a build of the project at `root` used `runtime`, when it is a managed one.
/// Best effort: usage only informs `runtime list` and `runtime prune`.
pub fn record_use(runtime: &Runtime, root: &Path) {
    let Some(folder) = folder_of(runtime) else { return };
    let path = folder.join("usage.json");
    let mut usage: Usage = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let root = root.canonicalize().unwrap_or(root).display().to_string();
    let now = now();
    if usage.projects.get(&root).is_some_and(|&t| now.saturating_sub(t) < USAGE_RESOLUTION) {
        return;
    }
    usage.projects.insert(root, now);
    usage.last_used = now;
    let _ = crate::atomic::write_file(&path, &serde_json::to_vec_pretty(&usage).expect("usage serialises"));
}

/// The folder of a managed runtime (`…/runtimes/<folder>/venv/bin/python`).
pub fn folder_of(runtime: &Runtime) -> Option<PathBuf> {
    if runtime.choice != Choice::Managed {
        return None;
    }
    Some(runtime.python.parent()?.parent()?.parent()?.to_path_buf())
}

/// An installed managed runtime, as `runtime list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    pub name: String,
    pub path: PathBuf,
    pub tensorflow: Option<String>,
    pub python: String,
    pub requirements: Vec<String>,
    /// Whether this exportctl still installs exactly these pins for its TensorFlow version
    /// (if not, no build will pick it again).
    pub current: bool,
    pub bytes: u64,
    /// Seconds since the Unix epoch: the last build that used it, else its install.
    pub last_used: u64,
    /// The projects whose builds used it, most recent first.
    pub projects: Vec<String>,
}

/// Every managed runtime under `$EXPORTCTL_HOME/runtimes`, by name.
pub fn installed() -> Vec<Installed> {
    let Ok(entries) = std::fs::read_dir(runtimes_dir()) else { return Vec::new() };
    let mut found: Vec<Installed> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .filter_map(|folder| {
            let record_path = folder.join("runtime.json");
            let record: Record = serde_json::from_slice(&std::fs::read(&record_path).ok()?).ok()?;
            let usage: Option<Usage> = std::fs::read(folder.join("usage.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
            let installed_at = std::fs::metadata(&record_path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            let mut projects: Vec<(String, u64)> = usage.as_ref().map(|u| u.projects.clone().into_iter().collect()).unwrap_or_default();
            projects.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let current = record.versions.tensorflow.as_deref().is_some_and(|tf| record.matches(&Pins::for_tensorflow(tf)));
            Some(Installed {
                name: folder.file_name()?.to_string_lossy().into_owned(),
                tensorflow: record.versions.tensorflow.clone(),
                python: record.versions.python.clone().unwrap_or_default(),
                requirements: record.requirements,
                current,
                bytes: tree_size(&folder),
                last_used: usage.map_or(installed_at, |u| u.last_used),
                projects: projects.into_iter().map(|(p, _)| p).collect(),
                path: folder,
            })
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The bytes of the files under `dir` (symbolic links not followed).
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// Why `runtime prune` removes (or would remove) a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PruneReason {
    /// Not used for this many days.
    Unused { days: u64 },
    /// Its pins are not what this exportctl installs.
    Stale,
}

impl std::fmt::Display for PruneReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PruneReason::Unused { days } => write!(f, "unused for {days} days"),
            PruneReason::Stale => f.write_str("its pins are no longer the ones exportctl installs"),
        }
    }
}

/// What a prune did with one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub runtime: Installed,
    pub reason: PruneReason,
    /// `false` when another process was using it (it is kept) or with `dry_run`.
    pub removed: bool,
    /// Why it was kept although it qualified.
    pub kept_because: Option<String>,
}

/// Which runtimes qualify for pruning: unused for `older_than_days`, or with `stale` every
/// one whose pins are not current. Pure: `now` is given.
pub fn prune_candidates(all: &[Installed], older_than_days: u64, stale: bool, now: u64) -> Vec<(Installed, PruneReason)> {
    all.iter()
        .filter_map(|r| {
            let days = now.saturating_sub(r.last_used) / 86_400;
            if days >= older_than_days {
                Some((r.clone(), PruneReason::Unused { days }))
            } else if stale && !r.current {
                Some((r.clone(), PruneReason::Stale))
            } else {
                None
            }
        })
        .collect()
}

/// Removes the runtimes that qualify (see [`prune_candidates`]), except those another process
/// is using. Holds the install lock throughout.
pub fn prune(older_than_days: u64, stale: bool, dry_run: bool) -> Result<Vec<Pruned>, InstallError> {
    let dir = runtimes_dir();
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let lock_path = dir.join(".lock");
    let install_lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(io_error(&lock_path))?;
    install_lock.lock().map_err(io_error(&lock_path))?;
    let mut done = Vec::new();
    for (runtime, reason) in prune_candidates(&installed(), older_than_days, stale, now()) {
        let use_path = use_lock_path(&runtime.path);
        let use_lock = File::options().create(true).truncate(false).write(true).open(&use_path).map_err(io_error(&use_path))?;
        if use_lock.try_lock().is_err() {
            done.push(Pruned { runtime, reason, removed: false, kept_because: Some("another exportctl process is using it".into()) });
            continue;
        }
        if dry_run {
            done.push(Pruned { runtime, reason, removed: false, kept_because: Some("--dry-run".into()) });
            continue;
        }
        let doomed = dir.join(format!(".tmp-prune-{}", runtime.name));
        std::fs::rename(&runtime.path, &doomed).map_err(io_error(&runtime.path))?;
        std::fs::remove_dir_all(&doomed).map_err(io_error(&doomed))?;
        let _ = std::fs::remove_file(&use_path);
        done.push(Pruned { runtime, reason, removed: true, kept_because: None });
    }
    Ok(done)
}
