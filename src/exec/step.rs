//! The seam between the engine and the steps: [`StepRunner`].
//!
//! The engine knows nothing of TensorFlow. For each node of the plan it asks the runner what
//! the step reads ([`StepRunner::inputs`]), computes its cache key from that and from the
//! digests of its dependencies' outputs, and on a miss calls [`StepRunner::run`] with a fresh
//! temporary directory to fill. The real steps (`crate::steps`) implement this trait; the
//! scheduler's unit tests use fakes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

use crate::plan::StepId;

/// What a step reads besides its dependencies' outputs. Everything here goes into its key.
#[derive(Debug, Clone, Default)]
pub struct StepInputs {
    /// The canonical settings the step reads — only those, so that editing a piece's docs
    /// does not invalidate its trace.
    pub settings: serde_json::Value,
    /// Source files or directories, relative to the project root, whose contents it reads.
    pub files: Vec<PathBuf>,
}

/// A finished dependency, as a running step sees it.
#[derive(Debug, Clone)]
pub struct Dependency {
    pub id: StepId,
    /// The dependency's output directory in the cache (read-only).
    pub dir: PathBuf,
    /// Its files (relative to `dir`) and their digests, as its cache entry records them
    /// (empty when not known: the step hashes what it needs).
    pub files: BTreeMap<String, String>,
}

/// What a running step gets.
pub struct StepContext<'a> {
    /// The project root (the manifest's directory).
    pub root: &'a Path,
    /// An empty temporary directory: the step writes its outputs here and nowhere else.
    /// It becomes the cache entry only if the step succeeds.
    pub out: &'a Path,
    /// Every step this one depends on, directly or not, by id.
    pub deps: &'a BTreeMap<StepId, Dependency>,
    /// Set when the build is being cancelled (Ctrl-C): long steps may stop early.
    pub cancelled: &'a AtomicBool,
}

impl StepContext<'_> {
    /// The output directory of the dependency `id`; panics if `id` is not a dependency
    /// (a bug in the plan, not a user error).
    pub fn dep(&self, id: &StepId) -> &Path {
        &self.deps.get(id).unwrap_or_else(|| panic!("{id} is not a dependency")).dir
    }
}

/// A warning a step raises (a lint): shown, recorded with the cache entry and replayed when
/// the entry is reused; an error under `--deny warnings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    /// A stable code, e.g. `softmax-output`, `lost-regularization` (docs/lints.md lists them).
    pub code: crate::contract::Lint,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Where a step's time went: each phase's name and milliseconds, in the order they ran.
pub type Phases = indexmap::IndexMap<String, u64>;

/// What a successful step reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StepOutcome {
    pub warnings: Vec<Warning>,
    /// One line for people: what the step produced ("2 outputs, 4 trainable variables").
    #[serde(default)]
    pub summary: String,
    /// Where the time went (`worker start`, `load`, `trace`, `save`, `native load`, …).
    #[serde(default, skip_serializing_if = "Phases::is_empty")]
    pub phases: Phases,
    /// The peak resident memory of the Python worker while it ran the step, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory: Option<u64>,
}

/// Why a step failed: what, and what to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepError {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl StepError {
    pub fn new(message: impl Into<String>) -> StepError {
        StepError { message: message.into(), help: None }
    }

    /// A typed error as the engine carries it: its message and its help.
    pub fn from_diagnostic(e: &dyn miette::Diagnostic) -> StepError {
        StepError { message: e.to_string(), help: crate::error::help_text(e) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> StepError {
        self.help = Some(help.into());
        self
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs the steps of a plan. Called from several threads at once (`-j N`).
pub trait StepRunner: Sync {
    /// What `step` reads. Called for every step of a build, cached or not: it must be cheap
    /// (no TensorFlow, no hashing; the engine hashes the files).
    fn inputs(&self, step: &StepId) -> Result<StepInputs, StepError>;

    /// Runs `step`, writing its outputs into `cx.out`.
    fn run(&self, step: &StepId, cx: &StepContext<'_>) -> Result<StepOutcome, StepError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnostic_becomes_its_message_and_help() {
        let unknown = crate::plan::UnknownTarget { target: "m/x".into(), help: "did you mean `m/a`?".into() };
        let error = StepError::from_diagnostic(&unknown);
        assert_eq!((error.message.as_str(), error.help.as_deref()), ("unknown target `m/x`", Some("did you mean `m/a`?")));
        let busy = crate::cache::lock::LockError::Busy { holder: Some(7) };
        let error = StepError::from_diagnostic(&busy);
        assert_eq!(error.message, "another exportctl build is running in this project (pid 7)");
        assert_eq!(error.help, None, "no help is no help, not an empty one");
    }
}
