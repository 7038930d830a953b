//! The Python + TensorFlow that export, slice, trace and validate run in.
//!
//! **Which Python.** In order: the manifest's `runtime.python`, `$EXPORTCTL_PYTHON`, an active
//! virtualenv (`$VIRTUAL_ENV`) that has TensorFlow, else the *managed runtime*: a virtualenv
//! exportctl installs itself under `$EXPORTCTL_HOME` (see `managed.rs`). [`Runtime::reason`]
//! says which rule chose it; `exportctl runtime status` prints it.
//!
//! **What it has, without starting it.** A build that has nothing to do must not start Python
//! (an import of TensorFlow costs seconds). The versions that go into cache keys and the
//! TensorFlow package directory the native loader needs are therefore read from files: the
//! managed runtime records them in its `runtime.json` when it is installed; any other Python is
//! probed once (a Python one-liner that imports nothing heavy) and the answer cached, keyed by
//! the interpreter and the modification times of its `sys.path` directories, so that installing
//! or upgrading a package invalidates it (see `probe.rs`).
//!
//! **The worker.** One persistent Python process per build runs every Python step
//! (`worker.rs`): TensorFlow is imported once, not once per step.

pub mod managed;
pub mod pool;
mod probe;
pub mod process;
pub mod worker;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::RuntimeSettings;

pub use worker::{Worker, WorkerError};

/// Where exportctl keeps what it shares between projects: the managed runtimes, the
/// worker's source, probes, the native library links. `$EXPORTCTL_HOME`, else the user cache
/// directory (`$XDG_CACHE_HOME/exportctl` or `~/.cache/exportctl`).
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("EXPORTCTL_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir).join("exportctl");
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("exportctl"),
        None => std::env::temp_dir().join("exportctl"),
    }
}

/// Why a runtime was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    /// `runtime.python` in the manifest.
    Manifest,
    /// `$EXPORTCTL_PYTHON`.
    Environment,
    /// The active virtualenv (`$VIRTUAL_ENV`), which has TensorFlow.
    Virtualenv,
    /// The managed runtime under `$EXPORTCTL_HOME`.
    Managed,
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Choice::Manifest => "manifest",
            Choice::Environment => "environment",
            Choice::Virtualenv => "virtualenv",
            Choice::Managed => "managed",
        })
    }
}

/// The versions of what a runtime holds: all but Python's make the runtime's part of every
/// cache key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versions {
    /// The interpreter's version, when known (a managed runtime's identity is known from its
    /// pins before it is installed, and so before its Python is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    pub tensorflow: Option<String>,
    pub keras: Option<String>,
    pub tf_keras: Option<String>,
    pub tensorflow_hub: Option<String>,
    pub numpy: Option<String>,
}

/// A Python environment exportctl can run its worker in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Runtime {
    pub python: PathBuf,
    pub choice: Choice,
    pub reason: String,
    pub versions: Versions,
    /// `site-packages/tensorflow`, holding `libtensorflow_cc.so.2`.
    pub tensorflow_dir: Option<PathBuf>,
    /// The version of `ai-edge-litert` installed in it, if any (for the managed runtime: the
    /// extra recorded as installed, see `managed::Extra`).
    #[serde(default)]
    pub litert: Option<String>,
}

/// Why no usable runtime could be had.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RuntimeError {
    #[error("{message}")]
    Unusable {
        message: String,
        #[help]
        help: String,
    },
    /// The Python executable could not be run at all.
    #[error("cannot run {}: {source}", .python.display())]
    #[diagnostic(help("check that it is a Python 3 executable"))]
    Unrunnable { python: PathBuf, source: std::io::Error },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Install(#[from] managed::InstallError),
}

impl Versions {
    /// The runtime's part of a cache key: the versions of the packages that write the outputs.
    ///
    /// Python's own version is left out: the same packages under Python 3.11.2, 3.11.7 and
    /// 3.12.1 write byte-identical SavedModels, reports and archives (measured on the
    /// examples, `docs/ci.md`), and leaving it out lets machines with different interpreters
    /// share a remote cache.
    pub fn fingerprint(&self) -> String {
        let v = self;
        let or_none = |s: &Option<String>| s.clone().unwrap_or_else(|| "none".into());
        format!(
            "tensorflow={} keras={} tf_keras={} tensorflow_hub={} numpy={}",
            or_none(&v.tensorflow),
            or_none(&v.keras),
            or_none(&v.tf_keras),
            or_none(&v.tensorflow_hub),
            or_none(&v.numpy)
        )
    }

