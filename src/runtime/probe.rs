//! What a Python environment holds, asked once and remembered.
//!
//! The probe is a Python one-liner that imports nothing heavy: it reads the versions from the
//! installed distributions' metadata and locates the `tensorflow` package without importing it
//! (~50 ms instead of seconds). Its answer is cached under `$EXPORTCTL_HOME/probes/`, with the
//! modification time of the interpreter and of every `sys.path` directory: installing,
//! upgrading or removing a package changes a `site-packages` mtime and so re-probes. A cached
//! answer is checked with stat calls only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{home, Choice, Runtime, RuntimeError, Versions};

const PROBE: &str = r#"
import importlib.metadata as md, importlib.util, json, sys, platform
def version(*names):
    for n in names:
        try:
            return md.version(n)
        except Exception:
            pass
    return None
spec = importlib.util.find_spec("tensorflow")
tf_dir = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else None
print(json.dumps({
    "python": platform.python_version(),
    "executable": sys.executable,
    "path": [p for p in sys.path if p],
    "tensorflow_dir": tf_dir,
    "tensorflow": version("tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly", "tensorflow-macos"),
    "keras": version("keras"),
    "tf_keras": version("tf-keras", "tf_keras"),
    "tensorflow_hub": version("tensorflow-hub", "tensorflow_hub"),
    "numpy": version("numpy"),
    "litert": version("ai-edge-litert", "ai_edge_litert"),
}))
"#;

#[derive(Debug, Deserialize)]
struct ProbeAnswer {
    python: String,
    executable: PathBuf,
    path: Vec<PathBuf>,
    tensorflow_dir: Option<PathBuf>,
    tensorflow: Option<String>,
    keras: Option<String>,
    tf_keras: Option<String>,
    tensorflow_hub: Option<String>,
    numpy: Option<String>,
    litert: Option<String>,
}

/// A remembered probe and what it depends on.
#[derive(Debug, Serialize, Deserialize)]
struct CachedProbe {
    stamps: Vec<(PathBuf, u128)>,
    versions: Versions,
    tensorflow_dir: Option<PathBuf>,
    /// The `ai-edge-litert` installed, if any (an older probe without it is probed again).
    litert: Option<Option<String>>,
}

fn mtime_ns(path: &Path) -> u128 {
    std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos())
}

fn cache_file(python: &Path) -> PathBuf {
    let key = crate::hash::digest_str(&python.display().to_string());
    home().join("probes").join(format!("{}.json", &key[..16]))
}

/// The runtime `python` gives, probing it unless a still-valid answer is cached.
pub(super) fn probe(python: &Path, choice: Choice, reason: String) -> Result<Runtime, RuntimeError> {
    if !python.exists() {
        return Err(RuntimeError::Unusable {
            message: format!("python executable {} does not exist", python.display()),
            help: match choice {
                Choice::Manifest => "fix runtime.python in the manifest, or set it to \"auto\"".into(),
                Choice::Environment => "fix or unset $EXPORTCTL_PYTHON".into(),
                _ => "unset $VIRTUAL_ENV or recreate the virtualenv".into(),
            },
        });
    }
    let file = cache_file(python);
    if let Some(cached) = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice::<CachedProbe>(&b).ok()) {
        if let (true, Some(litert)) = (cached.stamps.iter().all(|(p, t)| mtime_ns(p) == *t), cached.litert) {
            return Ok(Runtime {
                python: python.to_path_buf(),
                choice,
                reason,
                versions: cached.versions,
                tensorflow_dir: cached.tensorflow_dir,
                litert,
            });
        }
    }
    let output = Command::new(python)
        .args(["-I", "-c", PROBE])
        .env_remove("PYTHONPATH")
        .output()
        .map_err(|source| RuntimeError::Unrunnable { python: python.to_path_buf(), source })?;
    if !output.status.success() {
        return Err(RuntimeError::Unusable {
            message: format!("{} failed to report its packages: {}", python.display(), String::from_utf8_lossy(&output.stderr).trim()),
            help: "check that it is a working Python 3.9+ executable".into(),
        });
    }
    let answer: ProbeAnswer = serde_json::from_slice(&output.stdout).map_err(|e| RuntimeError::Unusable {
        message: format!("{} gave an unreadable answer: {e}", python.display()),
        help: "check that it is a CPython 3.9+ executable".into(),
    })?;
    let versions = Versions {
        python: Some(answer.python),
        tensorflow: answer.tensorflow,
        keras: answer.keras,
        tf_keras: answer.tf_keras,
        tensorflow_hub: answer.tensorflow_hub,
        numpy: answer.numpy,
    };
    let mut stamped: Vec<PathBuf> = vec![python.to_path_buf(), answer.executable];
    stamped.extend(answer.path.into_iter().filter(|p| p.is_dir()));
    let stamps = stamped
        .into_iter()
        .map(|p| {
            let t = mtime_ns(&p);
            (p, t)
        })
        .collect();
    let cached = CachedProbe {
        stamps,
        versions: versions.clone(),
        tensorflow_dir: answer.tensorflow_dir.clone(),
        litert: Some(answer.litert.clone()),
    };
    // Remembering is an optimisation: a failure to write is not an error.
    let _ = crate::atomic::write_file(&file, &serde_json::to_vec_pretty(&cached).unwrap_or_default());
    Ok(Runtime { python: python.to_path_buf(), choice, reason, versions, tensorflow_dir: answer.tensorflow_dir, litert: answer.litert })
}