    /// The same versions without the interpreter's: what a build records.
    pub fn without_python(&self) -> Versions {
        Versions { python: None, ..self.clone() }
    }
}

impl Runtime {
    /// The runtime's part of a cache key (see [`Versions::fingerprint`]).
    pub fn fingerprint(&self) -> String {
        self.versions.fingerprint()
    }

    /// The TensorFlow package directory, or why there is none.
    pub fn require_tensorflow_dir(&self) -> Result<&Path, RuntimeError> {
        self.tensorflow_dir.as_deref().ok_or_else(|| RuntimeError::Unusable {
            message: format!("{} has no TensorFlow", self.python.display()),
            help: "install tensorflow into it (pip install tensorflow-cpu tf-keras tensorflow-hub), or unset runtime.python / EXPORTCTL_PYTHON to use the managed runtime".into(),
        })
    }
}

/// Options that change how a runtime is found or installed.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// Install the managed runtime when it is the choice and is missing.
    pub install: bool,
    /// Show install progress on stderr.
    pub progress: bool,
}

/// What the discovery rules chose, before anything is installed.
enum Chosen {
    /// A Python that exists (probed, or an installed managed runtime).
    Found(Runtime),
    /// The managed runtime, not installed yet.
    Managed(managed::Pins),
}

fn choose(settings: &RuntimeSettings, root: &Path) -> Result<Chosen, RuntimeError> {
    if let Some(python) = &settings.python {
        let python = if python.is_absolute() { python.clone() } else { root.join(python) };
        let reason = format!("runtime.python in the manifest names {}", python.display());
        return probe::probe(&python, Choice::Manifest, reason).map(Chosen::Found);
    }
    if let Some(python) = std::env::var_os("EXPORTCTL_PYTHON").filter(|v| !v.is_empty()) {
        let python = PathBuf::from(python);
        let reason = "$EXPORTCTL_PYTHON is set".to_string();
        return probe::probe(&python, Choice::Environment, reason).map(Chosen::Found);
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV").filter(|v| !v.is_empty()) {
        let python = PathBuf::from(&venv).join("bin").join("python");
        if python.is_file() {
            let reason = format!("the active virtualenv {} has TensorFlow", PathBuf::from(&venv).display());
            if let Ok(runtime) = probe::probe(&python, Choice::Virtualenv, reason) {
                if runtime.versions.tensorflow.is_some() {
                    return Ok(Chosen::Found(runtime));
                }
            }
        }
    }
    let pins = managed::Pins::for_tensorflow(&settings.tensorflow);
    Ok(match managed::find(&pins)? {
        Some(runtime) => Chosen::Found(runtime),
        None => Chosen::Managed(pins),
    })
}

/// Finds the runtime to use (see the module docs for the order). `root` is the project root
/// that a relative `runtime.python` is relative to.
pub fn discover(settings: &RuntimeSettings, root: &Path, options: &Discovery) -> Result<Runtime, RuntimeError> {
    match choose(settings, root)? {
        Chosen::Found(runtime) => Ok(runtime),
        Chosen::Managed(pins) if options.install => Ok(managed::install(&pins, options.progress)?),
        Chosen::Managed(pins) => Err(RuntimeError::Unusable {
            message: format!("the managed runtime ({}) is not installed", pins.describe()),
            help: "run `exportctl runtime install` (a build installs it on first use)".into(),
        }),
    }
}

/// The runtime of a build, found (and if need be installed) only when a step first needs it.
///
/// Its **identity** — the versions that go into every cache key — is known before: a Python
/// exportctl is pointed at is probed (once, then remembered); the managed runtime's comes from
/// the lock exportctl ships for its TensorFlow version, so that a build whose steps all come
/// from a cache neither installs the runtime nor starts Python.
pub struct Provider {
    identity: Versions,
    /// How to find it when it is first needed (`None`: found already).
    source: Option<(RuntimeSettings, PathBuf, Discovery)>,
    found: std::sync::OnceLock<Result<Runtime, (String, String)>>,
}

impl Provider {
    /// The provider for a project's runtime settings. Installs the managed runtime now only
    /// when its identity cannot be known otherwise (a TensorFlow version without a lock).
    pub fn new(settings: &RuntimeSettings, root: &Path, discovery: Discovery) -> Result<Provider, RuntimeError> {
        let provider = |identity: Versions| Provider {
            identity,
            source: Some((settings.clone(), root.to_path_buf(), discovery.clone())),
            found: std::sync::OnceLock::new(),
        };
        match choose(settings, root)? {
            Chosen::Found(runtime) => {
                let identity = match runtime.choice {
                    Choice::Managed => managed::Pins::for_tensorflow(&settings.tensorflow).identity(),
                    _ => None,
                }
                .unwrap_or_else(|| runtime.versions.without_python());
                let p = provider(identity);
                let _ = p.found.set(Ok(runtime));
                Ok(p)
            }
            Chosen::Managed(pins) => match pins.identity() {
                Some(identity) => Ok(provider(identity)),
                None => {
                    let runtime = discover(settings, root, &discovery)?;
                    let p = provider(runtime.versions.without_python());
                    let _ = p.found.set(Ok(runtime));
                    Ok(p)
                }
            },
        }
    }

    /// A provider for a runtime already found.
    pub fn ready(runtime: Runtime) -> Provider {
        let found = std::sync::OnceLock::new();
        let identity = runtime.versions.without_python();
        let _ = found.set(Ok(runtime));
        Provider { identity, source: None, found }
    }

    /// The versions cache keys are made of (Python's left out).
    pub fn identity(&self) -> &Versions {
        &self.identity
    }

    /// The runtime's part of a cache key.
    pub fn fingerprint(&self) -> String {
        self.identity.fingerprint()
    }

    /// The LiteRT package the LiteRT steps run with, as it goes into their cache keys
    /// (`ai-edge-litert==2.3.0`). Known without installing anything: the managed runtime's
    /// comes from the extra's lock; another Python's from its probe (`none` when it has none;
    /// the step then says how to install it).
    pub fn litert_identity(&self) -> String {
        match self.found() {
            Some(runtime) if runtime.choice != Choice::Managed => {
                format!("{}=={}", managed::LITERT.package, runtime.litert.as_deref().unwrap_or("none"))
            }
            _ => managed::LITERT.pin(),
        }
    }

    /// The runtime, with `ai-edge-litert` in it: the managed runtime installs its LiteRT
    /// extra on first use (once, under the install lock); another Python must have it.
    pub fn get_with_litert(&self) -> Result<&Runtime, RuntimeError> {
        let runtime = self.get()?;
        if runtime.choice == Choice::Managed {
            let progress = self.source.as_ref().is_some_and(|(_, _, d)| d.progress);
            managed::ensure_extra(runtime, &managed::LITERT, progress)?;
            return Ok(runtime);
        }
        match &runtime.litert {
            Some(version) if *version == managed::LITERT.version => Ok(runtime),
            found => Err(RuntimeError::Unusable {
                message: match found {
                    Some(version) => format!("{} has ai-edge-litert {version}; exportctl's LiteRT steps are checked with {}", runtime.python.display(), managed::LITERT.version),
                    None => format!("{} has no ai-edge-litert, which the LiteRT steps (formats = [\"saved-model\", \"litert\"]) run with", runtime.python.display()),
                },
                help: format!(
                    "install it there: `{} -m pip install --no-deps {}`, or let exportctl manage the runtime (unset runtime.python / $EXPORTCTL_PYTHON)",
                    runtime.python.display(),
                    managed::LITERT.requirements().join(" ")
                ),
            }),
        }
    }

    /// The runtime if it has been found already (nothing is installed or probed).
    pub fn found(&self) -> Option<&Runtime> {
        self.found.get().and_then(|r| r.as_ref().ok())
    }

    /// The runtime, found or installed on the first call (concurrent callers wait for it).
    pub fn get(&self) -> Result<&Runtime, RuntimeError> {
        self.found
            .get_or_init(|| {
                let (settings, root, discovery) = self.source.as_ref().expect("a provider without a source is created found");
                // Every caller gets the failure again: as its message and help, since a
                // `RuntimeError` (holding an `io::Error`) cannot be cloned.
                let runtime =
                    discover(settings, root, discovery).map_err(|e| (e.to_string(), crate::error::help_text(&e).unwrap_or_default()))?;
                managed::record_use(&runtime, root);
                Ok(runtime)
            })
            .as_ref()
            .map_err(|(message, help)| RuntimeError::Unusable { message: message.clone(), help: help.clone() })
    }
}
